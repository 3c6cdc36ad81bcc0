//! Flag sets: an append-only log of revisions per set, each the whole flagd
//! document, with the head cached in `flag_sets` and moved by optimistic
//! concurrency (see the crate documentation, "Concurrency").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::QueryBuilder;

use crate::column::{micros, Ts};
use crate::error::{db_err, is_contention, is_unique_violation};
use crate::{Backend, Store, StoreError};

/// Appends revision `$expected + 1` of set `$set` in transaction `$tx`
/// (`$change`, a `NewRevision`, at `$at`, a `Ts`), with a `deviation`
/// event for every running trial (read by `$running`, see
/// `running_trials`) of a flag in `$deviations`. Evaluates to `None`
/// (nothing written; roll back) if the head is not `$expected`, else
/// `Some((FlagSetRevision, keys of the trials that recorded one))`. Used
/// by `Store::append_flag_set_revision_with_deviations` and by the trial
/// conclusion that ships (`trials::ship`), in their own transactions.
macro_rules! append_revision {
    ($tx:ident, $running:expr, $set:expr, $expected:expr, $change:expr, $deviations:expr, $at:expr) => {{
        let (set, expected, change, at): (&str, i64, &$crate::NewRevision<'_>, $crate::column::Ts) =
            ($set, $expected, $change, $at);
        // SQLite: the write lock keeps other writers out. PostgreSQL: a
        // concurrent writer of the same set makes these wait for its row
        // (or unique-index entry) and then re-check against its commit.
        let set_id: Option<i64> = if expected == 0 {
            sqlx::query_scalar($crate::flag_sets::CREATE_SET)
                .bind(set)
                .bind(at)
                .fetch_optional(&mut *$tx)
                .await?
        } else {
            sqlx::query_scalar($crate::flag_sets::ADVANCE_SET)
                .bind(set)
                .bind(at)
                .bind(expected)
                .fetch_optional(&mut *$tx)
                .await?
        };
        match set_id {
            None => None,
            Some(set_id) => {
                let revision = expected + 1;
                sqlx::query($crate::flag_sets::INSERT_REVISION)
                    .bind(set_id)
                    .bind(revision)
                    .bind(change.document)
                    .bind(change.actor)
                    .bind(change.action)
                    .bind(change.flag_key)
                    .bind(change.reason)
                    .bind(at)
                    .execute(&mut *$tx)
                    .await?;
                let mut noted = Vec::new();
                let deviations: &[$crate::FlagDeviation<'_>] = $deviations;
                if !deviations.is_empty() {
                    let trials: Vec<$crate::flag_sets::RunningTrial> =
                        sqlx::query_as($running).fetch_all(&mut *$tx).await?;
                    for t in &trials {
                        for d in deviations.iter().filter(|d| d.flag_key == t.flag_key) {
                            let event = $crate::trials::NewTrialEvent {
                                trial_id: t.id,
                                action: "deviation",
                                actor: change.actor,
                                reason: d.reason,
                                spec_hash: &t.spec_hash,
                                version: t.version,
                                at,
                            };
                            event.insert().execute(&mut *$tx).await?;
                            noted.push(t.key.clone());
                        }
                    }
                }
                let stored = $crate::FlagSetRevision {
                    set: set.to_string(),
                    revision,
                    document: change.document.to_string(),
                    actor: change.actor.to_string(),
                    action: change.action.to_string(),
                    flag_key: change.flag_key.map(str::to_string),
                    reason: change.reason.to_string(),
                    created_at: change.at,
                };
                Some((stored, noted))
            }
        }
    }};
}

/// A flag-set revision appended in the transaction of another change (a
/// trial's conclusion that ships an arm, `Store::conclude_trial_and_ship`):
/// revision `expected + 1` of `set`, with the deviation events of
/// `append_flag_set_revision_with_deviations`.
#[derive(Debug, Clone, Copy)]
pub struct FlagSetAppend<'a> {
    pub set: &'a str,
    /// The head the change was computed from.
    pub expected: i64,
    pub change: NewRevision<'a>,
    pub deviations: &'a [FlagDeviation<'a>],
}

/// A change to append to a flag set's log.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct NewRevision<'a> {
    /// The whole flagd JSON document after the change, stored verbatim.
    pub document: &'a str,
    /// API key name or `cli:<user>`.
    pub actor: &'a str,
    /// "import", "create", "update", "delete", "set-state", "cohort", …
    pub action: &'a str,
    /// The flag the change is about, if it is about one.
    pub flag_key: Option<&'a str>,
    /// Why; must not be empty.
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

