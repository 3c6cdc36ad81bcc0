//! Open-loop load generation against a running server, through its
//! public interfaces only: OFREP single and bulk evaluations with varied
//! targeting keys and communities, `POST /v1/events` batches, survey
//! page views, and survey answers: respondents going through the real
//! flow (open the link, consent, post each page with its form token, the
//! thanks page) on a campaign the run sets up through the management API
//! with a researcher key ([`survey`]).
//!
//! Open loop: request `i` is scheduled at `start + i/rate` whatever the
//! server does, and its latency is measured from that scheduled time to
//! the last byte of the answer, so a server that stalls is charged for
//! every request that waited behind it (no coordinated omission). A
//! request the client could not send because `max_in_flight` requests
//! were outstanding is counted as `not_sent`, never silently skipped.
//! Latencies go into HDR histograms (`hdrhistogram`, 3 significant
//! digits). Every request task is owned by one `JoinSet` and joined
//! before [`run`] returns.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use commonlab_client::Event;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub mod survey;
pub use survey::SurveyReport;
use survey::{Respondents, Step, StepDone};

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Highest target rate, requests per second.
pub const MAX_RATE: f64 = 50_000.0;
/// Most events in one batch.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoadError {
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("{0}")]
    Server(String),
}

fn invalid(field: &str, why: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// Relative weights of the request kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub single: u32,
    pub bulk: u32,
    pub events: u32,
    pub survey: u32,
    /// Steps of respondents answering a survey (needs a researcher key).
    pub answer: u32,
}

impl Default for Mix {
    /// 60% single evaluations, 15% bulk, 25% event batches; survey page
    /// views 10 and survey answer steps 10 when a campaign is there.
    fn default() -> Self {
        Mix {
            single: 60,
            bulk: 15,
            events: 25,
            survey: 10,
            answer: 10,
        }
    }
}

impl Mix {
    /// `single=60,bulk=15,events=25,survey=10,answer=10`; kinds left out
    /// weigh 0.
    pub fn parse(text: &str) -> Result<Mix, LoadError> {
        let mut mix = Mix {
            single: 0,
            bulk: 0,
            events: 0,
            survey: 0,
            answer: 0,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| invalid("--mix", format!("'{part}': expected KIND=WEIGHT")))?;
            let w: u32 = v
                .trim()
                .parse()
                .ok()
                .filter(|w| *w <= 1_000)
                .ok_or_else(|| invalid("--mix", format!("'{part}': weight 0 to 1000")))?;
            match k.trim() {
                "single" => mix.single = w,
                "bulk" => mix.bulk = w,
                "events" => mix.events = w,
                "survey" => mix.survey = w,
                "answer" => mix.answer = w,
                other => {
                    return Err(invalid(
                        "--mix",
                        format!("unknown kind '{other}' (single, bulk, events, survey, answer)"),
                    ))
                }
            }
        }
        if mix.total() == 0 {
            return Err(invalid("--mix", "every weight is 0"));
        }
        Ok(mix)
    }
}

impl Mix {
    fn total(&self) -> u32 {
        self.single + self.bulk + self.events + self.survey + self.answer
    }
}

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Single,
    Bulk,
    Events,
    Survey,
    /// A respondent's `GET`s: opening the link, the thanks page.
    AnswerView,
    /// A respondent's posts: consent, each page.
    AnswerPost,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Single => "ofrep_single",
            Kind::Bulk => "ofrep_bulk",
            Kind::Events => "events",
            Kind::Survey => "survey_view",
            Kind::AnswerView => "survey_answer_view",
            Kind::AnswerPost => "survey_answer_post",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// E.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub sdk_key: String,
    /// Requests per second, all kinds together.
    pub rate: f64,
    pub duration: Duration,
    pub mix: Mix,
    /// Flags for single evaluations (empty: those a bulk evaluation lists).
    pub flags: Vec<String>,
    pub communities: Vec<String>,
    /// Distinct targeting keys (`load-0` … ), each in one community.
    pub users: u64,
    /// Events per batch.
    pub batch: usize,
    /// Survey page URLs (empty: the links of the campaign set up with
    /// `research_key`, else no survey views).
    pub survey_links: Vec<String>,
    /// A researcher key: with it, a campaign is set up for survey answers
    /// (and views, without `survey_links`); without it they are left out.
    pub research_key: Option<String>,
    /// Respondents answering at once (each with at most one request in
    /// flight); more start when these are all waiting for an answer.
    pub respondents_at_once: usize,
    pub seed: u64,
    /// Per request.
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Allow a target that is not a loopback address.
    pub allow_remote: bool,
}

