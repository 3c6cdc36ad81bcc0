//! Multiple testing (`multiple`) and the data-quality and survey checks
//! (`checks`).

use crate::common::*;
use commonlab_stats::effects::{self, Alternative, MetricKind, Scale};
use commonlab_stats::response::{self, ArmResponse};
use commonlab_stats::{multiple, srm, survey};
use rand::Rng;

/// Multiple testing (stream 8): 5 metrics per trial, each a Welch test on
/// 200 units per arm of N(0, 1) outcomes. Global null, and 3 nulls with 2
/// true effects of 0.25 SD.
pub(crate) fn multiple_section(out: &mut Vec<Row>) {
    let mut rng = stream(8);
    const M: usize = 5;
    const N: usize = 200;
    for (label, effects_sd) in [
        ("5 null metrics", [0.0; M]),
        ("3 null + 2 true effects", [0.0, 0.0, 0.0, 0.25, 0.25]),
    ] {
        let nulls = effects_sd.iter().filter(|&&e| e == 0.0).count();
        let (mut raw, mut holm, mut bh) = (Cal::default(), Cal::default(), Cal::default());
        let mut holm_ci = Cal::default();
        let mut bh_fdp = 0.0;
        for _ in 0..TRIALS {
            let mut ps = [1.0; M];
            let mut ests = [None; M];
            for (k, &eff) in effects_sd.iter().enumerate() {
                let mut arms = [Acc::default(); 2];
                for (i, arm) in arms.iter_mut().enumerate() {
                    for _ in 0..N {
                        arm.push(normal(&mut rng) + if i == 1 { eff } else { 0.0 }, 1.0, 0.0);
                    }
                }
                let e = effects::estimate(
                    MetricKind::Mean,
                    &arms[0].plain(),
                    &arms[1].plain(),
                    Scale::Absolute,
                )
                .unwrap();
                ps[k] = effects::t_test(&e, ALPHA, Alternative::TwoSided)
                    .unwrap()
                    .p_value;
                ests[k] = Some(e);
            }
            let h = multiple::holm(&ps).unwrap();
            let b = multiple::benjamini_hochberg(&ps).unwrap();
            let false_raw = (0..nulls).any(|k| ps[k] < ALPHA);
            let false_holm = (0..nulls).any(|k| h[k] < ALPHA);
            let r_bh = b.iter().filter(|&&q| q < ALPHA).count();
            let v_bh = (0..nulls).filter(|&k| b[k] < ALPHA).count();
            raw.reject_if(false_raw);
            holm.reject_if(false_holm);
            // FDR = E[V / max(R, 1)], the false share of BH's rejections
            bh.tested += 1;
            bh_fdp += v_bh as f64 / r_bh.max(1) as f64;
            // Holm's simultaneous (Bonferroni-level) intervals
            let a = multiple::holm_interval_alpha(ALPHA, M);
            let all = ests.iter().zip(effects_sd).all(|(e, eff)| {
                let r = effects::t_test(e.as_ref().unwrap(), a, Alternative::TwoSided).unwrap();
                r.ci_lower <= eff && eff <= r.ci_upper
            });
            holm_ci.interval(if all { 0.0 } else { 1.0 }, 1.0, 0.0);
        }
        let fdr = 100.0 * bh_fdp / bh.tested as f64;
        out.push(Row::new(
            &format!("Unadjusted, {label}: any false rejection"),
            &raw,
            Target::Contrast,
        ));
        let mut hr = Row::new(
            &format!("Holm, {label}: FWER; simultaneous CI coverage"),
            &holm,
            Target::AtMost,
        );
        hr.cov = holm_ci.cov();
        out.push(hr);
        let mut br = Row::new(
            &format!("Benjamini–Hochberg, {label}: FDR"),
            &bh,
            Target::AtMost,
        );
        br.fpr = Some(fdr);
        out.push(br);
    }
}

