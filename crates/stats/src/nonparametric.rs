//! Non-parametric methods for Likert scores and heavy-tailed counts.
//!
//! * Mann–Whitney U (Mann & Whitney 1947) with the normal approximation,
//!   continuity correction and tie-corrected variance
//!   `σ² = n₁n₂/12 · ((n+1) − Σ(t³−t)/(n(n−1)))`, or the exact null
//!   distribution (generating function `Π_{i=1}^{n₁}(1−q^{n₂+i})/(1−q^i)`,
//!   integer arithmetic) when there are no ties — as `scipy.stats.mannwhitneyu`.
//! * Bootstrap percentile and BCa intervals (Efron 1987; Efron & Tibshirani
//!   1993 ch. 14) with independent resampling of each sample, a seeded
//!   ChaCha20 RNG, and the same conventions as `scipy.stats.bootstrap`
//!   (z₀ from the "mean" percentile of score, acceleration from the
//!   per-sample jackknife, linear-interpolated percentiles).

// `!(x > 0.0)` is used on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::randomization::Alternative;
use crate::{Result, StatsError};

/// How the Mann–Whitney p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MwMethod {
    /// Exact when there are no ties and `n₁+n₂ ≤ 120`, asymptotic otherwise.
    #[default]
    Auto,
    /// Exact null distribution (errors with ties).
    Exact,
    /// Normal approximation with continuity and tie correction.
    Asymptotic,
}

/// Mann–Whitney U test result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MannWhitney {
    /// `U₁ = R₁ − n₁(n₁+1)/2` for the first sample (scipy's statistic).
    pub u: f64,
    /// p-value for the requested alternative (x stochastically greater for `Greater`).
    pub p_value: f64,
    /// z statistic (asymptotic method only).
    pub z: Option<f64>,
    /// "exact" or "asymptotic".
    pub method: String,
    /// Whether the pooled data had ties.
    pub ties: bool,
    /// Probability of superiority `U₁/(n₁n₂)` = P(X > Y) + ½P(X = Y).
    pub prob_superiority: f64,
    /// Rank-biserial correlation `2U₁/(n₁n₂) − 1`.
    pub rank_biserial: f64,
}

/// Mid-ranks (1-based) and the tie term `Σ(t³−t)`.
pub fn midranks(v: &[f64]) -> (Vec<f64>, f64) {
    let n = v.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; n];
    let mut tie = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        let t = (j - i + 1) as f64;
        tie += t * t * t - t;
        i = j + 1;
    }
    (ranks, tie)
}

/// Exact null frequencies of U for sample sizes `n1`, `n2` (no ties).
fn u_frequencies(n1: usize, n2: usize) -> Vec<i128> {
    let max = n1 * n2;
    let mut c = vec![0i128; max + 1];
    c[0] = 1;
    for i in 1..=n1 {
        let m = n2 + i;
        // multiply by (1 − q^m)
        for k in (m..=max).rev() {
            c[k] -= c[k - m];
        }
        // divide by (1 − q^i): running sum with stride i
        for k in i..=max {
            c[k] += c[k - i];
        }
    }
    c
}

/// `P(U ≥ u)` under the exact null.
fn exact_sf(u: f64, n1: usize, n2: usize) -> f64 {
    let c = u_frequencies(n1, n2);
    let total: i128 = c.iter().sum();
    let start = u.ceil().max(0.0) as usize;
    let tail: i128 = c.iter().skip(start).sum();
    tail as f64 / total as f64
}

/// Mann–Whitney U test of `x` against `y` (scipy conventions:
/// two-sided uses `max(U₁, U₂)` and doubles the one-sided tail, clipped to 1).
pub fn mann_whitney(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: MwMethod,
) -> Result<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return Err(StatsError::InvalidInput(
            "both samples need at least one value".into(),
        ));
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(StatsError::InvalidInput("non-finite value".into()));
    }
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, tie) = midranks(&pooled);
    let (f1, f2) = (n1 as f64, n2 as f64);
    let n = f1 + f2;
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;
    let ties = tie > 0.0;
    let exact = match method {
        MwMethod::Exact => {
            if ties {
                return Err(StatsError::InvalidInput(
                    "exact Mann–Whitney requires no ties; use the asymptotic method".into(),
                ));
            }
            if n1 + n2 > 120 {
                return Err(StatsError::InvalidInput(
                    "exact Mann–Whitney limited to n₁+n₂ ≤ 120".into(),
                ));
            }
            true
        }
        MwMethod::Asymptotic => false,
        MwMethod::Auto => !ties && n1 + n2 <= 120,
    };
    let u_stat = match alternative {
        Alternative::TwoSided => u1.max(u2),
        Alternative::Greater => u1,
        Alternative::Less => u2,
    };
    let mult = if alternative == Alternative::TwoSided {
        2.0
    } else {
        1.0
    };
    let (p, z) = if exact {
        ((mult * exact_sf(u_stat, n1, n2)).min(1.0), None)
    } else {
        let mu = f1 * f2 / 2.0;
        let var = f1 * f2 / 12.0 * ((n + 1.0) - tie / (n * (n - 1.0)));
        if !(var > 0.0) {
            return Err(StatsError::Degenerate(
                "all values are tied: Mann–Whitney variance is zero".into(),
            ));
        }
        let z = (u_stat - mu - 0.5) / var.sqrt();
        let norm = Normal::standard();
        ((mult * norm.cdf(-z)).min(1.0), Some(z))
    };
    Ok(MannWhitney {
        u: u1,
        p_value: p.clamp(0.0, 1.0),
        z,
        method: if exact { "exact" } else { "asymptotic" }.into(),
        ties,
        prob_superiority: u1 / (f1 * f2),
        rank_biserial: 2.0 * u1 / (f1 * f2) - 1.0,
    })
}

