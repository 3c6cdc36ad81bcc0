//! Server settings: [`Config`], built with [`Config::new`] from the study
//! key, the one setting without a default.

use crate::flags::limits::OfrepLimitSettings;
use commonlab_core::privacy::StudyKey;
use commonlab_core::surveys::token::TOKEN_KEY_LABEL;
use std::fmt;
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
    /// The survey secrets derived from the study key ([`SurveyKeys`]).
    pub survey_keys: Arc<SurveyKeys>,
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
    /// Requests a minute one client address may make to the survey pages.
    pub survey_rate_per_ip_per_minute: u32,
    /// Requests a minute with one personal survey link.
    pub survey_rate_per_link_per_minute: u32,
    /// Most addresses (and, apart, links) the survey rate limits track;
    /// beyond them, new ones share one quota.
    pub survey_rate_max_tracked: usize,
    /// Survey results and exports withhold every breakdown (arm, community)
    /// with fewer respondents than this (`k`; at least 1).
    pub survey_min_cell: usize,
    /// The server's public address (`https://host`), put before `/s/…` in
    /// the links survey-trigger flags answer with (none: the path alone).
    pub public_url: Option<String>,
    /// How long a replica keeps a unit's survey-trigger standing
    /// (`surveys::trigger`; zero: read at every evaluation).
    pub survey_trigger_ttl: Duration,
    /// One `info` line per request (target `commonlab::access`).
    pub access_log: bool,
    /// `Strict-Transport-Security` on every response, with this max-age
    /// (none: not sent).
    pub hsts_max_age: Option<Duration>,
    /// The OFREP rate limits.
    pub ofrep_limits: OfrepLimitSettings,
    /// How long a console session lasts from sign-in (no sliding renewal).
    pub console_session: Duration,
    /// Whether the console's cookies carry `Secure` (set it when clients
    /// reach the server over HTTPS, as they should).
    pub console_secure_cookie: bool,
    /// Most live console sessions one API key may hold; signing in once
    /// more ends the oldest.
    pub console_sessions_per_key: usize,
    /// Sign-in attempts a minute from one address or IPv6 /64
    /// (`console::sign_in`).
    pub console_sign_in_per_ip_per_minute: u32,
    /// The console's session and form key, derived from the study key.
    pub console_keys: Arc<ConsoleKeys>,
    /// How long the console's trial page reuses a trial's aggregates
    /// (`console::trials_cache`); fixed at 10 s outside the tests.
    pub console_trial_cache: Duration,
}

impl Config {
    /// The documented defaults (`docs/security.md`), pseudonymising with
    /// `study_key`: flag set `default`, polling every 200 ms, 1 MiB bodies,
    /// 5,000 events a batch, 300 s of clock skew, no consent scope, no
    /// allow-lists, no retention (swept hourly when set), 60 s idle, 10 s
    /// header and 60 s request timeouts, 10,000 connections, 32 MiB per
    /// exposure cache, survey pages limited to 300 requests a minute per
    /// address and 60 per link, tracking at most 100,000 of each, survey
    /// cells of at least 5 respondents, no access log, no HSTS, OFREP limits
    /// of [`OfrepLimitSettings::default`], console sessions of 8 hours,
    /// `Secure` console cookies, 10 console sessions per key.
    pub fn new(study_key: impl Into<Arc<StudyKey>>) -> Config {
        let study_key = study_key.into();
        Config {
            survey_keys: Arc::new(SurveyKeys::derive(&study_key)),
            console_keys: Arc::new(ConsoleKeys::derive(&study_key)),
            flag_set: "default".into(),
            poll_interval: Duration::from_millis(200),
            body_limit: 1024 * 1024,
            study_key,
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
            survey_rate_per_ip_per_minute: 300,
            survey_rate_per_link_per_minute: 60,
            survey_rate_max_tracked: 100_000,
            survey_min_cell: 5,
            public_url: None,
            survey_trigger_ttl: Duration::from_secs(5),
            access_log: false,
            hsts_max_age: None,
            ofrep_limits: OfrepLimitSettings::default(),
            console_session: Duration::from_secs(8 * 3600),
            console_secure_cookie: true,
            console_sessions_per_key: 10,
            console_sign_in_per_ip_per_minute: 20,
            console_trial_cache: Duration::from_secs(10),
        }
    }
}

/// The label the survey form (CSRF) key is derived with.
pub const FORM_KEY_LABEL: &str = "commonlab survey form v1";

/// The secrets of the survey pages, derived from the study key
/// (`StudyKey::derive`), so that every replica given the study key file
/// signs and checks the same links and forms without sharing any state,
/// and neither secret is the study key or a pseudonym:
/// - `token`: signs personal links (`core::surveys::token`), label
///   [`TOKEN_KEY_LABEL`] (`"commonlab survey token v1"`);
/// - `form`: the form token of a survey page is
///   `HMAC-SHA256(form, link token)`, label [`FORM_KEY_LABEL`].
///
/// A new study key invalidates every link and form issued under the old
/// one. `Debug` never shows them.
#[derive(Clone)]
pub struct SurveyKeys {
    token: [u8; 32],
    form: [u8; 32],
}

impl SurveyKeys {
    pub fn derive(study_key: &StudyKey) -> SurveyKeys {
        SurveyKeys {
            token: study_key.derive(TOKEN_KEY_LABEL),
            form: study_key.derive(FORM_KEY_LABEL),
        }
    }

    /// The key personal link tokens are signed with
    /// (`core::surveys::token::{sign, verify}`).
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    /// The key form tokens are made with.
    pub fn form(&self) -> &[u8] {
        &self.form
    }
}

impl fmt::Debug for SurveyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SurveyKeys(<redacted>)")
    }
}

impl Drop for SurveyKeys {
    fn drop(&mut self) {
        self.token.fill(0);
        self.form.fill(0);
        std::hint::black_box((&self.token, &self.form));
    }
}

/// The label the console's key is derived with.
pub const CONSOLE_KEY_LABEL: &str = "commonlab console session v1";

/// The console's secret, derived from the study key with
/// [`CONSOLE_KEY_LABEL`], so that every replica recognises the sessions
/// and form tokens of the others: a session's stored id is
/// `HMAC-SHA256(key, "session:" ‖ cookie secret)`, its form token
/// `HMAC-SHA256(key, "csrf:" ‖ session id)`. `Debug` never shows it.
#[derive(Clone)]
pub struct ConsoleKeys {
    key: [u8; 32],
}

impl ConsoleKeys {
    pub fn derive(study_key: &StudyKey) -> ConsoleKeys {
        ConsoleKeys {
            key: study_key.derive(CONSOLE_KEY_LABEL),
        }
    }

    /// The key sessions and form tokens are made with.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for ConsoleKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsoleKeys(<redacted>)")
    }
}

impl Drop for ConsoleKeys {
    fn drop(&mut self) {
        self.key.fill(0);
        std::hint::black_box(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_keys_follow_the_study_key() {
        let a = Config::new(StudyKey::from_bytes(&[1; 32]).unwrap());
        let b = Config::new(StudyKey::from_bytes(&[1; 32]).unwrap());
        let c = Config::new(StudyKey::from_bytes(&[2; 32]).unwrap());
        assert_eq!(a.survey_keys.token(), b.survey_keys.token());
        assert_ne!(a.survey_keys.token(), c.survey_keys.token());
        assert_ne!(a.survey_keys.token(), a.survey_keys.form());
        assert_eq!(format!("{:?}", a.survey_keys), "SurveyKeys(<redacted>)");
    }
}
