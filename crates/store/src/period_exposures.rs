//! Exposures served per (trial, community, period, arm) for community
//! designs (cluster, stepped wedge, switchback): the counts behind the
//! schedule-adherence check, added batch by batch by the exposure writer.
//!
//! Per-community aggregates, never a unit or pseudonym: erasing a unit
//! leaves them as they are (they say nothing about any member), and
//! retention (which deletes raw events) does not touch them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;
use std::collections::BTreeMap;

use crate::column::{micros, Ts};
use crate::error::{db_err, write_err};
use crate::{Store, StoreError};

/// Exposures of one community, in one period of its trial, served one arm:
/// how many and the first and last of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PeriodExposures {
    pub trial_id: i64,
    pub community: String,
    /// The period's index in the trial's periods (0 first).
    pub period: i64,
    /// The arm (variant) served, whatever the schedule said.
    pub arm: String,
    pub exposures: i64,
    #[sqlx(rename = "first_at")]
    pub first: DateTime<Utc>,
    #[sqlx(rename = "last_at")]
    pub last: DateTime<Utc>,
}

type Key = (i64, String, i64, String);

/// Merges rows of the same (trial, community, period, arm): counts add, the
/// first is the earliest, the last the latest. Sorted by that key.
pub fn merge_period_exposures(
    rows: impl IntoIterator<Item = PeriodExposures>,
) -> Vec<PeriodExposures> {
    let mut merged: BTreeMap<Key, PeriodExposures> = BTreeMap::new();
    for r in rows {
        let key = (r.trial_id, r.community.clone(), r.period, r.arm.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                m.exposures += r.exposures;
                m.first = m.first.min(r.first);
                m.last = m.last.max(r.last);
            }
            None => {
                merged.insert(key, r);
            }
        }
    }
    merged.into_values().collect()
}

impl Store {
    /// Adds `batch` to the stored counts in one transaction (all or
    /// nothing): rows of the same (trial, community, period, arm) are
    /// merged first, then each is upserted, its count added to the stored
    /// one and its first and last widening the stored ones. Rows are
    /// written in key order, so concurrent writers on PostgreSQL cannot
    /// deadlock. Not idempotent: a batch written twice counts twice (the
    /// writer sends each exposure's count once).
    pub async fn add_period_exposures(&self, batch: &[PeriodExposures]) -> Result<(), StoreError> {
        let rows = merge_period_exposures(batch.iter().cloned());
        if rows.is_empty() {
            return Ok(());
        }
        let result: Result<(), sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::new(INSERT);
                q.push_values(chunk, |mut row, r| {
                    row.push_bind(r.trial_id)
                        .push_bind(r.community.as_str())
                        .push_bind(r.period)
                        .push_bind(r.arm.as_str())
                        .push_bind(r.exposures)
                        .push_bind(Ts(micros(r.first)))
                        .push_bind(Ts(micros(r.last)));
                });
                q.push(ON_CONFLICT);
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        });
        result.map_err(write_err)
    }

    /// A trial's counts, by community, period and arm.
    pub async fn period_exposures(
        &self,
        trial_id: i64,
    ) -> Result<Vec<PeriodExposures>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(SELECT)
            .bind(trial_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }
}

/// 7 parameters a row: within SQLite's 32766 and PostgreSQL's 65535.
const ROWS_PER_STATEMENT: usize = 2000;

const INSERT: &str = "INSERT INTO period_exposures \
     (trial_id, community, period, arm, exposures, first_at, last_at) ";

/// Timestamps compare as instants on PostgreSQL and as fixed-width text on
/// SQLite: the same order.
const ON_CONFLICT: &str = " ON CONFLICT (trial_id, community, period, arm) DO UPDATE SET \
     exposures = period_exposures.exposures + excluded.exposures, \
     first_at = CASE WHEN excluded.first_at < period_exposures.first_at \
         THEN excluded.first_at ELSE period_exposures.first_at END, \
     last_at = CASE WHEN excluded.last_at > period_exposures.last_at \
         THEN excluded.last_at ELSE period_exposures.last_at END";

const SELECT: &str = "SELECT trial_id, community, period, arm, exposures, first_at, last_at \
     FROM period_exposures WHERE trial_id = $1 ORDER BY community, period, arm";
