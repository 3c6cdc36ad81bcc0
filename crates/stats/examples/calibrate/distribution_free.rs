//! Rank and resampling methods: `mw`, `bootstrap`, `permutation`.

use crate::common::*;
use commonlab_stats::effects::{self, ArmStats, MetricKind, Scale};
use commonlab_stats::nonparametric::{self, BootMethod, MwMethod};
use commonlab_stats::randomization::Alternative as RAlt;
use commonlab_stats::rows::{self, DesignKind, Row as DataRow, RowsDesign, RowsInput};
use rand::seq::SliceRandom;

/// Mann–Whitney U (stream 5). Likert 1–5 with P = (0.05, 0.10, 0.20, 0.35,
/// 0.30) (many ties: asymptotic with tie correction) and a log-normal outcome
/// e^{N(0, 1)} (no ties: exact for small n).
pub(crate) fn mw(out: &mut Vec<Row>) {
    let mut rng = stream(5);
    let likert_cum = [0.05, 0.15, 0.35, 0.70, 1.0];
    let cases: [(&str, bool, usize, MwMethod, Target); 5] = [
        (
            "Mann–Whitney, Likert 1–5, 100/arm (normal approx., ties)",
            true,
            100,
            MwMethod::Auto,
            Target::Band,
        ),
        (
            "Mann–Whitney, Likert 1–5, 8/arm (normal approx., ties)",
            true,
            8,
            MwMethod::Auto,
            Target::AtMost,
        ),
        (
            "Mann–Whitney, log-normal, 200/arm (normal approx.)",
            false,
            200,
            MwMethod::Asymptotic,
            Target::Band,
        ),
        (
            "Mann–Whitney, log-normal, 8/arm (exact)",
            false,
            8,
            MwMethod::Exact,
            Target::AtMost,
        ),
        (
            "Mann–Whitney, log-normal, 5/arm (exact)",
            false,
            5,
            MwMethod::Exact,
            Target::AtMost,
        ),
    ];
    for (name, likert, n, method, target) in cases {
        let mut c = Cal::default();
        let mut x = vec![0.0; n];
        let mut y = vec![0.0; n];
        for _ in 0..TRIALS {
            for v in x.iter_mut().chain(y.iter_mut()) {
                *v = if likert {
                    1.0 + categorical(&mut rng, &likert_cum) as f64
                } else {
                    normal(&mut rng).exp()
                };
            }
            c.attempt();
            if let Ok(r) = nonparametric::mann_whitney(&y, &x, RAlt::TwoSided, method) {
                c.test(r.p_value);
            }
        }
        out.push(Row::new(name, &c, target));
    }
}

/// Bootstrap intervals for a difference in means (stream 6): exponential
/// outcome (skewed), equal means, `BOOT_TRIALS` trials of `BOOT_RESAMPLES`
/// resamples each (bootstrap seed = trial index); the Welch interval on the
/// same data for comparison. Then two controls of `BOOT_CONTROL_TRIALS`
/// trials: normal outcomes (no skewness to correct) and 200 units per arm.
pub(crate) fn bootstrap(out: &mut Vec<Row>) {
    let mut rng = stream(6);
    for (n0, n1, normal_data, trials) in [
        (50, 50, false, BOOT_TRIALS),
        (20, 80, false, BOOT_TRIALS),
        (50, 50, true, BOOT_CONTROL_TRIALS),
        (200, 200, false, BOOT_CONTROL_TRIALS),
    ] {
        let (mut pc, mut bc, mut wc) = (Cal::default(), Cal::default(), Cal::default());
        let mut a = vec![0.0; n0];
        let mut b = vec![0.0; n1];
        for trial in 0..trials {
            for v in a.iter_mut().chain(b.iter_mut()) {
                *v = if normal_data {
                    normal(&mut rng)
                } else {
                    exponential(&mut rng)
                };
            }
            let samples: [&[f64]; 2] = [&a, &b];
            for (c, m) in [
                (&mut pc, BootMethod::Percentile),
                (&mut bc, BootMethod::Bca),
            ] {
                c.attempt();
                if let Ok(r) = nonparametric::bootstrap_ci(
                    &samples,
                    nonparametric::diff_of_means,
                    0.95,
                    BOOT_RESAMPLES,
                    trial as u64,
                    m,
                ) {
                    c.reject_if(!(r.lower <= 0.0 && 0.0 <= r.upper));
                    c.interval(r.lower, r.upper, 0.0);
                }
            }
            let st = |v: &[f64]| {
                ArmStats::new(
                    v.len() as f64,
                    v.iter().sum(),
                    v.iter().map(|x| x * x).sum(),
                )
            };
            welch_into(
                &mut wc,
                &effects::estimate(MetricKind::Mean, &st(&a), &st(&b), Scale::Absolute),
            );
        }
        let data = if normal_data { "N(0, 1)" } else { "Exp(1)" };
        for (c, what) in [
            (&pc, "Bootstrap percentile"),
            (&bc, "Bootstrap BCa"),
            (&wc, "Welch (same data)"),
        ] {
            out.push(Row::new(
                &format!("{what}, diff. of means, {data}, n = {n0} / {n1}"),
                c,
                Target::Band,
            ));
        }
    }
}

