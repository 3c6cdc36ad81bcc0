//! Tests of [`analyze_rows`]: the panel cases against
//! `reference/few_randomization.json` and their invariance to renaming,
//! `blocked_users` against `reference/few_blocked_users.json`, the CR2 lead,
//! and the typed errors.

use super::*;
use serde_json::Value;

const REF: &str = include_str!("../../reference/few_randomization.json");

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn panel_cases_match_reference() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let cases = v["panel_cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let input = crate::rows_model::legacy_input(&c["input"]);
        let out = analyze_rows(&input).unwrap();
        let e = &c["expected"];
        assert!(
            rel(out.estimate, e["theta"].as_f64().unwrap()) < 1e-9,
            "{name} theta"
        );
        let r = out.randomisation.result.as_ref().unwrap();
        assert!(r.exact);
        assert_eq!(
            r.total_assignments,
            e["randomisation"]["n_assignments"].as_u64().unwrap(),
            "{name}"
        );
        assert!(
            rel(r.statistic, out.estimate) < 1e-9,
            "{name} FWL statistic"
        );
        assert!(
            rel(r.p_value, e["randomisation"]["p"].as_f64().unwrap()) < 1e-12,
            "{name} p"
        );
        assert!(
            rel(
                r.min_attainable_p,
                e["randomisation"]["min_p"].as_f64().unwrap()
            ) < 1e-12,
            "{name} min p"
        );
        let cr1 = out.cr1.as_ref().unwrap().result.as_ref().unwrap();
        assert!(
            rel(cr1.se, e["cr1_se"].as_f64().unwrap()) < 1e-9,
            "{name} cr1"
        );
        assert!(
            rel(cr1.p_value, e["cr1_p"].as_f64().unwrap()) < 1e-8,
            "{name} cr1 p"
        );
        let cr2 = out.cr2.as_ref().unwrap().result.as_ref().unwrap();
        assert!(
            rel(cr2.se, e["cr2_se"].as_f64().unwrap()) < 1e-9,
            "{name} cr2"
        );
        assert!(
            rel(cr2.df, e["cr2_df"].as_f64().unwrap()) < 1e-9,
            "{name} cr2 df"
        );
        assert!(
            rel(cr2.p_value, e["cr2_p"].as_f64().unwrap()) < 1e-8,
            "{name} cr2 p"
        );
        if let Some(ests) = e.get("community_estimates") {
            let ests: Vec<Option<f64>> = serde_json::from_value(ests.clone()).unwrap();
            for (cr, want) in out.communities.iter().zip(&ests) {
                match (cr.estimate, want) {
                    (Some(a), Some(b)) => assert!(rel(a, *b) < 1e-9, "{name} community"),
                    (None, None) => {}
                    other => panic!("{name}: {other:?}"),
                }
            }
            let im = out
                .ibragimov_muller
                .as_ref()
                .unwrap()
                .result
                .as_ref()
                .unwrap();
            assert!(
                rel(im.t, e["im"]["t"].as_f64().unwrap()) < 1e-9,
                "{name} IM t"
            );
            assert!(
                rel(im.p_value, e["im"]["p"].as_f64().unwrap()) < 1e-8,
                "{name} IM p"
            );
        }
        if let Some(p) = e.get("wcr_p_enumerated").and_then(|p| p.as_f64()) {
            let wb = out
                .wild_bootstrap
                .as_ref()
                .unwrap()
                .result
                .as_ref()
                .unwrap();
            assert!(wb.enumerated);
            assert!(rel(wb.p_value, p) < 1e-12, "{name} wcr");
        }
        // serialisable
        let js = serde_json::to_string(&out).unwrap();
        assert!(!js.contains("NaN"));
    }
}

