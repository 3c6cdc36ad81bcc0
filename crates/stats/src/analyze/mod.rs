//! The `commonlab analyze` JSON contract: sufficient statistics in, every
//! method's estimates out. See `docs/analyze.md` for the full schema.
//!
//! [`parse_input`] deserialises with unknown fields rejected (the error names
//! the JSON path) and validates the structure; [`analyze`] never fails — any
//! estimate that cannot be computed becomes an `{"error": "..."}` entry at the
//! narrowest level (one entry, one comparison, one metric, or the SRM block).
//! [`to_markdown`] renders a human-readable report.

mod input;
mod markdown;
mod output;

pub use input::{parse_input, validate, AnalyzeInput, MetricInput, StratumInput, SurveyWaveInput};
pub use markdown::to_markdown;
pub use output::{
    AdjustedEntry, AnalyzeOutput, ArmSummary, BalanceEntry, Comparison, CupedResults, Entry,
    FrequentistEntry, MethodResults, MetricOutcome, MetricResults, MultipleTesting, Named,
    PostStratResults, ResponseEntry, SrmBlock, SurveyResponseBlock,
};

use crate::bayes::Prior;
use crate::effects::{self, Alternative, ArmMoments, ArmStats, Estimate, MetricKind, Scale};
use crate::response::{self, ArmResponse};
use crate::{cuped, multiple, poststrat, srm, Result, StatsError};

fn survey_response_block(waves: &[SurveyWaveInput], k: usize) -> SurveyResponseBlock {
    let arms = |w: &SurveyWaveInput| -> Result<Vec<ArmResponse>> {
        if w.invited.len() != k || w.responded.len() != k {
            return Err(StatsError::InvalidInput(format!(
                "wave {:?} needs one invited and one responded count for each of the {k} arms",
                w.wave
            )));
        }
        Ok(w.invited
            .iter()
            .zip(&w.responded)
            .map(|(&invited, &responded)| ArmResponse { invited, responded })
            .collect())
    };
    let entries: Vec<ResponseEntry> = waves
        .iter()
        .map(|w| ResponseEntry::new(&w.wave, arms(w).and_then(|a| response::check(&a))))
        .collect();
    let pooled = (waves.len() > 1).then(|| {
        let invalid = waves
            .iter()
            .map(|w| arms(w).and_then(|a| response::check(&a)));
        if let Some((w, e)) = waves.iter().zip(invalid).find_map(|(w, r)| match r {
            Err(e @ StatsError::InvalidInput(_)) => Some((w, e)),
            _ => None,
        }) {
            return ResponseEntry::new(
                "pooled",
                Err(StatsError::InvalidInput(format!(
                    "not pooled: wave {:?} is invalid ({e})",
                    w.wave
                ))),
            );
        }
        let summed = waves.iter().map(arms).try_fold(
            vec![
                ArmResponse {
                    invited: 0,
                    responded: 0
                };
                k
            ],
            |mut acc, w| {
                for (a, b) in acc.iter_mut().zip(w?) {
                    a.invited = a.invited.saturating_add(b.invited);
                    a.responded = a.responded.saturating_add(b.responded);
                }
                Ok::<_, StatsError>(acc)
            },
        );
        ResponseEntry::new("pooled", summed.and_then(|a| response::check(&a)))
    });
    let differential_response = entries.iter().any(ResponseEntry::flagged)
        || pooled.as_ref().is_some_and(ResponseEntry::flagged);
    SurveyResponseBlock {
        waves: entries,
        pooled,
        differential_response,
        threshold: response::RESPONSE_P_THRESHOLD,
    }
}

struct Cfg {
    alpha: f64,
    tuning: f64,
    prior: Prior,
}

fn summary(kind: MetricKind, name: &str, s: &ArmStats) -> ArmSummary {
    let m = ArmMoments::from_stats(kind, s, false).ok();
    let value = m.map(|m| m.value(kind)).filter(|v| v.is_finite());
    let stddev = m
        .filter(|m| m.n >= 2.0)
        .map(|m| m.unit_variance(kind).max(0.0).sqrt())
        .filter(|v| v.is_finite());
    ArmSummary {
        name: name.to_string(),
        n: s.n,
        value,
        stddev,
    }
}

struct FamilyMember {
    metric: String,
    arm: String,
    est: Estimate,
    p: f64,
}

