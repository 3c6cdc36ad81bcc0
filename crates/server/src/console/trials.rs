//! `GET /console/trials`: the trials by state. `GET /console/trials/{key}`:
//! one trial: its design, arms and plan, its schedule (stepped-wedge,
//! switchback or cluster allocation as an accessible table), the units
//! assigned and exposed per arm and, for researchers, per community, the
//! data-quality alerts (SRM, schedule adherence, overrides, survey
//! response) of the analysis, the survey response rates, the current
//! report (with what a fixed-horizon or sequential plan allows reading
//! into it) and the lifecycle buttons ([`super::trials_actions`]).
//!
//! What needs the exposures or the events comes from the replica's cached
//! digest ([`super::trials_cache`], its time on the page), never from raw
//! events per view. What a role sees follows the API: developers what
//! `GET /api/v1/trials/{key}` shows; researchers and admins also what the
//! analysis and the report show, and the buttons.

use super::layout::{self, Nav, Template};
use super::session::{ConsoleDeveloper, Session};
use super::trials_actions::{actions_for, ActionLink};
use super::ConsoleContext;
use crate::error::Error;
use crate::route::Route;
use crate::trials::cache::{Allocation, RunningTrial};
use crate::trials::overview::ScheduleView;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commonlab_core::auth::Role;
use commonlab_core::experiments::{Design, Horizon, TrialSpec};
use commonlab_store::{StoreError, TrialEvent, TrialRecord, TrialStatus};
use serde::{Deserialize, Serialize};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/trials", list),
        Route::get("/console/trials/{key}", show),
    ]
}

static LIST: Template = Template::new(
    "console/trials.html",
    include_str!("../../templates/console/trials.html"),
);
static TRIAL: Template = Template::new(
    "console/trials_show.html",
    include_str!("../../templates/console/trials_show.html"),
);

/// Most log entries the trial page shows (the newest).
pub const SHOWN_EVENTS: usize = 50;
/// Most (arm, community) exposure rows the trial page shows.
pub const SHOWN_EXPOSURE_ROWS: usize = 500;

pub(super) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn time_unix(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map(time).unwrap_or_default()
}

fn status_label(s: TrialStatus) -> &'static str {
    match s {
        TrialStatus::Draft => "Draft",
        TrialStatus::Running => "Running",
        TrialStatus::Stopped => "Stopped (paused)",
        TrialStatus::Concluded => "Concluded",
        TrialStatus::Archived => "Archived",
    }
}

#[derive(Serialize)]
struct Row {
    key: String,
    flag: String,
    version: i64,
    started: String,
    updated: String,
}

#[derive(Serialize)]
struct Group {
    status: &'static str,
    id: &'static str,
    trials: Vec<Row>,
}

async fn list(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
) -> Response {
    let trials = match ctx.store.list_trials(None).await {
        Ok(t) => t,
        Err(e) => return layout::store_failed(&s, e),
    };
    let groups: Vec<Group> = TrialStatus::ALL
        .iter()
        .map(|status| Group {
            status: status_label(*status),
            id: status.as_str(),
            trials: trials
                .iter()
                .filter(|t| t.status == *status)
                .map(|t| Row {
                    key: t.key.clone(),
                    flag: t.flag_key.clone(),
                    version: t.version,
                    started: t.started_at.map(time).unwrap_or_default(),
                    updated: time(t.updated_at),
                })
                .collect(),
        })
        .collect();
    s.page(&LIST, Nav::Trials, "Trials", &groups)
}

