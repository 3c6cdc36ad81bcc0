//! Trials: one row per trial with its spec and lifecycle, an append-only
//! event log, the assignments of units to arms (`assignments`), and the
//! changes that must read other trials or store metric snapshots in their
//! transaction (`lifecycle`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Database, Encode, Type};

use crate::column::{micros, Ts};
use crate::error::{db_err, unique_violation_on, write_err, UnknownValue};
use crate::metrics::upsert_snapshot;
use crate::{FlagSetAppend, FlagSetRevision, NewRevision, Store, StoreError, BUMP_COUNTER};

mod assignments;
mod lifecycle;
mod update;

pub use assignments::{AssignmentRecord, NewAssignment, NewSequentialAssignment};
pub use lifecycle::OverlapCheck;
pub(crate) use update::TrialUpdate;

/// Where a trial is in its life. Stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    Draft,
    Running,
    Stopped,
    Concluded,
    Archived,
}

impl TrialStatus {
    pub const ALL: [TrialStatus; 5] = [
        TrialStatus::Draft,
        TrialStatus::Running,
        TrialStatus::Stopped,
        TrialStatus::Concluded,
        TrialStatus::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Draft => "draft",
            TrialStatus::Running => "running",
            TrialStatus::Stopped => "stopped",
            TrialStatus::Concluded => "concluded",
            TrialStatus::Archived => "archived",
        }
    }

    /// The `trial_events.action` of a change to this status.
    fn action(self) -> &'static str {
        match self {
            TrialStatus::Draft => "update",
            TrialStatus::Running => "start",
            TrialStatus::Stopped => "stop",
            TrialStatus::Concluded => "conclude",
            TrialStatus::Archived => "archive",
        }
    }
}

impl std::fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrialStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrialStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue::new("trial status", s))
    }
}

/// A trial to create (as a draft, version 1). The spec was validated by the
/// caller; the store keeps its strings verbatim.
#[derive(Debug, Clone, Copy)]
pub struct NewTrial<'a> {
    pub key: &'a str,
    pub flag_key: &'a str,
    /// The researcher's TOML, byte for byte.
    pub spec_source: &'a str,
    /// Canonical JSON of the spec.
    pub spec_canonical: &'a str,
    /// 64 lowercase hex characters.
    pub spec_hash: &'a str,
    pub actor: &'a str,
    /// Why; must not be empty.
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

/// A stored trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrialRecord {
    pub id: i64,
    pub key: String,
    pub flag_key: String,
    pub status: TrialStatus,
    pub spec_source: String,
    pub spec_canonical: String,
    pub spec_hash: String,
    /// 1, bumped by every amendment.
    pub version: i64,
    /// Set when the trial starts.
    pub seed: Option<i64>,
    /// JSON recorded at start (cluster allocation, stepped-wedge schedule).
    pub allocation: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// The latest stop.
    pub stopped_at: Option<DateTime<Utc>>,
    pub concluded_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
}

/// One entry of a trial's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrialEvent {
    /// 1, 2, 3, … per trial.
    pub seq: i64,
    /// create, update, start, stop, conclude, archive, amend or deviation
    /// (a change to the trial's flag while it ran).
    pub action: String,
    pub actor: String,
    pub reason: String,
    /// The trial's spec hash and version after the change.
    pub spec_hash: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// Who changes a trial, why (not empty) and when.
