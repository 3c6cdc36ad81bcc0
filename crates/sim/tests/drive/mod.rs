//! The simulator drives a real server (in-process, fixed clock) through
//! OFREP and the ingestion API; what it planted shows in the stored
//! trial's analysis.

use std::time::Duration;

use chrono::{DateTime, Utc};
use commonlab_core::auth::Role as KeyRole;
use commonlab_core::privacy::StudyKey;
use commonlab_server::keys::create_key;
use commonlab_server::{build_state, start, Clock, Config};
use commonlab_sim::drive::{run, ServerClock, Target};
use commonlab_sim::{ArmEffect, SimParams, Simulation};
use commonlab_store::testing::both_backends;
use serde_json::{json, Value};

const FLAGS: &str = r#"{"flags": {"sim-flag": {
  "state": "ENABLED", "variants": {"off": false, "on": true}, "defaultVariant": "off"}}}"#;

const TRIAL: &str = r#"
key = "sim-trial"
title = "Simulated"
hypothesis = "Planted effect shows."
owner = "sim@commonlab.example"
flag = "sim-flag"

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
start = 2027-03-01T00:00:00Z
end = 2027-06-01T00:00:00Z
"#;

/// The study key of the test's server, made here (the server has no
/// default key).
fn test_study_key() -> StudyKey {
    StudyKey::from_bytes(&[0x5a; 32]).expect("32 bytes is long enough")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn the_simulator_drives_ofrep_and_ingestion_and_the_effect_shows() {
    both_backends(|db| async move {
        let store = db.connect_another().await;
        let now = at("2027-03-01T00:00:00Z");
        let admin = create_key(&store, "sim-admin", KeyRole::Admin, "test", now)
            .await
            .unwrap()
            .key;
        let sdk = create_key(&store, "sim-sdk", KeyRole::Sdk, "test", now)
            .await
            .unwrap()
            .key;
        let clock = Clock::fixed(now);
        let config = Config {
            poll_interval: Duration::from_millis(50),
            ..Config::new(test_study_key())
        };
        let state = build_state(store, config, clock.clone()).await.unwrap();
        let server = start("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        let post = |path: &str, body: Value| {
            http.post(format!("{base}{path}"))
                .bearer_auth(&admin)
                .json(&body)
                .send()
        };
        let flags: Value = serde_json::from_str(FLAGS).unwrap();
        let r = post("/api/v1/import?reason=sim", flags).await.unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = post("/api/v1/trials", json!({"source": TRIAL, "reason": "sim"}))
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let r = post("/api/v1/trials/sim-trial/start", json!({"reason": "go"}))
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        // The server sees the started trial once its poller ran.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut params = SimParams::with_sizes(&[150, 150]);
        params.effects.insert(
            "on".into(),
            ArmEffect {
                rate_multipliers: [("edit".to_string(), 4.0)].into(),
                ..ArmEffect::default()
            },
        );
        let mut sim = Simulation::new(params, 11).unwrap();
        let target = Target {
            base_url: base.clone(),
            sdk_key: sdk.clone(),
            flag: "sim-flag".into(),
            community_attribute: "community".into(),
            context: None,
            also_flags: Vec::new(),
            trial_arms_only: false,
            vocabulary: None,
            ordered: false,
        };
        let set = |t: DateTime<Utc>| clock.set(t);
        let mut seen_days = 0;
        let reports = run(
            &mut sim,
            &target,
            now,
            10,
            ServerClock::Settable(&set),
            |r, d| {
                assert_eq!(r.day, d.day);
                seen_days += 1;
            },
        )
        .await
        .unwrap();
        assert_eq!(seen_days, 10);
        let sent: u64 = reports.iter().map(|r| r.events_sent).sum();
        let stored: u64 = reports.iter().map(|r| r.events_stored).sum();
        assert!(sent > 500, "{sent} events");
        assert_eq!(stored, sent, "every simulated event is stored");
        assert!(reports.iter().all(|r| r.events_rejected == 0));
        let on: u64 = reports
            .iter()
            .map(|r| r.arms.get("on").copied().unwrap_or(0))
            .sum();
        let off: u64 = reports
            .iter()
            .map(|r| r.arms.get("off").copied().unwrap_or(0))
            .sum();
        assert!(on > 0 && off > 0, "both arms served: {on} on, {off} off");

        // Exposures arrive through the writer; then the stored analysis.
        let mut v = Value::Null;
        for _ in 0..100 {
            let r = http
                .get(format!(
                    "{base}/api/v1/trials/sim-trial/analysis?as_of=2027-04-01T00:00:00Z"
                ))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            v = r.json().await.unwrap();
            // Units analysed, per arm, of the (one) metric.
            let users: f64 = v["metrics"][0]["n"]
                .as_object()
                .unwrap()
                .values()
                .map(|u| u.as_f64().unwrap())
                .sum();
            let visitors: std::collections::BTreeSet<&str> = sim
                .members()
                .iter()
                .filter(|m| m.arm.is_some())
                .map(|m| m.id.as_str())
                .collect();
            if users as usize == visitors.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The members were randomised individually: a per-member analysis,
        // post-stratified by community; the engine's per-arm values.
        assert_eq!(v["design"], "hash", "{v}");
        let arms = v["metrics"][0]["detail"]["arms"].as_array().unwrap();
        let mean = |arm: &str| {
            arms.iter()
                .find(|a| a["name"] == arm)
                .unwrap_or_else(|| panic!("arm {arm} in {v}"))["value"]
                .as_f64()
                .unwrap()
        };
        assert!(
            mean("on") > 2.0 * mean("off"),
            "a fourfold edit rate shows: on {} off {} ({v})",
            mean("on"),
            mean("off")
        );
        server.stop().await.unwrap();
    })
    .await;
}