#[test]
fn invariant_to_renaming_clusters_and_row_order() {
    let v: Value = serde_json::from_str(REF).unwrap();
    for c in v["panel_cases"].as_array().unwrap() {
        let input = crate::rows_model::legacy_input(&c["input"]);
        let a = analyze_rows(&input).unwrap();
        let mut renamed = input.clone();
        for r in renamed.rows.iter_mut() {
            // reverse the sort order of cluster names
            r.cluster = format!("z{}", 99 - r.cluster[1..].parse::<i32>().unwrap());
        }
        renamed.rows.reverse();
        let b = analyze_rows(&renamed).unwrap();
        let (ra, rb) = (
            a.randomisation.result.unwrap(),
            b.randomisation.result.unwrap(),
        );
        assert!((ra.p_value - rb.p_value).abs() < 1e-12);
        assert!((ra.min_attainable_p - rb.min_attainable_p).abs() < 1e-12);
        assert!((a.estimate - b.estimate).abs() < 1e-9 * a.estimate.abs().max(1.0));
        let (ca, cb) = (
            a.cr2.unwrap().result.unwrap(),
            b.cr2.unwrap().result.unwrap(),
        );
        assert!((ca.se - cb.se).abs() < 1e-9 * ca.se);
        assert!((ca.df - cb.df).abs() < 1e-8 * ca.df);
    }
}

const BLOCKED_USERS_REF: &str = include_str!("../../reference/few_blocked_users.json");

#[test]
fn blocked_users_match_reference() {
    let v: Value = serde_json::from_str(BLOCKED_USERS_REF).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    let mut se_errors = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
        let out = analyze_rows(&input).unwrap();
        let e = &c["expected"];
        let f = |v: &Value| v.as_f64().unwrap();
        assert!(
            rel(out.estimate, f(&e["estimate"])) < 1e-9,
            "{name} estimate"
        );
        let r = out.randomisation.result.as_ref().unwrap();
        assert!(r.exact, "{name}");
        assert_eq!(
            r.total_assignments,
            e["randomisation"]["n_assignments"].as_u64().unwrap()
        );
        assert!((r.statistic - out.estimate).abs() < 1e-12 * out.estimate.abs().max(1.0));
        assert!(
            (r.p_value - f(&e["randomisation"]["p"])).abs() < 1e-12,
            "{name} p {}",
            r.p_value
        );
        assert!(
            (r.min_attainable_p - f(&e["randomisation"]["min_p"])).abs() < 1e-12,
            "{name} min p"
        );
        let ps = out.post_stratified.as_ref().unwrap();
        let we = &e["post_stratified"];
        match we.get("error") {
            Some(_) => {
                assert!(
                    matches!(ps.error, Some(StatsError::Degenerate(_))),
                    "{name}"
                );
                se_errors += 1;
            }
            None => {
                let p = ps.result.as_ref().unwrap();
                assert!(rel(p.estimate, f(&we["estimate"])) < 1e-9, "{name}");
                assert!(rel(p.se, f(&we["se"])) < 1e-9, "{name} se");
                assert!(rel(p.df, f(&we["df"])) < 1e-9, "{name} df {}", p.df);
                assert!(rel(p.z, f(&we["t"])) < 1e-9, "{name} t");
                assert!(rel(p.p_value, f(&we["p"])) < 1e-9, "{name} p");
                assert!(
                    rel(p.ci95.0, f(&we["ci95"][0])) < 1e-9
                        && rel(p.ci95.1, f(&we["ci95"][1])) < 1e-9,
                    "{name} ci95 {:?}",
                    p.ci95
                );
                // Satterthwaite df lies between the smallest and the
                // summed per-cell df
                assert!(p.df >= 1.0 - 1e-12, "{name} df {}", p.df);
                assert_eq!(p.strata as u64, we["strata"].as_u64().unwrap());
                assert_eq!(
                    p.strata_skipped as u64,
                    we["strata_skipped"].as_u64().unwrap()
                );
            }
        }
        let wc = e["communities"].as_array().unwrap();
        assert_eq!(out.communities.len(), wc.len());
        for (got, want) in out.communities.iter().zip(wc) {
            assert_eq!(got.cluster, want["cluster"].as_str().unwrap());
            assert_eq!(
                got.n_treated,
                want["n_treated"].as_u64().map(|v| v as usize)
            );
            assert_eq!(
                got.n_control,
                want["n_control"].as_u64().map(|v| v as usize)
            );
            for (g, w) in [(got.estimate, &want["estimate"]), (got.se, &want["se"])] {
                match (g, w.as_f64()) {
                    (Some(a), Some(b)) => {
                        assert!(rel(a, b) < 1e-9 || (a - b).abs() < 1e-12, "{name}")
                    }
                    (None, None) => {}
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
        assert!(out.cr2.is_none() && out.cr1.is_none() && out.cr2_lead.is_none());
        let js = serde_json::to_string(&out).unwrap();
        assert!(!js.contains("NaN"));
    }
    assert!(se_errors >= 2);
}

#[test]
fn blocked_users_sampled_permutation_is_seeded_and_close() {
    let v: Value = serde_json::from_str(BLOCKED_USERS_REF).unwrap();
    let c = &v["cases"][0];
    let mut input: RowsInput = serde_json::from_value(c["input"].clone()).unwrap();
    let exact = analyze_rows(&input).unwrap().randomisation.result.unwrap();
    assert!(exact.exact && exact.total_assignments > 1000);
    input.design.max_enumerate = 100;
    input.design.randomisation_draws = 4000;
    let a = analyze_rows(&input).unwrap();
    let s = a.randomisation.result.as_ref().unwrap();
    assert!(!s.exact && s.seed == Some(input.design.seed));
    assert!((s.min_attainable_p - 1.0 / 4001.0).abs() < 1e-15);
    let sd = (exact.p_value * (1.0 - exact.p_value) / 4000.0).sqrt();
    assert!((s.p_value - exact.p_value).abs() < 4.0 * sd + 1e-3);
    assert_eq!(a, analyze_rows(&input).unwrap());
}

#[test]
fn blocked_users_rejects_what_it_does_not_use() {
    let base = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                      {"cluster":"a","treated":true,"value":1.5},{"cluster":"a","treated":false,"value":0.5}"#;
    let ok = analyze_rows(&tiny("blocked_users", &format!("{base}]"))).unwrap();
    assert_eq!(ok.n_clusters, 1);
    assert_eq!(ok.randomisation.result.unwrap().total_assignments, 6);
    assert!(ok.model.contains("post-stratified"));
    for extra in [
        r#",{"cluster":"a","treated":true,"value":1.0,"covariate":1.0}]"#,
        r#",{"cluster":"a","treated":true,"value":1.0,"stratum":"s"}]"#,
        r#",{"cluster":"a","treated":true,"value":1.0,"period":3}]"#,
    ] {
        let r = analyze_rows(&tiny("blocked_users", &format!("{base}{extra}")));
        assert!(
            matches!(r, Err(StatsError::InvalidInput(_))),
            "{extra}: {r:?}"
        );
    }
    // one arm only: no estimate at all
    let one = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"b","treated":false,"value":2.0}]"#;
    assert!(matches!(
        analyze_rows(&tiny("blocked_users", one)),
        Err(StatsError::Degenerate(_))
    ));
    // the community-level `blocked` design points at blocked_users
    let mixed =
        format!("{base},{{\"cluster\":\"b\",\"treated\":true,\"value\":1.0,\"stratum\":\"s\"}}]")
            .replace("\"value\":1.0}", "\"value\":1.0,\"stratum\":\"s\"}")
            .replace("\"value\":2.0}", "\"value\":2.0,\"stratum\":\"s\"}")
            .replace("\"value\":1.5}", "\"value\":1.5,\"stratum\":\"s\"}")
            .replace("\"value\":0.5}", "\"value\":0.5,\"stratum\":\"s\"}");
    let e = analyze_rows(&tiny("blocked", &mixed))
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocked_users"), "{e}");
}