#[derive(Debug, Clone, Copy)]
pub struct TrialChange<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Creates `t.key` as a draft at version 1, with its `create` event, and
    /// bumps [`Store::trials_version`]. [`StoreError::AlreadyExists`]
    /// (`trial 'key'`) if a trial has that key.
    pub async fn create_trial(&self, t: &NewTrial<'_>) -> Result<TrialRecord, StoreError> {
        let at = Ts(micros(t.at));
        let result: Result<TrialRecord, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let trial: TrialRecord = sqlx::query_as(INSERT_TRIAL)
                .bind(t.key)
                .bind(t.flag_key)
                .bind(t.spec_source)
                .bind(t.spec_canonical)
                .bind(t.spec_hash)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
            let event = NewTrialEvent {
                trial_id: trial.id,
                action: "create",
                actor: t.actor,
                reason: t.reason,
                spec_hash: t.spec_hash,
                version: 1,
                at,
            };
            event.insert().execute(&mut *tx).await?;
            sqlx::query(BUMP_COUNTER)
                .bind(TRIALS_COUNTER)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(trial)
        });
        result.map_err(|e| trial_exists(e, t.key))
    }

    pub async fn get_trial(&self, key: &str) -> Result<Option<TrialRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(GET_TRIAL)
            .bind(key)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// All trials, or those with `status`, sorted by key.
    pub async fn list_trials(
        &self,
        status: Option<TrialStatus>,
    ) -> Result<Vec<TrialRecord>, StoreError> {
        with_backend!(self, |db| match status {
            Some(status) => {
                sqlx::query_as(LIST_TRIALS_WITH_STATUS)
                    .bind(status.as_str())
                    .fetch_all(db.reader())
                    .await
            }
            None => sqlx::query_as(LIST_TRIALS).fetch_all(db.reader()).await,
        })
        .map_err(db_err)
    }

    /// The running trials, sorted by key (for server caches; poll
    /// [`Store::trials_version`] to know when to reload).
    pub async fn running_trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.list_trials(Some(TrialStatus::Running)).await
    }

    /// A number that changes (grows) in the same transaction as every change
    /// to any trial.
    pub async fn trials_version(&self) -> Result<i64, StoreError> {
        self.counter(TRIALS_COUNTER).await
    }

    /// Replaces a draft's spec (and flag key) if its spec hash is still
    /// `expected_hash`; records an `update` event. The version stays 1.
    /// [`StoreError::NotFound`], [`StoreError::InvalidState`] if the trial
    /// is not a draft, [`StoreError::SpecConflict`] if the hash moved.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_draft_spec(
        &self,
        key: &str,
        expected_hash: &str,
        source: &str,
        canonical: &str,
        hash: &str,
        flag_key: &str,
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        let update = TrialUpdate::DraftSpec {
            expected_hash,
            source,
            canonical,
            hash,
            flag_key,
        };
        self.update_trial(key, &update, change).await
    }

    /// Draft → running: records the seed, the allocation (JSON) and
    /// `started_at`, and a `start` event. [`StoreError::InvalidState`]
    /// naming the current status if the trial is not a draft.
    pub async fn start_trial(
        &self,
        key: &str,
        seed: i64,
        allocation: Option<&str>,
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        self.update_trial(key, &TrialUpdate::Start { seed, allocation }, change)
            .await
    }

    /// Moves a trial whose status is one of `from` to `to` (`stopped`,
    /// `concluded`, `archived`, or back to `running` from `stopped`), sets
    /// the matching `*_at` (a restart keeps the first `started_at`) and
    /// records the event (`stop`, `conclude`, `archive`, `start`). Which
    /// transitions are allowed is the caller's policy, given as `from`;
    /// [`StoreError::InvalidState`] naming the current status otherwise.
    /// Nothing can go back to draft, and a draft is started only by
    /// [`Store::start_trial`] (which records the seed).
    pub async fn set_trial_status(
        &self,
        key: &str,
        from: &[TrialStatus],
        to: TrialStatus,
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        if to == TrialStatus::Draft {
            return Err(StoreError::InvalidState(format!(
                "trial '{key}' cannot go back to draft"
            )));
        }
        if to == TrialStatus::Running && from.contains(&TrialStatus::Draft) {
            return Err(StoreError::InvalidState(format!(
                "trial '{key}': a draft is started with start_trial, which records the seed"
            )));
        }
        if from.is_empty() {
            return Err(StoreError::InvalidState(format!(
                "trial '{key}': no status to move from"
            )));
        }
        self.update_trial(key, &TrialUpdate::Status { from, to }, change)
            .await
    }

    /// Replaces a running or stopped trial's spec, bumps its version and
    /// records an `amend` event with the reason.
    /// [`StoreError::InvalidState`] naming the current status otherwise.
    pub async fn amend_trial(
        &self,
        key: &str,
        source: &str,
        canonical: &str,
        hash: &str,
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        let update = TrialUpdate::Amend {
            source,
            canonical,
            hash,
        };
        self.update_trial(key, &update, change).await
    }

    /// The trial's audit log, oldest first; empty if there is no such trial.
    pub async fn trial_events(&self, key: &str) -> Result<Vec<TrialEvent>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(TRIAL_EVENTS)
            .bind(key)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// One conditional `UPDATE` of the trial row plus its event and the
    /// counter bump, in one transaction; if the condition did not hold, the
    /// trial is read again to say why.
    async fn update_trial(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        self.update_trial_checked(key, update, change, None).await
    }

    /// [`Store::update_trial`]; with `overlaps`, the running trials (but
    /// this one) are read in the same transaction, after the lock every
    /// trial change takes, and a reason `overlaps` gives refuses the change
    /// ([`StoreError::InvalidState`]).
    pub(crate) async fn update_trial_checked(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
        overlaps: Option<&OverlapCheck<'_>>,
    ) -> Result<TrialRecord, StoreError> {
        self.update_trial_shipping(key, update, change, overlaps)
            .await
            .map(|(trial, _)| trial)
    }

    /// [`Store::update_trial_checked`], with the flag-set revision the
    /// update appended in its transaction, if it ships one
    /// ([`StoreError::Conflict`] with the current head when that head
    /// moved: nothing is written).
    pub(crate) async fn update_trial_shipping(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
        overlaps: Option<&OverlapCheck<'_>>,
    ) -> Result<(TrialRecord, Option<Shipped>), StoreError> {
        let change = TrialChange {
            at: micros(change.at),
            ..*change
        };
        // A retry only happens if the trial changed between the failed
        // update and the read that explains it.
        for _ in 0..3 {
            if let Some(done) = self
                .try_update_trial(key, update, &change, overlaps)
                .await?
            {
                return Ok(done);
            }
            let current = self.get_trial(key).await?;
            if let Some(err) = update.refusal(key, current.as_ref()) {
                return Err(err);
            }
        }
        Err(StoreError::Unavailable(format!(
            "trial '{key}' keeps changing, try again"
        )))
    }

    /// `Ok(None)` if the update's condition does not hold. The counter is
    /// bumped first: on PostgreSQL its row lock serialises trial changes
    /// (SQLite's write lock does already), so the running trials `overlaps`
    /// is given cannot change before commit.
    async fn try_update_trial(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
        overlaps: Option<&OverlapCheck<'_>>,
    ) -> Result<Option<Updated>, StoreError> {
        let at = Ts(change.at);
        let sql = update.sql();
        let ship = update.ship().map(|s| FlagSetAppend {
            change: NewRevision {
                at: micros(s.change.at),
                ..s.change
            },
            ..*s
        });
        let running = crate::flag_sets::running_trials(self.backend());
        let result: Result<Result<Option<Updated>, Refused>, sqlx::Error> =
            with_backend!(self, async |db| {
                let q = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(key)
                    .bind(at);
                let q = match *update {
                    TrialUpdate::DraftSpec {
                        expected_hash,
                        source,
                        canonical,
                        hash,
                        flag_key,
                    } => q
                        .bind(source)
                        .bind(canonical)
                        .bind(hash)
                        .bind(flag_key)
                        .bind(expected_hash),
                    TrialUpdate::Start { seed, allocation } => q.bind(seed).bind(allocation),
                    TrialUpdate::Status { .. } => q,
                    TrialUpdate::Amend {
                        source,
                        canonical,
                        hash,
                    } => q.bind(source).bind(canonical).bind(hash),
                    TrialUpdate::Conclude {
                        spec_hash, version, ..
                    } => q.bind(spec_hash).bind(version),
                };
                let mut tx = db.begin_write().await?;
                sqlx::query(BUMP_COUNTER)
                    .bind(TRIALS_COUNTER)
                    .execute(&mut *tx)
                    .await?;
                if let Some(overlaps) = overlaps {
                    let running: Vec<TrialRecord> = sqlx::query_as(RUNNING_BUT)
                        .bind(key)
                        .fetch_all(&mut *tx)
                        .await?;
                    if let Some(why) = overlaps(&running) {
                        tx.rollback().await?;
                        return Ok(Err(Refused::Overlap(why)));
                    }
                }
                let Some(trial): Option<TrialRecord> = q.fetch_optional(&mut *tx).await? else {
                    tx.rollback().await?;
                    return Ok(Ok(None));
                };
                let event = NewTrialEvent {
                    trial_id: trial.id,
                    action: update.action(),
                    actor: change.actor,
                    reason: change.reason,
                    spec_hash: &trial.spec_hash,
                    version: trial.version,
                    at,
                };
                event.insert().execute(&mut *tx).await?;
                if let Some(reason) = update.deviation() {
                    let deviation = NewTrialEvent {
                        action: "deviation",
                        reason,
                        ..event
                    };
                    deviation.insert().execute(&mut *tx).await?;
                }
                for snapshot in update.snapshots() {
                    upsert_snapshot(trial.id, snapshot)
                        .execute(&mut *tx)
                        .await?;
                }
                let shipped = match &ship {
                    None => None,
                    Some(s) => {
                        let revision_at = Ts(s.change.at);
                        let appended = append_revision!(
                            tx,
                            running,
                            s.set,
                            s.expected,
                            &s.change,
                            s.deviations,
                            revision_at
                        );
                        match appended {
                            Some(done) => Some(done),
                            None => {
                                tx.rollback().await?;
                                return Ok(Err(Refused::HeadMoved));
                            }
                        }
                    }
                };
                tx.commit().await?;
                Ok(Ok(Some((trial, shipped))))
            });
        match result.map_err(write_err)? {
            Ok(done) => Ok(done),
            Err(Refused::Overlap(why)) => Err(StoreError::InvalidState(why)),
            Err(Refused::HeadMoved) => {
                let ship = ship.expect("only a shipping update finds the head moved");
                let current = self.current_revision(ship.set).await?;
                Err(StoreError::Conflict {
                    expected: ship.expected,
                    current,
                })
            }
        }
    }
}

