//! PostgreSQL backend: one pool, READ COMMITTED transactions whose
//! conditional writes do the compare-and-set (see the crate documentation).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Executor, Postgres, QueryBuilder, Row};

use crate::FlagDeviation;
use crate::{
    already_exists, append_failure, bad_url, consent_granted, consent_status, db_err, decode_err,
    migrate_err, revoke_not_found, sql, trial_exists, write_err, ApiKeyRecord, ArmCounts,
    AssignmentExport, AssignmentRecord, ConsentRecord, ErasureOutcome, ErasureRecord, EventCursor,
    EventFilter, EventRecord, FlagSetRevision, NewApiKeyRecord, NewAssignment, NewExposure,
    NewRevision, NewSequentialAssignment, NewTrial, PreparedEvent, RevisionSummary, StoreError,
    TrialChange, TrialEvent, TrialRecord, TrialStatus, TrialUpdate, EXPOSURES_PER_STATEMENT,
};

mod privacy;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Event transactions worth running at once (see [`crate::Store::event_writers`]);
/// leaves most of the pool to other work.
pub(crate) const EVENT_WRITERS: usize = 3;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn connect(url: &str, size: Option<u32>) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e| bad_url(url, e))?;
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(size.unwrap_or(crate::StoreOptions::DEFAULT_POSTGRES_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(CREATE_EVENTS_STAGING).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(reason) => bad_url(url, reason),
                // Refused connections are retried until the timeout.
                sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {target} within {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                )),
                other => StoreError::Unavailable(format!("PostgreSQL at {target}: {other}")),
            })?;
        Ok(PgStore { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(migrate_err)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn execute_raw(&self, statement: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn fetch_text_raw(&self, query: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(query))
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(revision_from_row).transpose()
    }

    pub(crate) async fn flag_set_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(sql::VERSIONS)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn current_revision(&self, set: &str) -> Result<i64, StoreError> {
        let current: Option<i64> = sqlx::query_scalar(sql::CURRENT)
            .bind(set)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(current.unwrap_or(0))
    }

    pub(crate) async fn append_flag_set_revision(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
        deviations: &[FlagDeviation<'_>],
    ) -> Result<(FlagSetRevision, Vec<String>), StoreError> {
        let err = if expected < 0 {
            None
        } else {
            match self.try_append(set, expected, change, deviations).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => None,
                Err(e) => Some(e),
            }
        };
        // A new statement at READ COMMITTED: sees the winner's commit.
        let current = self.current_revision(set).await?;
        Err(append_failure(err, expected, current))
    }

    /// `Ok(None)` if the head is not `expected`.
    async fn try_append(
        &self,
        set: &str,
        expected: i64,
        change: &NewRevision<'_>,
        deviations: &[FlagDeviation<'_>],
    ) -> Result<Option<(FlagSetRevision, Vec<String>)>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // A concurrent writer of the same set makes these wait for its row
        // (or unique-index entry) and then re-check against its commit.
        let set_id: Option<i64> = if expected == 0 {
            sqlx::query_scalar(sql::CREATE_SET)
                .bind(set)
                .bind(change.at)
                .fetch_optional(&mut *tx)
                .await?
        } else {
            sqlx::query_scalar(sql::ADVANCE_SET)
                .bind(set)
                .bind(change.at)
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
            .bind(change.at)
            .execute(&mut *tx)
            .await?;
        let mut noted = Vec::new();
        if !deviations.is_empty() {
            let trials = sqlx::query(sql::RUNNING_TRIAL_HEADS_LOCKED)
                .fetch_all(&mut *tx)
                .await?;
            for t in &trials {
                let flag: String = t.try_get("flag_key")?;
                for d in deviations.iter().filter(|d| d.flag_key == flag) {
                    let id: i64 = t.try_get("id")?;
                    let hash: String = t.try_get("spec_hash")?;
                    let version: i64 = t.try_get("version")?;
                    insert_trial_event(
                        &mut tx,
                        id,
                        "deviation",
                        change.actor,
                        d.reason,
                        &hash,
                        version,
                        change.at,
                    )
                    .await?;
                    noted.push(t.try_get("key")?);
                }
            }
        }
        tx.commit().await?;
        let stored = FlagSetRevision {
            set: set.to_string(),
            revision,
            document: change.document.to_string(),
            actor: change.actor.to_string(),
            action: change.action.to_string(),
            flag_key: change.flag_key.map(str::to_string),
            reason: change.reason.to_string(),
            created_at: change.at,
        };
        Ok(Some((stored, noted)))
    }

    pub(crate) async fn flag_set_history(
        &self,
        set: &str,
        flag_key: Option<&str>,
        before_revision: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RevisionSummary>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(sql::HISTORY_PREFIX);
        q.push_bind(set);
        if let Some(key) = flag_key {
            q.push(" AND r.flag_key = ").push_bind(key);
        }
        if let Some(before) = before_revision {
            q.push(" AND r.revision < ").push_bind(before);
        }
        q.push(" ORDER BY r.revision DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(summary_from_row).collect()
    }

    pub(crate) async fn insert_api_key(
        &self,
        key: &NewApiKeyRecord<'_>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let result: Result<PgRow, sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(AssertSqlSafe(sql::insert_key()))
                .bind(key.id)
                .bind(key.name)
                .bind(key.role)
                .bind(key.hash_hex)
                .bind(key.at)
                .bind(key.created_by)
                .bind(key.reason)
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
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(sql::find_key()))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        id_or_name: &str,
        actor: Option<&str>,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let result: Result<Option<PgRow>, sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            let mut row = None;
            for column in ["id", "name"] {
                row = sqlx::query(AssertSqlSafe(sql::revoke_key_by(column)))
                    .bind(id_or_name)
                    .bind(at)
                    .bind(actor)
                    .bind(reason)
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
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    pub(crate) async fn create_trial(&self, t: &NewTrial<'_>) -> Result<TrialRecord, StoreError> {
        let result: Result<PgRow, sqlx::Error> = async {
            let at = t.at;
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(AssertSqlSafe(sql::insert_trial()))
                .bind(t.key)
                .bind(t.flag_key)
                .bind(t.spec_source)
                .bind(t.spec_canonical)
                .bind(t.spec_hash)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
            let id: i64 = row.try_get("id")?;
            insert_trial_event(&mut tx, id, "create", t.actor, t.reason, t.spec_hash, 1, at)
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
            .fetch_optional(&self.pool)
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
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(trial_from_row).collect()
    }

    pub(crate) async fn trials_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(sql::COUNTER)
            .bind(sql::TRIALS_COUNTER)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// `Ok(None)` if the update's condition does not hold. The counter is
    /// bumped first: on PostgreSQL its row lock serialises trial changes, so
    /// the running trials `overlaps` is given cannot change before commit.
    pub(crate) async fn update_trial(
        &self,
        key: &str,
        update: &TrialUpdate<'_>,
        change: &TrialChange<'_>,
        overlaps: Option<&crate::OverlapCheck<'_>>,
    ) -> Result<Option<TrialRecord>, StoreError> {
        let result: Result<Result<Option<PgRow>, String>, sqlx::Error> = async {
            let at = change.at;
            let sql = update.sql();
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(key).bind(at);
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
                TrialUpdate::Conclude {
                    spec_hash, version, ..
                } => q.bind(spec_hash).bind(version),
            };
            let mut tx = self.pool.begin().await?;
            bump_counter(&mut tx, sql::TRIALS_COUNTER).await?;
            if let Some(overlaps) = overlaps {
                let running = sqlx::query(AssertSqlSafe(sql::running_but()))
                    .bind(key)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(trial_from_row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(crate::into_sqlx)?;
                if let Some(why) = overlaps(&running) {
                    tx.rollback().await?;
                    return Ok(Err(why));
                }
            }
            let Some(row) = q.fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                return Ok(Ok(None));
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
                at,
            )
            .await?;
            insert_snapshots(&mut tx, id, update.snapshots()).await?;
            tx.commit().await?;
            Ok(Ok(Some(row)))
        }
        .await;
        result
            .map_err(write_err)?
            .map_err(StoreError::InvalidState)?
            .as_ref()
            .map(trial_from_row)
            .transpose()
    }

    pub(crate) async fn trial_events(&self, key: &str) -> Result<Vec<TrialEvent>, StoreError> {
        let rows = sqlx::query(sql::TRIAL_EVENTS)
            .bind(key)
            .fetch_all(&self.pool)
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
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(assignment_from_row).transpose()
    }

    /// Takes the stratum's next position with an upsert that holds the
    /// counter row locked to the end of the transaction (serialising new
    /// assignments within a stratum), then inserts the assignment; if the
    /// unit was assigned concurrently the insert does nothing (after waiting
    /// for the other transaction) and everything is rolled back, position
    /// included.
    pub(crate) async fn assign_sequential(
        &self,
        a: &NewSequentialAssignment<'_>,
        arm_for: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let result: Result<(PgRow, bool), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            let position: i64 = sqlx::query_scalar(sql::TAKE_POSITION)
                .bind(a.trial_id)
                .bind(a.stratum.unwrap_or(""))
                .fetch_one(&mut *tx)
                .await?;
            let arm = arm_for(position);
            let inserted = sqlx::query(AssertSqlSafe(sql::insert_assignment()))
                .bind(a.trial_id)
                .bind(a.unit)
                .bind(&arm)
                .bind(a.stratum)
                .bind(a.community)
                .bind(position)
                .bind(a.trial_version)
                .bind(a.at)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = inserted {
                tx.commit().await?;
                return Ok((row, true));
            }
            tx.rollback().await?;
            // The winner has committed (the insert waited for it).
            let row = sqlx::query(AssertSqlSafe(sql::get_assignment()))
                .bind(a.trial_id)
                .bind(a.unit)
                .fetch_one(&self.pool)
                .await?;
            Ok((row, false))
        }
        .await;
        let (row, created) = result.map_err(write_err)?;
        Ok((assignment_from_row(&row)?, created))
    }

    pub(crate) async fn assign_fixed(
        &self,
        a: &NewAssignment<'_>,
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let result: Result<(PgRow, bool), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(AssertSqlSafe(sql::insert_assignment()))
                .bind(a.trial_id)
                .bind(a.unit)
                .bind(a.arm)
                .bind(a.stratum)
                .bind(a.community)
                .bind(None::<i64>)
                .bind(a.trial_version)
                .bind(a.at)
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
            let mut tx = self.pool.begin().await?;
            let mut new = 0;
            for chunk in batch.chunks(EXPOSURES_PER_STATEMENT) {
                let mut q = QueryBuilder::<Postgres>::new(sql::EXPOSURES_INSERT);
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(e.trial_id)
                        .push_bind(e.unit.as_str())
                        .push_bind(e.arm.as_str())
                        .push_bind(e.community.as_deref())
                        .push_bind(e.trial_version)
                        .push_bind(e.at)
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
        let mut q = QueryBuilder::<Postgres>::new(sql::EXPORT_PREFIX);
        q.push_bind(trial_id);
        if let Some(after) = after_unit {
            q.push(" AND a.unit > ").push_bind(after);
        }
        q.push(" ORDER BY a.unit LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(export_from_row).collect()
    }

    /// (assigned per arm, exposed and not excluded per arm).
    pub(crate) async fn arm_counts(&self, trial_id: i64) -> Result<ArmCounts, StoreError> {
        let assigned = sqlx::query_as(sql::ASSIGNED_PER_ARM)
            .bind(trial_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let exposed = sqlx::query_as(EXPOSED_PER_ARM)
            .bind(trial_id)
            .fetch_all(&self.pool)
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
                .bind(as_of),
            &q.binds
        );
        query.fetch_all(&self.pool).await.map_err(db_err)
    }

    pub(crate) async fn metric_plan(
        &self,
        q: &crate::metrics::Compiled,
        trial_id: i64,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!("{}{}", "EXPLAIN ", q.sql);
        let query = crate::metrics::bind_metric!(
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(trial_id)
                .bind(as_of),
            &q.binds
        );
        let rows = query.fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(db_err))
            .collect()
    }

    pub(crate) async fn save_metric_snapshots(
        &self,
        trial_id: i64,
        snapshots: &[crate::MetricSnapshot],
    ) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            insert_snapshots(&mut tx, trial_id, snapshots).await?;
            tx.commit().await
        }
        .await;
        result.map_err(write_err)
    }

    pub(crate) async fn metric_snapshots(
        &self,
        trial_id: i64,
    ) -> Result<Vec<crate::MetricSnapshot>, StoreError> {
        let rows = sqlx::query(crate::metrics::SNAPSHOT_SELECT)
            .bind(trial_id)
            .fetch_all(&self.pool)
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
                    as_of: r.try_get("as_of").map_err(|e| decode_err("as_of", e))?,
                    computed_at: r
                        .try_get("computed_at")
                        .map_err(|e| decode_err("computed_at", e))?,
                    cells,
                })
            })
            .collect()
    }

    /// `batch` is deduplicated and sorted by id, timestamps truncated.
    /// Returns the ids inserted.
    ///
    /// The transaction runs in a task of its own, so dropping this future
    /// (a client gone, a timeout) cannot interrupt it: sqlx's `COPY` is not
    /// cancel-safe (a `PgCopyIn` dropped while `finish()` awaits its
    /// `CommandComplete` leaves the connection one message out of step, and
    /// the pool hands it on; seen as `BeginFailed` on the next `BEGIN`).
    /// The task owns its data and its pooled connection; it commits or rolls
    /// back whole, and [`PgStore::close`] waits for it (the pool closes only
    /// once every connection is back).
    pub(crate) async fn insert_events(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let inserted = self.copy_in_task(batch, received_at, true).await?;
        match inserted {
            None => Ok(batch.iter().map(|p| p.event.event_id).collect()),
            Some(ids) => ids
                .iter()
                .map(|id: &String| uuid::Uuid::parse_str(id).map_err(|e| decode_err("event_id", e)))
                .collect(),
        }
    }

    /// Whether the database accepts every row of `batch`: the same
    /// transaction as [`PgStore::insert_events`], rolled back (see
    /// `crate::ingest`).
    pub(crate) async fn probe_events(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.copy_in_task(batch, received_at, false).await.map(drop)
    }

    /// [`copy_events`] in a task of its own (see [`PgStore::insert_events`]).
    async fn copy_in_task(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
        commit: bool,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let data = copy_text(batch);
        let expected = batch.len() as u64;
        let pool = self.pool.clone();
        let task = tokio::spawn(copy_events(pool, data, expected, received_at, commit));
        match task.await {
            Ok(result) => result.map_err(write_err),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the event transaction was cancelled: {e}"
            ))),
        }
    }

    pub(crate) async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM events WHERE TRUE");
        push_event_filter(&mut q, filter);
        let n: i64 = q
            .build_query_scalar()
            .fetch_one(&self.pool)
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
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT event_id::text AS event_id, {} FROM events WHERE TRUE",
            sql::EVENT_COLUMNS_AFTER_ID
        ));
        push_event_filter(&mut q, filter);
        if let Some(after) = after {
            q.push(" AND (ts, event_id) > (")
                .push_bind(after.ts)
                .push(", CAST(")
                .push_bind(after.event_id.to_string())
                .push(" AS uuid))");
        }
        q.push(" ORDER BY ts, event_id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(event_record_from_row).collect()
    }

    /// Deletes at most `limit` events older than `cutoff` in one
    /// transaction.
    pub(crate) async fn delete_events_batch(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(DELETE_EVENTS_BATCH)
            .bind(cutoff)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(write_err)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn set_consent(&self, c: &ConsentRecord) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(sql::INSERT_CONSENT)
                .bind(&c.unit)
                .bind(&c.scope)
                .bind(&c.text_version)
                .bind(consent_status(c.granted))
                .bind(c.at)
                .execute(&mut *tx)
                .await?;
            bump_counter(&mut tx, sql::CONSENTS_COUNTER).await?;
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
            .fetch_optional(&self.pool)
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
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(consent_from_row).collect()
    }

    pub(crate) async fn erase_unit(
        &self,
        unit: &str,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<ErasureOutcome, StoreError> {
        let result: Result<ErasureOutcome, sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
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
                .bind(at)
                .bind(Json(outcome))
                .bind(actor)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            bump_counter(&mut tx, sql::ERASURES_COUNTER).await?;
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
            .bind(at)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(erasure_from_row).collect()
    }
}