#[test]
fn blocked_users_one_community_is_welch() {
    // One community: the post-stratified result is Welch's t-test.
    // scipy.stats.ttest_ind([1.0, 1.5, 3.0], [2.0, 0.5, 0.7, 1.1], equal_var=False)
    let rows = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":true,"value":1.5},
                       {"cluster":"a","treated":true,"value":3.0},{"cluster":"a","treated":false,"value":2.0},
                       {"cluster":"a","treated":false,"value":0.5},{"cluster":"a","treated":false,"value":0.7},
                       {"cluster":"a","treated":false,"value":1.1}]"#;
    let out = analyze_rows(&tiny("blocked_users", rows)).unwrap();
    let p = out.post_stratified.unwrap().result.unwrap();
    assert!(rel(p.z, 1.104_105_529_852_595_7) < 1e-12);
    assert!(rel(p.df, 3.212_113_658_450_371_6) < 1e-12, "{}", p.df);
    assert!(rel(p.p_value, 0.345_320_925_541_256_8) < 1e-9);
    assert!(rel(p.ci95.0, -1.348_037_313_481_912_4) < 1e-9);
    assert!(rel(p.ci95.1, 2.864_703_980_148_578_7) < 1e-9);
    // a single user in an arm of a used community: no variance, no df
    let one = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                      {"cluster":"b","treated":true,"value":1.0},{"cluster":"b","treated":true,"value":3.0},
                      {"cluster":"b","treated":false,"value":2.0},{"cluster":"b","treated":false,"value":0.5}]"#;
    let ps = analyze_rows(&tiny("blocked_users", one))
        .unwrap()
        .post_stratified
        .unwrap();
    assert!(matches!(ps.error, Some(StatsError::Degenerate(_))));
    let js = serde_json::to_value(analyze_rows(&tiny("blocked_users", rows)).unwrap()).unwrap();
    assert!(js["post_stratified"]["result"]["df"].is_number());
}

