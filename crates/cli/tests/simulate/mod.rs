//! `simulate`: a running trial rehearsed through an in-process server; the
//! simulated members' exposures and events are stored and the planted
//! effect shows in the stored analysis.

use super::*;

const FLAGS: &str = r#"{"flags": {"sim-flag": {
  "state": "ENABLED", "variants": {"off": false, "on": true}, "defaultVariant": "off"}}}"#;

const TRIAL: &str = r#"
key = "sim-trial"
title = "Rehearsal"
hypothesis = "A fourfold edit rate shows."
owner = "sim@commonlab.example"
flag = "sim-flag"
eligibility = { "in" = [{ var = "community" }, ["wiki-a", "coop-b"]] }

[links]
wp2_parameter = "edit_rate"
wp3_feature = "sim-feature"

[[arms]]
variant = "off"
weight = 1
control = true

[[arms]]
variant = "on"
weight = 1

[unit]
kind = "user"

[design]
kind = "hash"

[metrics.primary]
name = "edits_7d"
kind = "count"
events = ["edit"]
direction = "increase"
window = ["0d", "7d"]

[analysis]
alpha = 0.05
sidedness = "two-sided"
mde = 0.1
power = 0.8
horizon = "fixed"
correction = "none"

[analysis.decision]
ship = "up"
iterate = "unclear"
roll_back = "down"

[schedule]
start = 2026-03-01T00:00:00Z
end = 2030-01-01T00:00:00Z
"#;

#[tokio::test]
async fn simulate_rehearses_a_running_trial_through_the_server() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("simulate");
        let flags = dir.write("flags.json", FLAGS);
        let trial = dir.write("sim-trial.toml", TRIAL);
        let key = dir.write("study.key", &"ab".repeat(32));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let ok = |args: &[&str]| {
            let o = dir
                .command()
                .args(args)
                .env("COMMONLAB_DATABASE_URL", &url)
                .env("COMMONLAB_ACTOR", "cli-test")
                .env("COMMONLAB_STUDY_KEY_FILE", &key)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            stdout(&o)
        };
        ok(&[
            "flags",
            "import",
            flags.to_str().unwrap(),
            "--reason",
            "sim",
        ]);
        ok(&[
            "experiments",
            "create",
            trial.to_str().unwrap(),
            "--reason",
            "sim",
        ]);
        // A draft is refused with the command to start it.
        let o = dir
            .command()
            .args(["simulate", "--experiment", "sim-trial", "--days", "2"])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_STUDY_KEY_FILE", &key)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("start it first"), "{}", stderr(&o));
        ok(&["experiments", "start", "sim-trial", "--reason", "sim"]);
        let out = ok(&[
            "simulate",
            "--experiment",
            "sim-trial",
            "--members",
            "120,120",
            "--days",
            "9",
            "--seed",
            "4",
            "--effect",
            "on:edit=4",
        ]);
        assert!(out.contains("0 rejected"), "{out}");
        assert!(out.contains("on:") && out.contains("off:"), "{out}");
        let events = db
            .store()
            .count_events(&commonlab_store::EventFilter::default())
            .await
            .unwrap();
        assert!(events > 300, "{events} events stored");
        // The simulator's sdk key is revoked afterwards.
        let keys = db.store().list_api_keys(false).await.unwrap();
        assert!(
            keys.iter().all(|k| !k.name.starts_with("simulator-")),
            "{keys:?}"
        );

        let analysis = ok(&[
            "analyze",
            "--trial",
            "sim-trial",
            "--as-of",
            "2030-01-01T00:00:00Z",
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&analysis).unwrap();
        // The per-arm means the engine compared.
        let arms = &v["metrics"][0]["detail"]["arms"];
        let mean = |arm: &str| {
            arms.as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == arm)
                .unwrap_or_else(|| panic!("{arm} in {v}"))["value"]
                .as_f64()
                .unwrap()
        };
        assert!(
            mean("on") > 2.0 * mean("off"),
            "on {} off {}",
            mean("on"),
            mean("off")
        );
    })
    .await;
}