/// Bootstrap interval type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootMethod {
    /// Percentile interval `[θ*_{(α/2)}, θ*_{(1−α/2)}]`.
    Percentile,
    /// Bias-corrected and accelerated.
    Bca,
}

/// A bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapCi {
    /// Statistic on the original data.
    pub estimate: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Confidence level.
    pub level: f64,
    /// Interval type.
    pub method: BootMethod,
    /// Number of resamples.
    pub resamples: usize,
    /// RNG seed.
    pub seed: u64,
    /// BCa bias correction `z₀` (BCa only).
    pub z0: Option<f64>,
    /// BCa acceleration `â` (BCa only).
    pub acceleration: Option<f64>,
}

/// `np.percentile(v, q)` with linear interpolation; `v` must be sorted.
pub fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let n = v.len();
    let h = (n as f64 - 1.0) * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// BCa pieces from a bootstrap distribution and the statistic (scipy
/// `_bca_interval`): `z₀ = Φ⁻¹((#{θ* < θ̂} + #{θ* ≤ θ̂})/(2B))`;
/// per-sample jackknife `U_ji = (n_j − 1)(θ̄_j − θ_(ji))`,
/// `â = Σ_j Σ_i U_ji³/n_j³ / (6 (Σ_j Σ_i U_ji²/n_j²)^{3/2})`;
/// `α₁ = Φ(z₀ + (z₀+z_{α})/(1 − â(z₀+z_{α})))`, `α₂` likewise with `z_{1−α}`.
/// Returns `(α₁, α₂, â, z₀)`.
pub fn bca_pieces<F>(
    samples: &[&[f64]],
    statistic: &F,
    theta_hat: f64,
    boot: &[f64],
    level: f64,
) -> Result<(f64, f64, f64, f64)>
where
    F: Fn(&[&[f64]]) -> f64,
{
    let b = boot.len() as f64;
    let lt = boot.iter().filter(|&&t| t < theta_hat).count() as f64;
    let le = boot.iter().filter(|&&t| t <= theta_hat).count() as f64;
    let norm = Normal::standard();
    let z0 = norm.inverse_cdf((lt + le) / (2.0 * b));
    let (mut num, mut den) = (0.0, 0.0);
    for j in 0..samples.len() {
        let nj = samples[j].len();
        if nj < 2 {
            return Err(StatsError::Degenerate(
                "BCa jackknife needs n ≥ 2 per sample".into(),
            ));
        }
        let mut jack = Vec::with_capacity(nj);
        let mut buf: Vec<f64> = Vec::with_capacity(nj - 1);
        for i in 0..nj {
            buf.clear();
            buf.extend(
                samples[j]
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .map(|(_, v)| *v),
            );
            let mut s: Vec<&[f64]> = samples.to_vec();
            s[j] = &buf;
            jack.push(statistic(&s));
        }
        let mean = jack.iter().sum::<f64>() / nj as f64;
        let nf = nj as f64;
        for t in &jack {
            let u = (nf - 1.0) * (mean - t);
            num += u.powi(3) / nf.powi(3);
            den += u.powi(2) / nf.powi(2);
        }
    }
    let a = num / (6.0 * den.powf(1.5));
    if !(z0.is_finite() && a.is_finite()) {
        return Err(StatsError::Degenerate(
            "BCa undefined: bootstrap or jackknife distribution is degenerate".into(),
        ));
    }
    let alpha = (1.0 - level) / 2.0;
    let za = norm.inverse_cdf(alpha);
    let n1 = z0 + za;
    let a1 = norm.cdf(z0 + n1 / (1.0 - a * n1));
    let n2 = z0 - za;
    let a2 = norm.cdf(z0 + n2 / (1.0 - a * n2));
    Ok((a1, a2, a, z0))
}

