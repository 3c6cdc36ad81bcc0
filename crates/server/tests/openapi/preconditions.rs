//! The answers to a client's preconditions against the document: a stale
//! `If-Match` (412) on every route that takes one, a missing one (428)
//! where it is required, and the conflicts that are not about `If-Match`
//! (409): each status documented for its operation, each body the
//! documented `Problem`.

use super::*;

const HASH: &str = include_str!("../fixtures/trials/hash.toml");

/// An ETag no flag has.
const STALE: &str = "\"f-0000000000000000\"";

#[tokio::test]
async fn precondition_answers_are_documented() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let doc = doc();
        let admin = Some(h.admin.as_str());
        let pf = StatusCode::PRECONDITION_FAILED;
        let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
        let cohort = json!({"attribute": "community", "values": ["a"], "variant": "on", "reason": "pilot"});
        let put = |path: &str| h.req(Method::PUT, path, admin);
        let delete = |path: &str| h.req(Method::DELETE, path, admin);

        // Without If-Match, a flag's definition is not replaced: 428.
        let update = (Method::PUT, "/api/v1/flags/new-editor", "/api/v1/flags/{key}");
        let v = h
            .conforms(&doc, update.clone(), put(update.1).json(&json!({"flag": flag, "reason": "r"})), StatusCode::PRECONDITION_REQUIRED)
            .await;
        assert_eq!(v["type"], "https://commonlab.dev/problems/precondition-required", "{v}");

        // A stale If-Match on every change of one flag: 412, with the set's
        // current revision.
        let cases = [
            (update.clone(), put(update.1).json(&json!({"flag": flag, "reason": "r"}))),
            (
                (Method::DELETE, "/api/v1/flags/new-editor?reason=r", "/api/v1/flags/{key}"),
                delete("/api/v1/flags/new-editor?reason=r"),
            ),
            (
                (Method::PUT, "/api/v1/flags/new-editor/state", "/api/v1/flags/{key}/state"),
                put("/api/v1/flags/new-editor/state").json(&json!({"state": "DISABLED", "reason": "r"})),
            ),
            (
                (Method::PUT, "/api/v1/flags/new-editor/cohorts/pilot", "/api/v1/flags/{key}/cohorts/{name}"),
                put("/api/v1/flags/new-editor/cohorts/pilot").json(&cohort),
            ),
            (
                (Method::DELETE, "/api/v1/flags/new-editor/cohorts/pilot?reason=r", "/api/v1/flags/{key}/cohorts/{name}"),
                delete("/api/v1/flags/new-editor/cohorts/pilot?reason=r"),
            ),
        ];
        for (op, req) in cases {
            let what = format!("{} {}", op.0, op.1);
            let v = h.conforms(&doc, op, req.header(header::IF_MATCH, STALE), pf).await;
            assert_eq!(v["type"], "https://commonlab.dev/problems/stale-revision", "{what}: {v}");
            assert_eq!(v["currentRevision"], 1, "{what}: {v}");
        }

        // An import against a revision that is not the head: 412.
        let import = (Method::POST, "/api/v1/import?reason=r", "/api/v1/import");
        let export: Value = h.req(Method::GET, "/api/v1/export", admin).send().await.unwrap().json().await.unwrap();
        let req = h
            .req(Method::POST, import.1, admin)
            .header(header::IF_MATCH, "\"rev-7\"")
            .json(&export);
        let v = h.conforms(&doc, import, req, pf).await;
        assert_eq!(v["currentRevision"], 1, "{v}");

        // Nothing was changed by any of them.
        let after: Value = h.req(Method::GET, "/api/v1/export", admin).send().await.unwrap().json().await.unwrap();
        assert_eq!(after, export);

        // A draft trial edited against an older file: 412; without
        // If-Match: 428.
        let made = h
            .req(Method::POST, "/api/v1/trials", admin)
            .json(&json!({"source": HASH, "reason": "pilot"}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), StatusCode::CREATED);
        let trial = (Method::PUT, "/api/v1/trials/thanks-hash", "/api/v1/trials/{key}");
        let body = json!({"source": HASH, "reason": "edit"});
        let req = put(trial.1).header(header::IF_MATCH, "\"0000\"").json(&body);
        h.conforms(&doc, trial.clone(), req, pf).await;
        h.conforms(&doc, trial, put("/api/v1/trials/thanks-hash").json(&body), StatusCode::PRECONDITION_REQUIRED)
            .await;

        // A second active key of one name: 409.
        let keys = (Method::POST, "/api/v1/keys", "/api/v1/keys");
        let body = json!({"name": "twice", "role": "sdk"});
        let first = h.req(Method::POST, keys.1, admin).json(&body).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let again = h.req(Method::POST, keys.1, admin).json(&body);
        h.conforms(&doc, keys, again, StatusCode::CONFLICT).await;

        // The flag changes that take If-Match document 412, and none
        // documents a 409 it cannot answer (only a create can conflict).
        for (path, item) in doc["paths"].as_object().unwrap() {
            let is_flag = path.starts_with("/api/v1/flags/") || path == "/api/v1/import";
            for (method, op) in item.as_object().unwrap() {
                let takes_if_match = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "If-Match"));
                assert_eq!(takes_if_match, op["responses"]["412"].is_object(), "{method} {path}");
                if is_flag {
                    assert!(op["responses"].get("409").is_none(), "{method} {path}");
                }
            }
        }
        h.stop().await;
    })
    .await;
}
