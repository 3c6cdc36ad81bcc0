//! Shared state: the store, and in-memory caches of the compiled flag set and
//! the active API keys. The caches are only caches: every server process
//! refreshes them from the database (see [`crate::sync`]), so any number of
//! replicas can run against one PostgreSQL.

use crate::trials::{ExposureSink, TrialCache};
use arc_swap::ArcSwap;
use axum::extract::FromRef;
use chrono::{DateTime, Utc};
use commonlab_core::auth::{ApiKeyHash, Role};
use commonlab_core::flags::FlagSet;
use commonlab_core::privacy::StudyKey;
use commonlab_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// The flag set this server serves over OFREP and manages.
    pub flag_set: String,
    /// How often to look for changes made by other replicas.
    pub poll_interval: Duration,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// The key that pseudonymises units (never stored in the database).
    pub study_key: Arc<StudyKey>,
    /// Most events accepted in one ingestion batch.
    pub max_batch_events: usize,
    /// How far in the future an event's timestamp may be (client clock skew).
    pub max_future_skew: Duration,
    /// When set, events are stored only for units whose latest consent for
    /// this scope is granted; others are dropped and counted.
    pub consent_scope: Option<String>,
    /// When set, only these event names are stored; others are dropped and counted.
    pub allowed_events: Option<Arc<std::collections::HashSet<String>>>,
    /// When set, only these property keys are stored; others are removed and counted.
    pub allowed_properties: Option<Arc<std::collections::HashSet<String>>>,
    /// Raw events older than this are deleted by a background task.
    pub retention: Option<Duration>,
    /// How often that task runs.
    pub retention_interval: Duration,
    /// How long a connection may stay open without starting a request (on
    /// connect and between keep-alive requests).
    pub idle_timeout: Duration,
    /// How long a request head may take from its first byte to its end.
    pub header_read_timeout: Duration,
    /// How long a request may take from its complete head to the response
    /// head, reading the body included; then 408 problem+json.
    pub request_timeout: Duration,
    /// Most client connections open at once; more are answered 503.
    pub max_connections: usize,
    /// Memory for each of the two exposure de-duplication caches (units
    /// already reported, and blocked-design arms), in bytes.
    pub exposure_cache_bytes: usize,
}

impl Default for Config {
    /// Defaults with a fresh random study key (tests; `serve` loads one).
    fn default() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Config {
            flag_set: "default".into(),
            poll_interval: Duration::from_millis(200),
            body_limit: 1024 * 1024,
            study_key: Arc::new(StudyKey::from_bytes(&bytes).expect("32 bytes is long enough")),
            max_batch_events: 5_000,
            max_future_skew: Duration::from_secs(300),
            consent_scope: None,
            allowed_events: None,
            allowed_properties: None,
            retention: None,
            retention_interval: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            exposure_cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The time source: the system clock, or a settable one for tests.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(Arc<AtomicI64>),
}

impl Clock {
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock::Fixed(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Fixed(ms) = self {
            ms.store(at.timestamp_millis(), Ordering::Relaxed);
        }
    }
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(ms) => {
                DateTime::from_timestamp_millis(ms.load(Ordering::Relaxed)).unwrap_or_default()
            }
        }
    }
}

/// The compiled flag set at one revision.
pub struct LoadedFlags {
    pub revision: i64,
    pub set: FlagSet,
}

/// A stored revision this replica could not compile (see [`crate::sync`]):
/// it keeps serving an older one and reports this at `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagSetProblem {
    /// The revision that does not compile (the head when it was read).
    pub revision: i64,
    /// Why, with the JSON pointer of the offending evaluator or flag.
    pub error: String,
}

#[derive(Clone)]
pub struct FlagCache {
    loaded: Arc<ArcSwap<LoadedFlags>>,
    problem: Arc<std::sync::Mutex<Option<FlagSetProblem>>>,
}

