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
//! * Trial changes are one conditional `UPDATE trials … WHERE key = … AND
//!   status IN (…)` (and `AND spec_hash = expected` for draft edits), the
//!   `trial_events` row (its `seq` taken under that row lock) and a bump of
//!   the `trials` change counter ([`Store::trials_version`]), in one
//!   transaction. If the condition fails the trial is read again to report
//!   [`StoreError::NotFound`], [`StoreError::InvalidState`] (naming the
//!   current status) or [`StoreError::SpecConflict`].
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
//!   0002.
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

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

mod metrics;
mod postgres;
mod sqlite;

pub use metrics::{MetricCell, MetricSnapshot};
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
    /// The thing is not in a state that allows the change, e.g. "trial 'x'
    /// is running; starting needs draft".
    #[error("{0}")]
    InvalidState(String),
    /// A draft trial's spec was changed by someone else: its spec hash is
    /// not the one the caller based its change on.
    #[error("spec conflict: expected spec hash {expected}, current is {current}")]
    SpecConflict { expected: String, current: String },
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

/// How an exposure was recorded: by a single evaluation, a bulk
/// evaluation, or an explicit exposure call. Stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExposureSource {
    Single,
    Bulk,
    Explicit,
}

impl ExposureSource {
    pub const ALL: [ExposureSource; 3] = [
        ExposureSource::Single,
        ExposureSource::Bulk,
        ExposureSource::Explicit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExposureSource::Single => "single",
            ExposureSource::Bulk => "bulk",
            ExposureSource::Explicit => "explicit",
        }
    }
}

impl std::fmt::Display for ExposureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExposureSource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExposureSource::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| UnknownValue::new("exposure source", s))
    }
}

/// A string that names no variant of an enum (see the `FromStr` impls).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    fn new(what: &'static str, value: &str) -> Self {
        UnknownValue {
            what,
            value: value.to_string(),
        }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialEvent {
    /// 1, 2, 3, … per trial.
    pub seq: i64,
    /// create, update, start, stop, conclude, archive or amend.
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

/// An assignment decided by the caller (hash, cluster and stepped-wedge
/// designs). `stratum` and `community` are `None` when the design has none
/// (`Some("")` is refused by the database).
#[derive(Debug, Clone, Copy)]
pub struct NewAssignment<'a> {
    pub trial_id: i64,
    /// 64 lowercase hex characters (a pseudonym, never a raw identifier).
    pub unit: &'a str,
    pub arm: &'a str,
    pub stratum: Option<&'a str>,
    pub community: Option<&'a str>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
}

/// An assignment in a blocked design: the store picks the position, the
/// caller's `arm_for` the arm.
#[derive(Debug, Clone, Copy)]
pub struct NewSequentialAssignment<'a> {
    pub trial_id: i64,
    pub unit: &'a str,
    pub stratum: Option<&'a str>,
    pub community: Option<&'a str>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
}

/// A stored assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub trial_id: i64,
    pub unit: String,
    pub arm: String,
    pub stratum: Option<String>,
    pub community: Option<String>,
    /// Place in the stratum's sequence (0, 1, 2, …) for blocked designs.
    pub position: Option<i64>,
    pub trial_version: i64,
    pub assigned_at: DateTime<Utc>,
}

/// An exposure to record (owned: servers batch them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewExposure {
    pub trial_id: i64,
    /// 64 lowercase hex characters.
    pub unit: String,
    pub arm: String,
    pub community: Option<String>,
    pub trial_version: i64,
    pub at: DateTime<Utc>,
    pub source: ExposureSource,
    /// `Some` if the unit hit a developer override: the exposure is stored
    /// as excluded from the analysis population.
    pub excluded_reason: Option<String>,
}

/// An assignment with its first exposure, if any (analysis export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentExport {
    pub unit: String,
    pub arm: String,
    pub stratum: Option<String>,
    pub community: Option<String>,
    pub position: Option<i64>,
    pub trial_version: i64,
    pub assigned_at: DateTime<Utc>,
    /// `None` if the unit was never exposed.
    pub exposed_at: Option<DateTime<Utc>>,
    pub exposure_source: Option<ExposureSource>,
    /// The trial version at the first exposure.
    pub exposure_trial_version: Option<i64>,
    /// Exposed but outside the analysis population (false if not exposed).
    pub excluded: bool,
    pub excluded_reason: Option<String>,
}

