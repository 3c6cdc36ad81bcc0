//! CUPED (regression adjustment on a pre-exposure covariate X) for mean,
//! proportion and ratio metrics, with a single θ pooled within arms.
//!
//! Each arm's value f = h(Ȳ, D̄) − θ X̄ where h is the (linearised) metric:
//! h = Ȳ for means/proportions, Ȳ/D̄ for ratios with linearisation
//! ℓ = (Y − R·D)/D̄. θ is the pooled **within-arm** slope (ANCOVA):
//!
//! θ = Σ_arms S_ℓX,i / Σ_arms S_XX,i  (centred sums within each arm),
//!
//! i.e. for means and proportions the coefficient on X in the OLS fit
//! `y ~ arm + x`, and f_B − f_A is that fit's coefficient on `arm` (checked
//! against statsmodels on unit-level data, `reference/cuped.py`). θ is then
//! treated as fixed. Absolute effect f_B − f_A, relative (f_B − f_A)/|u_A| with
//! u_A the *unadjusted* control value; variance by the delta method on
//! (Ȳ, D̄, X̄) per arm, so Var(f_i) = (σ²_ℓ + θ²σ²_X − 2θσ_ℓX)/n_i, with the
//! exact gradient of (f_B − f_A)/|u_A| for the relative lift. The unit
//! (co)variances of an arm share one divisor ([`moment_divisor`]: n for a
//! proportion, whose Var(Y) is p(1 − p); n − 1 otherwise), so the adjusted
//! variance is never negative.
//!
//! These are **not** GrowthBook gbstats' CUPED conventions: gbstats estimates
//! θ from both arms pooled as one sample (ignoring the arm means) and, for the
//! relative lift, differentiates with −ȳ_B/ȳ_A² (the unadjusted ratio's
//! gradient). The within-arm θ is the textbook regression adjustment
//! (ANCOVA; Lin 2013); both are consistent for the same effect.
//!
//! References: Deng, Xu, Kohavi & Walker (2013) "Improving the Sensitivity of
//! Online Controlled Experiments by Utilizing Pre-Experiment Data", WSDM;
//! Lin (2013) "Agnostic notes on regression adjustments to experimental
//! data", Annals of Applied Statistics 7(1).

use crate::effects::{
    estimate_from_moments, label_err, moment_divisor, value_gradient, ArmMoments, ArmStats,
    Estimate, MetricKind, Scale,
};
use crate::Result;

/// Pooled within-arm θ over two arms' moments (0 when the covariate has no
/// variance): Σ_i S_ℓX,i / Σ_i S_XX,i with centred sums S = divisor·(co)variance,
/// so the divisor convention of [`moment_divisor`] cancels and θ is the OLS
/// slope on X in `y ~ arm + x`.
pub fn pooled_theta(kind: MetricKind, a: &ArmMoments, b: &ArmMoments) -> f64 {
    let mut num = 0.0;
    let mut den = 0.0;
    for m in [a, b] {
        if m.n < 2.0 {
            continue;
        }
        let w = moment_divisor(kind, m.n);
        let g = value_gradient(kind, &m.mean, 0.0);
        let cov_lx = g[0] * m.cov[0][2] + g[1] * m.cov[1][2];
        num += w * cov_lx;
        den += w * m.cov[2][2];
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// A CUPED estimate and the θ it used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CupedEstimate {
    /// Pooled regression coefficient.
    pub theta: f64,
    /// Adjusted estimate.
    pub estimate: Estimate,
}

/// CUPED-adjusted absolute or relative lift of B over A (pooled θ).
pub fn estimate(
    kind: MetricKind,
    a: &ArmStats,
    b: &ArmStats,
    scale: Scale,
) -> Result<CupedEstimate> {
    let ma = ArmMoments::from_stats(kind, a, true).map_err(|e| label_err(e, "control"))?;
    let mb = ArmMoments::from_stats(kind, b, true).map_err(|e| label_err(e, "treatment"))?;
    let theta = pooled_theta(kind, &ma, &mb);
    let estimate = estimate_from_moments(kind, &ma, &mb, theta, scale)?;
    Ok(CupedEstimate { theta, estimate })
}

/// Same as [`estimate`] with a caller-supplied θ.
pub fn estimate_with_theta(
    kind: MetricKind,
    a: &ArmStats,
    b: &ArmStats,
    theta: f64,
    scale: Scale,
) -> Result<Estimate> {
    let ma = ArmMoments::from_stats(kind, a, true).map_err(|e| label_err(e, "control"))?;
    let mb = ArmMoments::from_stats(kind, b, true).map_err(|e| label_err(e, "treatment"))?;
    estimate_from_moments(kind, &ma, &mb, theta, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_covariate_reduces_variance() {
        // y = x + small noise: CUPED se much smaller than plain
        let a = ArmStats::new(100.0, 1000.0, 10_100.0).with_covariate(990.0, 9900.0, 9990.0);
        let b = ArmStats::new(100.0, 1050.0, 11_125.0).with_covariate(1000.0, 10_100.0, 10_590.0);
        let plain = crate::effects::estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap();
        let c = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap();
        assert!(c.estimate.se <= plain.se * 1.0001, "{c:?} {plain:?}");
    }

    /// Issue #10 item 25: two arms of 20 units with 4 ones, a 0/1 covariate
    /// with 4 ones, 3 and 4 units with both. Typed `proportion`, Var(Y) used
    /// divisor n while Var(X) and Cov(X, Y) used n − 1, so the adjusted
    /// variance of the treatment arm came out negative ("treatment arm has
    /// zero variance"). Every moment of a proportion now uses divisor n.
    #[test]
    fn proportion_minimal_input_has_positive_variance() {
        let a = ArmStats::new(20.0, 4.0, 4.0).with_covariate(4.0, 4.0, 3.0);
        let b = ArmStats::new(20.0, 4.0, 4.0).with_covariate(4.0, 4.0, 4.0);
        for kind in [MetricKind::Mean, MetricKind::Proportion] {
            for scale in [Scale::Absolute, Scale::Relative] {
                let c = estimate(kind, &a, &b, scale)
                    .unwrap_or_else(|e| panic!("{kind:?} {scale:?}: {e}"));
                assert!(c.estimate.se > 0.0 && c.estimate.se.is_finite(), "{c:?}");
                // θ is the pooled within-arm OLS slope: (2.2 + 3.2) / (3.2 + 3.2)
                assert!((c.theta - 0.84375).abs() < 1e-15, "{c:?}");
            }
        }
    }

    /// Sums no set of units can produce (|Cov(Y, X)| > SD(Y)·SD(X)) are
    /// invalid input, not a misleading "zero variance".
    #[test]
    fn impossible_covariate_sums_are_invalid_input() {
        let a = ArmStats::new(20.0, 4.0, 4.0).with_covariate(4.0, 4.0, 3.0);
        let b = ArmStats::new(20.0, 4.0, 4.0).with_covariate(4.0, 4.0, 9.0);
        for kind in [MetricKind::Mean, MetricKind::Proportion] {
            let e = estimate(kind, &a, &b, Scale::Absolute).unwrap_err();
            assert!(
                matches!(&e, crate::StatsError::InvalidInput(m) if m.starts_with("treatment arm: xy_sum is inconsistent")),
                "{e}"
            );
        }
    }
}

#[cfg(test)]
#[path = "cuped_reference_tests.rs"]
mod reference_tests;
