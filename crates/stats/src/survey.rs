//! Survey scales: reliability and between-arm comparison of scale scores.
//!
//! * Cronbach's alpha (Cronbach 1951):
//!   `α = k/(k−1) · (1 − Σ_i s_i² / s_T²)` over `k` items, `s_T²` the variance
//!   of the total score.
//! * Feldt (1965) interval: `(1−ρ)/(1−α̂) ~ F(n−1, (n−1)(k−1))`, so
//!   `[1 − (1−α̂)·F_{1−γ/2}, 1 − (1−α̂)·F_{γ/2}]` (as `psych::alpha.ci`).
//! * Item-total correlations: uncorrected (item vs total) and corrected (item
//!   vs the total of the other items), plus alpha-if-item-deleted.
//! * Scale comparison between arms: Welch's t-test (Welch 1947,
//!   Welch–Satterthwaite df) and Mann–Whitney U
//!   ([`crate::nonparametric::mann_whitney`]).

// `!(x > 0.0)` is used on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, FisherSnedecor};

use crate::cluster::t_two_sided;
use crate::nonparametric::{mann_whitney, MannWhitney, MwMethod};
use crate::randomization::Alternative;
use crate::{Result, StatsError};

/// Per-item diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemStat {
    /// Item index (column).
    pub item: usize,
    /// Pearson correlation of the item with the total score.
    pub item_total_r: f64,
    /// Correlation of the item with the total of the other items.
    pub corrected_item_total_r: Option<f64>,
    /// Alpha of the scale without this item (needs `k ≥ 3`).
    pub alpha_if_deleted: Option<f64>,
}

/// Cronbach's alpha with a Feldt confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CronbachAlpha {
    /// `α̂`.
    pub alpha: f64,
    /// Number of items `k`.
    pub items: usize,
    /// Number of complete respondents `n`.
    pub n: usize,
    /// Feldt interval at `level`.
    pub ci: (f64, f64),
    /// Confidence level.
    pub level: f64,
    /// Item diagnostics.
    pub item_stats: Vec<ItemStat>,
}

fn var(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
}

fn corr(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    let d = (saa * sbb).sqrt();
    (d > 0.0).then(|| sab / d)
}

fn alpha_of(cols: &[Vec<f64>]) -> Option<f64> {
    let k = cols.len() as f64;
    let n = cols[0].len();
    let total: Vec<f64> = (0..n).map(|i| cols.iter().map(|c| c[i]).sum()).collect();
    let st = var(&total);
    if !(st > 0.0) {
        return None;
    }
    let si: f64 = cols.iter().map(|c| var(c)).sum();
    Some(k / (k - 1.0) * (1.0 - si / st))
}

/// Cronbach's alpha of `responses` (one row per respondent, one column per
/// item; rows must be complete) with a Feldt interval at `level`.
///
/// Errors: fewer than 2 items or 2 respondents, ragged rows, non-finite
/// values, or a constant total score.
pub fn cronbach_alpha(responses: &[Vec<f64>], level: f64) -> Result<CronbachAlpha> {
    let n = responses.len();
    if n < 2 {
        return Err(StatsError::Degenerate(
            "alpha needs at least two respondents".into(),
        ));
    }
    let k = responses[0].len();
    if k < 2 {
        return Err(StatsError::Degenerate(
            "alpha needs at least two items".into(),
        ));
    }
    if responses
        .iter()
        .any(|r| r.len() != k || r.iter().any(|v| !v.is_finite()))
    {
        return Err(StatsError::InvalidInput(
            "ragged or non-finite responses".into(),
        ));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(StatsError::InvalidInput("level must be in (0,1)".into()));
    }
    let cols: Vec<Vec<f64>> = (0..k)
        .map(|j| responses.iter().map(|r| r[j]).collect())
        .collect();
    let alpha = alpha_of(&cols)
        .ok_or_else(|| StatsError::Degenerate("total score has zero variance".into()))?;
    let (nf, kf) = (n as f64, k as f64);
    let f = FisherSnedecor::new(nf - 1.0, (nf - 1.0) * (kf - 1.0))
        .map_err(|e| StatsError::Degenerate(format!("F distribution: {e}")))?;
    let g = (1.0 - level) / 2.0;
    let lo = 1.0 - (1.0 - alpha) * f.inverse_cdf(1.0 - g);
    let hi = 1.0 - (1.0 - alpha) * f.inverse_cdf(g);
    let total: Vec<f64> = (0..n).map(|i| cols.iter().map(|c| c[i]).sum()).collect();
    let item_stats = (0..k)
        .map(|j| {
            let rest: Vec<f64> = total.iter().zip(&cols[j]).map(|(t, x)| t - x).collect();
            let others: Vec<Vec<f64>> = cols
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != j)
                .map(|(_, c)| c.clone())
                .collect();
            ItemStat {
                item: j,
                item_total_r: corr(&cols[j], &total).unwrap_or(0.0),
                corrected_item_total_r: corr(&cols[j], &rest),
                alpha_if_deleted: if k >= 3 { alpha_of(&others) } else { None },
            }
        })
        .collect();
    Ok(CronbachAlpha {
        alpha,
        items: k,
        n,
        ci: (lo, hi),
        level,
        item_stats,
    })
}

