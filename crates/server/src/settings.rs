//! Settings, typed: [`Settings`] holds every key with its default, and
//! [`Overrides`] what one layer sets (a config file, the environment,
//! command-line flags). Layers apply over the defaults in that order
//! ([`Settings::with`]), later layers winning; [`Settings::check`] refuses
//! values no server can run with, and [`Settings::to_config`] builds the
//! server's [`Config`] once a study key is loaded. Every key, its default,
//! environment variable and flag: `docs/configuration.md` (a test keeps the
//! two alike).
//!
//! Reading the layers (the TOML file with its line numbers, the
//! environment) is the caller's: the `commonlab` binary does it.

use crate::flags::limits::OfrepLimitSettings;
use crate::Config;
use commonlab_core::privacy::StudyKey;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The prefix of every key's environment variable: `max_connections` is
/// `COMMONLAB_MAX_CONNECTIONS`.
pub const ENV_PREFIX: &str = "COMMONLAB_";

/// The environment variable that sets `key`.
pub fn env_var(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// A database URL (`sqlite://FILE`, `postgres://...`). Its `Debug` and
/// `Display` redact the password (`commonlab_store::redact_url`), so a URL
/// logged or printed by mistake shows `***`; [`DatabaseUrl::expose`] gives
/// the URL itself, to connect with.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL with its password: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl::new(url)
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&commonlab_store::redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&commonlab_store::redact_url(&self.0))
            .finish()
    }
}

/// Every setting, each with its value (see `docs/configuration.md` for
/// what each does). `Default` gives the documented defaults; there is no
/// study key here, only where its file is ([`Settings::study_key_file`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `sqlite://FILE` (created if missing, its directory is not) or
    /// `postgres://...`.
    pub database_url: DatabaseUrl,
    /// Address `serve` listens on (`HOST:PORT`).
    pub listen: String,
    /// The flag set served over OFREP and managed.
    pub flag_set: String,
    /// How often a replica looks for changes made by others, in
    /// milliseconds (at least 10: smaller values count as 10).
    pub poll_interval_ms: u64,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Most events accepted in one ingestion batch.
    pub max_batch_events: usize,
    /// The study key file (pseudonymisation; never in the database).
    pub study_key_file: PathBuf,
    /// Where the first `serve` writes the admin key it creates when
    /// standard output is not a terminal.
    pub admin_key_file: PathBuf,
    /// Store events only for units that granted consent for this scope.
    pub consent_scope: Option<String>,
    /// Event names that may be stored (others are dropped and counted).
    pub allowed_events: Option<Vec<String>>,
    /// Property keys that may be stored (others are removed and counted).
    pub allowed_properties: Option<Vec<String>>,
    /// Delete raw events older than this many days (none: keep them).
    pub retention_days: Option<u64>,
    /// Seconds a connection may stay idle before its next request starts.
    pub idle_timeout_secs: u64,
    /// Seconds from a request's first byte to the end of its head.
    pub header_read_timeout_secs: u64,
    /// Seconds from a complete request head to the response head.
    pub request_timeout_secs: u64,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Memory for each of the two exposure de-duplication caches, in bytes.
    pub exposure_cache_bytes: usize,
    /// Requests a minute one client address may make to the survey pages.
    pub survey_rate_per_ip_per_minute: u32,
    /// Requests a minute with one personal survey link.
    pub survey_rate_per_link_per_minute: u32,
    /// Most client addresses (and, apart, links) the survey rate limits
    /// track at once.
    pub survey_rate_max_tracked: usize,
    /// Survey results and exports withhold every breakdown (arm, community)
    /// with fewer respondents than this.
    pub survey_min_cell: usize,
    /// The server's public address (`https://host[:port]`, no trailing
    /// `/`): the links survey-trigger flags answer with start with it.
    pub public_url: Option<String>,
    /// `serve`'s log lines: `text` (for people) or `json` (one object a
    /// line, for log collectors).
    pub log_format: LogFormat,
    /// Log one line per request at `info` (method, route template, status,
    /// duration, request id).
    pub access_log: bool,
    /// `Strict-Transport-Security: max-age=N` on every response (0: not
    /// sent). Set it only when clients reach the server over HTTPS.
    pub hsts_max_age_secs: u64,
    /// OFREP evaluations a second with one API key (0: no limit).
    pub ofrep_key_per_second: u32,
    /// OFREP evaluations a second from one address or IPv6 /64 (0: no limit).
    pub ofrep_ip_per_second: u32,
    /// Most client addresses the OFREP limit tracks at once.
    pub ofrep_max_tracked_ips: usize,
    /// How long a console session lasts from sign-in, in seconds.
    pub console_session_secs: u64,
    /// Whether the console's cookies carry `Secure` (only sent over HTTPS).
    pub console_secure_cookie: bool,
    /// Most live console sessions one API key may hold.
    pub console_sessions_per_key: usize,
    /// Console sign-in attempts a minute from one address or IPv6 /64.
    pub console_sign_in_per_ip_per_minute: u32,
}

