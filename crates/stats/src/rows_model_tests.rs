//! The default few-community model against `reference/rows_model.json`
//! (`reference/rows_model.py`: statsmodels OLS for the estimate, itertools
//! enumeration with an OLS refit per assignment for the randomisation
//! p-value), and the model choices that must be refused.

use serde_json::{json, Value};

use super::{CommunityEffects, LeadMethodReason, LeadReason};
use crate::rows::{analyze_rows, RowsInput};
use crate::StatsError;

const REF: &str = include_str!("../reference/rows_model.json");

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn input(c: &Value, model: Option<&str>) -> RowsInput {
    let mut design = json!({"kind": c["kind"]});
    if let Some(m) = model {
        design["community_effects"] = m.into();
    }
    serde_json::from_value(json!({"rows": c["rows"], "design": design})).unwrap()
}

fn check(name: &str, c: &Value, model: Option<&str>, e: &Value) {
    let out = analyze_rows(&input(c, model)).unwrap_or_else(|err| panic!("{name}: {err}"));
    let f = |k: &str| e[k].as_f64().unwrap();
    assert!(
        rel(out.estimate, f("estimate")) < 1e-9,
        "{name} {model:?}: estimate {} vs statsmodels {}",
        out.estimate,
        f("estimate")
    );
    let fe = e["cluster_fe"].as_bool().unwrap();
    assert_eq!(
        out.model.contains("cluster FE"),
        fe,
        "{name}: {}",
        out.model
    );
    let r = out.randomisation.result.as_ref().unwrap();
    assert!(r.exact, "{name}");
    assert_eq!(r.total_assignments, e["n_assignments"].as_u64().unwrap());
    assert!(
        rel(r.p_value, f("p")) < 1e-12,
        "{name} {model:?} p {}",
        r.p_value
    );
    assert!(rel(r.min_attainable_p, f("min_p")) < 1e-12, "{name} min p");
    // exact enumeration: randomisation inference leads, its floor stated
    assert_eq!(out.lead.method, "randomisation");
    assert_eq!(out.lead.reason, LeadMethodReason::ExactEnumeration);
    assert_eq!(out.lead.min_attainable_p, Some(r.min_attainable_p));
    assert!(out
        .lead
        .detail
        .contains(&format!("{:.4}", r.min_attainable_p)));
    assert!(!out.model_reason.is_empty());
    let lead = out.cr2_lead.as_ref().unwrap();
    if fe {
        assert_eq!(lead.reason, LeadReason::CommunityFixedEffects, "{name}");
        // residual ICC not identifiable under community FE: IK df = BM df
        let (bm, ik) = (
            out.cr2.as_ref().unwrap().result.as_ref().unwrap(),
            out.cr2_ik.as_ref().unwrap().result.as_ref().unwrap(),
        );
        assert_eq!((bm.df, bm.se), (ik.df, ik.se), "{name}");
    } else {
        assert_ne!(lead.reason, LeadReason::CommunityFixedEffects, "{name}");
    }
}

/// Issue #10 item 27: without options, stepped wedges and cluster designs
/// with baseline periods are analysed with community and period fixed
/// effects; pure parallel cluster designs between communities.
#[test]
fn default_model_matches_statsmodels_and_enumeration() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let cases = v["cases"].as_array().unwrap();
    let (mut within, mut between, mut none) = (0, 0, 0);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        check(name, c, None, &c["default"]);
        if c["default"]["cluster_fe"].as_bool().unwrap() {
            within += 1;
            check(name, c, Some("fixed"), &c["default"]);
        } else {
            between += 1;
        }
        if let Some(e) = c.get("none") {
            check(name, c, Some("none"), e);
            none += 1;
        }
    }
    assert!(
        within >= 12 && between >= 4 && none >= 12,
        "{within} {between} {none}"
    );
}

#[test]
fn community_fixed_effects_on_a_parallel_design_are_refused() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let c = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("parallel"))
        .unwrap();
    let e = analyze_rows(&input(c, Some("fixed"))).unwrap_err();
    assert!(
        matches!(&e, StatsError::InvalidInput(m) if m.contains("absorb the treatment")),
        "{e}"
    );
    // on request, the between model is what the default gives there
    let a = analyze_rows(&input(c, None)).unwrap();
    let b = analyze_rows(&input(c, Some("none"))).unwrap();
    assert_eq!(a.estimate, b.estimate);
    assert!(
        a.model_reason.contains("absorb the treatment"),
        "{}",
        a.model_reason
    );
}

#[test]
fn staggered_starts_in_a_cluster_design_are_refused() {
    let mut rows = Vec::new();
    for (c, start) in [("a", 1), ("b", 2), ("c", 9), ("d", 9)] {
        for p in 0..3 {
            rows.push(
                json!({"cluster": c, "period": p, "treated": p >= start, "value": p as f64 + 0.5}),
            );
        }
    }
    let input: RowsInput =
        serde_json::from_value(json!({"rows": rows, "design": {"kind": "cluster"}})).unwrap();
    let e = analyze_rows(&input).unwrap_err();
    assert!(
        matches!(&e, StatsError::InvalidInput(m) if m.contains("stepped_wedge")),
        "{e}"
    );
}

#[test]
fn community_effects_do_not_apply_to_users_randomised_within_communities() {
    let mut rows = Vec::new();
    for c in ["a", "b"] {
        for i in 0..4 {
            rows.push(json!({"cluster": c, "treated": i % 2 == 0, "value": i as f64}));
        }
    }
    for m in [CommunityEffects::Fixed, CommunityEffects::None] {
        let input: RowsInput = serde_json::from_value(json!({
            "rows": rows, "design": {"kind": "blocked_users", "community_effects": m}
        }))
        .unwrap();
        let e = analyze_rows(&input).unwrap_err();
        assert!(matches!(e, StatsError::InvalidInput(_)), "{e}");
    }
    let input: RowsInput =
        serde_json::from_value(json!({"rows": rows, "design": {"kind": "blocked_users"}})).unwrap();
    let out = analyze_rows(&input).unwrap();
    assert_eq!(out.lead.method, "permutation");
    assert_eq!(out.lead.reason, LeadMethodReason::ExactEnumeration);
}

/// A community that mixes arms within a period names the community and
/// points users randomised within communities to `blocked_users`.
#[test]
fn mixed_arms_within_a_period_name_the_community() {
    let rows = json!([
        {"cluster": "north", "treated": true, "value": 1.0},
        {"cluster": "north", "treated": false, "value": 2.0},
        {"cluster": "south", "treated": false, "value": 1.0},
        {"cluster": "east", "treated": true, "value": 1.0}
    ]);
    let input: RowsInput =
        serde_json::from_value(json!({"rows": rows, "design": {"kind": "cluster"}})).unwrap();
    let e = analyze_rows(&input).unwrap_err().to_string();
    assert!(e.contains("north") && e.contains("blocked_users"), "{e}");
}
