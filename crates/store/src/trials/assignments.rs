//! Assignments of units to a trial's arms: the first one of a unit sticks;
//! blocked designs take consecutive positions per stratum.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::column::{micros, Ts};
use crate::error::{db_err, write_err};
use crate::{Store, StoreError};

/// An assignment decided by the caller (hash, cluster and stepped-wedge
/// designs). `stratum` and `community` are `None` when the design has none
/// (`Some("")` is refused by the database).
#[derive(Debug, Clone, Copy)]
pub struct NewAssignment<'a> {
    pub trial_id: i64,
    /// 64 lowercase hex characters (a pseudonym, never a raw identifier).
    pub unit: &'a str,
    pub arm: &'a str,
    pub stratum: Option<&'a str>,
    pub community: Option<&'a str>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
}

/// An assignment in a blocked design: the store picks the position, the
/// caller's `arm_for` the arm.
#[derive(Debug, Clone, Copy)]
pub struct NewSequentialAssignment<'a> {
    pub trial_id: i64,
    pub unit: &'a str,
    pub stratum: Option<&'a str>,
    pub community: Option<&'a str>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
}

/// A stored assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AssignmentRecord {
    pub trial_id: i64,
    pub unit: String,
    pub arm: String,
    pub stratum: Option<String>,
    pub community: Option<String>,
    /// Place in the stratum's sequence (0, 1, 2, …) for blocked designs.
    pub position: Option<i64>,
    pub trial_version: i64,
    pub assigned_at: DateTime<Utc>,
}

impl Store {
    /// Blocked designs: the unit's existing assignment (`false`), or a new
    /// one (`true`) at the next position of its stratum (0, 1, 2, …), with
    /// the arm `arm_for(position)`. Atomic across processes: concurrent calls
    /// for the same new unit create exactly one assignment, and positions
    /// within a stratum are consecutive (a call that loses the race for its
    /// unit rolls back its position).
    pub async fn assign_sequential(
        &self,
        a: &NewSequentialAssignment<'_>,
        arm_for: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let a = NewSequentialAssignment {
            at: micros(a.at),
            ..*a
        };
        if let Some(existing) = self.get_assignment(a.trial_id, a.unit).await? {
            return Ok((existing, false));
        }
        // Takes the stratum's next position with an upsert that holds the
        // counter row locked to the end of the transaction (on SQLite the
        // write lock of `BEGIN IMMEDIATE` serialises every writer anyway),
        // then inserts the assignment; if the unit was assigned meanwhile
        // the insert does nothing (on PostgreSQL after waiting for the
        // other transaction) and everything is rolled back, position
        // included.
        let result: Result<(AssignmentRecord, bool), sqlx::Error> =
            with_backend!(self, async |db| {
                let mut tx = db.begin_write().await?;
                let position: i64 = sqlx::query_scalar(TAKE_POSITION)
                    .bind(a.trial_id)
                    .bind(a.stratum.unwrap_or(""))
                    .fetch_one(&mut *tx)
                    .await?;
                let arm = arm_for(position);
                let inserted = sqlx::query_as(INSERT_ASSIGNMENT)
                    .bind(a.trial_id)
                    .bind(a.unit)
                    .bind(&arm)
                    .bind(a.stratum)
                    .bind(a.community)
                    .bind(position)
                    .bind(a.trial_version)
                    .bind(Ts(a.at))
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(created) = inserted {
                    tx.commit().await?;
                    return Ok((created, true));
                }
                tx.rollback().await?;
                // The winner has committed (the insert waited for it, or
                // it committed before this transaction began).
                let existing = sqlx::query_as(GET_ASSIGNMENT)
                    .bind(a.trial_id)
                    .bind(a.unit)
                    .fetch_one(db.reader())
                    .await?;
                Ok((existing, false))
            });
        result.map_err(write_err)
    }

    /// Stateless designs (hash, cluster, stepped wedge): stores the
    /// assignment unless the unit has one, and returns the stored one
    /// (`true` if it is this one): the first assignment sticks.
    pub async fn assign_fixed(
        &self,
        a: &NewAssignment<'_>,
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let a = NewAssignment {
            at: micros(a.at),
            ..*a
        };
        if let Some(existing) = self.get_assignment(a.trial_id, a.unit).await? {
            return Ok((existing, false));
        }
        let result: Result<(AssignmentRecord, bool), sqlx::Error> =
            with_backend!(self, async |db| {
                let mut tx = db.begin_write().await?;
                let inserted = sqlx::query_as(INSERT_ASSIGNMENT)
                    .bind(a.trial_id)
                    .bind(a.unit)
                    .bind(a.arm)
                    .bind(a.stratum)
                    .bind(a.community)
                    .bind(None::<i64>)
                    .bind(a.trial_version)
                    .bind(Ts(a.at))
                    .fetch_optional(&mut *tx)
                    .await?;
                let done = match inserted {
                    Some(created) => (created, true),
                    None => {
                        let existing = sqlx::query_as(GET_ASSIGNMENT)
                            .bind(a.trial_id)
                            .bind(a.unit)
                            .fetch_one(&mut *tx)
                            .await?;
                        (existing, false)
                    }
                };
                tx.commit().await?;
                Ok(done)
            });
        result.map_err(write_err)
    }

    pub async fn get_assignment(
        &self,
        trial_id: i64,
        unit: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(GET_ASSIGNMENT)
            .bind(trial_id)
            .bind(unit)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }
}

const GET_ASSIGNMENT: &str = "SELECT trial_id, unit, arm, stratum, community, position, \
     trial_version, assigned_at FROM assignments WHERE trial_id = $1 AND unit = $2";

/// $1 trial, $2 unit, $3 arm, $4 stratum, $5 community, $6 position,
/// $7 trial version, $8 at. No row if the unit is assigned already.
const INSERT_ASSIGNMENT: &str = "INSERT INTO assignments \
     (trial_id, unit, arm, stratum, community, position, trial_version, assigned_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (trial_id, unit) DO NOTHING \
     RETURNING trial_id, unit, arm, stratum, community, position, trial_version, assigned_at";

/// $1 trial, $2 stratum ('' for none): takes the stratum's next position
/// and holds its counter row locked until the transaction ends.
const TAKE_POSITION: &str =
    "INSERT INTO stratum_counters (trial_id, stratum, next_position) VALUES ($1, $2, 1) \
     ON CONFLICT (trial_id, stratum) \
     DO UPDATE SET next_position = stratum_counters.next_position + 1 \
     RETURNING next_position - 1";