/// A telemetry event to store (owned: servers batch them).
///
/// `event_id` is the client's UUID, kept as [`uuid::Uuid`] (16 bytes): the
/// server parses the client's string once, malformed ids never reach the
/// store, and both databases keep the 16 raw bytes (`uuid` on PostgreSQL,
/// a 16-byte BLOB on SQLite) rather than 36 characters of text, which makes
/// the idempotency index less than half the size and its comparisons plain
/// byte comparisons. Random (v4) and time-ordered (v7) ids are both fine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The idempotency key: an event whose id is stored already is dropped.
    pub event_id: uuid::Uuid,
    /// 64 lowercase hex characters: a pseudonym, never a raw identifier.
    pub unit: String,
    /// `None` when there is none (`Some("")` is refused by the database).
    pub community: Option<String>,
    /// Not empty.
    pub name: String,
    /// When the event happened (client time), truncated to microseconds.
    pub ts: DateTime<Utc>,
    /// A flat JSON object (validated by the caller).
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: uuid::Uuid,
    pub unit: String,
    pub community: Option<String>,
    pub name: String,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl EventRecord {
    /// Where the next page of an export starts (after this record).
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            ts: self.ts,
            event_id: self.event_id,
        }
    }
}

/// The position of an event in export order, (ts, event_id): pass the
/// [`EventRecord::cursor`] of the last record of a page to get the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventCursor {
    pub ts: DateTime<Utc>,
    pub event_id: uuid::Uuid,
}

/// Which events to count or export: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub name: Option<String>,
    pub unit: Option<String>,
    pub community: Option<String>,
    /// Events at or after this time (`ts >= from`).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (`ts < to`).
    pub to: Option<DateTime<Utc>>,
}

/// What [`Store::insert_events`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertOutcome {
    /// Events stored by this call.
    pub inserted: u64,
    /// Ascending indexes into the batch of the events not stored because
    /// their id was stored already (by an earlier call, or concurrently by
    /// another) or occurs earlier in the same batch.
    pub duplicates: Vec<usize>,
}

/// A consent decision of a unit for a scope (see [`Store::consent_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub unit: String,
    pub scope: String,
    /// The version of the consent text the decision was made on.
    pub text_version: String,
    /// `true` granted, `false` withdrawn (stored as `granted` / `withdrawn`).
    pub granted: bool,
    pub at: DateTime<Utc>,
}

/// How many rows [`Store::erase_unit`] deleted; also the `counts` kept in
/// the erasure log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureOutcome {
    pub events: u64,
    pub exposures: u64,
    pub assignments: u64,
    pub consents: u64,
}

/// One entry of the append-only erasure log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRecord {
    pub unit: String,
    pub erased_at: DateTime<Utc>,
    pub counts: ErasureOutcome,
}

/// An event ready for a backend: deduplicated within its batch, sorted by
/// id, timestamps truncated, properties serialized.
pub(crate) struct PreparedEvent<'a> {
    pub(crate) event: &'a NewEvent,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) properties: String,
}

/// Handle on the database: cheap to clone (clones share the pools).
#[derive(Clone)]
pub struct Store {
    inner: Inner,
}

