//! PostgreSQL backend: one pool, READ COMMITTED transactions whose
//! conditional writes do the compare-and-set (see the crate documentation).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::{
    already_exists, append_failure, bad_url, db_err, migrate_err, revoke_not_found, sql,
    ApiKeyRecord, FlagSetRevision, NewApiKeyRecord, NewRevision, RevisionSummary, StoreError,
};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e| bad_url(url, e))?;
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
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
        let done = sqlx::raw_sql(statement).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    #[cfg(feature = "test-support")]
    pub(crate) async fn fetch_text_raw(&self, query: &str) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query(query).fetch_optional(&self.pool).await?;
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
        let row = sqlx::query(&sql::revision())
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
    ) -> Result<Option<FlagSetRevision>, sqlx::Error> {
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
            let row = sqlx::query(&sql::insert_key())
                .bind(key.id)
                .bind(key.name)
                .bind(key.role)
                .bind(key.hash_hex)
                .bind(key.at)
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
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(&sql::find_key())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn revoke_api_key(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let result: Result<Option<PgRow>, sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            let mut row = None;
            for column in ["id", "name"] {
                row = sqlx::query(&sql::revoke_key_by(column))
                    .bind(id_or_name)
                    .bind(at)
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
}

async fn bump_keys_version(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query(sql::BUMP_COUNTER)
        .bind(sql::API_KEYS_COUNTER)
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
    })
}
