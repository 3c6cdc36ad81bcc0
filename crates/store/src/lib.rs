//! Persistence over SQLite and PostgreSQL (sqlx, no compile-time checked
//! queries). This is the only crate that writes SQL.
//!
//! One API, [`Store`], over two backends chosen by the URL given to
//! [`Store::connect`]:
//!
//! * `sqlite://path/to/file.db` (relative paths are fine; the file is created
//!   if missing, its directory is not), `sqlite::memory:` for a throw-away
//!   database on a single connection;
//! * `postgres://…` or `postgresql://…`.
//!
//! Schema migrations live in `migrations/sqlite/` and `migrations/postgres/`
//! at the workspace root, are embedded in the binary, and are applied by
//! [`Store::migrate`] (never implicitly by [`Store::connect`]).
//!
//! # Concurrency
//!
//! Several stateless server processes may share one database, so all
//! concurrency control lives in the database, never in process memory:
//!
//! * Appending a flag-set revision is optimistic: the caller says which head
//!   revision it based its change on, and one transaction moves the cached
//!   head in `flag_sets` with a *conditional* write (`INSERT … ON CONFLICT DO
//!   NOTHING` for a new set, `UPDATE … WHERE current_revision = expected`
//!   otherwise) and inserts the revision row, whose primary key
//!   `(flag_set_id, revision)` is the final guard. Of several concurrent
//!   writers with the same expectation exactly one wins; the others get
//!   [`StoreError::Conflict`] carrying the revision that is current after the
//!   winner committed.
//! * API-key changes bump the `api_keys` row of `change_counters` in the same
//!   transaction, so [`Store::keys_version`] changes whenever the set of keys
//!   does; the unique partial index on active key names arbitrates races.
//!
//! ## SQLite specifics
//!
//! Connections use WAL, `synchronous = FULL` (a commit is durable once it
//! returns), `busy_timeout = 5 s` and foreign keys. A file database gets two
//! pools:
//!
//! * a **write pool with a single connection**: writers in one process queue
//!   (fairly, without sleeping in SQLite's busy handler) for that connection,
//!   so they never fight over the database lock among themselves;
//! * a **read pool** of up to four connections: WAL lets them read while the
//!   writer writes.
//!
//! Every write transaction additionally starts with `BEGIN IMMEDIATE`, which
//! takes the database's write lock up front (waiting up to the busy timeout)
//! instead of upgrading a read lock later — the upgrade is what fails with
//! `SQLITE_BUSY` immediately, busy timeout or not, when another *process*
//! (say the CLI next to a running server) writes the same file. Should a
//! write still report busy or locked, an append maps it to
//! [`StoreError::Conflict`] with the fresh head (or to
//! [`StoreError::Unavailable`] if the head did not move).
//!
//! `sqlite::memory:` uses one pool of exactly one connection that is never
//! recycled (the database lives and dies with it).
//!
//! ## PostgreSQL specifics
//!
//! One pool of at most 10 connections (sized for a 2-core machine; several
//! server processes may each hold one), acquire timeout 5 s. Transactions run
//! at the default READ COMMITTED level: the conditional `UPDATE` re-checks
//! its condition against the newest committed row after waiting for a
//! concurrent writer's row lock, which is exactly the compare-and-set needed.
//!
//! # Errors
//!
//! Connection failures (refused, timed out, pool closed, I/O, TLS, and
//! PostgreSQL's connection-class SQLSTATEs) become [`StoreError::Unavailable`]
//! — the server answers 503 — everything else unexpected is
//! [`StoreError::Database`].
//!
//! # Time
//!
//! The store never reads the clock: callers pass `at`. Timestamps are kept
//! at microsecond precision (PostgreSQL's), so values are truncated to whole
//! microseconds on the way in, identically on both backends, and the records
//! returned by writes equal what later reads return.
//!
//! # Testing
//!
//! With the `test-support` feature, the `testing` module provides a harness that runs
//! a test body against a fresh SQLite file and a fresh PostgreSQL schema; see
//! its documentation.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

