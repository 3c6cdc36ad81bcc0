//! Design: power, sample size, minimum detectable effect, design effect,
//! and simulation-based power for few-community designs.
//!
//! * Means (two-sample t, `statsmodels.stats.power.TTestIndPower`):
//!   `ν = n₁+n₂−2`, `δ = d·√(n₁n₂/(n₁+n₂))`,
//!   power `= P(T'_{ν,δ} > t_{1−α/2,ν}) + P(T'_{ν,δ} < t_{α/2,ν})` with the
//!   non-central t CDF by Lenth's (1989) algorithm AS 243.
//! * Proportions (normal approximation on Cohen's `h = 2 asin√p₁ − 2 asin√p₂`,
//!   `NormalIndPower`): power `= Φ(h√n_e − z_{1−α/2}) + Φ(−h√n_e − z_{1−α/2})`,
//!   `n_e = n₁n₂/(n₁+n₂)`.
//! * Sample size and MDE solve the power equation by bisection.
//! * Design effect `1 + (m−1)·ICC` (Kish 1965); with unequal cluster sizes
//!   `1 + ((cv²+1)·m̄ − 1)·ICC` (Eldridge, Ashby & Kerry 2006); effective
//!   sample size `n / deff`.
//! * Always-valid (confidence-sequence) test of [`crate::sequential`]:
//!   power at `n` total units `= Φ(√n·δ' − b(n)) + Φ(−√n·δ' − b(n))`,
//!   `δ' = d·√r/(1+r)`, `b(n) = √(2(nρ²+1)/(nρ²)·ln(√(nρ²+1)/α))`
//!   (the half-width in standard errors); sample size / MDE solve it
//!   ([`power_sequential`], [`sample_size_sequential`], [`mde_sequential`]).
//! * Simulation-based power/size for a stepped wedge (seeded), running the
//!   same analysis as [`crate::rows::analyze_rows`].

// `!(x > 0.0)` is used on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::ln_gamma;

use crate::randomization::Alternative;
use crate::rows::{analyze_rows, CommunityEffects, DesignKind, Row, RowsDesign, RowsInput};
use crate::{Result, StatsError};

/// Non-central t CDF `P(T ≤ t)` with `df` degrees of freedom and
/// non-centrality `delta` (Lenth 1989, AS 243; error bound 1e-15).
pub fn noncentral_t_cdf(t: f64, df: f64, delta: f64) -> f64 {
    if t < 0.0 {
        return 1.0 - noncentral_t_cdf(-t, df, -delta);
    }
    let norm = Normal::standard();
    let x = t * t / (t * t + df);
    let mut tnc = 0.0;
    if x > 0.0 {
        let lambda = delta * delta;
        let mut p = 0.5 * (-0.5 * lambda).exp();
        let mut q = (2.0 / std::f64::consts::PI).sqrt() * p * delta;
        let mut s = 0.5 - p;
        let mut a = 0.5;
        let b = 0.5 * df;
        let rxb = (1.0 - x).powf(b);
        let albeta = 0.5 * std::f64::consts::PI.ln() + ln_gamma(b) - ln_gamma(0.5 + b);
        let mut xodd = beta_reg(a, b, x);
        let mut godd = 2.0 * rxb * (a * x.ln() - albeta).exp();
        let mut xeven = 1.0 - rxb;
        let mut geven = b * x * rxb;
        tnc = p * xodd + q * xeven;
        let mut en = 1.0;
        loop {
            a += 1.0;
            xodd -= godd;
            xeven -= geven;
            godd *= x * (a + b - 1.0) / a;
            geven *= x * (a + b - 0.5) / (a + 0.5);
            p *= lambda / (2.0 * en);
            q *= lambda / (2.0 * en + 1.0);
            s -= p;
            en += 1.0;
            tnc += p * xodd + q * xeven;
            let errbd = 2.0 * s * (xodd - godd);
            if (errbd.abs() < 1e-15 && en > lambda / 2.0) || en > 10_000.0 {
                break;
            }
        }
    }
    (tnc + norm.cdf(-delta)).clamp(0.0, 1.0)
}

