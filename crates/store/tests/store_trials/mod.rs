//! Trials: the lifecycle from draft to archived with its event log, the
//! guards on each change, and the append-only log.

use super::*;

#[tokio::test]
async fn trial_lifecycle_and_events() {
    both_backends(|db| async move {
        let store = db.store();
        let v0 = store.trials_version().await.unwrap();
        assert!(store.get_trial("t").await.unwrap().is_none());
        assert!(store.trial_events("t").await.unwrap().is_empty());

        let (h1, h2, h3) = (hash_of(1), hash_of(2), hash_of(3));
        let precise = DateTime::from_timestamp(1_750_000_000, 123_456_789).unwrap();
        let created = store
            .create_trial(&NewTrial {
                at: precise,
                ..new_trial("t", &h1, 0)
            })
            .await
            .unwrap();
        assert_eq!(created.key, "t");
        assert_eq!(created.flag_key, "checkout");
        assert_eq!(created.status, TrialStatus::Draft);
        assert_eq!(created.version, 1);
        assert_eq!(created.seed, None);
        assert_eq!(created.allocation, None);
        assert_eq!(created.spec_source, "[trial]\nkey = \"x\" # ü\n");
        assert_eq!(created.created_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(created.updated_at, created.created_at);
        assert_eq!(created.started_at, None);
        assert_eq!(store.get_trial("t").await.unwrap(), Some(created.clone()));
        let v1 = store.trials_version().await.unwrap();
        assert!(v1 > v0);

        // Draft edits, optimistic on the spec hash.
        let updated = store
            .update_draft_spec("t", &h1, "src2", "{\"v\":2}", &h2, "checkout2", &trial_change("edit", 2))
            .await
            .unwrap();
        assert_eq!(updated.spec_hash, h2);
        assert_eq!(updated.spec_source, "src2");
        assert_eq!(updated.spec_canonical, "{\"v\":2}");
        assert_eq!(updated.flag_key, "checkout2");
        assert_eq!(updated.version, 1);
        assert_eq!(updated.updated_at, at(2));
        let v2 = store.trials_version().await.unwrap();
        assert!(v2 > v1);
        let err = store
            .update_draft_spec("t", &h1, "src3", "{}", &h3, "checkout", &trial_change("edit", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::SpecConflict { expected, current } if *expected == h1 && *current == h2),
            "{err:?}"
        );
        let err = store
            .update_draft_spec("nope", &h1, "s", "{}", &h3, "f", &trial_change("edit", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(what) if what == "trial 'nope'"),
            "{err:?}"
        );

        // Amending a draft is refused; so is concluding it.
        assert_invalid_state(
            store
                .amend_trial("t", "s", "{}", &h3, &trial_change("amend", 3))
                .await
                .unwrap_err(),
            "draft",
        );
        assert_invalid_state(
            store
                .set_trial_status("t", &[TrialStatus::Running], TrialStatus::Concluded, &trial_change("x", 3))
                .await
                .unwrap_err(),
            "draft",
        );
        assert_eq!(store.trials_version().await.unwrap(), v2);

        // Start.
        let started = store
            .start_trial("t", -7, Some("{\"c1\":\"treatment\"}"), &trial_change("go", 4))
            .await
            .unwrap();
        assert_eq!(started.status, TrialStatus::Running);
        assert_eq!(started.seed, Some(-7));
        assert_eq!(started.allocation.as_deref(), Some("{\"c1\":\"treatment\"}"));
        assert_eq!(started.started_at, Some(at(4)));
        assert_eq!(store.running_trials().await.unwrap(), vec![started.clone()]);
        assert_invalid_state(
            store
                .start_trial("t", 1, None, &trial_change("again", 5))
                .await
                .unwrap_err(),
            "running",
        );
        assert_invalid_state(
            store
                .update_draft_spec("t", &h2, "s", "{}", &h3, "f", &trial_change("edit", 5))
                .await
                .unwrap_err(),
            "running",
        );

        // Amend while running, stop, amend while stopped, restart.
        let amended = store
            .amend_trial("t", "src3", "{\"v\":3}", &h3, &trial_change("fix typo in arm label", 6))
            .await
            .unwrap();
        assert_eq!(amended.version, 2);
        assert_eq!(amended.spec_hash, h3);
        assert_eq!(amended.seed, Some(-7), "amend keeps the seed");
        let stopped = store
            .set_trial_status("t", &[TrialStatus::Running], TrialStatus::Stopped, &trial_change("pause", 7))
            .await
            .unwrap();
        assert_eq!(stopped.status, TrialStatus::Stopped);
        assert_eq!(stopped.stopped_at, Some(at(7)));
        assert!(store.running_trials().await.unwrap().is_empty());
        let amended = store
            .amend_trial("t", "src4", "{\"v\":4}", &h2, &trial_change("more", 8))
            .await
            .unwrap();
        assert_eq!(amended.version, 3);
        let restarted = store
            .set_trial_status("t", &[TrialStatus::Stopped], TrialStatus::Running, &trial_change("resume", 9))
            .await
            .unwrap();
        assert_eq!(restarted.status, TrialStatus::Running);
        assert_eq!(restarted.started_at, Some(at(4)), "a restart keeps the first start");
        assert_invalid_state(
            store
                .set_trial_status("t", &[TrialStatus::Stopped], TrialStatus::Concluded, &trial_change("x", 10))
                .await
                .unwrap_err(),
            "running",
        );
        let concluded = store
            .set_trial_status(
                "t",
                &[TrialStatus::Running, TrialStatus::Stopped],
                TrialStatus::Concluded,
                &trial_change("done", 10),
            )
            .await
            .unwrap();
        assert_eq!(concluded.concluded_at, Some(at(10)));
        assert_invalid_state(
            store
                .amend_trial("t", "s", "{}", &h1, &trial_change("late", 11))
                .await
                .unwrap_err(),
            "concluded",
        );
        let archived = store
            .set_trial_status("t", &[TrialStatus::Concluded], TrialStatus::Archived, &trial_change("tidy", 12))
            .await
            .unwrap();
        assert_eq!(archived.status, TrialStatus::Archived);
        assert_eq!(archived.archived_at, Some(at(12)));
        assert_eq!(archived.updated_at, at(12));
        assert_eq!(archived.version, 3);
        assert_eq!(store.get_trial("t").await.unwrap(), Some(archived.clone()));

        let events = store.trial_events("t").await.unwrap();
        let summary: Vec<(i64, &str, i64, &str)> = events
            .iter()
            .map(|e| (e.seq, e.action.as_str(), e.version, e.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "create", 1, "new trial"),
                (2, "update", 1, "edit"),
                (3, "start", 1, "go"),
                (4, "amend", 2, "fix typo in arm label"),
                (5, "stop", 2, "pause"),
                (6, "amend", 3, "more"),
                (7, "start", 3, "resume"),
                (8, "conclude", 3, "done"),
                (9, "archive", 3, "tidy"),
            ]
        );
        assert_eq!(events[0].actor, "cli:alice");
        assert_eq!(events[0].spec_hash, h1);
        assert_eq!(events[0].created_at, created.created_at);
        assert_eq!(events[3].spec_hash, h3);
        assert_eq!(events[3].actor, "cli:bob");
        assert_eq!(events[8].created_at, at(12));

        // Listing and status parsing.
        let other = store.create_trial(&new_trial("a-first", &h1, 20)).await.unwrap();
        assert_eq!(store.list_trials(None).await.unwrap(), vec![other.clone(), archived.clone()]);
        assert_eq!(store.list_trials(Some(TrialStatus::Draft)).await.unwrap(), vec![other]);
        assert!(store.list_trials(Some(TrialStatus::Stopped)).await.unwrap().is_empty());
        for status in TrialStatus::ALL {
            assert_eq!(status.as_str().parse::<TrialStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("paused".parse::<TrialStatus>().is_err());
        let json = serde_json::to_value(&archived).unwrap();
        assert_eq!(json["status"], "archived");
        assert_eq!(json["version"], 3);
    })
    .await;
}

#[tokio::test]
async fn trial_changes_are_guarded() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(9);
        store.create_trial(&new_trial("k", &h, 0)).await.unwrap();
        let v = store.trials_version().await.unwrap();

        let err = store
            .create_trial(&new_trial("k", &h, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what == "trial 'k'"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "trial 'k' already exists");

        // Refused outright.
        for (from, to) in [
            (vec![TrialStatus::Running], TrialStatus::Draft),
            (vec![TrialStatus::Draft], TrialStatus::Running),
            (vec![], TrialStatus::Stopped),
        ] {
            let err = store
                .set_trial_status("k", &from, to, &trial_change("x", 2))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidState(_)),
                "{from:?} -> {to}: {err:?}"
            );
        }
        let err = store
            .set_trial_status(
                "missing",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &trial_change("x", 2),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = store
            .start_trial("missing", 1, None, &trial_change("x", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

        // The database refuses an empty reason and a malformed hash.
        let err = store
            .start_trial("k", 1, None, &trial_change("", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(
            store.get_trial("k").await.unwrap().unwrap().status,
            TrialStatus::Draft
        );
        let err = store
            .create_trial(&new_trial("bad-hash", "XYZ", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert!(store.get_trial("bad-hash").await.unwrap().is_none());
        assert_eq!(store.trials_version().await.unwrap(), v);
        assert_eq!(store.trial_events("k").await.unwrap().len(), 1);

        // Two concurrent stops: one wins, the other learns the trial is stopped.
        store
            .start_trial("k", 1, None, &trial_change("go", 3))
            .await
            .unwrap();
        let other = db.connect_another().await;
        let (change_a, change_b) = (trial_change("a", 4), trial_change("b", 4));
        let (a, b) = tokio::join!(
            store.set_trial_status(
                "k",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &change_a
            ),
            other.set_trial_status(
                "k",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &change_b
            ),
        );
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("expected one winner: {other:?}"),
        };
        assert_eq!(won.status, TrialStatus::Stopped);
        assert_invalid_state(lost, "stopped");
        let actions: Vec<String> = store
            .trial_events("k")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["create", "start", "stop"]);
        other.close().await;
    })
    .await;
}

#[tokio::test]
async fn trial_events_cannot_be_updated_or_deleted() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(1);
        store.create_trial(&new_trial("t", &h, 0)).await.unwrap();
        store
            .start_trial("t", 5, None, &trial_change("go", 1))
            .await
            .unwrap();
        let mut attempts = vec![
            "UPDATE trial_events SET reason = 'rewritten'",
            "UPDATE trial_events SET action = 'stop' WHERE seq = 2",
            "DELETE FROM trial_events WHERE seq = 1",
            "DELETE FROM trial_events",
        ];
        if db.backend() == Backend::Postgres {
            attempts.push("TRUNCATE trial_events");
        }
        for sql in attempts {
            let err = db.execute_raw(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        let err = db.execute_raw("DELETE FROM trials").await.unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("foreign key"),
            "{err}"
        );
        let events = store.trial_events("t").await.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].reason, "go");
    })
    .await;
}
