//! CUPED within strata: the pre-exposure covariate X of a blocked design
//! (members randomised within strata), used in the within-stratum
//! comparison.
//!
//! Cells are (stratum, arm). A stratum is used when both arms have at
//! least two units in it (the others are left out and named). With
//! centred sums S within each used cell:
//!
//! * θ = Σ_cells S_YX / Σ_cells S_XX, the pooled within-cell slope: the
//!   coefficient on X in the OLS fit `y ~ C(stratum × arm) + x` (0 when X
//!   has no variance within cells);
//! * per stratum s, Δ_s = (Ȳ_B,s − θ X̄_B,s) − (Ȳ_A,s − θ X̄_A,s), with
//!   variance V_B,s/n_B,s + V_A,s/n_A,s where V is the variance of Y − θX
//!   within the cell with the divisor of its arm's moments
//!   ([`crate::effects::moment_divisor`]: n for a proportion, n − 1
//!   otherwise), as the hash CUPED;
//! * the effect Σ w_s Δ_s with w_s = n_s / N (n_s both arms' units in the
//!   stratum, N over the used strata), variance Σ w_s² Var(Δ_s) (the
//!   stratified variance, conditional on the strata's sizes), referred to
//!   Student t with the Welch–Satterthwaite df of the stratified variance
//!   as the post-stratified estimate of `blocked_users` is: df = (Σ k)² /
//!   Σ k²/(n_ca − 1), k_ca = w_s² V_ca/n_ca (two-sided p, 95% interval).
//!   θ is held fixed.
//!
//! Checked against `reference/cuped_strata.py` (statsmodels OLS for θ, the
//! formula above with numpy), `cuped_strata_reference_tests.rs`.

use crate::dist::{t_ppf, t_sf};
use crate::effects::{moment_divisor, MetricKind};
use crate::{Result, StatsError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One unit: its stratum, arm (treatment or control), outcome and
/// pre-exposure covariate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StratumRow<'a> {
    pub stratum: &'a str,
    pub treated: bool,
    pub y: f64,
    pub x: f64,
}

/// The CUPED within-strata estimate of treatment minus control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrataCuped {
    pub estimate: f64,
    pub se: f64,
    /// Welch–Satterthwaite degrees of freedom of the stratified variance.
    pub df: f64,
    pub ci95: [f64; 2],
    pub p_value: f64,
    /// The pooled within-cell slope on the covariate.
    pub theta: f64,
    /// Strata used.
    pub strata: usize,
    /// Strata left out (fewer than two units in an arm).
    pub left_out: Vec<String>,
}

#[derive(Default)]
struct Cell {
    y: Vec<f64>,
    x: Vec<f64>,
}

impl Cell {
    fn n(&self) -> f64 {
        self.y.len() as f64
    }
    fn means(&self) -> (f64, f64) {
        (
            self.y.iter().sum::<f64>() / self.n(),
            self.x.iter().sum::<f64>() / self.n(),
        )
    }
    /// Centred sums (S_YX, S_XX).
    fn sums(&self) -> (f64, f64) {
        let (my, mx) = self.means();
        self.y
            .iter()
            .zip(&self.x)
            .fold((0.0, 0.0), |(yx, xx), (y, x)| {
                (yx + (y - my) * (x - mx), xx + (x - mx) * (x - mx))
            })
    }
    /// The adjusted mean and the variance of Y − θX over n.
    fn adjusted(&self, kind: MetricKind, theta: f64) -> (f64, f64) {
        let (my, mx) = self.means();
        let m = my - theta * mx;
        let ss: f64 = self
            .y
            .iter()
            .zip(&self.x)
            .map(|(y, x)| {
                let r = y - theta * x - m;
                r * r
            })
            .sum();
        (m, ss / moment_divisor(kind, self.n()) / self.n())
    }
}

/// The CUPED within-strata estimate (see the module docs). Refused when no
/// stratum has two units in each arm, a value is not finite, or the
/// adjusted variance is zero.
pub fn within_strata(kind: MetricKind, rows: &[StratumRow<'_>]) -> Result<StrataCuped> {
    if kind == MetricKind::Ratio {
        return Err(StatsError::InvalidInput(
            "CUPED within strata takes mean and proportion metrics".into(),
        ));
    }
    let mut cells: BTreeMap<&str, [Cell; 2]> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if !r.y.is_finite() || !r.x.is_finite() {
            return Err(StatsError::InvalidInput(format!(
                "row {i}: value and covariate must be finite"
            )));
        }
        let c = &mut cells.entry(r.stratum).or_default()[usize::from(r.treated)];
        c.y.push(r.y);
        c.x.push(r.x);
    }
    let (used, left): (Vec<_>, Vec<_>) = cells
        .into_iter()
        .partition(|(_, [a, b])| a.y.len() >= 2 && b.y.len() >= 2);
    if used.is_empty() {
        return Err(StatsError::Degenerate(
            "no stratum has two or more units in each arm".into(),
        ));
    }
    let (syx, sxx) = used
        .iter()
        .flat_map(|(_, cs)| cs.iter())
        .map(Cell::sums)
        .fold((0.0, 0.0), |(a, b), (yx, xx)| (a + yx, b + xx));
    let theta = if sxx > 0.0 { syx / sxx } else { 0.0 };
    let total: f64 = used.iter().map(|(_, [a, b])| a.n() + b.n()).sum();
    let (mut estimate, mut var, mut df_den) = (0.0, 0.0, 0.0);
    for (_, [a, b]) in &used {
        let w = (a.n() + b.n()) / total;
        let (ma, va) = a.adjusted(kind, theta);
        let (mb, vb) = b.adjusted(kind, theta);
        estimate += w * (mb - ma);
        let (ka, kb) = (w * w * va, w * w * vb);
        var += ka + kb;
        df_den += ka * ka / (a.n() - 1.0) + kb * kb / (b.n() - 1.0);
    }
    if var <= 0.0 || !var.is_finite() {
        return Err(StatsError::Degenerate(
            "the covariate-adjusted values have zero variance in every stratum".into(),
        ));
    }
    let se = var.sqrt();
    let df = var * var / df_den;
    let t = t_ppf(0.975, df);
    Ok(StrataCuped {
        estimate,
        se,
        df,
        ci95: [estimate - t * se, estimate + t * se],
        p_value: 2.0 * t_sf((estimate / se).abs(), df),
        theta,
        strata: used.len(),
        left_out: left.into_iter().map(|(s, _)| s.to_string()).collect(),
    })
}

#[cfg(test)]
#[path = "cuped_strata_reference_tests.rs"]
mod reference_tests;