/// Latency percentiles of one kind, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// One kind's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindReport {
    pub kind: &'static str,
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Failures by status code, or `timeout` / `connect` / `other`; for
    /// survey posts also `form_refused` (answered 200: the form was shown
    /// again) and `303_elsewhere` (sent on to an unexpected page).
    pub errors: BTreeMap<String, u64>,
    /// Scheduled but not sent (too many in flight).
    pub not_sent: u64,
    /// Answered per second over the run.
    pub throughput: f64,
    /// From the scheduled send time to the answer's last byte (every
    /// answered request, errors included).
    pub latency_ms: Option<Latency>,
    /// Event batches: events sent and events the server rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<(u64, u64)>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub target_rate: f64,
    /// Requests sent per second between the first and the last send.
    pub achieved_rate: f64,
    pub duration_s: f64,
    /// Until the last answer.
    pub elapsed_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub not_sent: u64,
    /// How late the scheduler was at worst, in milliseconds.
    pub max_send_lag_ms: f64,
    pub mix: Mix,
    pub flags: Vec<String>,
    pub kinds: Vec<KindReport>,
    /// Survey answers: the campaign and its respondents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey: Option<SurveyReport>,
    pub notes: Vec<String>,
}

/// Refuses a URL that is not `http(s)://` on a loopback address (or
/// `localhost`) unless `allow_remote`.
pub fn check_target(url: &str, allow_remote: bool) -> Result<(), LoadError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid("--url", format!("{url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("--url", "must be http:// or https://"));
    }
    let host = parsed.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(invalid(
            "--url",
            format!("{host} is not a loopback address; a load test of another machine needs --allow-remote"),
        ));
    }
    Ok(())
}

impl LoadConfig {
    fn check(&self) -> Result<(), LoadError> {
        check_target(&self.base_url, self.allow_remote)?;
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(invalid("--rate", format!("must be in (0, {MAX_RATE}]")));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(invalid(
                "--duration",
                format!("must be between 1 s and {} s", MAX_DURATION.as_secs()),
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(invalid("--batch", format!("must be 1 to {MAX_BATCH}")));
        }
        if self.users == 0 {
            return Err(invalid("--users", "must be at least 1"));
        }
        if self.communities.is_empty() {
            return Err(invalid("--communities", "needs at least one community"));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("--max-in-flight", "must be at least 1"));
        }
        if self.respondents_at_once == 0 || self.respondents_at_once > survey::MAX_LINKS / 2 {
            return Err(invalid(
                "--respondents-at-once",
                format!("must be 1 to {}", survey::MAX_LINKS / 2),
            ));
        }
        Ok(())
    }
}

struct Done {
    kind: Kind,
    /// Accepted, or why not (a status code or the kind of failure).
    outcome: Result<(), String>,
    latency: Duration,
    rejected_events: u64,
    /// A survey respondent's step.
    step: Option<StepDone>,
}

/// Everything a request needs, shared by the tasks.
struct Shared {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// The flags a bulk evaluation lists.
async fn discover_flags(shared: &Shared) -> Result<Vec<String>, LoadError> {
    let resp = shared
        .http
        .post(format!("{}/ofrep/v1/evaluate/flags", shared.base))
        .bearer_auth(&shared.key)
        .json(&json!({"context": {"targetingKey": "load-discovery"}}))
        .send()
        .await
        .map_err(|e| LoadError::Server(format!("cannot reach {}: {e}", shared.base)))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(LoadError::Server(format!(
            "the bulk evaluation answered {status}: {body}"
        )));
    }
    Ok(body["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["key"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

fn failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    }
}

/// Sends one request and reads its answer: accepted or why not, events
/// rejected, and for a survey step what it moves the respondent to.
async fn request(
    shared: &Shared,
    kind: Kind,
    body: RequestBody,
) -> (Result<(), String>, u64, Option<StepDone>) {
    if let RequestBody::Step(step) = body {
        return answer_step(shared, step).await;
    }
    let builder = match body {
        RequestBody::Evaluate { flag, context } => {
            let url = match &flag {
                Some(f) => format!("{}/ofrep/v1/evaluate/flags/{f}", shared.base),
                None => format!("{}/ofrep/v1/evaluate/flags", shared.base),
            };
            shared
                .http
                .post(url)
                .bearer_auth(&shared.key)
                .json(&json!({ "context": context }))
        }
        RequestBody::Events(events) => shared
            .http
            .post(format!("{}/v1/events", shared.base))
            .bearer_auth(&shared.key)
            .json(&events),
        RequestBody::Page(url) => shared.http.get(url),
        RequestBody::Step(_) => unreachable!("answered above"),
    };
    match builder.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.bytes().await {
                Ok(bytes) => {
                    let rejected = if kind == Kind::Events && status == 200 {
                        serde_json::from_slice::<Value>(&bytes)
                            .ok()
                            .and_then(|v| v["rejected"].as_array().map(|a| a.len() as u64))
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    let outcome = if (200..300).contains(&status) {
                        Ok(())
                    } else {
                        Err(status.to_string())
                    };
                    (outcome, rejected, None)
                }
                Err(e) => (Err(failure(&e).into()), 0, None),
            }
        }
        Err(e) => (Err(failure(&e).into()), 0, None),
    }
}