/// Data-quality checks and survey methods (stream 9).
pub(crate) fn checks(out: &mut Vec<Row>) {
    let mut rng = stream(9);
    // SRM: 2 arms, 2,000 users at ½/½; 3 arms, 3,000 users at ½/¼/¼.
    for (label, w) in [
        ("2 arms, 2,000 users", vec![1.0, 1.0]),
        ("3 arms ½/¼/¼, 3,000 users", vec![2.0, 1.0, 1.0]),
    ] {
        let total_users = 1_000 * w.len();
        let wsum: f64 = w.iter().sum();
        let cum: Vec<f64> = w
            .iter()
            .scan(0.0, |s, x| {
                *s += x / wsum;
                Some(*s)
            })
            .collect();
        let (mut c05, mut flag) = (Cal::default(), Cal::default());
        for _ in 0..TRIALS {
            let mut users = vec![0.0; w.len()];
            for _ in 0..total_users {
                users[categorical(&mut rng, &cum)] += 1.0;
            }
            c05.attempt();
            flag.attempt();
            if let Ok(r) = srm::check(&users, &w) {
                c05.test(r.p_value);
                flag.reject_if(r.mismatch);
            }
        }
        out.push(Row::new(
            &format!("SRM chi-square, {label}, p < 0.05"),
            &c05,
            Target::Band,
        ));
        out.push(Row::new(
            &format!("SRM flag (p < 0.001), {label}"),
            &flag,
            Target::Flag,
        ));
    }
    // Differential survey response: chi-square (large) and Fisher (small).
    for (label, invited, rate) in [
        ("500 invited/arm, rate 0.4 (chi-square)", 500u64, 0.4),
        ("12 invited/arm, rate 0.25 (Fisher exact)", 12u64, 0.25),
    ] {
        let mut c = Cal::default();
        let mut which = std::collections::BTreeSet::new();
        for _ in 0..TRIALS {
            let arms: Vec<ArmResponse> = (0..2)
                .map(|_| ArmResponse {
                    invited,
                    responded: (0..invited).filter(|_| rng.random::<f64>() < rate).count() as u64,
                })
                .collect();
            c.attempt();
            if let Ok(r) = response::check(&arms) {
                which.insert(format!("{:?}", r.test));
                c.test(r.p_value);
            }
        }
        let target = if invited < 100 {
            Target::AtMost
        } else {
            Target::Band
        };
        out.push(Row::new(
            &format!("Survey response check, {label}"),
            &c,
            target,
        ));
    }
    // Survey scale scores: Welch on per-respondent means of 4 Likert items,
    // 30 respondents per arm.
    let likert_cum = [0.05, 0.15, 0.35, 0.70, 1.0];
    let mut c = Cal::default();
    for _ in 0..TRIALS {
        let mut arms = [vec![0.0; 30], vec![0.0; 30]];
        for v in arms.iter_mut().flatten() {
            *v = (0..4)
                .map(|_| 1.0 + categorical(&mut rng, &likert_cum) as f64)
                .sum::<f64>()
                / 4.0;
        }
        c.attempt();
        if let Ok(w) = survey::welch(&arms[0], &arms[1]) {
            c.both(w.p_value, w.ci95.0, w.ci95.1);
        }
    }
    out.push(Row::new(
        "Survey scale scores, Welch, 4 Likert items, 30/arm",
        &c,
        Target::Band,
    ));
    // Cronbach's alpha, Feldt interval: k = 5 parallel normal items
    // (true score variance 1, error variance 2), 50 respondents; population
    // alpha = kρ/(1 + (k − 1)ρ) with ρ = 1/3.
    let (k, n) = (5usize, 50usize);
    let rho: f64 = 1.0 / 3.0;
    let truth = k as f64 * rho / (1.0 + (k as f64 - 1.0) * rho);
    let mut c = Cal::default();
    for _ in 0..TRIALS {
        let responses: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let t = normal(&mut rng);
                (0..k).map(|_| t + 2f64.sqrt() * normal(&mut rng)).collect()
            })
            .collect();
        c.attempt();
        if let Ok(a) = survey::cronbach_alpha(&responses, 0.95) {
            c.interval(a.ci.0, a.ci.1, truth);
        }
    }
    out.push(Row::new(
        &format!("Cronbach's alpha, Feldt 95% CI (k = {k}, n = {n}, α = {truth:.3})"),
        &c,
        Target::Band,
    ));
}