/// Where a [`Store::insert_events_unsynced`] commit stands in the order of
/// commits, for [`Store::sync_events`].
#[must_use = "the events are on disk only once Store::sync_events has returned for this point"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncPoint(u64);

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

    /// Creates `t.key` as a draft at version 1, with its `create` event, and
    /// bumps [`Store::trials_version`]. [`StoreError::AlreadyExists`]
    /// (`trial 'key'`) if a trial has that key.
    pub async fn create_trial(&self, t: &NewTrial<'_>) -> Result<TrialRecord, StoreError> {
        let t = NewTrial {
            at: micros(t.at),
            ..*t
        };
        dispatch!(self.create_trial(&t))
    }

    pub async fn get_trial(&self, key: &str) -> Result<Option<TrialRecord>, StoreError> {
        dispatch!(self.get_trial(key))
    }

    /// All trials, or those with `status`, sorted by key.
    pub async fn list_trials(
        &self,
        status: Option<TrialStatus>,
    ) -> Result<Vec<TrialRecord>, StoreError> {
        dispatch!(self.list_trials(status))
    }

    /// The running trials, sorted by key (for server caches; poll
    /// [`Store::trials_version`] to know when to reload).
    pub async fn running_trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.list_trials(Some(TrialStatus::Running)).await
    }

    /// A number that changes (grows) in the same transaction as every change
    /// to any trial.
    pub async fn trials_version(&self) -> Result<i64, StoreError> {
        dispatch!(self.trials_version())
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
        dispatch!(self.trial_events(key))
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
        let change = TrialChange {
            at: micros(change.at),
            ..*change
        };
        // A retry only happens if the trial changed between the failed
        // update and the read that explains it.
        for _ in 0..3 {
            if let Some(done) = dispatch!(self.update_trial(key, update, &change))? {
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

    /// Blocked designs: the unit's existing assignment (`false`), or a new
    /// one (`true`) at the next position of its stratum (0, 1, 2, …), with
    /// the arm `arm_for(position)`. Atomic across processes: concurrent calls
    /// for the same new unit create exactly one assignment, and positions
    /// within a stratum are consecutive (a call that loses the race for its
    /// unit rolls back its position).
    pub async fn assign_sequential(
        &self,
        a: &NewSequentialAssignment<'_>,
        arm_for: &(dyn Fn(i64) -> String + Send + Sync),
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let a = NewSequentialAssignment {
            at: micros(a.at),
            ..*a
        };
        if let Some(existing) = self.get_assignment(a.trial_id, a.unit).await? {
            return Ok((existing, false));
        }
        dispatch!(self.assign_sequential(&a, arm_for))
    }

    /// Stateless designs (hash, cluster, stepped wedge): stores the
    /// assignment unless the unit has one, and returns the stored one
    /// (`true` if it is this one): the first assignment sticks.
    pub async fn assign_fixed(
        &self,
        a: &NewAssignment<'_>,
    ) -> Result<(AssignmentRecord, bool), StoreError> {
        let a = NewAssignment {
            at: micros(a.at),
            ..*a
        };
        if let Some(existing) = self.get_assignment(a.trial_id, a.unit).await? {
            return Ok((existing, false));
        }
        dispatch!(self.assign_fixed(&a))
    }

    pub async fn get_assignment(
        &self,
        trial_id: i64,
        unit: &str,
    ) -> Result<Option<AssignmentRecord>, StoreError> {
        dispatch!(self.get_assignment(trial_id, unit))
    }

    /// Stores the first exposure of each (trial, unit) in `batch`, in one
    /// transaction (`INSERT … ON CONFLICT DO NOTHING`, many rows per
    /// statement); returns how many were new. An exposure of a unit that
    /// already has one is dropped, whether that one was stored earlier or
    /// comes earlier in `batch`. Rows are written in (trial, unit) order so
    /// that concurrent batches cannot deadlock on PostgreSQL.
    pub async fn record_exposures(&self, batch: &[NewExposure]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut sorted: Vec<NewExposure> = batch
            .iter()
            .map(|e| NewExposure {
                at: micros(e.at),
                ..e.clone()
            })
            .collect();
        // Stable: duplicates keep their order, so the first one wins.
        sorted.sort_by(|a, b| (a.trial_id, &a.unit).cmp(&(b.trial_id, &b.unit)));
        dispatch!(self.record_exposures(&sorted))
    }

    /// A page of the trial's assignments, each with its first exposure if
    /// any, ordered by unit: those after `after_unit` (pass the last unit of
    /// a page to get the next), at most `limit`.
    pub async fn export_assignments(
        &self,
        trial_id: i64,
        after_unit: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AssignmentExport>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self.export_assignments(trial_id, after_unit, limit))
    }

    /// Per arm, sorted by arm: units assigned to it, and units exposed to it
    /// (the arm recorded with the exposure) that are not excluded.
    pub async fn arm_counts(&self, trial_id: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let (assigned, exposed) = dispatch!(self.arm_counts(trial_id))?;
        let mut counts: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for (arm, n) in assigned {
            counts.entry(arm).or_default().0 = n;
        }
        for (arm, n) in exposed {
            counts.entry(arm).or_default().1 = n;
        }
        Ok(counts
            .into_iter()
            .map(|(arm, (assigned, exposed))| (arm, assigned, exposed))
            .collect())
    }

    /// One metric of a trial, aggregated inside the database by a single
    /// query (see [`metrics`](crate::metrics)): per (arm, community), the
    /// sufficient statistics of the units exposed to the trial (not
    /// excluded) whose analysis window closed at or before `as_of`.
    pub async fn metric_cells(
        &self,
        trial_id: i64,
        metric: &commonlab_core::experiments::Metric,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<MetricCell>, StoreError> {
        let q = metrics::compile(metric, self.dialect());
        dispatch!(self.metric_cells(&q, trial_id, as_of))
    }

    /// The SQL [`Store::metric_cells`] runs for `metric` on this backend
    /// (placeholders: 1 the trial id, 2 the as-of time, then the metric's
    /// own values).
    pub fn metric_sql(&self, metric: &commonlab_core::experiments::Metric) -> String {
        metrics::compile(metric, self.dialect()).sql
    }

    /// The query plan of [`Store::metric_cells`] (`EXPLAIN QUERY PLAN` on
    /// SQLite, `EXPLAIN` on PostgreSQL), one line per plan node.
    pub async fn metric_plan(
        &self,
        trial_id: i64,
        metric: &commonlab_core::experiments::Metric,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let q = metrics::compile(metric, self.dialect());
        dispatch!(self.metric_plan(&q, trial_id, as_of))
    }

    /// Stores (replacing) aggregates of a trial's metrics in one
    /// transaction: what a concluded trial is analysed from once the raw
    /// events are gone.
    pub async fn save_metric_snapshots(
        &self,
        trial_id: i64,
        snapshots: &[MetricSnapshot],
    ) -> Result<(), StoreError> {
        dispatch!(self.save_metric_snapshots(trial_id, snapshots))
    }

    /// The stored aggregates of a trial, by metric name.
    pub async fn metric_snapshots(&self, trial_id: i64) -> Result<Vec<MetricSnapshot>, StoreError> {
        dispatch!(self.metric_snapshots(trial_id))
    }

    fn dialect(&self) -> metrics::Dialect {
        match self.backend() {
            Backend::Sqlite => metrics::Dialect::Sqlite,
            Backend::Postgres => metrics::Dialect::Postgres,
        }
    }

    /// Stores the events of `batch` whose ids are not stored yet, all with
    /// `received_at`, in one transaction: `Ok` only once they are committed
    /// durably ([`Store::insert_events_unsynced`] then
    /// [`Store::sync_events`]). Reports which events were duplicates (id
    /// stored already, or repeated earlier in the batch: the first
    /// occurrence wins), so a retried batch stores nothing twice. Safe
    /// against concurrent callers in any number of processes: every id is
    /// stored once and reported as inserted by exactly one of them. A row
    /// the database refuses (malformed unit, empty name, …) fails the whole
    /// batch with [`StoreError::Database`].
    ///
    /// PostgreSQL: `COPY` into a per-connection temporary staging table,
    /// then `INSERT … SELECT … ORDER BY event_id ON CONFLICT DO NOTHING`
    /// (sorted, so that concurrent batches take index locks in the same
    /// order and cannot deadlock). SQLite: multi-row `INSERT … ON CONFLICT
    /// DO NOTHING` statements in one `BEGIN IMMEDIATE` transaction. Only
    /// when fewer rows than events went in does either read back which ids
    /// are its own (SQLite: the rows above the largest rowid before;
    /// PostgreSQL: the rows whose `xmin` is this transaction).
    pub async fn insert_events(
        &self,
        batch: &[NewEvent],
        received_at: DateTime<Utc>,
    ) -> Result<InsertOutcome, StoreError> {
        let (outcome, point) = self.insert_events_unsynced(batch, received_at).await?;
        self.sync_events(point).await?;
        Ok(outcome)
    }

    /// [`Store::insert_events`] without waiting for the disk: the events
    /// are committed (visible, and they survive the process being killed)
    /// but survive a power loss only once [`Store::sync_events`] has
    /// returned for the [`SyncPoint`]. Lets a caller start the next
    /// transaction while the disk flushes this one. PostgreSQL commits
    /// durably here already (its default `synchronous_commit`); SQLite
    /// commits with `synchronous = NORMAL` and flushes the WAL in
    /// `sync_events`, one flush for every commit made before it.
    pub async fn insert_events_unsynced(
        &self,
        batch: &[NewEvent],
        received_at: DateTime<Utc>,
    ) -> Result<(InsertOutcome, SyncPoint), StoreError> {
        let (prepared, mut duplicates) = prepare_events(batch)?;
        if prepared.is_empty() {
            let outcome = InsertOutcome {
                inserted: 0,
                duplicates,
            };
            return Ok((outcome, SyncPoint(0)));
        }
        let received_at = micros(received_at);
        let (ids, point) = match &self.inner {
            Inner::Sqlite(s) => s.insert_events_unsynced(&prepared, received_at).await?,
            Inner::Postgres(p) => (p.insert_events(&prepared, received_at).await?, 0),
        };
        let inserted: std::collections::HashSet<uuid::Uuid> = ids.into_iter().collect();
        let mut first_index: std::collections::HashMap<uuid::Uuid, usize> =
            std::collections::HashMap::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            first_index.entry(e.event_id).or_insert(i);
        }
        for p in &prepared {
            if !inserted.contains(&p.event.event_id) {
                duplicates.push(first_index[&p.event.event_id]);
            }
        }
        duplicates.sort_unstable();
        let outcome = InsertOutcome {
            inserted: inserted.len() as u64,
            duplicates,
        };
        Ok((outcome, SyncPoint(point)))
    }

    /// Returns once the events of the [`Store::insert_events_unsynced`]
    /// call that gave `point` (and of every earlier one) are on disk.
    /// Concurrent callers share one flush.
    pub async fn sync_events(&self, point: SyncPoint) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Sqlite(s) => s.sync_events(point.0).await,
            Inner::Postgres(_) => Ok(()),
        }
    }

    /// How many event transactions are worth running at once: SQLite has
    /// one writer; PostgreSQL overlaps one transaction's commit (its WAL
    /// flush) with the next ones' work.
    pub fn event_writers(&self) -> usize {
        match &self.inner {
            Inner::Sqlite(_) => 1,
            Inner::Postgres(_) => postgres::EVENT_WRITERS,
        }
    }

    /// How many stored events match `filter`.
    pub async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let filter = micros_filter(filter);
        dispatch!(self.count_events(&filter))
    }

    /// A page of the events matching `filter` in (ts, event_id) order:
    /// those after `after` (the [`EventRecord::cursor`] of the last record
    /// of the previous page), at most `limit`. Keyset pagination: a page
    /// costs the same wherever it is, and events inserted meanwhile are
    /// neither skipped nor repeated unless they sort before the cursor.
    pub async fn export_events(
        &self,
        filter: &EventFilter,
        after: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = micros_filter(filter);
        let after = after.map(|c| EventCursor {
            ts: micros(c.ts),
            event_id: c.event_id,
        });
        dispatch!(self.export_events(&filter, after.as_ref(), limit))
    }

    /// Retention: deletes the events whose `ts` is before `cutoff`, at most
    /// `batch_limit` (at least 1) per transaction so that no transaction
    /// holds locks (SQLite: the write lock) for long, until none is left;
    /// returns how many were deleted. Each round finds its rows through the
    /// index on the event time (migration 0005: `(ts)` on PostgreSQL,
    /// `(ts, event_id)` on SQLite), so a sweep with nothing to delete costs
    /// one index probe (docs/benchmarks.md, "Telemetry storage").
    pub async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        batch_limit: u32,
    ) -> Result<u64, StoreError> {
        let cutoff = micros(cutoff);
        let limit = i64::from(batch_limit.max(1));
        let mut total = 0;
        loop {
            let deleted = dispatch!(self.delete_events_batch(cutoff, limit))?;
            total += deleted;
            if deleted < limit as u64 {
                return Ok(total);
            }
        }
    }

    /// Appends a consent decision of `unit` for `scope` (history is kept:
    /// [`Store::consent_state`] is the latest).
    pub async fn set_consent(
        &self,
        unit: &str,
        scope: &str,
        text_version: &str,
        granted: bool,
        at: DateTime<Utc>,
    ) -> Result<ConsentRecord, StoreError> {
        let record = ConsentRecord {
            unit: unit.to_string(),
            scope: scope.to_string(),
            text_version: text_version.to_string(),
            granted,
            at: micros(at),
        };
        dispatch!(self.set_consent(&record))?;
        Ok(record)
    }

    /// The latest consent decision of `unit` for `scope` (latest `at`; of
    /// equal ones the last recorded); `None` if there is none.
    pub async fn consent_state(
        &self,
        unit: &str,
        scope: &str,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        dispatch!(self.consent_state(unit, scope))
    }

    /// Every consent decision of `unit`, all scopes, oldest first (for
    /// access requests and audits).
    pub async fn consent_history(&self, unit: &str) -> Result<Vec<ConsentRecord>, StoreError> {
        dispatch!(self.consent_history(unit))
    }

    /// Erases everything stored about `unit` in ONE transaction: its
    /// events, exposures, assignments and consent history, and appends the
    /// counts to the append-only erasure log (kept to replay erasures after
    /// a backup restore, see [`Store::erasures_since`]). Calling it again
    /// deletes nothing and logs again. Events of the unit committed after
    /// this returns are stored as usual: stop ingesting for the unit (record
    /// the withdrawal of consent) first.
    // Survey answers will be erased here too once they are stored.
    pub async fn erase_unit(
        &self,
        unit: &str,
        at: DateTime<Utc>,
    ) -> Result<ErasureOutcome, StoreError> {
        dispatch!(self.erase_unit(unit, micros(at)))
    }

    /// The erasure log from `at` on (inclusive), oldest first.
    pub async fn erasures_since(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<ErasureRecord>, StoreError> {
        dispatch!(self.erasures_since(micros(at)))
    }
}

