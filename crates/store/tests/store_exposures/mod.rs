//! Exposures: the first one of a unit is kept, large batches, and the
//! export of assignments with their exposures.

use super::*;

#[tokio::test]
async fn exposures_keep_the_first_and_count_new_ones() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other = running_trial(store, "u").await;
        assert_eq!(store.record_exposures(&[]).await.unwrap(), 0);

        let precise = DateTime::from_timestamp(1_750_000_010, 999_999_999).unwrap();
        let batch = vec![
            exposure(trial, 3, "A", 5),
            NewExposure {
                at: precise,
                source: ExposureSource::Bulk,
                community: Some("north".into()),
                trial_version: 2,
                ..exposure(trial, 1, "B", 0)
            },
            exposure(trial, 3, "B", 1), // duplicate inside the batch: dropped
            NewExposure {
                excluded_reason: Some("developer override".into()),
                source: ExposureSource::Explicit,
                ..exposure(trial, 2, "A", 2)
            },
            exposure(other, 3, "A", 3), // same unit, other trial: new
        ];
        assert_eq!(store.record_exposures(&batch).await.unwrap(), 4);
        // Duplicates across batches: only unit 4 is new.
        let later = vec![
            exposure(trial, 1, "A", 20),
            exposure(trial, 4, "A", 21),
            exposure(trial, 2, "B", 22),
            exposure(trial, 4, "B", 23),
        ];
        assert_eq!(store.record_exposures(&later).await.unwrap(), 1);
        assert_eq!(store.record_exposures(&later).await.unwrap(), 0);

        // Assign units 1..=5 so the export shows the exposures.
        for n in 1..=5 {
            let u = unit(n);
            let arm = if n % 2 == 0 { "A" } else { "B" };
            store.assign_fixed(&fixed(trial, &u, arm, 0)).await.unwrap();
        }
        let rows = store.export_assignments(trial, None, 100).await.unwrap();
        assert_eq!(rows.len(), 5);
        let by_unit = |n: u64| rows.iter().find(|r| r.unit == unit(n)).unwrap();
        let one = by_unit(1);
        assert_eq!(
            one.exposed_at.map(|t| t.timestamp_subsec_nanos()),
            Some(999_999_000)
        );
        assert_eq!(one.exposure_source, Some(ExposureSource::Bulk));
        assert_eq!(one.exposure_trial_version, Some(2));
        assert!(!one.excluded);
        let two = by_unit(2);
        assert!(two.excluded);
        assert_eq!(two.excluded_reason.as_deref(), Some("developer override"));
        assert_eq!(two.exposure_source, Some(ExposureSource::Explicit));
        let three = by_unit(3);
        assert_eq!(
            three.exposed_at,
            Some(at(5)),
            "the first in the batch is kept"
        );
        assert_eq!(three.exposure_source, Some(ExposureSource::Single));
        assert_eq!(by_unit(4).exposed_at, Some(at(21)));
        let five = by_unit(5);
        assert_eq!(five.exposed_at, None);
        assert_eq!(five.exposure_source, None);
        assert!(!five.excluded);

        // Assigned: A = {2, 4}, B = {1, 3, 5}. Exposed (by the exposure's
        // arm, excluded left out): unit 1 → B, 3 → A, 4 → A; 2 is excluded.
        assert_eq!(
            store.arm_counts(trial).await.unwrap(),
            vec![("A".to_string(), 2, 2), ("B".to_string(), 3, 1)]
        );
        assert_eq!(
            store.arm_counts(other).await.unwrap(),
            vec![("A".to_string(), 0, 1)]
        );
        assert!(store.arm_counts(trial + 1000).await.unwrap().is_empty());

        // A bad row fails the whole batch.
        let bad = vec![
            exposure(trial, 50, "A", 30),
            NewExposure {
                unit: "nothex".into(),
                ..exposure(trial, 51, "A", 30)
            },
        ];
        let err = store.record_exposures(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(
            store
                .record_exposures(&[exposure(trial, 50, "A", 31)])
                .await
                .unwrap(),
            1
        );
        for source in ExposureSource::ALL {
            assert_eq!(source.as_str().parse::<ExposureSource>().unwrap(), source);
        }
    })
    .await;
}

/// Issue 12: a unit exposed before a developer's cohort override was added
/// leaves the analysis population when the override reaches it (its first
/// exposure keeps its time and arm); the exclusion is never undone.
#[tokio::test]
async fn an_override_after_the_first_exposure_excludes_the_unit() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let excluded = |n: u64, secs: i64| NewExposure {
            excluded_reason: Some("cohort override 'coop'".into()),
            ..exposure(trial, n, "control", secs)
        };
        assert_eq!(
            store
                .record_exposures(&[exposure(trial, 1, "B", 1), exposure(trial, 2, "B", 1)])
                .await
                .unwrap(),
            2
        );
        // Unit 1 hits the override later; in the same batch a duplicate
        // plain exposure and, for unit 3, a new excluded one.
        let batch = [excluded(1, 5), exposure(trial, 1, "B", 6), excluded(3, 7)];
        assert_eq!(store.record_exposures(&batch).await.unwrap(), 1);
        // The override removed again: unit 1 stays excluded.
        assert_eq!(
            store
                .record_exposures(&[exposure(trial, 1, "B", 9)])
                .await
                .unwrap(),
            0
        );
        for n in 1..=3 {
            store
                .assign_fixed(&fixed(trial, &unit(n), "B", 0))
                .await
                .unwrap();
        }
        let rows = store.export_assignments(trial, None, 10).await.unwrap();
        let by_unit = |n: u64| rows.iter().find(|r| r.unit == unit(n)).unwrap();
        let one = by_unit(1);
        assert!(one.excluded, "{one:?}");
        assert_eq!(
            one.excluded_reason.as_deref(),
            Some("cohort override 'coop'")
        );
        assert_eq!(
            one.exposed_at,
            Some(at(1)),
            "the first exposure's time is kept"
        );
        assert!(!by_unit(2).excluded);
        assert!(by_unit(3).excluded);
        // Only unit 2 is in the analysis population.
        assert_eq!(
            store.arm_counts(trial).await.unwrap(),
            vec![("B".to_string(), 3, 1)]
        );
    })
    .await;
}