/// Created on every new connection (`after_connect`): the COPY target of
/// [`PgStore::insert_events`]. Temporary (private to its session, never
/// WAL-logged) and emptied at the end of every transaction that used it.
const CREATE_EVENTS_STAGING: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS events_staging (\
     event_id uuid NOT NULL, unit text NOT NULL, community text, name text NOT NULL, \
     ts timestamptz NOT NULL, properties jsonb NOT NULL) ON COMMIT DELETE ROWS";

/// Text format: tab-separated, `\N` for NULL, backslash escapes.
const COPY_EVENTS: &str =
    "COPY events_staging (event_id, unit, community, name, ts, properties) FROM STDIN";

/// $1 received_at. In id order, so that concurrent batches wait for each
/// other's index entries in the same order (no deadlocks).
const INSERT_STAGED_EVENTS: &str =
    "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) \
     SELECT event_id, unit, community, name, ts, $1, properties FROM events_staging \
     ORDER BY event_id ON CONFLICT (event_id) DO NOTHING";

/// The staged events this transaction inserted (a row's `xmin` is the id of
/// the transaction that inserted it; a conflicting row is someone else's).
const EVENT_IDS_INSERTED_HERE: &str = "SELECT e.event_id::text FROM events e \
     JOIN events_staging s USING (event_id) WHERE e.xmin = pg_current_xact_id()::xid";

