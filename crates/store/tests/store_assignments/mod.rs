//! Assignments: fixed ones stick, blocked designs take consecutive
//! positions per stratum, also under concurrent writers.

use super::*;

#[tokio::test]
async fn fixed_assignments_are_sticky() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "hash").await;
        let other_trial = running_trial(store, "other").await;
        let u = unit(1);
        assert!(store.get_assignment(trial, &u).await.unwrap().is_none());

        let (first, created) = store
            .assign_fixed(&NewAssignment {
                community: Some("north"),
                stratum: Some("s1"),
                ..fixed(trial, &u, "treatment", 1)
            })
            .await
            .unwrap();
        assert!(created);
        assert_eq!(first.trial_id, trial);
        assert_eq!(first.unit, u);
        assert_eq!(first.arm, "treatment");
        assert_eq!(first.community.as_deref(), Some("north"));
        assert_eq!(first.stratum.as_deref(), Some("s1"));
        assert_eq!(first.position, None);
        assert_eq!(first.trial_version, 1);
        assert_eq!(first.assigned_at, at(1));

        // A later (even different) assignment of the same unit returns the first.
        let (again, created) = store
            .assign_fixed(&NewAssignment {
                trial_version: 2,
                ..fixed(trial, &u, "control", 2)
            })
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, first);
        assert_eq!(
            store.get_assignment(trial, &u).await.unwrap(),
            Some(first.clone())
        );

        // Another trial is independent.
        let (elsewhere, created) = store
            .assign_fixed(&fixed(other_trial, &u, "control", 3))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(elsewhere.arm, "control");

        // Concurrent first assignments from several stores: one sticks.
        let stores = [
            store.clone(),
            db.connect_another().await,
            db.connect_another().await,
        ];
        let u2 = unit(2);
        let mut tasks = Vec::new();
        for (i, s) in stores.iter().cycle().take(9).enumerate() {
            let s = s.clone();
            let u2 = u2.clone();
            tasks.push(tokio::spawn(async move {
                let arm = format!("arm{i}");
                s.assign_fixed(&fixed(trial, &u2, &arm, 4)).await.unwrap()
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        assert!(results.iter().all(|(r, _)| *r == results[0].0));

        // Malformed units and unknown trials are refused by the database.
        for bad in [
            fixed(trial, "ABC", "a", 5),
            fixed(trial + 1000, &u2, "a", 5),
        ] {
            let err = store.assign_fixed(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        }
        for s in &stores[1..] {
            s.close().await;
        }
    })
    .await;
}

fn arm_by_block(position: i64) -> String {
    // Blocks of 4: AABB.
    if position % 4 < 2 { "A" } else { "B" }.to_string()
}

#[tokio::test]
async fn sequential_assignments_take_consecutive_positions_per_stratum() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "blocked").await;
        let seq = |n: u64, stratum: Option<&'static str>| {
            let u = unit(n);
            let store = store.clone();
            async move {
                store
                    .assign_sequential(
                        &NewSequentialAssignment {
                            trial_id: trial,
                            unit: &u,
                            stratum,
                            community: None,
                            trial_version: 1,
                            at: at(n as i64),
                        },
                        &arm_by_block,
                    )
                    .await
                    .unwrap()
            }
        };
        let mut got = Vec::new();
        for (n, stratum) in [
            (1, Some("young")),
            (2, Some("old")),
            (3, Some("young")),
            (4, None),
            (5, Some("young")),
            (6, None),
            (7, Some("old")),
            (8, Some("young")),
        ] {
            let (a, created) = seq(n, stratum).await;
            assert!(created, "{n}");
            assert_eq!(a.stratum.as_deref(), stratum);
            assert_eq!(a.assigned_at, at(n as i64));
            got.push((n, a.position.unwrap(), a.arm));
        }
        let expected: Vec<(u64, i64, String)> = [
            (1, 0, "A"),
            (2, 0, "A"),
            (3, 1, "A"),
            (4, 0, "A"),
            (5, 2, "B"),
            (6, 1, "A"),
            (7, 1, "A"),
            (8, 3, "B"),
        ]
        .into_iter()
        .map(|(n, p, arm)| (n, p, arm.to_string()))
        .collect();
        assert_eq!(got, expected);

        // Returning units keep their assignment and take no position.
        let (again, created) = seq(3, Some("young")).await;
        assert!(!created);
        assert_eq!(again.position, Some(1));
        let (next, created) = seq(9, Some("young")).await;
        assert!(created);
        assert_eq!(next.position, Some(4));
        assert_eq!(next.arm, "A");
    })
    .await;
}

/// 4 stores (as if 4 server processes) × 4 tasks each assign the same 50
/// new units, in different orders: every unit gets exactly one assignment
/// and each stratum's positions are exactly 0..n.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sequential_assignments_have_no_gaps_or_duplicates() {
    use rand::seq::SliceRandom;
    use std::collections::{BTreeMap, BTreeSet};

    both_backends(|db| async move {
        let trial = running_trial(db.store(), "race").await;
        let mut stores = vec![db.store().clone()];
        for _ in 0..3 {
            stores.push(db.connect_another().await);
        }
        const UNITS: u64 = 50;
        let stratum_of = |n: u64| -> Option<&'static str> {
            match n % 3 {
                0 => None,
                1 => Some("s1"),
                _ => Some("s2"),
            }
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for task in 0..16usize {
            let store = stores[task % stores.len()].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let mut order: Vec<u64> = (0..UNITS).collect();
                order.shuffle(&mut rand::rng());
                barrier.wait().await;
                let mut results = Vec::new();
                for n in order {
                    let u = unit(n);
                    let a = NewSequentialAssignment {
                        trial_id: trial,
                        unit: &u,
                        stratum: stratum_of(n),
                        community: Some("c"),
                        trial_version: 1,
                        at: at(100),
                    };
                    let (record, created) = store
                        .assign_sequential(&a, &arm_by_block)
                        .await
                        .unwrap_or_else(|e| panic!("task {task}, unit {n}: {e:?}"));
                    results.push((n, record, created));
                }
                results
            }));
        }
        let mut by_unit: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for t in tasks {
            for (n, record, created) in t.await.unwrap() {
                by_unit.entry(n).or_default().push((record, created));
            }
        }
        assert_eq!(by_unit.len(), UNITS as usize);
        for (n, results) in &by_unit {
            assert_eq!(results.len(), 16);
            let created = results.iter().filter(|(_, c)| *c).count();
            assert_eq!(created, 1, "unit {n} created {created} times");
            assert!(
                results.iter().all(|(r, _)| *r == results[0].0),
                "unit {n}: {results:?}"
            );
        }

        let stored = db
            .store()
            .export_assignments(trial, None, 1000)
            .await
            .unwrap();
        assert_eq!(stored.len(), UNITS as usize);
        let mut positions: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for a in &stored {
            positions
                .entry(a.stratum.clone())
                .or_default()
                .push(a.position.unwrap());
            assert_eq!(a.arm, arm_by_block(a.position.unwrap()));
            let n = u64::from_str_radix(&a.unit, 16).unwrap();
            assert_eq!(a.stratum.as_deref(), stratum_of(n));
            assert_eq!(by_unit[&n][0].0.position, a.position);
        }
        assert_eq!(positions.len(), 3);
        for (stratum, mut got) in positions {
            got.sort();
            let n = got.len() as i64;
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "stratum {stratum:?}");
            let distinct: BTreeSet<i64> = got.into_iter().collect();
            assert_eq!(distinct.len() as i64, n);
        }
        for store in &stores[1..] {
            store.close().await;
        }
    })
    .await;
}
