//! Metrics, through the `metrics` crate and `metrics-exporter-prometheus`
//! (its recorder only: no HTTP listener of its own, `/metrics` renders it,
//! [`crate::health`]). Every name, its labels and meaning:
//! `docs/observability.md`.
//!
//! Each [`crate::AppState`] has its own recorder (no global one), so
//! several servers in one process (the tests, the simulator) count apart.
//! On the request path nothing takes a lock: handles to the atomic cells of
//! each series are registered the first time they count and kept (in a
//! table of route templates and methods built from [`crate::route_table`],
//! each series in a `OnceLock`; per flag, in a copy-on-write map the
//! first time a flag is evaluated), and a latency sample is a lock-free
//! push (`metrics_util::AtomicBucket` under the
//! exporter) drained by [`Metrics::upkeep`] (every few seconds from the
//! poller, and at each scrape). Counters kept elsewhere as plain atomics
//! (connections, ingestion, exposures, authentication failures) are copied
//! into the recorder when `/metrics` is scraped ([`MetricsSources`]).
//!
//! Cardinality is bounded: routes are templates (never raw paths), methods
//! outside the route table count as `OTHER`, a flag that does not exist
//! counts as `(unknown)`, and at most [`MAX_FLAG_SERIES`] flags get series
//! of their own (more count as `(other)`).

use crate::auth::KeyCache;
use crate::events::counters::IngestCounters;
use crate::events::group_commit::GroupCommitter;
use crate::serve::HttpCounters;
use crate::trials::exposure::ExposureSink;
use arc_swap::ArcSwap;
use axum::extract::FromRef;
use axum::http::Method;
use commonlab_store::Store;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Most flags with series of their own; further flags count as `(other)`.
pub const MAX_FLAG_SERIES: usize = 2_000;

/// The histogram buckets of request latency, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How often the poller drains latency samples into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

const META: Metadata<'static> = Metadata::new("commonlab", Level::INFO, Some(module_path!()));

/// The OFREP reasons a series is kept for (`Reason::as_str`).
const REASONS: [&str; 6] = [
    "STATIC",
    "DEFAULT",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "ERROR",
];

/// The methods of the route table (others: `OTHER`).
const METHODS: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
];

/// One route template and method: requests by status class, latency.
/// Each series is registered when first counted (a `/metrics` without
/// rows of zeros for routes never called), then read without a lock.
struct RouteSeries {
    method: Method,
    path: Box<str>,
    by_class: [OnceLock<Counter>; 5],
    latency: OnceLock<Histogram>,
}

impl RouteSeries {
    fn new(method: Method, path: &str) -> RouteSeries {
        RouteSeries {
            method,
            path: path.into(),
            by_class: Default::default(),
            latency: OnceLock::new(),
        }
    }

    fn count(&self, r: &PrometheusRecorder, status: u16, secs: f64) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let labels = || {
            vec![
                Label::new("method", self.method.as_str().to_owned()),
                Label::new("route", self.path.to_string()),
            ]
        };
        self.by_class[class]
            .get_or_init(|| {
                let mut l = labels();
                l.push(Label::new(
                    "status",
                    ["1xx", "2xx", "3xx", "4xx", "5xx"][class],
                ));
                r.register_counter(&Key::from_parts("commonlab_http_requests_total", l), &META)
            })
            .increment(1);
        self.latency
            .get_or_init(|| {
                let key = Key::from_parts("commonlab_http_request_duration_seconds", labels());
                r.register_histogram(&key, &META)
            })
            .record(secs);
    }
}

/// One flag's evaluations by reason (each registered when first counted).
struct FlagSeries {
    flag: Box<str>,
    by_reason: [OnceLock<Counter>; REASONS.len()],
}

impl FlagSeries {
    fn new(flag: &str) -> FlagSeries {
        FlagSeries {
            flag: flag.into(),
            by_reason: Default::default(),
        }
    }

    fn count(&self, r: &PrometheusRecorder, reason: &str) {
        let i = REASONS
            .iter()
            .position(|x| *x == reason)
            .unwrap_or(REASONS.len() - 1);
        self.by_reason[i]
            .get_or_init(|| {
                counter(
                    r,
                    "commonlab_ofrep_evaluations_total",
                    &[("flag", &self.flag), ("reason", REASONS[i])],
                )
            })
            .increment(1);
    }
}

/// The series a request is counted in, chosen when it starts.
#[derive(Clone, Copy)]
pub struct RouteSlot(usize);

