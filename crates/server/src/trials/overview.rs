//! What `GET /api/v1/trials/{key}` and `commonlab experiments show` say
//! about a trial: its record, its log, its arms, and where it is in its
//! schedule (a running trial whose schedule begins later assigns nobody
//! until then; when its data are complete, so that it can be concluded
//! without a deviation).

use crate::error::Error;
use crate::openapi::shapes;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{
    format_duration, format_rfc3339, parse_trial, switchback_schedule, Completion, Design,
};
use commonlab_store::{Store, StoreError, TrialEvent, TrialRecord, TrialStatus};
use serde::Serialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A trial as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrialOverview {
    #[schema(value_type = shapes::TrialRecord)]
    pub trial: TrialRecord,
    /// The trial's log, oldest first.
    #[schema(value_type = Vec<shapes::TrialEvent>)]
    pub events: Vec<TrialEvent>,
    /// The arms that have units, in arm order.
    pub arms: Vec<ArmCount>,
    pub schedule: ScheduleView,
}

/// Units assigned to an arm, and exposed to it (not excluded).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TrialArmCount)]
pub struct ArmCount {
    pub arm: String,
    #[schema(minimum = 0)]
    pub assigned: i64,
    #[schema(minimum = 0)]
    pub exposed: i64,
}

/// Where a trial is in its schedule at a given time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TrialSchedule)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// The schedule's start and end (from the trial file).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Stepped wedges: the crossover times.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<DateTime<Utc>>,
    /// Switchbacks: the community × period grid (drawn at start; absent
    /// for a draft, whose grid is not drawn yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switchback: Option<SwitchbackView>,
    /// `draft`, `waiting` (running, before the schedule's start: nothing
    /// is assigned yet), `assigning`, `ended` (running, after the
    /// schedule's end: nothing new is assigned), or `not running`
    /// (stopped, concluded, archived).
    #[schema(schema_with = schedule_states)]
    pub state: &'static str,
    /// The state in a sentence.
    pub note: String,
    /// Running and stopped trials: when the data are complete (a
    /// conclusion before is refused unless forced, and recorded as a
    /// deviation); absent if they never will be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_at: Option<DateTime<Utc>>,
    /// Running and stopped trials: the completion rule in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
}

/// A switchback's grid as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TrialSwitchback)]
#[serde(rename_all = "camelCase")]
pub struct SwitchbackView {
    #[schema(schema_with = switchback_schemes)]
    pub scheme: &'static str,
    /// At the start of each period, e.g. `1d`; `0s` without one.
    pub washout: String,
    pub on_arm: String,
    pub off_arm: String,
    pub periods: Vec<PeriodView>,
    /// Per community (sorted), on in each period.
    pub grid: Vec<GridRow>,
    /// The period holding `now` (0-based), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_period: Option<usize>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TrialPeriod)]
pub struct PeriodView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TrialGridRow)]
pub struct GridRow {
    pub community: String,
    /// Per period.
    pub on: Vec<bool>,
}

/// The values of [`ScheduleView::state`], for the OpenAPI document.
const STATES: [&str; 5] = ["draft", "waiting", "assigning", "ended", "not running"];

fn schedule_states() -> Object {
    let about = "`draft`, `waiting` (running, before the schedule's start: nothing is \
                 assigned yet), `assigning`, `ended` (running, after the schedule's end: \
                 nothing new is assigned), or `not running` (stopped, concluded, archived).";
    string_enum(&STATES, about)
}

fn switchback_schemes() -> Object {
    use commonlab_core::experiments::SwitchbackScheme;
    let schemes = [
        SwitchbackScheme::Independent { probability: 0.5 },
        SwitchbackScheme::Balanced,
        SwitchbackScheme::BlockedPairs,
    ];
    string_enum(
        &schemes.map(SwitchbackScheme::as_str),
        "The switchback's scheme.",
    )
}

/// A string schema of the `values`, described by `about` (`schema_with`
/// replaces the field's doc comment).
fn string_enum(values: &[&str], about: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(about))
        .build()
}

fn time(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

/// Where `t` is in its schedule at `now`.
pub fn schedule_view(t: &TrialRecord, now: DateTime<Utc>) -> Result<ScheduleView, Error> {
    let spec = parse_trial(&t.spec_source, &format!("trial {}", t.key))?;
    let s = &spec.schedule;
    let (start, end) = (format_rfc3339(s.start), format_rfc3339(s.end));
    let now_unix = now.timestamp();
    let (state, note) = match t.status {
        TrialStatus::Draft => (
            "draft",
            format!(
                "a draft: once started, units are assigned from {start} to {end}, and not before"
            ),
        ),
        TrialStatus::Running if now_unix < s.start => (
            "waiting",
            format!(
                "running, but its schedule starts at {start}: no unit is assigned or exposed \
                 before then (evaluations get the flag's own value)"
            ),
        ),
        TrialStatus::Running if now_unix >= s.end => (
            "ended",
            format!("running, but its schedule ended at {end}: no unit is assigned any more"),
        ),
        TrialStatus::Running => (
            "assigning",
            format!("assigning units from {start} until {end}"),
        ),
        other => ("not running", format!("{other}: no unit is assigned")),
    };
    let concludable = matches!(t.status, TrialStatus::Running | TrialStatus::Stopped);
    let completion: Option<Completion> = t.started_at.filter(|_| concludable).map(|started| {
        let stopped = (t.status == TrialStatus::Stopped)
            .then_some(t.stopped_at)
            .flatten()
            .map(|s| s.timestamp());
        spec.completion(started.timestamp(), stopped)
    });
    let steps = match &spec.design {
        Design::SteppedWedge { steps, .. } => steps.iter().map(|&x| time(x)).collect(),
        _ => Vec::new(),
    };
    let switchback = match (&spec.design, t.seed) {
        (
            Design::Switchback {
                scheme, washout, ..
            },
            Some(seed),
        ) => switchback_schedule(&spec, seed as u64).map(|g| SwitchbackView {
            scheme: scheme.as_str(),
            washout: format_duration(*washout),
            on_arm: spec.treatment().variant.clone(),
            off_arm: spec.control().variant.clone(),
            current_period: g.period_at(now_unix),
            periods: g
                .periods
                .iter()
                .map(|p| PeriodView {
                    start: time(p.start),
                    end: time(p.end),
                })
                .collect(),
            grid: g
                .communities
                .iter()
                .zip(&g.on)
                .map(|(c, on)| GridRow {
                    community: c.clone(),
                    on: on.clone(),
                })
                .collect(),
        }),
        _ => None,
    };
    Ok(ScheduleView {
        start: time(s.start),
        end: time(s.end),
        steps,
        switchback,
        state,
        note,
        complete_at: completion.as_ref().and_then(Completion::at).map(time),
        completion: completion.as_ref().map(Completion::describe),
    })
}

/// A trial with its log, arm counts and schedule at `now`.
pub async fn overview(
    store: &Store,
    key: &str,
    now: DateTime<Utc>,
) -> Result<TrialOverview, Error> {
    let trial = store
        .get_trial(key)
        .await?
        .ok_or_else(|| Error::Store(StoreError::NotFound(format!("trial '{key}'"))))?;
    let events = store.trial_events(key).await?;
    let arms = store
        .arm_counts(trial.id)
        .await?
        .into_iter()
        .map(|(arm, assigned, exposed)| ArmCount {
            arm,
            assigned,
            exposed,
        })
        .collect();
    let schedule = schedule_view(&trial, now)?;
    Ok(TrialOverview {
        trial,
        events,
        arms,
        schedule,
    })
}
