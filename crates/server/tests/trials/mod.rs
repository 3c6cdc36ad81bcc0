//! Trials end to end: lifecycle, assignment through OFREP, exposures.

use super::*;
use commonlab_core::experiments::{hash_arm, parse_trial};
use commonlab_core::privacy::pseudonymise;

mod designs;
mod exposures;
mod guards;
mod lifecycle;
mod report;
mod ship;

const HASH: &str = include_str!("../fixtures/trials/hash.toml");
const HASH_AMENDED: &str = include_str!("../fixtures/trials/hash-amended.toml");
const HASH_RIVAL: &str = include_str!("../fixtures/trials/hash-rival.toml");
const BLOCKED: &str = include_str!("../fixtures/trials/blocked.toml");
const WEDGE: &str = include_str!("../fixtures/trials/wedge.toml");
const BROKEN: &str = include_str!("../fixtures/trials/broken.toml");

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// The JSON body of `resp`, after asserting its status and that it is what
/// the OpenAPI document says of `method template`.
async fn documented(
    resp: reqwest::Response,
    status: StatusCode,
    method: Method,
    template: &str,
) -> Value {
    let got = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    crate::events::openapi::assert_documented(&method, template, status, &body);
    body
}

async fn start_at(db: &TestDb, when: &str) -> (Harness, Clock) {
    let clock = Clock::fixed(at(when));
    let h = Harness::on(db).clock(clock.clone()).start().await;
    (h, clock)
}

impl Harness {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.req(Method::POST, path, Some(&self.admin))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates and starts the trial of `source`; returns the started trial.
    /// Both answers are checked against the OpenAPI document.
    async fn create_and_start(&self, source: &str) -> Value {
        let resp = self
            .post(
                "/api/v1/trials",
                json!({"source": source, "reason": "pilot"}),
            )
            .await;
        documented(resp, StatusCode::CREATED, Method::POST, "/api/v1/trials").await;
        let key = parse_trial(source, "t").unwrap().key;
        let resp = self
            .post(
                &format!("/api/v1/trials/{key}/start"),
                json!({"reason": "go"}),
            )
            .await;
        let template = "/api/v1/trials/{key}/{action}";
        documented(resp, StatusCode::OK, Method::POST, template).await
    }

    /// The trial as shown (checked against the OpenAPI document).
    async fn shown(&self, key: &str) -> Value {
        let resp = self
            .req(
                Method::GET,
                &format!("/api/v1/trials/{key}"),
                Some(&self.admin),
            )
            .send()
            .await
            .unwrap();
        documented(resp, StatusCode::OK, Method::GET, "/api/v1/trials/{key}").await
    }

    async fn arms(&self, key: &str) -> Vec<Value> {
        self.shown(key).await["arms"].as_array().unwrap().clone()
    }