/// One revision of a flag set, with its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FlagSetRevision {
    #[sqlx(rename = "name")]
    pub set: String,
    pub revision: i64,
    pub document: String,
    pub actor: String,
    pub action: String,
    pub flag_key: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// One revision of a flag set, without its document (for history listings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RevisionSummary {
    #[sqlx(rename = "name")]
    pub set: String,
    pub revision: i64,
    pub actor: String,
    pub action: String,
    pub flag_key: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<FlagSetRevision> for RevisionSummary {
    fn from(r: FlagSetRevision) -> Self {
        RevisionSummary {
            set: r.set,
            revision: r.revision,
            actor: r.actor,
            action: r.action,
            flag_key: r.flag_key,
            reason: r.reason,
            created_at: r.created_at,
        }
    }
}

/// A change to a flag, recorded as a `deviation` event of every running
/// trial that controls the flag (see
/// [`Store::append_flag_set_revision_with_deviations`]).
#[derive(Debug, Clone, Copy)]
pub struct FlagDeviation<'a> {
    pub flag_key: &'a str,
    /// What changed; the event's reason (not empty).
    pub reason: &'a str,
}

impl Store {
    /// The newest revision of `set`, with its document; `None` if the set
    /// has never been written.
    pub async fn flag_set_head(&self, set: &str) -> Result<Option<FlagSetRevision>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(HEAD)
            .bind(set)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    pub async fn flag_set_revision(
        &self,
        set: &str,
        revision: i64,
    ) -> Result<Option<FlagSetRevision>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(REVISION)
            .bind(set)
            .bind(revision)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// The revisions `revisions` of `set` (at most [`MAX_REVISIONS_READ`];
    /// those that exist), in ascending order, in one query.
    pub async fn flag_set_revisions(
        &self,
        set: &str,
        revisions: &[i64],
    ) -> Result<Vec<FlagSetRevision>, StoreError> {
        if revisions.len() > MAX_REVISIONS_READ {
            return Err(StoreError::InvalidState(format!(
                "more than {MAX_REVISIONS_READ} revisions asked at once"
            )));
        }
        if revisions.is_empty() {
            return Ok(Vec::new());
        }
        with_backend!(self, |db| {
            let mut q = QueryBuilder::new(REVISIONS_PREFIX);
            q.push_bind(set).push(" AND r.revision IN (");
            let mut sep = q.separated(", ");
            for r in revisions {
                sep.push_bind(*r);
            }
            q.push(") ORDER BY r.revision");
            q.build_query_as().fetch_all(db.reader()).await
        })
        .map_err(db_err)
    }

    /// Every flag set's name and current revision, sorted by name: one cheap
    /// query for polling.
    pub async fn flag_set_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(VERSIONS)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Appends revision `expected + 1` of `set` in one transaction if its head
    /// is `expected` (0: the set does not exist yet); otherwise
    /// [`StoreError::Conflict`] with the current head. Of concurrent writers
    /// with the same `expected`, in this or other processes, exactly one wins.
    pub async fn append_flag_set_revision(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
    ) -> Result<FlagSetRevision, StoreError> {
        self.append_flag_set_revision_with_deviations(set, expected, change, &[])
            .await
            .map(|(revision, _)| revision)
    }

    /// [`Store::append_flag_set_revision`] that also records, in the same
    /// transaction, a `deviation` event (actor and time of the change, the
    /// deviation's reason) for every trial running at commit whose flag is
    /// one of `deviations`' flags. Returns the revision and the keys of the
    /// trials that recorded one, in trial order.
    pub async fn append_flag_set_revision_with_deviations(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
        deviations: &[FlagDeviation<'_>],
    ) -> Result<(FlagSetRevision, Vec<String>), StoreError> {
        let change = NewRevision {
            at: micros(change.at),
            ..*change
        };
        let err = if expected < 0 {
            None
        } else {
            match self.try_append(set, expected, &change, deviations).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => None,
                Err(e) => Some(e),
            }
        };
        // A new statement (on PostgreSQL at READ COMMITTED): sees the
        // winner's commit.
        let current = self.current_revision(set).await?;
        Err(append_failure(err, expected, current))
    }

    /// Revisions of `set`, newest first, without documents: only those about
    /// `flag_key` if given, only those older than `before_revision` if given
    /// (pass the last revision of a page to get the next page), at most
    /// `limit`. Empty if the set does not exist.
    pub async fn flag_set_history(
        &self,
        set: &str,
        flag_key: Option<&str>,
        before_revision: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RevisionSummary>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        with_backend!(self, |db| {
            let mut q = QueryBuilder::new(HISTORY_PREFIX);
            q.push_bind(set);
            if let Some(key) = flag_key {
                q.push(" AND r.flag_key = ").push_bind(key);
            }
            if let Some(before) = before_revision {
                q.push(" AND r.revision < ").push_bind(before);
            }
            q.push(" ORDER BY r.revision DESC LIMIT ")
                .push_bind(i64::from(limit));
            q.build_query_as().fetch_all(db.reader()).await
        })
        .map_err(db_err)
    }

