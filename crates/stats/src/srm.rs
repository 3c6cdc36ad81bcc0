//! Sample-ratio mismatch (SRM) and pre-exposure covariate balance checks.
//!
//! SRM: Pearson chi-square goodness of fit of observed units per arm o_i
//! against expected e_i = N·w_i/Σw: X² = Σ (o_i − e_i)²/e_i with k − 1 df,
//! p = P(χ²_{k−1} > X²); flagged when p < 0.001 (Fabijan et al. (2019),
//! "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments", KDD).
//!
//! Balance: Welch t-test on the pre-exposure covariate X between each
//! treatment arm and control (a randomisation check; a small p suggests the
//! assignment is not independent of history).

use crate::dist;
use crate::effects::{self, Alternative, ArmStats, MetricKind, Scale};
use crate::{Result, StatsError};
use serde::Serialize;

/// SRM threshold on the p-value.
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// Result of the SRM chi-square test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SrmResult {
    /// Pearson X² statistic.
    pub statistic: f64,
    /// Degrees of freedom (arms − 1).
    pub df: f64,
    /// p-value P(χ²_df > X²).
    pub p_value: f64,
    /// Expected units per arm under the allocation weights.
    pub expected: Vec<f64>,
    /// True when p < [`SRM_P_THRESHOLD`].
    pub mismatch: bool,
}

/// Chi-square goodness-of-fit test of `users` against allocation `weights`.
pub fn check(users: &[f64], weights: &[f64]) -> Result<SrmResult> {
    if users.len() != weights.len() {
        return Err(StatsError::InvalidInput(format!(
            "users has {} entries but weights has {}",
            users.len(),
            weights.len()
        )));
    }
    if users.len() < 2 {
        return Err(StatsError::InvalidInput(
            "SRM needs at least two arms".into(),
        ));
    }
    if users.iter().any(|u| !(u.is_finite() && *u >= 0.0)) {
        return Err(StatsError::InvalidInput(
            "users must be non-negative counts".into(),
        ));
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(StatsError::InvalidInput("weights must be positive".into()));
    }
    let total: f64 = users.iter().sum();
    if total <= 0.0 {
        return Err(StatsError::Degenerate("no users in any arm".into()));
    }
    let wsum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| total * w / wsum).collect();
    let statistic: f64 = users
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    let df = (users.len() - 1) as f64;
    let p_value = dist::chi2_sf(statistic, df).clamp(0.0, 1.0);
    Ok(SrmResult {
        statistic,
        df,
        p_value,
        expected,
        mismatch: p_value < SRM_P_THRESHOLD,
    })
}

/// Welch test of covariate balance: compares X̄ of treatment vs control.
/// Returns (difference in X̄, two-sided p-value).
pub fn covariate_balance(control: &ArmStats, treatment: &ArmStats) -> Result<(f64, f64)> {
    let as_x = |s: &ArmStats| -> Result<ArmStats> {
        match (s.x_sum, s.x_sum_squares) {
            (Some(x), Some(xx)) => Ok(ArmStats::new(s.n, x, xx)),
            _ => Err(StatsError::InvalidInput(
                "balance check needs x_sum and x_sum_squares".into(),
            )),
        }
    };
    let est = effects::estimate(
        MetricKind::Mean,
        &as_x(control)?,
        &as_x(treatment)?,
        Scale::Absolute,
    )?;
    let r = effects::t_test(&est, 0.05, Alternative::TwoSided)?;
    Ok((est.effect, r.p_value))
}