/// The format of `serve`'s log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`tracing_subscriber`'s default format).
    #[default]
    Text,
    /// One JSON object a line, with the fields of the current request's
    /// span (its request id among them).
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: DatabaseUrl::new("sqlite://commonlab.db"),
            listen: "127.0.0.1:8080".into(),
            flag_set: "default".into(),
            poll_interval_ms: 200,
            body_limit_bytes: 1024 * 1024,
            max_batch_events: 5_000,
            study_key_file: PathBuf::from("commonlab.study-key"),
            admin_key_file: PathBuf::from("commonlab.admin-key"),
            consent_scope: None,
            allowed_events: None,
            allowed_properties: None,
            retention_days: None,
            idle_timeout_secs: 60,
            header_read_timeout_secs: 10,
            request_timeout_secs: 60,
            max_connections: 10_000,
            exposure_cache_bytes: 32 * 1024 * 1024,
            survey_rate_per_ip_per_minute: 300,
            survey_rate_per_link_per_minute: 60,
            survey_rate_max_tracked: 100_000,
            survey_min_cell: 5,
            public_url: None,
            log_format: LogFormat::Text,
            access_log: false,
            hsts_max_age_secs: 0,
            ofrep_key_per_second: OfrepLimitSettings::default().per_key_per_second,
            ofrep_ip_per_second: OfrepLimitSettings::default().per_ip_per_second,
            ofrep_max_tracked_ips: OfrepLimitSettings::default().max_tracked_ips,
            console_session_secs: 8 * 3600,
            console_secure_cookie: true,
            console_sessions_per_key: 10,
            console_sign_in_per_ip_per_minute: 20,
        }
    }
}

/// What one layer sets: each key optional, unknown keys refused. Read from
/// a TOML config file, the environment, or built from flags.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub database_url: Option<DatabaseUrl>,
    pub listen: Option<String>,
    pub flag_set: Option<String>,
    pub poll_interval_ms: Option<u64>,
    pub body_limit_bytes: Option<usize>,
    pub max_batch_events: Option<usize>,
    pub study_key_file: Option<PathBuf>,
    pub admin_key_file: Option<PathBuf>,
    pub consent_scope: Option<String>,
    pub allowed_events: Option<Vec<String>>,
    pub allowed_properties: Option<Vec<String>>,
    pub retention_days: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub exposure_cache_bytes: Option<usize>,
    pub survey_rate_per_ip_per_minute: Option<u32>,
    pub survey_rate_per_link_per_minute: Option<u32>,
    pub survey_rate_max_tracked: Option<usize>,
    pub survey_min_cell: Option<usize>,
    pub public_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub access_log: Option<bool>,
    pub hsts_max_age_secs: Option<u64>,
    pub ofrep_key_per_second: Option<u32>,
    pub ofrep_ip_per_second: Option<u32>,
    pub ofrep_max_tracked_ips: Option<usize>,
    pub console_session_secs: Option<u64>,
    pub console_secure_cookie: Option<bool>,
    pub console_sessions_per_key: Option<usize>,
    pub console_sign_in_per_ip_per_minute: Option<u32>,
}