/// Deduplicates `batch` by event id (the first occurrence wins; the
/// indexes of later ones are returned), sorts the rest by id, truncates
/// timestamps and serializes properties.
fn prepare_events(batch: &[NewEvent]) -> Result<(Vec<PreparedEvent<'_>>, Vec<usize>), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let mut repeated = Vec::new();
    let mut prepared = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        if !seen.insert(event.event_id) {
            repeated.push(i);
            continue;
        }
        let properties = serde_json::to_string(&event.properties)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        prepared.push(PreparedEvent {
            event,
            ts: micros(event.ts),
            properties,
        });
    }
    prepared.sort_unstable_by_key(|p| p.event.event_id);
    Ok((prepared, repeated))
}

fn micros_filter(filter: &EventFilter) -> EventFilter {
    EventFilter {
        from: filter.from.map(micros),
        to: filter.to.map(micros),
        ..filter.clone()
    }
}

/// The id of a stored event from its 16 bytes.
fn event_id_from_bytes(bytes: &[u8]) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::from_slice(bytes).map_err(|e| decode_err("event_id", e))
}

fn consent_status(granted: bool) -> &'static str {
    if granted {
        "granted"
    } else {
        "withdrawn"
    }
}

fn consent_granted(status: &str) -> Result<bool, StoreError> {
    match status {
        "granted" => Ok(true),
        "withdrawn" => Ok(false),
        other => Err(decode_err(
            "status",
            UnknownValue::new("consent status", other),
        )),
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

/// A database URL fit to print or log: the password of
/// `scheme://user:password@host…` and the value of any query parameter whose
/// name contains `password` are replaced by `***`. A password written
/// without percent-encoding may hold `/`, `@` or `#`: everything between the
/// first `:` of the user part and the last `@` before the query is masked.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let query_start = url[start..].find('?').map_or(url.len(), |i| start + i);
    let mut out = match url[start..query_start].rfind('@') {
        Some(at) => {
            let at = start + at;
            match url[start..at].find(':') {
                Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..query_start]),
                None => url[..query_start].to_string(),
            }
        }
        None => url[..query_start].to_string(),
    };
    if query_start < url.len() {
        let (query, fragment) = match url[query_start + 1..].find('#') {
            Some(i) => url[query_start + 1..].split_at(i),
            None => (&url[query_start + 1..], ""),
        };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
        out.push_str(fragment);
    }
    out
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
                    || sqlite_primary_code(code) == Some(14)
            }
            None => false,
        },
        _ => false,
    }
}