    /// Waits until the exposure writer has stored `n` exposures (not excluded).
    async fn wait_exposed(&self, key: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exposed: i64 = self
                .arms(key)
                .await
                .iter()
                .map(|a| a["exposed"].as_i64().unwrap())
                .sum();
            if exposed == n {
                return;
            }
            assert!(
                exposed < n,
                "more exposures than evaluations: {exposed} > {n}"
            );
            assert!(
                Instant::now() < deadline,
                "only {exposed} of {n} exposures stored after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn hash_trial_lifecycle_assignment_and_exposure() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let spec = parse_trial(HASH, "hash.toml").unwrap();

        // A broken file: every error located.
        let resp = h.post("/api/v1/trials", json!({"source": BROKEN, "file": "broken.toml", "reason": "r"})).await;
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        let errors = p["errors"].as_array().unwrap();
        assert!(errors.len() >= 3, "{p}");
        assert!(errors.iter().any(|e| e["pointer"] == "unit.kind" && e["line"] == 13), "{p}");
        assert!(p["detail"].as_str().unwrap().contains("broken.toml:"), "{p}");

        // A draft does not change evaluation.
        let resp = h.post("/api/v1/trials", json!({"source": HASH, "reason": "plan"})).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let (_, body) = h.eval(&sdk, "thanks-button", json!({"targetingKey": "member-1", "community": "wiki-a"})).await;
        assert!(parse(&body)["metadata"].get("trialKey").is_none(), "{body}");

        let started = h.post("/api/v1/trials/thanks-hash/start", json!({"reason": "go"})).await;
        assert_eq!(started.status(), StatusCode::OK);
        let started: Value = started.json().await.unwrap();
        assert_eq!(started["status"], "running");
        assert!(started["seed"].as_i64().is_some());

        // Every eligible member gets the hashed arm, stickily.
        for i in 0..60 {
            let ctx = json!({"targetingKey": format!("member-{i}"), "community": "wiki-a"});
            let (s, body) = h.eval(&sdk, "thanks-button", ctx.clone()).await;
            assert_eq!(s, StatusCode::OK);
            let v = parse(&body);
            let expected = &hash_arm(&spec, &format!("member-{i}")).variant;
            assert_eq!(v["variant"].as_str(), Some(expected.as_str()), "{body}");
            assert_eq!(v["reason"], "SPLIT");
            assert_eq!(v["metadata"]["trialKey"], "thanks-hash");
            assert_eq!(v["metadata"]["trialArm"], expected.as_str());
            let (_, again) = h.eval(&sdk, "thanks-button", ctx).await;
            assert_eq!(parse(&again)["variant"], v["variant"]);
        }
        // Ineligible (no community): the flag's own evaluation, no exposure.
        let (_, body) = h.eval(&sdk, "thanks-button", json!({"targetingKey": "member-x"})).await;
        assert!(parse(&body)["metadata"].get("trialKey").is_none());
        // Bulk evaluations do not count for this trial.
        let resp = h.req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
            .json(&json!({"context": {"targetingKey": "bulk-only", "community": "wiki-a"}}))
            .send().await.unwrap();
        let v: Value = resp.json().await.unwrap();
        let item = v["flags"].as_array().unwrap().iter().find(|f| f["key"] == "thanks-button").unwrap().clone();
        assert_eq!(item["metadata"]["trialKey"], "thanks-hash");
        h.wait_exposed("thanks-hash", 60).await;

        // The export has pseudonymous units only.
        let csv = h.req(Method::GET, "/api/v1/trials/thanks-hash/assignments", Some(&h.admin))
            .send().await.unwrap().text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 61, "{csv}");
        assert!(!csv.contains("member-"), "raw ids must never be stored");
        let unit = pseudonymise(&h.server.state.config.study_key, "member-7");
        let row = lines.iter().find(|l| l.contains(unit.as_str())).expect("member-7's row");
        assert!(row.contains(&hash_arm(&spec, "member-7").variant), "{row}");
        assert!(row.contains(",single,"), "{row}");

        // The plan is locked: a rival on the same flag cannot start, a draft edit is refused,
        // an amendment is recorded as a deviation.
        let resp = h.post("/api/v1/trials", json!({"source": HASH_RIVAL, "reason": "rival"})).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = h.post("/api/v1/trials/thanks-rival/start", json!({"reason": "go"})).await;
        let p = problem(resp, StatusCode::CONFLICT).await;
        assert!(p["detail"].as_str().unwrap().contains("overlaps"), "{p}");
        let resp = h.req(Method::PUT, "/api/v1/trials/thanks-hash", Some(&h.admin))
            .header(header::IF_MATCH, format!("\"{}\"", spec.canonical_hash()))
            .json(&json!({"source": HASH_AMENDED, "reason": "edit"})).send().await.unwrap();
        problem(resp, StatusCode::CONFLICT).await;
        let resp = h.post("/api/v1/trials/thanks-hash/amend", json!({"source": HASH_AMENDED, "reason": "ethics board asked for alpha 0.01"})).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["lockedFieldsChanged"], json!(["analysis.alpha"]));
        assert_eq!(v["trial"]["version"], 2);
        // Changing who gets which arm is not an amendment.
        let reweighted = HASH.replacen("weight = 2", "weight = 3", 1);
        let resp = h.post("/api/v1/trials/thanks-hash/amend", json!({"source": reweighted, "reason": "more control"})).await;
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(p["detail"].as_str().unwrap().contains("arms"), "{p}");
        let shown: Value = h.req(Method::GET, "/api/v1/trials/thanks-hash", Some(&h.admin)).send().await.unwrap().json().await.unwrap();
        let actions: Vec<&str> = shown["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["create", "start", "amend"]);

        // A developer's cohort override wins and the unit leaves the analysis population.
        let resp = h.req(Method::PUT, "/api/v1/flags/thanks-button/cohorts/coop-out", Some(&h.admin))
            .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": "control", "reason": "coop opted out"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, body) = h.eval(&sdk, "thanks-button", json!({"targetingKey": "coop-member", "community": "coop-b"})).await;
        let v = parse(&body);
        assert_eq!(v["variant"], "control");
        assert!(v["metadata"].get("trialKey").is_none(), "{body}");

        // Stopped: the flag's own evaluation again.
        let resp = h.post("/api/v1/trials/thanks-hash/stop", json!({"reason": "pause"})).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, body) = h.eval(&sdk, "thanks-button", json!({"targetingKey": "member-1", "community": "wiki-a"})).await;
        assert!(parse(&body)["metadata"].get("trialKey").is_none());
        let resp = h.post("/api/v1/trials/thanks-hash/start", json!({"reason": "again"})).await;
        problem(resp, StatusCode::CONFLICT).await;
        let resp = h.post("/api/v1/trials/thanks-hash/fly", json!({"reason": "x"})).await;
        problem(resp, StatusCode::NOT_FOUND).await;
        let resp = h.post("/api/v1/trials/thanks-hash/conclude", json!({"reason": ""})).await;
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        h.stop().await;