fn analyze_metric(
    input: &AnalyzeInput,
    m: &MetricInput,
    cfg: &Cfg,
    family: &mut Vec<FamilyMember>,
    balance: &mut Vec<BalanceEntry>,
) -> Result<MetricResults> {
    let k = input.arms.len();
    let kind = m.kind;
    // arm totals
    let totals: Vec<ArmStats> = match (&m.stats, &m.strata) {
        (Some(s), _) => {
            if s.len() != k {
                return Err(StatsError::InvalidInput(format!(
                    "stats has {} entries for {k} arms",
                    s.len()
                )));
            }
            s.clone()
        }
        (None, Some(st)) => {
            let mut t: Vec<ArmStats> = vec![];
            for s in st {
                if s.stats.len() != k {
                    return Err(StatsError::InvalidInput(format!(
                        "stratum {:?} has {} entries for {k} arms",
                        s.name,
                        s.stats.len()
                    )));
                }
                if t.is_empty() {
                    t = s.stats.clone();
                } else {
                    t = t.iter().zip(&s.stats).map(|(a, b)| a.add(b)).collect();
                }
            }
            if t.is_empty() {
                return Err(StatsError::InvalidInput("strata is empty".into()));
            }
            t
        }
        (None, None) => return Err(StatsError::InvalidInput("needs stats or strata".into())),
    };
    let arms = input
        .arms
        .iter()
        .zip(&totals)
        .map(|(n, s)| summary(kind, n, s))
        .collect();
    let with_cov = totals.iter().all(|s| s.has_covariate(kind));
    let control = &totals[0];
    let mut comparisons = Vec::with_capacity(k - 1);
    for (j, treat) in totals.iter().enumerate().skip(1) {
        let abs_est = effects::estimate(kind, control, treat, Scale::Absolute);
        if let Ok(e) = &abs_est {
            if let Ok(r) = effects::t_test(e, cfg.alpha, Alternative::TwoSided) {
                family.push(FamilyMember {
                    metric: m.name.clone(),
                    arm: input.arms[j].clone(),
                    est: *e,
                    p: r.p_value,
                });
            }
        }
        let absolute = MethodResults::from_estimate(abs_est, Scale::Absolute, cfg);
        let relative = MethodResults::from_estimate(
            effects::estimate(kind, control, treat, Scale::Relative),
            Scale::Relative,
            cfg,
        );
        let cuped = if with_cov {
            let bal = srm::covariate_balance(control, treat);
            balance.push(BalanceEntry {
                metric: m.name.clone(),
                arm: input.arms[j].clone(),
                difference: bal.as_ref().ok().map(|b| b.0),
                p_value: bal.as_ref().ok().map(|b| b.1),
                error: bal.as_ref().err().map(|e| e.to_string()),
            });
            let a = cuped::estimate(kind, control, treat, Scale::Absolute);
            let r = cuped::estimate(kind, control, treat, Scale::Relative);
            let theta = a.as_ref().ok().map(|c| c.theta);
            Some(CupedResults {
                theta,
                absolute: MethodResults::from_estimate(a.map(|c| c.estimate), Scale::Absolute, cfg),
                relative: MethodResults::from_estimate(r.map(|c| c.estimate), Scale::Relative, cfg),
            })
        } else {
            None
        };
        let post_stratified = m.strata.as_ref().map(|st| {
            let strata: Vec<poststrat::Stratum<'_>> = st
                .iter()
                .map(|s| poststrat::Stratum {
                    name: &s.name,
                    control: &s.stats[0],
                    treatment: &s.stats[j],
                })
                .collect();
            PostStratResults {
                strata: strata.len(),
                absolute: MethodResults::from_estimate(
                    poststrat::estimate(kind, &strata, Scale::Absolute),
                    Scale::Absolute,
                    cfg,
                ),
                relative: MethodResults::from_estimate(
                    poststrat::estimate(kind, &strata, Scale::Relative),
                    Scale::Relative,
                    cfg,
                ),
            }
        });
        comparisons.push((
            input.arms[j].clone(),
            Comparison {
                absolute,
                relative,
                cuped,
                post_stratified,
            },
        ));
    }
    Ok(MetricResults {
        kind,
        arms,
        comparisons: Named(comparisons),
    })
}