/// A schedule as a table: one row per community, one column per period,
/// each cell the arm in words (the text alternative is the table itself).
/// Built once per digest ([`super::trials_cache`]).
#[derive(Debug, Serialize, Default)]
pub struct Diagram {
    caption: String,
    columns: Vec<String>,
    rows: Vec<DiagramRow>,
    /// Why there is no table yet.
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct DiagramRow {
    label: String,
    cells: Vec<Cell>,
}

#[derive(Debug, Serialize)]
struct Cell {
    text: String,
    treated: bool,
}

pub(super) fn diagram(
    spec: &TrialSpec,
    record: &TrialRecord,
    schedule: &ScheduleView,
) -> Option<Diagram> {
    let control = &spec.control().variant;
    let treatment = &spec.treatment().variant;
    let allocation = record
        .seed
        .and_then(|_| RunningTrial::from_record(record).ok())
        .map(|t| t.allocation);
    let not_drawn = || {
        Some(Diagram {
            note: Some("Drawn when the trial starts (from its seed).".into()),
            ..Diagram::default()
        })
    };
    match &spec.design {
        Design::SteppedWedge { .. } => {
            let periods = spec.periods();
            let Some(Allocation::SteppedWedge(order)) = allocation else {
                return not_drawn();
            };
            Some(Diagram {
                caption: format!(
                    "Stepped wedge: the arm of each community in each period ({control} until its crossover, then {treatment})"
                ),
                columns: periods
                    .iter()
                    .map(|p| format!("Period {} from {}", p.index, time_unix(p.start)))
                    .collect(),
                rows: order
                    .iter()
                    .map(|(community, crossover)| DiagramRow {
                        label: format!("{community} (crosses over {})", time_unix(*crossover)),
                        cells: periods
                            .iter()
                            .map(|p| {
                                let on = *crossover <= p.start;
                                Cell {
                                    text: if on { treatment } else { control }.clone(),
                                    treated: on,
                                }
                            })
                            .collect(),
                    })
                    .collect(),
                note: None,
            })
        }
        Design::Switchback { .. } => {
            let Some(sb) = &schedule.switchback else {
                return not_drawn();
            };
            Some(Diagram {
                caption: format!(
                    "Switchback ({}, washout {}): the arm of each community in each period",
                    sb.scheme, sb.washout
                ),
                columns: sb
                    .periods
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let now = if sb.current_period == Some(i) {
                            " (now)"
                        } else {
                            ""
                        };
                        format!("Period {} from {}{now}", i + 1, time(p.start))
                    })
                    .collect(),
                rows: sb
                    .grid
                    .iter()
                    .map(|r| DiagramRow {
                        label: r.community.clone(),
                        cells: r
                            .on
                            .iter()
                            .map(|&on| Cell {
                                text: if on { &sb.on_arm } else { &sb.off_arm }.clone(),
                                treated: on,
                            })
                            .collect(),
                    })
                    .collect(),
                note: None,
            })
        }
        Design::Cluster { .. } => {
            let Some(Allocation::Cluster(map)) = allocation else {
                return not_drawn();
            };
            Some(Diagram {
                caption: "Cluster allocation: the arm of each community".into(),
                columns: vec!["Arm".into()],
                rows: map
                    .iter()
                    .map(|(community, arm)| DiagramRow {
                        label: community.clone(),
                        cells: vec![Cell {
                            text: arm.clone(),
                            treated: arm != control,
                        }],
                    })
                    .collect(),
                note: None,
            })
        }
        _ => None,
    }
}

/// What the plan lets one read into the current report.
pub(super) fn caveat(spec: &TrialSpec, complete_at: Option<&str>) -> String {
    let end = complete_at.map_or_else(
        || "the end of the trial".to_string(),
        |t| format!("the end of the trial (data complete {t})"),
    );
    match spec.analysis.horizon {
        Horizon::Fixed => format!(
            "Fixed-horizon plan: the p-values and confidence intervals hold only when read \
             once, at {end}. Before then the report is a look at interim data: stopping or \
             deciding because it looks significant inflates the false-positive rate. Decide by \
             the plan's rule at the end."
        ),
        Horizon::Sequential { looks } => format!(
            "Sequential plan with {looks} planned looks: decide only at a planned look, by the \
             always-valid confidence sequences in the report (per-member designs); the \
             fixed-horizon p-values beside them hold only at {end}."
        ),
    }
}

#[derive(Serialize)]
struct ArmView {
    arm: String,
    weight: u32,
    control: bool,
    assigned: i64,
    exposed: i64,
}

#[derive(Serialize)]
struct ExposureRow {
    community: String,
    arm: String,
    units: i64,
    excluded: bool,
    last: String,
}

#[derive(Serialize)]
struct EventView {
    at: String,
    kind: String,
    actor: String,
    reason: String,
}

#[derive(Serialize)]
struct Researcher {
    /// The analysis could not be computed: why.
    error: Option<String>,
    notice: Option<String>,
    design_analysis: String,
    alerts: Vec<String>,
    srm: Option<serde_json::Value>,
    /// The SRM test's p-value, to 4 significant digits.
    srm_p: Option<String>,
    exposures: Vec<ExposureRow>,
    exposure_rows_left_out: usize,
    survey_response: Option<serde_json::Value>,
    decision: Option<serde_json::Value>,
    caveat: String,
    report: String,
    actions: Vec<ActionLink>,
}

#[derive(Serialize)]
struct TrialView<'a> {
    key: String,
    title: String,
    hypothesis: String,
    owner: String,
    status: String,
    flag: String,
    design: &'static str,
    unit: String,
    plan: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, String)>,
    arms: Vec<ArmView>,
    /// Exposed units (not excluded), all arms.
    exposed: i64,
    schedule: &'a ScheduleView,
    complete_at: Option<String>,
    diagram: Option<&'a Diagram>,
    as_of: String,
    events: Vec<EventView>,
    done: Option<String>,
    researcher: Option<Researcher>,
}

