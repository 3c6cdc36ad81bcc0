//! SQLite backend. See the crate documentation for the pool layout (one
//! writer connection, a few readers) and `BEGIN IMMEDIATE`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{
    already_exists, append_failure, bad_url, db_err, decode_err, migrate_err, revoke_not_found,
    sql, trial_exists, write_err, ApiKeyRecord, ArmCounts, AssignmentExport, AssignmentRecord,
    FlagSetRevision, NewApiKeyRecord, NewAssignment, NewExposure, NewRevision,
    NewSequentialAssignment, NewTrial, RevisionSummary, StoreError, TrialChange, TrialEvent,
    TrialRecord, TrialStatus, TrialUpdate, EXPOSURES_PER_STATEMENT,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const READERS: u32 = 4;
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone)]
pub(crate) struct SqliteStore {
    /// Up to [`READERS`] connections (the writer itself for `:memory:`).
    read: SqlitePool,
    /// Exactly one connection.
    write: SqlitePool,
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let base: SqliteConnectOptions = url.parse().map_err(|e| bad_url(url, e))?;
        let base = base
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        if is_memory(url) {
            // The database exists only as long as its connection: keep one,
            // forever, and share it between reads and writes.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(base)
                .await
                .map_err(db_err)?;
            return Ok(SqliteStore {
                read: pool.clone(),
                write: pool,
            });
        }