/// Student-t quantile; the normal quantile beyond 10⁷ df (difference < 1e-7).
fn t_quantile(p: f64, df: f64) -> Result<f64> {
    if df > 1e7 {
        return Ok(Normal::standard().inverse_cdf(p));
    }
    let tdist =
        StudentsT::new(0.0, 1.0, df).map_err(|e| StatsError::InvalidInput(e.to_string()))?;
    Ok(tdist.inverse_cdf(p))
}

/// Smallest power-of-two multiple of `start` whose power reaches `target`.
fn bracket_up<F: Fn(f64) -> Result<f64>>(f: &F, start: f64, target: f64, max: f64) -> Result<f64> {
    let mut hi = start;
    while f(hi)? < target {
        hi *= 2.0;
        if hi > max {
            return Err(StatsError::Degenerate(
                "target power needs an implausibly large n".into(),
            ));
        }
    }
    Ok(hi)
}

fn check_alpha(alpha: f64) -> Result<()> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidInput("alpha must be in (0,1)".into()))
    }
}

/// Power of the two-sample t-test for standardised effect `d`, `n1` in arm 1
/// and `n2 = ratio·n1` (statsmodels `TTestIndPower().power`).
pub fn power_means(d: f64, n1: f64, ratio: f64, alpha: f64, alt: Alternative) -> Result<f64> {
    check_alpha(alpha)?;
    let n2 = n1 * ratio;
    if !(n1 > 0.0 && n2 > 0.0 && n1 + n2 > 2.0 && d.is_finite()) {
        return Err(StatsError::InvalidInput(
            "need n1, n2 > 0, n1+n2 > 2 and finite d".into(),
        ));
    }
    let df = n1 + n2 - 2.0;
    let nc = d * (1.0 / (1.0 / n1 + 1.0 / n2)).sqrt();
    let a = if alt == Alternative::TwoSided {
        alpha / 2.0
    } else {
        alpha
    };
    let mut pow = 0.0;
    if alt != Alternative::Less {
        let crit = t_quantile(1.0 - a, df)?;
        pow += 1.0 - noncentral_t_cdf(crit, df, nc);
    }
    if alt != Alternative::Greater {
        let crit = t_quantile(a, df)?;
        pow += noncentral_t_cdf(crit, df, nc);
    }
    Ok(pow)
}

/// Cohen's `h = 2·asin√p₁ − 2·asin√p₂` (statsmodels `proportion_effectsize`).
pub fn cohens_h(p1: f64, p2: f64) -> Result<f64> {
    if !((0.0..=1.0).contains(&p1) && (0.0..=1.0).contains(&p2)) {
        return Err(StatsError::InvalidInput(
            "proportions must be in [0,1]".into(),
        ));
    }
    Ok(2.0 * p1.sqrt().asin() - 2.0 * p2.sqrt().asin())
}

/// Power of the normal test for effect size `h` (statsmodels `NormalIndPower().power`).
pub fn power_normal(h: f64, n1: f64, ratio: f64, alpha: f64, alt: Alternative) -> Result<f64> {
    check_alpha(alpha)?;
    let n2 = n1 * ratio;
    if !(n1 > 0.0 && n2 > 0.0 && h.is_finite()) {
        return Err(StatsError::InvalidInput(
            "need n1, n2 > 0 and finite h".into(),
        ));
    }
    let ne = 1.0 / (1.0 / n1 + 1.0 / n2);
    let norm = Normal::standard();
    let a = if alt == Alternative::TwoSided {
        alpha / 2.0
    } else {
        alpha
    };
    let mut pow = 0.0;
    if alt != Alternative::Less {
        let crit = norm.inverse_cdf(1.0 - a);
        pow += 1.0 - norm.cdf(crit - h * ne.sqrt());
    }
    if alt != Alternative::Greater {
        let crit = norm.inverse_cdf(a);
        pow += norm.cdf(crit - h * ne.sqrt());
    }
    Ok(pow)
}

