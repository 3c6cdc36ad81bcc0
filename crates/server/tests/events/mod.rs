//! Telemetry ingestion end to end.

use super::*;
use commonlab_core::privacy::pseudonymise;
use commonlab_store::EventFilter;

pub(crate) mod openapi;
mod refused;

fn event(id: &str, unit: &str, name: &str) -> Value {
    json!({
        "event_id": id, "unit": unit, "community": "wiki-a", "name": name,
        "timestamp": "2026-11-26T08:00:00Z",
        "properties": {"edits": 3, "minutes": 2.5, "mobile": true, "lang": "en", "none": null},
    })
}

fn id(n: u32) -> String {
    format!("0190a6b8-0000-7000-8000-{n:012}")
}

impl Harness {
    async fn send_events(&self, key: &str, body: String, ct: &str) -> (StatusCode, Value) {
        let resp = self
            .req(Method::POST, "/v1/events", Some(key))
            .header(header::CONTENT_TYPE, ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }
}

#[tokio::test]
async fn events_are_stored_once_pseudonymised_with_per_event_errors() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let sdk = h.key(Role::Sdk).await;
        let batch: Vec<Value> = (0..20).map(|i| event(&id(i), &format!("member-{}", i % 5), "contribution_created")).collect();
        let body = serde_json::to_string(&batch).unwrap();
        let (s, v) = h.send_events(&sdk, body.clone(), "application/json").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["received"].as_u64(), v["stored"].as_u64(), v["duplicates"].as_u64()), (Some(20), Some(20), Some(0)));
        // A retry: the same answer, nothing stored twice.
        let (s, v) = h.send_events(&sdk, body, "application/json").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((v["stored"].as_u64(), v["duplicates"].as_u64()), (Some(20), Some(20)));
        let store = db.store();
        assert_eq!(store.count_events(&EventFilter::default()).await.unwrap(), 20);
        // Units are stored pseudonymised, never raw.
        let unit = pseudonymise(&h.server.state.config.study_key, "member-3").into_string();
        let mine = EventFilter { unit: Some(unit), ..EventFilter::default() };
        assert_eq!(store.count_events(&mine).await.unwrap(), 4);
        let raw = EventFilter { unit: Some("member-3".into()), ..EventFilter::default() };
        assert_eq!(store.count_events(&raw).await.unwrap(), 0);
        let stored = store.export_events(&mine, None, 10).await.unwrap();
        assert_eq!(stored[0].properties["minutes"], json!(2.5));
        assert_eq!(stored[0].properties["mobile"], json!(true));

        // NDJSON with some bad events: the good ones are stored, the bad ones named.
        let lines = [
            event(&id(100), "m", "thanks_given"),
            json!({"event_id": "not-a-uuid", "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z"}),
            json!({"event_id": id(102), "unit": "m", "name": "x", "timestamp": "2099-01-01T00:00:00Z"}),
            json!({"event_id": id(103), "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z", "properties": {"nested": {"a": 1}}}),
            json!({"event_id": id(104), "name": "x", "timestamp": "2026-11-26T08:00:00Z"}),
            json!({"event_id": id(105), "unit": "m", "name": "<script>", "timestamp": "2026-11-26T08:00:00Z"}),
            json!({"event_id": id(106), "unit": "m", "name": "x", "timestamp": "yesterday"}),
            json!({"event_id": id(107), "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z", "ip": "1.2.3.4"}),
            event(&id(108), "m'; DROP TABLE events; --", "thanks_given"),
        ];
        let body = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n");
        let (s, v) = h.send_events(&sdk, body, "application/x-ndjson").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["stored"], 2);
        let rejected: Vec<(u64, String)> = v["rejected"].as_array().unwrap().iter()
            .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap().to_string())).collect();
        assert_eq!(rejected, [
            (1, "event_id".to_string()), (2, "timestamp".into()), (3, "properties.nested".into()),
            (4, "unit".into()), (5, "name".into()), (6, "timestamp".into()), (7, "ip".into()),
        ]);
        assert_eq!(store.count_events(&EventFilter::default()).await.unwrap(), 22);

        // Not parseable: nothing stored.
        let (s, v) = h.send_events(&sdk, format!("[{}, {{", event(&id(200), "m", "x")), "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _) = h.send_events(&sdk, format!("{}\n{{oops", event(&id(201), "m", "x")), "application/x-ndjson").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = h.send_events(&sdk, "{}".into(), "application/json").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _) = h.send_events(&sdk, "[]".into(), "text/csv").await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Every event invalid: 422, nothing stored.
        let (s, v) = h.send_events(&sdk, json!([{"event_id": "x"}]).to_string(), "application/json").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Deeply nested JSON is refused as a whole, without a crash.
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let (s, _) = h.send_events(&sdk, deep, "application/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(store.count_events(&EventFilter::default()).await.unwrap(), 22);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn oversized_batches_are_refused_whole() {
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .config(|c| c.max_batch_events = 10)
            .start()
            .await;
        let sdk = h.key(Role::Sdk).await;
        let batch: Vec<Value> = (0..11).map(|i| event(&id(i), "m", "x")).collect();
        let (s, _) = h
            .send_events(
                &sdk,
                serde_json::to_string(&batch).unwrap(),
                "application/json",
            )
            .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        let big = json!([event(&id(1), &"u".repeat(BODY_LIMIT), "x")]).to_string();
        let (s, _) = h.send_events(&sdk, big, "application/json").await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            0
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn allow_list_consent_and_erasure() {
    both_backends(|db| async move {
        let set = |xs: &[&str]| {
            Some(std::sync::Arc::new(
                xs.iter().map(|s| s.to_string()).collect(),
            ))
        };
        let h = Harness::on(&db)
            .config(|c| {
                c.consent_scope = Some("research".into());
                c.allowed_events = set(&["contribution_created", "thanks_given"]);
                c.allowed_properties = set(&["edits"]);
            })
            .start()
            .await;
        let sdk = h.key(Role::Sdk).await;
        let consent = |unit: &str, granted: bool| {
            h.req(
                Method::PUT,
                &format!("/api/v1/units/{unit}/consent"),
                Some(&sdk),
            )
            .json(&json!({"scope": "research", "text_version": "v2", "granted": granted}))
            .send()
        };
        assert_eq!(
            consent("member-1", true).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            consent("member-2", true).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(
            consent("member-2", false).await.unwrap().status(),
            StatusCode::OK
        );
        let resp = h
            .req(Method::PUT, "/api/v1/units/member-1/consent", Some(&sdk))
            .json(&json!({"scope": "", "text_version": "v2", "granted": true}))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;

        let batch = json!([
            event(&id(1), "member-1", "contribution_created"),
            event(&id(2), "member-1", "page_viewed"),
            event(&id(3), "member-2", "thanks_given"),
            event(&id(4), "member-3", "thanks_given"),
        ]);
        let (s, v) = h
            .send_events(&sdk, batch.to_string(), "application/json")
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["stored"], 1, "{v}");
        assert_eq!(v["dropped"]["not_allowed"], 1);
        assert_eq!(v["dropped"]["no_consent"], 2);
        // Four of the five properties are off the allow-list, for each of the
        // three events whose name is allowed.
        assert_eq!(v["dropped"]["properties_removed"], 12);
        let stored = db
            .store()
            .export_events(&EventFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].properties.keys().collect::<Vec<_>>(), ["edits"]);

        // At /metrics, by reason; an invalid event then moves `invalid`.
        let dropped =
            |reason: &str| format!("commonlab_events_dropped_total{{reason=\"{reason}\"}}");
        let metrics = h.metrics_text().await;
        assert_eq!(metric_in(&metrics, &dropped("consent")), 2.0, "{metrics}");
        assert_eq!(
            metric_in(&metrics, &dropped("allow_list")),
            1.0,
            "{metrics}"
        );
        assert_eq!(metric_in(&metrics, &dropped("invalid")), 0.0, "{metrics}");
        assert_eq!(metric_in(&metrics, "commonlab_events_stored_total"), 1.0);
        assert_eq!(
            metric_in(&metrics, "commonlab_event_properties_removed_total"),
            12.0
        );
        let bad = json!([event(&id(5), "member-1", "page_viewed"), {"event_id": "no"}]);
        let (s, v) = h
            .send_events(&sdk, bad.to_string(), "application/json")
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let metrics = h.metrics_text().await;
        assert_eq!(metric_in(&metrics, &dropped("invalid")), 1.0, "{metrics}");
        assert_eq!(
            metric_in(&metrics, &dropped("allow_list")),
            2.0,
            "{metrics}"
        );
        assert_eq!(metric_in(&metrics, "commonlab_events_stored_total"), 1.0);

        // Erasure: everything about member-1 goes, in one transaction, and is logged.
        let researcher = h.key(Role::Researcher).await;
        let resp = h
            .req(
                Method::DELETE,
                "/api/v1/units/member-1?reason=asked",
                Some(&researcher),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["erased"]["events"], 1);
        assert_eq!(v["erased"]["consents"], 1);
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            0
        );
        let hist: Value = h
            .req(
                Method::GET,
                "/api/v1/units/member-1/consent",
                Some(&researcher),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(hist["consent"], json!([]));
        let log = db
            .store()
            .erasures_since(chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].unit, v["unit"].as_str().unwrap());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_old_raw_events() {
    both_backends(|db| async move {
        let clock = Clock::fixed(
            chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
                .unwrap()
                .into(),
        );
        let h = Harness::on(&db)
            .clock(clock)
            .config(|c| c.retention = Some(Duration::from_secs(7 * 86_400)))
            .start()
            .await;
        let sdk = h.key(Role::Sdk).await;
        let mut batch = Vec::new();
        for (i, day) in ["2026-11-01", "2026-11-20", "2026-11-25", "2026-11-30"]
            .iter()
            .enumerate()
        {
            let mut e = event(&id(i as u32), "m", "x");
            e["timestamp"] = json!(format!("{day}T12:00:00Z"));
            batch.push(e);
        }
        let (s, v) = h
            .send_events(&sdk, json!(batch).to_string(), "application/json")
            .await;
        assert_eq!((s, v["stored"].as_u64()), (StatusCode::OK, Some(4)), "{v}");
        assert_eq!(
            commonlab_server::retention::sweep(&h.server.state)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            commonlab_server::retention::sweep(&h.server.state)
                .await
                .unwrap(),
            0
        );
        h.stop().await;
    })
    .await;
}