mod postgres;
mod sqlite;
#[cfg(feature = "test-support")]
pub mod testing;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The head revision was not the expected one (someone else wrote first).
    #[error("revision conflict: expected {expected}, current is {current}")]
    Conflict { expected: i64, current: i64 },
    /// The thing named (e.g. "active API key 'ci'") does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing named (e.g. "active API key named 'ci'") exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The URL is not one the store understands. Passwords are masked.
    #[error("invalid database URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
    /// The database cannot be reached right now (refused, timed out, pool
    /// closed, I/O error, server shutting down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Database(sqlx::Error),
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagSetRevision {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSummary {
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

/// An API key to store. `id` is the 12 lowercase hex characters from the key,
/// `hash_hex` the 64 lowercase hex characters of its SHA-256.
#[derive(Debug, Clone, Copy)]
pub struct NewApiKeyRecord<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    pub hash_hex: &'a str,
    pub created_by: &'a str,
    pub at: DateTime<Utc>,
}

/// A stored API key. The hash is never serialized (nor deserialized: it is
/// empty in a record read from JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    #[serde(skip)]
    pub hash_hex: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Handle on the database: cheap to clone (clones share the pools).
#[derive(Clone)]
pub struct Store {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.inner {
            Inner::Sqlite(s) => s.$method($($arg),*).await,
            Inner::Postgres(p) => p.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens pools for `url` and checks that one connection can be made.
    /// Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let inner = if url.starts_with("sqlite:") {
            Inner::Sqlite(sqlite::SqliteStore::connect(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Inner::Postgres(postgres::PgStore::connect(url).await?)
        } else {
            return Err(bad_url(
                url,
                "expected sqlite://PATH, sqlite::memory: or postgres://…",
            ));
        };
        Ok(Store { inner })
    }

    /// [`Store::connect`] then [`Store::migrate`].
    pub async fn connect_and_migrate(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations that have not been applied yet.
    /// Idempotent; safe to call from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())
    }

    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// `SELECT 1`, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// The newest revision of `set`, with its document; `None` if the set
    /// has never been written.
    pub async fn flag_set_head(&self, set: &str) -> Result<Option<FlagSetRevision>, StoreError> {
        dispatch!(self.flag_set_head(set))
    }

    pub async fn flag_set_revision(
        &self,
        set: &str,
        revision: i64,
    ) -> Result<Option<FlagSetRevision>, StoreError> {
        dispatch!(self.flag_set_revision(set, revision))
    }

    /// Every flag set's name and current revision, sorted by name: one cheap
    /// query for polling.
    pub async fn flag_set_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self.flag_set_versions())
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
        let change = NewRevision {
            at: micros(change.at),
            ..*change
        };
        dispatch!(self.append_flag_set_revision(set, expected, &change))
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
        dispatch!(self.flag_set_history(set, flag_key, before_revision, limit))
    }

    /// Stores a new key and bumps [`Store::keys_version`].
    /// [`StoreError::AlreadyExists`] if an active key has that name (or, very
    /// unlikely, any key has that id).
    pub async fn insert_api_key(
        &self,
        key: &NewApiKeyRecord<'_>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let key = NewApiKeyRecord {
            at: micros(key.at),
            ..*key
        };
        dispatch!(self.insert_api_key(&key))
    }

    /// All keys (or only active ones), oldest first.
    pub async fn list_api_keys(
        &self,
        include_revoked: bool,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        dispatch!(self.list_api_keys(include_revoked))
    }

    /// The key with this id, revoked or not.
    pub async fn find_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        dispatch!(self.find_api_key(id))
    }

    /// Revokes the active key whose id is `id_or_name` or, failing that, the
    /// active key named `id_or_name`, and bumps [`Store::keys_version`].
    /// [`StoreError::NotFound`] if there is no such active key.
    pub async fn revoke_api_key(
        &self,
        id_or_name: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        dispatch!(self.revoke_api_key(id_or_name, micros(at)))
    }

    /// A number that changes (grows) whenever a key is created or revoked.
    pub async fn keys_version(&self) -> Result<i64, StoreError> {
        dispatch!(self.keys_version())
    }

    /// Keys that are not revoked, oldest first.
    pub async fn active_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.list_api_keys(false).await
    }
}

/// Truncates to whole microseconds, the precision both backends keep.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

fn bad_url(url: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::BadUrl {
        url: redact_url(url),
        reason: reason.to_string(),
    }
}