fn srm_block(input: &AnalyzeInput, balance: Vec<BalanceEntry>) -> SrmBlock {
    let mut b = SrmBlock {
        p_value: None,
        statistic: None,
        df: None,
        expected: None,
        mismatch: None,
        threshold: srm::SRM_P_THRESHOLD,
        error: None,
        covariate_balance: balance,
    };
    let k = input.arms.len();
    let weights = input.weights.clone().unwrap_or_else(|| vec![1.0; k]);
    match &input.users {
        None => b.error = Some("users not given".into()),
        Some(users) => match srm::check(users, &weights) {
            Ok(r) => {
                b.p_value = Some(r.p_value);
                b.statistic = Some(r.statistic);
                b.df = Some(r.df);
                b.expected = Some(r.expected);
                b.mismatch = Some(r.mismatch);
            }
            Err(e) => b.error = Some(e.to_string()),
        },
    }
    b
}

fn adjust(family: &[FamilyMember], adjusted: &[f64], interval_alpha: f64) -> Vec<AdjustedEntry> {
    family
        .iter()
        .zip(adjusted)
        .map(|(f, &q)| {
            let r = effects::t_test(&f.est, interval_alpha, Alternative::TwoSided);
            let (lo, hi) = r
                .map(|r| (r.ci_lower, r.ci_upper))
                .unwrap_or((f64::NAN, f64::NAN));
            AdjustedEntry {
                metric: f.metric.clone(),
                arm: f.arm.clone(),
                effect: f.est.effect,
                p_value: f.p,
                adjusted_p_value: q,
                ci_lower: lo,
                ci_upper: hi,
            }
        })
        .collect()
}