/// Power to detect `p1` vs `p2` with `n1`, `ratio·n1` (arcsine/normal).
pub fn power_proportions(
    p1: f64,
    p2: f64,
    n1: f64,
    ratio: f64,
    alpha: f64,
    alt: Alternative,
) -> Result<f64> {
    power_normal(cohens_h(p2, p1)?, n1, ratio, alpha, alt)
}

fn bisect<F: Fn(f64) -> Result<f64>>(f: F, mut lo: f64, mut hi: f64, target: f64) -> Result<f64> {
    let flo = f(lo)? - target;
    let fhi = f(hi)? - target;
    if flo.signum() == fhi.signum() {
        return Err(StatsError::Degenerate(
            "target power is not reachable in the search range".into(),
        ));
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let fm = f(mid)? - target;
        if fm.signum() == flo.signum() {
            lo = mid;
        } else {
            hi = mid;
        }
        if (hi - lo) <= 1e-13 * hi.abs().max(1e-300) {
            break;
        }
    }
    Ok(0.5 * (lo + hi))
}

fn check_power(power: f64, alpha: f64) -> Result<()> {
    check_alpha(alpha)?;
    if !(power > alpha && power < 1.0) {
        return Err(StatsError::InvalidInput(
            "power must be in (alpha, 1)".into(),
        ));
    }
    Ok(())
}

/// Arm-1 sample size (continuous; round up) for a two-sample t-test.
pub fn sample_size_means(
    d: f64,
    power: f64,
    ratio: f64,
    alpha: f64,
    alt: Alternative,
) -> Result<f64> {
    check_power(power, alpha)?;
    if d == 0.0 || !d.is_finite() {
        return Err(StatsError::Degenerate(
            "effect size must be non-zero".into(),
        ));
    }
    let lo = 2.0 / (1.0 + ratio) + 1e-6;
    let f = |n| power_means(d, n, ratio, alpha, alt);
    let hi = bracket_up(&f, lo.max(2.0), power, 1e9)?;
    bisect(f, lo, hi, power)
}

/// Minimum detectable standardised effect `d > 0` for a two-sample t-test.
pub fn mde_means(n1: f64, power: f64, ratio: f64, alpha: f64, alt: Alternative) -> Result<f64> {
    check_power(power, alpha)?;
    let sign = if alt == Alternative::Less { -1.0 } else { 1.0 };
    bisect(
        |d| power_means(sign * d, n1, ratio, alpha, alt),
        1e-9,
        100.0,
        power,
    )
    .map(|d| sign * d)
}

/// Arm-1 sample size for proportions `p1` (control) vs `p2` (treatment).
pub fn sample_size_proportions(
    p1: f64,
    p2: f64,
    power: f64,
    ratio: f64,
    alpha: f64,
    alt: Alternative,
) -> Result<f64> {
    check_power(power, alpha)?;
    let h = cohens_h(p2, p1)?;
    if h == 0.0 {
        return Err(StatsError::Degenerate("p1 equals p2".into()));
    }
    let f = |n| power_normal(h, n, ratio, alpha, alt);
    let hi = bracket_up(&f, 1.0, power, 1e12)?;
    bisect(f, 1e-6, hi, power)
}

/// Minimum detectable treatment proportion above `p1` with `n1`, `ratio·n1`.
pub fn mde_proportions(
    p1: f64,
    n1: f64,
    power: f64,
    ratio: f64,
    alpha: f64,
    alt: Alternative,
) -> Result<f64> {
    check_power(power, alpha)?;
    let h = bisect(
        |h| power_normal(h, n1, ratio, alpha, alt),
        1e-9,
        std::f64::consts::PI,
        power,
    )?;
    let phi = p1.sqrt().asin() + h / 2.0;
    if phi > std::f64::consts::FRAC_PI_2 {
        return Err(StatsError::Degenerate(
            "no proportion ≤ 1 is detectable with this n".into(),
        ));
    }
    Ok(phi.sin().powi(2))
}