/// A value no server can run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} must be at least 1")]
    AtLeastOne(&'static str),
    #[error("{0} must be an http:// or https:// address")]
    NotHttpUrl(&'static str),
}

impl Settings {
    /// Every key, as declared: the names a config file accepts (and,
    /// upper-cased after [`ENV_PREFIX`], the environment's variables).
    pub fn keys() -> &'static [&'static str] {
        struct_fields::<Overrides>()
    }

    /// These settings with what `layer` sets in their place.
    pub fn with(self, layer: Overrides) -> Settings {
        // Destructured whole, so that a key added to `Overrides` and not
        // applied here does not compile.
        let Overrides {
            database_url,
            listen,
            flag_set,
            poll_interval_ms,
            body_limit_bytes,
            max_batch_events,
            study_key_file,
            admin_key_file,
            consent_scope,
            allowed_events,
            allowed_properties,
            retention_days,
            idle_timeout_secs,
            header_read_timeout_secs,
            request_timeout_secs,
            max_connections,
            exposure_cache_bytes,
            survey_rate_per_ip_per_minute,
            survey_rate_per_link_per_minute,
            survey_rate_max_tracked,
            survey_min_cell,
            public_url,
            log_format,
            access_log,
            hsts_max_age_secs,
            ofrep_key_per_second,
            ofrep_ip_per_second,
            ofrep_max_tracked_ips,
            console_session_secs,
            console_secure_cookie,
            console_sessions_per_key,
            console_sign_in_per_ip_per_minute,
        } = layer;
        Settings {
            database_url: database_url.unwrap_or(self.database_url),
            listen: listen.unwrap_or(self.listen),
            flag_set: flag_set.unwrap_or(self.flag_set),
            poll_interval_ms: poll_interval_ms.unwrap_or(self.poll_interval_ms),
            body_limit_bytes: body_limit_bytes.unwrap_or(self.body_limit_bytes),
            max_batch_events: max_batch_events.unwrap_or(self.max_batch_events),
            study_key_file: study_key_file.unwrap_or(self.study_key_file),
            admin_key_file: admin_key_file.unwrap_or(self.admin_key_file),
            consent_scope: consent_scope.or(self.consent_scope),
            allowed_events: allowed_events.or(self.allowed_events),
            allowed_properties: allowed_properties.or(self.allowed_properties),
            retention_days: retention_days.or(self.retention_days),
            idle_timeout_secs: idle_timeout_secs.unwrap_or(self.idle_timeout_secs),
            header_read_timeout_secs: header_read_timeout_secs
                .unwrap_or(self.header_read_timeout_secs),
            request_timeout_secs: request_timeout_secs.unwrap_or(self.request_timeout_secs),
            max_connections: max_connections.unwrap_or(self.max_connections),
            exposure_cache_bytes: exposure_cache_bytes.unwrap_or(self.exposure_cache_bytes),
            survey_rate_per_ip_per_minute: survey_rate_per_ip_per_minute
                .unwrap_or(self.survey_rate_per_ip_per_minute),
            survey_rate_per_link_per_minute: survey_rate_per_link_per_minute
                .unwrap_or(self.survey_rate_per_link_per_minute),
            survey_rate_max_tracked: survey_rate_max_tracked
                .unwrap_or(self.survey_rate_max_tracked),
            survey_min_cell: survey_min_cell.unwrap_or(self.survey_min_cell),
            public_url: public_url.or(self.public_url),
            log_format: log_format.unwrap_or(self.log_format),
            access_log: access_log.unwrap_or(self.access_log),
            hsts_max_age_secs: hsts_max_age_secs.unwrap_or(self.hsts_max_age_secs),
            ofrep_key_per_second: ofrep_key_per_second.unwrap_or(self.ofrep_key_per_second),
            ofrep_ip_per_second: ofrep_ip_per_second.unwrap_or(self.ofrep_ip_per_second),
            ofrep_max_tracked_ips: ofrep_max_tracked_ips.unwrap_or(self.ofrep_max_tracked_ips),
            console_session_secs: console_session_secs.unwrap_or(self.console_session_secs),
            console_secure_cookie: console_secure_cookie.unwrap_or(self.console_secure_cookie),
            console_sessions_per_key: console_sessions_per_key
                .unwrap_or(self.console_sessions_per_key),
            console_sign_in_per_ip_per_minute: console_sign_in_per_ip_per_minute
                .unwrap_or(self.console_sign_in_per_ip_per_minute),
        }
    }

    /// Refuses what no server can run with: a timeout, connection cap or
    /// survey rate limit or cell size of zero.
    pub fn check(&self) -> Result<(), SettingsError> {
        for (value, key) in [
            (self.idle_timeout_secs, "idle_timeout_secs"),
            (self.header_read_timeout_secs, "header_read_timeout_secs"),
            (self.request_timeout_secs, "request_timeout_secs"),
        ] {
            if value == 0 {
                return Err(SettingsError::AtLeastOne(key));
            }
        }
        for (value, key) in [
            (self.max_connections, "max_connections"),
            (
                self.survey_rate_per_ip_per_minute as usize,
                "survey_rate_per_ip_per_minute",
            ),
            (
                self.survey_rate_per_link_per_minute as usize,
                "survey_rate_per_link_per_minute",
            ),
            (self.survey_rate_max_tracked, "survey_rate_max_tracked"),
            (
                self.console_sign_in_per_ip_per_minute as usize,
                "console_sign_in_per_ip_per_minute",
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::AtLeastOne(key));
            }
        }
        if self.survey_min_cell == 0 {
            return Err(SettingsError::AtLeastOne("survey_min_cell"));
        }
        if let Some(u) = &self.public_url {
            let rest = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.chars().any(|c| c.is_whitespace())) {
                return Err(SettingsError::NotHttpUrl("public_url"));
            }
        }
        if self.ofrep_max_tracked_ips == 0 {
            return Err(SettingsError::AtLeastOne("ofrep_max_tracked_ips"));
        }
        if self.console_session_secs == 0 {
            return Err(SettingsError::AtLeastOne("console_session_secs"));
        }
        if self.console_sessions_per_key == 0 {
            return Err(SettingsError::AtLeastOne("console_sessions_per_key"));
        }
        Ok(())
    }

    /// The server's configuration under these settings, pseudonymising
    /// with `study_key`. The one place a [`Config`] is made from settings.
    pub fn to_config(&self, study_key: StudyKey) -> Config {
        let set = |v: &Option<Vec<String>>| v.clone().map(|v| Arc::new(v.into_iter().collect()));
        // What settings do not set (the clock skew allowed, the retention
        // sweep's interval) keeps `Config::new`'s defaults.
        let base = Config::new(study_key);
        Config {
            flag_set: self.flag_set.clone(),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            body_limit: self.body_limit_bytes,
            max_batch_events: self.max_batch_events,
            consent_scope: self.consent_scope.clone(),
            allowed_events: set(&self.allowed_events),
            allowed_properties: set(&self.allowed_properties),
            retention: self
                .retention_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections,
            exposure_cache_bytes: self.exposure_cache_bytes,
            survey_rate_per_ip_per_minute: self.survey_rate_per_ip_per_minute,
            survey_rate_per_link_per_minute: self.survey_rate_per_link_per_minute,
            survey_rate_max_tracked: self.survey_rate_max_tracked,
            survey_min_cell: self.survey_min_cell,
            public_url: self
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            access_log: self.access_log,
            hsts_max_age: (self.hsts_max_age_secs > 0)
                .then(|| Duration::from_secs(self.hsts_max_age_secs)),
            ofrep_limits: OfrepLimitSettings {
                per_key_per_second: self.ofrep_key_per_second,
                per_ip_per_second: self.ofrep_ip_per_second,
                max_tracked_ips: self.ofrep_max_tracked_ips,
            },
            console_session: Duration::from_secs(self.console_session_secs),
            console_secure_cookie: self.console_secure_cookie,
            console_sessions_per_key: self.console_sessions_per_key,
            console_sign_in_per_ip_per_minute: self.console_sign_in_per_ip_per_minute,
            ..base
        }
    }
}