/// A TID scan of at most $2 rows older than $1, found by a sequential scan
/// (heap order is roughly insertion order: old rows first).
const DELETE_EVENTS_BATCH: &str = "DELETE FROM events WHERE ctid = ANY(ARRAY(\
     SELECT ctid FROM events WHERE ts < $1 LIMIT $2))";

/// One event transaction of [`PgStore::insert_events`]: `COPY` of `data`
/// (`expected` rows) into the staging table, then the insert. `None` when
/// every row went in, else the ids this transaction inserted. Rolled back
/// instead of committed unless `commit` (a probe).
async fn copy_events(
    pool: PgPool,
    data: Vec<u8>,
    expected: u64,
    received_at: DateTime<Utc>,
    commit: bool,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut copy = tx.copy_in_raw(COPY_EVENTS).await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await?;
    let stored = sqlx::query(INSERT_STAGED_EVENTS)
        .bind(received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if !commit {
        // The staging table is `ON COMMIT DELETE ROWS`: a rollback empties
        // it as well.
        tx.rollback().await?;
        return Ok(None);
    }
    // Reading back which ids went in only when some did not is cheaper
    // than `RETURNING` every id.
    let ids = if stored == expected {
        None
    } else {
        Some(
            sqlx::query_scalar(EVENT_IDS_INSERTED_HERE)
                .fetch_all(&mut *tx)
                .await?,
        )
    };
    tx.commit().await?;
    Ok(ids)
}

/// The COPY text-format rows of `batch`.
fn copy_text(batch: &[PreparedEvent<'_>]) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::with_capacity(batch.len() * 256);
    for p in batch {
        let e = p.event;
        let _ = write!(out, "{}\t", e.event_id.hyphenated());
        copy_escape(&mut out, &e.unit);
        out.push('\t');
        match &e.community {
            Some(c) => copy_escape(&mut out, c),
            None => out.push_str("\\N"),
        }
        out.push('\t');
        copy_escape(&mut out, &e.name);
        let _ = write!(out, "\t{}\t", p.ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        copy_escape(&mut out, &p.properties);
        out.push('\n');
    }
    out.into_bytes()
}

/// Appends `value` escaped for COPY's text format.
fn copy_escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn push_event_filter(q: &mut QueryBuilder<Postgres>, filter: &EventFilter) {
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
        q.push(" AND ts >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND ts < ").push_bind(to);
    }
}

fn event_record_from_row(row: &PgRow) -> Result<EventRecord, StoreError> {
    let id: String = row.try_get("event_id").map_err(db_err)?;
    let Json(properties) = row.try_get("properties").map_err(db_err)?;
    Ok(EventRecord {
        event_id: uuid::Uuid::parse_str(&id).map_err(|e| decode_err("event_id", e))?,
        unit: row.try_get("unit").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        ts: row.try_get("ts").map_err(db_err)?,
        received_at: row.try_get("received_at").map_err(db_err)?,
        properties,
    })
}

fn consent_from_row(row: &PgRow) -> Result<ConsentRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db_err)?;
    Ok(ConsentRecord {
        unit: row.try_get("unit").map_err(db_err)?,
        scope: row.try_get("scope").map_err(db_err)?,
        text_version: row.try_get("text_version").map_err(db_err)?,
        granted: consent_granted(&status)?,
        at: row.try_get("at").map_err(db_err)?,
    })
}