/// The primary result code (low byte) of a SQLite error code. SQLite
/// reports its (extended) codes as decimal numbers below 10000; PostgreSQL's
/// SQLSTATEs always have five characters, and some are all digits (22021,
/// "invalid byte sequence", would otherwise read as SQLITE_BUSY).
fn sqlite_primary_code(code: &str) -> Option<i32> {
    if code.len() > 4 {
        return None;
    }
    code.parse::<i32>().ok().map(|c| c & 0xff)
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
                || matches!(sqlite_primary_code(code), Some(5 | 6))
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

/// A conditional change of a trial row (see `Store::update_trial`).
pub(crate) enum TrialUpdate<'a> {
    DraftSpec {
        expected_hash: &'a str,
        source: &'a str,
        canonical: &'a str,
        hash: &'a str,
        flag_key: &'a str,
    },
    Start {
        seed: i64,
        allocation: Option<&'a str>,
    },
    Status {
        from: &'a [TrialStatus],
        to: TrialStatus,
    },
    Amend {
        source: &'a str,
        canonical: &'a str,
        hash: &'a str,
    },
}

impl TrialUpdate<'_> {
    fn allowed(&self) -> &[TrialStatus] {
        match self {
            TrialUpdate::DraftSpec { .. } | TrialUpdate::Start { .. } => &[TrialStatus::Draft],
            TrialUpdate::Status { from, .. } => from,
            TrialUpdate::Amend { .. } => &[TrialStatus::Running, TrialStatus::Stopped],
        }
    }

    /// The `trial_events.action` recorded for the change.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            TrialUpdate::DraftSpec { .. } => "update",
            TrialUpdate::Start { .. } => "start",
            TrialUpdate::Status { to, .. } => to.action(),
            TrialUpdate::Amend { .. } => "amend",
        }
    }

    fn describe(&self) -> String {
        match self {
            TrialUpdate::DraftSpec { .. } => "updating the spec".to_string(),
            TrialUpdate::Start { .. } => "starting".to_string(),
            TrialUpdate::Status { to, .. } => format!("moving to {to}"),
            TrialUpdate::Amend { .. } => "amending".to_string(),
        }
    }

    /// Why the change cannot apply to `current`; `None` if it now could.
    fn refusal(&self, key: &str, current: Option<&TrialRecord>) -> Option<StoreError> {
        let Some(trial) = current else {
            return Some(StoreError::NotFound(format!("trial '{key}'")));
        };
        let allowed = self.allowed();
        if !allowed.contains(&trial.status) {
            let needed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            return Some(StoreError::InvalidState(format!(
                "trial '{key}' is {}; {} needs {}",
                trial.status,
                self.describe(),
                needed.join(" or ")
            )));
        }
        if let TrialUpdate::DraftSpec { expected_hash, .. } = self {
            if trial.spec_hash != *expected_hash {
                return Some(StoreError::SpecConflict {
                    expected: expected_hash.to_string(),
                    current: trial.spec_hash.clone(),
                });
            }
        }
        None
    }

    /// The conditional `UPDATE … RETURNING` the trial: `$1` key, `$2` at,
    /// then the variant's values in declaration order (`expected_hash`
    /// last).
    pub(crate) fn sql(&self) -> String {
        let cols = sql::TRIAL_COLUMNS;
        match self {
            TrialUpdate::DraftSpec { .. } => format!(
                "UPDATE trials SET spec_source = $3, spec_canonical = $4, spec_hash = $5, \
                 flag_key = $6, updated_at = $2 \
                 WHERE key = $1 AND status = 'draft' AND spec_hash = $7 RETURNING {cols}"
            ),
            TrialUpdate::Start { .. } => format!(
                "UPDATE trials SET status = 'running', seed = $3, allocation = $4, \
                 started_at = $2, updated_at = $2 \
                 WHERE key = $1 AND status = 'draft' RETURNING {cols}"
            ),
            TrialUpdate::Status { from, to } => {
                // `Store::set_trial_status` never moves anything to draft.
                let stamp = match to {
                    TrialStatus::Running => ", started_at = COALESCE(started_at, $2)",
                    TrialStatus::Stopped => ", stopped_at = $2",
                    TrialStatus::Concluded => ", concluded_at = $2",
                    TrialStatus::Archived => ", archived_at = $2",
                    TrialStatus::Draft => "",
                };
                // Enum names only: safe to inline.
                let from: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
                format!(
                    "UPDATE trials SET status = '{to}', updated_at = $2{stamp} \
                     WHERE key = $1 AND status IN ({}) RETURNING {cols}",
                    from.join(", ")
                )
            }
            TrialUpdate::Amend { .. } => format!(
                "UPDATE trials SET spec_source = $3, spec_canonical = $4, spec_hash = $5, \
                 version = version + 1, updated_at = $2 \
                 WHERE key = $1 AND status IN ('running', 'stopped') RETURNING {cols}"
            ),
        }
    }
}