        // The excluded exposure was stored as such.
        let csv_rows = db.store().export_assignments(started["id"].as_i64().unwrap(), None, 1000).await.unwrap();
        assert_eq!(csv_rows.len(), 60, "excluded units get no assignment");
    })
    .await;
}

/// `GET /api/v1/trials/{key}/analysis`: every metric of the plan computed
/// in the database from the stored exposures and events, then analysed.
#[tokio::test]
async fn analysis_of_a_running_trial() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let spec = parse_trial(HASH, "hash.toml").unwrap();
        h.create_and_start(HASH).await;
        for i in 0..40 {
            let ctx = json!({"targetingKey": format!("member-{i}"), "community": "wiki-a"});
            assert_eq!(h.eval(&sdk, "thanks-button", ctx).await.0, StatusCode::OK);
        }
        h.wait_exposed("thanks-hash", 40).await;
        // Every third member contributes two days after exposure.
        let key = &h.server.state.config.study_key;
        let events: Vec<commonlab_store::NewEvent> = (0..40)
            .filter(|i| i % 3 == 0)
            .map(|i| commonlab_store::NewEvent {
                event_id: uuid::Uuid::from_u128(i + 1),
                unit: pseudonymise(key, &format!("member-{i}")).into_string(),
                community: Some("wiki-a".into()),
                name: "contribution_created".into(),
                ts: at("2026-06-03T12:00:00Z"),
                properties: Default::default(),
            })
            .collect();
        db.store()
            .insert_events(&events, at("2026-06-03T12:00:00Z"))
            .await
            .unwrap();
        let mut expected: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for i in 0..40u128 {
            let arm = hash_arm(&spec, &format!("member-{i}")).variant.clone();
            let e = expected.entry(arm).or_default();
            e.0 += 1.0;
            if i % 3 == 0 {
                e.1 += 1.0;
            }
        }

        let url = "/api/v1/trials/thanks-hash/analysis?as_of=2026-08-01T00:00:00Z";
        let resp = h
            .req(Method::GET, url, Some(&h.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["design"], "hash");
        let m = &v["metrics"][0];
        assert_eq!(m["name"], "repeat_contribution_28d");
        assert_eq!(m["role"], "primary");
        let control = spec.control().variant.clone();
        for arm in spec.arms.iter().map(|a| &a.variant) {
            let (n, _) = expected.get(arm).copied().unwrap_or_default();
            assert_eq!(m["n"][arm].as_f64(), Some(n), "{arm}: {v}");
        }
        let treatment = spec.treatment().variant.clone();
        let e = m["estimates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["arm"] == treatment.as_str())
            .unwrap_or_else(|| panic!("{v}"));
        let mean = |arm: &str| {
            let (n, sum) = expected[arm];
            sum / n
        };
        let want = mean(&treatment) - mean(&control);
        assert!(
            (e["estimate"].as_f64().unwrap() - want).abs() < 1e-12,
            "{e}"
        );
        assert!(e["p_value"].is_number() && e["se"].is_number(), "{e}");
        assert!(e["method"].is_string() && e["why"].is_string(), "{e}");
        assert!(v["quality"]["srm"].is_object(), "{v}");
        assert!(v["decision"]["outcome"].is_string(), "{v}");
        assert_eq!(
            v["comparisons"]["correction"],
            spec.analysis.correction.as_str()
        );

        // Too early: no window has closed.
        let resp = h
            .req(
                Method::GET,
                "/api/v1/trials/thanks-hash/analysis?as_of=2026-06-02T00:00:00Z",
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["metrics"][0]["n"][&control].as_f64(), Some(0.0));
        assert!(v["metrics"][0]["estimates"].as_array().unwrap().is_empty());
        let notice = v["notice"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(notice.contains("first window"), "{notice}");
        assert_eq!(v["decision"]["outcome"], "inconclusive");
        // Researchers only; bad input is a problem, not a 500.
        let dev = h.key(Role::Developer).await;
        let resp = h.req(Method::GET, url, Some(&dev)).send().await.unwrap();
        problem(resp, StatusCode::FORBIDDEN).await;
        let resp = h
            .req(
                Method::GET,
                "/api/v1/trials/thanks-hash/analysis?as_of=tomorrow",
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(p.to_string().contains("/query/as_of"), "{p}");
        let resp = h
            .req(
                Method::GET,
                "/api/v1/trials/thanks-hash/analysis?when=now",
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        let resp = h
            .req(Method::GET, "/api/v1/trials/nope/analysis", Some(&h.admin))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::NOT_FOUND).await;

        // Concluding keeps the aggregates: the analysis survives the
        // deletion of the raw events (what retention does).
        let live: Value = h
            .req(Method::GET, url, Some(&h.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(live["metrics"][0]["source"], "database");
        clock.set(at("2026-08-01T00:00:00Z"));
        let resp = h
            .post(
                "/api/v1/trials/thanks-hash/conclude",
                json!({"reason": "done", "force": true}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let deleted = db
            .store()
            .delete_events_before(at("2030-01-01T00:00:00Z"), 1000)
            .await
            .unwrap();
        assert_eq!(deleted, events.len() as u64);
        let kept: Value = h
            .req(
                Method::GET,
                "/api/v1/trials/thanks-hash/analysis",
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(kept["metrics"][0]["source"], "snapshot");
        assert_eq!(kept["metrics"][0]["as_of"], "2026-08-01T00:00:00Z");
        assert_eq!(
            kept["metrics"][0]["estimates"],
            live["metrics"][0]["estimates"]
        );
        assert_eq!(kept["metrics"][0]["n"], live["metrics"][0]["n"]);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn blocked_trial_is_balanced_and_sticky_across_two_servers() {
    both_backends(|db| async move {
        let (a, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        let b = Harness::on(&db)
            .replica_of(&a)
            .clock(Clock::fixed(at("2026-06-01T12:00:00Z")))
            .start()
            .await;
        a.import_fixture().await;
        a.create_and_start(BLOCKED).await;
        let sdk = a.key(Role::Sdk).await;
        // b learns about the trial and the key by polling; make sure it has.
        commonlab_server::sync::refresh_all(&b.server.state).await.unwrap();
        assert!(b.server.state.trials.current().by_flag.contains_key("welcome-text"));
        let mut tasks = Vec::new();
        for i in 0..48 {
            for (j, base) in [a.base.clone(), b.base.clone()].into_iter().enumerate() {
                let sdk = sdk.clone();
                let community = if i % 2 == 0 { "wiki-a" } else { "coop-b" };
                tasks.push(tokio::spawn(async move {
                    let v: Value = reqwest::Client::new()
                        .post(format!("{base}/ofrep/v1/evaluate/flags/welcome-text"))
                        .bearer_auth(sdk)
                        .json(&json!({"context": {"targetingKey": format!("m{i}"), "community": community}}))
                        .send().await.unwrap().json().await.unwrap();
                    (i, j, community, v["variant"].as_str().unwrap().to_string(), v["metadata"]["trialKey"].clone())
                }));
            }
        }
        let mut arms: std::collections::HashMap<usize, String> = Default::default();
        let mut per_stratum: std::collections::HashMap<&str, (i32, i32)> = Default::default();
        for t in tasks {
            let (i, _, community, variant, trial) = t.await.unwrap();
            assert_eq!(trial, "welcome-blocked");
            match arms.get(&i) {
                Some(prev) => assert_eq!(prev, &variant, "unit m{i} got two arms"),
                None => {
                    let e = per_stratum.entry(community).or_default();
                    if variant == "plain" { e.0 += 1 } else { e.1 += 1 }
                    arms.insert(i, variant);
                }
            }
        }
        assert_eq!(arms.len(), 48);
        // 24 units per community, blocks of 4 (1:1): exactly balanced.
        for (community, (plain, warm)) in per_stratum {
            assert_eq!((plain, warm), (12, 12), "{community}");
        }
        a.wait_exposed("welcome-blocked", 48).await;
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stepped_wedge_follows_the_calendar() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-02-15T00:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let started = h.create_and_start(WEDGE).await;
        let schedule: Vec<Value> =
            serde_json::from_str(started["allocation"].as_str().unwrap()).unwrap();
        assert_eq!(schedule.len(), 4);
        let order: Vec<String> = schedule
            .iter()
            .map(|s| s["community"].as_str().unwrap().to_string())
            .collect();
        let eval = |community: String| {
            let h = &h;
            let sdk = sdk.clone();
            async move {
                let (_, body) = h
                    .eval(
                        &sdk,
                        "new-editor",
                        json!({"targetingKey": "anyone", "community": community}),
                    )
                    .await;
                parse(&body)["variant"].as_str().unwrap().to_string()
            }
        };
        // Before the first step everyone is in control.
        for c in &order {
            assert_eq!(eval(c.clone()).await, "off");
        }
        // After the second step, the first two in the drawn order have crossed over.
        clock.set(at("2026-04-15T00:00:00Z"));
        let arms: Vec<String> = futures_join(order.iter().map(|c| eval(c.clone()))).await;
        assert_eq!(arms, ["on", "on", "off", "off"], "order {order:?}");
        // After the schedule's end: no trial, the flag's own default.
        clock.set(at("2028-01-01T00:00:00Z"));
        let (_, body) = h
            .eval(&sdk, "new-editor", json!({"community": order[3].clone()}))
            .await;
        assert!(parse(&body)["metadata"].get("trialKey").is_none());
        h.stop().await;
    })
    .await;
}

/// Issue #10, item 19: a change to a flag that a running trial controls is
/// recorded in the trial's log as a deviation, whoever makes it and however.
#[tokio::test]
async fn changes_to_a_running_trials_flag_are_deviations_in_its_log() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await; // controls thanks-button
        let dev = h.key(Role::Developer).await;
        async fn events(h: &Harness) -> Vec<Value> {
            let v: Value = h
                .req(Method::GET, "/api/v1/trials/thanks-hash", Some(&h.admin))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["events"].as_array().unwrap().clone()
        }
        let before = events(&h).await.len();

        // A developer disables it: the arms stop; the trial's log says so.
        let resp = h
            .req(Method::PUT, "/api/v1/flags/thanks-button/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "pause during the assembly"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["deviations"], json!(["thanks-hash"]), "{v}");
        let log = events(&h).await;
        assert_eq!(log.len(), before + 1);
        let last = &log[before];
        assert_eq!(last["action"], "deviation");
        assert!(last["actor"].as_str().unwrap().starts_with("key:developer-"), "{last}");
        let reason = last["reason"].as_str().unwrap();
        assert!(reason.contains("state ENABLED -> DISABLED"), "{reason}");
        assert!(reason.contains("pause during the assembly"), "{reason}");

        // A cohort override takes its members out of the trial: recorded.
        let resp = h
            .req(Method::PUT, "/api/v1/flags/thanks-button/cohorts/coop", Some(&dev))
            .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": "control", "reason": "coop asked"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let log = events(&h).await;
        assert!(log.last().unwrap()["reason"].as_str().unwrap().contains("cohort overrides [] -> [coop]"));

        // Another flag, or a change that changes nothing: no deviation.
        let resp = h
            .req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "unrelated"}))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["deviations"], json!([]), "{v}");
        let resp = h
            .req(Method::PUT, "/api/v1/flags/thanks-button/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "again"}))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["deviations"], json!([]), "{v}");
        let n = events(&h).await.len();
        assert_eq!(n, before + 2);

        // An import that changes the flag: recorded too.
        let resp = h
            .req(Method::POST, "/api/v1/import?reason=new%20plan", Some(&h.admin))
            .header(header::CONTENT_TYPE, "application/json")
            .body(FLAGS)
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["deviations"], json!(["thanks-hash"]), "{v}");
        let log = events(&h).await;
        assert_eq!(log.len(), n + 1);
        assert!(log[n]["reason"].as_str().unwrap().contains("state DISABLED -> ENABLED"), "{}", log[n]);
        h.stop().await;
    })
    .await;
}

/// Issue #10, item 11: a bulk answer cached before a stepped-wedge
/// crossover is not revalidated (304) after it.
#[tokio::test]
async fn bulk_etag_expires_at_a_stepped_wedge_crossover() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-02-15T00:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let started = h.create_and_start(WEDGE).await;
        let schedule: Vec<Value> =
            serde_json::from_str(started["allocation"].as_str().unwrap()).unwrap();
        let first = schedule[0]["community"].as_str().unwrap().to_string();
        let crossover = schedule[0]["crossover"].as_str().unwrap().to_string();
        let ctx = json!({"context": {"targetingKey": "anyone", "community": first}});
        let bulk = |tag: Option<String>| {
            let mut r = h
                .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
                .json(&ctx);
            if let Some(t) = tag {
                r = r.header(header::IF_NONE_MATCH, t);
            }
            r.send()
        };
        let editor = |v: &Value| {
            let flags = v["flags"].as_array().unwrap();
            let f = flags.iter().find(|f| f["key"] == "new-editor").unwrap();
            f["variant"].as_str().unwrap().to_string()
        };
        let resp = bulk(None).await.unwrap();
        let before = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(editor(&resp.json().await.unwrap()), "off");
        // Still before the crossover: the cached answer holds.
        clock.set(at(&crossover) - chrono::Duration::seconds(1));
        let resp = bulk(Some(before.clone())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        // At the crossover the community's arm changes: a full answer.
        clock.set(at(&crossover));
        let resp = bulk(Some(before.clone())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let after = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_ne!(after, before);
        assert_eq!(editor(&resp.json().await.unwrap()), "on");
        // And the new answer is cacheable until the next change.
        let resp = bulk(Some(after)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        h.stop().await;
    })
    .await;
}

async fn futures_join<F: std::future::Future<Output = String>>(
    it: impl Iterator<Item = F>,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in it {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn exposures_are_not_lost_on_graceful_shutdown() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let started = h.create_and_start(HASH).await;
        let sdk = h.key(Role::Sdk).await;
        for i in 0..300 {
            let (s, _) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": format!("u{i}"), "community": "social-c"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        // Stop at once: the writer drains its queue before the server returns.
        h.stop().await;
        let counts = db
            .store()
            .arm_counts(started["id"].as_i64().unwrap())
            .await
            .unwrap();
        let exposed: i64 = counts.iter().map(|(_, _, e)| e).sum();
        assert_eq!(exposed, 300);
    })
    .await;
}
