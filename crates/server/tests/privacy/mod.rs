//! Privacy end to end: consent gating of trials, what consent answers
//! reveal, erasure (caches of every replica, actor and reason), CSV cells.

use super::*;
use commonlab_core::privacy::pseudonymise;

const HASH: &str = include_str!("../fixtures/trials/hash.toml");
const BLOCKED: &str = include_str!("../fixtures/trials/blocked.toml");

fn now_clock() -> Clock {
    Clock::fixed(
        chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
}

/// A server on `db` at a fixed time inside the fixture trials' schedule.
async fn server(db: &TestDb, config: impl FnOnce(&mut Config)) -> Harness {
    Harness::on(db)
        .clock(now_clock())
        .config(config)
        .start()
        .await
}

/// Another replica on the same database, with the same study key and
/// consent scope.
async fn replica(db: &TestDb, of: &Harness) -> Harness {
    let scope = of.server.state.config.consent_scope.clone();
    Harness::on(db)
        .replica_of(of)
        .clock(now_clock())
        .config(|c| c.consent_scope = scope)
        .start()
        .await
}

impl Harness {
    /// Creates and starts a trial; returns its id.
    async fn run_trial(&self, source: &str) -> i64 {
        let resp = self
            .req(Method::POST, "/api/v1/trials", Some(&self.admin))
            .json(&json!({"source": source, "reason": "privacy test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap()
        );
        let key = commonlab_core::experiments::parse_trial(source, "t")
            .unwrap()
            .key;
        let resp = self
            .req(
                Method::POST,
                &format!("/api/v1/trials/{key}/start"),
                Some(&self.admin),
            )
            .json(&json!({"reason": "go"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    async fn consent(&self, key: &str, unit: &str, granted: bool) -> reqwest::Response {
        self.req(
            Method::PUT,
            &format!("/api/v1/units/{unit}/consent"),
            Some(key),
        )
        .json(&json!({"scope": "research", "text_version": "v1", "granted": granted}))
        .send()
        .await
        .unwrap()
    }

    /// Waits until the exposure writer has stored `n` exposures of `trial`.
    async fn wait_trial_exposed(&self, trial: i64, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let counts = self.server.state.store.arm_counts(trial).await.unwrap();
            let exposed: i64 = counts.iter().map(|c| c.2).sum();
            if exposed == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{exposed} of {n} exposures stored after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn unit(&self, raw: &str) -> String {
        pseudonymise(&self.server.state.config.study_key, raw).into_string()
    }
}

#[tokio::test]
async fn consent_answers_do_not_reveal_pseudonyms_to_sdk_callers() {
    both_backends(|db| async move {
        let h = server(&db, |_| {}).await;
        let sdk = h.key(Role::Sdk).await;
        let resp = h.consent(&sdk, "member-1", true).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.text().await.unwrap();
        assert!(!body.contains(&h.unit("member-1")), "{body}");
        let v = parse(&body);
        assert_eq!(
            (v["scope"].as_str(), v["granted"].as_bool()),
            (Some("research"), Some(true)),
            "{v}"
        );
        assert!(v.get("unit").is_none(), "{v}");
        // A researcher (who may export data) may see it.
        let researcher = h.key(Role::Researcher).await;
        let v: Value = h
            .consent(&researcher, "member-1", false)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["unit"].as_str(), Some(h.unit("member-1").as_str()), "{v}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_member_without_consent_is_not_enrolled() {
    both_backends(|db| async move {
        let h = server(&db, |c| c.consent_scope = Some("research".into())).await;
        h.import_fixture().await;
        let hash = h.run_trial(HASH).await;
        let blocked = h.run_trial(BLOCKED).await;
        let sdk = h.key(Role::Sdk).await;
        assert_eq!(h.consent(&sdk, "yes", true).await.status(), StatusCode::OK);
        assert_eq!(
            h.consent(&sdk, "withdrew", true).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            h.consent(&sdk, "withdrew", false).await.status(),
            StatusCode::OK
        );
        for unit in ["yes", "no", "withdrew"] {
            let ctx = json!({"targetingKey": unit, "community": "wiki-a"});
            for flag in ["thanks-button", "welcome-text"] {
                let (s, body) = h.eval(&sdk, flag, ctx.clone()).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                let v = parse(&body);
                assert_eq!(
                    v["metadata"].get("trialKey").is_some(),
                    unit == "yes",
                    "{unit} {flag}: {body}"
                );
                if unit != "yes" && flag == "welcome-text" {
                    // The flag's own answer: its targeting's "warm" in wiki-a.
                    assert_eq!(
                        (v["variant"].as_str(), v["reason"].as_str()),
                        (Some("warm"), Some("TARGETING_MATCH")),
                        "{body}"
                    );
                }
            }
            let resp = h
                .req(Method::POST, "/api/v1/exposures", Some(&sdk))
                .json(&json!({"flag": "thanks-button", "context": ctx}))
                .send()
                .await
                .unwrap();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["trial"].is_null(), unit != "yes", "{unit}: {v}");
        }
        let state = h.server.state.clone();
        h.stop().await; // drains the exposure writer
        for trial in [hash, blocked] {
            for (unit, enrolled) in [("yes", true), ("no", false), ("withdrew", false)] {
                let a = state
                    .store
                    .get_assignment(
                        trial,
                        &pseudonymise(&state.config.study_key, unit).into_string(),
                    )
                    .await
                    .unwrap();
                assert_eq!(a.is_some(), enrolled, "trial {trial}, unit {unit}");
            }
            let exposed: i64 = state
                .store
                .arm_counts(trial)
                .await
                .unwrap()
                .iter()
                .map(|c| c.2)
                .sum();
            assert_eq!(
                exposed, 1,
                "trial {trial}: only the consenting member is exposed"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn erasure_clears_the_caches_of_every_replica() {
    both_backends(|db| async move {
        let a = server(&db, |_| {}).await;
        a.import_fixture().await;
        let trial = a.run_trial(BLOCKED).await;
        let b = replica(&db, &a).await;
        let sdk = a.key(Role::Sdk).await;
        commonlab_server::sync::refresh_all(&b.server.state)
            .await
            .unwrap();
        let ctx = json!({"targetingKey": "m1", "community": "wiki-a"});
        let unit = a.unit("m1");
        let researcher = a.key(Role::Researcher).await;
        let erase = || async {
            let resp = a
                .req(
                    Method::DELETE,
                    "/api/v1/units/m1?reason=member%20asked",
                    Some(&researcher),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{}",
                resp.text().await.unwrap()
            );
            assert!(a
                .server
                .state
                .store
                .get_assignment(trial, &unit)
                .await
                .unwrap()
                .is_none());
        };
        // Both replicas assign (the same arm) and cache it.
        for h in [&a, &b] {
            let (s, body) = h.eval(&sdk, "welcome-text", ctx.clone()).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert_eq!(
                parse(&body)["metadata"]["trialKey"],
                "welcome-blocked",
                "{body}"
            );
        }
        a.wait_trial_exposed(trial, 1).await;
        // Erased through a: b learns it by polling, and assigns the member afresh.
        erase().await;
        commonlab_server::sync::refresh_all(&b.server.state)
            .await
            .unwrap();
        b.eval(&sdk, "welcome-text", ctx.clone()).await;
        assert!(
            b.server
                .state
                .store
                .get_assignment(trial, &unit)
                .await
                .unwrap()
                .is_some(),
            "b served a cached arm and recorded nothing"
        );
        b.wait_trial_exposed(trial, 1).await;
        // Erased again: a itself forgets at once.
        erase().await;
        a.eval(&sdk, "welcome-text", ctx.clone()).await;
        assert!(
            a.server
                .state
                .store
                .get_assignment(trial, &unit)
                .await
                .unwrap()
                .is_some(),
            "a served a cached arm and recorded nothing"
        );
        let state = a.server.state.clone();
        a.stop().await;
        b.stop().await;
        // The last evaluation after the erasure was recorded as an exposure.
        let exposed: i64 = state
            .store
            .arm_counts(trial)
            .await
            .unwrap()
            .iter()
            .map(|c| c.2)
            .sum();
        assert_eq!(exposed, 1);
    })
    .await;
}

#[tokio::test]
async fn erasure_needs_a_reason_and_logs_who_and_why() {
    both_backends(|db| async move {
        let h = server(&db, |_| {}).await;
        let researcher = h.key(Role::Researcher).await;
        for path in [
            "/api/v1/units/m1",
            "/api/v1/units/m1?reason=",
            "/api/v1/units/m1?reason=%20",
        ] {
            let resp = h
                .req(Method::DELETE, path, Some(&researcher))
                .send()
                .await
                .unwrap();
            let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(p["errors"][0]["pointer"], "/reason", "{path}: {p}");
        }
        assert_eq!(
            db.fetch_text_raw("SELECT COUNT(*) || '' FROM erasure_log")
                .await
                .unwrap()
                .as_deref(),
            Some("0")
        );
        let resp = h
            .req(
                Method::DELETE,
                "/api/v1/units/m1?reason=GDPR%20art.%2017%20request",
                Some(&researcher),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let actor = db
            .fetch_text_raw("SELECT actor FROM erasure_log")
            .await
            .unwrap();
        let reason = db
            .fetch_text_raw("SELECT reason FROM erasure_log")
            .await
            .unwrap();
        assert!(
            actor
                .as_deref()
                .is_some_and(|a| a.starts_with("key:researcher")),
            "{actor:?}"
        );
        assert_eq!(reason.as_deref(), Some("GDPR art. 17 request"));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn csv_cells_never_start_a_formula() {
    both_backends(|db| async move {
        let h = server(&db, |_| {}).await;
        h.import_fixture().await;
        h.run_trial(HASH).await;
        let sdk = h.key(Role::Sdk).await;
        let hostile = [
            "=HYPERLINK(\"http://evil.example\",\"x\")",
            "+1+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0",
            "@SUM(1+1)*cmd|' /C calc'!A0",
        ];
        // Tab and carriage return cannot reach an export through OFREP: a
        // context with a control character is refused (the CSV writer
        // neutralises them too: `csv_out`'s own tests).
        for community in ["\t=1+1", "\r=1+1"] {
            let (s, body) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": "m-ctl", "community": community}),
                )
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(parse(&body)["errorCode"], "INVALID_CONTEXT");
        }
        for (i, community) in hostile.iter().enumerate() {
            let (s, body) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": format!("m{i}"), "community": community}),
                )
                .await;
            assert_eq!(
                parse(&body)["metadata"]["trialKey"],
                "thanks-hash",
                "{s} {body}"
            );
        }
        let state = h.server.state.clone();
        h.stop().await; // drains the exposure writer
        let mut out = Vec::new();
        let n = commonlab_server::trial_service::export_csv(&state.store, "thanks-hash", &mut out)
            .await
            .unwrap();
        assert_eq!(n, hostile.len() as u64);
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let mut communities = Vec::new();
        for record in reader.records() {
            let record = record.unwrap();
            for cell in record.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "a cell starts a formula: {cell:?}"
                );
            }
            communities.push(record[4].to_string());
        }
        communities.sort();
        let mut expected: Vec<String> = hostile.iter().map(|c| format!("'{c}")).collect();
        expected.sort();
        assert_eq!(communities, expected, "the text is kept, behind a quote");
    })
    .await;
}

#[tokio::test]
async fn an_authorization_header_without_a_scheme_is_named() {
    both_backends(|db| async move {
        let h = server(&db, |_| {}).await;
        let sdk = h.key(Role::Sdk).await;
        for (header, expected) in [(sdk.clone(), "scheme"), (format!("Basic {sdk}"), "Basic")] {
            let resp = h
                .http
                .post(format!("{}/v1/events", h.base))
                .header(header::AUTHORIZATION, header.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body("[]")
                .send()
                .await
                .unwrap();
            let p = problem(resp, StatusCode::UNAUTHORIZED).await;
            let detail = p["detail"].as_str().unwrap();
            assert!(
                detail.contains(expected) && detail.contains("Bearer"),
                "{detail}"
            );
            assert!(!detail.contains(&sdk), "the key is never echoed: {detail}");
        }
        h.stop().await;
    })
    .await;
}
