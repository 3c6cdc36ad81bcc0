//! Issue 12, item 4: lifecycle guards. A conclusion before the data are
//! complete is refused unless forced (then recorded as a deviation); a
//! resume checks overlaps as a start does; a cohort override of a unit
//! already exposed marks it excluded; a trial whose schedule begins later
//! says so.

use super::*;

impl Harness {
    async fn action(&self, key: &str, action: &str, body: Value) -> reqwest::Response {
        self.post(&format!("/api/v1/trials/{key}/{action}"), body)
            .await
    }

    async fn log(&self, key: &str) -> Vec<(String, String)> {
        self.shown(key).await["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |f: &str| e[f].as_str().unwrap().to_string();
                (s("action"), s("reason"))
            })
            .collect()
    }
}

#[tokio::test]
async fn a_conclusion_before_the_data_are_complete_needs_force_and_is_a_deviation() {
    both_backends(|db| async move {
        // hash.toml: schedule 2026-01-01 to 2027-12-31, one metric with the
        // default window (14 days after first exposure).
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await;
        let shown = h.shown("thanks-hash").await;
        let schedule = &shown["schedule"];
        assert_eq!(schedule["state"], "assigning", "{schedule}");
        assert_eq!(schedule["completeAt"], "2028-01-14T00:00:00Z", "{schedule}");

        // Running, mid-schedule: refused, naming the field that would force it.
        let resp = h
            .action("thanks-hash", "conclude", json!({"reason": "enough"}))
            .await;
        let p = problem(resp, StatusCode::CONFLICT).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("cannot be concluded yet") && detail.contains("2028-01-14T00:00:00Z"),
            "{p}"
        );
        assert_eq!(p["errors"][0]["pointer"], "/force", "{p}");
        assert_eq!(h.shown("thanks-hash").await["trial"]["status"], "running");
        // Only a conclusion can be forced.
        let resp = h
            .action("thanks-hash", "stop", json!({"reason": "r", "force": true}))
            .await;
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/force", "{p}");
        let resp = h
            .action(
                "thanks-hash",
                "conclude",
                json!({"reason": "r", "force": "yes"}),
            )
            .await;
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;

        // Stopped a day later: complete 14 days after the stop, not before.
        clock.set(at("2026-06-02T12:00:00Z"));
        let resp = h
            .action("thanks-hash", "stop", json!({"reason": "recruitment done"}))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            h.shown("thanks-hash").await["schedule"]["completeAt"],
            "2026-06-16T12:00:00Z"
        );
        clock.set(at("2026-06-16T11:59:59Z"));
        let resp = h
            .action("thanks-hash", "conclude", json!({"reason": "done"}))
            .await;
        problem(resp, StatusCode::CONFLICT).await;
        clock.set(at("2026-06-16T12:00:00Z"));
        let resp = h
            .action("thanks-hash", "conclude", json!({"reason": "done"}))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        let log = h.log("thanks-hash").await;
        assert!(log.iter().all(|(a, _)| a != "deviation"), "{log:?}");
        let schedule = h.shown("thanks-hash").await["schedule"].clone();
        assert_eq!(schedule["state"], "not running", "{schedule}");
        assert!(schedule.get("completeAt").is_none(), "{schedule}");

        // Forced: concluded, with the deviation in the same log.
        h.create_and_start(HASH_RIVAL).await;
        let resp = h
            .action(
                "thanks-rival",
                "conclude",
                json!({"reason": "the platform closes", "force": true}),
            )
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        let log = h.log("thanks-rival").await;
        let n = log.len();
        assert_eq!(
            log[n - 2],
            ("conclude".to_string(), "the platform closes".to_string())
        );
        assert_eq!(log[n - 1].0, "deviation");
        assert!(
            log[n - 1]
                .1
                .starts_with("concluded before the data were complete (the longest metric window")
                && log[n - 1].1.ends_with("): the platform closes"),
            "{log:?}"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_resume_is_refused_when_an_overlapping_trial_started_meanwhile() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await;
        let resp = h
            .action("thanks-hash", "stop", json!({"reason": "pause"}))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        // The rival starts on the same flag and units while it is stopped.
        h.create_and_start(HASH_RIVAL).await;
        let resp = h
            .action("thanks-hash", "resume", json!({"reason": "back"}))
            .await;
        let p = problem(resp, StatusCode::CONFLICT).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("overlaps running trial 'thanks-rival'"),
            "{p}"
        );
        assert_eq!(h.shown("thanks-hash").await["trial"]["status"], "stopped");
        let resp = h
            .action("thanks-rival", "stop", json!({"reason": "make room"}))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = h
            .action("thanks-hash", "resume", json!({"reason": "back"}))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_cohort_override_of_a_unit_already_exposed_marks_it_excluded() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let started = h.create_and_start(HASH).await;
        let trial_id = started["id"].as_i64().unwrap();
        for i in 0..4 {
            let ctx = json!({"targetingKey": format!("member-{i}"), "community": "coop-b"});
            let (_, body) = h.eval(&sdk, "thanks-button", ctx).await;
            assert_eq!(parse(&body)["metadata"]["trialKey"], "thanks-hash", "{body}");
        }
        h.wait_exposed("thanks-hash", 4).await;

        // The developer overrides community coop-b: the override wins...
        let resp = h
            .req(Method::PUT, "/api/v1/flags/thanks-button/cohorts/coop-out", Some(&h.admin))
            .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": "control", "reason": "coop opted out"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let ctx = json!({"targetingKey": "member-1", "community": "coop-b"});
        let (_, body) = h.eval(&sdk, "thanks-button", ctx).await;
        assert_eq!(parse(&body)["variant"], "control", "{body}");
        // ... and member-1, exposed before, leaves the analysis population
        // (once the exposure writer has been by).
        let unit = pseudonymise(&h.server.state.config.study_key, "member-1");
        let deadline = Instant::now() + Duration::from_secs(10);
        let (rows, row) = loop {
            let rows = db.store().export_assignments(trial_id, None, 100).await.unwrap();
            let row = rows.iter().find(|r| r.unit == unit.as_str()).expect("member-1").clone();
            if row.excluded {
                break (rows, row);
            }
            assert!(Instant::now() < deadline, "member-1 still not excluded after 10 s: {row:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(row.excluded_reason.as_deref(), Some("cohort override 'coop-out'"));
        assert_eq!(row.exposed_at, Some(at("2026-06-01T12:00:00Z")));
        assert_eq!(rows.iter().filter(|r| r.excluded).count(), 1, "{rows:?}");
        let arms = h.arms("thanks-hash").await;
        let exposed: i64 = arms.iter().map(|a| a["exposed"].as_i64().unwrap()).sum();
        assert_eq!(exposed, 3, "{arms:?}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_trial_whose_schedule_begins_later_says_so_and_assigns_nobody_yet() {
    both_backends(|db| async move {
        let later = HASH.replace(
            "start = 2026-01-01T00:00:00Z",
            "start = 2026-09-01T00:00:00Z",
        );
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let draft = h
            .post("/api/v1/trials", json!({"source": later, "reason": "plan"}))
            .await;
        assert_eq!(draft.status(), StatusCode::CREATED);
        assert_eq!(h.shown("thanks-hash").await["schedule"]["state"], "draft");
        let resp = h
            .action("thanks-hash", "start", json!({"reason": "ready early"}))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let schedule = h.shown("thanks-hash").await["schedule"].clone();
        assert_eq!(schedule["state"], "waiting", "{schedule}");
        assert_eq!(schedule["start"], "2026-09-01T00:00:00Z", "{schedule}");
        let note = schedule["note"].as_str().unwrap();
        assert!(
            note.contains("starts at 2026-09-01T00:00:00Z") && note.contains("no unit is assigned"),
            "{note}"
        );
        let ctx = json!({"targetingKey": "member-1", "community": "wiki-a"});
        let (_, body) = h.eval(&sdk, "thanks-button", ctx.clone()).await;
        assert!(parse(&body)["metadata"].get("trialKey").is_none(), "{body}");
        clock.set(at("2026-09-01T00:00:00Z"));
        assert_eq!(
            h.shown("thanks-hash").await["schedule"]["state"],
            "assigning"
        );
        let (_, body) = h.eval(&sdk, "thanks-button", ctx).await;
        assert_eq!(
            parse(&body)["metadata"]["trialKey"],
            "thanks-hash",
            "{body}"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_trial_that_can_expose_nobody_is_concluded_only_by_force() {
    both_backends(|db| async move {
        // Started after its schedule ended: nobody can ever be exposed.
        let over = HASH.replace("end = 2027-12-31T00:00:00Z", "end = 2026-05-01T00:00:00Z");
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(&over).await;
        let schedule = h.shown("thanks-hash").await["schedule"].clone();
        assert_eq!(schedule["state"], "ended", "{schedule}");
        assert!(schedule.get("completeAt").is_none(), "{schedule}");
        assert!(
            schedule["completion"]
                .as_str()
                .unwrap()
                .starts_with("no unit can be exposed"),
            "{schedule}"
        );
        let resp = h
            .action("thanks-hash", "conclude", json!({"reason": "oops"}))
            .await;
        let p = problem(resp, StatusCode::CONFLICT).await;
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("cannot be concluded without --force")
                && detail.contains("will never be complete")
                && !detail.contains("Wait"),
            "{p}"
        );
        let resp = h
            .action(
                "thanks-hash",
                "conclude",
                json!({"reason": "started by mistake", "force": true}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let log = h.log("thanks-hash").await;
        assert_eq!(log.last().unwrap().0, "deviation", "{log:?}");
        h.stop().await;
    })
    .await;
}
