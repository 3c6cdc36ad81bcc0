//! Flag-set hardening end to end: expensive sets refused at the API, a
//! stored revision that does not compile never served (and reported), keys,
//! imports that keep overrides, trial-controlled flags, contention.

use super::*;
use commonlab_store::NewRevision;

mod management;

/// `eN = {"and": [{"$ref": "eN-1"}, {"$ref": "eN-1"}]}`: over the cost
/// limit from e14 on.
pub(crate) fn ref_bomb(levels: usize) -> Value {
    let mut evaluators = serde_json::Map::new();
    evaluators.insert("e0".into(), json!({"==": [{"var": "tier"}, "gold"]}));
    for n in 1..=levels {
        let prev = format!("e{}", n - 1);
        evaluators.insert(
            format!("e{n}"),
            json!({"and": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    json!({
        "flags": {"bomb": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"if": [{"$ref": format!("e{levels}")}, "on", "off"]}}},
        "$evaluators": evaluators
    })
}

impl Harness {
    async fn import_json(&self, doc: &str, query: &str) -> reqwest::Response {
        self.req(
            Method::POST,
            &format!("/api/v1/import?reason=test{query}"),
            Some(&self.admin),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(doc.to_string())
        .send()
        .await
        .unwrap()
    }

    /// `/readyz` (checked against the OpenAPI document).
    async fn readyz(&self) -> Value {
        let resp = self.req(Method::GET, "/readyz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.json().await.unwrap();
        crate::events::openapi::assert_documented(&Method::GET, "/readyz", StatusCode::OK, &body);
        body
    }
}

#[tokio::test]
async fn an_over_limit_set_is_refused_naming_the_evaluator() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let bomb = ref_bomb(16).to_string();
        for query in ["", "&strict=true"] {
            let resp = h.import_json(&bomb, query).await;
            let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(p["errors"][0]["pointer"], "/$evaluators/e14", "{p}");
            assert!(
                p["detail"].as_str().unwrap().contains("evaluator \"e14\""),
                "{p}"
            );
            assert!(p["errors"][0]["line"].as_u64().is_some(), "{p}");
        }
        // Nothing was stored.
        let v: Value = h
            .req(Method::GET, "/api/v1/history", Some(&h.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["history"].as_array().unwrap().len(), 1, "{v}");

        // A flag whose own targeting is too expensive.
        let data: Vec<u32> = (0..1000).collect();
        let flag = json!({"state": "ENABLED", "variants": {"true": 1, "false": 0},
            "defaultVariant": "false",
            "targeting": {"some": [data, {"some": [data, {"==": [{"var": ""}, -1]}]}]}});
        let resp = h
            .req(Method::POST, "/api/v1/flags", Some(&h.admin))
            .json(&json!({"key": "loops", "flag": flag, "reason": "test"}))
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/flags/loops/targeting", "{p}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_stored_revision_that_does_not_compile_is_not_served_and_is_reported() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        // A revision stored before the limits existed (or by hand).
        let bomb = ref_bomb(16).to_string();
        let store = &h.server.state.store;
        let stored = store
            .append_flag_set_revision(
                "default",
                1,
                &NewRevision {
                    document: &bomb,
                    actor: "old-version",
                    action: "import",
                    flag_key: None,
                    reason: "stored before the limit",
                    at: chrono::Utc::now(),
                },
            )
            .await
            .unwrap();
        assert_eq!(stored.revision, 2);
        commonlab_server::sync::refresh_flags(&h.server.state)
            .await
            .unwrap();
        let ready = h.readyz().await;
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["flagSetRevision"], 1, "{ready}");
        assert_eq!(ready["flagSetProblem"]["revision"], 2, "{ready}");
        let error = ready["flagSetProblem"]["error"].as_str().unwrap();
        assert!(error.contains("/$evaluators/e14"), "{ready}");
        let (status, body) = h.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = h.eval(&sdk, "bomb", json!({"tier": "gold"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A replica started on that database serves revision 1 as well.
        let other = Harness::on(&db).admin(&h.admin).start().await;
        let ready = other.readyz().await;
        assert_eq!(ready["flagSetRevision"], 1, "{ready}");
        assert_eq!(ready["flagSetProblem"]["revision"], 2, "{ready}");
        let (status, _) = other.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(status, StatusCode::OK);

        // A good revision replaces it, and the problem is gone.
        h.import_fixture().await;
        commonlab_server::sync::refresh_flags(&other.server.state)
            .await
            .unwrap();
        let ready = other.readyz().await;
        assert_eq!(ready["flagSetRevision"], 3, "{ready}");
        assert!(ready.get("flagSetProblem").is_none(), "{ready}");
        other.stop().await;
        h.stop().await;
    })
    .await;
}

/// Issue #10, item 11: a rule on `$flagd.timestamp` changes its answer
/// with the clock, so the bulk ETag does not outlive the second.
#[tokio::test]
async fn bulk_etag_expires_when_a_timestamp_rule_changes_its_answer() {
    both_backends(|db| async move {
        let launch = 1_900_000_000i64;
        let clock = Clock::fixed(chrono::DateTime::from_timestamp(launch - 10, 0).unwrap());
        let h = Harness::on(&db).clock(clock.clone()).start().await;
        let doc = json!({"flags": {"launch": {"state": "ENABLED",
            "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, launch]}, "on", "off"]}}}});
        let resp = h.import_json(&doc.to_string(), "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let sdk = h.key(Role::Sdk).await;
        let bulk = |tag: Option<String>| {
            let mut r = h
                .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
                .json(&json!({"context": {}}));
            if let Some(t) = tag {
                r = r.header(header::IF_NONE_MATCH, t);
            }
            r.send()
        };
        let resp = bulk(None).await.unwrap();
        let before = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["flags"][0]["variant"], "off");
        let resp = bulk(Some(before.clone())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        clock.set(chrono::DateTime::from_timestamp(launch, 0).unwrap());
        let resp = bulk(Some(before)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["flags"][0]["variant"], "on");
        h.stop().await;
    })
    .await;
}

/// Issue #10, item 18: keys of new flags are identifiers.
#[tokio::test]
async fn new_flag_keys_are_identifiers() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let flag = json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
        for bad in ["../../etc/passwd", "has space", "..", "caf\u{e9}"] {
            let resp = h
                .req(Method::POST, "/api/v1/flags", Some(&h.admin))
                .json(&json!({"key": bad, "flag": flag, "reason": "test"}))
                .send()
                .await
                .unwrap();
            let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(p["errors"][0]["pointer"], "/key", "{bad}: {p}");
        }
        let resp = h
            .req(Method::POST, "/api/v1/flags", Some(&h.admin))
            .json(&json!({"key": "new_editor.v2", "flag": flag, "reason": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);

        // An import may not add one either, and says where it is.
        let mut doc: Value = serde_json::from_str(FLAGS).unwrap();
        doc["flags"]["bad key"] = flag.clone();
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let resp = h.import_json(&text, "").await;
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/flags/bad key", "{p}");
        let line = p["errors"][0]["line"].as_u64().unwrap() as usize;
        assert!(
            text.lines().nth(line - 1).unwrap().contains("\"bad key\""),
            "{p}"
        );

        // A flag stored before the rule keeps working: it can be exported,
        // re-imported, changed and deleted.
        let store = &h.server.state.store;
        let (rev, mut current) = commonlab_server::service::head(store, "default")
            .await
            .unwrap();
        current["flags"]["legacy key"] = flag.clone();
        store
            .append_flag_set_revision(
                "default",
                rev,
                &NewRevision {
                    document: &current.to_string(),
                    actor: "old-version",
                    action: "import",
                    flag_key: None,
                    reason: "stored before the rule",
                    at: chrono::Utc::now(),
                },
            )
            .await
            .unwrap();
        let resp = h.import_json(&current.to_string(), "").await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        let resp = h
            .req(
                Method::PUT,
                "/api/v1/flags/legacy%20key/state",
                Some(&h.admin),
            )
            .json(&json!({"state": "DISABLED", "reason": "test"}))
            .send()
            .await
            .unwrap();
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

/// Issue #10, item 31: an import keeps the cohort overrides of flags still
/// in the file and says which it kept and which it dropped.
#[tokio::test]
async fn an_import_keeps_cohort_overrides_and_reports_them() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let dev = h.key(Role::Developer).await;
        for (flag, name, variant) in [
            ("welcome-text", "coop-plain", "plain"),
            ("thanks-button", "opt-out", "control"),
            ("page-size", "big-wiki", "large"),
        ] {
            let resp = h
                .req(
                    Method::PUT,
                    &format!("/api/v1/flags/{flag}/cohorts/{name}"),
                    Some(&dev),
                )
                .json(&json!({"attribute": "community", "values": ["coop-b"],
                    "variant": variant, "reason": "test"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        // The researcher's new file: thanks-button gone, page-size reworked.
        let mut doc: Value = serde_json::from_str(FLAGS).unwrap();
        let flags = doc["flags"].as_object_mut().unwrap();
        flags.shift_remove("thanks-button");
        flags["page-size"] = json!({"state": "ENABLED",
            "variants": {"small": 10, "huge": 100}, "defaultVariant": "small"});
        let resp = h.import_json(&doc.to_string(), "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let out: Value = resp.json().await.unwrap();
        assert_eq!(
            out["overrides"]["kept"],
            json!([{"flag": "welcome-text", "cohort": "coop-plain"}]),
            "{out}"
        );
        let dropped = out["overrides"]["dropped"].as_array().unwrap();
        let names: Vec<&str> = dropped
            .iter()
            .map(|d| d["flag"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["page-size", "thanks-button"], "{out}");
        assert!(dropped
            .iter()
            .all(|d| d["reason"].as_str().is_some_and(|r| !r.is_empty())));

        let get = |flag: &'static str| {
            let h = &h;
            async move {
                let v: Value = h
                    .req(
                        Method::GET,
                        &format!("/api/v1/flags/{flag}"),
                        Some(&h.admin),
                    )
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["flag"].clone()
            }
        };
        assert_eq!(
            get("welcome-text").await["cohorts"][0]["name"],
            "coop-plain"
        );
        assert!(get("page-size").await.get("cohorts").is_none());
        let sdk = h.key(Role::Sdk).await;
        let (_, body) = h
            .eval(&sdk, "welcome-text", json!({"community": "coop-b"}))
            .await;
        assert_eq!(parse(&body)["variant"], "plain", "{body}");

        // Asked to, the file's overrides (none) replace them.
        let resp = h
            .import_json(&doc.to_string(), "&replace_overrides=true")
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let out: Value = resp.json().await.unwrap();
        assert_eq!(out["overrides"]["kept"], json!([]), "{out}");
        assert_eq!(
            out["overrides"]["dropped"][0]["cohort"], "coop-plain",
            "{out}"
        );
        assert!(get("welcome-text").await.get("cohorts").is_none());
        h.stop().await;
    })
    .await;
}

/// Issue #10, item 20: 30 concurrent cohort updates without If-Match, on
/// two replicas: every one is kept, none answered 503.
#[tokio::test]
async fn thirty_concurrent_cohort_updates_all_succeed() {
    both_backends(|db| async move {
        let a = Harness::start(&db).await;
        let b = Harness::on(&db).admin(&a.admin).start().await;
        a.import_fixture().await;
        let dev = a.key(Role::Developer).await;
        commonlab_server::sync::refresh_keys(&b.server.state)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..30 {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let dev = dev.clone();
            tasks.push(tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .put(format!("{base}/api/v1/flags/welcome-text/cohorts/c{i}"))
                    .bearer_auth(dev)
                    .json(
                        &json!({"attribute": "community", "values": [format!("wiki-{i}")],
                        "variant": "warm", "reason": "contention"}),
                    )
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                (status, resp.text().await.unwrap())
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let v: Value = a
            .req(Method::GET, "/api/v1/flags/welcome-text", Some(&a.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["flag"]["cohorts"].as_array().unwrap().len(), 30, "{v}");
        assert_eq!(v["revision"], 31);
        a.stop().await;
        b.stop().await;
    })
    .await;
}
