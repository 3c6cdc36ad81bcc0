//! `demo`: the whole path on a fresh database, seeded: both example trials
//! simulated through the real server, concluded early (a recorded
//! deviation) and reported; the blocked trial finds a large planted effect
//! and not a zero one.

use super::*;
use serde_json::Value;

/// The p-value of `arm` against control on `metric` in a `results.json`.
fn p_value(results: &Value, metric: &str, arm: &str) -> f64 {
    let m = results["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|m| m["name"] == metric)
        .unwrap_or_else(|| panic!("no metric {metric}"));
    let e = m["effects"]
        .as_array()
        .expect("effects")
        .iter()
        .find(|e| e["arm"] == arm)
        .unwrap_or_else(|| panic!("no effect of {arm} on {metric}: {m}"));
    e["p_value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no p-value of {arm} on {metric}: {e}"))
}

#[test]
fn demo_reports_both_trials_and_the_blocked_trial_finds_the_planted_effect_only() {
    let scratch = Scratch::new("demo");
    let root = workspace();
    let out = scratch.join("out");
    let o = commonlab()
        .args(["demo", "--no-serve", "--days", "36", "--seed", "7"])
        .args(["--members", "100,100,100,100"])
        // A threefold contribution rate in the heart arm; none in the banner arm.
        .args([
            "--effect",
            "heart:*=3",
            "--effect",
            "banner:*=1",
            "--effect",
            "on:*=1.3",
        ])
        .arg("--dir")
        .arg(scratch.join("db"))
        .arg("--out")
        .arg(&out)
        .arg("--experiments")
        .arg(root.join("experiments"))
        .arg("--surveys")
        .arg(root.join("surveys"))
        .env("COMMONLAB_ACTOR", "cli-test")
        .current_dir(&*scratch)
        .output()
        .expect("run commonlab demo");
    let text = stdout(&o);
    assert!(o.status.success(), "{}\n{}", text, stderr(&o));
    for trial in ["thanks-button", "value-dashboard"] {
        for file in ["report.html", "report.md", "results.json", "decision.md"] {
            let path = out.join(trial).join(file);
            assert!(path.is_file(), "{} missing:\n{text}", path.display());
        }
        assert!(
            text.contains(&format!("concluded  {trial} early (--days 36)")),
            "{text}"
        );
    }
    assert!(text.contains(", 0 rejected"), "{text}");
    assert!(
        text.contains("thanks-button-baseline-cbpp-community: 400 invited"),
        "{text}"
    );
    let md = std::fs::read_to_string(out.join("thanks-button/report.md")).unwrap();
    assert!(
        md.contains("DEVIATION"),
        "the early conclusion is in the report"
    );
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("thanks-button/results.json")).unwrap(),
    )
    .unwrap();
    let heart = p_value(&results, "contributions_per_member", "heart");
    let banner = p_value(&results, "contributions_per_member", "banner");
    assert!(heart < 0.05, "the threefold effect is found: p = {heart}");
    assert!(banner > 0.05, "the zero effect is not: p = {banner}");
    // The simulated database stays in the named folder.
    assert!(scratch.join("db/commonlab.db").is_file());
}

#[test]
fn demo_refuses_a_folder_with_a_database_and_bad_flags() {
    let scratch = Scratch::new("demo-refuse");
    std::fs::write(scratch.join("commonlab.db"), b"").unwrap();
    let o = commonlab()
        .args(["demo", "--no-serve", "--days", "2", "--dir"])
        .arg(&*scratch)
        .current_dir(&*scratch)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("starts from an empty database"),
        "{}",
        stderr(&o)
    );
    let o = commonlab()
        .args(["demo", "--no-serve", "--days", "0"])
        .current_dir(&*scratch)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--days: 1 to 400"), "{}", stderr(&o));
}
