//! The application state: the store and the caches of one replica. The
//! caches are only caches: every server process refreshes them from the
//! database (see [`crate::sync`]), so any number of replicas can run
//! against one PostgreSQL.
//!
//! Handlers never take [`AppState`]: each takes the substates it needs
//! (`State<Store>`, `State<FlagCache>`, or a feature's context such as
//! [`FlagsContext`]), given by the `FromRef` implementations here.

use crate::auth::KeyCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::console::ConsoleContext;
use crate::events::api::IngestContext;
use crate::events::counters::IngestCounters;
use crate::events::group_commit::GroupCommitter;
use crate::flag_set::FlagCache;
use crate::flags::api::FlagsContext;
use crate::flags::limits::OfrepLimits;
use crate::observability::Metrics;
use crate::serve::HttpCounters;
use crate::surveys::api::SurveysContext;
use crate::surveys::pages::{PagesContext, PagesShared};
use crate::surveys::trigger::Triggers;
use crate::trials::api::TrialsContext;
use crate::trials::cache::TrialCache;
use crate::trials::decision::Decider;
use crate::trials::exposure::ExposureSink;
use crate::trials::unit_cache::UnitCache;
use crate::units::UnitsContext;
use axum::extract::FromRef;
use commonlab_store::Store;
use std::sync::Arc;

/// Everything a replica holds; handlers take the substate they need.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub flags: FlagCache,
    pub keys: KeyCache,
    pub trials: TrialCache,
    pub exposures: ExposureSink,
    /// Consent decisions of units, and when to forget cached unit data.
    pub units: UnitCache,
    /// Commits ingestion batches of concurrent requests together.
    pub committer: GroupCommitter,
    /// What ingestion stored, refused and dropped (served at `/metrics`).
    pub ingest_counters: Arc<IngestCounters>,
    /// Connections, timeouts and panics (served at `/metrics`).
    pub http_counters: Arc<HttpCounters>,
    pub clock: Clock,
    pub config: Arc<Config>,
    /// The survey pages' rate limiters and parsed instruments.
    pub survey_pages: Arc<PagesShared>,
    /// Request, evaluation and other series (served at `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The OFREP rate limits (per key and per address).
    pub ofrep_limits: Arc<OfrepLimits>,
    /// The console trial pages' cached aggregates.
    pub console_digests: Arc<crate::console::trials_cache::TrialDigests>,
    /// The console's sign-in limit, per client address.
    pub console_sign_in: Arc<crate::surveys::pages::limits::Keyed<std::net::IpAddr>>,
    /// The survey-trigger flags and the unit standings they read.
    pub triggers: Triggers,
}

impl AppState {
    /// The state of a replica on `store`, its caches empty (see
    /// [`crate::build_state`], which also loads them).
    pub fn new(store: Store, config: Config, clock: Clock) -> AppState {
        let config = Arc::new(config);
        AppState {
            triggers: Triggers::new(store.clone(), config.clone()),
            store,
            flags: FlagCache::new(),
            keys: KeyCache::default(),
            trials: TrialCache::default(),
            exposures: ExposureSink::with_budget(config.exposure_cache_bytes),
            units: UnitCache::default(),
            committer: GroupCommitter::default(),
            ingest_counters: Arc::default(),
            http_counters: Arc::default(),
            clock,
            survey_pages: Arc::new(PagesShared::new(&config)),
            metrics: Arc::new(Metrics::new(
                crate::route_table()
                    .iter()
                    .map(|r| (r.method().clone(), r.path())),
            )),
            ofrep_limits: Arc::new(OfrepLimits::new(config.ofrep_limits)),
            console_digests: Arc::default(),
            console_sign_in: Arc::new(crate::surveys::pages::limits::Keyed::new(
                config.console_sign_in_per_ip_per_minute,
                config.survey_rate_max_tracked,
            )),
            config,
        }
    }
}

/// `FromRef<AppState>` for fields handed out as they are.
macro_rules! substates {
    ($($field:ident: $ty:ty),* $(,)?) => {
        $(
            impl FromRef<AppState> for $ty {
                fn from_ref(s: &AppState) -> $ty {
                    s.$field.clone()
                }
            }
        )*
    };
}

substates!(
    store: Store,
    flags: FlagCache,
    keys: KeyCache,
    trials: TrialCache,
    exposures: ExposureSink,
    units: UnitCache,
    committer: GroupCommitter,
    ingest_counters: Arc<IngestCounters>,
    http_counters: Arc<HttpCounters>,
    clock: Clock,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    ofrep_limits: Arc<OfrepLimits>,
    triggers: Triggers,
);

impl FromRef<AppState> for FlagsContext {
    fn from_ref(s: &AppState) -> Self {
        FlagsContext {
            store: s.store.clone(),
            cache: s.flags.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
        }
    }
}

impl FromRef<AppState> for TrialsContext {
    fn from_ref(s: &AppState) -> Self {
        TrialsContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            trials: s.trials.clone(),
        }
    }
}

impl FromRef<AppState> for Decider {
    fn from_ref(s: &AppState) -> Self {
        Decider {
            store: s.store.clone(),
            trials: s.trials.clone(),
            exposures: s.exposures.clone(),
            units: s.units.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
        }
    }
}

impl FromRef<AppState> for UnitsContext {
    fn from_ref(s: &AppState) -> Self {
        UnitsContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            units: s.units.clone(),
            exposures: s.exposures.clone(),
        }
    }
}

impl FromRef<AppState> for IngestContext {
    fn from_ref(s: &AppState) -> Self {
        IngestContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            committer: s.committer.clone(),
            counters: s.ingest_counters.clone(),
        }
    }
}

impl FromRef<AppState> for PagesContext {
    fn from_ref(s: &AppState) -> Self {
        PagesContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            shared: s.survey_pages.clone(),
            metrics: s.metrics.clone(),
            triggers: s.triggers.clone(),
        }
    }
}

impl FromRef<AppState> for SurveysContext {
    fn from_ref(s: &AppState) -> Self {
        SurveysContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            triggers: s.triggers.clone(),
        }
    }
}

impl FromRef<AppState> for ConsoleContext {
    fn from_ref(s: &AppState) -> Self {
        ConsoleContext {
            store: s.store.clone(),
            config: s.config.clone(),
            clock: s.clock.clone(),
            keys: s.keys.clone(),
            flags: s.flags.clone(),
            trials: s.trials.clone(),
            digests: s.console_digests.clone(),
            sign_in_limit: s.console_sign_in.clone(),
        }
    }
}
