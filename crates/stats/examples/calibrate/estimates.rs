//! The effect estimates and their intervals: `core`, `ratio`, `cuped`,
//! `poststrat`, `bayes`.

use crate::common::*;
use commonlab_stats::bayes::Prior;
use commonlab_stats::effects::{self, Alternative, ArmStats, MetricKind, Scale};
use commonlab_stats::poststrat::{self, Stratum};
use commonlab_stats::{cuped, srm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The original calibration (stream 0), plus rows computed from the same
/// simulated data without further draws: one-sided tests, relative lifts of
/// proportions and CUPED, Bayesian posteriors, the covariate balance check.
pub(crate) fn core(out: &mut Vec<Row>) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut t_welch = Tally::default();
    let mut t_welch_prop = Tally::default();
    let mut t_rel = Tally::default();
    let mut t_cuped = Tally::default();
    let mut t_seq = Tally::default();
    let mut t_seq_peek = Tally::default();
    let mut t_welch_peek = Tally::default();
    let mut greater = Cal::default();
    let mut lesser = Cal::default();
    let mut prop_rel = Cal::default();
    let mut cuped_rel = Cal::default();
    let mut seq_rel = Cal::default();
    let mut bayes_flat = Cal::default();
    let mut bayes_flat_rel = Cal::default();
    let mut bayes_default = Cal::default();
    let mut bayes_tight = Cal::default();
    let mut balance = Cal::default();
    let default_prior = Prior {
        mean: 0.0,
        stddev: 0.3,
    };
    let tight_prior = Prior {
        mean: 0.0,
        stddev: 0.02,
    };
    let per_look = N_PER_ARM / LOOKS;
    for _ in 0..TRIALS {
        let mut arms = [
            ArmStats::new(0.0, 0.0, 0.0).with_covariate(0.0, 0.0, 0.0),
            ArmStats::new(0.0, 0.0, 0.0).with_covariate(0.0, 0.0, 0.0),
        ];
        let mut props = [ArmStats::new(0.0, 0.0, 0.0), ArmStats::new(0.0, 0.0, 0.0)];
        let mut seq_rejected = false;
        let mut welch_rejected = false;
        let mut seq_all_cover = true;
        for look in 0..LOOKS {
            for (arm, prop) in arms.iter_mut().zip(props.iter_mut()) {
                for _ in 0..per_look {
                    let x = normal(&mut rng);
                    let e = -(1.0 - rng.random::<f64>()).ln();
                    let y = 2.0 + 0.7 * x + (e - 1.0);
                    arm.n += 1.0;
                    arm.sum += y;
                    *arm.sum_squares.as_mut().unwrap() += y * y;
                    *arm.x_sum.as_mut().unwrap() += x;
                    *arm.x_sum_squares.as_mut().unwrap() += x * x;
                    *arm.xy_sum.as_mut().unwrap() += x * y;
                    let b = if rng.random::<f64>() < 0.1 { 1.0 } else { 0.0 };
                    prop.n += 1.0;
                    prop.sum += b;
                    *prop.sum_squares.as_mut().unwrap() += b;
                }
            }
            let est: Res = effects::estimate(MetricKind::Mean, &arms[0], &arms[1], Scale::Absolute);
            if let Some((p, lo, hi)) = seq(&est) {
                seq_rejected |= p < ALPHA;
                seq_all_cover &= lo <= 0.0 && 0.0 <= hi;
            }
            if let Some((p, _, _)) = welch(&est) {
                welch_rejected |= p < ALPHA;
            }
            if look == LOOKS - 1 {
                t_welch.add(welch(&est));
                t_seq.add(seq(&est));
                let rel = effects::estimate(MetricKind::Mean, &arms[0], &arms[1], Scale::Relative);
                t_rel.add(welch(&rel));
                let c = cuped::estimate(MetricKind::Mean, &arms[0], &arms[1], Scale::Absolute)
                    .map(|c| c.estimate);
                t_cuped.add(welch(&c));
                let pe = effects::estimate(
                    MetricKind::Proportion,
                    &props[0],
                    &props[1],
                    Scale::Absolute,
                );
                t_welch_prop.add(welch(&pe));

                // Rows added later: same data, no further draws.
                one_sided_into(&mut greater, &est, Alternative::Greater);
                one_sided_into(&mut lesser, &est, Alternative::Lesser);
                let pr = effects::estimate(
                    MetricKind::Proportion,
                    &props[0],
                    &props[1],
                    Scale::Relative,
                );
                welch_into(&mut prop_rel, &pr);
                let cr = cuped::estimate(MetricKind::Mean, &arms[0], &arms[1], Scale::Relative)
                    .map(|c| c.estimate);
                welch_into(&mut cuped_rel, &cr);
                seq_rel.attempt();
                if let Some((p, lo, hi)) = seq(&rel) {
                    seq_rel.both(p, lo, hi);
                }
                bayes_into(&mut bayes_flat, &est, None, Scale::Absolute, 0.0, 0.0);
                bayes_into(&mut bayes_flat_rel, &rel, None, Scale::Relative, 0.0, 0.0);
                let prior = Some(&default_prior);
                bayes_into(&mut bayes_default, &rel, prior, Scale::Relative, 0.0, 0.0);
                let prior = Some(&tight_prior);
                bayes_into(&mut bayes_tight, &rel, prior, Scale::Relative, 0.0, 0.0);
                balance.attempt();
                if let Ok((_, p)) = srm::covariate_balance(&arms[0], &arms[1]) {
                    balance.test(p);
                }
            }
        }
        t_seq_peek.add(Some((
            if seq_rejected { 0.0 } else { 1.0 },
            if seq_all_cover { -1.0 } else { 1.0 },
            1.0,
        )));
        t_welch_peek.add(Some((if welch_rejected { 0.0 } else { 1.0 }, -1.0, 1.0)));
    }
    let old = |name: &str, t: &Tally, cov: bool, target: Target| Row {
        name: name.into(),
        trials: t.runs.to_string(),
        fpr: Some(t.fpr()),
        cov: cov.then(|| t.cov()),
        target,
    };
    out.push(old("Welch, mean (absolute)", &t_welch, true, Target::Band));
    out.push(old(
        "Welch, mean (relative, delta method)",
        &t_rel,
        true,
        Target::Band,
    ));
    out.push(old(
        "Welch, proportion (absolute)",
        &t_welch_prop,
        true,
        Target::Band,
    ));
    out.push(Row::new(
        "Welch, proportion (relative, delta method)",
        &prop_rel,
        Target::Band,
    ));
    out.push(Row::new(
        "Welch, mean, one-sided greater (interval [L, ∞))",
        &greater,
        Target::Band,
    ));
    out.push(Row::new(
        "Welch, mean, one-sided lesser (interval (−∞, U])",
        &lesser,
        Target::Band,
    ));
    out.push(old("CUPED, mean (absolute)", &t_cuped, true, Target::Band));
    out.push(Row::new("CUPED, mean (relative)", &cuped_rel, Target::Band));
    out.push(Row::new(
        "SRM covariate balance (Welch on X)",
        &balance,
        Target::Band,
    ));
    out.push(old(
        "Sequential, single final look",
        &t_seq,
        true,
        Target::AtMost,
    ));
    out.push(Row::new(
        "Sequential, relative lift, single final look",
        &seq_rel,
        Target::AtMost,
    ));
    out.push(old(
        "Sequential, 10 looks (ever rejected / always covered)",
        &t_seq_peek,
        true,
        Target::AtMost,
    ));
    out.push(old(
        "Welch, 10 looks (naive peeking, for contrast)",
        &t_welch_peek,
        false,
        Target::Contrast,
    ));
    out.push(Row::new(
        "Bayesian, flat prior, mean (absolute); FPR = CI excludes 0",
        &bayes_flat,
        Target::Band,
    ));
    out.push(Row::new(
        "Bayesian, flat prior, mean (relative)",
        &bayes_flat_rel,
        Target::Band,
    ));
    out.push(Row::new(
        "Bayesian, prior N(0, 0.3²) on relative lift (default), truth 0",
        &bayes_default,
        Target::Band,
    ));
    out.push(Row::new(
        "Bayesian, prior N(0, 0.02²) on relative lift, truth 0 = prior mean",
        &bayes_tight,
        Target::OverCover,
    ));
}

