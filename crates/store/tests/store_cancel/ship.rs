//! A conclusion that ships (`Store::conclude_trial_and_ship`): the
//! conclusion, its snapshot and the flag-set revision all or nothing when
//! the caller is dropped at each await point.

use super::*;
use commonlab_store::{FlagSetAppend, NewRevision};

const SET: &str = "ship-set";

fn revision<'a>(document: &'a str, action: &'a str) -> NewRevision<'a> {
    NewRevision {
        document,
        actor: "cli:ana",
        action,
        flag_key: None,
        reason: "ship",
        at: at(30),
    }
}

/// Runs the shipping conclusion of a new trial at every drop point; the
/// number of points.
pub(super) async fn conclusion(store: &Store, h: &str) -> usize {
    store.create_trial(&trial("ts", h)).await.unwrap();
    let ts = store.start_trial("ts", 7, None, &by("go")).await.unwrap();
    store
        .append_flag_set_revision(SET, 0, &revision("{\"flags\":{}}", "import"))
        .await
        .unwrap();
    at_every_point(
        store,
        "conclude_trial_and_ship",
        |_| {
            let (hash, version) = (ts.spec_hash.clone(), ts.version);
            Box::pin(async move {
                let snapshots = vec![MetricSnapshot {
                    metric: "s0".into(),
                    spec_hash: hash.clone(),
                    as_of: at(30),
                    computed_at: at(30),
                    cells: vec![cell("arm0")],
                    communities: None,
                }];
                let from = [TrialStatus::Running];
                let ship = FlagSetAppend {
                    set: SET,
                    expected: 1,
                    change: revision("{\"flags\":{\"x\":{}}}", "ship"),
                    deviations: &[],
                };
                match store
                    .conclude_trial_and_ship(
                        "ts",
                        &from,
                        &hash,
                        version,
                        &snapshots,
                        &by("done"),
                        Some("early"),
                        &ship,
                    )
                    .await
                {
                    Err(StoreError::InvalidState(m)) if m.contains("is concluded") => {
                        store.get_trial("ts").await.map(Option::unwrap)
                    }
                    other => other.map(|(t, _, _)| t),
                }
            })
        },
        |_, _| {
            Box::pin(async move {
                let t = store.get_trial("ts").await.unwrap().unwrap();
                let log: Vec<String> = store
                    .trial_events("ts")
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.action)
                    .collect();
                let stored = store.metric_snapshots(t.id).await.unwrap();
                let head = store.flag_set_head(SET).await.unwrap().unwrap();
                if t.status == TrialStatus::Concluded {
                    assert_eq!(log, ["create", "start", "conclude", "deviation"]);
                    assert_eq!(stored.len(), 1);
                    assert_eq!((head.revision, head.action.as_str()), (2, "ship"));
                } else {
                    assert_eq!(log, ["create", "start"], "{t:?}");
                    assert!(stored.is_empty());
                    assert_eq!(head.revision, 1, "a revision without its conclusion");
                }
            })
        },
    )
    .await
}