/// The flag-set revision a shipping conclusion appended, and the trials
/// that recorded a deviation for it.
pub(crate) type Shipped = (FlagSetRevision, Vec<String>);

/// A trial changed, with what its change shipped.
type Updated = (TrialRecord, Option<Shipped>);

/// Why a trial change wrote nothing, besides its condition.
enum Refused {
    /// The overlap check's reason.
    Overlap(String),
    /// The flag-set head the shipped revision was computed from moved.
    HeadMoved,
}

/// An entry to append to a trial's log, in the transaction of the change it
/// records.
pub(crate) struct NewTrialEvent<'a> {
    pub(crate) trial_id: i64,
    /// create, update, start, stop, conclude, archive, amend or deviation.
    pub(crate) action: &'a str,
    pub(crate) actor: &'a str,
    pub(crate) reason: &'a str,
    /// The trial's spec hash and version after the change.
    pub(crate) spec_hash: &'a str,
    pub(crate) version: i64,
    pub(crate) at: Ts,
}

impl<'a> NewTrialEvent<'a> {
    /// The `INSERT` of the event, for either database. Run it after the
    /// change has locked the trial row (or inserted it), so that the next
    /// `seq` cannot be taken concurrently.
    pub(crate) fn insert<DB: Database>(&self) -> Query<'static, DB, DB::Arguments>
    where
        i64: for<'q> Encode<'q, DB> + Type<DB>,
        &'a str: for<'q> Encode<'q, DB> + Type<DB>,
        Ts: for<'q> Encode<'q, DB> + Type<DB>,
    {
        sqlx::query(INSERT_TRIAL_EVENT)
            .bind(self.trial_id)
            .bind(self.action)
            .bind(self.actor)
            .bind(self.reason)
            .bind(self.spec_hash)
            .bind(self.version)
            .bind(self.at)
    }
}

