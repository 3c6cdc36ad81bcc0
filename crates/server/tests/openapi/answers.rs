//! The management routes' real answers against the document: flags, keys
//! and health, trials and exposures, each area walked through every JSON
//! operation (see [`walk`]), with the cases that change an answer's shape
//! (empty set, deleted flag, cohorts, warnings, kept and dropped overrides,
//! `flagd` export, deviations, revoked keys, a unit in no trial).

use super::walk::Walk;
use super::*;
use commonlab_server::audit::ChangeMeta;

/// A flag set using every part of a flag definition: set metadata, shared
/// evaluators, flag metadata, targeting, object and number variants, a
/// `null` default, and a property a lenient load ignores (a warning).
const SET: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": { "flagSetId": "shapes", "version": 2 },
  "$evaluators": { "coop": { "in": [{ "var": "community" }, ["coop-b"]] } },
  "flags": {
    "new-editor": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "on",
      "metadata": { "owner": "wp3", "beta": true },
      "targeting": { "if": [{ "$ref": "coop" }, "off", null] }
    },
    "layout": {
      "state": "DISABLED",
      "variants": { "grid": { "columns": 3 }, "list": { "columns": 1 } },
      "defaultVariant": null
    },
    "page-size": {
      "state": "ENABLED",
      "variants": { "small": 10, "large": 50.5 },
      "defaultVariant": "large",
      "colour": "red"
    }
  }
}"#;

fn is_flag_route(path: &str) -> bool {
    path.starts_with("/api/v1/flags")
        || ["/api/v1/history", "/api/v1/export", "/api/v1/import"].contains(&path)
}

