//! Exposures served per period (`Store::add_period_exposures`): a batch
//! of 2,500 keys (two statements) added whole or not at all when the
//! caller is dropped at each await point.

use super::*;
use commonlab_store::PeriodExposures;

const KEYS: i64 = 2_500;

pub(super) async fn added(store: &Store, trial_id: i64) -> usize {
    at_every_point(
        store,
        "add_period_exposures",
        |_| {
            Box::pin(async move {
                let batch: Vec<PeriodExposures> = (0..KEYS)
                    .map(|k| PeriodExposures {
                        trial_id,
                        community: format!("c{}", k % 50),
                        period: k / 50,
                        arm: "arm0".into(),
                        exposures: 1,
                        first: at(30),
                        last: at(31),
                    })
                    .collect();
                store.add_period_exposures(&batch).await
            })
        },
        |_, _| {
            Box::pin(async move {
                let rows = store.period_exposures(trial_id).await.unwrap();
                let total: i64 = rows.iter().map(|r| r.exposures).sum();
                assert_eq!(total % KEYS, 0, "a partial batch: {total}");
                assert!(
                    rows.is_empty() || rows.len() as i64 == KEYS,
                    "{}",
                    rows.len()
                );
            })
        },
    )
    .await
}
