//! Treatment effects from per-arm sufficient statistics: mean, proportion and
//! ratio metrics; absolute and relative lift; Welch t-tests (two-sided and
//! one-sided) with Welch–Satterthwaite degrees of freedom.
//!
//! Every estimator here is a smooth function g of the arms' sample means, so a
//! single delta-method core serves means, proportions, ratios, CUPED
//! ([`crate::cuped`]) and post-stratification ([`crate::poststrat`]):
//! Var(g(z̄)) ≈ ∇gᵀ Σ ∇g, where Σ is the covariance of the means.
//!
//! Conventions (GrowthBook `gbstats`, re-derived from the formulas; CUPED's
//! θ and relative variance differ from gbstats, see [`crate::cuped`]):
//! - unit variance: sample variance with divisor n − 1 for means and for the
//!   components of ratios; p(1 − p) for proportions, whose covariate moments
//!   (CUPED) use the same divisor n ([`moment_divisor`]);
//! - absolute lift Δ = μ_B − μ_A; relative lift Δ / |μ_A| (the absolute value
//!   keeps "positive = treatment higher" when the baseline is negative; its
//!   delta-method variance Var(μ̂_B)/μ_A² + Var(μ̂_A) μ_B²/μ_A⁴ is unchanged);
//! - Welch–Satterthwaite df ν = (s_A + s_B)² / (s_A²/(n_A−1) + s_B²/(n_B−1)) with
//!   s_i = Var(μ̂_i) on the absolute scale, used for both scales;
//! - ratio metric R = ΣM/ΣD per arm with Var(R̂) = (σ²_M/D̄² + σ²_D M̄²/D̄⁴ −
//!   2σ_MD M̄/D̄³)/n (delta method).
//!
//! References: Welch (1947) Biometrika 34:28–35; Satterthwaite (1946);
//! Deng, Knoblich & Lu (2018) "Applying the Delta Method in Metric Analytics",
//! KDD; GrowthBook gbstats `frequentist/tests.py`.

use crate::dist;
use crate::{Result, StatsError};
use serde::{Deserialize, Serialize};

/// Kind of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Per-unit mean of a numeric value; variance from `sum_squares` (divisor n − 1).
    Mean,
    /// Share of units with a 0/1 outcome; `sum` counts ones; variance p(1 − p).
    Proportion,
    /// Ratio of sums ΣM/ΣD (e.g. revenue per session) from `sum`/`sum_squares`
    /// (numerator), `d_sum`/`d_sum_squares` (denominator) and `md_sum` (Σ M·D).
    Ratio,
}

/// Sufficient statistics of one arm (or one arm within one stratum).
///
/// `sum`, `sum_squares` describe the outcome (ratio numerator); the optional
/// `x_*`/`xy_sum` fields are a pre-exposure covariate for CUPED; `d_*`/`md_sum`
/// the ratio denominator; `dx_sum` = Σ D·X is needed only for CUPED on ratios.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmStats {
    /// Number of units.
    pub n: f64,
    /// Σ Y (ratio: Σ M).
    pub sum: f64,
    /// Σ Y² (ratio: Σ M²). Required for mean and ratio metrics; may be
    /// omitted for proportions (whose variance is p(1 − p)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_squares: Option<f64>,
    /// Σ X of the pre-exposure covariate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_sum: Option<f64>,
    /// Σ X².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_sum_squares: Option<f64>,
    /// Σ X·Y (ratio: Σ X·M).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xy_sum: Option<f64>,
    /// Ratio denominator Σ D.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_sum: Option<f64>,
    /// Ratio denominator Σ D².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_sum_squares: Option<f64>,
    /// Ratio Σ M·D.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md_sum: Option<f64>,
    /// Ratio CUPED: Σ D·X.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dx_sum: Option<f64>,
}

impl ArmStats {
    /// Plain mean/proportion statistics.
    pub fn new(n: f64, sum: f64, sum_squares: f64) -> Self {
        ArmStats {
            n,
            sum,
            sum_squares: Some(sum_squares),
            ..Default::default()
        }
    }

    /// Ratio statistics (numerator M, denominator D).
    pub fn ratio(
        n: f64,
        m_sum: f64,
        m_sum_squares: f64,
        d_sum: f64,
        d_sum_squares: f64,
        md_sum: f64,
    ) -> Self {
        ArmStats {
            n,
            sum: m_sum,
            sum_squares: Some(m_sum_squares),
            d_sum: Some(d_sum),
            d_sum_squares: Some(d_sum_squares),
            md_sum: Some(md_sum),
            ..Default::default()
        }
    }

