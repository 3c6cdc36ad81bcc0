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
//! # Layout
//!
//! One module per aggregate, each with its types, its `impl Store` methods
//! and its SQL: `flag_sets`, `api_keys`, `trials` (with assignments and the
//! lifecycle changes that read other trials), `exposures`, `events` (with
//! `ingest`), `privacy` (consent, erasure, the study key), `metrics`, `surveys`
//! (instruments, campaigns, responses), `survey_results` (invitations
//! and the rows results are computed from), `survey_triggers` (what
//! survey-trigger flags read: the campaigns naming one, a unit's standing
//! and latest consents), `console_sessions` and `audit_log` (every audit
//! source as one list).
//! A method's body is written once for both databases: `with_backend!`
//! instantiates it for each backend's concrete sqlx types (see
//! ARCHITECTURE.md for why neither `sqlx::Any` nor functions generic over
//! `sqlx::Database`). What differs by database lives in `sqlite/` and
//! `postgres/`, module for module: the pools and transactions (`mod.rs`)
//! and event ingestion (`events.rs`); a statement whose text differs is a
//! pair of constants side by side in its aggregate (statements number their
//! parameters `$1`, `$2`, …, which SQLite accepts too). Timestamps are bound as
//! `column::Ts` (fixed-width text on SQLite, `timestamptz` on
//! PostgreSQL) and rows are read with `#[derive(sqlx::FromRow)]`.
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
//! * Trial changes are a bump of the `trials` change counter
//!   ([`Store::trials_version`]; first, so that its row lock serialises
//!   trial changes across processes), one conditional `UPDATE trials …
//!   WHERE key = … AND status IN (…)` (and `AND spec_hash = expected` for
//!   draft edits and conclusions), the `trial_events` row (its `seq` taken
//!   under that row lock) and, for a conclusion, the metric snapshots, in
//!   one transaction. A start or resume that must not overlap running
//!   trials reads them in that transaction, after the lock
//!   ([`Store::start_trial_exclusive`]). If the condition fails the trial
//!   is read again to report [`StoreError::NotFound`],
//!   [`StoreError::InvalidState`] (naming the current status) or
//!   [`StoreError::SpecConflict`].
//! * Assignments: `PRIMARY KEY (trial_id, unit)` with `INSERT … ON CONFLICT
//!   DO NOTHING` makes the first assignment of a unit stick. Blocked designs
//!   ([`Store::assign_sequential`]) take the stratum's next position with an
//!   upsert on `stratum_counters` that increments and locks the counter row
//!   until commit, then insert the assignment; if the unit was assigned
//!   meanwhile (the insert waits for the other transaction and does
//!   nothing) the whole transaction, position included, is rolled back, so
//!   positions within a stratum are consecutive. A unique index on (trial,
//!   stratum, position) is the last guard.
//! * Exposures: `PRIMARY KEY (trial_id, unit)` keeps the first exposure
//!   only; batches are inserted in (trial, unit) order so that concurrent
//!   batches on PostgreSQL take row locks in the same order (no deadlocks).
//! * Events: the unique `event_id` with `INSERT … ON CONFLICT (event_id) DO
//!   NOTHING` stores each id once however many callers race; when fewer
//!   rows went in than were sent, the caller reads back which are its own
//!   (SQLite: rowids above the largest before; PostgreSQL: this
//!   transaction's `xmin`). A batch is inserted in id order, for the same
//!   reason as exposures.
//! * Erasure of a unit is one transaction over every table holding its
//!   rows plus its entry in the append-only `erasure_log`.
//!
//! # Schema
//!
//! * `flag_sets`, `flag_set_revisions` (append-only), `api_keys`,
//!   `change_counters` (rows `api_keys`, `trials`): migration 0001.
//! * `trials` (one row per trial: key, flag key, status, spec as TOML
//!   source + canonical JSON + hash, version bumped by amendments, seed and
//!   allocation fixed at start, lifecycle timestamps) and `trial_events`
//!   (append-only audit log, triggers refuse UPDATE and DELETE): migration
//!   0002; the action `deviation` (a change to a running trial's flag,
//!   written with the flag-set revision): migration 0007.
//! * `assignments`, `stratum_counters`, `exposures` (migration 0002): the
//!   high-volume tables, millions of rows per trial. Rows are narrow (trial
//!   as a BIGINT id, units as 64-hex pseudonyms, never raw identifiers),
//!   keyed by (trial_id, unit), which also serves export pagination by unit;
//!   per-arm counts use `(trial_id, arm)` indexes (for exposures, partial on
//!   not excluded). On SQLite these tables are `WITHOUT ROWID`.
//! * `events` (migration 0003): telemetry, tens of millions of rows, only
//!   two indexes, each paid for by every insert: unique `event_id` (the
//!   client's UUID as 16 bytes: PostgreSQL `uuid`, SQLite 16-byte BLOB;
//!   idempotency) and `(unit, name, ts)` (metric queries, erasure).
//!   Properties are a JSON object (JSONB / TEXT). On SQLite a rowid table
//!   (rows appended; random v4 ids only scatter their index entries).
//!   Export pages by `(ts, event_id)` and retention by `ts` have no index
//!   of their own: with a unit filter the `(unit, name, ts)` index serves,
//!   otherwise they scan.
//! * `consents` (append-only history per unit and scope, latest wins) and
//!   `erasure_log` (append-only, triggers refuse UPDATE and DELETE):
//!   migration 0003.
//! * `study_key` (the fingerprint of the key the pseudonyms were made with,
//!   recorded once), the erasure log's `actor` and `reason`, API keys'
//!   reasons and revoker, and the `erasures` and `consents` rows of
//!   `change_counters` (bumped with every erasure and consent decision, for
//!   replicas to drop what they cached about units): migration 0006.
//! * `console_sessions` (the web console's sessions: a keyed hash of the
//!   cookie, the key, created, expires, ended and why): migration 0012.
//!   The audit log page reads them with the other logs
//!   (`audit_log::audit_entries`).
//! * `period_exposures` (per trial, community, period and arm served of a
//!   community design: the exposures served, first and last; added by the
//!   exposure writer, no unit in it) and `metric_snapshots.communities`
//!   (a community design's community × period cells at conclusion):
//!   migration 0011.
//!
//! ## SQLite specifics
//!
//! Connections use WAL, `synchronous = FULL` (a commit is durable once it
//! returns), `busy_timeout = 5 s` and foreign keys; the writer also
//! `secure_delete = ON` (deleted rows are overwritten with zeros, not left
//! readable in free pages; SQLite has no per-table setting). A file database gets two
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
//! [`StoreError::Unavailable`] if the head did not move); other writes map
//! it to [`StoreError::Unavailable`] ("try again").
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

