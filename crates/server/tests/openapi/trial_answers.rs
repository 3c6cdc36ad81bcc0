//! The trial routes' and explicit exposures' real answers against the
//! document, through a trial's whole life: validated, created, edited as a
//! draft, started, exposed, amended, its flag changed (a deviation),
//! stopped, concluded by force and archived; and a stepped wedge's draft.

use super::walk::Walk;
use super::*;

const HASH: &str = include_str!("../fixtures/trials/hash.toml");
const WEDGE: &str = include_str!("../fixtures/trials/wedge.toml");

fn is_trial_route(path: &str) -> bool {
    path.starts_with("/api/v1/trials") || path == "/api/v1/exposures"
}

#[tokio::test]
async fn trial_and_exposure_answers_are_documented() {
    both_backends(|db| async move {
        let at = chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z").unwrap();
        let clock = Clock::fixed(at.with_timezone(&chrono::Utc));
        let h = Harness::on(&db).clock(clock.clone()).start().await;
        h.import_fixture().await;
        let w = Walk::new(&h);
        let admin = Some(h.admin.as_str());
        let sdk = h.key(Role::Sdk).await;
        let sdk = Some(sdk.as_str());
        let shown = (
            Method::GET,
            "/api/v1/trials/thanks-hash",
            "/api/v1/trials/{key}",
        );
        let list = |path| (Method::GET, path, "/api/v1/trials");
        let action = |path| (Method::POST, path, "/api/v1/trials/{key}/{action}");

        // Validated, then created: a draft without a seed.
        let validate = (
            Method::POST,
            "/api/v1/trials/validate",
            "/api/v1/trials/validate",
        );
        let v = w
            .call(
                validate,
                admin,
                Some(json!({"source": HASH})),
                StatusCode::OK,
            )
            .await;
        let hash = v["specHash"].as_str().unwrap().to_string();
        assert_eq!(
            (v["valid"].as_bool(), v["key"].as_str()),
            (Some(true), Some("thanks-hash"))
        );
        let create = (Method::POST, "/api/v1/trials", "/api/v1/trials");
        let v = w
            .call(
                create,
                admin,
                Some(json!({"source": HASH, "reason": "pilot"})),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(
            (v["status"].as_str(), v["seed"].clone()),
            (Some("draft"), Value::Null)
        );
        assert_eq!(v["spec_hash"], hash.as_str());
        let mut wrong = v.clone();
        wrong["status"] = json!("paused");
        assert!(w.refuses("TrialRecord", &wrong));
        let v = w
            .call(list("/api/v1/trials"), admin, None, StatusCode::OK)
            .await;
        assert_eq!(v["trials"][0]["startedAt"], Value::Null, "{v}");
        let v = w.call(shown.clone(), admin, None, StatusCode::OK).await;
        assert_eq!(v["schedule"]["state"], "draft", "{v}");
        assert!(v["schedule"].get("completeAt").is_none(), "{v}");

        // Edited as a draft (If-Match: the trial's ETag).
        let edited = HASH.replace("mde = 0.05", "mde = 0.04");
        assert_ne!(edited, HASH);
        let put = (
            Method::PUT,
            "/api/v1/trials/thanks-hash",
            "/api/v1/trials/{key}",
        );
        let req = h
            .req(Method::PUT, put.1, admin)
            .header(header::IF_MATCH, format!("\"{hash}\""))
            .json(&json!({"source": edited, "reason": "title"}));
        let v = w.send(put, req, StatusCode::OK).await;
        assert_ne!(v["spec_hash"], hash.as_str());

        // Started; an exposure in the trial, and one of a flag no trial runs.
        let v = w
            .call(
                action("/api/v1/trials/thanks-hash/start"),
                admin,
                Some(json!({"reason": "go"})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["status"], "running");
        assert!(v["seed"].is_i64() && v["started_at"].is_string(), "{v}");
        let exposure = (Method::POST, "/api/v1/exposures", "/api/v1/exposures");
        let context = json!({"targetingKey": "member-1", "community": "wiki-a"});
        let body = json!({"flag": "thanks-button", "context": context});
        let v = w
            .call(exposure.clone(), sdk, Some(body), StatusCode::OK)
            .await;
        assert_eq!(
            (v["trial"].as_str(), v["excluded"].as_bool()),
            (Some("thanks-hash"), Some(false)),
            "{v}"
        );
        assert!(
            ["control", "small", "big"].contains(&v["arm"].as_str().unwrap()),
            "{v}"
        );
        let v = w
            .call(
                exposure,
                sdk,
                Some(json!({"flag": "new-editor", "context": context})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(v, json!({"trial": null}));
        assert!(w.refuses("ExposureOutcome", &json!({"trial": null, "arm": "big"})));
        let v = w.call(shown.clone(), admin, None, StatusCode::OK).await;
        assert_eq!(v["schedule"]["state"], "assigning", "{v}");
        assert!(v["schedule"]["completion"].is_string(), "{v}");

        // Amended: the locked field it changed.
        let amend = (
            Method::POST,
            "/api/v1/trials/thanks-hash/amend",
            "/api/v1/trials/{key}/amend",
        );
        let amended = edited.replace("alpha = 0.05", "alpha = 0.01");
        let v = w
            .call(
                amend,
                admin,
                Some(json!({"source": amended, "reason": "stricter"})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["lockedFieldsChanged"], json!(["analysis.alpha"]), "{v}");
        assert_eq!(v["trial"]["version"], 2);

        // A change to the trial's flag while it runs: a deviation.
        let state = (
            Method::PUT,
            "/api/v1/flags/thanks-button/state",
            "/api/v1/flags/{key}/state",
        );
        let v = w
            .call(
                state,
                admin,
                Some(json!({"state": "DISABLED", "reason": "pause"})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["deviations"], json!(["thanks-hash"]), "{v}");

        // Stopped, concluded before its data are complete, archived.
        let v = w
            .call(
                action("/api/v1/trials/thanks-hash/stop"),
                admin,
                Some(json!({"reason": "pause"})),
                StatusCode::OK,
            )
            .await;
        assert!(v["stopped_at"].is_string(), "{v}");
        let v = w
            .call(
                list("/api/v1/trials?status=stopped"),
                admin,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["trials"].as_array().unwrap().len(), 1, "{v}");
        let conclude = json!({"reason": "the platform closes", "force": true});
        let v = w
            .call(
                action("/api/v1/trials/thanks-hash/conclude"),
                admin,
                Some(conclude),
                StatusCode::OK,
            )
            .await;
        assert!(v["concluded_at"].is_string(), "{v}");
        let v = w
            .call(
                action("/api/v1/trials/thanks-hash/archive"),
                admin,
                Some(json!({"reason": "done"})),
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["status"], "archived");
        let v = w.call(shown, admin, None, StatusCode::OK).await;
        assert_eq!(v["schedule"]["state"], "not running", "{v}");
        let actions: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.iter().filter(|a| **a == "deviation").count() == 2,
            "{actions:?}"
        );
        let mut wrong = v.clone();
        wrong["events"][0]["action"] = json!("ship");
        assert!(w.refuses("TrialOverview", &wrong));

        // A stepped wedge's draft shows its steps.
        let create = (Method::POST, "/api/v1/trials", "/api/v1/trials");
        let body = json!({"source": WEDGE, "reason": "plan"});
        w.call(create, admin, Some(body), StatusCode::CREATED).await;
        let wedge = (
            Method::GET,
            "/api/v1/trials/editor-wedge",
            "/api/v1/trials/{key}",
        );
        let v = w.call(wedge, admin, None, StatusCode::OK).await;
        assert_eq!(v["schedule"]["steps"].as_array().unwrap().len(), 4, "{v}");

        // The analysis (no data yet) belongs to the area too; its shape is
        // checked in depth by the design tests.
        let analysis = (
            Method::GET,
            "/api/v1/trials/thanks-hash/analysis",
            "/api/v1/trials/{key}/analysis",
        );
        w.call(analysis, admin, None, StatusCode::OK).await;
        let report = (
            Method::GET,
            "/api/v1/trials/thanks-hash/report",
            "/api/v1/trials/{key}/report",
        );
        w.call(report, admin, None, StatusCode::OK).await;

        w.assert_covered(is_trial_route);
        h.stop().await;
    })
    .await;
}
