//! SQLite backend. See the crate documentation for the pool layout (one
//! writer connection, a few readers) and `BEGIN IMMEDIATE`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite};

use crate::{
    already_exists, append_failure, bad_url, consent_granted, consent_status, db_err, decode_err,
    event_id_from_bytes, migrate_err, revoke_not_found, sql, trial_exists, write_err, ApiKeyRecord,
    ArmCounts, AssignmentExport, AssignmentRecord, ConsentRecord, ErasureOutcome, ErasureRecord,
    EventCursor, EventFilter, EventRecord, FlagSetRevision, NewApiKeyRecord, NewAssignment,
    NewExposure, NewRevision, NewSequentialAssignment, NewTrial, PreparedEvent, RevisionSummary,
    StoreError, TrialChange, TrialEvent, TrialRecord, TrialStatus, TrialUpdate,
    EXPOSURES_PER_STATEMENT,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone)]
pub(crate) struct SqliteStore {
    /// Up to [`crate::StoreOptions::max_connections`] connections (the writer itself for `:memory:`).
    read: SqlitePool,
    /// Exactly one connection.
    write: SqlitePool,
    /// Durability of event commits made with `synchronous = NORMAL`.
    wal: Arc<WalSync>,
}

/// Event inserts commit with `synchronous = NORMAL` (the writer does not
/// wait for the disk) and become durable when [`WalSync::sync`] has called
/// `fdatasync` on the WAL file after them. The writer can so build the next
/// transaction while the disk flushes the previous one, and one flush covers
/// every commit made before it started (docs/benchmarks.md).
///
/// Why this is as durable as `synchronous = FULL` once `sync` returns: a
/// commit's WAL frames (and the WAL header) are written to the file before
/// `COMMIT` returns, and `fdatasync` on any descriptor of the file flushes
/// them all. If a checkpoint has meanwhile copied them into the database
/// (and possibly restarted the WAL), SQLite syncs the WAL before and the
/// database after every checkpoint in `NORMAL` mode, so they are durable
/// there; if the WAL file is gone (the last connection checkpointed and
/// deleted it), likewise.
pub(crate) struct WalSync {
    /// `None` for in-memory databases, which have nothing to flush.
    path: Option<std::path::PathBuf>,
    /// Number of event commits made so far.
    committed: AtomicU64,
    /// Every commit up to this number is durable, or the error of a flush
    /// that failed. The lock makes concurrent callers share one flush.
    synced: tokio::sync::Mutex<Result<u64, String>>,
}

/// The writer connection while it commits with `synchronous = NORMAL`:
/// unless it was set back to `FULL`, dropping it (an error, a cancelled
/// future) closes the connection instead of handing the other writes one
/// that does not wait for the disk.
struct NormalSyncGuard {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    restored: bool,
}

impl Drop for NormalSyncGuard {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

impl WalSync {
    fn new(path: Option<std::path::PathBuf>) -> WalSync {
        WalSync {
            path,
            committed: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(Ok(0)),
        }
    }

    /// Records a commit; returns its number for [`WalSync::sync`].
    fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once commit number `upto` (and every earlier one) is durable.
    ///
    /// After a failed flush, every later call fails too: the kernel may
    /// have dropped the unwritten pages and marked them clean, so a later
    /// flush that succeeds proves nothing about them (PostgreSQL stops for
    /// the same reason). Nothing is acknowledged until the process is
    /// restarted and SQLite recovers from what is really on disk; clients
    /// retry the batches they were refused.
    pub(crate) async fn sync(&self, upto: u64) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut synced = self.synced.lock().await;
        match &*synced {
            Err(failed) => return Err(StoreError::Unavailable(failed.clone())),
            Ok(done) if *done >= upto => return Ok(()),
            Ok(_) => {}
        }
        // Everything committed before the flush starts is covered by it.
        let target = self.committed.load(Ordering::SeqCst);
        let path = path.clone();
        let flushed = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => file.sync_data(),
            // Checkpointed into the (synced) database and deleted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        let failure = match flushed {
            Ok(Ok(())) => {
                *synced = Ok(target);
                return Ok(());
            }
            Ok(Err(e)) => format!("could not flush the WAL to disk: {e}; restart the server"),
            Err(e) => format!("the WAL flush did not finish: {e}; restart the server"),
        };
        tracing::error!(error = %failure, "events can no longer be acknowledged");
        *synced = Err(failure.clone());
        Err(StoreError::Unavailable(failure))
    }
}

