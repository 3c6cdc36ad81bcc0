//! API keys: hashes only, with a version counter that every change bumps
//! in its transaction, for replicas to poll cheaply.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::column::{micros, Ts};
use crate::error::{db_err, is_unique_violation, unique_violation_on};
use crate::{Store, StoreError, BUMP_COUNTER};

/// An API key to store. `id` is the 12 lowercase hex characters from the key,
/// `hash_hex` the 64 lowercase hex characters of its SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct NewApiKeyRecord<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub hash_hex: &'a str,
    pub created_by: &'a str,
    /// Why the key was made (`None` only for keys made by the server itself).
    pub reason: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// A stored API key. The hash is never serialized (nor deserialized: it is
/// empty in a record read from JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub hash_hex: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it was made (`None` for keys made before this was recorded, or by
    /// the server itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_reason: Option<String>,
    /// Who revoked it and why, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<String>,
}

impl ApiKeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

impl Store {
    /// Stores a new key and bumps [`Store::keys_version`].
    /// [`StoreError::AlreadyExists`] if an active key has that name (or, very
    /// unlikely, any key has that id).
    pub async fn insert_api_key(
        &self,
        key: &NewApiKeyRecord<'_>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let at = Ts(micros(key.at));
        let result: Result<ApiKeyRecord, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let record = sqlx::query_as(INSERT_KEY)
                .bind(key.id)
                .bind(key.name)
                .bind(key.role)
                .bind(key.hash_hex)
                .bind(at)
                .bind(key.created_by)
                .bind(key.reason)
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(BUMP_COUNTER)
                .bind(API_KEYS_COUNTER)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(record)
        });
        result.map_err(|e| already_exists(e, key))
    }

    /// All keys (or only active ones), oldest first.
    pub async fn list_api_keys(
        &self,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = if include_revoked {
            LIST_KEYS
        } else {
            LIST_ACTIVE_KEYS
        };
        with_backend!(self, |db| sqlx::query_as(sql).fetch_all(db.reader()).await).map_err(db_err)
    }

    /// The key with this id, revoked or not.
    pub async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(FIND_KEY)
            .bind(id)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Revokes the active key whose id is `id_or_name` or, failing that, the
    /// active key named `id_or_name`, and bumps [`Store::keys_version`].
    /// [`StoreError::NotFound`] if there is no such active key.
    pub async fn revoke_api_key(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        self.revoke_api_key_by(id_or_name, None, None, at).await
    }

    /// [`Store::revoke_api_key`], recording who revoked the key and why.
    pub async fn revoke_api_key_by(
        &self,
        id_or_name: &str,
        actor: Option<&str>,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let at = Ts(micros(at));
        let result: Result<Option<ApiKeyRecord>, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let mut revoked = None;
            for sql in [REVOKE_KEY_BY_ID, REVOKE_KEY_BY_NAME] {
                revoked = sqlx::query_as(sql)
                    .bind(id_or_name)
                    .bind(at)
                    .bind(actor)
                    .bind(reason)
                    .fetch_optional(&mut *tx)
                    .await?;
                if revoked.is_some() {
                    break;
                }
            }
            if revoked.is_some() {
                sqlx::query(BUMP_COUNTER)
                    .bind(API_KEYS_COUNTER)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(revoked)
        });
        match result.map_err(db_err)? {
            Some(record) => Ok(record),
            None => Err(StoreError::NotFound(format!(
                "active API key '{id_or_name}'"
            ))),
        }
    }

    /// A number that changes (grows) whenever a key is created or revoked.
    pub async fn keys_version(&self) -> Result<i64, StoreError> {
        self.counter(API_KEYS_COUNTER).await
    }

    /// Keys that are not revoked, oldest first.
    pub async fn active_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.list_api_keys(false).await
    }
}

fn already_exists(err: sqlx::Error, key: &NewApiKeyRecord<'_>) -> StoreError {
    if unique_violation_on(&err, "name") {
        StoreError::AlreadyExists(format!("active API key named '{}'", key.name))
    } else if is_unique_violation(&err) {
        StoreError::AlreadyExists(format!("API key with id '{}'", key.id))
    } else {
        db_err(err)
    }
}

/// The `change_counters` row of API keys.
const API_KEYS_COUNTER: &str = "api_keys";

/// The columns of an [`ApiKeyRecord`].
macro_rules! key_columns {
    () => {
        "id, name, role, hash_hex, created_at, created_by, revoked_at, created_reason, \
         revoked_by, revoked_reason"
    };
}

/// $1 id, $2 name, $3 role, $4 hash, $5 at, $6 created by, $7 reason.
const INSERT_KEY: &str = concat!(
    "INSERT INTO api_keys (id, name, role, hash_hex, created_at, created_by, created_reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
    key_columns!()
);

const LIST_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys ORDER BY created_at, id"
);

const LIST_ACTIVE_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id"
);

const FIND_KEY: &str = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");

/// $1 id, $2 at, $3 actor, $4 reason.
const REVOKE_KEY_BY_ID: &str = concat!(
    "UPDATE api_keys SET revoked_at = $2, revoked_by = $3, revoked_reason = $4 \
     WHERE id = $1 AND revoked_at IS NULL RETURNING ",
    key_columns!()
);

/// $1 name, $2 at, $3 actor, $4 reason.
const REVOKE_KEY_BY_NAME: &str = concat!(
    "UPDATE api_keys SET revoked_at = $2, revoked_by = $3, revoked_reason = $4 \
     WHERE name = $1 AND revoked_at IS NULL RETURNING ",
    key_columns!()
);