/// A replica's metrics (see the module documentation).
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Every (route, method) of the route table, then `(no route)`.
    routes: Vec<RouteSeries>,
    by_path: HashMap<&'static str, Vec<usize>>,
    flags: ArcSwap<HashMap<Box<str>, Arc<FlagSeries>>>,
    unknown_flag: FlagSeries,
    other_flag: Arc<FlagSeries>,
    rate_limited_key: Counter,
    rate_limited_ip: Counter,
    last_upkeep: AtomicU64,
    started: Instant,
    scraped: Scraped,
}

/// The series copied in at each scrape.
struct Scraped {
    connections_open: Gauge,
    connections_rejected: Counter,
    request_timeouts: Counter,
    panics: Counter,
    auth_failures: Counter,
    events_stored: Counter,
    events_duplicate: Counter,
    events_dropped_allow_list: Counter,
    events_dropped_consent: Counter,
    events_dropped_invalid: Counter,
    properties_removed: Counter,
    exposures_logged: Counter,
    exposures_dropped: Counter,
    ingest_queue: Gauge,
    exposure_queue: Gauge,
    pools: Vec<(&'static str, Gauge, Gauge, Gauge)>,
}

impl Metrics {
    /// Metrics with a series for each `(method, path template)` given
    /// (the route table's).
    pub fn new(routes: impl IntoIterator<Item = (Method, &'static str)>) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("commonlab_http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let mut m = Metrics {
            handle,
            routes: Vec::new(),
            by_path: HashMap::new(),
            flags: ArcSwap::from_pointee(HashMap::new()),
            unknown_flag: FlagSeries::new("(unknown)"),
            other_flag: Arc::new(FlagSeries::new("(other)")),
            rate_limited_key: counter(
                &recorder,
                "commonlab_rate_limited_total",
                &[("scope", "key")],
            ),
            rate_limited_ip: counter(
                &recorder,
                "commonlab_rate_limited_total",
                &[("scope", "ip")],
            ),
            last_upkeep: AtomicU64::new(0),
            started: Instant::now(),
            scraped: Scraped::new(&recorder),
            recorder,
        };
        let any = Method::from_bytes(b"ANY").expect("a token");
        m.routes.push(RouteSeries::new(any, "(no route)"));
        for (method, path) in routes {
            // A GET route answers HEAD too.
            let head = (method == Method::GET).then_some(Method::HEAD);
            for method in std::iter::once(method).chain(head) {
                m.by_path.entry(path).or_default().push(m.routes.len());
                m.routes.push(RouteSeries::new(method, path));
            }
        }
        m
    }

    /// The series of a request to `path` (a route template; `None`: no
    /// route matched) with `method`.
    pub fn route_slot(&self, method: &Method, path: Option<&str>) -> Option<RouteSlot> {
        let Some(path) = path else {
            return Some(RouteSlot(0));
        };
        self.by_path
            .get(path)?
            .iter()
            .find(|&&i| self.routes[i].method == *method)
            .map(|&i| RouteSlot(i))
    }

    /// Counts a request answered `status` after `elapsed`, in `slot`, or
    /// (a route or method outside the table) in series registered now
    /// (the registry's lock, off the table's routes only).
    pub fn count_request(
        &self,
        slot: Option<RouteSlot>,
        method: &Method,
        path: Option<&str>,
        status: u16,
        elapsed: Duration,
    ) {
        let secs = elapsed.as_secs_f64();
        match slot {
            Some(RouteSlot(i)) => self.routes[i].count(&self.recorder, status, secs),
            None => {
                let method = if METHODS.contains(method) {
                    method.clone()
                } else {
                    Method::from_bytes(b"OTHER").expect("a token")
                };
                RouteSeries::new(method, path.unwrap_or("(no route)")).count(
                    &self.recorder,
                    status,
                    secs,
                )
            }
        }
    }

    /// Counts one OFREP evaluation of `flag` answered with `reason` (an
    /// OFREP reason: `STATIC`, `TARGETING_MATCH`, `SPLIT`, …); `exists`:
    /// the flag is in the served set (else it counts as `(unknown)`, so
    /// clients cannot add series).
    pub fn count_evaluation(&self, flag: &str, exists: bool, reason: &str) {
        let r = &self.recorder;
        if !exists {
            return self.unknown_flag.count(r, reason);
        }
        if let Some(series) = self.flags.load().get(flag) {
            return series.count(r, reason);
        }
        self.add_flag(flag).count(r, reason);
    }

