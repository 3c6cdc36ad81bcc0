//! Telemetry events: stored once with duplicates reported, unsynced
//! commits, values that round-trip, export pages, large and concurrent
//! batches, retention.

use super::*;

fn ids_of(events: &[commonlab_store::EventRecord]) -> Vec<u128> {
    events.iter().map(|e| e.event_id.as_u128()).collect()
}

#[tokio::test]
async fn events_are_stored_once_and_duplicates_reported() {
    both_backends(|db| async move {
        let store = db.store();
        let received = DateTime::from_timestamp(1_750_000_100, 123_456_789).unwrap();
        let empty = store.insert_events(&[], received).await.unwrap();
        assert_eq!((empty.inserted, empty.duplicates.len()), (0, 0));

        // Index 3 repeats index 0 (with other content: the first wins).
        let batch = vec![
            event(1, 1, "open", 1),
            event(2, 1, "open", 2),
            event(3, 2, "click", 3),
            NewEvent {
                name: "other".into(),
                ..event(1, 9, "x", 9)
            },
        ];
        let out = store.insert_events(&batch, received).await.unwrap();
        assert_eq!(out.inserted, 3);
        assert_eq!(out.duplicates, vec![3]);

        // A retried batch stores nothing and reports every event.
        let again = store.insert_events(&batch, at(200)).await.unwrap();
        assert_eq!(again.inserted, 0);
        assert_eq!(again.duplicates, vec![0, 1, 2, 3]);

        // Overlap across batches, and a repeat of a stored id in the batch.
        let mixed = vec![
            event(4, 1, "open", 4),
            event(2, 1, "open", 2),
            event(5, 2, "open", 5),
            event(2, 1, "open", 2),
            event(4, 1, "open", 4),
        ];
        let out = store.insert_events(&mixed, at(300)).await.unwrap();
        assert_eq!(out.inserted, 2);
        assert_eq!(out.duplicates, vec![1, 3, 4]);

        let all = store
            .export_events(&EventFilter::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(ids_of(&all), vec![1, 2, 3, 4, 5]);
        assert_eq!(all[0].name, "open", "the first occurrence is stored");
        assert_eq!(all[0].unit, unit(1));
        assert_eq!(
            all[0].received_at.timestamp_subsec_nanos(),
            123_456_000,
            "received_at is truncated to microseconds"
        );
        assert_eq!(all[3].received_at, at(300));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            5
        );

        // A row the database refuses is left out and reported; the rest of
        // the batch is stored (store_refused/ has the cases in full).
        let bad = vec![
            event(10, 1, "open", 10),
            NewEvent {
                unit: "not-a-pseudonym".into(),
                ..event(11, 1, "open", 11)
            },
        ];
        let out = store.insert_events(&bad, at(400)).await.unwrap();
        assert_eq!(out.inserted, 1);
        let refused: Vec<usize> = out.refused.iter().map(|r| r.index).collect();
        assert_eq!(refused, [1], "{out:?}");
        let only_bad = [NewEvent {
            name: String::new(),
            ..event(12, 1, "", 12)
        }];
        let out = store.insert_events(&only_bad, at(400)).await.unwrap();
        assert_eq!((out.inserted, out.refused.len()), (0, 1), "{out:?}");
        if db.backend() == Backend::Postgres {
            // PostgreSQL text cannot hold NUL: the COPY itself fails, for
            // that row only.
            let nul = [NewEvent {
                name: "a\0b".into(),
                ..event(13, 1, "", 13)
            }];
            let out = store.insert_events(&nul, at(400)).await.unwrap();
            assert_eq!((out.inserted, out.refused.len()), (0, 1), "{out:?}");
        }
        // The connections are still usable after the failures.
        let out = store.insert_events(&bad[..1], at(401)).await.unwrap();
        assert_eq!((out.inserted, out.duplicates.len()), (0, 1));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            6
        );
    })
    .await;
}

/// SQLite's writer connection must be back at `synchronous = FULL` (2)
/// whatever happened to an unsynced insert; PostgreSQL has nothing to check.
async fn assert_writer_waits_for_disk(db: &TestDb, when: &str) {
    if db.backend() == Backend::Sqlite {
        let mode = db
            .fetch_text_raw("SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous")
            .await
            .unwrap();
        assert_eq!(mode.as_deref(), Some("2"), "{when}");
    }
}

