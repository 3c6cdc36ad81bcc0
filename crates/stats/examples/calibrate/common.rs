//! What every section uses: constants, random draws, the tallies and the
//! report rows.

use commonlab_stats::bayes::{self, Prior};
use commonlab_stats::effects::{self, Alternative, ArmStats, Estimate, Scale};
use commonlab_stats::sequential;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) type Res = commonlab_stats::Result<Estimate>;

pub(crate) const SEED: u64 = 2026;
pub(crate) const TRIALS: usize = 10_000;
pub(crate) const N_PER_ARM: usize = 1_000;
pub(crate) const LOOKS: usize = 10;
pub(crate) const ALPHA: f64 = 0.05;
pub(crate) const TUNING: f64 = 5_000.0;
/// Bootstrap: simulated trials per row and resamples per interval.
pub(crate) const BOOT_TRIALS: usize = 10_000;
pub(crate) const BOOT_RESAMPLES: usize = 1_999;
/// Bootstrap control rows (normal outcomes; 200 units per arm).
pub(crate) const BOOT_CONTROL_TRIALS: usize = 2_000;
/// Sampled permutation draws per test.
pub(crate) const PERM_DRAWS: usize = 999;

/// A fresh RNG on stream `k` of seed 2026 (stream 0 is the `core` section).
pub(crate) fn stream(k: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    rng.set_stream(k);
    rng
}

pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub(crate) fn exponential(rng: &mut ChaCha8Rng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

pub(crate) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> f64 {
    // Knuth; fine for the small λ used here
    let limit = (-lambda).exp();
    let mut k = 0.0;
    let mut p = rng.random::<f64>();
    while p > limit {
        k += 1.0;
        p *= rng.random::<f64>();
    }
    k
}

/// Draw an index from cumulative probabilities.
pub(crate) fn categorical(rng: &mut ChaCha8Rng, cum: &[f64]) -> usize {
    let u = rng.random::<f64>();
    cum.iter().position(|&c| u < c).unwrap_or(cum.len() - 1)
}

#[derive(Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) rejections: usize,
    pub(crate) covered: usize,
    pub(crate) runs: usize,
}

impl Tally {
    pub(crate) fn add(&mut self, est: Option<(f64, f64, f64)>) {
        // (p, lo, hi)
        if let Some((p, lo, hi)) = est {
            self.runs += 1;
            if p < ALPHA {
                self.rejections += 1;
            }
            if lo <= 0.0 && 0.0 <= hi {
                self.covered += 1;
            }
        }
    }
    pub(crate) fn fpr(&self) -> f64 {
        100.0 * self.rejections as f64 / self.runs.max(1) as f64
    }
    pub(crate) fn cov(&self) -> f64 {
        100.0 * self.covered as f64 / self.runs.max(1) as f64
    }
}

/// Counts for the newer rows: a test (p-value) and/or an interval around a
/// known true value, and how many trials the method answered.
#[derive(Default, Clone, Copy)]
pub(crate) struct Cal {
    pub(crate) tested: usize,
    pub(crate) rejected: usize,
    pub(crate) intervals: usize,
    pub(crate) covered: usize,
    pub(crate) attempted: usize,
}

impl Cal {
    pub(crate) fn attempt(&mut self) {
        self.attempted += 1;
    }
    pub(crate) fn test(&mut self, p: f64) {
        self.tested += 1;
        if p < ALPHA {
            self.rejected += 1;
        }
    }
    pub(crate) fn reject_if(&mut self, rejected: bool) {
        self.tested += 1;
        if rejected {
            self.rejected += 1;
        }
    }
    pub(crate) fn interval(&mut self, lo: f64, hi: f64, truth: f64) {
        self.intervals += 1;
        if lo <= truth && truth <= hi {
            self.covered += 1;
        }
    }
    /// Two-sided test and interval around 0.
    pub(crate) fn both(&mut self, p: f64, lo: f64, hi: f64) {
        self.test(p);
        self.interval(lo, hi, 0.0);
    }
    pub(crate) fn answered(&self) -> usize {
        self.tested.max(self.intervals)
    }
    pub(crate) fn fpr(&self) -> Option<f64> {
        (self.tested > 0).then(|| 100.0 * self.rejected as f64 / self.tested as f64)
    }
    pub(crate) fn cov(&self) -> Option<f64> {
        (self.intervals > 0).then(|| 100.0 * self.covered as f64 / self.intervals as f64)
    }
}

/// What a row is held to.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// The band: FPR 4–6%, coverage 94–96%.
    Band,
    /// FPR ≤ 5% / coverage ≥ 95% by construction (judged against the band's
    /// outer edges, 6% and 94%, to allow for Monte Carlo error).
    AtMost,
    /// Expected to over-cover (an informative prior centred on the truth).
    OverCover,
    /// A flag at p < 0.001: rate about 0.1%.
    Flag,
    /// Shown for contrast only.
    Contrast,
}

pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) trials: String,
    pub(crate) fpr: Option<f64>,
    pub(crate) cov: Option<f64>,
    pub(crate) target: Target,
}

impl Row {
    pub(crate) fn new(name: &str, c: &Cal, target: Target) -> Row {
        let trials = if c.attempted > c.answered() {
            format!("{} of {}", c.answered(), c.attempted)
        } else {
            c.answered().to_string()
        };
        Row {
            name: name.into(),
            trials,
            fpr: c.fpr(),
            cov: c.cov(),
            target,
        }
    }