#[derive(Deserialize)]
struct ShowQuery {
    /// After a change: which (for the notice).
    done: Option<String>,
}

/// The 404 page for an unknown trial.
pub(super) fn not_found(s: &Session, key: &str) -> Response {
    layout::error_page(
        Some(s),
        StatusCode::NOT_FOUND,
        "No such trial",
        &format!("There is no trial '{key}'."),
    )
}

/// The page for an error of a trial operation (its status and detail, as
/// the API's problem would have them).
pub(super) fn failed(s: &Session, e: Error) -> Response {
    match e {
        Error::Store(e @ StoreError::Unavailable(_)) => layout::store_failed(s, e),
        e => {
            let p = crate::problem::Problem::from(e);
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            layout::error_page(Some(s), status, p.title, &p.detail)
        }
    }
}

fn metric_names(spec: &TrialSpec) -> Vec<(&'static str, String)> {
    let names = |m: &[commonlab_core::experiments::Metric]| {
        m.iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        ("Primary", spec.metrics.primary.name.clone()),
        ("Secondary", names(&spec.metrics.secondary)),
        ("Guardrails", names(&spec.metrics.guardrails)),
    ]
}

fn plan(spec: &TrialSpec) -> Vec<(&'static str, String)> {
    let a = &spec.analysis;
    vec![
        ("Alpha", a.alpha.to_string()),
        ("Sides", a.sidedness.as_str().to_string()),
        (
            "Horizon",
            match a.horizon {
                Horizon::Fixed => "fixed".to_string(),
                Horizon::Sequential { looks } => format!("sequential ({looks} looks)"),
            },
        ),
        ("Correction", a.correction.as_str().to_string()),
        ("Power", a.power.to_string()),
        (
            "Minimum detectable effect",
            a.mde.map(|m| m.to_string()).unwrap_or_else(|| "—".into()),
        ),
        ("If it works", a.decision.ship.clone()),
        ("If unclear", a.decision.iterate.clone()),
        ("If it harms", a.decision.roll_back.clone()),
    ]
}

fn event_view(e: &TrialEvent) -> EventView {
    EventView {
        at: time(e.created_at),
        kind: e.action.clone(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
    }
}

async fn show(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let now = ctx.clock.now();
    let record = match ctx.store.get_trial(&key).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&s, &key),
        Err(e) => return layout::store_failed(&s, e),
    };
    let (events, digest) = match tokio::try_join!(
        async { ctx.store.trial_events(&key).await.map_err(Error::from) },
        ctx.digests.get(
            &ctx.store,
            &record,
            now,
            ctx.config.console_trial_cache,
            ctx.config.survey_min_cell,
        )
    ) {
        Ok(x) => x,
        Err(e) => return failed(&s, e),
    };
    let (spec, schedule) = (&digest.spec, &digest.schedule);
    let complete_at = schedule.complete_at.map(time);
    let arms: Vec<ArmView> = spec
        .arms
        .iter()
        .map(|a| {
            let (assigned, exposed) = digest
                .arms
                .iter()
                .find(|(arm, ..)| *arm == a.variant)
                .map_or((0, 0), |(_, n, e)| (*n, *e));
            ArmView {
                arm: a.variant.clone(),
                weight: a.weight,
                control: a.control,
                assigned,
                exposed,
            }
        })
        .collect();
    let researcher = s
        .caller
        .role
        .allows(Role::Researcher)
        .then(|| researcher_view(spec, &record, &digest.analysis, complete_at.as_deref()));
    let view = TrialView {
        key: record.key.clone(),
        title: spec.title.clone(),
        hypothesis: spec.hypothesis.clone(),
        owner: spec.owner.clone(),
        status: record.status.to_string(),
        flag: record.flag_key.clone(),
        design: spec.design.kind(),
        unit: match &spec.unit {
            commonlab_core::experiments::Unit::User => "user (targeting key)".into(),
            commonlab_core::experiments::Unit::Community { attribute } => {
                format!("community (attribute {attribute})")
            }
        },
        plan: plan(spec),
        metrics: metric_names(spec),
        exposed: arms.iter().map(|a| a.exposed).sum(),
        arms,
        diagram: digest.diagram.as_ref(),
        schedule,
        complete_at,
        as_of: digest.as_of.format("%H:%M:%S UTC").to_string(),
        events: events
            .iter()
            .rev()
            .take(SHOWN_EVENTS)
            .map(event_view)
            .collect(),
        done: q
            .done
            .filter(|d| super::trials_actions::ACTIONS.contains(&d.as_str())),
        researcher,
    };
    s.page(&TRIAL, Nav::Trials, &format!("Trial {key}"), &view)
}

