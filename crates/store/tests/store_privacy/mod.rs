//! Privacy guarantees of the store: consent history, erasure of a unit
//! and its log, the study key's fingerprint, batch consent lookups, the
//! counters replicas poll, erasure attribution, and erased rows leaving no
//! readable copy in the SQLite file.

use super::*;
use commonlab_store::NewEvent;
use serde_json::json;

#[tokio::test]
async fn erased_text_does_not_stay_in_the_sqlite_file() {
    both_backends(|db| async move {
        let store = db.store();
        let marker = |i: u128| format!("erase-me-{i:04}-{}", "x".repeat(200));
        let events: Vec<NewEvent> = (0..400u128)
            .map(|i| NewEvent {
                event_id: uuid::Uuid::from_u128(i + 1),
                unit: unit(if i % 2 == 0 { 1 } else { 2 }),
                community: None,
                name: "note".into(),
                ts: at(i as i64),
                properties: json!({ "text": if i % 2 == 0 { marker(i) } else { "kept".into() } })
                    .as_object()
                    .unwrap()
                    .clone(),
            })
            .collect();
        store.insert_events(&events, at(1000)).await.unwrap();
        let checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)";
        if db.backend() == Backend::Sqlite {
            // The rows reach the database file itself.
            db.execute_raw(checkpoint).await.unwrap();
        }
        let erased = store
            .erase_unit(&unit(1), "cli:dpo", "asked", at(2000))
            .await
            .unwrap();
        assert_eq!(erased.events, 200);
        let all = commonlab_store::EventFilter::default();
        assert_eq!(store.count_events(&all).await.unwrap(), 200);
        if db.backend() == Backend::Sqlite {
            db.execute_raw(checkpoint).await.unwrap();
            let path = db.url().strip_prefix("sqlite://").unwrap().to_string();
            for file in [path.clone(), format!("{path}-wal")] {
                let bytes = std::fs::read(&file).unwrap_or_default();
                let found = bytes.windows(9).filter(|w| w == b"erase-me-").count();
                assert_eq!(found, 0, "{file} still holds erased text");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_study_key_fingerprint_is_recorded_once() {
    both_backends(|db| async move {
        let store = db.store();
        let state = store.study_key_state().await.unwrap();
        assert_eq!((state.fingerprint, state.pseudonymised_data), (None, false));
        let (a, b) = ("0123456789abcdef", "fedcba9876543210");
        // Two processes race at first start: both learn the same winner.
        let other = db.connect_another().await;
        let (x, y) = tokio::join!(
            store.record_study_key(a, at(1)),
            other.record_study_key(b, at(1))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x, y);
        assert!(x == a || x == b);
        assert_eq!(store.record_study_key(b, at(2)).await.unwrap(), x);
        assert_eq!(store.record_study_key(a, at(2)).await.unwrap(), x);
        assert_eq!(
            store
                .study_key_state()
                .await
                .unwrap()
                .fingerprint
                .as_deref(),
            Some(x.as_str())
        );
        // Never replaced, never removed; only well-formed fingerprints.
        for sql in [
            "UPDATE study_key SET fingerprint = '0000000000000000'",
            "DELETE FROM study_key",
        ] {
            let err = db.execute_raw(sql).await.unwrap_err();
            assert!(err.to_string().contains("recorded once"), "{sql}: {err}");
        }
        let fresh = TestDb::new(db.backend()).await;
        for bad in ["0123", "0123456789ABCDEF", "0123456789abcdeg"] {
            assert!(
                fresh.store().record_study_key(bad, at(1)).await.is_err(),
                "{bad}"
            );
        }
        // An erasure log entry alone is pseudonymised data.
        assert!(
            !fresh
                .store()
                .study_key_state()
                .await
                .unwrap()
                .pseudonymised_data
        );
        fresh
            .store()
            .erase_unit(&unit(9), "cli:dpo", "asked", at(3))
            .await
            .unwrap();
        assert!(
            fresh
                .store()
                .study_key_state()
                .await
                .unwrap()
                .pseudonymised_data
        );
        fresh.cleanup().await;
        other.close().await;
    })
    .await;
}

#[tokio::test]
async fn pseudonymised_data_of_every_kind_is_seen() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        assert!(!store.study_key_state().await.unwrap().pseudonymised_data);
        store
            .assign_fixed(&fixed(trial, &unit(1), "A", 1))
            .await
            .unwrap();
        assert!(
            store.study_key_state().await.unwrap().pseudonymised_data,
            "assignments"
        );
        store
            .erase_unit(&unit(1), "cli:dpo", "asked", at(2))
            .await
            .unwrap();
        for (what, insert) in [("exposures", 0), ("events", 1), ("consents", 2)] {
            let fresh = TestDb::new(db.backend()).await;
            let s = fresh.store();
            let t = running_trial(s, "t").await;
            match insert {
                0 => {
                    s.record_exposures(&[exposure(t, 1, "A", 2)]).await.unwrap();
                }
                1 => {
                    s.insert_events(&[event(1, 1, "e", 1)], at(2))
                        .await
                        .unwrap();
                }
                _ => {
                    s.set_consent(&unit(1), "research", "v1", true, at(2))
                        .await
                        .unwrap();
                }
            }
            assert!(
                s.study_key_state().await.unwrap().pseudonymised_data,
                "{what}"
            );
            fresh.cleanup().await;
        }
    })
    .await;
}

#[tokio::test]
async fn erasures_and_consent_decisions_bump_their_counters() {
    both_backends(|db| async move {
        let store = db.store();
        let v = |e, c| commonlab_store::UnitVersions {
            erasures: e,
            consents: c,
        };
        assert_eq!(store.unit_versions().await.unwrap(), v(0, 0));
        store
            .set_consent(&unit(1), "research", "v1", true, at(1))
            .await
            .unwrap();
        store
            .set_consent(&unit(1), "research", "v1", false, at(2))
            .await
            .unwrap();
        assert_eq!(store.unit_versions().await.unwrap(), v(0, 2));
        store
            .erase_unit(&unit(1), "key:dpo", "asked", at(3))
            .await
            .unwrap();
        assert_eq!(store.unit_versions().await.unwrap(), v(1, 2));
        // An erasure without an actor or a reason is refused, and not counted.
        for (actor, reason) in [("", "asked"), ("key:dpo", " "), ("key:dpo", "")] {
            assert!(store
                .erase_unit(&unit(1), actor, reason, at(4))
                .await
                .is_err());
        }
        assert_eq!(store.unit_versions().await.unwrap(), v(1, 2));
        let log = store.erasures_since(at(0)).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].actor.as_deref(), log[0].reason.as_deref()),
            (Some("key:dpo"), Some("asked"))
        );
    })
    .await;
}