        // The writer opens (and creates) the file first and switches it to
        // WAL, which is persistent; readers then need not touch the journal
        // mode (changing it needs a lock that busy_timeout cannot wait for).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.clone().journal_mode(SqliteJournalMode::Wal))
            .await
            .map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(db_err)?;
        Ok(SqliteStore { read, write })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await.map_err(migrate_err)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn execute_raw(&self, statement: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::raw_sql(statement).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn fetch_text_raw(&self, query: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(query).fetch_optional(&self.write).await?;
        row.map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()
            .map(Option::flatten)
    }

    pub(crate) async fn flag_set_head(
        &self,
        set: &str,
    ) -> Result<Option<FlagSetRevision>, StoreError> {
        let row = sqlx::query(&sql::head())
            .bind(set)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(revision_from_row).transpose()
    }

    pub(crate) async fn flag_set_revision(
        &self,
        set: &str,
        revision: i64,
    ) -> Result<Option<FlagSetRevision>, StoreError> {
        let row = sqlx::query(&sql::revision())
            .bind(set)
            .bind(revision)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(revision_from_row).transpose()
    }

    pub(crate) async fn flag_set_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(sql::VERSIONS)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)
    }

    async fn current_revision(&self, set: &str) -> Result<i64, StoreError> {
        let current: Option<i64> = sqlx::query_scalar(sql::CURRENT)
            .bind(set)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(current.unwrap_or(0))
    }

    pub(crate) async fn append_flag_set_revision(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
    ) -> Result<FlagSetRevision, StoreError> {
        let err = if expected < 0 {
            None
        } else {
            match self.try_append(set, expected, change).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => None,
                Err(e) => Some(e),
            }
        };
        let current = self.current_revision(set).await?;
        Err(append_failure(err, expected, current))
    }

    /// `Ok(None)` if the head is not `expected`.
    async fn try_append(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
    ) -> Result<Option<FlagSetRevision>, sqlx::Error> {
        let at = to_text(change.at);
        let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
        let set_id: Option<i64> = if expected == 0 {
            sqlx::query_scalar(sql::CREATE_SET)
                .bind(set)
                .bind(&at)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            sqlx::query_scalar(sql::ADVANCE_SET)
                .bind(set)
                .bind(&at)
                .bind(expected)
                .fetch_optional(&mut *tx)
                .await?
        };
        let Some(set_id) = set_id else {
            tx.rollback().await?;
            return Ok(None);
        };
        let revision = expected + 1;
        sqlx::query(sql::INSERT_REVISION)
            .bind(set_id)
            .bind(revision)
            .bind(change.document)
            .bind(change.actor)
            .bind(change.action)
            .bind(change.flag_key)
            .bind(change.reason)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(FlagSetRevision {
            set: set.to_string(),
            revision,
            document: change.document.to_string(),
            actor: change.actor.to_string(),
            action: change.action.to_string(),
            flag_key: change.flag_key.map(str::to_string),
            reason: change.reason.to_string(),
            created_at: change.at,
        }))
    }

    pub(crate) async fn flag_set_history(
        &self,
        set: &str,
        flag_key: Option<&str>,
        before_revision: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RevisionSummary>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(sql::HISTORY_PREFIX);
        q.push_bind(set);
        if let Some(key) = flag_key {
            q.push(" AND r.flag_key = ").push_bind(key);
        }
        if let Some(before) = before_revision {
            q.push(" AND r.revision < ").push_bind(before);
        }
        q.push(" ORDER BY r.revision DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(summary_from_row).collect()
    }

    pub(crate) async fn insert_api_key(
        &self,
        key: &NewApiKeyRecord<'_>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let result: Result<SqliteRow, sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let row = sqlx::query(&sql::insert_key())
                .bind(key.id)
                .bind(key.name)
                .bind(key.role)
                .bind(key.hash_hex)
                .bind(to_text(key.at))
                .bind(key.created_by)
                .fetch_one(&mut *tx)
                .await?;
            bump_keys_version(&mut tx).await?;
            tx.commit().await?;
            Ok(row)
        }
        .await;
        match result {
            Ok(row) => key_from_row(&row),
            Err(e) => Err(already_exists(e, key)),
        }
    }

    pub(crate) async fn list_api_keys(
        &self,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(&sql::list_keys(include_revoked))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(&sql::find_key())
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let result: Result<Option<SqliteRow>, sqlx::Error> = async {
            let at = to_text(at);
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let mut row = None;
            for column in ["id", "name"] {
                row = sqlx::query(&sql::revoke_key_by(column))
                    .bind(id_or_name)
                    .bind(&at)
                    .fetch_optional(&mut *tx)
                    .await?;
                if row.is_some() {
                    break;
                }
            }
            if row.is_some() {
                bump_keys_version(&mut tx).await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(row)
        }
        .await;
        match result.map_err(db_err)? {
            Some(row) => key_from_row(&row),
            None => Err(revoke_not_found(id_or_name)),
        }
    }

    pub(crate) async fn keys_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(sql::COUNTER)
            .bind(sql::API_KEYS_COUNTER)
            .fetch_one(&self.read)
            .await
            .map_err(db_err)
    }

    pub(crate) async fn create_trial(&self, t: &NewTrial<'_>) -> Result<TrialRecord, StoreError> {
        let result: Result<SqliteRow, sqlx::Error> = async {
            let at = to_text(t.at);
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let row = sqlx::query(&sql::insert_trial())
                .bind(t.key)
                .bind(t.flag_key)
                .bind(t.spec_source)
                .bind(t.spec_canonical)
                .bind(t.spec_hash)
                .bind(&at)
                .fetch_one(&mut *tx)
                .await?;
            let id: i64 = row.try_get("id")?;
            insert_trial_event(
                &mut tx,
                id,
                "create",
                t.actor,
                t.reason,
                t.spec_hash,
                1,
                &at,
            )
            .await?;
            bump_counter(&mut tx, sql::TRIALS_COUNTER).await?;
            tx.commit().await?;
            Ok(row)
        }
        .await;
        match result {
            Ok(row) => trial_from_row(&row),
            Err(e) => Err(trial_exists(e, t.key)),
        }
    }

    pub(crate) async fn get_trial(&self, key: &str) -> Result<Option<TrialRecord>, StoreError> {
        let row = sqlx::query(&sql::get_trial())
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(trial_from_row).transpose()
    }

    pub(crate) async fn list_trials(
        &self,
        status: Option<TrialStatus>,
    ) -> Result<Vec<TrialRecord>, StoreError> {
        let sql = sql::list_trials(status.is_some());
        let mut q = sqlx::query(&sql);
        if let Some(status) = status {
            q = q.bind(status.as_str());
        }
        let rows = q.fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(trial_from_row).collect()
    }

    pub(crate) async fn trials_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(sql::COUNTER)
            .bind(sql::TRIALS_COUNTER)
            .fetch_one(&self.read)
            .await
            .map_err(db_err)
    }

    /// `Ok(None)` if the update's condition does not hold.
    pub(crate) async fn update_trial(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
    ) -> Result<Option<TrialRecord>, StoreError> {
        let result: Result<Option<SqliteRow>, sqlx::Error> = async {
            let at = to_text(change.at);
            let sql = update.sql();
            let mut q = sqlx::query(&sql).bind(key).bind(&at);
            q = match *update {
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
            };
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let Some(row) = q.fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(None);
            };
            let id: i64 = row.try_get("id")?;
            let hash: String = row.try_get("spec_hash")?;
            let version: i64 = row.try_get("version")?;
            insert_trial_event(
                &mut tx,
                id,
                update.action(),
                change.actor,
                change.reason,
                &hash,
                version,
                &at,
            )
            .await?;
            bump_counter(&mut tx, sql::TRIALS_COUNTER).await?;
            tx.commit().await?;
            Ok(Some(row))
        }
        .await;
        result
            .map_err(write_err)?
            .as_ref()
            .map(trial_from_row)
            .transpose()
    }

    pub(crate) async fn trial_events(&self, key: &str) -> Result<Vec<TrialEvent>, StoreError> {
        let rows = sqlx::query(sql::TRIAL_EVENTS)
            .bind(key)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(event_from_row).collect()
    }

    pub(crate) async fn get_assignment(
        &self,
        trial_id: i64,
        unit: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        let row = sqlx::query(&sql::get_assignment())
            .bind(trial_id)
            .bind(unit)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(assignment_from_row).transpose()
    }

    /// The write lock taken by `BEGIN IMMEDIATE` serialises this against
    /// every other writer, in this process or another.
    pub(crate) async fn assign_sequential(
        &self,
        a: &NewSequentialAssignment<'_>,
        arm_for: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let result: Result<(SqliteRow, bool), sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let existing = sqlx::query(&sql::get_assignment())
                .bind(a.trial_id)
                .bind(a.unit)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                tx.rollback().await?;
                return Ok((row, false));
            }
            let position: i64 = sqlx::query_scalar(sql::TAKE_POSITION)
                .bind(a.trial_id)
                .bind(a.stratum.unwrap_or(""))
                .fetch_one(&mut *tx)
                .await?;
            let arm = arm_for(position);
            let row = sqlx::query(&sql::insert_assignment())
                .bind(a.trial_id)
                .bind(a.unit)
                .bind(&arm)
                .bind(a.stratum)
                .bind(a.community)
                .bind(position)
                .bind(a.trial_version)
                .bind(to_text(a.at))
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((row, true))
        }
        .await;
        let (row, created) = result.map_err(write_err)?;
        Ok((assignment_from_row(&row)?, created))
    }

    pub(crate) async fn assign_fixed(
        &self,
        a: &NewAssignment<'_>,
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let result: Result<(SqliteRow, bool), sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let inserted = sqlx::query(&sql::insert_assignment())
                .bind(a.trial_id)
                .bind(a.unit)
                .bind(a.arm)
                .bind(a.stratum)
                .bind(a.community)
                .bind(None::<i64>)
                .bind(a.trial_version)
                .bind(to_text(a.at))
                .fetch_optional(&mut *tx)
                .await?;
            let done = match inserted {
                Some(row) => (row, true),
                None => {
                    let row = sqlx::query(&sql::get_assignment())
                        .bind(a.trial_id)
                        .bind(a.unit)
                        .fetch_one(&mut *tx)
                        .await?;
                    (row, false)
                }
            };
            tx.commit().await?;
            Ok(done)
        }
        .await;
        let (row, created) = result.map_err(write_err)?;
        Ok((assignment_from_row(&row)?, created))
    }

    /// `batch` is sorted by (trial, unit), timestamps truncated.
    pub(crate) async fn record_exposures(&self, batch: &[NewExposure]) -> Result<u64, StoreError> {
        let result: Result<u64, sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let mut new = 0;
            for chunk in batch.chunks(EXPOSURES_PER_STATEMENT) {
                let mut q = QueryBuilder::<Sqlite>::new(sql::EXPOSURES_INSERT);
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.trial_id)
                        .push_bind(e.unit.as_str())
                        .push_bind(e.arm.as_str())
                        .push_bind(e.community.as_deref())
                        .push_bind(e.trial_version)
                        .push_bind(to_text(e.at))
                        .push_bind(e.source.as_str())
                        .push_bind(e.excluded_reason.is_some())
                        .push_bind(e.excluded_reason.as_deref());
                });
                q.push(sql::EXPOSURES_ON_CONFLICT);
                new += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn export_assignments(
        &self,
        trial_id: i64,
        after_unit: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssignmentExport>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(sql::EXPORT_PREFIX);
        q.push_bind(trial_id);
        if let Some(after) = after_unit {
            q.push(" AND a.unit > ").push_bind(after);
        }
        q.push(" ORDER BY a.unit LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(export_from_row).collect()
    }

    /// (assigned per arm, exposed and not excluded per arm).
    pub(crate) async fn arm_counts(&self, trial_id: i64) -> Result<ArmCounts, StoreError> {
        let assigned = sqlx::query_as(sql::ASSIGNED_PER_ARM)
            .bind(trial_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        let exposed = sqlx::query_as(EXPOSED_PER_ARM)
            .bind(trial_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok((assigned, exposed))
    }
}

async fn bump_keys_version(tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<(), sqlx::Error> {
    bump_counter(tx, sql::API_KEYS_COUNTER).await
}

/// Matches the partial index `exposures_arm_idx` (`WHERE excluded = 0`).
const EXPOSED_PER_ARM: &str =
    "SELECT arm, COUNT(*) FROM exposures WHERE trial_id = $1 AND excluded = 0 GROUP BY arm";

async fn bump_counter(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::BUMP_COUNTER)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_trial_event(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    trial_id: i64,
    action: &str,
    actor: &str,
    reason: &str,
    spec_hash: &str,
    version: i64,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::INSERT_TRIAL_EVENT)
        .bind(trial_id)
        .bind(action)
        .bind(actor)
        .bind(reason)
        .bind(spec_hash)
        .bind(version)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// RFC 3339 UTC with exactly six fractional digits and `Z`: fixed width, so
/// text order is time order.
fn to_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let text: String = row.try_get(column).map_err(db_err)?;
    parse_time(&text, column)
}

fn optional_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(db_err)?;
    text.map(|t| parse_time(&t, column)).transpose()
}

fn parse_time(text: &str, column: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            StoreError::Database(sqlx::Error::ColumnDecode {
                index: column.to_string(),
                source: Box::new(e),
            })
        })
}

