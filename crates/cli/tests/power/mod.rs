//! `power`: a trial file's design simulated in memory (no database), the
//! stepped wedge beside members randomised within communities.

use super::*;

fn power(args: &[&str]) -> Output {
    commonlab()
        .arg("power")
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run commonlab")
}

#[test]
fn the_example_stepped_wedge_is_simulated_beside_blocked_users() {
    let o = power(&[
        "value-dashboard",
        "--simulate",
        "2",
        "--members",
        "20,30,40,50",
        "--effect",
        "on=2",
        "--threads",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["trial"], "value-dashboard");
    assert_eq!(r["days"], 150);
    assert_eq!(r["simulations"], 2);
    let designs: Vec<&str> = r["designs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["design"].as_str().unwrap())
        .collect();
    assert_eq!(designs, ["stepped_wedge", "blocked_users"]);
    let ri = &r["designs"][0]["comparisons"][0]["methods"][0];
    assert_eq!(ri["method"], "randomisation");
    assert_eq!(ri["min_attainable_p"].as_f64(), Some(1.0 / 24.0));
    assert_eq!(ri["power"]["completed"], 2);
    assert_eq!(
        r["communities"][3],
        serde_json::json!({"name": "hackerspace-d", "members": 50})
    );
    // The same run as text, on one thread: the same numbers.
    let text = power(&[
        "value-dashboard",
        "--simulate",
        "2",
        "--members",
        "20,30,40,50",
        "--effect",
        "on=2",
        "--threads",
        "1",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    let rate = ri["power"]["rate"].as_f64().unwrap();
    assert!(text.contains(&format!("{rate:.3} ±")), "{text}");
    assert!(
        text.contains("randomisation (lead)") && text.contains("0.0417"),
        "{text}"
    );
    assert!(text.contains("stratified permutation (lead)"), "{text}");
}

#[test]
fn mistakes_are_named() {
    let o = power(&["value-dashboard", "--simulate", "1", "--members", "10,20"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("one size per community"),
        "{}",
        stderr(&o)
    );
    let o = power(&[
        "value-dashboard",
        "--simulate",
        "1",
        "--effect",
        "dashboard=2",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("effects.dashboard"), "{}", stderr(&o));
    let o = power(&["value-dashboard", "--simulate", "1", "--alpha", "1.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--alpha 1.5"), "{}", stderr(&o));
    let o = power(&["no-such-trial", "--simulate", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("experiments/no-such-trial.toml"),
        "{}",
        stderr(&o)
    );
    let o = power(&["thanks-button", "--simulate", "1", "--metric", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("'nope' is not a metric"),
        "{}",
        stderr(&o)
    );
}