/// Analyse every metric. Never fails; see the module docs.
pub fn analyze(input: &AnalyzeInput) -> AnalyzeOutput {
    let cfg = Cfg {
        alpha: input.alpha,
        tuning: input.sequential_tuning_parameter,
        prior: input.prior.unwrap_or(Prior {
            mean: 0.0,
            stddev: 0.3,
        }),
    };
    let mut family = Vec::new();
    let mut balance = Vec::new();
    let mut metrics = Vec::with_capacity(input.metrics.len());
    for m in &input.metrics {
        let out = if input.arms.len() < 2 {
            MetricOutcome::Error {
                error: "need at least two arms".into(),
            }
        } else {
            match analyze_metric(input, m, &cfg, &mut family, &mut balance) {
                Ok(r) => MetricOutcome::Ok(r),
                Err(e) => MetricOutcome::Error {
                    error: e.to_string(),
                },
            }
        };
        metrics.push((m.name.clone(), out));
    }
    let ps: Vec<f64> = family.iter().map(|f| f.p).collect();
    let (holm, bh) = if ps.is_empty() {
        (vec![], vec![])
    } else {
        let h = multiple::holm(&ps).unwrap_or_else(|_| vec![1.0; ps.len()]);
        let b = multiple::benjamini_hochberg(&ps).unwrap_or_else(|_| vec![1.0; ps.len()]);
        let ha = multiple::holm_interval_alpha(cfg.alpha, ps.len());
        let ba = multiple::bh_interval_alpha(cfg.alpha, &b);
        (adjust(&family, &h, ha), adjust(&family, &b, ba))
    };
    AnalyzeOutput {
        srm: srm_block(input, balance),
        survey_response: input
            .survey_response
            .as_deref()
            .map(|w| survey_response_block(w, input.arms.len())),
        metrics: Named(metrics),
        multiple_testing: MultipleTesting { holm, bh },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "alpha": 0.05,
      "sequential_tuning_parameter": 5000,
      "prior": {"mean": 0, "stddev": 0.3},
      "weights": [0.5, 0.25, 0.25],
      "users": [1000, 510, 490],
      "arms": ["control", "t1", "t2"],
      "metrics": [
        {"name": "visits", "type": "mean", "stats": [
          {"n": 1000, "sum": 5000, "sum_squares": 34000, "x_sum": 4900, "x_sum_squares": 31000, "xy_sum": 30000},
          {"n": 510, "sum": 2700, "sum_squares": 18500, "x_sum": 2480, "x_sum_squares": 15600, "xy_sum": 15500},
          {"n": 490, "sum": 2400, "sum_squares": 16000, "x_sum": 2420, "x_sum_squares": 15300, "xy_sum": 14800}]},
        {"name": "joined", "type": "proportion", "strata": [
          {"name": "north", "stats": [{"n": 600, "sum": 120}, {"n": 300, "sum": 70}, {"n": 290, "sum": 55}]},
          {"name": "south", "stats": [{"n": 400, "sum": 40}, {"n": 210, "sum": 25}, {"n": 200, "sum": 21}]}]},
        {"name": "hours_per_visit", "type": "ratio", "stats": [
          {"n": 1000, "sum": 9000, "sum_squares": 120000, "d_sum": 5000, "d_sum_squares": 34000, "md_sum": 60000},
          {"n": 510, "sum": 4700, "sum_squares": 62000, "d_sum": 2700, "d_sum_squares": 18500, "md_sum": 31500},
          {"n": 490, "sum": 4500, "sum_squares": 60000, "d_sum": 2400, "d_sum_squares": 16000, "md_sum": 29500}]},
        {"name": "broken", "type": "mean", "stats": [
          {"n": 1, "sum": 3, "sum_squares": 9}, {"n": 5, "sum": 10, "sum_squares": 30}, {"n": 5, "sum": 10, "sum_squares": 30}]}
      ]
    }"#;

    #[test]
    fn example_round_trip() {
        let input = parse_input(EXAMPLE).unwrap();
        let out = analyze(&input);
        let v = serde_json::to_value(&out).unwrap();
        assert!(v["srm"]["p_value"].as_f64().unwrap() > 0.001);
        let c = &v["metrics"]["visits"]["comparisons"]["t1"];
        for block in [&c["absolute"], &c["relative"], &c["cuped"]["absolute"]] {
            let p = block["two_sided"]["p_value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            assert!(block["one_sided_greater"]["ci_upper"].is_null());
            assert!(block["one_sided_lesser"]["ci_lower"].is_null());
            assert!(block["bayesian_proper_prior"]["chance_to_win"].is_number());
        }
        assert!(c["cuped"]["theta"].is_number());
        assert!(c.get("post_stratified").is_none());
        let j = &v["metrics"]["joined"]["comparisons"]["t2"];
        assert!(j["post_stratified"]["relative"]["two_sided"]["p_value"].is_number());
        assert!(j.get("cuped").is_none());
        assert!(
            v["metrics"]["hours_per_visit"]["comparisons"]["t1"]["relative"]["two_sided"]["effect"]
                .is_number()
        );
        let b = &v["metrics"]["broken"]["comparisons"]["t1"]["absolute"]["two_sided"];
        assert_eq!(b["error"], "control arm has n < 2");
        // family: 3 estimable metrics x 2 arms
        assert_eq!(out.multiple_testing.holm.len(), 6);
        for e in &out.multiple_testing.bh {
            assert!(e.adjusted_p_value >= e.p_value);
        }
        let md = to_markdown(&out);
        assert!(
            md.contains("### visits") && md.contains("CUPED") && md.contains("Post-stratified")
        );
        // order of metrics preserved
        let keys: Vec<&String> = v["metrics"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["visits", "joined", "hours_per_visit", "broken"]);
    }

    #[test]
    fn unknown_fields_are_rejected_with_path() {
        let bad = EXAMPLE.replace("\"sum_squares\": 34000", "\"sum_sq\": 34000");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(
            e.contains("metrics[0].stats[0]") && e.contains("sum_sq"),
            "{e}"
        );
        let bad = EXAMPLE.replace("\"alpha\": 0.05", "\"alpah\": 0.05");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(e.contains("alpah"), "{e}");
        let bad = EXAMPLE.replace("\"type\": \"ratio\"", "\"type\": \"median\"");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(e.contains("metrics[2].type"), "{e}");
    }

    #[test]
    fn structural_errors() {
        let bad = EXAMPLE.replace("\"users\": [1000, 510, 490]", "\"users\": [1000, 510]");
        assert!(parse_input(&bad).unwrap_err().to_string().contains("users"));
        let bad = EXAMPLE.replace("\"alpha\": 0.05", "\"alpha\": 1.5");
        assert!(parse_input(&bad).unwrap_err().to_string().contains("alpha"));
    }

    fn arm_any() -> impl proptest::strategy::Strategy<Value = ArmStats> {
        use proptest::prelude::*;
        (0u32..6, -5i32..6, 0u32..40, proptest::option::of(-3i32..4)).prop_map(|(n, s, ss, x)| {
            let mut a = ArmStats::new(n as f64, s as f64, ss as f64);
            if let Some(x) = x {
                a = a.with_covariate(x as f64, (x * x) as f64, (x * s) as f64);
                a.dx_sum = Some(x as f64);
            }
            a.d_sum = Some(n as f64);
            a.d_sum_squares = Some(n as f64);
            a.md_sum = Some(s as f64);
            a
        })
    }

    fn assert_finite(r: &MethodResults) {
        for e in [
            &r.two_sided,
            &r.one_sided_greater,
            &r.one_sided_lesser,
            &r.sequential_two_sided,
            &r.bayesian_flat_prior,
            &r.bayesian_proper_prior,
        ] {
            match e {
                Entry::Frequentist(f) => {
                    assert!(
                        f.effect.is_finite()
                            && f.se.is_finite()
                            && (0.0..=1.0).contains(&f.p_value)
                    );
                    assert!(
                        f.ci_lower.is_none_or(f64::is_finite)
                            && f.ci_upper.is_none_or(f64::is_finite)
                    );
                }
                Entry::Bayesian(b) => {
                    assert!(
                        b.effect.is_finite()
                            && b.se.is_finite()
                            && (0.0..=1.0).contains(&b.chance_to_win)
                    );
                    assert!(b.risk_control.is_finite() && b.risk_treatment.is_finite());
                }
                Entry::Error { error } => assert!(!error.is_empty()),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn tiny_and_degenerate_inputs_never_panic_or_nan(
            a in arm_any(), b in arm_any(), c in arm_any(), ki in 0usize..3, strat in proptest::bool::ANY
        ) {
            let kind = [MetricKind::Mean, MetricKind::Proportion, MetricKind::Ratio][ki];
            let stats = vec![a.clone(), b.clone(), c.clone()];
            let metric = if strat {
                MetricInput { name: "m".into(), kind, stats: None, strata: Some(vec![
                    StratumInput { name: "s1".into(), stats: stats.clone() },
                    StratumInput { name: "s2".into(), stats: vec![b, c, a] },
                ]) }
            } else {
                MetricInput { name: "m".into(), kind, stats: Some(stats), strata: None }
            };
            let input = AnalyzeInput {
                alpha: 0.05, sequential_tuning_parameter: 5000.0, prior: None, weights: None,
                users: Some(vec![3.0, 0.0, 2.0]), arms: vec!["c".into(), "t1".into(), "t2".into()],
                metrics: vec![metric], survey_response: None,
            };
            let out = analyze(&input);
            if let Some(MetricOutcome::Ok(m)) = out.metrics.get("m") {
                for (_, c) in &m.comparisons.0 {
                    assert_finite(&c.absolute);
                    assert_finite(&c.relative);
                    if let Some(cu) = &c.cuped { assert_finite(&cu.absolute); assert_finite(&cu.relative); }
                    if let Some(ps) = &c.post_stratified { assert_finite(&ps.absolute); assert_finite(&ps.relative); }
                }
            }
            let _ = to_markdown(&out);
            serde_json::to_string(&out).unwrap();
        }
    }

    const RESPONSE_REF: &str = include_str!("../../reference/few_response_waves.json");

    fn close(name: &str, what: &str, got: &serde_json::Value, want: &serde_json::Value) {
        let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
        assert!(
            (g - w).abs() <= 1e-9 * w.abs() || (g - w).abs() < 1e-15,
            "{name} {what}: {g:e} vs {w:e}"
        );
    }

    fn check_response_entry(name: &str, got: &serde_json::Value, want: &serde_json::Value) {
        match want["error"].as_str() {
            Some(kind) => {
                let e = got["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {got}"));
                assert_eq!(
                    e.starts_with("invalid input"),
                    kind == "invalid_input",
                    "{name}: {e}"
                );
                assert!(got.get("p_value").is_none());
            }
            None => {
                for key in ["chi2", "chi2_p", "min_expected", "p_value"] {
                    close(name, key, &got[key], &want[key]);
                }
                assert_eq!(got["df"].as_f64(), want["df"].as_f64(), "{name}");
                assert_eq!(got["test"], want["test"], "{name}");
                assert_eq!(got["flagged"], want["flagged"], "{name}");
                match want.get("fisher_p") {
                    Some(fp) => close(name, "fisher_p", &got["fisher_p"], fp),
                    None => assert!(got["fisher_p"].is_null(), "{name}"),
                }
                for (a, b) in got["rates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(want["rates"].as_array().unwrap())
                {
                    close(name, "rate", a, b);
                }
            }
        }
    }

    #[test]
    fn survey_response_matches_scipy() {
        let v: serde_json::Value = serde_json::from_str(RESPONSE_REF).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let (mut flagged, mut fisher, mut errors) = (0, 0, 0);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let doc = serde_json::json!({
                "arms": c["arms"], "metrics": [], "survey_response": c["survey_response"]
            });
            let out = analyze(&parse_input(&doc.to_string()).unwrap());
            let got = serde_json::to_value(&out).unwrap()["survey_response"].clone();
            let want = &c["expected"];
            let gw = got["waves"].as_array().unwrap();
            let ww = want["waves"].as_array().unwrap();
            assert_eq!(gw.len(), ww.len());
            for (i, (g, w)) in gw.iter().zip(ww).enumerate() {
                assert_eq!(g["wave"], c["survey_response"][i]["wave"]);
                check_response_entry(name, g, w);
                fisher += usize::from(w["test"] == "fisher_exact");
                errors += usize::from(w.get("error").is_some());
            }
            match want.get("pooled") {
                Some(w) => {
                    assert_eq!(got["pooled"]["wave"], "pooled");
                    check_response_entry(name, &got["pooled"], w);
                }
                None => assert!(got.get("pooled").is_none(), "{name}"),
            }
            assert_eq!(
                got["differential_response"], want["differential_response"],
                "{name}"
            );
            assert_eq!(got["threshold"], 0.001);
            flagged += usize::from(want["differential_response"] == true);
            let md = to_markdown(&out);
            assert!(md.contains("## Survey response"));
            assert_eq!(
                md.contains("DIFFERENTIAL RESPONSE"),
                want["differential_response"] == true
            );
        }
        assert!(
            flagged >= 5 && fisher >= 5 && errors >= 3,
            "{flagged} {fisher} {errors}"
        );
    }

    #[test]
    fn survey_response_is_optional_and_validated() {
        let out = analyze(&parse_input(EXAMPLE).unwrap());
        assert!(out.survey_response.is_none());
        let v = serde_json::to_value(&out).unwrap();
        assert!(v.get("survey_response").is_none());
        let with = |sr: &str| {
            EXAMPLE.replacen(
                "\"alpha\": 0.05,",
                &format!("\"alpha\": 0.05, \"survey_response\": {sr},"),
                1,
            )
        };
        let ok = parse_input(&with(
            r#"[{"wave": "endline", "invited": [900, 450, 450], "responded": [400, 150, 205]}]"#,
        ))
        .unwrap();
        let out = analyze(&ok);
        let sr = out.survey_response.as_ref().unwrap();
        assert!(sr.pooled.is_none() && sr.differential_response);
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2], "responded": [1, 1, 1]}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("survey_response[0].invited"), "{e}");
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1]}, {"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1]}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("survey_response[1].wave"), "{e}");
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1], "sent": 3}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("survey_response[0]") && e.contains("sent"),
            "{e}"
        );
        assert!(parse_input(&with("[]")).is_err());
        // analyze() without parse_input: a wave of the wrong length is an entry error, not a panic
        let mut bad = ok.clone();
        bad.survey_response = Some(vec![
            SurveyWaveInput {
                wave: "a".into(),
                invited: vec![10, 10],
                responded: vec![5, 5],
            },
            SurveyWaveInput {
                wave: "b".into(),
                invited: vec![10, 10, 10],
                responded: vec![5, 5, 5],
            },
        ]);
        let sr = analyze(&bad).survey_response.unwrap();
        assert!(
            matches!(&sr.waves[0], ResponseEntry::Error { error, .. } if error.contains("3 arms"))
        );
        assert!(matches!(sr.pooled, Some(ResponseEntry::Error { .. })));
        assert!(matches!(sr.waves[1], ResponseEntry::Ok { .. }));
    }

    #[test]
    fn srm_flags_mismatch() {
        let bad = EXAMPLE.replace("\"users\": [1000, 510, 490]", "\"users\": [1000, 600, 400]");
        let out = analyze(&parse_input(&bad).unwrap());
        assert_eq!(out.srm.mismatch, Some(true));
    }
}