#[tokio::test]
async fn large_exposure_batches_are_chunked() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "big").await;
        let mut batch: Vec<NewExposure> = (0..10_000u64)
            .map(|n| {
                exposure(
                    trial,
                    n * 7919 % 10_000,
                    if n % 2 == 0 { "A" } else { "B" },
                    1,
                )
            })
            .collect();
        // Duplicates far apart, in other chunks.
        batch.extend((0..500u64).map(|n| exposure(trial, n, "C", 2)));
        let started = Instant::now();
        assert_eq!(store.record_exposures(&batch).await.unwrap(), 10_000);
        eprintln!("10,500 exposures in {:?}", started.elapsed());
        assert_eq!(store.record_exposures(&batch[..2000]).await.unwrap(), 0);
        let counts = store.arm_counts(trial).await.unwrap();
        assert_eq!(
            counts,
            vec![("A".to_string(), 0, 5000), ("B".to_string(), 0, 5000)]
        );
    })
    .await;
}

#[tokio::test]
async fn export_pages_by_unit() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other = running_trial(store, "o").await;
        for n in [5u64, 1, 4, 2, 3] {
            let u = unit(n);
            store
                .assign_fixed(&fixed(trial, &u, "A", n as i64))
                .await
                .unwrap();
        }
        let u = unit(9);
        store.assign_fixed(&fixed(other, &u, "A", 0)).await.unwrap();

        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .export_assignments(trial, after.as_deref(), 2)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.unit.clone());
            pages.push(
                page.iter()
                    .map(|r| u64::from_str_radix(&r.unit, 16).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);
        let all = store.export_assignments(trial, None, 100).await.unwrap();
        assert_eq!(all[0].assigned_at, at(1));
        assert_eq!(all[0].trial_version, 1);
        assert!(store
            .export_assignments(trial, None, 0)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .export_assignments(trial + 1000, None, 10)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

fn served(
    trial_id: i64,
    community: &str,
    period: i64,
    arm: &str,
    n: i64,
    first: i64,
    last: i64,
) -> PeriodExposures {
    PeriodExposures {
        trial_id,
        community: community.into(),
        period,
        arm: arm.into(),
        exposures: n,
        first: at(first),
        last: at(last),
    }
}

/// Exposures served per (trial, community, period, arm): a batch's rows of
/// one key merge, an upsert adds to the stored count and widens first and
/// last; other trials apart; a unit's erasure leaves them (no unit in
/// them); a zero count is refused and the batch left out whole.
#[tokio::test]
async fn exposures_served_per_period_add_up() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other = running_trial(store, "u").await;
        store.add_period_exposures(&[]).await.unwrap();
        store
            .add_period_exposures(&[
                served(trial, "north", 1, "on", 3, 10, 20),
                served(trial, "north", 1, "on", 2, 5, 15), // same key: merged
                served(trial, "north", 1, "off", 1, 12, 12),
                served(trial, "south", 0, "off", 4, 1, 9),
                served(other, "north", 1, "on", 7, 1, 2),
            ])
            .await
            .unwrap();
        store
            .add_period_exposures(&[
                served(trial, "north", 1, "on", 10, 8, 30),
                served(trial, "south", 2, "on", 1, 50, 50),
            ])
            .await
            .unwrap();
        let rows = store.period_exposures(trial).await.unwrap();
        assert_eq!(
            rows,
            vec![
                served(trial, "north", 1, "off", 1, 12, 12),
                served(trial, "north", 1, "on", 15, 5, 30),
                served(trial, "south", 0, "off", 4, 1, 9),
                served(trial, "south", 2, "on", 1, 50, 50),
            ]
        );
        assert_eq!(
            store.period_exposures(other).await.unwrap(),
            vec![served(other, "north", 1, "on", 7, 1, 2)]
        );
        // Erasing a unit does not touch the per-community counts.
        store
            .erase_unit(&unit(1), "cli:dpo", "request", at(60))
            .await
            .unwrap();
        assert_eq!(store.period_exposures(trial).await.unwrap(), rows);
        // All or nothing: a refused row leaves the whole batch out.
        let refused = store
            .add_period_exposures(&[
                served(trial, "north", 1, "on", 1, 70, 70),
                served(trial, "east", 0, "on", 0, 70, 70),
            ])
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(store.period_exposures(trial).await.unwrap(), rows);
    })
    .await;
}