/// Ratio metrics (stream 1): 1,000 users per arm, latent activity a ~ N(0, 1),
/// sessions D = 1 + Poisson(2·e^{0.4a}), minutes M = 3·D·e^{0.25a}·(1 + E)/2
/// (E ~ Exp(1)), pre-period covariate X = a + 0.5·N(0, 1).
pub(crate) fn ratio(out: &mut Vec<Row>) {
    let mut rng = stream(1);
    let mut c = [Cal::default(); 4];
    for _ in 0..TRIALS {
        let mut arms = [Acc::default(); 2];
        for arm in &mut arms {
            for _ in 0..N_PER_ARM {
                let a = normal(&mut rng);
                let d = 1.0 + poisson(&mut rng, 2.0 * (0.4 * a).exp());
                let m = 3.0 * d * (0.25 * a).exp() * (1.0 + exponential(&mut rng)) / 2.0;
                let x = a + 0.5 * normal(&mut rng);
                arm.push(m, d, x);
            }
        }
        let (a, b) = (arms[0].ratio(), arms[1].ratio());
        for (k, scale) in [Scale::Absolute, Scale::Relative].into_iter().enumerate() {
            welch_into(
                &mut c[k],
                &effects::estimate(MetricKind::Ratio, &a, &b, scale),
            );
        }
        let (a, b) = (arms[0].ratio_with_x(), arms[1].ratio_with_x());
        for (k, scale) in [Scale::Absolute, Scale::Relative].into_iter().enumerate() {
            let e = cuped::estimate(MetricKind::Ratio, &a, &b, scale).map(|c| c.estimate);
            welch_into(&mut c[2 + k], &e);
        }
    }
    out.push(Row::new(
        "Ratio metric, delta method (absolute)",
        &c[0],
        Target::Band,
    ));
    out.push(Row::new(
        "Ratio metric, delta method (relative)",
        &c[1],
        Target::Band,
    ));
    out.push(Row::new("CUPED, ratio (absolute)", &c[2], Target::Band));
    out.push(Row::new("CUPED, ratio (relative)", &c[3], Target::Band));
}

