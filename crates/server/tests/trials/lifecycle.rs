//! Issue 10, item 12: two replicas (two stores on one database) changing
//! trials at once. Overlapping starts: one wins, the other is refused.
//! Concurrent conclusions: one concludes, and the stored snapshot is the
//! one computed for that conclusion.

use super::*;
use commonlab_server::service::ChangeMeta;
use commonlab_server::trial_service::{self, Move};
use commonlab_store::{Store, TrialStatus};

fn keyed(source: &str, key: &str) -> String {
    let old = parse_trial(source, "t").unwrap().key;
    source.replacen(&format!("key = \"{old}\""), &format!("key = \"{key}\""), 1)
}

async fn create(store: &Store, source: &str) {
    let meta = ChangeMeta {
        actor: "test",
        reason: "plan",
        at: at("2026-06-01T12:00:00Z"),
    };
    trial_service::create(store, "default", source, "t.toml", &meta)
        .await
        .unwrap();
}

fn start(store: Store, key: String) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        let meta = ChangeMeta {
            actor: "test",
            reason: "go",
            at: at("2026-06-01T12:00:01Z"),
        };
        trial_service::start(&store, "default", &key, &meta)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

fn conclude(
    store: Store,
    key: String,
    when: &'static str,
) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        let meta = ChangeMeta {
            actor: "test",
            reason: "done",
            at: at(when),
        };
        // Mid-schedule: forced (the conclusion is what this test is about).
        trial_service::conclude(&store, &key, &meta, true)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_trials_started_on_two_replicas_at_once_have_one_winner() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.stop().await;
        let (one, two) = (db.store().clone(), db.connect_another().await);
        for round in 0..10 {
            let (a, b) = (format!("hash-a-{round}"), format!("hash-b-{round}"));
            create(&one, &keyed(HASH, &a)).await;
            create(&one, &keyed(HASH_RIVAL, &b)).await;
            let (ra, rb) = (start(one.clone(), a.clone()), start(two.clone(), b.clone()));
            let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
            let running: Vec<String> = one
                .running_trials()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.key)
                .collect();
            assert_eq!(
                running.len(),
                1,
                "{}: round {round}: both started: {running:?}",
                db.backend()
            );
            let loser = if ra.is_ok() { rb } else { ra };
            assert!(loser.unwrap_err().contains("overlaps running trial"));
            let meta = ChangeMeta {
                actor: "test",
                reason: "next",
                at: at("2026-06-01T12:00:02Z"),
            };
            trial_service::transition(&one, &running[0], Move::Stop, &meta)
                .await
                .unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_concluded_on_two_replicas_at_once_keeps_its_own_snapshot() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.stop().await;
        let (one, two) = (db.store().clone(), db.connect_another().await);
        for round in 0..10 {
            let key = format!("hash-c-{round}");
            create(&one, &keyed(HASH, &key)).await;
            start(one.clone(), key.clone()).await.unwrap().unwrap();
            let r1 = conclude(one.clone(), key.clone(), "2026-07-01T00:00:00Z");
            let r2 = conclude(two.clone(), key.clone(), "2026-08-01T00:00:00Z");
            let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
            assert!(r1.is_ok() != r2.is_ok(), "round {round}: {r1:?} {r2:?}");
            let trial = one.get_trial(&key).await.unwrap().unwrap();
            assert_eq!(trial.status, TrialStatus::Concluded);
            let snapshots = one.metric_snapshots(trial.id).await.unwrap();
            assert!(!snapshots.is_empty());
            for s in snapshots {
                assert_eq!(
                    Some(s.as_of),
                    trial.concluded_at,
                    "{}: round {round}: the loser's snapshot was kept",
                    db.backend()
                );
            }
        }
    })
    .await;
}