fn erasure_from_row(row: &PgRow) -> Result<ErasureRecord, StoreError> {
    let Json(counts) = row.try_get("counts").map_err(db_err)?;
    Ok(ErasureRecord {
        unit: row.try_get("unit").map_err(db_err)?,
        erased_at: row.try_get("erased_at").map_err(db_err)?,
        counts,
        actor: row.try_get("actor").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
    })
}

async fn bump_keys_version(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    bump_counter(tx, sql::API_KEYS_COUNTER).await
}

/// Matches the partial index `exposures_arm_idx` (`WHERE NOT excluded`).
const EXPOSED_PER_ARM: &str =
    "SELECT arm, COUNT(*) FROM exposures WHERE trial_id = $1 AND NOT excluded GROUP BY arm";

/// Stores (replacing) metric snapshots of a trial inside `tx`.
async fn insert_snapshots(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    trial_id: i64,
    snapshots: &[crate::MetricSnapshot],
) -> Result<(), sqlx::Error> {
    for s in snapshots {
        sqlx::query(sql::UPSERT_SNAPSHOT)
            .bind(trial_id)
            .bind(s.metric.as_str())
            .bind(s.spec_hash.as_str())
            .bind(s.as_of)
            .bind(s.computed_at)
            .bind(Json(&s.cells))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn bump_counter(
    tx: &mut sqlx::Transaction<'_, Postgres>,
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
    tx: &mut sqlx::Transaction<'_, Postgres>,
    trial_id: i64,
    action: &str,
    actor: &str,
    reason: &str,
    spec_hash: &str,
    version: i64,
    at: DateTime<Utc>,
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

fn revision_from_row(row: &PgRow) -> Result<FlagSetRevision, StoreError> {
    Ok(FlagSetRevision {
        set: row.try_get("name").map_err(db_err)?,
        revision: row.try_get("revision").map_err(db_err)?,
        document: row.try_get("document").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        flag_key: row.try_get("flag_key").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

fn summary_from_row(row: &PgRow) -> Result<RevisionSummary, StoreError> {
    Ok(RevisionSummary {
        set: row.try_get("name").map_err(db_err)?,
        revision: row.try_get("revision").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        flag_key: row.try_get("flag_key").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(db_err)?,
        name: row.try_get("name").map_err(db_err)?,
        role: row.try_get("role").map_err(db_err)?,
        hash_hex: row.try_get("hash_hex").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        revoked_at: row.try_get("revoked_at").map_err(db_err)?,
        created_reason: row.try_get("created_reason").map_err(db_err)?,
        revoked_by: row.try_get("revoked_by").map_err(db_err)?,
        revoked_reason: row.try_get("revoked_reason").map_err(db_err)?,
    })
}

fn trial_from_row(row: &PgRow) -> Result<TrialRecord, StoreError> {
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
        created_at: row.try_get("created_at").map_err(db_err)?,
        updated_at: row.try_get("updated_at").map_err(db_err)?,
        started_at: row.try_get("started_at").map_err(db_err)?,
        stopped_at: row.try_get("stopped_at").map_err(db_err)?,
        concluded_at: row.try_get("concluded_at").map_err(db_err)?,
        archived_at: row.try_get("archived_at").map_err(db_err)?,
    })
}

fn event_from_row(row: &PgRow) -> Result<TrialEvent, StoreError> {
    Ok(TrialEvent {
        seq: row.try_get("seq").map_err(db_err)?,
        action: row.try_get("action").map_err(db_err)?,
        actor: row.try_get("actor").map_err(db_err)?,
        reason: row.try_get("reason").map_err(db_err)?,
        spec_hash: row.try_get("spec_hash").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        created_at: row.try_get("created_at").map_err(db_err)?,
    })
}

fn assignment_from_row(row: &PgRow) -> Result<AssignmentRecord, StoreError> {
    Ok(AssignmentRecord {
        trial_id: row.try_get("trial_id").map_err(db_err)?,
        unit: row.try_get("unit").map_err(db_err)?,
        arm: row.try_get("arm").map_err(db_err)?,
        stratum: row.try_get("stratum").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        position: row.try_get("position").map_err(db_err)?,
        trial_version: row.try_get("trial_version").map_err(db_err)?,
        assigned_at: row.try_get("assigned_at").map_err(db_err)?,
    })
}

fn export_from_row(row: &PgRow) -> Result<AssignmentExport, StoreError> {
    let source: Option<String> = row.try_get("source").map_err(db_err)?;
    let excluded: Option<bool> = row.try_get("excluded").map_err(db_err)?;
    Ok(AssignmentExport {
        unit: row.try_get("unit").map_err(db_err)?,
        arm: row.try_get("arm").map_err(db_err)?,
        stratum: row.try_get("stratum").map_err(db_err)?,
        community: row.try_get("community").map_err(db_err)?,
        position: row.try_get("position").map_err(db_err)?,
        trial_version: row.try_get("trial_version").map_err(db_err)?,
        assigned_at: row.try_get("assigned_at").map_err(db_err)?,
        exposed_at: row.try_get("exposed_at").map_err(db_err)?,
        exposure_source: source
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| decode_err("source", e))?,
        exposure_trial_version: row.try_get("exposure_trial_version").map_err(db_err)?,
        excluded: excluded.unwrap_or(false),
        excluded_reason: row.try_get("excluded_reason").map_err(db_err)?,
    })
}