/// Welch's unequal-variance t-test of `mean(b) − mean(a)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Welch {
    /// `x̄_b − x̄_a`.
    pub difference: f64,
    /// `√(s_a²/n_a + s_b²/n_b)`.
    pub se: f64,
    /// `difference / se`.
    pub t: f64,
    /// Welch–Satterthwaite df `(v_a+v_b)²/(v_a²/(n_a−1) + v_b²/(n_b−1))`, `v = s²/n`.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// 95% interval.
    pub ci95: (f64, f64),
}

/// Welch's t-test (two-sided) of `b` against `a`.
pub fn welch(a: &[f64], b: &[f64]) -> Result<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return Err(StatsError::Degenerate(
            "Welch needs n ≥ 2 in each arm".into(),
        ));
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return Err(StatsError::InvalidInput("non-finite value".into()));
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let ma = a.iter().sum::<f64>() / na;
    let mb = b.iter().sum::<f64>() / nb;
    let va = var(a) / na;
    let vb = var(b) / nb;
    let se2 = va + vb;
    if !(se2 > 0.0) {
        return Err(StatsError::Degenerate(
            "both arms have zero variance".into(),
        ));
    }
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let se = se2.sqrt();
    let d = mb - ma;
    let t = d / se;
    let (p, crit) = t_two_sided(t, df)?;
    Ok(Welch {
        difference: d,
        se,
        t,
        df,
        p_value: p,
        ci95: (d - crit * se, d + crit * se),
    })
}

/// Scale scores compared between arms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleComparison {
    /// Welch t-test of treatment − control.
    pub welch: Result<Welch>,
    /// Mann–Whitney U of treatment vs control (two-sided, auto method).
    pub mann_whitney: Result<MannWhitney>,
}

/// Compare scale scores (e.g. per-respondent means of Likert items) between
/// `control` and `treatment` with Welch and Mann–Whitney.
pub fn compare_scale_scores(control: &[f64], treatment: &[f64]) -> ScaleComparison {
    ScaleComparison {
        welch: welch(control, treatment),
        mann_whitney: mann_whitney(treatment, control, Alternative::TwoSided, MwMethod::Auto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_survey.json");

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn alpha_feldt_item_total_match_reference() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["alpha"].as_array().unwrap();
        assert!(cases.len() >= 50);
        for c in cases {
            let resp: Vec<Vec<f64>> = serde_json::from_value(c["responses"].clone()).unwrap();
            let r = cronbach_alpha(&resp, 0.95).unwrap();
            let name = c["name"].as_str().unwrap();
            assert!(rel(r.alpha, c["alpha"].as_f64().unwrap()) < 1e-9, "{name}");
            assert!(
                rel(r.ci.0, c["feldt_lower"].as_f64().unwrap()) < 1e-8,
                "{name} lo {} {}",
                r.ci.0,
                c["feldt_lower"]
            );
            assert!(
                rel(r.ci.1, c["feldt_upper"].as_f64().unwrap()) < 1e-8,
                "{name} hi {} {}",
                r.ci.1,
                c["feldt_upper"]
            );
            let itr: Vec<f64> = serde_json::from_value(c["item_total_r"].clone()).unwrap();
            let citr: Vec<f64> =
                serde_json::from_value(c["corrected_item_total_r"].clone()).unwrap();
            let aid: Vec<f64> = serde_json::from_value(c["alpha_if_deleted"].clone()).unwrap();
            for (j, s) in r.item_stats.iter().enumerate() {
                assert!(rel(s.item_total_r, itr[j]) < 1e-9);
                assert!(rel(s.corrected_item_total_r.unwrap(), citr[j]) < 1e-9);
                assert!(rel(s.alpha_if_deleted.unwrap(), aid[j]) < 1e-9);
            }
        }
    }

    #[test]
    fn welch_and_mw_match_scipy() {
        let v: Value = serde_json::from_str(REF).unwrap();
        for c in v["compare"].as_array().unwrap() {
            let a: Vec<f64> = serde_json::from_value(c["control"].clone()).unwrap();
            let b: Vec<f64> = serde_json::from_value(c["treatment"].clone()).unwrap();
            let r = compare_scale_scores(&a, &b);
            let w = r.welch.unwrap();
            assert!(rel(w.t, c["welch_t"].as_f64().unwrap()) < 1e-9);
            assert!(rel(w.df, c["welch_df"].as_f64().unwrap()) < 1e-9);
            assert!(rel(w.p_value, c["welch_p"].as_f64().unwrap()) < 1e-8);
            let m = r.mann_whitney.unwrap();
            assert!(rel(m.u, c["mw_u"].as_f64().unwrap()) < 1e-12);
            assert!(rel(m.p_value, c["mw_p"].as_f64().unwrap()) < 1e-9);
        }
    }

    #[test]
    fn degenerate_scales() {
        assert!(matches!(
            cronbach_alpha(&[vec![1.0, 2.0]], 0.95),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            cronbach_alpha(&[vec![1.0, 1.0], vec![1.0, 1.0]], 0.95),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            welch(&[1.0, 1.0], &[2.0, 2.0]),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            welch(&[1.0], &[2.0, 3.0]),
            Err(StatsError::Degenerate(_))
        ));
    }
}