/// Bootstrap confidence interval for `statistic(samples)`, resampling each
/// sample independently with replacement `resamples` times (seeded).
///
/// Errors: empty samples, `level ∉ (0,1)`, a constant bootstrap
/// distribution (e.g. zero variance), or BCa with `n < 2`.
pub fn bootstrap_ci<F>(
    samples: &[&[f64]],
    statistic: F,
    level: f64,
    resamples: usize,
    seed: u64,
    method: BootMethod,
) -> Result<BootstrapCi>
where
    F: Fn(&[&[f64]]) -> f64,
{
    if samples.is_empty() || samples.iter().any(|s| s.is_empty()) {
        return Err(StatsError::InvalidInput(
            "every sample needs at least one value".into(),
        ));
    }
    if !(level > 0.0 && level < 1.0) || resamples < 2 {
        return Err(StatsError::InvalidInput(
            "level must be in (0,1) and resamples ≥ 2".into(),
        ));
    }
    let theta = statistic(samples);
    if !theta.is_finite() {
        return Err(StatsError::Degenerate(
            "statistic is not finite on the data".into(),
        ));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut bufs: Vec<Vec<f64>> = samples.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut boot = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (buf, s) in bufs.iter_mut().zip(samples) {
            for v in buf.iter_mut() {
                *v = s[rng.random_range(0..s.len())];
            }
        }
        let refs: Vec<&[f64]> = bufs.iter().map(|b| b.as_slice()).collect();
        boot.push(statistic(&refs));
    }
    if boot.iter().any(|t| !t.is_finite()) {
        return Err(StatsError::Degenerate(
            "statistic not finite on a resample".into(),
        ));
    }
    let mut sorted = boot.clone();
    sorted.sort_by(f64::total_cmp);
    if sorted[0] == sorted[resamples - 1] {
        return Err(StatsError::Degenerate(
            "bootstrap distribution is constant (zero variance)".into(),
        ));
    }
    let alpha = (1.0 - level) / 2.0;
    let (lo_q, hi_q, z0, acc) = match method {
        BootMethod::Percentile => (alpha, 1.0 - alpha, None, None),
        BootMethod::Bca => {
            let (a1, a2, a, z0) = bca_pieces(samples, &statistic, theta, &boot, level)?;
            (a1, a2, Some(z0), Some(a))
        }
    };
    Ok(BootstrapCi {
        estimate: theta,
        lower: percentile_sorted(&sorted, lo_q * 100.0),
        upper: percentile_sorted(&sorted, hi_q * 100.0),
        level,
        method,
        resamples,
        seed,
        z0,
        acceleration: acc,
    })
}

/// Mean of the first sample (helper statistic).
pub fn mean_of_first(s: &[&[f64]]) -> f64 {
    s[0].iter().sum::<f64>() / s[0].len() as f64
}