#[tokio::test]
async fn flag_answers_are_documented() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let w = Walk::new(&h);
        let dev = h.key(Role::Developer).await;
        let (dev, admin) = (Some(dev.as_str()), Some(h.admin.as_str()));
        let get = |path: &'static str, template: &'static str| (Method::GET, path, template);

        // Nothing written yet: revision 0, no flags.
        let list = w.call(get("/api/v1/flags", "/api/v1/flags"), dev, None, StatusCode::OK).await;
        assert_eq!(list, json!({"revision": 0, "flags": []}));
        let export = get("/api/v1/export", "/api/v1/export");
        let v = w.call(export.clone(), dev, None, StatusCode::OK).await;
        assert_eq!(v, json!({"flags": {}}));

        // An import: the ignored property is a warning.
        let import = |query: &'static str| {
            let path = match query {
                "" => "/api/v1/import?reason=first",
                "keep" => "/api/v1/import?reason=again",
                _ => "/api/v1/import?reason=again&replace_overrides=true",
            };
            let req = h
                .req(Method::POST, path, admin)
                .header(header::CONTENT_TYPE, "application/json")
                .body(SET);
            ((Method::POST, path, "/api/v1/import"), req)
        };
        let (op, req) = import("");
        let v = w.send(op, req, StatusCode::OK).await;
        assert_eq!((v["revision"].as_i64(), v["flags"].as_u64()), (Some(1), Some(3)), "{v}");
        assert_eq!(v["warnings"][0]["pointer"], "/flags/page-size/colour", "{v}");

        // A cohort override, kept by the next import, dropped by one that
        // replaces them; then set again.
        let cohort_path = "/api/v1/flags/new-editor/cohorts/coop-pilot";
        let cohort = (Method::PUT, cohort_path, "/api/v1/flags/{key}/cohorts/{name}");
        let body = json!({"attribute": "community", "values": ["coop-b", 7], "variant": "off", "reason": "opt out"});
        let v = w.call(cohort.clone(), dev, Some(body.clone()), StatusCode::OK).await;
        assert_eq!(v["flag"]["cohorts"][0]["values"], json!(["coop-b", 7]), "{v}");
        let (op, req) = import("keep");
        let v = w.send(op, req, StatusCode::OK).await;
        assert_eq!(v["overrides"]["kept"], json!([{"flag": "new-editor", "cohort": "coop-pilot"}]));
        let (op, req) = import("replace");
        let v = w.send(op, req, StatusCode::OK).await;
        assert_eq!(v["overrides"]["dropped"][0]["cohort"], "coop-pilot", "{v}");
        assert!(v["overrides"]["kept"].as_array().unwrap().is_empty(), "{v}");
        w.call(cohort, dev, Some(body), StatusCode::OK).await;

        // Both export formats: cohorts structured, or inlined into targeting.
        let v = w.call(export, dev, None, StatusCode::OK).await;
        assert_eq!(v["metadata"]["version"], 2);
        assert!(v["$evaluators"]["coop"].is_object(), "{v}");
        assert!(v.get("$schema").is_none(), "{v}");
        assert_eq!(v["flags"]["new-editor"]["cohorts"][0]["name"], "coop-pilot");
        assert_eq!(v["flags"]["layout"]["defaultVariant"], Value::Null);
        let flagd = get("/api/v1/export?format=flagd", "/api/v1/export");
        let v = w.call(flagd, dev, None, StatusCode::OK).await;
        assert!(v["flags"]["new-editor"].get("cohorts").is_none(), "{v}");
        assert!(v["flags"]["new-editor"]["targeting"]["if"].is_array(), "{v}");

        // The list and one flag.
        let v = w.call(get("/api/v1/flags", "/api/v1/flags"), dev, None, StatusCode::OK).await;
        let keys: Vec<&str> = v["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["layout", "new-editor", "page-size"]);
        assert_eq!((v["flags"][0]["type"].as_str(), v["flags"][0]["state"].as_str()), (Some("object"), Some("DISABLED")));
        assert_eq!(v["flags"][0]["defaultVariant"], Value::Null);
        let mut wrong = v.clone();
        wrong["flags"][0]["state"] = json!("disabled");
        assert!(w.refuses("FlagList", &wrong));
        let one = get("/api/v1/flags/new-editor", "/api/v1/flags/{key}");
        let v = w.call(one, dev, None, StatusCode::OK).await;
        assert_eq!(v["flag"]["metadata"], json!({"owner": "wp3", "beta": true}));
        let mut wrong = v.clone();
        wrong["flag"]["colour"] = json!("red");
        assert!(w.refuses("StoredFlag", &wrong), "an undocumented property");

        // Create, update (If-Match), state, remove the cohort.
        let researcher = h.key(Role::Researcher).await;
        let res = Some(researcher.as_str());
        let flag = json!({"state": "ENABLED", "variants": {"plain": "Welcome", "warm": "Hello"}, "defaultVariant": "plain"});
        let create = (Method::POST, "/api/v1/flags", "/api/v1/flags");
        let v = w
            .call(create, res, Some(json!({"key": "welcome", "flag": flag, "reason": "new"})), StatusCode::CREATED)
            .await;
        assert!(v["deviations"].as_array().unwrap().is_empty(), "{v}");
        let mut wrong = v.clone();
        wrong.as_object_mut().unwrap().remove("etag");
        assert!(w.refuses("FlagChange", &wrong), "a missing etag");
        let put = (Method::PUT, "/api/v1/flags/welcome", "/api/v1/flags/{key}");
        let req = h
            .req(Method::PUT, put.1, res)
            .header(header::IF_MATCH, v["etag"].as_str().unwrap())
            .json(&json!({"flag": flag, "reason": "same again"}));
        w.send(put, req, StatusCode::OK).await;
        let state = (Method::PUT, "/api/v1/flags/new-editor/state", "/api/v1/flags/{key}/state");
        let v = w.call(state, dev, Some(json!({"state": "DISABLED", "reason": "pause"})), StatusCode::OK).await;
        assert_eq!(v["flag"]["state"], "DISABLED");
        let uncohort = (Method::DELETE, "/api/v1/flags/new-editor/cohorts/coop-pilot?reason=done", "/api/v1/flags/{key}/cohorts/{name}");
        let v = w.call(uncohort, dev, None, StatusCode::OK).await;
        assert!(v["flag"].get("cohorts").is_none(), "{v}");

        // History: of one flag, and of the set (imports name no flag).
        let v = w
            .call(get("/api/v1/flags/new-editor/history", "/api/v1/flags/{key}/history"), dev, None, StatusCode::OK)
            .await;
        let actions: Vec<&str> = v["history"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["cohort", "set-state", "cohort", "cohort"]);
        let v = w.call(get("/api/v1/history", "/api/v1/history"), dev, None, StatusCode::OK).await;
        let imports: Vec<&Value> = v["history"].as_array().unwrap().iter().filter(|r| r["action"] == "import").collect();
        assert_eq!(imports.len(), 3, "{v}");
        assert!(imports.iter().all(|r| r["flag_key"].is_null()), "{v}");

        // Delete: no flag and no ETag any more.
        let delete = (Method::DELETE, "/api/v1/flags/welcome?reason=gone", "/api/v1/flags/{key}");
        let v = w.call(delete, res, None, StatusCode::OK).await;
        assert_eq!((v["flag"].clone(), v["etag"].clone()), (Value::Null, Value::Null), "{v}");

        w.assert_covered(is_flag_route);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn key_and_health_answers_are_documented() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let w = Walk::new(&h);
        let admin = Some(h.admin.as_str());

        let v = w
            .call(
                (Method::GET, "/healthz", "/healthz"),
                None,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(v, json!({"status": "ok"}));
        let v = w
            .call(
                (Method::GET, "/readyz", "/readyz"),
                None,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(v, json!({"status": "ready", "flagSetRevision": 0}));
        let mut wrong = v.clone();
        wrong["status"] = json!("ok");
        assert!(w.refuses("Readiness", &wrong));

        // A key made with a reason (as the CLI does), one through the API.
        let meta = ChangeMeta {
            actor: "cli:ana",
            reason: "the wp4 dashboard",
            at: chrono::Utc::now(),
        };
        let made = commonlab_server::keys::create_key_because(
            &h.server.state.store,
            "dashboard",
            Role::Developer,
            &meta,
        )
        .await
        .unwrap();
        let create = (Method::POST, "/api/v1/keys", "/api/v1/keys");
        let v = w
            .call(
                create,
                admin,
                Some(json!({"name": "ingest", "role": "sdk"})),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(v["role"], "sdk");

        let keys = (Method::GET, "/api/v1/keys", "/api/v1/keys");
        let v = w.call(keys.clone(), admin, None, StatusCode::OK).await;
        let listed = v["keys"].as_array().unwrap();
        assert_eq!(listed.len(), 3, "{v}");
        let dashboard = listed.iter().find(|k| k["id"] == made.id.as_str()).unwrap();
        assert_eq!(dashboard["created_reason"], "the wp4 dashboard");
        assert_eq!(dashboard["revoked_at"], Value::Null);
        let mut wrong = v.clone();
        wrong["keys"][0]["hash_hex"] = json!("00");
        assert!(
            w.refuses("KeyList", &wrong),
            "a hash must never be documented"
        );

        // Revoked, with who and why.
        let path = format!("/api/v1/keys/{}?reason=rotated", made.id);
        let revoke = (Method::DELETE, path.as_str(), "/api/v1/keys/{id}");
        let v = w.call(revoke, admin, None, StatusCode::OK).await;
        assert_eq!(
            (v["revoked_by"].as_str(), v["revoked_reason"].as_str()),
            (Some("key:test-admin"), Some("rotated")),
            "{v}"
        );
        assert!(v["revoked_at"].is_string(), "{v}");
        let v = w.call(keys, admin, None, StatusCode::OK).await;
        let revoked = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == made.id.as_str())
            .unwrap();
        assert!(revoked["revoked_at"].is_string(), "{v}");

        w.assert_covered(|p| p.starts_with("/api/v1/keys") || p == "/healthz" || p == "/readyz");
        h.stop().await;
    })
    .await;
}
