//! The one way the tests start a server: [`Harness::on`] a test database,
//! with the settings, clock and admin key a test asks for
//! ([`HarnessBuilder`]), and helpers to call it.

use commonlab_core::auth::Role;
use commonlab_core::privacy::StudyKey;
use commonlab_server::{build_state, keys::create_key, start, Clock, Config, Running};
use commonlab_store::testing::TestDb;
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const FLAGS: &str = include_str!("../fixtures/flags.json");
pub const BODY_LIMIT: usize = 64 * 1024;

/// A study key made for one test: fresh random bytes, as every server the
/// tests start had before (replicas of one server are given its key).
pub fn fresh_study_key() -> Arc<StudyKey> {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    Arc::new(StudyKey::from_bytes(&bytes).expect("32 bytes is long enough"))
}

/// The settings of a test server: the defaults with [`fresh_study_key`],
/// polling every 50 ms, bodies up to [`BODY_LIMIT`], and no practical
/// limit on console sign-ins (the route tests sign in hundreds of times
/// from the loopback; the limit's own test sets it).
pub fn test_config() -> Config {
    Config {
        poll_interval: Duration::from_millis(50),
        body_limit: BODY_LIMIT,
        console_sign_in_per_ip_per_minute: 1_000_000,
        ..Config::new(fresh_study_key())
    }
}

/// A server on a test database, an admin key for it, and a client.
pub struct Harness {
    pub server: Running,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
}

/// How to start a [`Harness`]: on which database, with which settings,
/// clock and admin key.
pub struct HarnessBuilder<'a> {
    db: &'a TestDb,
    config: Config,
    clock: Clock,
    admin: Option<String>,
}

impl<'a> HarnessBuilder<'a> {
    /// Changes the settings (from [`test_config`]).
    pub fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses this admin key (another server's on the same database) rather
    /// than creating one.
    pub fn admin(mut self, key: &str) -> Self {
        self.admin = Some(key.to_string());
        self
    }

    /// A replica of `of`: its admin key and its study key.
    pub fn replica_of(self, of: &Harness) -> Self {
        let key = of.server.state.config.study_key.clone();
        let survey_keys = of.server.state.config.survey_keys.clone();
        let console_keys = of.server.state.config.console_keys.clone();
        self.admin(&of.admin).config(|c| {
            c.study_key = key;
            c.survey_keys = survey_keys;
            c.console_keys = console_keys;
        })
    }

    /// Starts the server on a connection of its own to the database.
    pub async fn start(self) -> Harness {
        let store = self.db.connect_another().await;
        let admin = match self.admin {
            Some(key) => key,
            None => {
                create_key(
                    &store,
                    "test-admin",
                    Role::Admin,
                    "test",
                    chrono::Utc::now(),
                )
                .await
                .unwrap()
                .key
            }
        };
        let state = build_state(store, self.config, self.clock).await.unwrap();
        let server = start("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
        let base = format!("http://{}", server.addr);
        Harness {
            server,
            base,
            http: reqwest::Client::new(),
            admin,
        }
    }
}

impl Harness {
    /// A server to be started on `db` (see [`HarnessBuilder`]).
    pub fn on(db: &TestDb) -> HarnessBuilder<'_> {
        HarnessBuilder {
            db,
            config: test_config(),
            clock: Clock::System,
            admin: None,
        }
    }

    /// A server on `db` with the test settings, at the system clock.
    pub async fn start(db: &TestDb) -> Harness {
        Harness::on(db).start().await
    }

    pub async fn key(&self, role: Role) -> String {
        let name = format!("{role}-{}", rand_suffix());
        let k = create_key(
            &self.server.state.store,
            &name,
            role,
            "test",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        commonlab_server::sync::refresh_keys(&self.server.state)
            .await
            .unwrap();
        k.key
    }

    pub fn req(&self, method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    }

    pub async fn import_fixture(&self) {
        let resp = self
            .req(
                Method::POST,
                "/api/v1/import?reason=fixture",
                Some(&self.admin),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(FLAGS)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        crate::events::openapi::assert_documented(&Method::POST, "/api/v1/import", status, &body);
    }

    pub async fn eval(&self, key: &str, flag: &str, context: Value) -> (StatusCode, String) {
        let resp = self
            .req(
                Method::POST,
                &format!("/ofrep/v1/evaluate/flags/{flag}"),
                Some(key),
            )
            .json(&json!({ "context": context }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// `/metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .req(Method::GET, "/metrics", None)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }

    /// The value of one series at `/metrics` (`name{label="v",...}` as
    /// the exporter writes it), 0 when it is not there yet.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_in(&self.metrics_text().await, series)
    }

    /// Waits (10 s at most) until `series` reaches `at_least`.
    pub async fn wait_metric(&self, series: &str, at_least: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics_text().await;
            if metric_in(&text, series) >= at_least {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{series} never reached {at_least}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// The value of `series` in the Prometheus text `text` (0 when absent).
pub fn metric_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

pub fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

pub async fn problem(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}