    /// Attach a CUPED covariate (Σ X, Σ X², Σ X·Y).
    pub fn with_covariate(mut self, x_sum: f64, x_sum_squares: f64, xy_sum: f64) -> Self {
        self.x_sum = Some(x_sum);
        self.x_sum_squares = Some(x_sum_squares);
        self.xy_sum = Some(xy_sum);
        self
    }

    /// True when the CUPED covariate fields are all present (and `dx_sum` for ratios).
    pub fn has_covariate(&self, kind: MetricKind) -> bool {
        self.x_sum.is_some()
            && self.x_sum_squares.is_some()
            && self.xy_sum.is_some()
            && (kind != MetricKind::Ratio || self.dx_sum.is_some())
    }

    /// Field-wise sum (statistics of the union of disjoint groups of units).
    pub fn add(&self, o: &ArmStats) -> ArmStats {
        fn a(x: Option<f64>, y: Option<f64>) -> Option<f64> {
            match (x, y) {
                (Some(x), Some(y)) => Some(x + y),
                _ => None,
            }
        }
        ArmStats {
            n: self.n + o.n,
            sum: self.sum + o.sum,
            sum_squares: a(self.sum_squares, o.sum_squares),
            x_sum: a(self.x_sum, o.x_sum),
            x_sum_squares: a(self.x_sum_squares, o.x_sum_squares),
            xy_sum: a(self.xy_sum, o.xy_sum),
            d_sum: a(self.d_sum, o.d_sum),
            d_sum_squares: a(self.d_sum_squares, o.d_sum_squares),
            md_sum: a(self.md_sum, o.md_sum),
            dx_sum: a(self.dx_sum, o.dx_sum),
        }
    }
}

/// Centered co-moment (Σab − Σa·Σb/n)/(n − 1), computed as
/// (Σab − Σa·(Σb/n)) with a fused multiply-add, and clamped to zero when the
/// result is within rounding noise of the raw second moment (so constant data
/// at 1e9 units reads as exactly zero variance, not ±1e-7).
pub fn comoment(sum_ab: f64, sum_a: f64, sum_b: f64, n: f64, is_variance: bool) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    centred_sum(sum_ab, sum_a, sum_b, n, is_variance) / (n - 1.0)
}

/// Centred cross-product Σ(a − ā)(b − b̄) = Σab − Σa·(Σb/n), with the
/// rounding-noise clamp of [`comoment`]; 0 when n < 2.
pub fn centred_sum(sum_ab: f64, sum_a: f64, sum_b: f64, n: f64, is_variance: bool) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    let mean_b = sum_b / n;
    let centered = (-sum_a).mul_add(mean_b, sum_ab);
    let noise = 64.0 * f64::EPSILON * (sum_ab.abs() + (sum_a * mean_b).abs());
    if centered.abs() <= noise {
        return 0.0;
    }
    if is_variance && centered < 0.0 {
        return 0.0;
    }
    centered
}

/// Divisor of every unit-level (co)variance of one arm: n for a proportion
/// (its Var(Y) is p(1 − p) = Σ(y − ȳ)²/n, so Var(X) and Cov(Y, X) use n as
/// well), n − 1 for mean and ratio metrics. One divisor per arm keeps the
/// covariance matrix of (Y, D, X) positive semi-definite, so a CUPED-adjusted
/// variance is never negative.
pub fn moment_divisor(kind: MetricKind, n: f64) -> f64 {
    match kind {
        MetricKind::Proportion => n,
        MetricKind::Mean | MetricKind::Ratio => n - 1.0,
    }
}

/// Sample means z̄ = (Ȳ, D̄, X̄) of one arm and the unit-level covariance of
/// (Y, D, X). For means/proportions D ≡ 1; without covariate X ≡ 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmMoments {
    /// Number of units.
    pub n: f64,
    /// (Ȳ, D̄, X̄).
    pub mean: [f64; 3],
    /// Unit-level covariance matrix of (Y, D, X) with divisor
    /// [`moment_divisor`]: n − 1 for means and ratios, n for every entry of a
    /// proportion (whose Var(Y) is p(1 − p)).
    pub cov: [[f64; 3]; 3],
}

