//! Exposures: the first exposure of each unit to a trial, batched, and the
//! analysis export of assignments with their exposures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;

use crate::column::{micros, Ts};
use crate::error::{db_err, write_err, UnknownValue};
use crate::{Backend, Store, StoreError};

/// How an exposure was recorded: by a single evaluation, a bulk
/// evaluation, or an explicit exposure call. Stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExposureSource {
    Single,
    Bulk,
    Explicit,
}

impl ExposureSource {
    pub const ALL: [ExposureSource; 3] = [
        ExposureSource::Single,
        ExposureSource::Bulk,
        ExposureSource::Explicit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExposureSource::Single => "single",
            ExposureSource::Bulk => "bulk",
            ExposureSource::Explicit => "explicit",
        }
    }
}

impl std::fmt::Display for ExposureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExposureSource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExposureSource::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownValue::new("exposure source", s))
    }
}

/// An exposure to record (owned: servers batch them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewExposure {
    pub trial_id: i64,
    /// 64 lowercase hex characters.
    pub unit: String,
    pub arm: String,
    pub community: Option<String>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
    pub source: ExposureSource,
    /// `Some` if the unit hit a developer override: the exposure is stored
    /// as excluded from the analysis population.
    pub excluded_reason: Option<String>,
}

/// An assignment with its first exposure, if any (analysis export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AssignmentExport {
    pub unit: String,
    pub arm: String,
    pub stratum: Option<String>,
    pub community: Option<String>,
    pub position: Option<i64>,
    pub trial_version: i64,
    pub assigned_at: DateTime<Utc>,
    /// `None` if the unit was never exposed.
    pub exposed_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "source")]
    pub exposure_source: Option<ExposureSource>,
    /// The trial version at the first exposure.
    pub exposure_trial_version: Option<i64>,
    /// Exposed but outside the analysis population (false if not exposed).
    pub excluded: bool,
    pub excluded_reason: Option<String>,
}

impl Store {
    /// Stores the first exposure of each (trial, unit) in `batch`, in one
    /// transaction (`INSERT … ON CONFLICT DO NOTHING`, many rows per
    /// statement); returns how many were new. An exposure of a unit that
    /// already has one is dropped, whether that one was stored earlier or
    /// comes earlier in `batch`. But an excluded exposure (the unit hit a
    /// developer's cohort override) marks the unit's stored exposure
    /// excluded, with its reason, keeping its time and arm: a unit exposed
    /// before the override was added leaves the analysis population too,
    /// and stays out of it. Rows are written in (trial, unit) order so
    /// that concurrent batches cannot deadlock on PostgreSQL.
    pub async fn record_exposures(&self, batch: &[NewExposure]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut sorted: Vec<NewExposure> = batch
            .iter()
            .map(|e| NewExposure {
                at: micros(e.at),
                ..e.clone()
            })
            .collect();
        // Stable: duplicates keep their order, so the first one wins.
        sorted.sort_by(|a, b| (a.trial_id, &a.unit).cmp(&(b.trial_id, &b.unit)));
        let result: Result<u64, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let mut new = 0;
            for chunk in sorted.chunks(EXPOSURES_PER_STATEMENT) {
                let mut q = QueryBuilder::new(EXPOSURES_INSERT);
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.trial_id)
                        .push_bind(e.unit.as_str())
                        .push_bind(e.arm.as_str())
                        .push_bind(e.community.as_deref())
                        .push_bind(e.trial_version)
                        .push_bind(Ts(e.at))
                        .push_bind(e.source.as_str())
                        .push_bind(e.excluded_reason.is_some())
                        .push_bind(e.excluded_reason.as_deref());
                });
                q.push(EXPOSURES_ON_CONFLICT);
                new += q.build().execute(&mut *tx).await?.rows_affected();
            }
            for e in sorted.iter().filter(|e| e.excluded_reason.is_some()) {
                sqlx::query(EXCLUDE_EXPOSED)
                    .bind(e.trial_id)
                    .bind(e.unit.as_str())
                    .bind(true)
                    .bind(e.excluded_reason.as_deref())
                    .bind(false)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(new)
        });
        result.map_err(write_err)
    }

    /// A page of the trial's assignments, each with its first exposure if
    /// any, ordered by unit: those after `after_unit` (pass the last unit of
    /// a page to get the next), at most `limit`.
    pub async fn export_assignments(
        &self,
        trial_id: i64,
        after_unit: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssignmentExport>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        with_backend!(self, |db| {
            let mut q = QueryBuilder::new(EXPORT_PREFIX);
            q.push_bind(trial_id);
            if let Some(after) = after_unit {
                q.push(" AND a.unit > ").push_bind(after);
            }
            q.push(" ORDER BY a.unit LIMIT ")
                .push_bind(i64::from(limit));
            q.build_query_as().fetch_all(db.reader()).await
        })
        .map_err(db_err)
    }

    /// Per arm, sorted by arm: units assigned to it, and units exposed to it
    /// (the arm recorded with the exposure) that are not excluded.
    pub async fn arm_counts(&self, trial_id: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let exposed_per_arm = exposed_per_arm(self.backend());
        let (assigned, exposed): (Vec<ArmCount>, Vec<ArmCount>) = with_backend!(self, |db| {
            let assigned = sqlx::query_as(ASSIGNED_PER_ARM)
                .bind(trial_id)
                .fetch_all(db.reader())
                .await
                .map_err(db_err)?;
            let exposed = sqlx::query_as(exposed_per_arm)
                .bind(trial_id)
                .fetch_all(db.reader())
                .await
                .map_err(db_err)?;
            (assigned, exposed)
        });
        let mut counts: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for (arm, n) in assigned {
            counts.entry(arm).or_default().0 = n;
        }
        for (arm, n) in exposed {
            counts.entry(arm).or_default().1 = n;
        }
        Ok(counts
            .into_iter()
            .map(|(arm, (assigned, exposed))| (arm, assigned, exposed))
            .collect())
    }
}

