//! Issue 10, item 12: starting (or resuming) a trial checks the running
//! trials in the transaction that starts it, and concluding stores the
//! metric snapshot in the transaction that concludes. Two stores on one
//! database stand for two replicas.

use super::*;

mod ship;
use commonlab_store::{
    CommunityCell, CommunityRows, MetricCell, MetricSnapshot, TrialRecord, TrialStatus,
};

/// Refuses a trial beside any running trial of the same flag.
fn same_flag(running: &[TrialRecord]) -> Option<String> {
    running
        .iter()
        .find(|t| t.flag_key == "checkout")
        .map(|t| format!("overlaps running trial '{}'", t.key))
}

fn snapshots(hash: &str, as_of: DateTime<Utc>, n: i64) -> Vec<MetricSnapshot> {
    let cell = MetricCell {
        arm: "control".into(),
        community: None,
        n,
        sum: 1.0,
        sum_squares: 1.0,
        x_sum: 0.0,
        x_sum_squares: 0.0,
        xy_sum: 0.0,
        d_sum: 0.0,
        d_sum_squares: 0.0,
        md_sum: 0.0,
        dx_sum: 0.0,
        y_cap: None,
        x_cap: None,
    };
    ["m1", "m2"]
        .iter()
        .map(|m| MetricSnapshot {
            metric: m.to_string(),
            spec_hash: hash.to_string(),
            as_of,
            computed_at: as_of,
            cells: vec![cell.clone()],
            // m2 as a community design keeps it: community × period cells.
            communities: (*m == "m2").then(|| CommunityRows {
                cells: vec![CommunityCell {
                    community: "north".into(),
                    period: 1,
                    n,
                    sum: 2.5,
                    sum_squares: 4.25,
                    d_sum: 0.0,
                    d_sum_squares: 0.0,
                    yd_sum: 0.0,
                    y_cap: Some(9.0),
                }],
                excluded_members: 3,
            }),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_starts_on_two_stores_have_one_winner() {
    both_backends(|db| async move {
        let one = db.store().clone();
        let two = db.connect_another().await;
        let h = hash_of(1);
        for round in 0..12 {
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            one.create_trial(&new_trial(&a, &h, 0)).await.unwrap();
            one.create_trial(&new_trial(&b, &h, 0)).await.unwrap();
            let start = |store: Store, key: String| {
                tokio::spawn(async move {
                    store
                        .start_trial_exclusive(&key, 1, None, &trial_change("go", 1), &same_flag)
                        .await
                })
            };
            let (ra, rb) = (start(one.clone(), a.clone()), start(two.clone(), b.clone()));
            let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
            let running = one.running_trials().await.unwrap();
            assert_eq!(
                running.len(),
                1,
                "{}: round {round}: {running:?}",
                db.backend()
            );
            let (winner, loser) = if ra.is_ok() { (a, rb) } else { (b, ra) };
            assert_eq!(running[0].key, winner);
            match loser.unwrap_err() {
                StoreError::InvalidState(m) => assert!(m.contains("overlaps running trial"), "{m}"),
                other => panic!("{other:?}"),
            }
            // The refused start changed nothing, not even the log.
            let log = one
                .trial_events(&format!(
                    "{}{round}",
                    if winner.starts_with('a') { 'b' } else { 'a' }
                ))
                .await
                .unwrap();
            assert_eq!(log.len(), 1, "only its creation");

            // A stopped trial resumes only if nothing overlapping started
            // meanwhile; resuming and starting at once: one winner.
            let stopped = [TrialStatus::Running];
            one.set_trial_status(
                &winner,
                &stopped,
                TrialStatus::Stopped,
                &trial_change("pause", 2),
            )
            .await
            .unwrap();
            let c = format!("c{round}");
            one.create_trial(&new_trial(&c, &h, 0)).await.unwrap();
            let resume = {
                let store = one.clone();
                let winner = winner.clone();
                tokio::spawn(async move {
                    store
                        .resume_trial_exclusive(&winner, &trial_change("on", 3), &same_flag)
                        .await
                })
            };
            let rc = start(two.clone(), c.clone());
            let (rr, rc) = (resume.await.unwrap(), rc.await.unwrap());
            assert!(
                rr.is_ok() != rc.is_ok(),
                "{}: round {round}: {rr:?} {rc:?}",
                db.backend()
            );
            assert_eq!(one.running_trials().await.unwrap().len(), 1);
            // Clear the way for the next round.
            for t in one.running_trials().await.unwrap() {
                one.set_trial_status(
                    &t.key,
                    &stopped,
                    TrialStatus::Stopped,
                    &trial_change("end", 4),
                )
                .await
                .unwrap();
            }
        }
        // Without an overlap, both start.
        one.create_trial(&new_trial("x", &h, 0)).await.unwrap();
        let none = |_: &[TrialRecord]| None;
        one.start_trial_exclusive("x", 1, None, &trial_change("go", 5), &none)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conclusion_and_its_snapshot_commit_together() {
    both_backends(|db| async move {
        let store = db.store();
        let trial_id = running_trial(store, "t").await;
        let trial = store.get_trial("t").await.unwrap().unwrap();
        let from = [TrialStatus::Running, TrialStatus::Stopped];

        // Amended since the snapshot was computed: nothing is written.
        store
            .amend_trial(
                "t",
                "[trial]\n#2",
                "{}",
                &hash_of(2),
                &trial_change("fix", 2),
            )
            .await
            .unwrap();
        let stale = snapshots(&trial.spec_hash, at(3), 1);
        let err = store
            .conclude_trial(
                "t",
                &from,
                &trial.spec_hash,
                trial.version,
                &stale,
                &trial_change("done", 3),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::SpecConflict { .. }), "{err:?}");
        assert!(store.metric_snapshots(trial_id).await.unwrap().is_empty());
        let now = store.get_trial("t").await.unwrap().unwrap();
        assert_eq!(now.status, TrialStatus::Running);

        // Not allowed from this status: nothing is written either.
        let err = store
            .conclude_trial(
                "t",
                &[TrialStatus::Stopped],
                &now.spec_hash,
                now.version,
                &snapshots(&now.spec_hash, at(4), 1),
                &trial_change("done", 4),
            )
            .await
            .unwrap_err();
        assert_invalid_state(err, "running");
        assert!(store.metric_snapshots(trial_id).await.unwrap().is_empty());

        // Two replicas conclude at once with their own snapshots: one
        // concludes, and the stored snapshot is the winner's.
        let two = db.connect_another().await;
        let conclude = |store: Store, secs: i64| {
            let hash = now.spec_hash.clone();
            let version = now.version;
            tokio::spawn(async move {
                let s = snapshots(&hash, at(secs), secs);
                store
                    .conclude_trial("t", &from, &hash, version, &s, &trial_change("done", secs))
                    .await
            })
        };
        let (r1, r2) = (conclude(store.clone(), 10), conclude(two.clone(), 20));
        let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
        let (winner, loser) = match (r1, r2) {
            (Ok(w), loser) | (loser, Ok(w)) => (w, loser),
            (a, b) => panic!("neither concluded: {a:?} {b:?}"),
        };
        assert_invalid_state(loser.unwrap_err(), "concluded");
        assert_eq!(winner.status, TrialStatus::Concluded);
        let stored = store.metric_snapshots(trial_id).await.unwrap();
        assert_eq!(stored.len(), 2);
        // The winner's snapshots, community cells included, read back whole.
        let secs = winner.concluded_at.unwrap().timestamp() - at(0).timestamp();
        assert_eq!(stored, snapshots(&now.spec_hash, at(secs), secs));
        for s in &stored {
            assert_eq!(Some(s.as_of), winner.concluded_at, "{}", db.backend());
            assert_eq!(
                s.cells[0].n,
                winner.concluded_at.unwrap().timestamp() - at(0).timestamp()
            );
        }
        let log: Vec<String> = store
            .trial_events("t")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(log, ["create", "start", "amend", "conclude"]);
    })
    .await;
}

/// Issue 12: a conclusion before the data were complete records a
/// `deviation` with its reason, in the transaction that concludes; a
/// refused conclusion records neither.
#[tokio::test]
async fn an_early_conclusion_records_its_deviation_in_the_same_transaction() {
    both_backends(|db| async move {
        let store = db.store();
        let trial_id = running_trial(store, "t").await;
        let trial = store.get_trial("t").await.unwrap().unwrap();
        let from = [TrialStatus::Running, TrialStatus::Stopped];
        let why = "concluded before the data were complete: the ethics board stopped it";

        // No reason: refused before anything is written.
        let err = store
            .conclude_trial_with_deviation(
                "t",
                &from,
                &trial.spec_hash,
                trial.version,
                &snapshots(&trial.spec_hash, at(5), 1),
                &trial_change("done", 5),
                " ",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidState(m) if m.contains("needs a reason")),
            "{err:?}"
        );
        // A stale spec: neither the conclusion nor the deviation.
        let err = store
            .conclude_trial_with_deviation(
                "t",
                &from,
                &hash_of(9),
                trial.version,
                &snapshots(&hash_of(9), at(5), 1),
                &trial_change("done", 5),
                why,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::SpecConflict { .. }), "{err:?}");
        let log = |store: Store| async move {
            store
                .trial_events("t")
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.action, e.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(log(store.clone()).await.len(), 2, "create and start only");

        let done = store
            .conclude_trial_with_deviation(
                "t",
                &from,
                &trial.spec_hash,
                trial.version,
                &snapshots(&trial.spec_hash, at(6), 1),
                &trial_change("done", 6),
                why,
            )
            .await
            .unwrap();
        assert_eq!(done.status, TrialStatus::Concluded);
        assert_eq!(store.metric_snapshots(trial_id).await.unwrap().len(), 2);
        let events = store.trial_events("t").await.unwrap();
        let tail: Vec<(&str, &str, i64)> = events[2..]
            .iter()
            .map(|e| (e.action.as_str(), e.reason.as_str(), e.version))
            .collect();
        assert_eq!(tail, [("conclude", "done", 1), ("deviation", why, 1)]);
        assert_eq!(events[3].created_at, events[2].created_at);
        assert_eq!(events[3].seq, events[2].seq + 1);
    })
    .await;
}