    fn add_flag(&self, flag: &str) -> Arc<FlagSeries> {
        let mut added = None;
        self.flags.rcu(|map| {
            if let Some(s) = map.get(flag) {
                added = Some(Arc::clone(s));
                return Arc::clone(map);
            }
            if map.len() >= MAX_FLAG_SERIES {
                added = None;
                return Arc::clone(map);
            }
            let series = Arc::new(FlagSeries::new(flag));
            added = Some(Arc::clone(&series));
            let mut next = HashMap::clone(map);
            next.insert(flag.into(), series);
            Arc::new(next)
        });
        // Past the bound: a series shared by every further flag.
        added.unwrap_or_else(|| Arc::clone(&self.other_flag))
    }

    /// Counts a request refused 429 by a rate limit (`by_key`: the key's
    /// quota; else the address's).
    pub fn count_rate_limited(&self, by_key: bool) {
        match by_key {
            true => self.rate_limited_key.increment(1),
            false => self.rate_limited_ip.increment(1),
        }
    }

    /// Counts one survey response stored for `campaign`: the survey
    /// pages call it once per response they store
    /// (`commonlab_survey_responses_total{campaign}`). Pass only the key
    /// of a campaign that exists (it becomes a label). Not for a hot path:
    /// it looks the series up in the registry (a read lock).
    pub fn count_survey_response(&self, campaign: &str) {
        counter(
            &self.recorder,
            "commonlab_survey_responses_total",
            &[("campaign", campaign)],
        )
        .increment(1);
    }

    /// Drains latency samples into their buckets, at most every
    /// [`UPKEEP_EVERY`] (the exporter keeps samples until then).
    pub fn upkeep(&self) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_upkeep.load(Ordering::Relaxed);
        if now >= last + UPKEEP_EVERY.as_secs()
            && self
                .last_upkeep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.handle.run_upkeep();
        }
    }

    /// Every series in Prometheus' text format, after copying in the
    /// counters kept by `sources`.
    pub fn render(&self, sources: &MetricsSources) -> String {
        let s = &self.scraped;
        let http = &sources.http;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.connections_open.set(load(&http.connections_open) as f64);
        s.connections_rejected
            .absolute(load(&http.connections_rejected));
        s.request_timeouts.absolute(load(&http.request_timeouts));
        s.panics.absolute(load(&http.panics));
        s.auth_failures.absolute(sources.keys.failures().count());
        let i = &sources.ingest;
        s.events_stored.absolute(load(&i.stored));
        s.events_duplicate.absolute(load(&i.duplicates));
        s.events_dropped_allow_list
            .absolute(load(&i.dropped_not_allowed));
        s.events_dropped_consent
            .absolute(load(&i.dropped_no_consent));
        s.events_dropped_invalid.absolute(load(&i.rejected));
        s.properties_removed.absolute(load(&i.properties_removed));
        s.exposures_logged.absolute(sources.exposures.written());
        s.exposures_dropped.absolute(sources.exposures.dropped());
        s.ingest_queue.set(sources.committer.queued() as f64);
        s.exposure_queue.set(sources.exposures.queued() as f64);
        for usage in sources.store.pool_usage() {
            if let Some((_, open, idle, max)) = s.pools.iter().find(|p| p.0 == usage.pool) {
                open.set(f64::from(usage.open));
                idle.set(usage.idle as f64);
                max.set(f64::from(usage.max));
            }
        }
        self.handle.render()
    }
}

impl Scraped {
    fn new(r: &PrometheusRecorder) -> Scraped {
        let c = |name: &'static str| counter(r, name, &[]);
        let dropped = |reason: &'static str| {
            counter(r, "commonlab_events_dropped_total", &[("reason", reason)])
        };
        let g = |name: &'static str, labels: &[(&'static str, &str)]| {
            r.register_gauge(&Key::from_parts(name, to_labels(labels)), &META)
        };
        Scraped {
            connections_open: g("commonlab_http_connections_open", &[]),
            connections_rejected: c("commonlab_http_connections_rejected_total"),
            request_timeouts: c("commonlab_http_request_timeouts_total"),
            panics: c("commonlab_http_panics_total"),
            auth_failures: c("commonlab_auth_failures_total"),
            events_stored: c("commonlab_events_stored_total"),
            events_duplicate: c("commonlab_events_duplicate_total"),
            events_dropped_allow_list: dropped("allow_list"),
            events_dropped_consent: dropped("consent"),
            events_dropped_invalid: dropped("invalid"),
            properties_removed: c("commonlab_event_properties_removed_total"),
            exposures_logged: c("commonlab_exposures_logged_total"),
            exposures_dropped: c("commonlab_exposures_dropped_total"),
            ingest_queue: g("commonlab_ingest_queue_depth", &[]),
            exposure_queue: g("commonlab_exposure_queue_depth", &[]),
            pools: ["main", "read", "write"]
                .into_iter()
                .map(|pool| {
                    (
                        pool,
                        g(
                            "commonlab_db_pool_connections",
                            &[("pool", pool), ("state", "open")],
                        ),
                        g(
                            "commonlab_db_pool_connections",
                            &[("pool", pool), ("state", "idle")],
                        ),
                        g("commonlab_db_pool_max_connections", &[("pool", pool)]),
                    )
                })
                .collect(),
        }
    }
}