#[tokio::test]
async fn unsynced_event_commits_are_visible_and_synced_in_order() {
    both_backends(|db| async move {
        let store = db.store();
        let (out, first) = store
            .insert_events_unsynced(&[event(1, 1, "open", 1), event(2, 1, "open", 2)], at(10))
            .await
            .unwrap();
        assert_eq!((out.inserted, out.duplicates.len()), (2, 0));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            2,
            "committed (visible) before the flush"
        );
        assert_writer_waits_for_disk(&db, "after an unsynced commit").await;
        let (again, second) = store
            .insert_events_unsynced(&[event(2, 1, "open", 2), event(3, 2, "x", 3)], at(11))
            .await
            .unwrap();
        assert_eq!((again.inserted, again.duplicates.clone()), (1, vec![0]));
        let (_, empty) = store.insert_events_unsynced(&[], at(12)).await.unwrap();
        if db.backend() == Backend::Sqlite {
            assert!(first < second, "{first:?} then {second:?}");
            assert!(empty < first, "an empty batch commits nothing");
            let wal = commonlab_store::testing::sqlite_wal_path(store).unwrap();
            assert!(
                wal.exists(),
                "the flushed file is the WAL: {}",
                wal.display()
            );
            assert!(
                wal.to_string_lossy().ends_with(".db-wal"),
                "{}",
                wal.display()
            );
        }
        // One flush covers both; flushing again (or an older point) is free.
        store.sync_events(second).await.unwrap();
        store.sync_events(first).await.unwrap();
        store.sync_events(empty).await.unwrap();

        // A batch of refused rows leaves nothing (its transaction failed,
        // then the probes), and the writer back at FULL.
        let bad = [
            NewEvent {
                name: String::new(),
                ..event(10, 1, "open", 10)
            },
            NewEvent {
                unit: "not-a-pseudonym".into(),
                ..event(11, 1, "open", 11)
            },
        ];
        let (out, _) = store.insert_events_unsynced(&bad, at(13)).await.unwrap();
        assert_eq!((out.inserted, out.refused.len()), (0, 2), "{out:?}");
        assert_writer_waits_for_disk(&db, "after a refused batch").await;
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            3
        );

        // Cancelled at every stage (the caller's future dropped): the batch
        // is stored whole or not at all, and the writer never stays at
        // NORMAL for the next write.
        let batch: Vec<NewEvent> = (0..2_000u128)
            .map(|i| event(1_000 + i, (i % 50) as u64, "open", 100 + i as i64))
            .collect();
        let mut stored = 3;
        // The last one has time to finish.
        for micros in [
            0u64, 50, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 30_000_000,
        ] {
            let attempt = tokio::time::timeout(
                std::time::Duration::from_micros(micros),
                store.insert_events_unsynced(&batch, at(14)),
            )
            .await;
            assert_writer_waits_for_disk(&db, &format!("cancelled after {micros} µs")).await;
            let now = store.count_events(&EventFilter::default()).await.unwrap();
            assert!(
                now == stored || (stored == 3 && now == 3 + 2_000),
                "{micros} µs: {now} events, {stored} before: a batch is all or nothing"
            );
            if let Ok(done) = attempt {
                let (out, point) = done.unwrap();
                store.sync_events(point).await.unwrap();
                assert_eq!(out.inserted + out.duplicates.len() as u64, 2_000);
            }
            stored = now;
        }
        let (out, point) = store.insert_events_unsynced(&batch, at(15)).await.unwrap();
        store.sync_events(point).await.unwrap();
        assert_eq!(out.inserted + out.duplicates.len() as u64, 2_000);
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            3 + 2_000
        );
    })
    .await;
}