#[test]
fn cr2_lead_is_a_field_and_follows_the_cluster_count() {
    let v: Value = serde_json::from_str(REF).unwrap();
    // sw_4x5_period_fe: fitted without community effects
    let input = crate::rows_model::legacy_input(&v["panel_cases"][0]["input"]);
    let out = analyze_rows(&input).unwrap();
    let lead = out.cr2_lead.as_ref().unwrap();
    assert_eq!(
        (lead.method.as_str(), lead.field.as_str()),
        ("CR2-IK", "cr2_ik")
    );
    assert_eq!(lead.reason, LeadReason::FewClustersCalibration);
    let js = serde_json::to_value(&out).unwrap();
    assert_eq!(js["cr2_lead"]["reason"], "few_clusters_calibration");
    let field = js["cr2_lead"]["field"].as_str().unwrap();
    assert_eq!(js[field]["result"]["method"], "CR2-IK");
    assert!(js["cr2"]["result"]["method"] == "CR2", "BM stays reported");
    let many = cr2_lead(FEW_CLUSTERS, false);
    assert_eq!(
        (many.method.as_str(), many.reason),
        ("CR2", LeadReason::ManyClusters)
    );
    assert_eq!(cr2_lead(FEW_CLUSTERS - 1, false).method, "CR2-IK");
    let fe = cr2_lead(4, true);
    assert_eq!(
        (fe.method.as_str(), fe.reason),
        ("CR2", LeadReason::CommunityFixedEffects)
    );
}

fn tiny(kind: &str, rows: &str) -> RowsInput {
    serde_json::from_str(&format!(
        r#"{{"design": {{"kind": "{kind}"}}, "rows": {rows}}}"#
    ))
    .unwrap()
}

#[test]
fn one_cluster_per_arm_is_degenerate() {
    let rows = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":true,"value":2.0},
                      {"cluster":"b","treated":false,"value":1.5},{"cluster":"b","treated":false,"value":0.5}]"#;
    assert!(matches!(
        analyze_rows(&tiny("cluster", rows)),
        Err(StatsError::Degenerate(_))
    ));
}

#[test]
fn malformed_rows_are_invalid_input() {
    let rows = r#"[{"cluster":"a","value":1.0}]"#;
    assert!(matches!(
        analyze_rows(&tiny("cluster", rows)),
        Err(StatsError::InvalidInput(_))
    ));
    assert!(analyze_rows(&tiny("cluster", "[]")).is_err());
    let mixed = r#"[{"cluster":"a","treated":true,"value":1.0},{"cluster":"a","treated":false,"value":2.0},
                       {"cluster":"b","treated":false,"value":1.0},{"cluster":"c","treated":true,"value":1.0}]"#;
    assert!(matches!(
        analyze_rows(&tiny("cluster", mixed)),
        Err(StatsError::InvalidInput(_))
    ));
}

#[test]
fn zero_variance_gives_typed_method_errors() {
    let mut rows = Vec::new();
    for (c, t) in [("a", true), ("b", true), ("c", false), ("d", false)] {
        for _ in 0..3 {
            rows.push(format!(r#"{{"cluster":"{c}","treated":{t},"value":1.0}}"#));
        }
    }
    let out = analyze_rows(&tiny("cluster", &format!("[{}]", rows.join(",")))).unwrap();
    let (cr2, cr1) = (out.cr2.as_ref().unwrap(), out.cr1.as_ref().unwrap());
    assert!(cr2.error.is_some() && cr2.result.is_none());
    assert!(cr1.error.is_some());
    let js = serde_json::to_string(&out).unwrap();
    assert!(!js.contains("NaN") && !js.contains("null,\"error\":null"));
}
