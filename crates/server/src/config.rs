//! Server settings: [`Config`], built with [`Config::new`] from the study
//! key, the one setting without a default.

use crate::flags::limits::OfrepLimitSettings;
use commonlab_core::privacy::StudyKey;
use std::sync::Arc;
use std::time::Duration;

/// Memory for each exposure de-duplication cache unless configured.
pub const DEFAULT_EXPOSURE_CACHE_BYTES: usize = 32 * 1024 * 1024;

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
    /// One `info` line per request (target `commonlab::access`).
    pub access_log: bool,
    /// `Strict-Transport-Security` on every response, with this max-age
    /// (none: not sent).
    pub hsts_max_age: Option<Duration>,
    /// The OFREP rate limits.
    pub ofrep_limits: OfrepLimitSettings,
}

impl Config {
    /// The documented defaults (`docs/security.md`), pseudonymising with
    /// `study_key`: flag set `default`, polling every 200 ms, 1 MiB bodies,
    /// 5,000 events a batch, 300 s of clock skew, no consent scope, no
    /// allow-lists, no retention (swept hourly when set), 60 s idle, 10 s
    /// header and 60 s request timeouts, 10,000 connections, 32 MiB per
    /// exposure cache, no access log, no HSTS, OFREP limits of
    /// [`OfrepLimitSettings::default`].
    pub fn new(study_key: impl Into<Arc<StudyKey>>) -> Config {
        Config {
            flag_set: "default".into(),
            poll_interval: Duration::from_millis(200),
            body_limit: 1024 * 1024,
            study_key: study_key.into(),
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
            exposure_cache_bytes: DEFAULT_EXPOSURE_CACHE_BYTES,
            access_log: false,
            hsts_max_age: None,
            ofrep_limits: OfrepLimitSettings::default(),
        }
    }
}
