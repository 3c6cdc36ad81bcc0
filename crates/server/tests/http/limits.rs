//! Limits on what a client sends and what the server remembers; secrets in
//! answers; failed authentication.

use super::*;

#[tokio::test]
async fn failed_authentication_is_counted() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let sdk = h.key(Role::Sdk).await;
        let wrong_secret = format!("{}x", &sdk[..sdk.len() - 1]);
        for key in [None, Some("not-a-key"), Some(wrong_secret.as_str())] {
            let resp = h
                .req(Method::POST, "/ofrep/v1/evaluate/flags", key)
                .json(&json!({"context": {}}))
                .send()
                .await
                .unwrap();
            problem(resp, StatusCode::UNAUTHORIZED).await;
        }
        let resp = h
            .req(Method::GET, "/api/v1/flags", Some("cl_bogus_key"))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNAUTHORIZED).await;
        // A valid key is not a failure.
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let metrics = h
            .req(Method::GET, "/metrics", None)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("commonlab_auth_failures_total 4\n"),
            "{metrics}"
        );
        assert!(!metrics.contains(&sdk) && !metrics.contains("not-a-key"));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn created_keys_are_not_cached() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let resp = h
            .req(Method::POST, "/api/v1/keys", Some(&h.admin))
            .json(&json!({"name": "web", "role": "sdk"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            resp.headers()
                .get(header::CACHE_CONTROL)
                .map(|v| v.to_str().unwrap()),
            Some("no-store")
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_contexts_are_bounded_like_events() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let long = "m".repeat(1025);
        let cases = [
            (
                json!({"targetingKey": long}),
                "context.targetingKey",
                "1024 bytes",
            ),
            (
                json!({"targetingKey": "m1", "community": "wiki\u{7}"}),
                "context.community",
                "control",
            ),
            (
                json!({"targetingKey": "m1", "profile": {"bio": long}}),
                "context.profile.bio",
                "1024 bytes",
            ),
            (
                json!({"targetingKey": "m1", "x".repeat(101): 1}),
                "context.",
                "1 to 100 bytes",
            ),
        ];
        for (ctx, field, why) in cases {
            for path in [
                "/ofrep/v1/evaluate/flags/thanks-button",
                "/ofrep/v1/evaluate/flags",
            ] {
                let resp = h
                    .req(Method::POST, path, Some(&sdk))
                    .json(&json!({ "context": ctx }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {ctx}");
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["errorCode"], "INVALID_CONTEXT", "{v}");
                let details = v["errorDetails"].as_str().unwrap();
                assert!(
                    details.starts_with(field) && details.contains(why),
                    "{details}"
                );
            }
        }
        // The explicit exposure endpoint applies the same limits (422, with a pointer).
        let resp = h
            .req(Method::POST, "/api/v1/exposures", Some(&sdk))
            .json(&json!({"flag": "thanks-button", "context": {"targetingKey": long}}))
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/context/targetingKey", "{p}");
        // A context at the limits is evaluated.
        let (s, _) = h
            .eval(
                &sdk,
                "thanks-button",
                json!({"targetingKey": "m".repeat(1024), "community": "wiki-a"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        h.stop().await;
    })
    .await;
}

/// The de-duplication caches hold digests within their budget, however
/// many and however long the unit ids are.
#[tokio::test]
async fn exposure_caches_stay_within_their_budget() {
    both_backends(|db| async move {
        let budget = 16 * 1024;
        let h = start_config(&db, |c| {
            c.exposure_cache_bytes = budget;
        })
        .await;
        h.import_fixture().await;
        let resp = h
            .req(Method::POST, "/api/v1/trials", Some(&h.admin))
            .json(&json!({"source": include_str!("../fixtures/trials/hash.toml"), "reason": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = h
            .req(
                Method::POST,
                "/api/v1/trials/thanks-hash/start",
                Some(&h.admin),
            )
            .json(&json!({"reason": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        commonlab_server::sync::refresh_trials(&h.server.state)
            .await
            .unwrap();
        let sdk = h.key(Role::Sdk).await;
        // 1,500 units of 1,000 bytes: 1.5 MB of raw ids.
        for i in 0..1_500 {
            let unit = format!("{i:0>1000}");
            let (s, body) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": unit, "community": "wiki-a"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert!(body.contains("trialKey"), "{body}");
        }
        let held = h.server.state.exposures.cache_bytes();
        assert!(held > 0 && held <= 2 * budget, "{held} bytes");
        h.stop().await;
    })
    .await;
}