/// Per-unit standard deviation of the difference-in-means estimate, in
/// units of the outcome σ, for allocation `ratio = n₂/n₁`: with `n` total
/// units `n·se² = σ²(1 + ratio)²/ratio`.
fn sequential_scale(ratio: f64) -> f64 {
    (1.0 + ratio) / ratio.sqrt()
}

/// `b(n) = √n·h(n)/σ̂`: the confidence-sequence half-width in standard errors.
fn cs_width_in_se(n: f64, alpha: f64, tuning: f64) -> f64 {
    let r2 = crate::sequential::rho(alpha, tuning).powi(2);
    let t = n * r2 + 1.0;
    (2.0 * t / (n * r2) * (t.sqrt() / alpha).ln()).sqrt()
}

fn check_sequential(ratio: f64, alpha: f64, tuning: f64) -> Result<()> {
    check_alpha(alpha)?;
    if !(ratio > 0.0 && ratio.is_finite()) {
        return Err(StatsError::InvalidInput("ratio must be positive".into()));
    }
    if !(tuning > 0.0 && tuning.is_finite()) {
        return Err(StatsError::InvalidInput(
            "sequential tuning parameter must be positive".into(),
        ));
    }
    Ok(())
}

/// Power of the always-valid confidence-sequence test of
/// [`crate::sequential`] when analysed at `n_total` units, for a standardised
/// effect `d = Δ/σ`, allocation `ratio = n₂/n₁`, level `alpha` and tuning
/// parameter N* (`tuning`).
///
/// Normal approximation: the estimate is `Δ̂ ~ N(Δ, σ̂²/n)` with
/// `σ̂ = σ(1 + ratio)/√ratio`; the sequence excludes 0 when `|Δ̂| > h(n)`,
/// `h(n) = σ̂·b(n)/√n`, `b(n) = √(2(nρ² + 1)/(nρ²) · ln(√(nρ² + 1)/α))`,
/// ρ² from [`crate::sequential::rho`]. With `δ' = d·√ratio/(1 + ratio)`:
///
/// power `= Φ(√n·δ' − b(n)) + Φ(−√n·δ' − b(n))`.
///
/// This is the power of the look at `n` (the sequence may also have
/// rejected earlier, so it is a lower bound on the power of monitoring
/// continuously up to `n`). Waudby-Smith et al. (2023), arXiv:2103.06476.
pub fn power_sequential(d: f64, n_total: f64, ratio: f64, alpha: f64, tuning: f64) -> Result<f64> {
    check_sequential(ratio, alpha, tuning)?;
    if !(n_total > 0.0 && n_total.is_finite() && d.is_finite()) {
        return Err(StatsError::InvalidInput(
            "n_total must be positive and d finite".into(),
        ));
    }
    let dp = d.abs() / sequential_scale(ratio);
    let b = cs_width_in_se(n_total, alpha, tuning);
    let m = n_total.sqrt() * dp;
    Ok((crate::dist::norm_cdf(m - b) + crate::dist::norm_cdf(-m - b)).clamp(0.0, 1.0))
}

/// Total units `n` (continuous; round up) at which the always-valid test
/// reaches `power`: the `n` where the confidence-sequence half-width `h(n)`
/// equals the MDE with probability `power`, i.e. solving
/// [`power_sequential`]`(d, n) = power` by bisection. Dropping the far tail
/// this is `√n·δ' = b(n) + z_power`.
pub fn sample_size_sequential(
    d: f64,
    power: f64,
    ratio: f64,
    alpha: f64,
    tuning: f64,
) -> Result<f64> {
    check_power(power, alpha)?;
    check_sequential(ratio, alpha, tuning)?;
    if d == 0.0 || !d.is_finite() {
        return Err(StatsError::Degenerate(
            "effect size must be non-zero".into(),
        ));
    }
    let f = |n| power_sequential(d, n, ratio, alpha, tuning);
    let hi = bracket_up(&f, 2.0, power, 1e15)?;
    bisect(f, 1e-9, hi, power)
}