/// An arm and a count of its units.
type ArmCount = (String, i64);

/// How many exposures go into one `INSERT` (9 parameters each): within
/// SQLite's 32766 parameters and PostgreSQL's 65535.
const EXPOSURES_PER_STATEMENT: usize = 2000;

const EXPOSURES_INSERT: &str = "INSERT INTO exposures (trial_id, unit, arm, \
     community, trial_version, exposed_at, source, excluded, excluded_reason) ";

const EXPOSURES_ON_CONFLICT: &str = " ON CONFLICT (trial_id, unit) DO NOTHING";

/// $1 trial id, $2 unit, $3 true, $4 the reason, $5 false: an exposure
/// already stored leaves the analysis population.
const EXCLUDE_EXPOSED: &str = "UPDATE exposures SET excluded = $3, excluded_reason = $4 \
     WHERE trial_id = $1 AND unit = $2 AND excluded = $5";

/// Followed by the bound trial id, an optional `AND a.unit > ` bound
/// unit, and the limit. A unit never exposed is not excluded.
const EXPORT_PREFIX: &str =
    "SELECT a.unit, a.arm, a.stratum, a.community, a.position, a.trial_version, \
     a.assigned_at, x.exposed_at, x.source, x.trial_version AS exposure_trial_version, \
     COALESCE(x.excluded, FALSE) AS excluded, x.excluded_reason \
     FROM assignments a \
     LEFT JOIN exposures x ON x.trial_id = a.trial_id AND x.unit = a.unit \
     WHERE a.trial_id = ";

const ASSIGNED_PER_ARM: &str =
    "SELECT arm, COUNT(*) FROM assignments WHERE trial_id = $1 GROUP BY arm";

/// Exposed, not excluded, per arm: the condition is the one of the partial
/// index `exposures_arm_idx`, in each dialect (SQLite stores 0/1).
fn exposed_per_arm(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "SELECT arm, COUNT(*) FROM exposures \
             WHERE trial_id = $1 AND excluded = 0 GROUP BY arm"
        }
        Backend::Postgres => {
            "SELECT arm, COUNT(*) FROM exposures \
             WHERE trial_id = $1 AND NOT excluded GROUP BY arm"
        }
    }
}