fn finite(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(StatsError::InvalidInput(format!("{name} is not finite")))
    }
}

impl ArmMoments {
    /// Moments of one arm; `with_x` reads the CUPED covariate (error if absent).
    pub fn from_stats(kind: MetricKind, s: &ArmStats, with_x: bool) -> Result<Self> {
        let n = finite("n", s.n)?;
        if n < 0.0 || n.fract() != 0.0 {
            return Err(StatsError::InvalidInput(format!(
                "n must be a non-negative integer, got {n}"
            )));
        }
        if n < 1.0 {
            return Err(StatsError::Degenerate("arm has no units (n = 0)".into()));
        }
        let sum = finite("sum", s.sum)?;
        let ss = match (kind, s.sum_squares) {
            (_, Some(ss)) => finite("sum_squares", ss)?,
            (MetricKind::Proportion, None) => sum,
            (_, None) => {
                return Err(StatsError::InvalidInput(
                    "sum_squares is required for mean and ratio metrics".into(),
                ))
            }
        };
        let mut mean = [sum / n, 1.0, 0.0];
        let mut cov = [[0.0; 3]; 3];
        match kind {
            MetricKind::Proportion => {
                if sum < 0.0 || sum > n {
                    return Err(StatsError::InvalidInput(format!(
                        "proportion sum {sum} outside [0, n = {n}]"
                    )));
                }
                let p = sum / n;
                cov[0][0] = p * (1.0 - p);
            }
            MetricKind::Mean | MetricKind::Ratio => {
                if ss < 0.0 {
                    return Err(StatsError::InvalidInput("sum_squares is negative".into()));
                }
                cov[0][0] = comoment(ss, sum, sum, n, true);
            }
        }
        if kind == MetricKind::Ratio {
            let (Some(ds), Some(dss), Some(mds)) = (s.d_sum, s.d_sum_squares, s.md_sum) else {
                return Err(StatsError::InvalidInput(
                    "ratio metric needs d_sum, d_sum_squares and md_sum".into(),
                ));
            };
            let ds = finite("d_sum", ds)?;
            let dss = finite("d_sum_squares", dss)?;
            let mds = finite("md_sum", mds)?;
            if dss < 0.0 {
                return Err(StatsError::InvalidInput("d_sum_squares is negative".into()));
            }
            mean[1] = ds / n;
            cov[1][1] = comoment(dss, ds, ds, n, true);
            cov[0][1] = comoment(mds, sum, ds, n, false);
            cov[1][0] = cov[0][1];
        }
        if with_x {
            let (Some(xs), Some(xss), Some(xys)) = (s.x_sum, s.x_sum_squares, s.xy_sum) else {
                return Err(StatsError::InvalidInput(
                    "CUPED needs x_sum, x_sum_squares and xy_sum".into(),
                ));
            };
            let xs = finite("x_sum", xs)?;
            let xss = finite("x_sum_squares", xss)?;
            let xys = finite("xy_sum", xys)?;
            if xss < 0.0 {
                return Err(StatsError::InvalidInput("x_sum_squares is negative".into()));
            }
            mean[2] = xs / n;
            let div = moment_divisor(kind, n);
            if n >= 2.0 {
                cov[2][2] = centred_sum(xss, xs, xs, n, true) / div;
                cov[0][2] = centred_sum(xys, sum, xs, n, false) / div;
            }
            cov[2][0] = cov[0][2];
            // Cauchy–Schwarz: sums that no set of units can produce.
            if cov[0][2] * cov[0][2] > cov[0][0] * cov[2][2] * (1.0 + 1e-6) {
                return Err(StatsError::InvalidInput(
                    "xy_sum is inconsistent with sum, sum_squares, x_sum and x_sum_squares \
                     (|Cov(Y, X)| exceeds SD(Y)·SD(X))"
                        .into(),
                ));
            }
            if kind == MetricKind::Ratio {
                let Some(dxs) = s.dx_sum else {
                    return Err(StatsError::InvalidInput(
                        "CUPED on a ratio metric needs dx_sum".into(),
                    ));
                };
                let dxs = finite("dx_sum", dxs)?;
                cov[1][2] = comoment(dxs, s.d_sum.unwrap_or(0.0), xs, n, false);
                cov[2][1] = cov[1][2];
            }
        }
        Ok(ArmMoments { n, mean, cov })
    }