/// The batch lookup agrees with [`Store::consent_state`] of each unit, over
/// a seeded random history of grants and withdrawals (some at equal times)
/// in two scopes, and for units that never decided.
#[tokio::test]
async fn batch_consent_agrees_with_each_unit_s_latest_decision() {
    use rand::{Rng, SeedableRng};
    both_backends(|db| async move {
        let store = db.store();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let u = unit(rng.random_range(0..40));
            let scope = if rng.random_bool(0.7) {
                "research"
            } else {
                "surveys"
            };
            store
                .set_consent(
                    &u,
                    scope,
                    "v1",
                    rng.random_bool(0.5),
                    at(rng.random_range(0..20)),
                )
                .await
                .unwrap();
        }
        let units: Vec<String> = (0..50).map(unit).collect();
        let refs: Vec<&str> = units.iter().map(String::as_str).collect();
        for scope in ["research", "surveys", "other"] {
            let batch = store.units_with_consent(&refs, scope).await.unwrap();
            let mut expected = std::collections::HashSet::new();
            for u in &units {
                if store
                    .consent_state(u, scope)
                    .await
                    .unwrap()
                    .is_some_and(|c| c.granted)
                {
                    expected.insert(u.clone());
                }
            }
            assert_eq!(batch, expected, "{scope}");
            if scope != "other" {
                assert!(
                    !expected.is_empty(),
                    "{scope}: a history with no grant tests little"
                );
            }
        }
        assert!(store
            .units_with_consent(&[], "research")
            .await
            .unwrap()
            .is_empty());
        // Repeated units are fine.
        let twice = [refs[0], refs[0]];
        assert!(
            store
                .units_with_consent(&twice, "research")
                .await
                .unwrap()
                .len()
                <= 1
        );
    })
    .await;
}