/// Minimum detectable standardised effect `d > 0` for the always-valid test
/// analysed at `n_total` units (solves [`power_sequential`] for `d`).
pub fn mde_sequential(
    n_total: f64,
    power: f64,
    ratio: f64,
    alpha: f64,
    tuning: f64,
) -> Result<f64> {
    check_power(power, alpha)?;
    check_sequential(ratio, alpha, tuning)?;
    let f = |d| power_sequential(d, n_total, ratio, alpha, tuning);
    let hi = bracket_up(&f, 1e-3, power, 1e6)?;
    bisect(f, 0.0, hi, power)
}

/// Design effect `1 + (m − 1)·ICC` for clusters of size `m`.
pub fn design_effect(m: f64, icc: f64) -> Result<f64> {
    if !(m >= 1.0) || !(0.0..=1.0).contains(&icc) {
        return Err(StatsError::InvalidInput(
            "need m ≥ 1 and ICC in [0,1]".into(),
        ));
    }
    Ok(1.0 + (m - 1.0) * icc)
}

/// Design effect with unequal cluster sizes: `1 + ((cv² + 1)·m̄ − 1)·ICC`.
pub fn design_effect_unequal(mean_m: f64, cv: f64, icc: f64) -> Result<f64> {
    if !(mean_m >= 1.0) || !(cv >= 0.0) || !(0.0..=1.0).contains(&icc) {
        return Err(StatsError::InvalidInput(
            "need m̄ ≥ 1, cv ≥ 0, ICC in [0,1]".into(),
        ));
    }
    Ok(1.0 + ((cv * cv + 1.0) * mean_m - 1.0) * icc)
}

/// Effective sample size `n / deff`.
pub fn effective_sample_size(n: f64, deff: f64) -> Result<f64> {
    if !(deff >= 1.0) || !(n >= 0.0) {
        return Err(StatsError::InvalidInput("need n ≥ 0 and deff ≥ 1".into()));
    }
    Ok(n / deff)
}

/// Simulation settings for a stepped wedge with one community per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteppedWedgeSim {
    /// Number of communities (one crosses over per step).
    pub communities: usize,
    /// Users per community-period.
    pub users_per_cell: usize,
    /// Intra-cluster correlation of the outcome (cluster random intercept).
    pub icc: f64,
    /// Cluster-by-period random interaction SD (relative to total SD 1).
    pub cluster_period_sd: f64,
    /// Treatment effect in outcome SD units.
    pub effect: f64,
    /// Secular trend per period.
    pub trend: f64,
    /// Number of simulated trials.
    pub sims: usize,
    /// Significance level.
    pub alpha: f64,
    /// RNG seed.
    pub seed: u64,
    /// Community effects in the analysed model (`None`: the default of
    /// [`analyze_rows`], community and period fixed effects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_effects: Option<CommunityEffects>,
}

/// Rejection rates across simulated trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimPower {
    /// Randomisation test.
    pub randomisation: f64,
    /// CR2 with Bell–McCaffrey df.
    pub cr2: f64,
    /// CR2 with Imbens–Kolesár df.
    pub cr2_ik: f64,
    /// CR1 with `G−1` df.
    pub cr1: f64,
    /// Wild cluster restricted bootstrap.
    pub wild_bootstrap: f64,
    /// Ibragimov–Müller.
    pub ibragimov_muller: f64,
    /// Simulations in which every method returned a result.
    pub completed: usize,
    /// Monte Carlo standard error at the randomisation rate.
    pub mc_se: f64,
}