fn to_labels(labels: &[(&'static str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect()
}

fn counter(r: &PrometheusRecorder, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    r.register_counter(&Key::from_parts(name, to_labels(labels)), &META)
}

/// Help texts (`# HELP`), and units.
fn describe(r: &PrometheusRecorder) {
    let counters: &[(&'static str, &'static str)] = &[
        ("commonlab_http_requests_total", "Requests answered, by method, route template and status class."),
        ("commonlab_http_connections_rejected_total", "Connections turned away with 503: max_connections were open."),
        ("commonlab_http_request_timeouts_total", "Requests answered 408: not complete within request_timeout."),
        ("commonlab_http_panics_total", "Requests whose handler panicked (answered 500)."),
        ("commonlab_auth_failures_total", "Requests refused 401: no API key, or not a valid one."),
        ("commonlab_rate_limited_total", "Requests refused 429 by a rate limit, by scope (key or ip)."),
        ("commonlab_ofrep_evaluations_total", "OFREP flag evaluations, by flag and reason."),
        ("commonlab_events_stored_total", "Events stored by this process."),
        ("commonlab_events_duplicate_total", "Events already stored (retries)."),
        ("commonlab_events_dropped_total", "Events not stored, by reason: allow_list (name not allowed), consent (no consent), invalid (refused with an error)."),
        ("commonlab_event_properties_removed_total", "Properties removed: key not on the allow-list."),
        ("commonlab_exposures_logged_total", "First exposures written to the database by this process."),
        ("commonlab_exposures_dropped_total", "First exposures not recorded: refused by the database, or unwritten at shutdown."),
        ("commonlab_survey_responses_total", "Survey responses stored, by campaign."),
    ];
    for (name, help) in counters {
        r.describe_counter(KeyName::from(*name), None, (*help).into());
    }
    let gauges: &[(&'static str, &'static str)] = &[
        (
            "commonlab_http_connections_open",
            "Client connections open now.",
        ),
        (
            "commonlab_ingest_queue_depth",
            "Event batches waiting for the group committer.",
        ),
        (
            "commonlab_exposure_queue_depth",
            "First exposures waiting for the exposure writer.",
        ),
        (
            "commonlab_db_pool_connections",
            "Database pool connections, by pool and state (open: in use or idle; idle).",
        ),
        (
            "commonlab_db_pool_max_connections",
            "Most connections of each database pool.",
        ),
    ];
    for (name, help) in gauges {
        r.describe_gauge(KeyName::from(*name), None, (*help).into());
    }
    r.describe_histogram(
        KeyName::from("commonlab_http_request_duration_seconds"),
        Some(Unit::Seconds),
        "Time from a request's head to its response head, by method and route template.".into(),
    );
}

/// What `/metrics` reads besides [`Metrics`]: the counters kept as
/// atomics by their owners, the queues and the store's pools.
#[derive(Clone)]
pub struct MetricsSources {
    pub metrics: Arc<Metrics>,
    pub http: Arc<HttpCounters>,
    pub ingest: Arc<IngestCounters>,
    pub keys: KeyCache,
    pub exposures: ExposureSink,
    pub committer: GroupCommitter,
    pub store: Store,
}

impl FromRef<crate::AppState> for MetricsSources {
    fn from_ref(s: &crate::AppState) -> Self {
        MetricsSources {
            metrics: s.metrics.clone(),
            http: s.http_counters.clone(),
            ingest: s.ingest_counters.clone(),
            keys: s.keys.clone(),
            exposures: s.exposures.clone(),
            committer: s.committer.clone(),
            store: s.store.clone(),
        }
    }
}
