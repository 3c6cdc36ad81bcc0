//! Post-stratification by community (strata of sufficient statistics).
//!
//! For strata k = 1..K with n_k units (both arms) and N = Σ n_k, weights
//! ν_k = n_k/N and per-stratum mean vectors A_k = (z̄_A,k, z̄_B,k) (see
//! [`crate::effects::ArmMoments`]), the post-stratified means are
//! μ = Σ ν_k A_k with covariance
//!
//! Cov(μ) = Σ ν_k² Cov(A_k) + (1/N) Σ ν_k (A_k − μ)(A_k − μ)ᵀ,
//!
//! the second term accounting for the multinomial variability of the stratum
//! shares (= (1/N)·A(diag ν − ννᵀ)Aᵀ, as gbstats' post-stratification). The
//! effect g(μ) (absolute or relative, mean/proportion/ratio) and its variance
//! follow by the delta method; inference uses the normal distribution (df = ∞).
//!
//! References: Miratrix, Sekhon & Yu (2013) "Adjusting treatment effect
//! estimates by post-stratification in randomized experiments", JRSS-B 75;
//! GrowthBook gbstats `frequentist/post_strat.py`.

use crate::effects::{
    check_arm, delta6, label_err, ArmMoments, ArmStats, Estimate, MetricKind, Scale,
};
use crate::{Result, StatsError};

/// One stratum: control and treatment statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Stratum<'a> {
    /// Stratum label (for error messages).
    pub name: &'a str,
    /// Control arm statistics within the stratum.
    pub control: &'a ArmStats,
    /// Treatment arm statistics within the stratum.
    pub treatment: &'a ArmStats,
}

/// Post-stratified estimate of the lift of treatment over control.
pub fn estimate(kind: MetricKind, strata: &[Stratum<'_>], scale: Scale) -> Result<Estimate> {
    if strata.is_empty() {
        return Err(StatsError::InvalidInput("no strata".into()));
    }
    let mut cells = Vec::with_capacity(strata.len());
    let mut n_tot = 0.0;
    for s in strata {
        let a = ArmMoments::from_stats(kind, s.control, false)
            .map_err(|e| label_err(e, &format!("stratum {:?} control", s.name)))?;
        let b = ArmMoments::from_stats(kind, s.treatment, false)
            .map_err(|e| label_err(e, &format!("stratum {:?} treatment", s.name)))?;
        n_tot += a.n + b.n;
        cells.push((a, b));
    }
    // pooled arms must be estimable at all
    let pooled = |pick: fn(&(ArmMoments, ArmMoments)) -> &ArmMoments| -> f64 {
        cells.iter().map(|c| pick(c).n).sum::<f64>()
    };
    if pooled(|c| &c.0) < 2.0 {
        return Err(StatsError::Degenerate("control arm has n < 2".into()));
    }
    if pooled(|c| &c.1) < 2.0 {
        return Err(StatsError::Degenerate("treatment arm has n < 2".into()));
    }
    let mut mu = [0.0; 6];
    let mut alphas = Vec::with_capacity(cells.len());
    for (a, b) in &cells {
        let nu = (a.n + b.n) / n_tot;
        let ak = [
            a.mean[0], a.mean[1], a.mean[2], b.mean[0], b.mean[1], b.mean[2],
        ];
        for i in 0..6 {
            mu[i] += nu * ak[i];
        }
        alphas.push((nu, ak));
    }
    let mut cov = [[0.0; 6]; 6];
    for ((a, b), (nu, ak)) in cells.iter().zip(&alphas) {
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += nu * nu * a.cov[i][j] / a.n;
                cov[i + 3][j + 3] += nu * nu * b.cov[i][j] / b.n;
            }
        }
        for i in 0..6 {
            for j in 0..6 {
                cov[i][j] += nu * (ak[i] - mu[i]) * (ak[j] - mu[j]) / n_tot;
            }
        }
    }
    // zero-variance checks on the pooled arms
    let sum_arm = |pick: usize| -> ArmMoments {
        let mut m = ArmMoments {
            n: 0.0,
            mean: [mu[pick * 3], mu[pick * 3 + 1], mu[pick * 3 + 2]],
            cov: [[0.0; 3]; 3],
        };
        for c in &cells {
            m.n += if pick == 0 { c.0.n } else { c.1.n };
        }
        for i in 0..3 {
            for j in 0..3 {
                m.cov[i][j] = cov[pick * 3 + i][pick * 3 + j] * m.n;
            }
        }
        m
    };
    check_arm(&sum_arm(0), kind, "control", 0.0)?;
    check_arm(&sum_arm(1), kind, "treatment", 0.0)?;
    let (effect, var, base) = delta6(kind, &mu, &cov, 0.0, scale)?;
    if var.is_nan() || var <= 0.0 {
        return Err(StatsError::Degenerate("estimate has zero variance".into()));
    }
    Ok(Estimate {
        effect,
        se: var.sqrt(),
        df: f64::INFINITY,
        n_total: n_tot,
        baseline_abs: base,
    })
}
