//! Deviations: a flag-set revision that changes a flag a running trial
//! controls records a `deviation` event in that trial's log, in the same
//! transaction (issue #10, item 19).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;
use commonlab_store::{FlagDeviation, NewTrial};

fn deviation<'a>(flag_key: &'a str, reason: &'a str) -> FlagDeviation<'a> {
    FlagDeviation { flag_key, reason }
}

#[tokio::test]
async fn a_change_to_a_running_trials_flag_is_a_deviation_in_its_log() {
    both_backends(|db| async move {
        let store = db.connect_another().await;
        running_trial(&store, "t").await; // flag "checkout"
        let h = hash_of(2);
        store
            .create_trial(&new_trial("draft", &h, 0))
            .await
            .unwrap();
        let other = NewTrial {
            flag_key: "search",
            ..new_trial("other", &h, 0)
        };
        store.create_trial(&other).await.unwrap();
        store
            .start_trial("other", 7, None, &trial_change("go", 1))
            .await
            .unwrap();

        let doc = r#"{"flags":{}}"#;
        let (rev, noted) = store
            .append_flag_set_revision_with_deviations(
                "default",
                0,
                &change(doc, "set-state", Some("checkout"), 5),
                &[deviation("checkout", "flag 'checkout' disabled")],
            )
            .await
            .unwrap();
        assert_eq!(rev.revision, 1);
        assert_eq!(noted, ["t"]);
        let events = store.trial_events("t").await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.action, "deviation");
        assert_eq!(last.actor, "cli:alice");
        assert_eq!(last.reason, "flag 'checkout' disabled");
        assert_eq!(last.created_at, at(5));
        let trial = store.get_trial("t").await.unwrap().unwrap();
        assert_eq!(
            (last.spec_hash.as_str(), last.version),
            (trial.spec_hash.as_str(), trial.version)
        );
        assert_eq!(trial.status, commonlab_store::TrialStatus::Running);
        // Neither a draft nor a trial of another flag records it.
        for key in ["draft", "other"] {
            let events = store.trial_events(key).await.unwrap();
            assert!(events.iter().all(|e| e.action != "deviation"), "{key}");
        }

        // A change nobody's trial controls records nothing.
        let (_, noted) = store
            .append_flag_set_revision_with_deviations(
                "default",
                1,
                &change(doc, "set-state", Some("nobody"), 6),
                &[deviation("nobody", "x")],
            )
            .await
            .unwrap();
        assert!(noted.is_empty());

        // A stale revision stores neither the revision nor the deviation.
        let before = store.trial_events("t").await.unwrap().len();
        let err = store
            .append_flag_set_revision_with_deviations(
                "default",
                1,
                &change(doc, "set-state", Some("checkout"), 7),
                &[deviation("checkout", "late")],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { current: 2, .. }),
            "{err:?}"
        );
        assert_eq!(store.trial_events("t").await.unwrap().len(), before);

        // Several flags at once (an import), and the log stays append-only.
        let (_, noted) = store
            .append_flag_set_revision_with_deviations(
                "default",
                2,
                &change(doc, "import", None, 8),
                &[
                    deviation("search", "search changed"),
                    deviation("checkout", "checkout changed"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(noted, ["t", "other"]);
        let seqs: Vec<i64> = store
            .trial_events("t")
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    })
    .await;
}

/// Dropped at every await point in turn on a one-connection pool: the
/// revision and its deviation are stored together or not at all.
#[tokio::test]
async fn a_revision_and_its_deviation_are_all_or_nothing_when_dropped() {
    struct DropAfter<F> {
        op: Pin<Box<F>>,
        left: usize,
    }
    impl<F: Future> Future for DropAfter<F> {
        type Output = Option<F::Output>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.left -= 1;
            match self.op.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Some(out)),
                Poll::Pending if self.left == 0 => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        }
    }
    both_backends(|db| async move {
        let store = db.connect_another_with(1).await;
        running_trial(&store, "t").await;
        let doc = r#"{"flags":{}}"#;
        for polls in 1..=400 {
            let expected = store
                .flag_set_head("default")
                .await
                .unwrap()
                .map_or(0, |h| h.revision);
            let events = store.trial_events("t").await.unwrap().len();
            let reason = format!("attempt {polls}");
            let revision = change(doc, "set-state", Some("checkout"), polls as i64);
            let deviations = [deviation("checkout", &reason)];
            let op = store.append_flag_set_revision_with_deviations(
                "default",
                expected,
                &revision,
                &deviations,
            );
            let outcome = DropAfter {
                op: Box::pin(op),
                left: polls,
            }
            .await;
            // A write on the one connection: whatever the dropped write
            // left running has finished (committed or rolled back).
            let id = format!("{polls:012x}");
            store
                .insert_api_key(&key(&id, &id, "sdk", 1))
                .await
                .unwrap();
            let head = store
                .flag_set_head("default")
                .await
                .unwrap()
                .map_or(0, |h| h.revision);
            let after = store.trial_events("t").await.unwrap();
            let noted = after.len() - events;
            assert_eq!(
                (head - expected) as usize,
                noted,
                "dropped after {polls} polls: revision and deviation disagree"
            );
            if noted == 1 {
                assert_eq!(after.last().unwrap().reason, reason);
            }
            if let Some(done) = outcome {
                done.unwrap();
                return;
            }
        }
        panic!("not done after 400 polls");
    })
    .await;
}