    pub(crate) fn target_text(&self) -> &'static str {
        match self.target {
            Target::Band => "FPR 4–6%, coverage 94–96%",
            Target::AtMost => "FPR ≤ 5%, coverage ≥ 95%",
            Target::OverCover => "coverage > 95% (see notes)",
            Target::Flag => "flag rate ≈ 0.1%",
            Target::Contrast => "for contrast",
        }
    }

    pub(crate) fn verdict(&self) -> String {
        let mut v = Vec::new();
        match self.target {
            Target::Band => {
                if let Some(f) = self.fpr {
                    if f < 4.0 {
                        v.push("FPR below band");
                    } else if f > 6.0 {
                        v.push("FPR ABOVE band");
                    }
                }
                if let Some(c) = self.cov {
                    if c < 94.0 {
                        v.push("coverage BELOW band");
                    } else if c > 96.0 {
                        v.push("coverage above band");
                    }
                }
                if v.is_empty() {
                    return "in band".into();
                }
            }
            Target::AtMost => {
                if self.fpr.is_some_and(|f| f > 6.0) {
                    v.push("FPR ABOVE 5%");
                }
                if self.cov.is_some_and(|c| c < 94.0) {
                    v.push("coverage BELOW 95%");
                }
                if v.is_empty() {
                    let low = self.fpr.is_some_and(|f| f < 4.0);
                    return if low { "holds (conservative)" } else { "holds" }.into();
                }
            }
            Target::OverCover => {
                return if self.cov.is_some_and(|c| c >= 95.0) {
                    "as expected".into()
                } else {
                    "UNEXPECTED".into()
                };
            }
            Target::Flag => {
                return if self.fpr.is_some_and(|f| f <= 0.2) {
                    "holds".into()
                } else {
                    "ABOVE".into()
                };
            }
            Target::Contrast => return "contrast".into(),
        }
        v.join(", ")
    }
}

pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:.2}%"))
}

pub(crate) fn welch(est: &Res) -> Option<(f64, f64, f64)> {
    let e = est.as_ref().ok()?;
    let r = effects::t_test(e, ALPHA, Alternative::TwoSided).ok()?;
    Some((r.p_value, r.ci_lower, r.ci_upper))
}

pub(crate) fn seq(est: &Res) -> Option<(f64, f64, f64)> {
    let e = est.as_ref().ok()?;
    let r = sequential::two_sided(e, ALPHA, TUNING).ok()?;
    Some((r.p_value, r.ci_lower, r.ci_upper))
}

/// Welch two-sided test of an estimate into a tally (errors are skipped).
pub(crate) fn welch_into(c: &mut Cal, est: &Res) {
    c.attempt();
    if let Some((p, lo, hi)) = welch(est) {
        c.both(p, lo, hi);
    }
}

/// One-sided Welch test (FPR) and one-sided interval (coverage of 0).
pub(crate) fn one_sided_into(c: &mut Cal, est: &Res, alt: Alternative) {
    c.attempt();
    if let Some(r) = est
        .as_ref()
        .ok()
        .and_then(|e| effects::t_test(e, ALPHA, alt).ok())
    {
        c.both(r.p_value, r.ci_lower, r.ci_upper);
    }
}

/// Bayesian credible interval: "rejection" when it excludes `null`,
/// coverage of `truth`.
pub(crate) fn bayes_into(
    c: &mut Cal,
    est: &Res,
    prior: Option<&Prior>,
    scale: Scale,
    null: f64,
    truth: f64,
) {
    c.attempt();
    if let Some(b) = est
        .as_ref()
        .ok()
        .and_then(|e| bayes::posterior(e, prior, scale, ALPHA).ok())
    {
        c.reject_if(!(b.ci_lower <= null && null <= b.ci_upper));
        c.interval(b.ci_lower, b.ci_upper, truth);
    }
}

/// Accumulated sufficient statistics of one arm: outcome (or ratio
/// numerator) Y, ratio denominator D and covariate X.
#[derive(Default, Clone, Copy)]
pub(crate) struct Acc {
    pub(crate) n: f64,
    pub(crate) y: f64,
    pub(crate) yy: f64,
    pub(crate) d: f64,
    pub(crate) dd: f64,
    pub(crate) yd: f64,
    pub(crate) x: f64,
    pub(crate) xx: f64,
    pub(crate) xy: f64,
    pub(crate) dx: f64,
}

impl Acc {
    pub(crate) fn push(&mut self, y: f64, d: f64, x: f64) {
        self.n += 1.0;
        self.y += y;
        self.yy += y * y;
        self.d += d;
        self.dd += d * d;
        self.yd += y * d;
        self.x += x;
        self.xx += x * x;
        self.xy += x * y;
        self.dx += d * x;
    }
    pub(crate) fn plain(&self) -> ArmStats {
        ArmStats::new(self.n, self.y, self.yy)
    }
    pub(crate) fn with_x(&self) -> ArmStats {
        self.plain().with_covariate(self.x, self.xx, self.xy)
    }
    pub(crate) fn ratio(&self) -> ArmStats {
        ArmStats::ratio(self.n, self.y, self.yy, self.d, self.dd, self.yd)
    }
    pub(crate) fn ratio_with_x(&self) -> ArmStats {
        let mut s = self.ratio().with_covariate(self.x, self.xx, self.xy);
        s.dx_sum = Some(self.dx);
        s
    }
}