/// Masks the password in `scheme://user:password@host…`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// Whether an error means the database could not be reached (as opposed to
/// a query failing).
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                let code = code.as_ref();
                // PostgreSQL: connection exceptions, shutdown, too many
                // connections, database missing / being started.
                code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "3D000")
                    // SQLite: SQLITE_CANTOPEN (and its extended codes).
                    || code.parse::<i32>().is_ok_and(|c| c & 0xff == 14)
            }
            None => false,
        },
        _ => false,
    }
}

/// Maps a sqlx error: connection trouble to `Unavailable`, the rest to
/// `Database`.
fn db_err(err: sqlx::Error) -> StoreError {
    if is_unavailable(&err) {
        StoreError::Unavailable(match &err {
            sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_string(),
            other => other.to_string(),
        })
    } else {
        StoreError::Database(err)
    }
}

fn migrate_err(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(e) if is_unavailable(&e) => db_err(e),
        other => StoreError::Migrate(other),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `err` is a unique violation of an index or constraint whose name
/// (PostgreSQL) or column list (SQLite message) mentions `needle`.
fn unique_violation_on(err: &sqlx::Error, needle: &str) -> bool {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            db.constraint().is_some_and(|c| c.contains(needle)) || db.message().contains(needle)
        }
        _ => false,
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

fn revoke_not_found(id_or_name: &str) -> StoreError {
    StoreError::NotFound(format!("active API key '{id_or_name}'"))
}

/// Whether an append failed because another writer held a lock (SQLite
/// busy/locked; PostgreSQL serialization failure, deadlock, lock timeout).
fn is_contention(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            let code = code.as_ref();
            matches!(code, "40001" | "40P01" | "55P03")
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }),
        _ => false,
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

/// SQL shared by both backends (SQLite accepts `$N` parameters too).
mod sql {
    const REVISION_COLUMNS: &str = "s.name, r.revision, r.document, r.actor, r.action, \
         r.flag_key, r.reason, r.created_at";

    pub(crate) fn head() -> String {
        format!(
            "SELECT {REVISION_COLUMNS} FROM flag_sets s \
             JOIN flag_set_revisions r ON r.flag_set_id = s.id AND r.revision = s.current_revision \
             WHERE s.name = $1"
        )
    }

    pub(crate) fn revision() -> String {
        format!(
            "SELECT {REVISION_COLUMNS} FROM flag_sets s \
             JOIN flag_set_revisions r ON r.flag_set_id = s.id \
             WHERE s.name = $1 AND r.revision = $2"
        )
    }

    /// Followed by the bound set name and optional filters.
    pub(crate) const HISTORY_PREFIX: &str =
        "SELECT s.name, r.revision, r.actor, r.action, r.flag_key, r.reason, r.created_at \
         FROM flag_sets s JOIN flag_set_revisions r ON r.flag_set_id = s.id WHERE s.name = ";

    pub(crate) const VERSIONS: &str = "SELECT name, current_revision FROM flag_sets ORDER BY name";

    pub(crate) const CURRENT: &str = "SELECT current_revision FROM flag_sets WHERE name = $1";

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

    pub(crate) const KEY_COLUMNS: &str =
        "id, name, role, hash_hex, created_at, created_by, revoked_at";

    pub(crate) fn insert_key() -> String {
        format!(
            "INSERT INTO api_keys (id, name, role, hash_hex, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}"
        )
    }

    pub(crate) fn list_keys(include_revoked: bool) -> String {
        let filter = if include_revoked {
            ""
        } else {
            " WHERE revoked_at IS NULL"
        };
        format!("SELECT {KEY_COLUMNS} FROM api_keys{filter} ORDER BY created_at, id")
    }

    pub(crate) fn find_key() -> String {
        format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1")
    }

    /// $1 id or name, $2 at.
    pub(crate) fn revoke_key_by(column: &str) -> String {
        format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE {column} = $1 AND revoked_at IS NULL \
             RETURNING {KEY_COLUMNS}"
        )
    }

    pub(crate) const BUMP_COUNTER: &str =
        "UPDATE change_counters SET value = value + 1 WHERE name = $1";

    pub(crate) const COUNTER: &str = "SELECT value FROM change_counters WHERE name = $1";

    pub(crate) const API_KEYS_COUNTER: &str = "api_keys";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact_url("mysql://x"), "mysql://x");
    }

    #[test]
    fn truncates_to_micros() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).timestamp_subsec_nanos(), 123_456_000);
    }
}