    pub(crate) async fn current_revision(&self, set: &str) -> Result<i64, StoreError> {
        let current: Option<i64> = with_backend!(self, |db| sqlx::query_scalar(CURRENT)
            .bind(set)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)?;
        Ok(current.unwrap_or(0))
    }

    /// `Ok(None)` if the head is not `expected`.
    async fn try_append(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
        deviations: &[FlagDeviation<'_>],
    ) -> Result<Option<(FlagSetRevision, Vec<String>)>, sqlx::Error> {
        let at = Ts(change.at);
        let running = running_trials(self.backend());
        with_backend!(self, |db| {
            let mut tx = db.begin_write().await?;
            let appended = append_revision!(tx, running, set, expected, change, deviations, at);
            match appended {
                Some(done) => {
                    tx.commit().await?;
                    Ok(Some(done))
                }
                None => {
                    tx.rollback().await?;
                    Ok(None)
                }
            }
        })
    }
}

/// Turns a failed append into the error the caller sees, given the head
/// revision read afterwards.
fn append_failure(err: Option<sqlx::Error>, expected: i64, current: i64) -> StoreError {
    match err {
        None => StoreError::Conflict { expected, current },
        Some(e) if current != expected && (is_unique_violation(&e) || is_contention(&e)) => {
            StoreError::Conflict { expected, current }
        }
        Some(e) if is_contention(&e) => {
            StoreError::Unavailable(format!("database busy, try again ({e})"))
        }
        Some(e) => db_err(e),
    }
}

/// A running trial, as a flag-set change that deviates from it sees it.
#[derive(sqlx::FromRow)]
pub(crate) struct RunningTrial {
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) flag_key: String,
    pub(crate) spec_hash: String,
    pub(crate) version: i64,
}

/// The running trials, read inside the flag-set transaction to record
/// deviations. PostgreSQL locks them, in id order, so that the events'
/// `seq` cannot be taken concurrently; SQLite's write lock does that
/// already (and it has no `FOR UPDATE`).
pub(crate) fn running_trials(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "SELECT id, key, flag_key, spec_hash, version FROM trials \
             WHERE status = 'running' ORDER BY id"
        }
        Backend::Postgres => {
            "SELECT id, key, flag_key, spec_hash, version FROM trials \
             WHERE status = 'running' ORDER BY id FOR UPDATE"
        }
    }
}

const HEAD: &str = "SELECT s.name, r.revision, r.document, r.actor, r.action, r.flag_key, \
     r.reason, r.created_at FROM flag_sets s \
     JOIN flag_set_revisions r ON r.flag_set_id = s.id AND r.revision = s.current_revision \
     WHERE s.name = $1";

const REVISION: &str = "SELECT s.name, r.revision, r.document, r.actor, r.action, r.flag_key, \
     r.reason, r.created_at FROM flag_sets s \
     JOIN flag_set_revisions r ON r.flag_set_id = s.id \
     WHERE s.name = $1 AND r.revision = $2";

/// Followed by the bound set name and a list of revisions.
const REVISIONS_PREFIX: &str = "SELECT s.name, r.revision, r.document, r.actor, r.action, \
     r.flag_key, r.reason, r.created_at FROM flag_sets s \
     JOIN flag_set_revisions r ON r.flag_set_id = s.id WHERE s.name = ";

/// Most revisions [`Store::flag_set_revisions`] reads at once.
pub const MAX_REVISIONS_READ: usize = 100;

/// Followed by the bound set name and optional filters.
const HISTORY_PREFIX: &str =
    "SELECT s.name, r.revision, r.actor, r.action, r.flag_key, r.reason, r.created_at \
     FROM flag_sets s JOIN flag_set_revisions r ON r.flag_set_id = s.id WHERE s.name = ";

const VERSIONS: &str = "SELECT name, current_revision FROM flag_sets ORDER BY name";

const CURRENT: &str = "SELECT current_revision FROM flag_sets WHERE name = $1";

/// $1 name, $2 at. Returns no row if the set exists already.
pub(crate) const CREATE_SET: &str =
    "INSERT INTO flag_sets (name, current_revision, created_at, updated_at) \
     VALUES ($1, 1, $2, $2) ON CONFLICT (name) DO NOTHING RETURNING id";

/// $1 name, $2 at, $3 expected. Returns no row unless the head is $3.
pub(crate) const ADVANCE_SET: &str =
    "UPDATE flag_sets SET current_revision = current_revision + 1, updated_at = $2 \
     WHERE name = $1 AND current_revision = $3 RETURNING id";

pub(crate) const INSERT_REVISION: &str = "INSERT INTO flag_set_revisions \
     (flag_set_id, revision, document, actor, action, flag_key, reason, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