/// CUPED on a proportion (stream 2): 1,000 units per arm, X ~ N(0, 1),
/// Y = 1{0.8·X + N(0, 1) > 1.2} (P(Y = 1) ≈ 0.17).
pub(crate) fn cuped_prop(out: &mut Vec<Row>) {
    let mut rng = stream(2);
    let mut c = [Cal::default(); 2];
    for _ in 0..TRIALS {
        let mut arms = [Acc::default(); 2];
        for arm in &mut arms {
            for _ in 0..N_PER_ARM {
                let x = normal(&mut rng);
                let y = if 0.8 * x + normal(&mut rng) > 1.2 {
                    1.0
                } else {
                    0.0
                };
                arm.push(y, 1.0, x);
            }
        }
        let (a, b) = (arms[0].with_x(), arms[1].with_x());
        for (k, scale) in [Scale::Absolute, Scale::Relative].into_iter().enumerate() {
            let e = cuped::estimate(MetricKind::Proportion, &a, &b, scale).map(|c| c.estimate);
            welch_into(&mut c[k], &e);
        }
    }
    out.push(Row::new(
        "CUPED, proportion (absolute)",
        &c[0],
        Target::Band,
    ));
    out.push(Row::new(
        "CUPED, proportion (relative)",
        &c[1],
        Target::Band,
    ));
}

