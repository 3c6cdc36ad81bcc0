//! OFREP evaluation end to end: single flags, bulk with ETags, and OFREP's
//! own error bodies.

use super::*;

#[tokio::test]
async fn ofrep_single_flag_evaluation() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;

        let (s, body) = h
            .eval(&sdk, "new-editor", json!({"targetingKey": "m1"}))
            .await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["key"], "new-editor");
        assert_eq!(v["value"], true);
        assert_eq!(v["variant"], "on");
        assert_eq!(v["reason"], "STATIC");
        assert_eq!(v["metadata"]["owner"], "wp3");
        assert_eq!(v["metadata"]["flagSetId"], "server-tests");

        let (_, body) = h
            .eval(
                &sdk,
                "welcome-text",
                json!({"targetingKey": "m1", "community": "coop-b"}),
            )
            .await;
        let v = parse(&body);
        assert_eq!(
            (v["value"].as_str(), v["reason"].as_str()),
            (Some("Welcome, neighbour"), Some("TARGETING_MATCH"))
        );
        let (_, body) = h
            .eval(
                &sdk,
                "welcome-text",
                json!({"targetingKey": "m1", "community": "other"}),
            )
            .await;
        let v = parse(&body);
        assert_eq!(
            (v["value"].as_str(), v["reason"].as_str()),
            (Some("Welcome"), Some("DEFAULT"))
        );

        // Floats stay floats on the wire, integers stay integers.
        let (_, body) = h.eval(&sdk, "reward-weight", json!({})).await;
        assert!(body.contains("\"value\":0.0"), "{body}");
        let (_, body) = h.eval(&sdk, "page-size", json!({})).await;
        assert!(body.contains("\"value\":50,"), "{body}");

        // Splits need a targeting key.
        let (s, body) = h
            .eval(&sdk, "thanks-button", json!({"targetingKey": "m7"}))
            .await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["reason"], "SPLIT");
        assert!(["none", "heart", "banner"].contains(&v["value"].as_str().unwrap()));
        // No targetingKey to split on: flagd's answer, the default variant.
        let (s, body) = h
            .eval(&sdk, "thanks-button", json!({"community": "wiki-a"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v = parse(&body);
        assert_eq!(v["reason"], "DEFAULT");
        assert_eq!(v["variant"], "control");
        assert_eq!(v["value"], "none");
        assert_eq!(v["key"], "thanks-button");

        // Disabled: the caller's code default (no value, no variant).
        let (s, body) = h.eval(&sdk, "retired-feature", json!({})).await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["reason"], "DISABLED");
        assert!(
            v.get("value").is_none() && v.get("variant").is_none(),
            "{v}"
        );

        let (s, body) = h.eval(&sdk, "no-such-flag", json!({})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v = parse(&body);
        assert_eq!(v["errorCode"], "FLAG_NOT_FOUND");
        assert!(v["errorDetails"].as_str().unwrap().contains("no-such-flag"));

        // X-API-Key works like Bearer.
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags/new-editor", None)
            .header("X-API-Key", &sdk)
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_bad_requests_get_ofrep_errors() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let post = |body: &'static str, ct: &'static str| {
            h.req(
                Method::POST,
                "/ofrep/v1/evaluate/flags/new-editor",
                Some(&sdk),
            )
            .header(header::CONTENT_TYPE, ct)
            .body(body)
        };
        let resp = post("{\"context\": ", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT");
        assert!(
            v["errorDetails"].as_str().unwrap().contains("line 1"),
            "{v}"
        );

        let resp = post("{\"context\": [1]}", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT");

        let resp = post("{\"context\": {\"targetingKey\": 5}}", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

        let resp = post("{\"context\": {}}", "text/plain")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let v: Value = resp.json().await.unwrap();
        assert!(v["errorDetails"]
            .as_str()
            .unwrap()
            .contains("application/json"));

        let big = format!(
            "{{\"context\": {{\"pad\": \"{}\"}}}}",
            "x".repeat(BODY_LIMIT + 10)
        );
        let resp = h
            .req(
                Method::POST,
                "/ofrep/v1/evaluate/flags/new-editor",
                Some(&sdk),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // Without a key: 401 problem+json; a developer key may not... it may (roles include sdk).
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags/new-editor", None)
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNAUTHORIZED).await;

        // The server still serves normally afterwards.
        let (s, _) = h.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(s, StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_bulk_with_etag() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let ctx = json!({"context": {"targetingKey": "m1", "community": "wiki-a"}});
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
            .json(&ctx)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        let v: Value = resp.json().await.unwrap();
        let flags = v["flags"].as_array().unwrap();
        assert_eq!(flags.len(), 6);
        let welcome = flags.iter().find(|f| f["key"] == "welcome-text").unwrap();
        assert_eq!(welcome["value"], "Welcome, neighbour");
        assert_eq!(v["metadata"]["flagSetId"], "server-tests");

        let again = |tag: String, body: Value| {
            h.req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
                .header(header::IF_NONE_MATCH, tag)
                .json(&body)
                .send()
        };
        let resp = again(etag.clone(), ctx.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert!(resp.bytes().await.unwrap().is_empty());

        // Another context is another answer.
        let other = json!({"context": {"targetingKey": "m2"}});
        let resp = again(etag.clone(), other).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);

        // A change to the flags invalidates the ETag.
        let dev = h.key(Role::Developer).await;
        let resp = h
            .req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = again(etag.clone(), ctx.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(resp.headers()[header::ETAG].to_str().unwrap(), etag);
        h.stop().await;
    })
    .await;
}