    /// Unadjusted arm value: Ȳ (mean/proportion) or Ȳ/D̄ (ratio).
    pub fn value(&self, kind: MetricKind) -> f64 {
        match kind {
            MetricKind::Ratio => self.mean[0] / self.mean[1],
            _ => self.mean[0],
        }
    }

    /// Unit-level variance of the (linearised) arm value.
    pub fn unit_variance(&self, kind: MetricKind) -> f64 {
        let g = value_gradient(kind, &self.mean, 0.0);
        quad3(&g, &self.cov)
    }
}

fn quad3(g: &[f64; 3], c: &[[f64; 3]; 3]) -> f64 {
    let mut s = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            s += g[i] * c[i][j] * g[j];
        }
    }
    s
}

/// Gradient of the arm function f(z) = h(Ȳ, D̄) − θ X̄ with h = Ȳ (means) or Ȳ/D̄ (ratios).
pub fn value_gradient(kind: MetricKind, z: &[f64; 3], theta: f64) -> [f64; 3] {
    match kind {
        MetricKind::Ratio => [1.0 / z[1], -z[0] / (z[1] * z[1]), -theta],
        _ => [1.0, 0.0, -theta],
    }
}

/// Arm function f(z) = h(Ȳ, D̄) − θ X̄ (θ = 0 without CUPED).
pub fn arm_value(kind: MetricKind, z: &[f64; 3], theta: f64) -> f64 {
    let h = match kind {
        MetricKind::Ratio => z[0] / z[1],
        _ => z[0],
    };
    h - theta * z[2]
}

/// Absolute or relative difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Δ = f_B − f_A.
    Absolute,
    /// Δ / |u_A| where u_A is the unadjusted control value.
    Relative,
}

/// A point estimate with standard error, ready for any test or interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Point estimate of the lift.
    pub effect: f64,
    /// Standard error (delta method).
    pub se: f64,
    /// Degrees of freedom for t-based inference (∞ → normal).
    pub df: f64,
    /// Units in both arms (used by the sequential test).
    pub n_total: f64,
    /// |u_A|, the absolute unadjusted control value (scales priors between scales).
    pub baseline_abs: f64,
}

/// Delta-method core on a 6-vector of means μ = (z̄_A, z̄_B) with covariance
/// `cov` (of the means, 6×6): g = f_B − f_A (absolute) or (f_B − f_A)/|u_A|
/// (relative) and Var(g) = ∇gᵀ cov ∇g. Returns (g, Var g, |u_A|).
pub fn delta6(
    kind: MetricKind,
    mu: &[f64; 6],
    cov: &[[f64; 6]; 6],
    theta: f64,
    scale: Scale,
) -> Result<(f64, f64, f64)> {
    let za = [mu[0], mu[1], mu[2]];
    let zb = [mu[3], mu[4], mu[5]];
    if kind == MetricKind::Ratio && (za[1] == 0.0 || zb[1] == 0.0) {
        return Err(StatsError::Degenerate(
            "ratio denominator sums to zero in an arm".into(),
        ));
    }
    let fa = arm_value(kind, &za, theta);
    let fb = arm_value(kind, &zb, theta);
    let ga = value_gradient(kind, &za, theta);
    let gb = value_gradient(kind, &zb, theta);
    let ua = arm_value(kind, &za, 0.0);
    let gu = value_gradient(kind, &za, 0.0);
    let (effect, grad) = match scale {
        Scale::Absolute => (fb - fa, [-ga[0], -ga[1], -ga[2], gb[0], gb[1], gb[2]]),
        Scale::Relative => {
            if ua == 0.0 {
                return Err(StatsError::Degenerate(
                    "control mean is zero; relative lift is undefined".into(),
                ));
            }
            let abs_u = ua.abs();
            let diff = fb - fa;
            // ∂/∂z_A [ (f_B − f_A)/|u_A| ] = −∇f_A/|u_A| − diff·sign(u_A)·∇u_A/u_A²
            let k = diff * ua.signum() / (ua * ua);
            (
                diff / abs_u,
                [
                    -ga[0] / abs_u - k * gu[0],
                    -ga[1] / abs_u - k * gu[1],
                    -ga[2] / abs_u - k * gu[2],
                    gb[0] / abs_u,
                    gb[1] / abs_u,
                    gb[2] / abs_u,
                ],
            )
        }
    };
    let mut var = 0.0;
    for i in 0..6 {
        if grad[i] == 0.0 {
            continue;
        }
        for j in 0..6 {
            var += grad[i] * cov[i][j] * grad[j];
        }
    }
    Ok((effect, var.max(0.0), ua.abs()))
}