/// One step of a survey respondent (`survey` module docs).
async fn answer_step(shared: &Shared, step: Step) -> (Result<(), String>, u64, Option<StepDone>) {
    let post = step.is_post();
    let builder = match &step.form {
        Some(form) => shared.http.post(&step.url).form(form),
        None => shared.http.get(&step.url),
    };
    let (outcome, form_token) = match builder.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match resp.bytes().await {
                Ok(body) => survey::judge(
                    post,
                    status,
                    location.as_deref(),
                    step.expect_location.as_deref(),
                    &body,
                ),
                Err(e) => (Err(failure(&e).into()), None),
            }
        }
        Err(e) => (Err(failure(&e).into()), None),
    };
    let done = StepDone {
        respondent: step.respondent,
        step: step.step,
        accepted: outcome.is_ok(),
        form_token,
    };
    (outcome, 0, Some(done))
}

enum RequestBody {
    Evaluate {
        flag: Option<String>,
        context: Value,
    },
    Events(Vec<Event>),
    Page(String),
    Step(Step),
}

/// Waits until `at`: tokio's timer wakes on whole milliseconds (up to one
/// late), which would be charged to every request's latency; so it sleeps
/// until 2 ms before, then yields until the time has come.
async fn wait_until(at: Instant) {
    let early = Duration::from_millis(2);
    if at.saturating_duration_since(Instant::now()) > early {
        tokio::time::sleep_until(at - early).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

const EVENT_NAMES: [&str; 4] = ["session_start", "edit", "comment", "review"];

/// Runs the load; `progress` hears the number sent after each send.
pub async fn run(
    cfg: &LoadConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadReport, LoadError> {
    cfg.check()?;
    // Redirects are not followed: a survey post's 303 is its answer.
    let http = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LoadError::Server(format!("cannot build the HTTP client: {e}")))?;
    let shared = std::sync::Arc::new(Shared {
        http,
        base: cfg.base_url.trim_end_matches('/').to_string(),
        key: cfg.sdk_key.clone(),
    });
    let mut notes = Vec::new();
    let mut mix = cfg.mix;
    let mut survey_links = cfg.survey_links.clone();
    let mut respondents = None;
    let wants_campaign = mix.answer > 0 || (mix.survey > 0 && survey_links.is_empty());
    match &cfg.research_key {
        Some(key) if wants_campaign => {
            // Enough links for the answer steps expected, with a margin.
            let steps = (cfg.rate * cfg.duration.as_secs_f64() * f64::from(mix.answer)
                / f64::from(mix.total().max(1)))
            .ceil() as usize;
            let answering = if mix.answer > 0 {
                steps * 5 / 4 / survey::STEPS + cfg.respondents_at_once + 10
            } else {
                0
            };
            let setup = survey::set_up(&shared, key, &cfg.communities, answering, cfg.seed).await?;
            if survey_links.is_empty() {
                survey_links = setup.view_links.clone();
            }
            if mix.answer > 0 {
                respondents = Some(Respondents::new(&setup, cfg.respondents_at_once));
            }
        }
        None if mix.answer > 0 => {
            mix.answer = 0;
            notes.push(
                "survey answers skipped: they need a campaign, set up with a researcher key (--research-key)".into(),
            );
        }
        _ => {}
    }
    if survey_links.is_empty() && mix.survey > 0 {
        mix.survey = 0;
        notes.push("survey page views skipped: no survey links given (--survey-links FILE) and no campaign set up (--research-key)".into());
    }
    let flags = if cfg.flags.is_empty() && mix.single > 0 {
        discover_flags(&shared).await?
    } else {
        cfg.flags.clone()
    };
    if flags.is_empty() && mix.single > 0 {
        return Err(LoadError::Server(
            "the server's flag set is empty: no flag to evaluate (import flags, give --flag, or set single=0 in --mix)".into(),
        ));
    }
    if mix.total() == 0 {
        return Err(invalid("--mix", "nothing left to send"));
    }
    // An answer step is picked as `AnswerPost`; the respondent's step then
    // says whether it is a view or a post.
    let kinds: Vec<(Kind, u32)> = [
        (Kind::Single, mix.single),
        (Kind::Bulk, mix.bulk),
        (Kind::Events, mix.events),
        (Kind::Survey, mix.survey),
        (Kind::AnswerPost, mix.answer),
    ]
    .into_iter()
    .filter(|(_, w)| *w > 0)
    .collect();
    let mut reported: Vec<Kind> = kinds.iter().map(|(k, _)| *k).collect();
    if mix.answer > 0 {
        reported.insert(reported.len() - 1, Kind::AnswerView);
    }
    let total_weight: u32 = kinds.iter().map(|(_, w)| w).sum();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let scheduled = (cfg.rate * cfg.duration.as_secs_f64()).floor().max(1.0) as u64;
    let mut histograms: BTreeMap<Kind, Histogram<u64>> = BTreeMap::new();
    let mut reports: BTreeMap<Kind, KindReport> = BTreeMap::new();
    for k in &reported {
        histograms.insert(
            *k,
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        );
        reports.insert(
            *k,
            KindReport {
                kind: k.as_str(),
                sent: 0,
                ok: 0,
                errors: BTreeMap::new(),
                not_sent: 0,
                throughput: 0.0,
                latency_ms: None,
                events: (*k == Kind::Events).then_some((0, 0)),
            },
        );
    }
    let record = |done: Done,
                  histograms: &mut BTreeMap<Kind, Histogram<u64>>,
                  reports: &mut BTreeMap<Kind, KindReport>,
                  respondents: &mut Option<Respondents>| {
        let micros = u64::try_from(done.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Some(h) = histograms.get_mut(&done.kind) {
            h.saturating_record(micros);
        }
        if let Some(r) = reports.get_mut(&done.kind) {
            match done.outcome {
                Ok(()) => r.ok += 1,
                Err(e) => *r.errors.entry(e).or_default() += 1,
            }
            if let Some((_, rejected)) = &mut r.events {
                *rejected += done.rejected_events;
            }
        }
        if let (Some(step), Some(rs)) = (done.step, respondents.as_mut()) {
            rs.done(step);
        }
    };
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let start = Instant::now() + Duration::from_millis(20);
    let mut max_lag = Duration::ZERO;
    let mut sent = 0u64;
    let mut last_send = start;
    for i in 0..scheduled {
        let at = start + Duration::from_secs_f64(i as f64 / cfg.rate);
        wait_until(at).await;
        let now = Instant::now();
        max_lag = max_lag.max(now.saturating_duration_since(at));
        while let Some(joined) = tasks.try_join_next() {
            if let Ok(done) = joined {
                record(done, &mut histograms, &mut reports, &mut respondents);
            }
        }
        let mut pick = rng.random_range(0..total_weight);
        let mut kind = kinds
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(Kind::Single, |(k, _)| *k);
        let mut step = None;
        if kind == Kind::AnswerPost {
            match respondents.as_mut().and_then(|rs| rs.next(&mut rng)) {
                Some(s) => {
                    if !s.is_post() {
                        kind = Kind::AnswerView;
                    }
                    step = Some(s);
                }
                None => {
                    if let Some(r) = reports.get_mut(&Kind::AnswerView) {
                        r.not_sent += 1;
                    }
                    continue;
                }
            }
        }
        if tasks.len() >= cfg.max_in_flight {
            if let (Some(s), Some(rs)) = (&step, respondents.as_mut()) {
                rs.unsent(s);
            }
            if let Some(r) = reports.get_mut(&kind) {
                r.not_sent += 1;
            }
            continue;
        }
        let user = rng.random_range(0..cfg.users);
        let unit = format!("load-{user}");
        let community = cfg.communities[(user % cfg.communities.len() as u64) as usize].clone();
        let body = match kind {
            Kind::Single | Kind::Bulk => RequestBody::Evaluate {
                flag: (kind == Kind::Single)
                    .then(|| flags[rng.random_range(0..flags.len())].clone()),
                context: json!({"targetingKey": unit, "community": community}),
            },
            Kind::Events => RequestBody::Events(
                (0..cfg.batch)
                    .map(|_| {
                        let name = EVENT_NAMES[rng.random_range(0..EVENT_NAMES.len())];
                        Event::new(unit.clone(), name).community(community.clone())
                    })
                    .collect(),
            ),
            Kind::Survey => {
                RequestBody::Page(survey_links[rng.random_range(0..survey_links.len())].clone())
            }
            Kind::AnswerView | Kind::AnswerPost => {
                RequestBody::Step(step.take().expect("an answer kind has its step"))
            }
        };
        let report = reports.get_mut(&kind).expect("every kind has a report");
        report.sent += 1;
        if let Some((events, _)) = &mut report.events {
            *events += cfg.batch as u64;
        }
        let shared = shared.clone();
        tasks.spawn(async move {
            let (outcome, rejected_events, step) = request(&shared, kind, body).await;
            Done {
                kind,
                outcome,
                latency: at.elapsed(),
                rejected_events,
                step,
            }
        });
        sent += 1;
        last_send = now;
        progress(sent);
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok(done) = joined {
            record(done, &mut histograms, &mut reports, &mut respondents);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let send_window = last_send.saturating_duration_since(start).as_secs_f64();
    let achieved_rate = if sent > 1 && send_window > 0.0 {
        (sent - 1) as f64 / send_window
    } else {
        sent as f64 / elapsed
    };
    let mut out = Vec::new();
    for (k, mut r) in reports {
        let h = &histograms[&k];
        let ms = |us: u64| us as f64 / 1_000.0;
        let answered = r.ok + r.errors.values().sum::<u64>();
        r.throughput = answered as f64 / elapsed;
        r.latency_ms = (!h.is_empty()).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1_000.0,
        });
        out.push(r);
    }
    let ok = out.iter().map(|r| r.ok).sum();
    let errors = out.iter().map(|r| r.errors.values().sum::<u64>()).sum();
    let not_sent = out.iter().map(|r| r.not_sent).sum();
    if not_sent > 0 {
        notes.push(format!(
            "{not_sent} requests were not sent: {} were already in flight (--max-in-flight); the server did not keep up",
            cfg.max_in_flight
        ));
    }
    Ok(LoadReport {
        target_rate: cfg.rate,
        achieved_rate,
        duration_s: cfg.duration.as_secs_f64(),
        elapsed_s: elapsed,
        scheduled,
        sent,
        ok,
        errors,
        not_sent,
        max_send_lag_ms: max_lag.as_secs_f64() * 1_000.0,
        mix,
        flags,
        kinds: out,
        survey: respondents.map(|rs| rs.report),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:8080/",
            "https://127.0.0.2",
        ] {
            assert_eq!(check_target(ok, false), Ok(()), "{ok}");
        }
        for remote in [
            "http://10.0.0.1:8080",
            "http://example.org",
            "http://[2001:db8::1]/",
        ] {
            let e = check_target(remote, false).unwrap_err();
            assert!(e.to_string().contains("--allow-remote"), "{e}");
            assert_eq!(check_target(remote, true), Ok(()));
        }
        assert!(check_target("ftp://127.0.0.1", true).is_err());
        assert!(check_target("not a url", true).is_err());
    }

    #[test]
    fn mixes_parse_with_the_mistake_named() {
        assert_eq!(
            Mix::parse("single=3, events=1").unwrap(),
            Mix {
                single: 3,
                bulk: 0,
                events: 1,
                survey: 0,
                answer: 0,
            }
        );
        for bad in ["single", "single=x", "poll=1", "single=0", "bulk=1001"] {
            let e = Mix::parse(bad).unwrap_err();
            assert!(
                matches!(e, LoadError::Invalid { ref field, .. } if field == "--mix"),
                "{bad}: {e}"
            );
        }
    }
}