impl FlagCache {
    pub fn new() -> Self {
        FlagCache {
            loaded: Arc::new(ArcSwap::from_pointee(LoadedFlags {
                revision: 0,
                set: FlagSet::empty(),
            })),
            problem: Arc::default(),
        }
    }
    pub fn current(&self) -> arc_swap::Guard<Arc<LoadedFlags>> {
        self.loaded.load()
    }
    /// An owned handle on the current set, to hold across awaits.
    pub fn snapshot(&self) -> Arc<LoadedFlags> {
        self.loaded.load_full()
    }
    /// Installs `loaded` unless the cache already holds a newer revision.
    pub fn install(&self, loaded: LoadedFlags) {
        let new = Arc::new(loaded);
        self.loaded.rcu(|old| {
            if old.revision > new.revision {
                Arc::clone(old)
            } else {
                Arc::clone(&new)
            }
        });
    }
    /// The newest stored revision that could not be compiled, if it is
    /// still the head.
    pub fn problem(&self) -> Option<FlagSetProblem> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn set_problem(&self, problem: Option<FlagSetProblem>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }
}

impl Default for FlagCache {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone)]
pub struct CachedKey {
    pub name: String,
    pub role: Role,
    pub hash: ApiKeyHash,
}

#[derive(Default)]
pub struct KeysSnapshot {
    pub version: i64,
    pub by_id: HashMap<String, CachedKey>,
}

/// The active API keys, and the count of failed authentications.
#[derive(Clone, Default)]
pub struct KeyCache(Arc<Keys>);

#[derive(Default)]
struct Keys {
    current: ArcSwap<KeysSnapshot>,
    failures: crate::auth::AuthFailures,
}

impl KeyCache {
    pub fn current(&self) -> arc_swap::Guard<Arc<KeysSnapshot>> {
        self.0.current.load()
    }
    pub fn install(&self, snap: KeysSnapshot) {
        self.0.current.store(Arc::new(snap));
    }
    /// Failed authentications (counted and logged by [`crate::auth`]).
    pub fn failures(&self) -> &crate::auth::AuthFailures {
        &self.0.failures
    }
}

/// Everything a handler can ask for; handlers take the substate they need.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub flags: FlagCache,
    pub keys: KeyCache,
    pub trials: TrialCache,
    pub exposures: ExposureSink,
    /// Consent decisions of units, and when to forget cached unit data.
    pub units: crate::unit_cache::UnitCache,
    /// Commits ingestion batches of concurrent requests together.
    pub committer: crate::group_commit::GroupCommitter,
    /// What ingestion stored, refused and dropped (served at `/metrics`).
    pub ingest_counters: Arc<IngestCounters>,
    /// Connections, timeouts and panics (served at `/metrics`).
    pub http_counters: Arc<crate::serve::HttpCounters>,
    pub clock: Clock,
    pub config: Arc<Config>,
}

impl FromRef<AppState> for Store {
    fn from_ref(s: &AppState) -> Store {
        s.store.clone()
    }
}
impl FromRef<AppState> for FlagCache {
    fn from_ref(s: &AppState) -> FlagCache {
        s.flags.clone()
    }
}
impl FromRef<AppState> for KeyCache {
    fn from_ref(s: &AppState) -> KeyCache {
        s.keys.clone()
    }
}
impl FromRef<AppState> for Clock {
    fn from_ref(s: &AppState) -> Clock {
        s.clock.clone()
    }
}
impl FromRef<AppState> for Arc<Config> {
    fn from_ref(s: &AppState) -> Arc<Config> {
        s.config.clone()
    }
}

/// Ingestion counters of this process (Prometheus text at `/metrics`).
#[derive(Default)]
pub struct IngestCounters {
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped_not_allowed: AtomicU64,
    pub dropped_no_consent: AtomicU64,
    pub properties_removed: AtomicU64,
}

impl IngestCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let rows = [
            (
                "commonlab_events_stored_total",
                "Events stored by this process.",
                &self.stored,
            ),
            (
                "commonlab_events_duplicate_total",
                "Events already stored (retries).",
                &self.duplicates,
            ),
            (
                "commonlab_events_rejected_total",
                "Invalid events refused with an error.",
                &self.rejected,
            ),
            (
                "commonlab_events_dropped_not_allowed_total",
                "Events dropped: name not on the allow-list.",
                &self.dropped_not_allowed,
            ),
            (
                "commonlab_events_dropped_no_consent_total",
                "Events dropped: the unit has not consented.",
                &self.dropped_no_consent,
            ),
            (
                "commonlab_event_properties_removed_total",
                "Properties removed: key not on the allow-list.",
                &self.properties_removed,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