/// Users randomised within communities (stream 7), analysed as
/// `blocked_users` by `rows::analyze_rows`: the stratified permutation test
/// and the post-stratified difference with its Neyman standard error and a
/// t reference with Welch–Satterthwaite df.
/// Community baselines (1, 2, 4, 8), outcome b_c + (E − 1)·b_c/2; exactly half
/// of each community treated.
pub(crate) fn permutation_section(out: &mut Vec<Row>) {
    let mut rng = stream(7);
    let base = [1.0, 2.0, 4.0, 8.0];
    let names = ["c1", "c2", "c3", "c4"];
    for (sizes, label) in [
        ([20, 30, 40, 60], "150 users, 4 communities of 20–60"),
        ([4, 4, 4, 4], "16 users, 4 communities of 4"),
    ] {
        let mut perm = Cal::default();
        let mut neyman = Cal::default();
        let mut exact = true;
        for trial in 0..TRIALS {
            let mut rows_in = Vec::new();
            for (c, &size) in sizes.iter().enumerate() {
                let mut treated: Vec<bool> = (0..size).map(|i| 2 * i < size).collect();
                treated.shuffle(&mut rng);
                for t in treated {
                    let v = base[c] + (exponential(&mut rng) - 1.0) * base[c] / 2.0;
                    rows_in.push(DataRow {
                        cluster: names[c].into(),
                        period: None,
                        arm: None,
                        treated: Some(t),
                        value: v,
                        covariate: None,
                        stratum: None,
                    });
                }
            }
            let input = RowsInput {
                rows: rows_in,
                design: RowsDesign {
                    kind: DesignKind::BlockedUsers,
                    control_arm: "control".into(),
                    community_effects: None,
                    alternative: RAlt::TwoSided,
                    max_enumerate: 100_000,
                    randomisation_draws: PERM_DRAWS,
                    wild_bootstrap_draws: 0,
                    seed: trial as u64,
                },
            };
            perm.attempt();
            neyman.attempt();
            let Ok(o) = rows::analyze_rows(&input) else {
                continue;
            };
            if let Some(r) = &o.randomisation.result {
                exact &= r.exact;
                perm.test(r.p_value);
            }
            if let Some(ps) = o.post_stratified.as_ref().and_then(|p| p.result.as_ref()) {
                neyman.both(ps.p_value, ps.ci95.0, ps.ci95.1);
            }
        }
        let how = if exact {
            "exact, 1,296 assignments".to_string()
        } else {
            format!("{PERM_DRAWS} seeded draws")
        };
        out.push(Row::new(
            &format!("Stratified permutation test, {label} ({how})"),
            &perm,
            Target::Band,
        ));
        out.push(Row::new(
            &format!("Post-stratified, Neyman se, t ref. (Satterthwaite df), {label}"),
            &neyman,
            Target::Band,
        ));
    }
}
