//! Multiple-testing corrections over a family of m hypotheses.
//!
//! Holm–Bonferroni step-down (Holm 1979, Scand. J. Statist. 6:65–70): with
//! p-values sorted p_(1) ≤ … ≤ p_(m), p̃_(i) = max_{j≤i} min(1, (m − j + 1) p_(j)).
//! Benjamini–Hochberg step-up (1995, JRSS-B 57:289–300):
//! p̃_(i) = min_{j≥i} min(1, m p_(j)/j). Both match `statsmodels`'
//! `multipletests(method="holm" | "fdr_bh")`.
//!
//! Adjusted intervals: Holm uses Bonferroni-level intervals (1 − α/m), which
//! are simultaneous and consistent with Holm's rejections' direction; BH uses
//! the false-coverage-rate intervals of Benjamini & Yekutieli (2005, JASA
//! 100:71–81) at level 1 − R·α/m, R = number of BH rejections (R ≥ 1 used
//! when nothing is rejected).

use crate::{Result, StatsError};

fn check(p: &[f64]) -> Result<()> {
    if p.iter().any(|x| !(0.0..=1.0).contains(x)) {
        return Err(StatsError::InvalidInput(
            "p-values must lie in [0, 1]".into(),
        ));
    }
    Ok(())
}

fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    idx
}

/// Holm–Bonferroni adjusted p-values (same order as the input).
pub fn holm(p: &[f64]) -> Result<Vec<f64>> {
    check(p)?;
    let m = p.len();
    let idx = order(p);
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let v = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(v);
        out[i] = running;
    }
    Ok(out)
}

/// Benjamini–Hochberg adjusted p-values (same order as the input).
pub fn benjamini_hochberg(p: &[f64]) -> Result<Vec<f64>> {
    check(p)?;
    let m = p.len();
    let idx = order(p);
    let mut out = vec![0.0; m];
    let mut running: f64 = 1.0;
    for (rank, &i) in idx.iter().enumerate().rev() {
        let v = (m as f64 * p[i] / (rank + 1) as f64).min(1.0);
        running = running.min(v);
        out[i] = running;
    }
    Ok(out)
}

/// Per-hypothesis α for adjusted intervals: Holm → α/m.
pub fn holm_interval_alpha(alpha: f64, m: usize) -> f64 {
    alpha / m.max(1) as f64
}

/// Per-hypothesis α for BH false-coverage-rate intervals: R·α/m.
pub fn bh_interval_alpha(alpha: f64, adjusted: &[f64]) -> f64 {
    let m = adjusted.len().max(1);
    let r = adjusted.iter().filter(|&&q| q <= alpha).count().max(1);
    alpha * r as f64 / m as f64
}
