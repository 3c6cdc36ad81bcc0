//! Calibration under the null, seeded and small enough for a debug build
//! (issue #12, "Tests and checks"). The full runs, with many more
//! repetitions, are examples: `--example calibrate_few` (few communities)
//! and `--example calibrate` (`docs/calibration.md`).

use commonlab_stats::power::{simulate_stepped_wedge_rows, SteppedWedgeSim};
use commonlab_stats::randomization::Alternative;
use commonlab_stats::rows::{analyze_rows, DesignKind, RowsDesign, RowsInput};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Repetitions: enough for the bound below to catch a method that rejects
/// twice its nominal share, few enough for a debug build.
const REPETITIONS: u64 = 400;
const ALPHA: f64 = 0.05;

/// `P(X ≤ k)` for `X ~ Binomial(n, p)`, summed exactly term by term.
fn binomial_cdf(n: u64, p: f64, k: u64) -> f64 {
    let mut term = (1.0 - p).powf(n as f64);
    let mut sum = term;
    for i in 0..k.min(n) {
        term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
        sum += term;
    }
    sum.min(1.0)
}

/// The smallest `k` with `P(X > k) ≤ tail`.
fn upper_bound(n: u64, p: f64, tail: f64) -> u64 {
    (0..=n)
        .find(|&k| 1.0 - binomial_cdf(n, p, k) <= tail)
        .unwrap_or(n)
}

/// The largest `k` with `P(X < k) ≤ tail`.
fn lower_bound(n: u64, p: f64, tail: f64) -> u64 {
    (0..=n)
        .take_while(|&k| k == 0 || binomial_cdf(n, p, k - 1) <= tail)
        .last()
        .unwrap_or(0)
}

#[test]
fn the_binomial_bounds_are_the_exact_quantiles() {
    // scipy 1.14: binom.isf(0.001, 400, 0.05) = 35, binom.cdf(35, 400,
    // 0.05) = 0.9994283181049983, binom.cdf(34, ...) = 0.99889681909579;
    // binom.cdf(5, 400, 1/24) = 0.000716457267793731 and binom.cdf(6, ...)
    // = 0.00221247574418338.
    assert_eq!(upper_bound(400, 0.05, 0.001), 35);
    assert!((binomial_cdf(400, 0.05, 35) - 0.999_428_318_104_998_3).abs() < 1e-12);
    assert!((binomial_cdf(400, 1.0 / 24.0, 5) - 0.000_716_457_267_793_731).abs() < 1e-15);
    assert_eq!(lower_bound(400, 1.0 / 24.0, 0.001), 6);
    assert!((binomial_cdf(10, 0.5, 5) - 0.623_046_875).abs() < 1e-12);
}

/// A stepped wedge of 4 communities over 5 periods (a baseline, then one
/// community crossing over at each of 4 steps, the order drawn at random)
/// with a true effect of zero, a secular trend and community random
/// intercepts: randomisation inference, the lead result, is "significant"
/// at α = 0.05 in no more than its nominal share of seeded repetitions.
///
/// With 4 communities there are 24 orders, so the smallest attainable
/// two-sided p-value is 1/24 and the exact test rejects with probability
/// 1/24 ≈ 0.042 under the null. The test asserts that the rejection count
/// stays below the 99.9% point of Binomial(400, 0.05) (35; a method
/// rejecting at 10% would be expected at 40), and, so that a test that
/// never rejects cannot pass, at or above the 0.1% point of
/// Binomial(400, 1/24) (6). Either fails by chance with probability below 0.001; the seed
/// makes the outcome fixed.
#[test]
fn randomisation_inference_on_a_null_stepped_wedge_of_four_communities_keeps_its_level() {
    let cfg = SteppedWedgeSim {
        communities: 4,
        users_per_cell: 10,
        icc: 0.05,
        cluster_period_sd: 0.0,
        effect: 0.0,
        trend: 0.1,
        sims: REPETITIONS as usize,
        alpha: ALPHA,
        seed: 12,
        community_effects: None,
    };
    let design = RowsDesign {
        kind: DesignKind::SteppedWedge,
        control_arm: "control".into(),
        community_effects: None,
        alternative: Alternative::TwoSided,
        max_enumerate: 100_000,
        randomisation_draws: 999,
        // Not what this test measures: as few as the method takes.
        wild_bootstrap_draws: 19,
        seed: 12,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
    let mut rejections = 0u64;
    for i in 0..REPETITIONS {
        let rows = simulate_stepped_wedge_rows(&cfg, &mut rng);
        let out = analyze_rows(&RowsInput {
            rows,
            design: design.clone(),
        })
        .unwrap_or_else(|e| panic!("repetition {i}: {e}"));
        assert_eq!(out.n_clusters, 4);
        assert_eq!(out.n_periods, 5);
        let ri = out
            .randomisation
            .result
            .unwrap_or_else(|| panic!("repetition {i}: no randomisation result"));
        assert!(ri.exact, "24 orders are enumerated");
        assert_eq!(ri.total_assignments, 24);
        rejections += u64::from(ri.p_value <= ALPHA);
    }
    let (most, least) = (
        upper_bound(REPETITIONS, ALPHA, 0.001),
        lower_bound(REPETITIONS, 1.0 / 24.0, 0.001),
    );
    assert!(
        rejections <= most,
        "{rejections} of {REPETITIONS} null trials significant at {ALPHA}: more than the {most} a calibrated test reaches once in 1,000 runs"
    );
    assert!(
        rejections >= least,
        "{rejections} of {REPETITIONS} null trials significant: fewer than the {least} an exact test at 1/24 reaches once in 1,000 runs"
    );
}
