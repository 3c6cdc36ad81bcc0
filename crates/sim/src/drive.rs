//! Driving a real Commonlab server with a [`Simulation`], only through its
//! public interfaces: each visitor's arm comes from an OFREP evaluation of
//! the trial's flag (so assignment and exposure take the real path), and
//! the day's events go through `POST /v1/events` with the telemetry client.
//!
//! Simulated time: day `d` is `[start + d days, start + d + 1 days)`. A
//! server whose clock the caller can set (an in-process server with a fixed
//! clock) is moved to the start of the day before the evaluations and to
//! its end before the events are sent, so schedules and ramps follow
//! simulated time. Against a server on the real clock, arms are decided at
//! the real time of the evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use commonlab_client::{ClientError, Event, EventClient, Options};
use serde_json::{json, Map, Value};

use crate::{Day, Member, Simulation};

/// Extra OFREP context attributes for a member at an evaluation time (the
/// platform's own attributes, such as a role or the last activity).
pub type ContextFn = Arc<dyn Fn(&Member, DateTime<Utc>) -> Map<String, Value> + Send + Sync>;

/// The platform's name and properties for a simulated event (`edit` may be
/// the platform's `contribution_created` with `{"kind": "edit"}`); `None`
/// sends nothing for it.
pub type VocabularyFn =
    Arc<dyn Fn(&'static str) -> Option<(String, Map<String, Value>)> + Send + Sync>;

/// The server and flag to drive.
#[derive(Clone)]
pub struct Target {
    /// E.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// An `sdk` API key.
    pub sdk_key: String,
    /// The flag whose variant is a member's arm.
    pub flag: String,
    /// The OFREP context attribute (and event field) that carries the
    /// community, e.g. `community`.
    pub community_attribute: String,
    /// Added to every evaluation context (`None`: only `targetingKey` and
    /// the community).
    pub context: Option<ContextFn>,
    /// More flags evaluated for each visitor, each in its own OFREP
    /// request: a member's arm is then the variants served, joined by `+`
    /// in the order `flag`, `also_flags` (only the flags that served one),
    /// so one population can take part in several trials at once.
    pub also_flags: Vec<String>,
    /// Count a variant as an arm only when a running trial served it
    /// (OFREP metadata `trialArm`); the flag's own answer outside a trial
    /// is then no arm.
    pub trial_arms_only: bool,
    /// How simulated events are named on the platform (`None`: as the
    /// simulator names them).
    pub vocabulary: Option<VocabularyFn>,
    /// Evaluate each community's visitors one at a time in member order
    /// (communities concurrently), so that the order in which a stratum's
    /// members reach the server, and with it a blocked design's
    /// sequential assignment, is the same on every run; `false`: up to
    /// [`CONCURRENCY`] evaluations in flight in any order.
    pub ordered: bool,
}

/// How simulated time reaches the server.
pub enum ServerClock<'a> {
    /// The driver sets the server's clock (an in-process server).
    Settable(&'a (dyn Fn(DateTime<Utc>) + Sync)),
    /// The server keeps its own clock.
    Real,
}

/// What one simulated day sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayReport {
    pub day: u32,
    pub visitors: u64,
    /// Visitors per variant served.
    pub arms: BTreeMap<String, u64>,
    pub events_sent: u64,
    pub events_stored: u64,
    pub events_rejected: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("OFREP evaluation of '{flag}' answered {status}: {body}")]
    Ofrep {
        flag: String,
        status: u16,
        body: String,
    },
    #[error("OFREP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("sending events failed: {0}")]
    Events(#[from] ClientError),
}

/// A visitor's id and evaluation context.
type Visitor = (String, Map<String, Value>);

/// Most OFREP evaluations in flight at once.
const CONCURRENCY: usize = 32;