fn std_normal(rng: &mut ChaCha20Rng) -> f64 {
    // Box–Muller
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Rows for one simulated stepped-wedge trial (periods `0..=communities`,
/// community `c` crosses over at a randomly ordered step).
pub fn simulate_stepped_wedge_rows(cfg: &SteppedWedgeSim, rng: &mut ChaCha20Rng) -> Vec<Row> {
    let g = cfg.communities;
    let periods = g + 1;
    let mut order: Vec<usize> = (0..g).collect();
    for i in (1..g).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    let sd_c = cfg.icc.sqrt();
    let sd_e = (1.0 - cfg.icc).max(0.0).sqrt();
    let mut rows = Vec::with_capacity(g * periods * cfg.users_per_cell);
    for (c, &step) in order.iter().enumerate() {
        let a = sd_c * std_normal(rng);
        for t in 0..periods {
            let cp = cfg.cluster_period_sd * std_normal(rng);
            let treated = t > step;
            for _ in 0..cfg.users_per_cell {
                let y = a
                    + cp
                    + cfg.trend * t as f64
                    + if treated { cfg.effect } else { 0.0 }
                    + sd_e * std_normal(rng);
                rows.push(Row {
                    cluster: format!("c{c:03}"),
                    period: Some(t as i64),
                    arm: None,
                    treated: Some(treated),
                    value: y,
                    covariate: None,
                    stratum: None,
                });
            }
        }
    }
    rows
}

/// Simulation-based power (or size, with `effect = 0`) of every few-community
/// method on a stepped wedge, seeded.
pub fn simulate_stepped_wedge_power(cfg: &SteppedWedgeSim) -> Result<SimPower> {
    if cfg.communities < 2 || cfg.users_per_cell == 0 || cfg.sims == 0 {
        return Err(StatsError::InvalidInput(
            "need ≥ 2 communities, ≥ 1 user per cell, ≥ 1 sim".into(),
        ));
    }
    check_alpha(cfg.alpha)?;
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
    let design = RowsDesign {
        kind: DesignKind::SteppedWedge,
        control_arm: "control".into(),
        community_effects: cfg.community_effects,
        alternative: Alternative::TwoSided,
        max_enumerate: 100_000,
        randomisation_draws: 999,
        wild_bootstrap_draws: 999,
        seed: cfg.seed,
    };
    let (mut ri, mut c2, mut ik, mut c1, mut wb, mut im, mut done) = (0, 0, 0, 0, 0, 0, 0usize);
    for _ in 0..cfg.sims {
        let rows = simulate_stepped_wedge_rows(cfg, &mut rng);
        let out = analyze_rows(&RowsInput {
            rows,
            design: design.clone(),
        })?;
        let (Some(r), Some(a), Some(k), Some(b), Some(w), Some(Some(i))) = (
            out.randomisation.result,
            out.cr2.and_then(|o| o.result),
            out.cr2_ik.and_then(|o| o.result),
            out.cr1.and_then(|o| o.result),
            out.wild_bootstrap.and_then(|o| o.result),
            out.ibragimov_muller.map(|o| o.result),
        ) else {
            continue;
        };
        done += 1;
        ri += usize::from(r.p_value <= cfg.alpha);
        c2 += usize::from(a.p_value <= cfg.alpha);
        ik += usize::from(k.p_value <= cfg.alpha);
        c1 += usize::from(b.p_value <= cfg.alpha);
        wb += usize::from(w.p_value <= cfg.alpha);
        im += usize::from(i.p_value <= cfg.alpha);
    }
    if done == 0 {
        return Err(StatsError::Degenerate(
            "no simulated trial could be analysed".into(),
        ));
    }
    let d = done as f64;
    let rr = ri as f64 / d;
    Ok(SimPower {
        randomisation: rr,
        cr2: c2 as f64 / d,
        cr2_ik: ik as f64 / d,
        cr1: c1 as f64 / d,
        wild_bootstrap: wb as f64 / d,
        ibragimov_muller: im as f64 / d,
        completed: done,
        mc_se: (rr * (1.0 - rr) / d).sqrt(),
    })
}

#[cfg(test)]
#[path = "power_tests.rs"]
mod tests;