fn trial_exists(err: sqlx::Error, key: &str) -> StoreError {
    // PostgreSQL names the constraint, SQLite the column.
    if unique_violation_on(&err, "trials_key_key") || unique_violation_on(&err, "trials.key") {
        StoreError::AlreadyExists(format!("trial '{key}'"))
    } else {
        write_err(err)
    }
}

/// The `change_counters` row of trials.
const TRIALS_COUNTER: &str = "trials";

/// The columns of a [`TrialRecord`].
macro_rules! trial_columns {
    () => {
        "id, key, flag_key, status, spec_source, spec_canonical, spec_hash, version, seed, \
         allocation, created_at, updated_at, started_at, stopped_at, concluded_at, archived_at"
    };
}
pub(crate) use trial_columns;

/// $1 key, $2 flag_key, $3 source, $4 canonical, $5 hash, $6 at.
const INSERT_TRIAL: &str = concat!(
    "INSERT INTO trials (key, flag_key, status, spec_source, spec_canonical, spec_hash, \
     version, created_at, updated_at) \
     VALUES ($1, $2, 'draft', $3, $4, $5, 1, $6, $6) RETURNING ",
    trial_columns!()
);

const GET_TRIAL: &str = concat!("SELECT ", trial_columns!(), " FROM trials WHERE key = $1");

const LIST_TRIALS: &str = concat!("SELECT ", trial_columns!(), " FROM trials ORDER BY key");

const LIST_TRIALS_WITH_STATUS: &str = concat!(
    "SELECT ",
    trial_columns!(),
    " FROM trials WHERE status = $1 ORDER BY key"
);

/// $1 the key of the trial to leave out.
const RUNNING_BUT: &str = concat!(
    "SELECT ",
    trial_columns!(),
    " FROM trials WHERE status = 'running' AND key <> $1 ORDER BY key"
);

/// $1 trial id, $2 action, $3 actor, $4 reason, $5 spec hash, $6 version,
/// $7 at.
const INSERT_TRIAL_EVENT: &str = "INSERT INTO trial_events \
     (trial_id, seq, action, actor, reason, spec_hash, version, created_at) \
     SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7 \
     FROM trial_events WHERE trial_id = $1";

const TRIAL_EVENTS: &str =
    "SELECT e.seq, e.action, e.actor, e.reason, e.spec_hash, e.version, e.created_at \
     FROM trial_events e JOIN trials t ON t.id = e.trial_id WHERE t.key = $1 \
     ORDER BY e.seq";