fn revision_from_row(row: &SqliteRow) -> Result<FlagSetRevision, StoreError> {
    Ok(FlagSetRevision {
        set: row.try_get("name").map_err(db_err)?,
        revision: row.try_get("revision").map_err(db_err)?,
        document: row.try_get("document").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        flag_key: row.try_get("flag_key").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        created_at: time(row, "created_at")?,
    })
}

fn summary_from_row(row: &SqliteRow) -> Result<RevisionSummary, StoreError> {
    Ok(RevisionSummary {
        set: row.try_get("name").map_err(db_err)?,
        revision: row.try_get("revision").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        flag_key: row.try_get("flag_key").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        created_at: time(row, "created_at")?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        role: row.try_get("role").map_err(db_err)?,
        hash_hex: row.try_get("hash_hex").map_err(db_err)?,
        created_at: time(row, "created_at")?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

fn trial_from_row(row: &SqliteRow) -> Result<TrialRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db_err)?;
    Ok(TrialRecord {
        id: row.try_get("id").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        flag_key: row.try_get("flag_key").map_err(db_err)?,
        status: status.parse().map_err(|e| decode_err("status", e))?,
        spec_source: row.try_get("spec_source").map_err(db_err)?,
        spec_canonical: row.try_get("spec_canonical").map_err(db_err)?,
        spec_hash: row.try_get("spec_hash").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        seed: row.try_get("seed").map_err(db_err)?,
        allocation: row.try_get("allocation").map_err(db_err)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        started_at: optional_time(row, "started_at")?,
        stopped_at: optional_time(row, "stopped_at")?,
        concluded_at: optional_time(row, "concluded_at")?,
        archived_at: optional_time(row, "archived_at")?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<TrialEvent, StoreError> {
    Ok(TrialEvent {
        seq: row.try_get("seq").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        spec_hash: row.try_get("spec_hash").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        created_at: time(row, "created_at")?,
    })
}

fn assignment_from_row(row: &SqliteRow) -> Result<AssignmentRecord, StoreError> {
    Ok(AssignmentRecord {
        trial_id: row.try_get("trial_id").map_err(db_err)?,
        unit: row.try_get("unit").map_err(db_err)?,
        arm: row.try_get("arm").map_err(db_err)?,
        stratum: row.try_get("stratum").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        position: row.try_get("position").map_err(db_err)?,
        trial_version: row.try_get("trial_version").map_err(db_err)?,
        assigned_at: time(row, "assigned_at")?,
    })
}

fn export_from_row(row: &SqliteRow) -> Result<AssignmentExport, StoreError> {
    let source: Option<String> = row.try_get("source").map_err(db_err)?;
    let excluded: Option<bool> = row.try_get("excluded").map_err(db_err)?;
    Ok(AssignmentExport {
        unit: row.try_get("unit").map_err(db_err)?,
        arm: row.try_get("arm").map_err(db_err)?,
        stratum: row.try_get("stratum").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        position: row.try_get("position").map_err(db_err)?,
        trial_version: row.try_get("trial_version").map_err(db_err)?,
        assigned_at: time(row, "assigned_at")?,
        exposed_at: optional_time(row, "exposed_at")?,
        exposure_source: source
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| decode_err("source", e))?,
        exposure_trial_version: row.try_get("exposure_trial_version").map_err(db_err)?,
        excluded: excluded.unwrap_or(false),
        excluded_reason: row.try_get("excluded_reason").map_err(db_err)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fixed_width_and_round_trip() {
        let at = DateTime::from_timestamp(1_700_000_000, 5_000).unwrap();
        let text = to_text(at);
        assert_eq!(text, "2023-11-14T22:13:20.000005Z");
        assert_eq!(parse_time(&text, "t").unwrap(), at);
        let whole = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(to_text(whole), "2023-11-14T22:13:20.000000Z");
    }
}
