//! What an operator sees and what every answer carries: `/metrics` series
//! that move with traffic, the request id, the security headers, and the
//! OFREP rate limits.

use super::*;

const ONE: &str = "/ofrep/v1/evaluate/flags/{key}";

fn requests(method: &str, route: &str, class: &str) -> String {
    format!(
        "commonlab_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}}"
    )
}

fn evaluations(flag: &str, reason: &str) -> String {
    format!("commonlab_ofrep_evaluations_total{{flag=\"{flag}\",reason=\"{reason}\"}}")
}

#[tokio::test]
async fn metrics_count_requests_per_route_and_evaluations_per_flag_and_reason() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let before = h.metrics_text().await;
        assert_eq!(metric_in(&before, &requests("POST", ONE, "2xx")), 0.0);
        // Pools are reported for the backend in use.
        assert!(
            before.contains("commonlab_db_pool_max_connections{pool="),
            "{before}"
        );
        assert!(before.contains("commonlab_ingest_queue_depth 0"), "{before}");
        assert!(before.contains("# TYPE commonlab_http_requests_total counter"), "{before}");

        let ctx = json!({"targetingKey": "member-1", "community": "wiki-a"});
        for _ in 0..3 {
            assert_eq!(h.eval(&sdk, "welcome-text", ctx.clone()).await.0, StatusCode::OK);
        }
        let (status, _) = h.eval(&sdk, "no-such-flag-123", ctx.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
            .json(&json!({"context": ctx}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bulk: Value = resp.json().await.unwrap();
        let _ = h.req(Method::GET, "/no/such/route", None).send().await.unwrap();

        let m = h.metrics_text().await;
        assert_eq!(metric_in(&m, &requests("POST", ONE, "2xx")), 3.0, "{m}");
        assert_eq!(metric_in(&m, &requests("POST", ONE, "4xx")), 1.0, "{m}");
        assert_eq!(metric_in(&m, &requests("POST", "/ofrep/v1/evaluate/flags", "2xx")), 1.0, "{m}");
        assert_eq!(metric_in(&m, &requests("ANY", "(no route)", "4xx")), 1.0, "{m}");
        let latency = format!(
            "commonlab_http_request_duration_seconds_count{{method=\"POST\",route=\"{ONE}\"}}"
        );
        assert_eq!(metric_in(&m, &latency), 4.0, "{m}");
        let bucket = format!(
            "commonlab_http_request_duration_seconds_bucket{{method=\"POST\",route=\"{ONE}\",le=\"+Inf\"}}"
        );
        assert_eq!(metric_in(&m, &bucket), 4.0, "{m}");
        // Per flag and reason; the single evaluations and the bulk's.
        let reason = bulk["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "welcome-text")
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(metric_in(&m, &evaluations("welcome-text", &reason)), 4.0, "{m}");
        // A flag that does not exist adds no series of its own.
        assert_eq!(metric_in(&m, &evaluations("(unknown)", "ERROR")), 1.0, "{m}");
        assert!(!m.contains("no-such-flag-123"), "{m}");
        // Every flag of the set was evaluated once by the bulk request.
        let flags = bulk["flags"].as_array().unwrap().len() as f64;
        let total: f64 = m
            .lines()
            .filter(|l| l.starts_with("commonlab_ofrep_evaluations_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(total, flags + 3.0 + 1.0, "{m}");
        // Survey pages count their responses through this helper.
        h.server.state.metrics.count_survey_response("wellbeing-2026");
        assert_eq!(
            h.metric("commonlab_survey_responses_total{campaign=\"wellbeing-2026\"}").await,
            1.0
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_answer_has_the_security_headers_and_a_request_id() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let sdk = h.key(Role::Sdk).await;
        let answers = [
            h.req(Method::GET, "/healthz", None).send().await.unwrap(),
            h.req(Method::GET, "/nope", None).send().await.unwrap(),
            h.req(Method::POST, "/ofrep/v1/evaluate/flags", None)
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
            h.req(Method::POST, "/ofrep/v1/evaluate/flags/x", Some(&sdk))
                .body("{")
                .header(header::CONTENT_TYPE, "application/json")
                .send()
                .await
                .unwrap(),
            h.req(Method::GET, "/metrics", None).send().await.unwrap(),
        ];
        let mut ids = Vec::new();
        for resp in &answers {
            let hv = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_else(|| panic!("{} {}: no {name}", resp.url(), resp.status()))
            };
            let csp = hv("content-security-policy");
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("script-src"),
                "{csp}"
            );
            assert_eq!(hv("x-content-type-options"), "nosniff");
            assert_eq!(hv("referrer-policy"), "no-referrer");
            assert_eq!(hv("x-frame-options"), "DENY");
            assert!(resp.headers().get("strict-transport-security").is_none());
            ids.push(hv("x-request-id"));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), answers.len(), "one id per request: {ids:?}");

        // A client's id is kept; one that is too long or not plain is replaced.
        let with_id = |id: &'static str| {
            h.req(Method::GET, "/healthz", None)
                .header("x-request-id", id)
                .send()
        };
        let resp = with_id("trace-42.a:b_c").await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "trace-42.a:b_c");
        let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
        for bad in ["has space", "quote\"", long] {
            let resp = with_id(bad).await.unwrap();
            let id = resp.headers()["x-request-id"].to_str().unwrap();
            assert!(id != bad && !id.is_empty() && id.len() <= 64, "{id}");
        }
        let admin = h.admin.clone();
        h.stop().await;

        // HSTS when configured (the server is behind a TLS proxy).
        let h = Harness::on(&db)
            .admin(&admin)
            .config(|c| c.hsts_max_age = Some(Duration::from_secs(31_536_000)))
            .start()
            .await;
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_limits_answer_429_with_retry_after_per_key_and_per_address() {
    both_backends(|db| async move {
        use commonlab_server::flags::limits::OfrepLimitSettings;
        let h = Harness::on(&db)
            .config(|c| {
                c.ofrep_limits = OfrepLimitSettings {
                    per_key_per_second: 2,
                    per_ip_per_second: 0,
                    max_tracked_ips: 10,
                }
            })
            .start()
            .await;
        h.import_fixture().await;
        let (a, b) = (h.key(Role::Sdk).await, h.key(Role::Sdk).await);
        let ctx = json!({"targetingKey": "m"});
        assert_eq!(
            h.eval(&a, "welcome-text", ctx.clone()).await.0,
            StatusCode::OK
        );
        // The bucket holds 2 and refills 2 a second: requests in a row
        // soon find it empty.
        let mut sent = 0;
        let resp = loop {
            sent += 1;
            assert!(sent < 1_000, "never limited");
            let resp = h
                .req(
                    Method::POST,
                    "/ofrep/v1/evaluate/flags/welcome-text",
                    Some(&a),
                )
                .json(&json!({"context": ctx}))
                .send()
                .await
                .unwrap();
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                break resp;
            }
        };
        let retry: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry, 1, "the wait rounded up to whole seconds");
        let p = problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("ofrep_key_per_second"),
            "{p}"
        );
        // Another key has its own quota; unauthenticated requests are 401,
        // not counted against anyone.
        assert_eq!(
            h.eval(&b, "welcome-text", ctx.clone()).await.0,
            StatusCode::OK
        );
        assert!(
            h.metric("commonlab_rate_limited_total{scope=\"key\"}")
                .await
                >= 1.0
        );
        let admin = h.admin.clone();
        h.stop().await;

        // Per address: both keys come from 127.0.0.1.
        let h = Harness::on(&db)
            .admin(&admin)
            .config(|c| {
                c.ofrep_limits = OfrepLimitSettings {
                    per_key_per_second: 0,
                    per_ip_per_second: 1,
                    max_tracked_ips: 10,
                }
            })
            .start()
            .await;
        let (a, b) = (h.key(Role::Sdk).await, h.key(Role::Sdk).await);
        let mut keys = [&a, &b].into_iter().cycle();
        let mut sent = 0;
        loop {
            sent += 1;
            assert!(sent < 1_000, "never limited");
            let (s, body) = h
                .eval(keys.next().unwrap(), "welcome-text", ctx.clone())
                .await;
            if s == StatusCode::TOO_MANY_REQUESTS {
                assert!(body.contains("ofrep_ip_per_second"), "{body}");
                break;
            }
        }
        assert!(h.metric("commonlab_rate_limited_total{scope=\"ip\"}").await >= 1.0);
        h.stop().await;
    })
    .await;
}