/// Runs `days` days of `sim` against `target`, day `d` starting at
/// `start + d days`; `on_day` hears about each day as it finishes.
pub async fn run(
    sim: &mut Simulation,
    target: &Target,
    start: DateTime<Utc>,
    days: u32,
    clock: ServerClock<'_>,
    mut on_day: impl FnMut(&DayReport, &Day),
) -> Result<Vec<DayReport>, DriveError> {
    let http = reqwest::Client::new();
    let mut events = EventClient::new(&target.base_url, &target.sdk_key, Options::default());
    let mut reports = Vec::with_capacity(days as usize);
    for _ in 0..days {
        let visits = sim.begin_day();
        let day_start = start + Duration::days(i64::from(visits.day()));
        if let ServerClock::Settable(set) = &clock {
            set(day_start);
        }
        let visitors: Vec<(String, Map<String, Value>)> = visits
            .visitors()
            .map(|(i, second)| {
                let m = &sim.members()[i];
                let community = &sim.params().communities[m.community].name;
                let at = day_start + Duration::seconds(i64::from(second));
                let mut context = match &target.context {
                    Some(extra) => extra(m, at),
                    None => Map::new(),
                };
                context.insert("targetingKey".into(), json!(m.id));
                context.insert(target.community_attribute.clone(), json!(community));
                (m.id.clone(), context)
            })
            .collect();
        let arms = evaluate_all(&http, target, visitors).await?;
        let mut report = DayReport {
            day: visits.day(),
            visitors: arms.len() as u64,
            ..DayReport::default()
        };
        for arm in arms.values().flatten() {
            *report.arms.entry(arm.clone()).or_default() += 1;
        }
        let day = sim.end_day(visits, &mut |m| arms.get(&m.id).cloned().flatten());
        if let ServerClock::Settable(set) = &clock {
            set(day_start + Duration::days(1));
        }
        for e in &day.events {
            let m = &sim.members()[e.member];
            let community = &sim.params().communities[m.community].name;
            let (name, properties) = match &target.vocabulary {
                Some(vocabulary) => match vocabulary(e.name) {
                    Some(named) => named,
                    None => continue,
                },
                None => (e.name.to_string(), Map::new()),
            };
            let mut event = Event::new(m.id.clone(), name)
                .community(community.clone())
                .at(day_start + Duration::seconds(i64::from(e.second)));
            for (k, v) in properties {
                event = event.property(k, v);
            }
            if let Some(sent) = events.track(event).await? {
                report.events_stored += sent.stored;
                report.events_rejected += sent.rejected.len() as u64;
            }
            report.events_sent += 1;
        }
        let sent = events.flush().await?;
        report.events_stored += sent.stored;
        report.events_rejected += sent.rejected.len() as u64;
        on_day(&report, &day);
        reports.push(report);
    }
    Ok(reports)
}

/// Evaluates the flags for every visitor, at most [`CONCURRENCY`]
/// evaluations at once; a visitor's arm is the variants served joined by
/// `+` ([`Target::also_flags`]).
async fn evaluate_all(
    http: &reqwest::Client,
    target: &Target,
    visitors: Vec<(String, Map<String, Value>)>,
) -> Result<BTreeMap<String, Option<String>>, DriveError> {
    // One queue per task: every visitor alone, or (ordered) each
    // community's visitors in member order.
    let mut queues: Vec<Vec<Visitor>> = Vec::new();
    if target.ordered {
        let mut by_community: BTreeMap<String, Vec<Visitor>> = BTreeMap::new();
        for (id, context) in visitors {
            let community = context
                .get(&target.community_attribute)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            by_community
                .entry(community)
                .or_default()
                .push((id, context));
        }
        queues.extend(by_community.into_values());
    } else {
        queues.extend(visitors.into_iter().map(|v| vec![v]));
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for queue in queues {
        let http = http.clone();
        let target = target.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let mut out = Vec::with_capacity(queue.len());
            for (id, context) in queue {
                out.push((id, arm_of(&http, &target, &context).await?));
            }
            Ok::<_, DriveError>(out)
        });
    }
    let mut arms = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let served = joined.expect("an evaluation task panicked")?;
        arms.extend(served);
    }
    Ok(arms)
}

/// A visitor's arm: the variants the flags served, joined by `+`.
async fn arm_of(
    http: &reqwest::Client,
    target: &Target,
    context: &Map<String, Value>,
) -> Result<Option<String>, DriveError> {
    let mut served: Vec<String> = Vec::new();
    for flag in std::iter::once(&target.flag).chain(&target.also_flags) {
        if let Some(v) = evaluate(http, target, flag, context).await? {
            served.push(v);
        }
    }
    Ok((!served.is_empty()).then(|| served.join("+")))
}

/// One single-flag OFREP evaluation (the kind that records a first
/// exposure); the variant served (with [`Target::trial_arms_only`], only
/// a trial's arm).
async fn evaluate(
    http: &reqwest::Client,
    target: &Target,
    flag: &str,
    context: &Map<String, Value>,
) -> Result<Option<String>, DriveError> {
    let url = format!(
        "{}/ofrep/v1/evaluate/flags/{}",
        target.base_url.trim_end_matches('/'),
        flag
    );
    let resp = http
        .post(url)
        .bearer_auth(&target.sdk_key)
        .json(&json!({ "context": context }))
        .send()
        .await?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(DriveError::Ofrep {
            flag: flag.to_string(),
            status,
            body,
        });
    }
    let body: Value = resp.json().await?;
    if target.trial_arms_only && body.pointer("/metadata/trialArm").is_none() {
        return Ok(None);
    }
    Ok(body
        .get("variant")
        .and_then(Value::as_str)
        .map(str::to_string))
}