#[tokio::test]
async fn key_changes_keep_who_and_why() {
    both_backends(|db| async move {
        let store = db.store();
        let made = store
            .insert_api_key(&key("0123456789ab", "ci", "sdk", 1))
            .await
            .unwrap();
        assert_eq!(made.created_reason.as_deref(), Some("a test key"));
        assert_eq!(made.revoked_by, None);
        let gone = store
            .revoke_api_key_by("ci", Some("cli:alice"), Some("leaked in a log"), at(2))
            .await
            .unwrap();
        assert_eq!(
            (gone.revoked_by.as_deref(), gone.revoked_reason.as_deref()),
            (Some("cli:alice"), Some("leaked in a log"))
        );
        let listed = store.list_api_keys(true).await.unwrap();
        assert_eq!(listed, vec![gone]);
    })
    .await;
}

#[tokio::test]
async fn consent_history_keeps_every_decision() {
    both_backends(|db| async move {
        let store = db.store();
        let (a, b) = (unit(1), unit(2));
        assert_eq!(store.consent_state(&a, "telemetry").await.unwrap(), None);
        let first = store
            .set_consent(&a, "telemetry", "v1", true, at(1))
            .await
            .unwrap();
        assert!(first.granted);
        assert_eq!(
            store.consent_state(&a, "telemetry").await.unwrap(),
            Some(first.clone())
        );
        store
            .set_consent(&a, "surveys", "v1", true, at(2))
            .await
            .unwrap();
        let withdrawn = store
            .set_consent(&a, "telemetry", "v1", false, at(3))
            .await
            .unwrap();
        store
            .set_consent(&b, "telemetry", "v2", true, at(3))
            .await
            .unwrap();
        let state = store.consent_state(&a, "telemetry").await.unwrap().unwrap();
        assert_eq!(state, withdrawn);
        assert!(!state.granted);
        // Granted again on a new text version, at the same instant: the
        // later decision wins.
        let precise = DateTime::from_timestamp(1_750_000_003, 999_999_999).unwrap();
        store
            .set_consent(&a, "telemetry", "v2", false, precise)
            .await
            .unwrap();
        let regranted = store
            .set_consent(&a, "telemetry", "v2", true, precise)
            .await
            .unwrap();
        assert_eq!(regranted.at.timestamp_subsec_nanos(), 999_999_000);
        assert_eq!(
            store.consent_state(&a, "telemetry").await.unwrap(),
            Some(regranted)
        );
        assert_eq!(
            store
                .consent_state(&a, "surveys")
                .await
                .unwrap()
                .map(|c| c.granted),
            Some(true)
        );
        let history = store.consent_history(&a).await.unwrap();
        let summary: Vec<(&str, &str, bool)> = history
            .iter()
            .map(|c| (c.scope.as_str(), c.text_version.as_str(), c.granted))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("telemetry", "v1", true),
                ("surveys", "v1", true),
                ("telemetry", "v1", false),
                ("telemetry", "v2", false),
                ("telemetry", "v2", true),
            ]
        );
        assert_eq!(store.consent_history(&b).await.unwrap().len(), 1);
        let err = store
            .set_consent("raw-user-id", "telemetry", "v1", true, at(1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn erase_unit_removes_only_that_unit_and_logs_it() {
    use commonlab_store::ErasureOutcome;

    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other_trial = running_trial(store, "u").await;
        let (a, b) = (unit(1), unit(2));
        for (t, u) in [(trial, &a), (other_trial, &a), (trial, &b)] {
            store.assign_fixed(&fixed(t, u, "A", 1)).await.unwrap();
        }
        store
            .record_exposures(&[
                exposure(trial, 1, "A", 2),
                exposure(other_trial, 1, "A", 2),
                exposure(trial, 2, "A", 2),
            ])
            .await
            .unwrap();
        let events: Vec<NewEvent> = (0..10u128)
            .map(|i| event(i + 1, if i < 6 { 1 } else { 2 }, "e", i as i64))
            .collect();
        store.insert_events(&events, at(20)).await.unwrap();
        for (u, scope) in [(&a, "telemetry"), (&a, "surveys"), (&b, "telemetry")] {
            store
                .set_consent(u, scope, "v1", true, at(3))
                .await
                .unwrap();
        }

        // A failure anywhere in the erasure undoes all of it: make the log
        // insert fail.
        let failing = match db.backend() {
            Backend::Sqlite => "CREATE TRIGGER erasure_log_fail BEFORE INSERT ON erasure_log \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                .to_string(),
            Backend::Postgres => "CREATE FUNCTION erasure_log_fail() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END; $$; \
                 CREATE TRIGGER erasure_log_fail BEFORE INSERT ON erasure_log \
                 FOR EACH ROW EXECUTE FUNCTION erasure_log_fail()"
                .to_string(),
        };
        db.execute_raw(&failing).await.unwrap();
        let err = store
            .erase_unit(&a, "cli:dpo", "member asked", at(30))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let a_events = EventFilter {
            unit: Some(a.clone()),
            ..Default::default()
        };
        assert_eq!(store.count_events(&a_events).await.unwrap(), 6);
        assert!(store.get_assignment(trial, &a).await.unwrap().is_some());
        assert!(store
            .consent_state(&a, "telemetry")
            .await
            .unwrap()
            .is_some());
        assert_eq!(store.arm_counts(trial).await.unwrap()[0].2, 2);
        let drop = match db.backend() {
            Backend::Sqlite => "DROP TRIGGER erasure_log_fail",
            Backend::Postgres => "DROP TRIGGER erasure_log_fail ON erasure_log",
        };
        db.execute_raw(drop).await.unwrap();

        let erased = store
            .erase_unit(&a, "cli:dpo", "member asked", at(30))
            .await
            .unwrap();
        assert_eq!(
            erased,
            ErasureOutcome {
                events: 6,
                exposures: 2,
                assignments: 2,
                consents: 2,
                survey_responses: 0,
                survey_invitations: 0,
            }
        );
        assert_eq!(store.count_events(&a_events).await.unwrap(), 0);
        assert!(store.get_assignment(trial, &a).await.unwrap().is_none());
        assert!(store
            .get_assignment(other_trial, &a)
            .await
            .unwrap()
            .is_none());
        assert!(store.consent_history(&a).await.unwrap().is_empty());
        // Unit b is untouched.
        let b_events = EventFilter {
            unit: Some(b.clone()),
            ..Default::default()
        };
        assert_eq!(store.count_events(&b_events).await.unwrap(), 4);
        assert!(store.get_assignment(trial, &b).await.unwrap().is_some());
        assert_eq!(store.consent_history(&b).await.unwrap().len(), 1);
        assert_eq!(
            store.arm_counts(trial).await.unwrap(),
            vec![("A".to_string(), 1, 1)]
        );
        assert_eq!(store.arm_counts(other_trial).await.unwrap(), vec![]);

        // Erasing again deletes nothing and is logged again.
        let again = store
            .erase_unit(&a, "cli:dpo", "member asked", at(40))
            .await
            .unwrap();
        assert_eq!(again, ErasureOutcome::default());
        let log = store.erasures_since(at(0)).await.unwrap();
        assert_eq!(log.len(), 2, "the failed erasure left no entry");
        assert_eq!(log[0].unit, a);
        assert_eq!(log[0].erased_at, at(30));
        assert_eq!(log[0].counts, erased);
        assert_eq!(log[0].actor.as_deref(), Some("cli:dpo"));
        assert_eq!(log[0].reason.as_deref(), Some("member asked"));
        assert_eq!(log[1].erased_at, at(40));
        assert_eq!(store.erasures_since(at(40)).await.unwrap().len(), 1);
        assert!(store.erasures_since(at(41)).await.unwrap().is_empty());

        // The log is append-only.
        let mut attempts = vec![
            "UPDATE erasure_log SET unit = erasure_log.unit",
            "DELETE FROM erasure_log",
        ];
        if db.backend() == Backend::Postgres {
            attempts.push("TRUNCATE erasure_log");
        }
        for sql in attempts {
            let err = db.execute_raw(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.erasures_since(at(0)).await.unwrap().len(), 2);
    })
    .await;
}