fn researcher_view(
    spec: &TrialSpec,
    record: &TrialRecord,
    analysis: &Result<commonlab_report::analysis::TrialAnalysis, String>,
    complete_at: Option<&str>,
) -> Researcher {
    let caveat = caveat(spec, complete_at);
    let report = format!("/console/trials/{}/report", record.key);
    let actions = actions_for(record);
    let a = match analysis {
        Ok(a) => a,
        Err(e) => {
            return Researcher {
                error: Some(e.clone()),
                notice: None,
                design_analysis: String::new(),
                alerts: Vec::new(),
                srm: None,
                srm_p: None,
                exposures: Vec::new(),
                exposure_rows_left_out: 0,
                survey_response: None,
                decision: None,
                caveat,
                report,
                actions,
            }
        }
    };
    let q = &a.quality;
    let mut alerts = q.warnings.clone();
    if let Some(note) = &q.srm_note {
        alerts.push(note.clone());
    }
    let exposures: Vec<ExposureRow> = q
        .exposures
        .iter()
        .take(SHOWN_EXPOSURE_ROWS)
        .map(|e| ExposureRow {
            community: e.community.clone().unwrap_or_else(|| "—".into()),
            arm: e.arm.clone(),
            units: e.units,
            excluded: e.excluded,
            last: time(e.last),
        })
        .collect();
    Researcher {
        error: None,
        notice: a.notice.clone(),
        design_analysis: a.design_analysis.clone(),
        alerts,
        srm: q.srm.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        srm_p: q
            .srm
            .as_ref()
            .and_then(|s| s.p_value)
            .map(|p| format!("{p:.4}")),
        exposure_rows_left_out: q.exposures.len().saturating_sub(exposures.len()),
        exposures,
        survey_response: a.survey_response.clone(),
        decision: serde_json::to_value(&a.decision).ok(),
        caveat,
        report,
        actions,
    }
}

/// Whether this module's templates compile: for the tests.
#[cfg(test)]
pub(super) fn check_templates() -> Result<(), String> {
    LIST.check()?;
    TRIAL.check()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn the_trial_page_renders_every_section() {
        let researcher = json!({
            "error": null, "notice": "N", "design_analysis": "", "alerts": ["SRM!"],
            "srm": {"mismatch": true, "p_value": 0.0001, "error": null}, "srm_p": "0.0001",
            "exposures": [{"community": "c1", "arm": "a", "units": 3, "excluded": false, "last": "t"}],
            "exposure_rows_left_out": 0,
            "decision": {"outcome": "iterate", "arm": null},
            "caveat": "CAVEAT", "report": "/r",
            "actions": [{"action": "stop", "label": "Pause", "href": "/x"}],
        });
        let mut researcher = researcher;
        researcher["survey_response"] = json!({"min_cell": 5, "waves": [{"wave": "w", "campaign": "c", "arms": [
            {"arm": "a", "invited": 10, "completed": 4, "rate": 0.4, "suppressed": false},
            {"arm": "b", "invited": null, "completed": null, "rate": null, "suppressed": true}]}]});
        let mut page = json!({
            "key": "k", "title": "T", "hypothesis": "H", "owner": "o", "status": "running",
            "flag": "f", "design": "hash", "unit": "user", "plan": [["Alpha", "0.05"]],
            "metrics": [["Primary", "m"]], "exposed": 3,
            "arms": [{"arm": "a", "weight": 1, "control": true, "assigned": 3, "exposed": 3}],
            "schedule": {"start": "s", "end": "e", "state": "assigning", "note": "n", "completion": "c"},
            "complete_at": null,
            "diagram": {"caption": "D", "columns": ["P1"], "rows": [{"label": "c1", "cells": [{"text": "on", "treated": true}]}], "note": null},
            "as_of": "12:00:00 UTC", "events": [{"at": "t", "kind": "start", "actor": "a", "reason": "r"}],
            "done": "start",
        });
        page["researcher"] = researcher;
        let r = layout::render(
            &TRIAL,
            &layout::Frame::signed_out("t"),
            &page,
            StatusCode::OK,
        );
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        for shown in [
            "CAVEAT",
            "SRM!",
            "p = 0.0001",
            "40.0%",
            "withheld",
            "class=\"on\">on<",
        ] {
            assert!(body.contains(shown), "{shown}: {body}");
        }
    }
}