/// Post-stratification (stream 3): 2,000 users, each in community k with
/// probability (0.4, 0.3, 0.2, 0.1) and in either arm with probability ½
/// (Bernoulli assignment, so stratum shares vary); mean outcome
/// b_k + s_k·(E − 1) with b = (1, 2, 4, 8), s = (0.5, 1, 2, 4); 0/1 outcome
/// with p_k = (0.05, 0.1, 0.2, 0.4).
pub(crate) fn poststrat_section(out: &mut Vec<Row>) {
    let mut rng = stream(3);
    let cum = [0.4, 0.7, 0.9, 1.0];
    let base = [1.0, 2.0, 4.0, 8.0];
    let scale_k = [0.5, 1.0, 2.0, 4.0];
    let p_k = [0.05, 0.1, 0.2, 0.4];
    let names = ["north", "south", "east", "west"];
    let mut c = [Cal::default(); 5];
    for _ in 0..TRIALS {
        let mut mean = [[Acc::default(); 2]; 4];
        let mut prop = [[Acc::default(); 2]; 4];
        for _ in 0..2 * N_PER_ARM {
            let k = categorical(&mut rng, &cum);
            let arm = usize::from(rng.random::<f64>() < 0.5);
            let y = base[k] + scale_k[k] * (exponential(&mut rng) - 1.0);
            mean[k][arm].push(y, 1.0, 0.0);
            let b = if rng.random::<f64>() < p_k[k] {
                1.0
            } else {
                0.0
            };
            prop[k][arm].push(b, 1.0, 0.0);
        }
        for (kind, cells, off) in [
            (MetricKind::Mean, &mean, 0),
            (MetricKind::Proportion, &prop, 2),
        ] {
            let stats: Vec<[ArmStats; 2]> =
                cells.iter().map(|a| [a[0].plain(), a[1].plain()]).collect();
            let strata: Vec<Stratum<'_>> = stats
                .iter()
                .zip(names)
                .map(|(s, name)| Stratum {
                    name,
                    control: &s[0],
                    treatment: &s[1],
                })
                .collect();
            for (k, scale) in [Scale::Absolute, Scale::Relative].into_iter().enumerate() {
                welch_into(&mut c[off + k], &poststrat::estimate(kind, &strata, scale));
            }
            if kind == MetricKind::Mean {
                // the same data without stratification, for comparison
                let (mut a, mut b) = (ArmStats::new(0.0, 0.0, 0.0), ArmStats::new(0.0, 0.0, 0.0));
                for s in &stats {
                    a = a.add(&s[0]);
                    b = b.add(&s[1]);
                }
                welch_into(&mut c[4], &effects::estimate(kind, &a, &b, Scale::Absolute));
            }
        }
    }
    out.push(Row::new(
        "Post-stratified (4 communities), mean (absolute)",
        &c[0],
        Target::Band,
    ));
    out.push(Row::new(
        "Post-stratified (4 communities), mean (relative)",
        &c[1],
        Target::Band,
    ));
    out.push(Row::new(
        "Post-stratified (4 communities), proportion (absolute)",
        &c[2],
        Target::Band,
    ));
    out.push(Row::new(
        "Post-stratified (4 communities), proportion (relative)",
        &c[3],
        Target::Band,
    ));
    out.push(Row::new(
        "Same data unstratified: Welch, mean (absolute)",
        &c[4],
        Target::Band,
    ));
}

/// Bayesian coverage when the truth is drawn from the prior (stream 4):
/// each trial draws a relative lift δ ~ N(0, 0.02²); 1,000 units per arm,
/// control Y = 2 + 1.2·N(0, 1), treatment (1 + δ)·(2 + 1.2·N(0, 1)), so the
/// relative lift is δ and the absolute lift 2δ.
pub(crate) fn bayes_section(out: &mut Vec<Row>) {
    let mut rng = stream(4);
    let tau = 0.02;
    let prior = Prior {
        mean: 0.0,
        stddev: tau,
    };
    let mut c = [Cal::default(); 4];
    for _ in 0..TRIALS {
        let delta = tau * normal(&mut rng);
        let mut arms = [Acc::default(); 2];
        for (i, arm) in arms.iter_mut().enumerate() {
            let f = if i == 1 { 1.0 + delta } else { 1.0 };
            for _ in 0..N_PER_ARM {
                let y = f * (2.0 + 1.2 * normal(&mut rng));
                arm.push(y, 1.0, 0.0);
            }
        }
        let (a, b) = (arms[0].plain(), arms[1].plain());
        let rel = effects::estimate(MetricKind::Mean, &a, &b, Scale::Relative);
        let abs = effects::estimate(MetricKind::Mean, &a, &b, Scale::Absolute);
        bayes_into(&mut c[0], &rel, Some(&prior), Scale::Relative, 0.0, delta);
        bayes_into(
            &mut c[1],
            &abs,
            Some(&prior),
            Scale::Absolute,
            0.0,
            2.0 * delta,
        );
        bayes_into(&mut c[2], &rel, None, Scale::Relative, 0.0, delta);
        c[3].attempt();
        if let Some((_, lo, hi)) = welch(&rel) {
            c[3].interval(lo, hi, delta);
        }
    }
    let strip = |mut c: Cal| {
        // the truth is not 0 here: report coverage only
        c.tested = 0;
        c
    };
    out.push(Row::new(
        "Bayesian, prior N(0, 0.02²), truth δ drawn from it (relative)",
        &strip(c[0]),
        Target::Band,
    ));
    out.push(Row::new(
        "Bayesian, same, absolute scale (prior rescaled by control mean)",
        &strip(c[1]),
        Target::Band,
    ));
    out.push(Row::new(
        "Bayesian, flat prior, truth δ drawn as above (relative)",
        &strip(c[2]),
        Target::Band,
    ));
    out.push(Row::new(
        "Welch CI, truth δ drawn as above (relative)",
        &c[3],
        Target::Band,
    ));
}
