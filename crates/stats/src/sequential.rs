//! Always-valid inference: asymptotic confidence sequences (Waudby-Smith,
//! Arnold, Wu, Wang & Ramdas, "Time-uniform central limit theory and
//! asymptotic confidence sequences", arXiv:2103.06476v7, Thm 2.2 / eq. 155),
//! parameterised as GrowthBook's `SequentialTwoSidedTTest`.
//!
//! With N* the tuning parameter (the sample size at which the sequence is
//! tightest), ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*, n the total units and
//! σ̂² = n·se² the per-unit variance of the estimate:
//!
//! half-width = σ̂ · √( 2(nρ² + 1) / (n²ρ²) · ln(√(nρ² + 1)/α) ),
//!
//! and the always-valid p-value is min(1, 1/E) with the e-value
//! E = exp(ρ² n Δ² / (2 se² (nρ² + 1))) / √(nρ² + 1).

use crate::effects::{check_alpha, Estimate, TestResult};
use crate::{Result, StatsError};

/// ρ for a two-sided confidence sequence tuned to N* units.
pub fn rho(alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / tuning).sqrt()
}

/// Two-sided asymptotic confidence sequence and always-valid p-value.
pub fn two_sided(est: &Estimate, alpha: f64, tuning: f64) -> Result<TestResult> {
    check_alpha(alpha)?;
    if !(tuning > 0.0 && tuning.is_finite()) {
        return Err(StatsError::InvalidInput(format!(
            "sequential_tuning_parameter must be positive, got {tuning}"
        )));
    }
    let n = est.n_total;
    let r = rho(alpha, tuning);
    let r2 = r * r;
    let tr2p1 = n * r2 + 1.0;
    let s2 = est.se * est.se * n;
    let half = s2.sqrt() * (2.0 * tr2p1 * (tr2p1.sqrt() / alpha).ln() / (n * n * r2)).sqrt();
    let z = est.effect / est.se;
    let log_e = r2 * n * z * z / (2.0 * tr2p1) - 0.5 * tr2p1.ln();
    let p = (-log_e).exp().min(1.0);
    Ok(TestResult {
        effect: est.effect,
        se: est.se,
        ci_lower: est.effect - half,
        ci_upper: est.effect + half,
        p_value: p.clamp(0.0, 1.0),
    })
}