/// Migration 0007 on a database that already has trial events: every row
/// is kept, `deviation` is accepted, the log stays append-only.
#[tokio::test]
async fn migration_0007_keeps_the_trial_log() {
    for backend in BACKENDS {
        let db = TestDb::unmigrated(backend).await;
        let dir = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let read = |name: &str| std::fs::read_to_string(root.join(dir).join(name)).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let (before, from_7): (Vec<String>, Vec<String>) =
            files.into_iter().partition(|f| f.as_str() < "0007");
        for f in &before {
            db.execute_raw(&read(f)).await.unwrap();
        }
        db.execute_raw(
            "INSERT INTO trials (key, flag_key, status, spec_source, spec_canonical, spec_hash, \
             version, created_at, updated_at) VALUES ('t', 'f', 'draft', 's', '{}', 'abababababababababababababababababababababababababababababababab', 1, \
             '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
        )
        .await
        .unwrap();
        for seq in 1..=3 {
            db.execute_raw(&format!(
                "INSERT INTO trial_events (trial_id, seq, action, actor, reason, spec_hash, version, created_at) \
                 SELECT id, {seq}, 'create', 'a', 'r{seq}', 'abababababababababababababababababababababababababababababababab', 1, '2026-01-01T00:00:00.000000Z' FROM trials"
            ))
            .await
            .unwrap();
        }
        assert!(db
            .execute_raw("INSERT INTO trial_events SELECT id, 4, 'deviation', 'a', 'r', 'abababababababababababababababababababababababababababababababab', 1, '2026-01-01T00:00:00.000000Z' FROM trials")
            .await
            .is_err());
        assert_eq!(
            from_7.first().map(String::as_str),
            Some("0007_trial_deviations.sql")
        );
        db.execute_raw(&read(&from_7[0])).await.unwrap();
        let reasons = db
            .fetch_text_raw("SELECT string_agg(reason, ',' ORDER BY seq) FROM trial_events")
            .await;
        let reasons = match reasons {
            Ok(r) => r,
            // SQLite has no ordered string_agg.
            Err(_) => db
                .fetch_text_raw("SELECT group_concat(reason, ',') FROM (SELECT reason FROM trial_events ORDER BY seq)")
                .await
                .unwrap(),
        };
        assert_eq!(reasons.as_deref(), Some("r1,r2,r3"), "{backend}");
        db.execute_raw("INSERT INTO trial_events SELECT id, 4, 'deviation', 'a', 'r4', 'abababababababababababababababababababababababababababababababab', 1, '2026-01-01T00:00:00.000000Z' FROM trials")
            .await
            .unwrap();
        assert!(db.execute_raw("INSERT INTO trial_events SELECT id, 5, 'nonsense', 'a', 'r', 'abababababababababababababababababababababababababababababababab', 1, '2026-01-01T00:00:00.000000Z' FROM trials").await.is_err());
        assert!(
            db.execute_raw("UPDATE trial_events SET reason = 'x'")
                .await
                .is_err(),
            "{backend}"
        );
        assert!(
            db.execute_raw("DELETE FROM trial_events").await.is_err(),
            "{backend}"
        );
        db.cleanup().await;
    }
}