/// Creates a missing database file readable by its owner only; SQLite
/// gives its `-wal` and `-shm` files the same permissions. Any failure is
/// left for SQLite's own open to report.
fn create_private(path: &std::path::Path) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = opts.open(path);
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str, readers: Option<u32>) -> Result<Self, StoreError> {
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
                wal: Arc::new(WalSync::new(None)),
            });
        }

        create_private(base.get_filename());
        let mut wal = base.get_filename().as_os_str().to_owned();
        wal.push("-wal");
        // The writer opens (and creates) the file first and switches it to
        // WAL, which is persistent; readers then need not touch the journal
        // mode (changing it needs a lock that busy_timeout cannot wait for).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(
                base.clone()
                    .journal_mode(SqliteJournalMode::Wal)
                    // Checkpoint every 100,000 WAL pages (400 MB) rather than
                    // 1,000: ingestion commits of random ids and units dirty
                    // thousands of index pages each, and a larger WAL lets a
                    // checkpoint write a page once for many commits; a 64 MB
                    // page cache (2 MB by default) keeps the indexes' upper
                    // levels and hot leaves. Measured in docs/benchmarks.md.
                    .pragma("wal_autocheckpoint", "100000")
                    .pragma("cache_size", "-65536"),
            )
            .await
            .map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(readers.unwrap_or(crate::StoreOptions::DEFAULT_SQLITE_READERS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(db_err)?;
        Ok(SqliteStore {
            read,
            write,
            wal: Arc::new(WalSync::new(Some(wal.into()))),
        })
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
        let done = sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn fetch_text_raw(&self, query: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(query))
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()
            .map(Option::flatten)
    }

    pub(crate) async fn flag_set_head(
        &self,
        set: &str,
    ) -> Result<Option<FlagSetRevision>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(sql::head()))
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
        let row = sqlx::query(AssertSqlSafe(sql::revision()))
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
            let row = sqlx::query(AssertSqlSafe(sql::insert_key()))
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
        let rows = sqlx::query(AssertSqlSafe(sql::list_keys(include_revoked)))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(sql::find_key()))
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
                row = sqlx::query(AssertSqlSafe(sql::revoke_key_by(column)))
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
            let row = sqlx::query(AssertSqlSafe(sql::insert_trial()))
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
        let row = sqlx::query(AssertSqlSafe(sql::get_trial()))
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
        let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
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
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(key).bind(&at);
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
        let row = sqlx::query(AssertSqlSafe(sql::get_assignment()))
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
            let existing = sqlx::query(AssertSqlSafe(sql::get_assignment()))
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
            let row = sqlx::query(AssertSqlSafe(sql::insert_assignment()))
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
            let inserted = sqlx::query(AssertSqlSafe(sql::insert_assignment()))
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
                    let row = sqlx::query(AssertSqlSafe(sql::get_assignment()))
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

    pub(crate) async fn metric_cells(
        &self,
        q: &crate::metrics::Compiled,
        trial_id: i64,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<crate::MetricCell>, StoreError> {
        let query = crate::metrics::bind_metric!(
            sqlx::query_as(AssertSqlSafe(q.sql.as_str()))
                .bind(trial_id)
                .bind(to_text(as_of)),
            &q.binds
        );
        query.fetch_all(&self.read).await.map_err(db_err)
    }

    pub(crate) async fn metric_plan(
        &self,
        q: &crate::metrics::Compiled,
        trial_id: i64,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!("{}{}", "EXPLAIN QUERY PLAN ", q.sql);
        let query = crate::metrics::bind_metric!(
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(trial_id)
                .bind(to_text(as_of)),
            &q.binds
        );
        let rows = query.fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail").map_err(db_err)?;
                Ok(detail)
            })
            .collect()
    }

    pub(crate) async fn save_metric_snapshots(
        &self,
        trial_id: i64,
        snapshots: &[crate::MetricSnapshot],
    ) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            for s in snapshots {
                sqlx::query(
                    "INSERT INTO metric_snapshots (trial_id, metric, spec_hash, as_of, computed_at, cells) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (trial_id, metric) DO UPDATE SET spec_hash = excluded.spec_hash, \
                     as_of = excluded.as_of, computed_at = excluded.computed_at, cells = excluded.cells",
                )
                .bind(trial_id)
                .bind(s.metric.as_str())
                .bind(s.spec_hash.as_str())
                .bind(to_text(s.as_of))
                .bind(to_text(s.computed_at))
                .bind(Json(&s.cells))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn metric_snapshots(
        &self,
        trial_id: i64,
    ) -> Result<Vec<crate::MetricSnapshot>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(
            crate::metrics::SNAPSHOT_SELECT.replace("$1", "?1"),
        ))
        .bind(trial_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let Json(cells): Json<Vec<crate::MetricCell>> =
                    r.try_get("cells").map_err(|e| decode_err("cells", e))?;
                Ok(crate::MetricSnapshot {
                    metric: r.try_get("metric").map_err(|e| decode_err("metric", e))?,
                    spec_hash: r
                        .try_get("spec_hash")
                        .map_err(|e| decode_err("spec_hash", e))?,
                    as_of: time(r, "as_of")?,
                    computed_at: time(r, "computed_at")?,
                    cells,
                })
            })
            .collect()
    }

    /// Inserts `batch` (deduplicated and sorted by id, timestamps
    /// truncated) in one transaction committed with `synchronous = NORMAL`;
    /// returns the ids inserted and the commit's number, durable once
    /// [`WalSync::sync`] has returned for it.
    pub(crate) async fn insert_events_unsynced(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<(Vec<uuid::Uuid>, u64), StoreError> {
        let received_at = to_text(received_at);
        let mut guard = NormalSyncGuard {
            conn: self.write.acquire().await.map_err(write_err)?,
            restored: false,
        };
        let conn = &mut guard.conn;
        let result: Result<Inserted, sqlx::Error> = async {
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut **conn)
                .await?;
            let mut tx = conn.begin_with(BEGIN_WRITE).await?;
            // New rows get rowids above the largest one (rowid table, no
            // AUTOINCREMENT), and the write lock keeps others out: the rows
            // above `before` are exactly this transaction's. Reading ids
            // back only when some event was a duplicate is cheaper than
            // `RETURNING`, which streams every id back row by row.
            let before: i64 = sqlx::query_scalar(LARGEST_EVENT_ROWID)
                .fetch_one(&mut *tx)
                .await?;
            let mut stored = 0u64;
            let mut rest = batch;
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(event_chunk_len(rest.len()));
                rest = tail;
                let mut q = QueryBuilder::<Sqlite>::new(INSERT_EVENTS);
                q.push_values(chunk, |mut row, p| {
                    let e = p.event;
                    row.push_bind(e.event_id.as_bytes().as_slice())
                        .push_bind(e.unit.as_str())
                        .push_bind(e.community.as_deref())
                        .push_bind(e.name.as_str())
                        .push_bind(to_text(p.ts))
                        .push_bind(received_at.as_str())
                        .push_bind(p.properties.as_str());
                });
                q.push(INSERT_EVENTS_ON_CONFLICT);
                stored += q.build().execute(&mut *tx).await?.rows_affected();
            }
            let inserted = if stored == batch.len() as u64 {
                Inserted::All
            } else {
                Inserted::These(
                    sqlx::query_scalar(EVENT_IDS_ABOVE_ROWID)
                        .bind(before)
                        .fetch_all(&mut *tx)
                        .await?,
                )
            };
            tx.commit().await?;
            Ok(inserted)
        }
        .await;
        let restored = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut **conn)
            .await;
        guard.restored = restored.is_ok();
        drop(guard);
        let inserted = result.map_err(write_err)?;
        let seq = self.wal.committed();
        restored.map_err(write_err)?;
        let ids = match inserted {
            Inserted::All => batch.iter().map(|p| p.event.event_id).collect(),
            Inserted::These(ids) => ids
                .iter()
                .map(|id| event_id_from_bytes(id))
                .collect::<Result<_, _>>()?,
        };
        Ok((ids, seq))
    }

    #[cfg(feature = "test-support")]
    pub(crate) fn wal_path(&self) -> Option<std::path::PathBuf> {
        self.wal.path.clone()
    }

    pub(crate) async fn sync_events(&self, upto: u64) -> Result<(), StoreError> {
        self.wal.sync(upto).await
    }

    pub(crate) async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM events WHERE 1 = 1");
        push_event_filter(&mut q, filter);
        let n: i64 = q
            .build_query_scalar()
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(n as u64)
    }

    pub(crate) async fn export_events(
        &self,
        filter: &EventFilter,
        after: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT event_id, {} FROM events WHERE 1 = 1",
            sql::EVENT_COLUMNS_AFTER_ID
        ));
        push_event_filter(&mut q, filter);
        if let Some(after) = after {
            q.push(" AND (ts, event_id) > (")
                .push_bind(to_text(after.ts))
                .push(", ")
                .push_bind(after.event_id.as_bytes().to_vec())
                .push(")");
        }
        q.push(" ORDER BY ts, event_id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(event_record_from_row).collect()
    }

    /// Deletes at most `limit` events older than `cutoff` in one
    /// transaction.
    pub(crate) async fn delete_events_batch(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let result: Result<u64, sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let done = sqlx::query(DELETE_EVENTS_BATCH)
                .bind(to_text(cutoff))
                .bind(limit)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn set_consent(&self, c: &ConsentRecord) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            sqlx::query(sql::INSERT_CONSENT)
                .bind(&c.unit)
                .bind(&c.scope)
                .bind(&c.text_version)
                .bind(consent_status(c.granted))
                .bind(to_text(c.at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn consent_state(
        &self,
        unit: &str,
        scope: &str,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        let row = sqlx::query(sql::CONSENT_STATE)
            .bind(unit)
            .bind(scope)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.as_ref().map(consent_from_row).transpose()
    }

    pub(crate) async fn consent_history(
        &self,
        unit: &str,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let rows = sqlx::query(sql::CONSENT_HISTORY)
            .bind(unit)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(consent_from_row).collect()
    }

    pub(crate) async fn erase_unit(
        &self,
        unit: &str,
        at: DateTime<Utc>,
    ) -> Result<ErasureOutcome, StoreError> {
        let result: Result<ErasureOutcome, sqlx::Error> = async {
            let mut tx = self.write.begin_with(BEGIN_WRITE).await?;
            let mut deleted = [0u64; 4];
            for (n, statement) in deleted.iter_mut().zip([
                sql::ERASE_EVENTS,
                sql::ERASE_EXPOSURES,
                sql::ERASE_ASSIGNMENTS,
                sql::ERASE_CONSENTS,
            ]) {
                *n = sqlx::query(statement)
                    .bind(unit)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            let [events, exposures, assignments, consents] = deleted;
            let outcome = ErasureOutcome {
                events,
                exposures,
                assignments,
                consents,
            };
            sqlx::query(sql::INSERT_ERASURE)
                .bind(unit)
                .bind(to_text(at))
                .bind(Json(outcome))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(outcome)
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn erasures_since(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<ErasureRecord>, StoreError> {
        let rows = sqlx::query(sql::ERASURES_SINCE)
            .bind(to_text(at))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(erasure_from_row).collect()
    }
}

const INSERT_EVENTS: &str =
    "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) ";

const INSERT_EVENTS_ON_CONFLICT: &str = " ON CONFLICT (event_id) DO NOTHING";

const LARGEST_EVENT_ROWID: &str = "SELECT COALESCE(MAX(rowid), 0) FROM events";

const EVENT_IDS_ABOVE_ROWID: &str = "SELECT event_id FROM events WHERE rowid > ?";

/// Which events of a batch a transaction stored.
enum Inserted {
    All,
    /// Their ids (16 bytes each).
    These(Vec<Vec<u8>>),
}

/// The most events in one `INSERT` (7 parameters each, within SQLite's
/// 32766).
const EVENTS_PER_STATEMENT: usize = 512;

/// How many of `remaining` events go into the next statement: 512 while
/// there are that many, then the largest power of two that fits, so that a
/// batch of any size uses at most 10 distinct statements, all of which stay
/// in the connection's prepared-statement cache.
fn event_chunk_len(remaining: usize) -> usize {
    if remaining >= EVENTS_PER_STATEMENT {
        EVENTS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

/// At most $2 rows older than $1, found through the `(ts, event_id)` index
/// (migration 0005), deleted by rowid.
const DELETE_EVENTS_BATCH: &str =
    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE ts < $1 LIMIT $2)";

fn push_event_filter(q: &mut QueryBuilder<Sqlite>, filter: &EventFilter) {
    if let Some(name) = &filter.name {
        q.push(" AND name = ").push_bind(name.clone());
    }
    if let Some(unit) = &filter.unit {
        q.push(" AND unit = ").push_bind(unit.clone());
    }
    if let Some(community) = &filter.community {
        q.push(" AND community = ").push_bind(community.clone());
    }
    if let Some(from) = filter.from {
        q.push(" AND ts >= ").push_bind(to_text(from));
    }
    if let Some(to) = filter.to {
        q.push(" AND ts < ").push_bind(to_text(to));
    }
}

fn event_record_from_row(row: &SqliteRow) -> Result<EventRecord, StoreError> {
    let id: Vec<u8> = row.try_get("event_id").map_err(db_err)?;
    let Json(properties) = row.try_get("properties").map_err(db_err)?;
    Ok(EventRecord {
        event_id: event_id_from_bytes(&id)?,
        unit: row.try_get("unit").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        ts: time(row, "ts")?,
        received_at: time(row, "received_at")?,
        properties,
    })
}

fn consent_from_row(row: &SqliteRow) -> Result<ConsentRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db_err)?;
    Ok(ConsentRecord {
        unit: row.try_get("unit").map_err(db_err)?,
        scope: row.try_get("scope").map_err(db_err)?,
        text_version: row.try_get("text_version").map_err(db_err)?,
        granted: consent_granted(&status)?,
        at: time(row, "at")?,
    })
}

fn erasure_from_row(row: &SqliteRow) -> Result<ErasureRecord, StoreError> {
    let Json(counts) = row.try_get("counts").map_err(db_err)?;
    Ok(ErasureRecord {
        unit: row.try_get("unit").map_err(db_err)?,
        erased_at: time(row, "erased_at")?,
        counts,
    })
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

    #[tokio::test]
    async fn a_failed_wal_flush_refuses_every_later_acknowledgement() {
        let dir = std::env::temp_dir().join(format!("commonlab-walsync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // `sub` is a file, so opening `sub/db-wal` fails (not "not found").
        let sub = dir.join("sub");
        std::fs::write(&sub, b"").unwrap();
        let wal = WalSync::new(Some(sub.join("db-wal")));
        assert!(
            wal.sync(0).await.is_ok(),
            "nothing committed, nothing to flush"
        );
        let first = wal.committed();
        let err = wal.sync(first).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("restart")),
            "{err:?}"
        );

        // The file can be flushed now, yet nothing is acknowledged any more.
        std::fs::remove_file(&sub).unwrap();
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("db-wal"), b"frames").unwrap();
        let second = wal.committed();
        assert!(wal.sync(second).await.is_err());
        assert!(wal.sync(first).await.is_err());

        // A healthy one flushes and then answers from what it flushed.
        let healthy = WalSync::new(Some(sub.join("db-wal")));
        let point = healthy.committed();
        healthy.sync(point).await.unwrap();
        assert_eq!(*healthy.synced.lock().await, Ok(point));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
