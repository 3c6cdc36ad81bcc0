//! Store behaviour, each test on both SQLite and PostgreSQL (see
//! `commonlab_store::testing`): one test binary, one module per aggregate
//! (`store_*/`), sharing the helpers below.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commonlab_store::testing::{both_backends, TestDb, BACKENDS};
use commonlab_store::{
    Backend, EventFilter, ExposureSource, NewApiKeyRecord, NewAssignment, NewEvent, NewExposure,
    NewRevision, NewSequentialAssignment, NewTrial, PeriodExposures, Store, StoreError,
    TrialChange, TrialStatus,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

fn change<'a>(
    document: &'a str,
    action: &'a str,
    flag_key: Option<&'a str>,
    secs: i64,
) -> NewRevision<'a> {
    NewRevision {
        document,
        actor: "cli:alice",
        action,
        flag_key,
        reason: "because",
        at: at(secs),
    }
}

fn key<'a>(id: &'a str, name: &'a str, role: &'a str, secs: i64) -> NewApiKeyRecord<'a> {
    NewApiKeyRecord {
        id,
        name,
        role,
        hash_hex: "ab".repeat(32).leak(),
        created_by: "cli:root",
        reason: Some("a test key"),
        at: at(secs),
    }
}

fn hash_of(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn unit(n: u64) -> String {
    format!("{n:064x}")
}

fn new_trial<'a>(trial_key: &'a str, spec_hash: &'a str, secs: i64) -> NewTrial<'a> {
    NewTrial {
        key: trial_key,
        flag_key: "checkout",
        spec_source: "[trial]\nkey = \"x\" # ü\n",
        spec_canonical: "{\"key\":\"x\"}",
        spec_hash,
        actor: "cli:alice",
        reason: "new trial",
        at: at(secs),
    }
}

fn trial_change(reason: &str, secs: i64) -> TrialChange<'_> {
    TrialChange {
        actor: "cli:bob",
        reason,
        at: at(secs),
    }
}

/// A running trial's id.
async fn running_trial(store: &Store, trial_key: &str) -> i64 {
    let h = hash_of(1);
    store
        .create_trial(&new_trial(trial_key, &h, 0))
        .await
        .unwrap();
    store
        .start_trial(trial_key, 42, None, &trial_change("go", 1))
        .await
        .unwrap()
        .id
}

fn fixed<'a>(trial_id: i64, unit: &'a str, arm: &'a str, secs: i64) -> NewAssignment<'a> {
    NewAssignment {
        trial_id,
        unit,
        arm,
        stratum: None,
        community: None,
        trial_version: 1,
        at: at(secs),
    }
}

fn exposure(trial_id: i64, n: u64, arm: &str, secs: i64) -> NewExposure {
    NewExposure {
        trial_id,
        unit: unit(n),
        arm: arm.to_string(),
        community: None,
        trial_version: 1,
        at: at(secs),
        source: ExposureSource::Single,
        excluded_reason: None,
    }
}

fn assert_invalid_state(err: StoreError, status: &str) {
    match &err {
        StoreError::InvalidState(message) => {
            assert!(message.contains(&format!("is {status}")), "{message}")
        }
        other => panic!("expected InvalidState naming {status}, got {other:?}"),
    }
}

fn props(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Event `id` (a small UUID) of `unit(u)` named `name` at `at(secs)`.
fn event(id: u128, u: u64, name: &str, secs: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(id),
        unit: unit(u),
        community: None,
        name: name.to_string(),
        ts: at(secs),
        properties: props(json!({"n": id as u64})),
    }
}

#[path = "store_activity/mod.rs"]
mod activity;

#[path = "store_connection/mod.rs"]
mod connection;

#[path = "store_flag_sets/mod.rs"]
mod flag_sets;

#[path = "store_api_keys/mod.rs"]
mod api_keys;

#[path = "store_trials/mod.rs"]
mod trials;

#[path = "store_assignments/mod.rs"]
mod assignments;

#[path = "store_exposures/mod.rs"]
mod exposures;

#[path = "store_events/mod.rs"]
mod events;

#[path = "store_metrics/mod.rs"]
mod metrics;

#[path = "store_design_rows/mod.rs"]
mod design_rows;

#[path = "store_console/mod.rs"]
mod console;

#[path = "store_cancel/mod.rs"]
mod cancel;

#[path = "store_privacy/mod.rs"]
mod privacy;

#[path = "store_refused/mod.rs"]
mod refused;

#[path = "store_lifecycle/mod.rs"]
mod lifecycle;

#[path = "store_deviations/mod.rs"]
mod deviations;

#[path = "store_surveys/mod.rs"]
mod surveys;

#[path = "store_survey_results/mod.rs"]
mod survey_results;
