//! Issue 10, item 13: an event the database refuses is rejected on its own
//! (per event, with the database's reason); the rest of its request, and
//! the other requests committed in the same group, are stored. It was a
//! 503 with Retry-After for every request of the group, retried forever.

use super::*;

/// Makes the database refuse events named `poison`, as a constraint would.
async fn refuse_poison(db: &TestDb) {
    let sql = match db.backend() {
        commonlab_store::Backend::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.name = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
        }
        commonlab_store::Backend::Postgres => {
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.name = 'poison' THEN \
             RAISE EXCEPTION 'poison refused' USING ERRCODE = 'check_violation'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON events \
             FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        }
    };
    db.execute_raw(sql).await.unwrap();
}

#[tokio::test]
async fn a_refused_event_is_rejected_alone_and_the_rest_is_stored() {
    both_backends(|db| async move {
        refuse_poison(&db).await;
        let h = Harness::start(&db).await;
        let sdk = h.key(Role::Sdk).await;
        let store = db.store();

        let batch = json!([
            event(&id(1), "m1", "edit"),
            event(&id(2), "m2", "poison"),
            event(&id(3), "m3", "edit"),
            {"event_id": "not-a-uuid", "unit": "m", "name": "x", "timestamp": "2026-11-26T08:00:00Z"},
            event(&id(5), "m5", "poison"),
        ]);
        let (s, v) = h.send_events(&sdk, batch.to_string(), "application/json").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!((v["stored"].as_u64(), v["duplicates"].as_u64()), (Some(2), Some(0)), "{v}");
        let rejected: Vec<(u64, &str, &str)> = v["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap(), r["event_id"].as_str().unwrap_or("")))
            .collect();
        let (two, five) = (id(2), id(5));
        assert_eq!(rejected, [(1, "", two.as_str()), (3, "event_id", "not-a-uuid"), (4, "", five.as_str())], "{v}");
        let reason = v["rejected"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("refused") && reason.contains("poison refused"), "{reason}");
        assert_eq!(store.count_events(&EventFilter::default()).await.unwrap(), 2);

        // Concurrent requests share commit groups: the clean ones are
        // stored, each poisoned one rejects only its own poison.
        let mut sends = tokio::task::JoinSet::new();
        for r in 0..8u32 {
            let batch: Vec<Value> = (0..20u32)
                .map(|i| {
                    let name = if r % 2 == 0 && i == 7 { "poison" } else { "edit" };
                    event(&id(1_000 + r * 100 + i), "m", name)
                })
                .collect();
            let request = h
                .req(Method::POST, "/v1/events", Some(&sdk))
                .header(header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_string(&batch).unwrap());
            sends.spawn(async move {
                let resp = request.send().await.unwrap();
                let status = resp.status();
                (r, status, resp.json::<Value>().await.unwrap())
            });
        }
        while let Some(answer) = sends.join_next().await {
            let (r, s, v) = answer.unwrap();
            assert_eq!(s, StatusCode::OK, "request {r}: {v}");
            let refused = u64::from(r % 2 == 0);
            assert_eq!(v["stored"].as_u64(), Some(20 - refused), "request {r}: {v}");
            assert_eq!(v["rejected"].as_array().unwrap().len() as u64, refused, "request {r}: {v}");
        }
        assert_eq!(store.count_events(&EventFilter::default()).await.unwrap(), 2 + 8 * 20 - 4);

        // Reachable without a trigger: year 0000 passes validation (RFC
        // 3339) and SQLite stores it, PostgreSQL refuses it ("date/time field
        // value out of range") in the COPY itself.
        let mut year_zero = event(&id(8_000), "m", "edit");
        year_zero["timestamp"] = json!("0000-01-01T00:00:00Z");
        let batch = json!([event(&id(8_001), "m", "edit"), year_zero]);
        let (s, v) = h.send_events(&sdk, batch.to_string(), "application/json").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let postgres = db.backend() == commonlab_store::Backend::Postgres;
        assert_eq!(v["stored"].as_u64(), Some(if postgres { 1 } else { 2 }), "{v}");
        assert_eq!(v["rejected"].as_array().unwrap().len(), usize::from(postgres), "{v}");

        // Only refused events: 422 like any batch without a valid event.
        let batch = json!([event(&id(9_000), "m", "poison")]);
        let (s, v) = h.send_events(&sdk, batch.to_string(), "application/json").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["rejected"][0]["index"], 0, "{v}");
        h.stop().await;
    })
    .await;
}