/// Difference in means, second sample minus first (helper statistic).
pub fn diff_of_means(s: &[&[f64]]) -> f64 {
    s[1].iter().sum::<f64>() / s[1].len() as f64 - s[0].iter().sum::<f64>() / s[0].len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_nonparametric.json");

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    fn alt(s: &str) -> Alternative {
        match s {
            "greater" => Alternative::Greater,
            "less" => Alternative::Less,
            _ => Alternative::TwoSided,
        }
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["mann_whitney"].as_array().unwrap();
        assert!(cases.len() >= 50);
        for c in cases {
            let x: Vec<f64> = serde_json::from_value(c["x"].clone()).unwrap();
            let y: Vec<f64> = serde_json::from_value(c["y"].clone()).unwrap();
            let m = match c["method"].as_str().unwrap() {
                "exact" => MwMethod::Exact,
                _ => MwMethod::Asymptotic,
            };
            let r = mann_whitney(&x, &y, alt(c["alternative"].as_str().unwrap()), m);
            if c["error"].as_str() == Some("degenerate") {
                // scipy reports p = 1 for zero variance; we refuse with a typed error
                assert!(matches!(r, Err(StatsError::Degenerate(_))), "{}", c["name"]);
                continue;
            }
            let r = r.unwrap();
            assert!(rel(r.u, c["u"].as_f64().unwrap()) < 1e-12, "{}", c["name"]);
            assert!(
                rel(r.p_value, c["p"].as_f64().unwrap()) < 1e-9,
                "{} {} vs {}",
                c["name"],
                r.p_value,
                c["p"]
            );
        }
    }

    #[test]
    fn bca_pieces_match_scipy_exactly() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["bca_pieces"].as_array().unwrap();
        assert!(cases.len() >= 50);
        for c in cases {
            let samples: Vec<Vec<f64>> = serde_json::from_value(c["samples"].clone()).unwrap();
            let refs: Vec<&[f64]> = samples.iter().map(|s| s.as_slice()).collect();
            let boot: Vec<f64> = serde_json::from_value(c["theta_hat_b"].clone()).unwrap();
            let stat = if samples.len() == 1 {
                mean_of_first
            } else {
                diff_of_means
            };
            let th = stat(&refs);
            let (a1, a2, a, _z0) = bca_pieces(&refs, &stat, th, &boot, 0.95).unwrap();
            assert!(
                rel(a, c["a_hat"].as_f64().unwrap()) < 1e-9,
                "{} a",
                c["name"]
            );
            assert!(
                rel(a1, c["alpha_1"].as_f64().unwrap()) < 1e-9,
                "{} a1",
                c["name"]
            );
            assert!(
                rel(a2, c["alpha_2"].as_f64().unwrap()) < 1e-9,
                "{} a2",
                c["name"]
            );
            let mut s = boot.clone();
            s.sort_by(f64::total_cmp);
            assert!(
                rel(
                    percentile_sorted(&s, a1 * 100.0),
                    c["lower"].as_f64().unwrap()
                ) < 1e-9
            );
            assert!(
                rel(
                    percentile_sorted(&s, a2 * 100.0),
                    c["upper"].as_f64().unwrap()
                ) < 1e-9
            );
        }
    }

    #[test]
    fn bootstrap_within_monte_carlo_error_of_scipy() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["bootstrap_mc"].as_array().unwrap();
        for c in cases {
            let samples: Vec<Vec<f64>> = serde_json::from_value(c["samples"].clone()).unwrap();
            let refs: Vec<&[f64]> = samples.iter().map(|s| s.as_slice()).collect();
            let stat = if samples.len() == 1 {
                mean_of_first
            } else {
                diff_of_means
            };
            for (m, key) in [
                (BootMethod::Bca, "bca"),
                (BootMethod::Percentile, "percentile"),
            ] {
                let r = bootstrap_ci(&refs, stat, 0.95, 9999, 42, m).unwrap();
                let e = &c[key];
                for (got, want, sd) in [
                    (
                        r.lower,
                        e["lower"].as_f64().unwrap(),
                        e["lower_sd"].as_f64().unwrap(),
                    ),
                    (
                        r.upper,
                        e["upper"].as_f64().unwrap(),
                        e["upper_sd"].as_f64().unwrap(),
                    ),
                ] {
                    assert!(
                        (got - want).abs() < 5.0 * sd * 2f64.sqrt(),
                        "{} {key}: {got} vs {want} (mc sd {sd})",
                        c["name"]
                    );
                }
            }
        }
    }

    #[test]
    fn degenerate_bootstrap_and_mw() {
        let z = [1.0, 1.0, 1.0];
        assert!(matches!(
            bootstrap_ci(&[&z], mean_of_first, 0.95, 100, 1, BootMethod::Bca),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            bootstrap_ci(
                &[&[2.0]],
                mean_of_first,
                0.95,
                100,
                1,
                BootMethod::Percentile
            ),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            mann_whitney(&z, &z, Alternative::TwoSided, MwMethod::Asymptotic),
            Err(StatsError::Degenerate(_))
        ));
        assert!(mann_whitney(&[], &z, Alternative::TwoSided, MwMethod::Auto).is_err());
    }

    proptest! {
        #[test]
        fn mw_p_in_unit_interval_and_swap_symmetry(
            x in proptest::collection::vec(0u8..6, 1..12),
            y in proptest::collection::vec(0u8..6, 1..12),
        ) {
            let x: Vec<f64> = x.into_iter().map(f64::from).collect();
            let y: Vec<f64> = y.into_iter().map(f64::from).collect();
            if let Ok(a) = mann_whitney(&x, &y, Alternative::TwoSided, MwMethod::Auto) {
                prop_assert!((0.0..=1.0).contains(&a.p_value));
                let b = mann_whitney(&y, &x, Alternative::TwoSided, MwMethod::Auto).unwrap();
                prop_assert!((a.p_value - b.p_value).abs() < 1e-12);
                let g = mann_whitney(&x, &y, Alternative::Greater, MwMethod::Auto).unwrap();
                let l = mann_whitney(&y, &x, Alternative::Less, MwMethod::Auto).unwrap();
                prop_assert!((g.p_value - l.p_value).abs() < 1e-12);
            }
        }
    }
}
