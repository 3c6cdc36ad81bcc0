//! The flag management API end to end: creating, updating and refusing bad
//! changes, cohorts, state, history and export, and two servers on one
//! database.

use super::*;

/// method, path, If-Match, body, content type, expected status, expected pointer prefix.
type BadCase<'a> = (
    Method,
    String,
    Option<&'a str>,
    String,
    &'a str,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn managing_flags_and_refusing_bad_changes() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let res = h.key(Role::Researcher).await;
        let res = res.as_str();
        let export = |h: &Harness| {
            h.req(Method::GET, "/api/v1/export", Some(&h.admin)).send()
        };
        let before: Value = export(&h).await.unwrap().json().await.unwrap();

        // Create.
        let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
        let resp = h.req(Method::POST, "/api/v1/flags", Some(res))
            .json(&json!({"key": "value-dashboard", "flag": flag, "reason": "new trial"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        let etag = created["etag"].as_str().unwrap().to_string();

        // Create again: 409.
        let resp = h.req(Method::POST, "/api/v1/flags", Some(res))
            .json(&json!({"key": "value-dashboard", "flag": flag, "reason": "again"}))
            .send().await.unwrap();
        problem(resp, StatusCode::CONFLICT).await;

        // GET gives the same ETag.
        let resp = h.req(Method::GET, "/api/v1/flags/value-dashboard", Some(res)).send().await.unwrap();
        assert_eq!(resp.headers()[header::ETAG].to_str().unwrap(), etag);

        // Update without If-Match: 428; with a stale one: 412; with the right one: 200.
        let updated = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        problem(resp, StatusCode::PRECONDITION_REQUIRED).await;
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, "\"f-0000000000000000\"")
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        let p = problem(resp, StatusCode::PRECONDITION_FAILED).await;
        assert!(p["currentRevision"].as_i64().is_some());
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, &etag)
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let new_etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_ne!(new_etag, etag);
        // The old ETag is now stale.
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, &etag)
            .json(&json!({"flag": flag, "reason": "lost update"})).send().await.unwrap();
        problem(resp, StatusCode::PRECONDITION_FAILED).await;

        let after_good: Value = export(&h).await.unwrap().json().await.unwrap();
        assert_ne!(after_good, before);

        // Bad changes: each refused with a problem naming the field, nothing stored.
        let bad_cases: Vec<BadCase> = vec![
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "broken", "flag": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"no_such_op": [1]}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/broken/targeting"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "mixed", "flag": {"state": "ENABLED", "variants": {"a": 1, "b": "two"}, "defaultVariant": "a"}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/mixed"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "nodefault", "flag": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "zzz"}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/nodefault"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {"state": "ON", "variants": {"a": 1}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/x/state"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {"state": "ENABLED", "variants": {"a": 1}}, "reason": "  "}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/reason"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {}, "reason": "r", "extra": 1}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, ""),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": 5, "flag": {}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/key"),
            (Method::POST, "/api/v1/flags".into(), None,
             "{\"key\": \"x\",".into(), "application/json", StatusCode::BAD_REQUEST, ""),
            (Method::POST, "/api/v1/flags".into(), None,
             "key=x".into(), "application/x-www-form-urlencoded", StatusCode::UNSUPPORTED_MEDIA_TYPE, ""),
            (Method::PUT, "/api/v1/flags/value-dashboard/state".into(), None,
             json!({"state": "MAYBE", "reason": "r"}).to_string(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/state"),
            (Method::PUT, "/api/v1/flags/no-such/state".into(), None,
             json!({"state": "ENABLED", "reason": "r"}).to_string(), "application/json", StatusCode::NOT_FOUND, ""),
            (Method::PUT, "/api/v1/flags/value-dashboard/cohorts/pilot".into(), None,
             json!({"attribute": "community", "values": ["a"], "variant": "nope", "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/value-dashboard/cohorts"),
            (Method::PUT, "/api/v1/flags/value-dashboard".into(), Some(new_etag.as_str()),
             json!({"flag": {"state": "ENABLED", "variants": {"on": "yes"}, "defaultVariant": "on", "targeting": {"fractional": "bad"}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/value-dashboard/targeting"),
            (Method::POST, "/api/v1/import?reason=r".into(), None,
             "{\"flags\": {\n  \"a\": {\"state\": \"ENABLED\",, }}}".into(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, ""),
            (Method::GET, "/api/v1/history?limit=lots".into(), None, String::new(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/query"),
        ];
        for (method, path, if_match, body, ct, status, pointer) in bad_cases {
            let mut req = h.req(method.clone(), &path, Some(res)).header(header::CONTENT_TYPE, ct);
            if let Some(tag) = if_match {
                req = req.header(header::IF_MATCH, tag);
            }
            if !body.is_empty() {
                req = req.body(body.clone());
            }
            let resp = req.send().await.unwrap();
            let got = resp.status();
            assert_eq!(got, status, "{method} {path} {body}");
            let p = problem(resp, status).await;
            if !pointer.is_empty() {
                let pointers: Vec<&str> = p["errors"].as_array().map(|a| a.iter().filter_map(|e| e["pointer"].as_str()).collect()).unwrap_or_default();
                assert!(pointers.iter().any(|ptr| ptr.starts_with(pointer)), "{path} {body}: {p}");
            }
        }
        let after_bad: Value = export(&h).await.unwrap().json().await.unwrap();
        assert_eq!(after_bad, after_good, "refused changes must leave the flag set unchanged");

        // Unknown routes and methods are problems too.
        let resp = h.req(Method::GET, "/nowhere", None).send().await.unwrap();
        problem(resp, StatusCode::NOT_FOUND).await;
        let resp = h.req(Method::PATCH, "/api/v1/flags", Some(res)).send().await.unwrap();
        problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cohorts_state_history_and_export() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let dev = h.key(Role::Developer).await;
        let sdk = h.key(Role::Sdk).await;

        // A cohort override: community coop-b gets the "off" variant.
        let resp = h.req(Method::PUT, "/api/v1/flags/new-editor/cohorts/coop-pilot", Some(&dev))
            .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": "off", "reason": "coop asked to opt out"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
        let (_, body) = h.eval(&sdk, "new-editor", json!({"targetingKey": "m", "community": "coop-b"})).await;
        let v = parse(&body);
        assert_eq!((v["value"].as_bool(), v["reason"].as_str()), (Some(false), Some("TARGETING_MATCH")));
        let (_, body) = h.eval(&sdk, "new-editor", json!({"targetingKey": "m", "community": "wiki-a"})).await;
        assert_eq!(parse(&body)["value"], true);

        // flagd export inlines the override into targeting; commonlab keeps it structured.
        let flagd: Value = h.req(Method::GET, "/api/v1/export?format=flagd", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert!(flagd["flags"]["new-editor"].get("cohorts").is_none());
        assert!(flagd["flags"]["new-editor"]["targeting"].is_object());
        let ours: Value = h.req(Method::GET, "/api/v1/export", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert_eq!(ours["flags"]["new-editor"]["cohorts"][0]["name"], "coop-pilot");

        // Disable, then look at the audit log.
        let resp = h.req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "assembly pause"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, body) = h.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(parse(&body)["reason"], "DISABLED");

        let hist: Value = h.req(Method::GET, "/api/v1/flags/new-editor/history", Some(&dev)).send().await.unwrap().json().await.unwrap();
        let items = hist["history"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{hist}");
        assert_eq!(items[0]["action"], "set-state");
        assert_eq!(items[0]["reason"], "assembly pause");
        assert!(items[0]["actor"].as_str().unwrap().starts_with("key:developer-"));
        assert_eq!(items[1]["action"], "cohort");
        let all: Value = h.req(Method::GET, "/api/v1/history?limit=1", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert_eq!(all["history"].as_array().unwrap().len(), 1);

        // Remove the cohort.
        let resp = h.req(Method::DELETE, "/api/v1/flags/new-editor/cohorts/coop-pilot?reason=done", Some(&dev)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = h.req(Method::DELETE, "/api/v1/flags/new-editor/cohorts/coop-pilot?reason=again", Some(&dev)).send().await.unwrap();
        problem(resp, StatusCode::NOT_FOUND).await;
        h.stop().await;
    })
    .await;
}

/// Two servers on one database: a change made through one is served by the
/// other within a second (it polls the head revision).
#[tokio::test]
async fn two_servers_serve_a_change_within_a_second() {
    both_backends(|db| async move {
        let a = Harness::start(&db).await;
        let b = Harness::on(&db).admin(&a.admin).start().await;
        a.import_fixture().await;
        let sdk = a.key(Role::Sdk).await;
        // b learns about the key and the flags by polling.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let (s, body) = b.eval(&sdk, "new-editor", json!({})).await;
            if s == StatusCode::OK && parse(&body)["value"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server b did not see the import within 1 s: {s} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dev = a.key(Role::Developer).await;
        let resp = a
            .req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "replica test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let changed_at = Instant::now();
        loop {
            let (_, body) = b.eval(&sdk, "new-editor", json!({})).await;
            if parse(&body)["reason"] == "DISABLED" {
                break;
            }
            assert!(
                changed_at.elapsed() < Duration::from_secs(1),
                "server b still serves the old flag after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// Concurrent writers through two servers: no update is lost.
#[tokio::test]
async fn concurrent_changes_through_two_servers_are_all_kept() {
    both_backends(|db| async move {
        let a = Harness::start(&db).await;
        let b = Harness::on(&db).admin(&a.admin).start().await;
        a.import_fixture().await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (base, key) = if i % 2 == 0 {
                (a.base.clone(), a.admin.clone())
            } else {
                (b.base.clone(), a.admin.clone())
            };
            tasks.push(tokio::spawn(async move {
                let flag =
                    json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
                reqwest::Client::new()
                    .post(format!("{base}/api/v1/flags"))
                    .bearer_auth(key)
                    .json(
                        &json!({"key": format!("concurrent-{i}"), "flag": flag, "reason": "race"}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::CREATED);
        }
        let ours: Value = a
            .req(Method::GET, "/api/v1/export", Some(&a.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for i in 0..6 {
            assert!(
                ours["flags"].get(format!("concurrent-{i}")).is_some(),
                "concurrent-{i} lost"
            );
        }
        a.stop().await;
        b.stop().await;
    })
    .await;
}