/// A whole settings document: the defaults with what it sets.
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let settings = Settings::default().with(Overrides::deserialize(deserializer)?);
        settings.check().map_err(de::Error::custom)?;
        Ok(settings)
    }
}

/// The field names serde's derive gives a struct: it hands them to
/// `deserialize_struct`, which this deserializer records and refuses.
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names were wanted"))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_fields_of_overrides() {
        let keys = Settings::keys();
        assert_eq!(keys.len(), 32);
        assert!(keys.contains(&"public_url"));
        assert!(keys.contains(&"console_sign_in_per_ip_per_minute"));
        assert_eq!(keys[0], "database_url");
        assert!(keys.contains(&"exposure_cache_bytes"));
        assert_eq!(env_var("max_connections"), "COMMONLAB_MAX_CONNECTIONS");
    }

    #[test]
    fn the_public_url_is_an_http_address_without_its_trailing_slash() {
        let with = |u: &str| Settings {
            public_url: Some(u.into()),
            ..Settings::default()
        };
        for bad in ["example.org", "ftp://x", "https://", "https://a b"] {
            assert_eq!(
                with(bad).check(),
                Err(SettingsError::NotHttpUrl("public_url")),
                "{bad}"
            );
        }
        let ok = with("https://lab.example.org/");
        assert_eq!(ok.check(), Ok(()));
        let config = ok.to_config(StudyKey::from_bytes(&[7; 32]).unwrap());
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://lab.example.org")
        );
        assert_eq!(
            Settings::default()
                .to_config(StudyKey::from_bytes(&[7; 32]).unwrap())
                .public_url,
            None
        );
    }

    #[test]
    fn later_layers_win_and_unset_keys_keep_their_value() {
        let file = Overrides {
            listen: Some("0.0.0.0:1".into()),
            max_connections: Some(5),
            ..Overrides::default()
        };
        let env = Overrides {
            listen: Some("0.0.0.0:2".into()),
            ..Overrides::default()
        };
        let s = Settings::default().with(file).with(env);
        assert_eq!(s.listen, "0.0.0.0:2");
        assert_eq!(s.max_connections, 5);
        assert_eq!(s.flag_set, "default");
    }

    #[test]
    fn the_config_has_what_the_settings_say() {
        let s = Settings {
            poll_interval_ms: 3,
            retention_days: Some(2),
            allowed_events: Some(vec!["a".into(), "b".into()]),
            request_timeout_secs: 7,
            max_connections: 9,
            survey_rate_per_link_per_minute: 7,
            ..Settings::default()
        };
        let c = s.to_config(StudyKey::from_bytes(&[1; 32]).unwrap());
        assert_eq!(c.poll_interval, Duration::from_millis(10));
        assert_eq!(c.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.allowed_events.as_deref().map(|e| e.len()), Some(2));
        assert!(c.allowed_properties.is_none());
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        assert_eq!(c.max_connections, 9);
        assert_eq!(c.survey_rate_per_link_per_minute, 7);
        assert_eq!(c.survey_rate_per_ip_per_minute, 300);
        assert_eq!(c.body_limit, 1024 * 1024);
        assert_eq!(
            c.study_key.fingerprint(),
            StudyKey::from_bytes(&[1; 32]).unwrap().fingerprint()
        );
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let s = Settings {
            header_read_timeout_secs: 0,
            ..Settings::default()
        };
        assert_eq!(
            s.check().unwrap_err().to_string(),
            "header_read_timeout_secs must be at least 1"
        );
    }
}