/// Welch–Satterthwaite degrees of freedom from per-arm variances of the mean.
pub fn welch_df(s_a: f64, n_a: f64, s_b: f64, n_b: f64) -> f64 {
    let num = (s_a + s_b) * (s_a + s_b);
    let den = s_a * s_a / (n_a - 1.0) + s_b * s_b / (n_b - 1.0);
    if den <= 0.0 {
        return f64::INFINITY;
    }
    num / den
}

pub(crate) fn check_arm(m: &ArmMoments, kind: MetricKind, label: &str, theta: f64) -> Result<f64> {
    if m.n < 2.0 {
        return Err(StatsError::Degenerate(format!("{label} arm has n < 2")));
    }
    let g = value_gradient(kind, &m.mean, theta);
    let v = quad3(&g, &m.cov);
    let scale = quad3(&g.map(f64::abs), &m.cov.map(|r| r.map(f64::abs)));
    if v.is_nan() || v <= 1e-13 * scale || v <= 0.0 {
        return Err(StatsError::Degenerate(format!(
            "{label} arm has zero variance"
        )));
    }
    Ok(v / m.n)
}

/// Estimate from two arms' moments with a fixed θ (θ = 0: no adjustment).
pub fn estimate_from_moments(
    kind: MetricKind,
    a: &ArmMoments,
    b: &ArmMoments,
    theta: f64,
    scale: Scale,
) -> Result<Estimate> {
    let s_a = check_arm(a, kind, "control", theta)?;
    let s_b = check_arm(b, kind, "treatment", theta)?;
    let mut mu = [0.0; 6];
    let mut cov = [[0.0; 6]; 6];
    for i in 0..3 {
        mu[i] = a.mean[i];
        mu[i + 3] = b.mean[i];
        for j in 0..3 {
            cov[i][j] = a.cov[i][j] / a.n;
            cov[i + 3][j + 3] = b.cov[i][j] / b.n;
        }
    }
    let (effect, var, base) = delta6(kind, &mu, &cov, theta, scale)?;
    if var.is_nan() || var <= 0.0 {
        return Err(StatsError::Degenerate("estimate has zero variance".into()));
    }
    let df = welch_df(s_a, a.n, s_b, b.n);
    Ok(Estimate {
        effect,
        se: var.sqrt(),
        df,
        n_total: a.n + b.n,
        baseline_abs: base,
    })
}

/// Welch estimate of the absolute or relative lift of B over A (no CUPED).
///
/// Absolute: Δ = μ̂_B − μ̂_A, se² = s_A + s_B. Relative: Δ/|μ̂_A| with
/// se² = s_B/μ̂_A² + s_A μ̂_B²/μ̂_A⁴ (delta method).
pub fn estimate(kind: MetricKind, a: &ArmStats, b: &ArmStats, scale: Scale) -> Result<Estimate> {
    let ma = ArmMoments::from_stats(kind, a, false).map_err(|e| label_err(e, "control"))?;
    let mb = ArmMoments::from_stats(kind, b, false).map_err(|e| label_err(e, "treatment"))?;
    estimate_from_moments(kind, &ma, &mb, 0.0, scale)
}

pub(crate) fn label_err(e: StatsError, label: &str) -> StatsError {
    match e {
        StatsError::Degenerate(m) if m.starts_with("arm ") => {
            StatsError::Degenerate(format!("{label} {m}"))
        }
        StatsError::InvalidInput(m) => StatsError::InvalidInput(format!("{label} arm: {m}")),
        other => other,
    }
}

/// Which alternative a frequentist test targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// H1: Δ ≠ 0.
    TwoSided,
    /// H1: Δ > 0 (treatment greater).
    Greater,
    /// H1: Δ < 0 (treatment lesser).
    Lesser,
}