/// Maps a failed write: lock contention (SQLite busy across processes,
/// PostgreSQL deadlock or lock timeout) to `Unavailable`, the rest as
/// [`db_err`].
fn write_err(err: sqlx::Error) -> StoreError {
    if is_contention(&err) {
        StoreError::Unavailable(format!("database busy, try again ({err})"))
    } else {
        db_err(err)
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

fn decode_err(column: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

/// Per-arm counts as two lists: (arm, assigned), (arm, exposed and not
/// excluded).
pub(crate) type ArmCounts = (Vec<(String, i64)>, Vec<(String, i64)>);

/// How many exposures go into one `INSERT` (9 parameters each): within
/// SQLite's 32766 parameters and PostgreSQL's 65535.
const EXPOSURES_PER_STATEMENT: usize = 2000;

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

    pub(crate) const TRIALS_COUNTER: &str = "trials";

    pub(crate) const TRIAL_COLUMNS: &str = "id, key, flag_key, status, spec_source, \
         spec_canonical, spec_hash, version, seed, allocation, created_at, updated_at, \
         started_at, stopped_at, concluded_at, archived_at";

    /// $1 key, $2 flag_key, $3 source, $4 canonical, $5 hash, $6 at.
    pub(crate) fn insert_trial() -> String {
        format!(
            "INSERT INTO trials (key, flag_key, status, spec_source, spec_canonical, spec_hash, \
             version, created_at, updated_at) \
             VALUES ($1, $2, 'draft', $3, $4, $5, 1, $6, $6) RETURNING {TRIAL_COLUMNS}"
        )
    }

    pub(crate) fn get_trial() -> String {
        format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE key = $1")
    }

    pub(crate) fn list_trials(filtered: bool) -> String {
        let filter = if filtered { " WHERE status = $1" } else { "" };
        format!("SELECT {TRIAL_COLUMNS} FROM trials{filter} ORDER BY key")
    }

    /// $1 trial id, $2 action, $3 actor, $4 reason, $5 spec hash, $6 version,
    /// $7 at. Run after the change has locked the trial row (or inserted
    /// it), so the next `seq` cannot be taken concurrently.
    pub(crate) const INSERT_TRIAL_EVENT: &str = "INSERT INTO trial_events \
         (trial_id, seq, action, actor, reason, spec_hash, version, created_at) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6, $7 \
         FROM trial_events WHERE trial_id = $1";

    pub(crate) const TRIAL_EVENTS: &str =
        "SELECT e.seq, e.action, e.actor, e.reason, e.spec_hash, e.version, e.created_at \
         FROM trial_events e JOIN trials t ON t.id = e.trial_id WHERE t.key = $1 \
         ORDER BY e.seq";

    pub(crate) const ASSIGNMENT_COLUMNS: &str =
        "trial_id, unit, arm, stratum, community, position, trial_version, assigned_at";

    pub(crate) fn get_assignment() -> String {
        format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE trial_id = $1 AND unit = $2")
    }

    /// $1 trial, $2 unit, $3 arm, $4 stratum, $5 community, $6 position,
    /// $7 trial version, $8 at. No row if the unit is assigned already.
    pub(crate) fn insert_assignment() -> String {
        format!(
            "INSERT INTO assignments \
             (trial_id, unit, arm, stratum, community, position, trial_version, assigned_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (trial_id, unit) DO NOTHING RETURNING {ASSIGNMENT_COLUMNS}"
        )
    }

    /// $1 trial, $2 stratum ('' for none): takes the stratum's next position
    /// and holds its counter row locked until the transaction ends.
    pub(crate) const TAKE_POSITION: &str =
        "INSERT INTO stratum_counters (trial_id, stratum, next_position) VALUES ($1, $2, 1) \
         ON CONFLICT (trial_id, stratum) \
         DO UPDATE SET next_position = stratum_counters.next_position + 1 \
         RETURNING next_position - 1";

    pub(crate) const EXPOSURES_INSERT: &str = "INSERT INTO exposures (trial_id, unit, arm, \
         community, trial_version, exposed_at, source, excluded, excluded_reason) ";

    pub(crate) const EXPOSURES_ON_CONFLICT: &str = " ON CONFLICT (trial_id, unit) DO NOTHING";

    /// Followed by the bound trial id, an optional `AND a.unit > ` bound
    /// unit, and the limit.
    pub(crate) const EXPORT_PREFIX: &str =
        "SELECT a.unit, a.arm, a.stratum, a.community, a.position, a.trial_version, \
         a.assigned_at, x.exposed_at, x.source, x.trial_version AS exposure_trial_version, \
         x.excluded, x.excluded_reason \
         FROM assignments a \
         LEFT JOIN exposures x ON x.trial_id = a.trial_id AND x.unit = a.unit \
         WHERE a.trial_id = ";

    pub(crate) const ASSIGNED_PER_ARM: &str =
        "SELECT arm, COUNT(*) FROM assignments WHERE trial_id = $1 GROUP BY arm";

    pub(crate) const EVENT_COLUMNS_AFTER_ID: &str =
        "unit, community, name, ts, received_at, properties";

    /// Deletes the events of one unit ($1), through `events_unit_name_ts_idx`.
    pub(crate) const ERASE_EVENTS: &str = "DELETE FROM events WHERE unit = $1";

    /// The primary keys are (trial_id, unit): going through every trial id
    /// makes these a handful of index lookups instead of a scan of the
    /// table (trials are few; exposures and assignments many).
    pub(crate) const ERASE_EXPOSURES: &str =
        "DELETE FROM exposures WHERE trial_id IN (SELECT id FROM trials) AND unit = $1";

    pub(crate) const ERASE_ASSIGNMENTS: &str =
        "DELETE FROM assignments WHERE trial_id IN (SELECT id FROM trials) AND unit = $1";

    pub(crate) const ERASE_CONSENTS: &str = "DELETE FROM consents WHERE unit = $1";

    /// $1 unit, $2 at, $3 counts (JSON).
    pub(crate) const INSERT_ERASURE: &str =
        "INSERT INTO erasure_log (unit, erased_at, counts) VALUES ($1, $2, $3)";

    pub(crate) const ERASURES_SINCE: &str = "SELECT unit, erased_at, counts FROM erasure_log \
         WHERE erased_at >= $1 ORDER BY erased_at, id";

    /// $1 unit, $2 scope, $3 text version, $4 status, $5 at.
    pub(crate) const INSERT_CONSENT: &str =
        "INSERT INTO consents (unit, scope, text_version, status, at) VALUES ($1, $2, $3, $4, $5)";

    pub(crate) const CONSENT_STATE: &str = "SELECT unit, scope, text_version, status, at \
         FROM consents WHERE unit = $1 AND scope = $2 ORDER BY at DESC, id DESC LIMIT 1";

    pub(crate) const CONSENT_HISTORY: &str = "SELECT unit, scope, text_version, status, at \
         FROM consents WHERE unit = $1 ORDER BY at, id";
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
        let cases = [
            // A password that was not percent-encoded.
            ("postgres://u:p@ss/w#rd@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:pw@h/db?options=a@b",
                "postgres://u:***@h/db?options=a@b",
            ),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=disable",
                "postgres://h/db?user=u&password=***&sslmode=disable",
            ),
            (
                "postgres://h/db?sslpassword=k#f",
                "postgres://h/db?sslpassword=***#f",
            ),
            ("postgres://u:s3cret@h", "postgres://u:***@h"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn numeric_sqlstates_are_not_sqlite_codes() {
        assert_eq!(sqlite_primary_code("5"), Some(5));
        assert_eq!(sqlite_primary_code("517"), Some(5)); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(sqlite_primary_code("262"), Some(6)); // SQLITE_LOCKED_SHAREDCACHE
        assert_eq!(sqlite_primary_code("22021"), None);
        assert_eq!(sqlite_primary_code("22030"), None);
        assert_eq!(sqlite_primary_code("40P01"), None);
    }

    #[test]
    fn truncates_to_micros() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(micros(at).timestamp_subsec_nanos(), 123_456_000);
    }
}