use serde::{Deserialize, Serialize};

/// Runs a body once per backend: `db` is the `&SqliteStore` or the
/// `&PgStore` of `store`, and both offer the same few methods (`reader()`,
/// `writer()`, `begin_write()`), so the body is written once and
/// type-checked for each backend with that backend's own sqlx types, as a
/// generic function would be instantiated twice.
///
/// * `with_backend!(store, |db| expr)`: `expr` is inlined, so `?`,
///   `.await` and `return` in it act on the enclosing function (this is
///   not a closure).
/// * `with_backend!(store, async |db| { … })`: the block runs as an async
///   block and its value is awaited: `?` and `return` stay inside it (for
///   a transaction whose `sqlx::Error` is mapped afterwards).
macro_rules! with_backend {
    ($store:expr, async |$db:ident| $body:block) => {
        match &$store.inner {
            $crate::Inner::Sqlite($db) => async $body.await,
            $crate::Inner::Postgres($db) => async $body.await,
        }
    };
    ($store:expr, |$db:ident| $body:expr) => {
        match &$store.inner {
            $crate::Inner::Sqlite($db) => $body,
            $crate::Inner::Postgres($db) => $body,
        }
    };
}

/// Calls a method that each backend implements in its own way (`sqlite/`,
/// `postgres/`), with the same arguments, and awaits it.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        with_backend!($self, |db| db.$method($($arg),*).await)
    };
}

mod activity;
mod api_keys;
mod audit_log;
mod column;
mod console_sessions;
mod error;
mod events;
mod exposures;
#[macro_use]
mod flag_sets;
#[macro_use]
mod metrics;
mod design_rows;
mod period_exposures;
mod postgres;
mod privacy;
mod sqlite;
mod survey_results;
mod survey_triggers;
mod surveys;
#[cfg(feature = "test-support")]
pub mod testing;
mod trials;