/// A frequentist test result. Unbounded interval ends are ±∞.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestResult {
    /// Point estimate.
    pub effect: f64,
    /// Standard error.
    pub se: f64,
    /// Lower confidence bound (−∞ for a "lesser" one-sided interval).
    pub ci_lower: f64,
    /// Upper confidence bound (+∞ for a "greater" one-sided interval).
    pub ci_upper: f64,
    /// p-value in [0, 1].
    pub p_value: f64,
}

/// t-test of H0: Δ = 0 with t = Δ/se and ν = `est.df`:
/// two-sided p = 2·P(T > |t|), CI Δ ± t_{1−α/2,ν}·se;
/// greater p = P(T > t), CI [Δ − t_{1−α,ν}·se, ∞);
/// lesser p = P(T < t), CI (−∞, Δ + t_{1−α,ν}·se].
pub fn t_test(est: &Estimate, alpha: f64, alt: Alternative) -> Result<TestResult> {
    check_alpha(alpha)?;
    let t = est.effect / est.se;
    let (p, lo, hi) = match alt {
        Alternative::TwoSided => {
            let q = dist::t_ppf(1.0 - alpha / 2.0, est.df);
            (
                (2.0 * dist::t_sf(t.abs(), est.df)).min(1.0),
                est.effect - q * est.se,
                est.effect + q * est.se,
            )
        }
        Alternative::Greater => {
            let q = dist::t_ppf(1.0 - alpha, est.df);
            (
                dist::t_sf(t, est.df),
                est.effect - q * est.se,
                f64::INFINITY,
            )
        }
        Alternative::Lesser => {
            let q = dist::t_ppf(1.0 - alpha, est.df);
            (
                dist::t_cdf(t, est.df),
                f64::NEG_INFINITY,
                est.effect + q * est.se,
            )
        }
    };
    Ok(TestResult {
        effect: est.effect,
        se: est.se,
        ci_lower: lo,
        ci_upper: hi,
        p_value: p.clamp(0.0, 1.0),
    })
}

/// All three t-tests of [`t_test`] at once (two-sided, greater, lesser),
/// sharing the quantile and tail computations.
pub fn t_tests_all(est: &Estimate, alpha: f64) -> Result<[TestResult; 3]> {
    check_alpha(alpha)?;
    let t = est.effect / est.se;
    let q2 = dist::t_ppf(1.0 - alpha / 2.0, est.df);
    let q1 = dist::t_ppf(1.0 - alpha, est.df);
    let upper = dist::t_sf(t, est.df);
    let lower = dist::t_cdf(t, est.df);
    let two = (2.0 * upper.min(lower)).min(1.0);
    let r = |p: f64, lo: f64, hi: f64| TestResult {
        effect: est.effect,
        se: est.se,
        ci_lower: lo,
        ci_upper: hi,
        p_value: p.clamp(0.0, 1.0),
    };
    Ok([
        r(two, est.effect - q2 * est.se, est.effect + q2 * est.se),
        r(upper, est.effect - q1 * est.se, f64::INFINITY),
        r(lower, f64::NEG_INFINITY, est.effect + q1 * est.se),
    ])
}

