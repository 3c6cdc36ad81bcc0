//! Bayesian analysis of the lift with a Gaussian likelihood (GrowthBook's
//! `EffectBayesianABTest`): data Δ̂ ~ N(Δ, se²); prior flat or N(m₀, τ²).
//!
//! Posterior precision 1/v = 1/se² + 1/τ² (flat: 1/se²), posterior mean
//! μ = v (Δ̂/se² + m₀/τ²) (flat: Δ̂). Chance to beat control P(Δ > 0) = Φ(μ/σ);
//! credible interval μ ± z_{1−α/2}σ; risk (expected loss) of shipping control
//! E[max(Δ, 0)] = μΦ(μ/σ) + σφ(μ/σ), of shipping treatment
//! E[max(−Δ, 0)] = −μΦ(−μ/σ) + σφ(μ/σ).
//!
//! Priors are specified on the relative scale (as gbstats' default); for an
//! absolute lift they are rescaled by the control value: m₀|u_A|, τ|u_A|.
//!
//! References: Gelman et al., *Bayesian Data Analysis* (3rd ed.) §2.5;
//! GrowthBook gbstats `bayesian/tests.py`.

use crate::dist;
use crate::effects::{check_alpha, Estimate, Scale};
use crate::{Result, StatsError};
use serde::{Deserialize, Serialize};

/// Normal prior on the relative lift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prior {
    /// Prior mean m₀.
    pub mean: f64,
    /// Prior standard deviation τ (> 0).
    pub stddev: f64,
}

/// Posterior summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BayesResult {
    /// Posterior mean of the lift.
    pub effect: f64,
    /// Posterior standard deviation.
    pub se: f64,
    /// Lower bound of the 1 − α equal-tailed credible interval.
    pub ci_lower: f64,
    /// Upper bound.
    pub ci_upper: f64,
    /// P(Δ > 0 | data).
    pub chance_to_win: f64,
    /// Expected loss if control is shipped, E[max(Δ, 0)].
    pub risk_control: f64,
    /// Expected loss if treatment is shipped, E[max(−Δ, 0)].
    pub risk_treatment: f64,
}

/// Gaussian posterior on the lift. `prior = None` means flat.
pub fn posterior(
    est: &Estimate,
    prior: Option<&Prior>,
    scale: Scale,
    alpha: f64,
) -> Result<BayesResult> {
    check_alpha(alpha)?;
    let v_data = est.se * est.se;
    let (mu, var) = match prior {
        None => (est.effect, v_data),
        Some(p) => {
            if !(p.stddev > 0.0 && p.stddev.is_finite() && p.mean.is_finite()) {
                return Err(StatsError::InvalidInput(format!(
                    "prior stddev must be positive and finite, got {}",
                    p.stddev
                )));
            }
            let k = match scale {
                Scale::Relative => 1.0,
                Scale::Absolute => est.baseline_abs,
            };
            let (m0, t2) = (p.mean * k, (p.stddev * k) * (p.stddev * k));
            if t2 <= 0.0 {
                return Err(StatsError::Degenerate(
                    "control mean is zero; relative prior cannot be scaled".into(),
                ));
            }
            let prec = 1.0 / v_data + 1.0 / t2;
            ((est.effect / v_data + m0 / t2) / prec, 1.0 / prec)
        }
    };
    let sd = var.sqrt();
    if !(sd > 0.0 && sd.is_finite()) {
        return Err(StatsError::Degenerate("posterior has zero variance".into()));
    }
    let z = mu / sd;
    let q = dist::norm_ppf(1.0 - alpha / 2.0);
    let pdf = dist::norm_pdf(z);
    Ok(BayesResult {
        effect: mu,
        se: sd,
        ci_lower: mu - q * sd,
        ci_upper: mu + q * sd,
        chance_to_win: dist::norm_cdf(z),
        risk_control: (mu * dist::norm_cdf(z) + sd * pdf).max(0.0),
        risk_treatment: (-mu * dist::norm_cdf(-z) + sd * pdf).max(0.0),
    })
}