#[tokio::test]
async fn event_properties_and_text_round_trip_with_types() {
    both_backends(|db| async move {
        let store = db.store();
        let precise = DateTime::from_timestamp(1_750_000_000, 987_654_321).unwrap();
        let properties = props(json!({
            "count": 42,
            "negative": -7,
            "big": 9_007_199_254_740_993_i64,
            "ratio": 0.25,
            "whole_float": 2.0,
            "tiny": 1.5e-7,
            "flag": true,
            "off": false,
            "label": "tab\there \\ back\\slash \"quoted\" new\nline ünï ✓",
            "nothing": null,
        }));
        let weird = NewEvent {
            event_id: Uuid::new_v4(),
            unit: unit(7),
            community: Some("north\twest \\ ü".into()),
            name: "form\\submit\nx".into(),
            ts: precise,
            properties: properties.clone(),
        };
        let plain = NewEvent {
            properties: Map::new(),
            ..event(1, 8, "empty", 1)
        };
        let out = store
            .insert_events(&[weird.clone(), plain.clone()], at(5))
            .await
            .unwrap();
        assert_eq!(out.inserted, 2);
        let got = store
            .export_events(
                &EventFilter {
                    unit: Some(unit(7)),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(e.event_id, weird.event_id);
        assert_eq!(e.community, weird.community);
        assert_eq!(e.name, weird.name);
        assert_eq!(e.ts.timestamp_subsec_nanos(), 987_654_000);
        assert_eq!(e.properties, properties);
        let p = &e.properties;
        assert_eq!(p["count"].as_i64(), Some(42));
        assert!(p["count"].is_i64());
        assert_eq!(p["negative"].as_i64(), Some(-7));
        assert_eq!(p["big"].as_i64(), Some(9_007_199_254_740_993));
        assert!(p["ratio"].is_f64());
        assert_eq!(p["ratio"].as_f64(), Some(0.25));
        assert!(p["whole_float"].is_f64(), "2.0 stays a float");
        assert_eq!(p["tiny"].as_f64(), Some(1.5e-7));
        assert_eq!(p["flag"], Value::Bool(true));
        assert_eq!(p["off"], Value::Bool(false));
        assert!(p["nothing"].is_null());
        assert_eq!(p["label"], properties["label"]);

        let empty = store
            .export_events(
                &EventFilter {
                    name: Some("empty".into()),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].properties.is_empty());
        assert_eq!(empty[0].community, None);
    })
    .await;
}

#[tokio::test]
async fn export_pages_by_time_and_id_with_filters() {
    both_backends(|db| async move {
        let store = db.store();
        // Ids deliberately out of time order; 3 events share a timestamp.
        let mut batch = vec![
            event(50, 1, "open", 5),
            event(10, 1, "open", 7),
            event(30, 2, "open", 7),
            event(20, 1, "click", 7),
            event(40, 2, "click", 1),
            event(60, 3, "open", 9),
            event(70, 1, "open", 11),
        ];
        batch[1].community = Some("north".into());
        batch[2].community = Some("north".into());
        batch[5].community = Some("south".into());
        store.insert_events(&batch, at(100)).await.unwrap();

        // Export order: (ts, event_id).
        let expected = vec![40, 50, 10, 20, 30, 60, 70];
        let everything = EventFilter::default();
        for page_size in [1u32, 2, 3, 7, 100] {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .export_events(&everything, after.as_ref(), page_size)
                    .await
                    .unwrap();
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= page_size as usize);
                after = page.last().map(|e| e.cursor());
                pages.extend(ids_of(&page));
            }
            assert_eq!(pages, expected, "page size {page_size}");
        }
        assert!(store
            .export_events(&everything, None, 0)
            .await
            .unwrap()
            .is_empty());

        let check = |filter: EventFilter, want: Vec<u128>| {
            let store = store.clone();
            async move {
                let got = store.export_events(&filter, None, 100).await.unwrap();
                assert_eq!(ids_of(&got), want, "{filter:?}");
                assert_eq!(
                    store.count_events(&filter).await.unwrap(),
                    want.len() as u64,
                    "{filter:?}"
                );
            }
        };
        check(everything.clone(), expected.clone()).await;
        check(
            EventFilter {
                name: Some("open".into()),
                ..Default::default()
            },
            vec![50, 10, 30, 60, 70],
        )
        .await;
        check(
            EventFilter {
                unit: Some(unit(1)),
                ..Default::default()
            },
            vec![50, 10, 20, 70],
        )
        .await;
        check(
            EventFilter {
                unit: Some(unit(1)),
                name: Some("open".into()),
                from: Some(at(6)),
                ..Default::default()
            },
            vec![10, 70],
        )
        .await;
        check(
            EventFilter {
                community: Some("north".into()),
                ..Default::default()
            },
            vec![10, 30],
        )
        .await;
        // from inclusive, to exclusive.
        check(
            EventFilter {
                from: Some(at(7)),
                to: Some(at(11)),
                ..Default::default()
            },
            vec![10, 20, 30, 60],
        )
        .await;
        check(
            EventFilter {
                to: Some(at(7)),
                ..Default::default()
            },
            vec![40, 50],
        )
        .await;
        check(
            EventFilter {
                name: Some("nope".into()),
                ..Default::default()
            },
            vec![],
        )
        .await;

        // Filters and cursor together: the second page of unit 1's events.
        let filter = EventFilter {
            unit: Some(unit(1)),
            ..Default::default()
        };
        let first = store.export_events(&filter, None, 2).await.unwrap();
        assert_eq!(ids_of(&first), vec![50, 10]);
        let cursor = first[1].cursor();
        let second = store
            .export_events(&filter, Some(&cursor), 2)
            .await
            .unwrap();
        assert_eq!(ids_of(&second), vec![20, 70]);
    })
    .await;
}