pub(crate) fn check_alpha(alpha: f64) -> Result<()> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidInput(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_are_typed_errors() {
        let a = ArmStats::new(1.0, 1.0, 1.0);
        let b = ArmStats::new(10.0, 5.0, 5.0);
        let e = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap_err();
        assert_eq!(e, StatsError::Degenerate("control arm has n < 2".into()));
        let a = ArmStats::new(10.0, 10.0, 10.0);
        let e = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap_err();
        assert_eq!(
            e,
            StatsError::Degenerate("control arm has zero variance".into())
        );
        let a = ArmStats::new(10.0, 0.0, 0.0);
        let e = estimate(MetricKind::Proportion, &a, &b, Scale::Relative).unwrap_err();
        assert!(matches!(e, StatsError::Degenerate(_)));
        let a = ArmStats::new(0.0, 0.0, 0.0);
        let e = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap_err();
        assert!(e.to_string().contains("control"), "{e}");
        let mut a = ArmStats::new(10.0, 3.0, 3.0);
        a.sum_squares = None;
        let e = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).unwrap_err();
        assert!(e.to_string().contains("sum_squares is required"), "{e}");
        assert!(estimate(MetricKind::Proportion, &a, &b, Scale::Absolute).is_ok());
        let a = ArmStats::new(10.0, 11.0, 11.0);
        let e = estimate(MetricKind::Proportion, &a, &b, Scale::Absolute).unwrap_err();
        assert!(matches!(e, StatsError::InvalidInput(_)), "{e}");
    }

    #[test]
    fn huge_counts_are_stable() {
        // 1e9 units, p = 0.1 vs 0.1001
        let a = ArmStats::new(1e9, 1e8, 1e8);
        let b = ArmStats::new(1e9, 1.001e8, 1.001e8);
        let est = estimate(MetricKind::Proportion, &a, &b, Scale::Absolute).unwrap();
        assert!((est.effect - 1e-4).abs() < 1e-12);
        let r = t_test(&est, 0.05, Alternative::TwoSided).unwrap();
        assert!(r.p_value > 0.0 && r.p_value < 1e-10);
        // constant outcome at large scale reads as zero variance
        let c = ArmStats::new(1e9, 1e12, 1e15);
        assert!(estimate(MetricKind::Mean, &c, &b, Scale::Absolute).is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn arm_strategy() -> impl Strategy<Value = ArmStats> {
        (2u32..100_000, -1e3f64..1e3, 0.01f64..1e2).prop_map(|(n, mean, sd)| {
            let n = n as f64;
            ArmStats::new(n, n * mean, (n - 1.0) * sd * sd + n * mean * mean)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn p_in_unit_interval_and_ci_contains_estimate(
            a in arm_strategy(), b in arm_strategy(), alpha in 0.001f64..0.5, rel in any::<bool>()
        ) {
            let scale = if rel { Scale::Relative } else { Scale::Absolute };
            let Ok(est) = estimate(MetricKind::Mean, &a, &b, scale) else { return Ok(()); };
            for alt in [Alternative::TwoSided, Alternative::Greater, Alternative::Lesser] {
                let r = t_test(&est, alpha, alt).unwrap();
                prop_assert!((0.0..=1.0).contains(&r.p_value));
                prop_assert!(r.ci_lower <= r.effect && r.effect <= r.ci_upper);
            }
            let s = crate::sequential::two_sided(&est, alpha, 5000.0).unwrap();
            prop_assert!((0.0..=1.0).contains(&s.p_value));
            prop_assert!(s.ci_lower <= s.effect && s.effect <= s.ci_upper);
            let bz = crate::bayes::posterior(&est, None, scale, alpha).unwrap();
            prop_assert!((0.0..=1.0).contains(&bz.chance_to_win));
            prop_assert!(bz.risk_control >= 0.0 && bz.risk_treatment >= 0.0);
        }

        #[test]
        fn swapping_arms_negates_absolute_effect(a in arm_strategy(), b in arm_strategy()) {
            let Ok(ab) = estimate(MetricKind::Mean, &a, &b, Scale::Absolute) else { return Ok(()); };
            let ba = estimate(MetricKind::Mean, &b, &a, Scale::Absolute).unwrap();
            prop_assert!((ab.effect + ba.effect).abs() <= 1e-12 * ab.effect.abs().max(ab.se));
            let p1 = t_test(&ab, 0.05, Alternative::TwoSided).unwrap().p_value;
            let p2 = t_test(&ba, 0.05, Alternative::TwoSided).unwrap().p_value;
            prop_assert!((p1 - p2).abs() <= 1e-12 * p1.max(1e-300));
            let g = t_test(&ab, 0.05, Alternative::Greater).unwrap().p_value;
            let l = t_test(&ba, 0.05, Alternative::Lesser).unwrap().p_value;
            prop_assert!((g - l).abs() <= 1e-12 * g.max(1e-300));
        }

        #[test]
        fn proportions_never_nan(
            na in 0u32..1000, nb in 0u32..1000, fa in 0.0f64..=1.0, fb in 0.0f64..=1.0
        ) {
            let a = ArmStats::new(na as f64, (na as f64 * fa).round(), 0.0);
            let b = ArmStats::new(nb as f64, (nb as f64 * fb).round(), 0.0);
            for scale in [Scale::Absolute, Scale::Relative] {
                if let Ok(est) = estimate(MetricKind::Proportion, &a, &b, scale) {
                    prop_assert!(est.effect.is_finite() && est.se > 0.0 && est.df >= 1.0);
                    let r = t_test(&est, 0.05, Alternative::TwoSided).unwrap();
                    prop_assert!((0.0..=1.0).contains(&r.p_value));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "effects_reference_tests.rs"]
mod reference_tests;