pub use activity::{
    CommunityActivity, EventTypeActivity, UnitShare, MAX_ACTIVE_MEMBERS, MAX_SHARE_UNITS,
};
pub use api_keys::{ApiKeyRecord, NewApiKeyRecord};
pub use audit_log::{AuditCursor, AuditEntry, AuditQuery, AuditSource};
pub use console_sessions::{ConsoleSessionRecord, NewConsoleSession};
pub use design_rows::{
    CommunityCell, CommunityRows, ExposureCount, ExposureRecord, MemberPeriodValue, MemberValue,
    PeriodSpan, SPLIT_AT,
};
pub use error::{redact_url, StoreError, UnknownValue};
pub use events::{
    EventCursor, EventFilter, EventRecord, InsertOutcome, NewEvent, RefusedEvent, SyncPoint,
};
pub use exposures::{AssignmentExport, ExposureSource, NewExposure};
pub use flag_sets::{
    FlagDeviation, FlagSetAppend, FlagSetRevision, NewRevision, RevisionSummary, MAX_REVISIONS_READ,
};
pub use metrics::{MetricCell, MetricSnapshot, FUSED_METRICS_MAX};
pub use period_exposures::{merge_period_exposures, PeriodExposures};
pub use privacy::{ConsentRecord, ErasureOutcome, ErasureRecord, StudyKeyState, UnitVersions};
pub use survey_results::{CampaignUnit, NewInvitation};
pub use survey_triggers::{LatestConsent, TriggerStanding};
pub use surveys::{
    CampaignRecord, InstrumentRecord, NewCampaign, NewInstrument, ResponseCounts, ResponseRecord,
    ResponseStatus,
};
pub use trials::{
    AssignmentRecord, NewAssignment, NewSequentialAssignment, NewTrial, OverlapCheck, TrialChange,
    TrialEvent, TrialRecord, TrialStatus,
};

use error::{bad_url, db_err};

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

/// One pool's connections at an instant ([`Store::pool_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `main` (PostgreSQL), `read` or `write` (SQLite).
    pub pool: &'static str,
    /// Connections open: in use or idle.
    pub open: u32,
    /// Connections idle.
    pub idle: usize,
    /// Most connections the pool opens.
    pub max: u32,
}

/// How a [`Store`] sizes its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// PostgreSQL: connections in the pool. SQLite: reader connections
    /// (there is always exactly one writer; an in-memory database has one
    /// connection in all).
    pub max_connections: u32,
}

impl StoreOptions {
    /// The PostgreSQL pool size when none is given.
    pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 10;
    /// The SQLite reader count when none is given.
    pub const DEFAULT_SQLITE_READERS: u32 = 4;
}

impl Store {
    /// Opens pools for `url` and checks that one connection can be made.
    /// Does not migrate. Pool sizes are the defaults of [`StoreOptions`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, None).await
    }

    /// [`Store::connect`] with the pool size of `options` (`None`: the
    /// backend's default).
    pub async fn connect_with(
        url: &str,
        options: Option<StoreOptions>,
    ) -> Result<Store, StoreError> {
        if options.is_some_and(|o| o.max_connections == 0) {
            return Err(bad_url(url, "the pool needs at least one connection"));
        }
        let size = options.map(|o| o.max_connections);
        let inner = if url.starts_with("sqlite:") {
            Inner::Sqlite(sqlite::SqliteStore::connect(url, size).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Inner::Postgres(postgres::PgStore::connect(url, size).await?)
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
        with_backend!(self, |db| sqlx::query("SELECT 1")
            .execute(db.reader())
            .await
            .map(drop))
        .map_err(db_err)
    }

    /// The connections of each pool now (for `/metrics`): PostgreSQL has
    /// one pool (`main`), SQLite a `read` pool and a one-connection `write`
    /// pool. Reads counters only; never waits.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        fn usage<DB: sqlx::Database>(pool: &'static str, p: &sqlx::Pool<DB>) -> PoolUsage {
            PoolUsage {
                pool,
                open: p.size(),
                idle: p.num_idle(),
                max: p.options().get_max_connections(),
            }
        }
        match &self.inner {
            Inner::Sqlite(s) => vec![usage("read", s.reader()), usage("write", s.writer())],
            Inner::Postgres(p) => vec![usage("main", p.reader())],
        }
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// The value of a row of `change_counters` (see [`Store::keys_version`]).
    async fn counter(&self, name: &str) -> Result<i64, StoreError> {
        with_backend!(self, |db| sqlx::query_scalar(COUNTER)
            .bind(name)
            .fetch_one(db.reader())
            .await)
        .map_err(db_err)
    }
}

/// `change_counters`: one row per kind of change replicas poll for, bumped
/// in the transaction of every such change.
const COUNTER: &str = "SELECT value FROM change_counters WHERE name = $1";

/// $1 the counter's name.
const BUMP_COUNTER: &str = "UPDATE change_counters SET value = value + 1 WHERE name = $1";
