//! A forced conclusion (`Store::conclude_trial_with_deviation`): its
//! conclude and deviation events and its snapshot, all or nothing when the
//! caller is dropped at each await point.

use super::*;

/// Runs the forced conclusion of a new trial at every drop point; the
/// number of points.
pub(super) async fn conclusion(store: &Store, h: &str) -> usize {
    store.create_trial(&trial("td", h)).await.unwrap();
    let td = store.start_trial("td", 7, None, &by("go")).await.unwrap();
    at_every_point(
        store,
        "conclude_trial_with_deviation",
        |_| {
            let (hash, version) = (td.spec_hash.clone(), td.version);
            Box::pin(async move {
                let snapshots = vec![MetricSnapshot {
                    metric: "d0".into(),
                    spec_hash: hash.clone(),
                    as_of: at(20),
                    computed_at: at(20),
                    cells: vec![cell("arm0")],
                    communities: None,
                }];
                let from = [TrialStatus::Running];
                match store
                    .conclude_trial_with_deviation(
                        "td",
                        &from,
                        &hash,
                        version,
                        &snapshots,
                        &by("done"),
                        "early",
                    )
                    .await
                {
                    Err(StoreError::InvalidState(m)) if m.contains("is concluded") => {
                        store.get_trial("td").await.map(Option::unwrap)
                    }
                    other => other,
                }
            })
        },
        |_, _| {
            Box::pin(async move {
                let t = store.get_trial("td").await.unwrap().unwrap();
                let log: Vec<String> = store
                    .trial_events("td")
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.action)
                    .collect();
                let stored = store.metric_snapshots(t.id).await.unwrap();
                if t.status == TrialStatus::Concluded {
                    assert_eq!(log, ["create", "start", "conclude", "deviation"]);
                    assert_eq!(stored.len(), 1);
                } else {
                    assert_eq!(log, ["create", "start"], "{t:?}");
                    assert!(stored.is_empty());
                }
            })
        },
    )
    .await
}