#[tokio::test]
async fn a_5000_event_batch_is_stored_in_one_call() {
    both_backends(|db| async move {
        let store = db.store();
        let batch: Vec<NewEvent> = (0..5000u64)
            .map(|n| NewEvent {
                event_id: Uuid::new_v4(),
                community: Some(format!("c{}", n % 7)),
                properties: props(json!({"n": n, "x": n as f64 / 3.0, "ok": n % 2 == 0})),
                ..event(0, n % 100, if n % 3 == 0 { "a" } else { "b" }, n as i64)
            })
            .collect();
        let started = Instant::now();
        let out = store.insert_events(&batch, at(10_000)).await.unwrap();
        eprintln!("5,000 events in {:?}", started.elapsed());
        assert_eq!(out.inserted, 5000);
        assert!(out.duplicates.is_empty());
        let again = store.insert_events(&batch, at(10_001)).await.unwrap();
        assert_eq!(again.inserted, 0);
        assert_eq!(again.duplicates, (0..5000).collect::<Vec<_>>());
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            5000
        );
        assert_eq!(
            store
                .count_events(&EventFilter {
                    name: Some("a".into()),
                    ..Default::default()
                })
                .await
                .unwrap(),
            1667
        );
    })
    .await;
}

/// 4 stores (as if 4 server processes) insert overlapping batches at the
/// same time: every event is stored once and reported as inserted by
/// exactly one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_batches_store_every_event_once() {
    use rand::seq::SliceRandom;
    use std::collections::BTreeMap;

    both_backends(|db| async move {
        let mut stores = vec![db.store().clone()];
        for _ in 0..3 {
            stores.push(db.connect_another().await);
        }
        const EVENTS: u128 = 3000;
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for task in 0..8u128 {
            let store = stores[task as usize % stores.len()].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                // Each task covers 1/2 of the ids (overlapping the others),
                // in a shuffled order, in batches of 250.
                let start = task * EVENTS / 8;
                let mut ids: Vec<u128> = (start..start + EVENTS / 2).map(|i| i % EVENTS).collect();
                ids.shuffle(&mut rand::rng());
                barrier.wait().await;
                let mut inserted = Vec::new();
                for chunk in ids.chunks(250) {
                    let batch: Vec<NewEvent> = chunk
                        .iter()
                        .map(|&id| event(id + 1, (id % 10) as u64, "e", id as i64))
                        .collect();
                    let out = store
                        .insert_events(&batch, at(0))
                        .await
                        .unwrap_or_else(|e| panic!("task {task}: {e:?}"));
                    let mut dups = out.duplicates.iter().peekable();
                    let mut n = 0;
                    for (i, e) in batch.iter().enumerate() {
                        if dups.peek() == Some(&&i) {
                            dups.next();
                        } else {
                            inserted.push(e.event_id.as_u128());
                            n += 1;
                        }
                    }
                    assert_eq!(n, out.inserted);
                }
                inserted
            }));
        }
        let mut times: BTreeMap<u128, usize> = BTreeMap::new();
        for t in tasks {
            for id in t.await.unwrap() {
                *times.entry(id).or_default() += 1;
            }
        }
        assert_eq!(times.len(), EVENTS as usize);
        assert!(times.values().all(|&n| n == 1), "reported inserted twice");
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            EVENTS as u64
        );
        for store in &stores[1..] {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_old_events_in_batches() {
    both_backends(|db| async move {
        let store = db.store();
        // Event time is not insertion order: old and new events interleave.
        let batch: Vec<NewEvent> = (0..1000u128)
            .map(|i| {
                let secs = if i % 4 == 0 {
                    10_000 + i as i64
                } else {
                    i as i64
                };
                event(i + 1, (i % 5) as u64, "e", secs)
            })
            .collect();
        store.insert_events(&batch, at(20_000)).await.unwrap();
        let old = batch.iter().filter(|e| e.ts < at(500)).count() as u64;
        assert_eq!(old, 375);
        assert_eq!(store.delete_events_before(at(500), 100).await.unwrap(), old);
        assert_eq!(
            store
                .count_events(&EventFilter {
                    to: Some(at(500)),
                    ..Default::default()
                })
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            1000 - old
        );
        assert_eq!(store.delete_events_before(at(500), 100).await.unwrap(), 0);
        // A batch limit of 0 still makes progress.
        let before_600 = batch
            .iter()
            .filter(|e| e.ts >= at(500) && e.ts < at(600))
            .count() as u64;
        assert_eq!(
            store.delete_events_before(at(600), 0).await.unwrap(),
            before_600
        );
        // An id deleted by retention can be stored again (it is a new event
        // as far as the store knows).
        let out = store.insert_events(&batch[1..2], at(20_001)).await.unwrap();
        assert_eq!(out.inserted, 1);
    })
    .await;
}
