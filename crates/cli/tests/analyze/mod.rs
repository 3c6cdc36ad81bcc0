//! `analyze` on data brought from elsewhere: sufficient statistics and few-community rows.

use super::*;

/// `commonlab analyze` on per-arm sufficient statistics (docs/analyze.md):
/// the CLI prints exactly what the engine computes.
#[test]
fn analyze_sufficient_statistics() {
    let input = fixtures().join("analyze.json");
    let o = commonlab()
        .args(["analyze", "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = std::fs::read_to_string(&input).unwrap();
    let expected =
        commonlab_stats::analyze::analyze(&commonlab_stats::analyze::parse_input(&text).unwrap());
    assert_eq!(out, serde_json::to_value(&expected).unwrap());
    // SRM: chi-square of 1000 vs 1012 against 1:1.
    let p = out["srm"]["p_value"].as_f64().unwrap();
    assert!((p - 0.789_063_599_989_265_7).abs() < 1e-9, "{p}");
    let two = &out["metrics"]["visits"]["comparisons"]["t1"]["absolute"]["two_sided"];
    assert!(
        two["p_value"].as_f64().unwrap() > 0.0
            && two["ci_lower"].as_f64() < two["ci_upper"].as_f64()
    );
    assert!(out["metrics"]["visits"]["comparisons"]["t1"]["cuped"]["theta"].is_number());

    let o = commonlab()
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--format",
            "md",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("visits"));

    // A mistake in the input names the field.
    let dir = Scratch::new("bad-analyze");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        text.replace("\"sum_squares\": 34000", "\"sum_sq\": 34000"),
    )
    .unwrap();
    let o = commonlab()
        .args(["analyze", "--input", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sum_sq"), "{}", stderr(&o));
}

/// `commonlab analyze --design stepped_wedge` on CSV rows: a 4-community
/// stepped wedge has 24 possible orders, so exact randomisation inference
/// can never go below 1/24.
#[test]
fn analyze_few_community_rows() {
    let input = fixtures().join("wedge-rows.csv");
    let o = commonlab()
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--design",
            "stepped_wedge",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ri = &out["randomisation"]["result"];
    assert_eq!(ri["total_assignments"], 24);
    assert_eq!(ri["exact"], true);
    let min_p = ri["min_attainable_p"].as_f64().unwrap();
    assert!((min_p - 1.0 / 24.0).abs() < 1e-12, "{min_p}");
    assert!(ri["p_value"].as_f64().unwrap() >= min_p);
    assert_eq!(out["n_clusters"], 4);
    assert!(out["cr2"]["result"]["df"].as_f64().unwrap() > 0.0);
    assert_eq!(out["communities"].as_array().unwrap().len(), 4);
    // Community and period fixed effects by default (issue #10 item 27);
    // exact randomisation inference leads, with its floor stated.
    assert_eq!(out["model"], "value ~ 1 + period FE + cluster FE + treated");
    assert_eq!(out["lead"]["method"], "randomisation");
    assert_eq!(out["lead"]["reason"], "exact_enumeration");
    assert_eq!(out["lead"]["min_attainable_p"], ri["min_attainable_p"]);
    assert_eq!(out["cr2_lead"]["reason"], "community_fixed_effects");
    let run = |extra: &[&str]| {
        let mut args = vec!["analyze", "--input", input.to_str().unwrap()];
        args.extend_from_slice(&["--design", "stepped_wedge"]);
        args.extend_from_slice(extra);
        commonlab().args(args).output().unwrap()
    };
    // The model without community effects only on request.
    let o = run(&["--without-community-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let pooled: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pooled["model"], "value ~ 1 + period FE + treated");
    assert_ne!(pooled["estimate"], out["estimate"]);
    assert!(pooled["model_reason"]
        .as_str()
        .unwrap()
        .contains("on request"));
    // The old flag is accepted, does nothing, and says so.
    let o = run(&["--cluster-fixed-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("does nothing"), "{}", stderr(&o));
    let same: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(same, out);
    let o = run(&["--cluster-fixed-effects", "--without-community-effects"]);
    assert_eq!(o.status.code(), Some(2), "contradictory flags are refused");

    // A bad cell is reported with its line and column name.
    let text = std::fs::read_to_string(&input).unwrap();
    let bad_text = text.replacen("\nwiki-a,0,0,", "\nwiki-a,0,0,x", 1);
    let dir = Scratch::new("bad-rows");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, bad_text).unwrap();
    let o = commonlab()
        .args([
            "analyze",
            "--input",
            bad.to_str().unwrap(),
            "--design",
            "cluster",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(":2: column 'value'"), "{err}");
}
