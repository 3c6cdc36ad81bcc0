//! The web console's sessions: opened by signing in with an API key, ended
//! by their expiry, by sign-out, by the key's revocation (the lookup joins
//! the key) or by the key opening more sessions than it may hold. Every
//! replica reads the same rows, so a sign-out on one ends the session on
//! all of them. The session id is a keyed hash of the cookie's secret
//! (made by the server); the secret itself is never stored.

use chrono::{DateTime, Utc};

use crate::column::{micros, Ts};
use crate::error::db_err;
use crate::{Store, StoreError};

/// A session to open.
#[derive(Debug, Clone, Copy)]
pub struct NewConsoleSession<'a> {
    /// 64 lowercase hex characters (a keyed hash of the cookie's secret).
    pub id: &'a str,
    /// The API key signing in (must be active).
    pub key_id: &'a str,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Most live sessions the key may hold: the oldest beyond it end
    /// (`replaced`) in the transaction that opens this one.
    pub max_per_key: usize,
}

/// A live session, with its key's name and role as they are now.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSessionRecord {
    pub id: String,
    pub key_id: String,
    pub key_name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Opens a session for an active key and ends the key's oldest live
    /// sessions beyond `max_per_key`, in one transaction.
    /// [`StoreError::NotFound`] when the key is unknown or revoked.
    /// (Two sign-ins of one key at the same instant may each miss the
    /// other's row and leave one session more than the bound until the
    /// next sign-in.)
    pub async fn open_console_session(&self, s: &NewConsoleSession<'_>) -> Result<(), StoreError> {
        let at = Ts(micros(s.at));
        let expires = Ts(micros(s.expires_at));
        let keep = i64::try_from(s.max_per_key.max(1)).unwrap_or(i64::MAX);
        let opened: Result<bool, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let inserted = sqlx::query(OPEN_SESSION)
                .bind(s.id)
                .bind(s.key_id)
                .bind(at)
                .bind(expires)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(END_BEYOND_BOUND)
                .bind(s.key_id)
                .bind(at)
                .bind(keep)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        });
        match opened.map_err(db_err)? {
            true => Ok(()),
            false => Err(StoreError::NotFound(format!(
                "active API key '{}'",
                s.key_id
            ))),
        }
    }

    /// The session `id` if it is live at `now`: not ended, not expired,
    /// and its key not revoked.
    pub async fn console_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ConsoleSessionRecord>, StoreError> {
        let now = Ts(micros(now));
        with_backend!(self, |db| sqlx::query_as(LIVE_SESSION)
            .bind(id)
            .bind(now)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Ends session `id` (sign-out); whether it was live. Idempotent.
    pub async fn end_console_session(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = Ts(micros(at));
        let ended: Result<u64, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let n = sqlx::query(SIGN_OUT)
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        });
        Ok(ended.map_err(db_err)? > 0)
    }

    /// How many sessions of `key_id` are live at `now` (none once the key
    /// is revoked).
    pub async fn live_console_sessions(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let now = Ts(micros(now));
        with_backend!(self, |db| sqlx::query_scalar(COUNT_LIVE)
            .bind(key_id)
            .bind(now)
            .fetch_one(db.reader())
            .await)
        .map_err(db_err)
    }
}

/// $1 id, $2 key id, $3 at, $4 expires: inserts only for an active key.
const OPEN_SESSION: &str = "INSERT INTO console_sessions (id, key_id, created_at, expires_at) \
     SELECT $1, id, $3, $4 FROM api_keys WHERE id = $2 AND revoked_at IS NULL";

/// $1 key id, $2 at, $3 how many to keep: the newest live ones stay.
const END_BEYOND_BOUND: &str =
    "UPDATE console_sessions SET ended_at = $2, end_reason = 'replaced' \
     WHERE id IN (SELECT id FROM console_sessions \
         WHERE key_id = $1 AND ended_at IS NULL AND expires_at > $2 \
         ORDER BY created_at DESC, id DESC LIMIT 1000000 OFFSET $3)";

/// $1 id, $2 now.
const LIVE_SESSION: &str = "SELECT s.id, s.key_id, k.name AS key_name, k.role, s.created_at, \
     s.expires_at FROM console_sessions s JOIN api_keys k ON k.id = s.key_id \
     WHERE s.id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND k.revoked_at IS NULL";

/// $1 id, $2 at.
const SIGN_OUT: &str = "UPDATE console_sessions SET ended_at = $2, end_reason = 'sign-out' \
     WHERE id = $1 AND ended_at IS NULL";

/// $1 key id, $2 now.
const COUNT_LIVE: &str = "SELECT COUNT(*) FROM console_sessions s \
     JOIN api_keys k ON k.id = s.key_id \
     WHERE s.key_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND k.revoked_at IS NULL";
