//! A trial's lifecycle from the console, each change confirmed first:
//! `GET /console/trials/{key}/{action}` shows what the action does and asks
//! for the reason (and, to conclude, the decision record: the decision,
//! whether to conclude before the data are complete, and optionally the arm
//! to ship); `POST` to the same path does it, through the services the API
//! uses (`trials::service::{start, transition, conclude}`,
//! `trials::ship::conclude_and_ship`), with the same refusals. Both need a
//! researcher (the API's `POST /api/v1/trials/{key}/{action}` does); the
//! post carries the session's form token ([`super::ConsoleForm`]).
//! `GET /console/trials/{key}/report`: the report HTML of
//! `GET /api/v1/trials/{key}/report?format=html`, for the session.

use super::layout::{self, Nav, Template};
use super::session::{ConsoleResearcher, Session};
use super::trials::{failed, not_found, time};
use super::{ConsoleContext, ConsoleForm};
use crate::audit::ChangeMeta;
use crate::error::Error;
use crate::route::Route;
use crate::trials::overview::schedule_view;
use crate::trials::service::{self, Move};
use crate::trials::ship;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use commonlab_core::experiments::parse_trial;
use commonlab_store::{TrialRecord, TrialStatus};
use serde::{Deserialize, Serialize};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/trials/{key}/report", report),
        // `{action}` is one of [`ACTIONS`].
        Route::get("/console/trials/{key}/{action}", confirm),
        Route::post("/console/trials/{key}/{action}", act),
    ]
}

/// The lifecycle actions: the API's.
pub const ACTIONS: [&str; 5] = service::ACTIONS;

static CONFIRM: Template = Template::new(
    "console/trials_confirm.html",
    include_str!("../../templates/console/trials_confirm.html"),
);

/// A button of the trial page.
#[derive(Debug, Serialize)]
pub struct ActionLink {
    pub action: &'static str,
    pub label: &'static str,
    pub href: String,
}

fn label(action: &str) -> &'static str {
    match action {
        "start" => "Start",
        "stop" => "Pause (stop)",
        "resume" => "Resume",
        "conclude" => "Conclude",
        _ => "Archive",
    }
}

/// What `action` does, in a sentence.
fn explain(action: &str) -> &'static str {
    match action {
        "start" => "Starting locks the design and analysis plan, draws the randomisation seed and starts assigning units (from the schedule's start). It is refused if the trial would overlap a running one.",
        "stop" => "Pausing stops assigning and exposing units: evaluations get the flag's own value until the trial is resumed. Units keep their arms.",
        "resume" => "Resuming assigns units again (checked against the running trials, as at the start).",
        "conclude" => "Concluding ends the trial for good and stores its metrics as of now with the decision. Before the data are complete it is refused unless you conclude anyway, which is recorded as a deviation.",
        _ => "Archiving hides the trial from the working lists; its record, log and snapshot are kept.",
    }
}

/// The statuses `action` applies to (as the services check them).
fn applies(action: &str, status: TrialStatus) -> bool {
    use TrialStatus::*;
    match action {
        "start" => status == Draft,
        "stop" => status == Running,
        "resume" => status == Stopped,
        "conclude" => matches!(status, Running | Stopped),
        "archive" => matches!(status, Draft | Stopped | Concluded),
        _ => false,
    }
}

/// The buttons for `t` as it stands.
pub fn actions_for(t: &TrialRecord) -> Vec<ActionLink> {
    ACTIONS
        .iter()
        .filter(|a| applies(a, t.status))
        .map(|a| ActionLink {
            action: a,
            label: label(a),
            href: format!("/console/trials/{}/{a}", t.key),
        })
        .collect()
}

/// The decisions a conclusion records (the report's outcomes).
const DECISIONS: [(&str, &str); 4] = [
    ("ship", "Ship"),
    ("iterate", "Iterate"),
    ("roll_back", "Roll back"),
    ("inconclusive", "Inconclusive"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    decision: String,
    /// An arm to serve to everyone once concluded (empty: none).
    #[serde(default)]
    ship: String,
    /// Present (any value) to conclude before the data are complete.
    force: Option<String>,
}

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Serialize)]
struct ErrorLink {
    anchor: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ConfirmView {
    key: String,
    action: &'static str,
    label: &'static str,
    explain: &'static str,
    status: String,
    conclude: bool,
    reason: String,
    decisions: Vec<Choice>,
    arms: Vec<Choice>,
    force: bool,
    completion: Option<String>,
    complete_at: Option<String>,
    errors: Vec<ErrorLink>,
}

fn action_of(action: &str) -> Option<&'static str> {
    ACTIONS.iter().copied().find(|a| *a == action)
}

fn confirm_page(
    s: &Session,
    ctx: &ConsoleContext,
    t: &TrialRecord,
    action: &'static str,
    typed: &ActionForm,
    errors: Vec<ErrorLink>,
    status: StatusCode,
) -> Response {
    let spec = match parse_trial(&t.spec_source, &format!("trial {}", t.key)) {
        Ok(spec) => spec,
        Err(e) => return failed(s, e.into()),
    };
    let schedule = match schedule_view(t, ctx.clock.now()) {
        Ok(v) => v,
        Err(e) => return failed(s, e),
    };
    let plan = &spec.analysis.decision;
    let plan_text = |d: &str| match d {
        "ship" => format!("Ship: {}", plan.ship),
        "iterate" => format!("Iterate: {}", plan.iterate),
        "roll_back" => format!("Roll back: {}", plan.roll_back),
        _ => "Inconclusive: no decision the plan names".to_string(),
    };
    let view = ConfirmView {
        key: t.key.clone(),
        action,
        label: label(action),
        explain: explain(action),
        status: t.status.to_string(),
        conclude: action == "conclude",
        reason: typed.reason.clone(),
        decisions: DECISIONS
            .iter()
            .map(|(v, _)| Choice {
                value: v.to_string(),
                label: plan_text(v),
                selected: typed.decision == *v,
            })
            .collect(),
        arms: spec
            .arms
            .iter()
            .map(|a| Choice {
                value: a.variant.clone(),
                label: if a.control {
                    format!("{} (control: a roll-back)", a.variant)
                } else {
                    format!("{} (a roll-out)", a.variant)
                },
                selected: typed.ship == a.variant,
            })
            .collect(),
        force: typed.force.is_some(),
        completion: schedule.completion.clone(),
        complete_at: schedule.complete_at.map(time),
        errors,
    };
    s.page_status(
        &CONFIRM,
        Nav::Trials,
        &format!("{} trial {}", label(action), t.key),
        &view,
        status,
    )
}

/// The action and the trial a confirmation or a post is for (404 pages
/// for an unknown one).
async fn target(
    s: &Session,
    ctx: &ConsoleContext,
    key: &str,
    action: &str,
) -> Result<(&'static str, TrialRecord), Response> {
    let Some(action) = action_of(action) else {
        return Err(layout::error_page(
            Some(s),
            StatusCode::NOT_FOUND,
            "No such action",
            &format!(
                "'{action}' is not a trial action: use start, stop, resume, conclude or archive."
            ),
        ));
    };
    match ctx.store.get_trial(key).await {
        Ok(Some(t)) => Ok((action, t)),
        Ok(None) => Err(not_found(s, key)),
        Err(e) => Err(layout::store_failed(s, e)),
    }
}

async fn confirm(
    ConsoleResearcher(s): ConsoleResearcher,
    State(ctx): State<ConsoleContext>,
    Path((key, action)): Path<(String, String)>,
) -> Response {
    let (action, t) = match target(&s, &ctx, &key, &action).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    confirm_page(
        &s,
        &ctx,
        &t,
        action,
        &ActionForm::default(),
        Vec::new(),
        StatusCode::OK,
    )
}

async fn act(
    ConsoleResearcher(s): ConsoleResearcher,
    State(ctx): State<ConsoleContext>,
    Path((key, action)): Path<(String, String)>,
    ConsoleForm(form): ConsoleForm<ActionForm>,
) -> Response {
    let (action, t) = match target(&s, &ctx, &key, &action).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let again = |errors: Vec<ErrorLink>, status: StatusCode| {
        confirm_page(&s, &ctx, &t, action, &form, errors, status)
    };
    let mut errors = Vec::new();
    if form.reason.trim().is_empty() {
        errors.push(ErrorLink {
            anchor: "reason",
            message: "Enter the reason for this change (it is kept in the trial's log)".into(),
        });
    }
    let conclude = action == "conclude";
    if conclude && !DECISIONS.iter().any(|(v, _)| *v == form.decision) {
        errors.push(ErrorLink {
            anchor: "decision",
            message: "Choose the decision this conclusion records".into(),
        });
    }
    if !conclude && (form.force.is_some() || !form.ship.is_empty()) {
        errors.push(ErrorLink {
            anchor: "reason",
            message: format!("Only a conclusion can be forced or ship an arm, not '{action}'"),
        });
    }
    if !errors.is_empty() {
        return again(errors, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let reason = if conclude {
        let name = DECISIONS
            .iter()
            .find(|(v, _)| *v == form.decision)
            .map_or("", |(_, n)| n);
        let ship = if form.ship.is_empty() {
            String::new()
        } else {
            format!(" (ship arm {})", form.ship)
        };
        format!("Decision: {name}{ship}. {}", form.reason.trim())
    } else {
        form.reason.trim().to_string()
    };
    let actor = s.caller.actor();
    let meta = ChangeMeta::now(&actor, &reason, &ctx.clock);
    let set = &ctx.config.flag_set;
    let force = form.force.is_some();
    let done: Result<(), Error> = match action {
        "start" => service::start(&ctx.store, set, &key, &meta).await.map(drop),
        "conclude" if !form.ship.is_empty() => {
            ship::conclude_and_ship(&ctx.store, set, &key, &form.ship, &meta, force)
                .await
                .map(drop)
        }
        "conclude" => service::conclude(&ctx.store, &key, &meta, force)
            .await
            .map(drop),
        other => {
            let mv = Move::parse(other).expect("one of ACTIONS");
            service::transition(&ctx.store, &key, mv, &meta)
                .await
                .map(drop)
        }
    };
    match done {
        Ok(()) => {
            ctx.digests.forget(&key);
            if let Err(e) = ctx.trials.refresh(&ctx.store).await {
                tracing::warn!(error = %e, "could not refresh trials after a console change");
            }
            layout::see_other(&format!("/console/trials/{key}?done={action}"))
        }
        Err(Error::Store(e @ commonlab_store::StoreError::Unavailable(_))) => {
            layout::store_failed(&s, e)
        }
        Err(e) => {
            let anchor = match &e {
                Error::DataIncomplete(_) => "force",
                Error::Invalid { .. } if !form.ship.is_empty() => "ship",
                _ => "reason",
            };
            let p = crate::problem::Problem::from(e);
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            again(
                vec![ErrorLink {
                    anchor,
                    message: p.detail,
                }],
                status,
            )
        }
    }
}

/// The report's own style is inline: this page's policy allows it, and
/// nothing else (no script, no other origin).
const REPORT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

async fn report(
    ConsoleResearcher(s): ConsoleResearcher,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
) -> Response {
    match crate::trials::report::render_report(
        &ctx.store,
        &key,
        "html",
        None,
        false,
        ctx.clock.now(),
        ctx.config.survey_min_cell,
    )
    .await
    {
        Ok(body) => {
            let mut r = layout::html(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(REPORT_CSP),
            );
            r
        }
        Err(Error::Store(commonlab_store::StoreError::NotFound(_))) => not_found(&s, &key),
        Err(e) => failed(&s, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_compile() {
        CONFIRM.check().unwrap();
        super::super::trials::check_templates().unwrap();
        super::super::surveys::check_templates().unwrap();
    }

    #[test]
    fn the_buttons_are_the_moves_the_services_allow() {
        use TrialStatus::*;
        let shown = |s: TrialStatus| -> Vec<&str> {
            ACTIONS.iter().copied().filter(|a| applies(a, s)).collect()
        };
        assert_eq!(shown(Draft), ["start", "archive"]);
        assert_eq!(shown(Running), ["stop", "conclude"]);
        assert_eq!(shown(Stopped), ["resume", "conclude", "archive"]);
        assert_eq!(shown(Concluded), ["archive"]);
        assert!(shown(Archived).is_empty());
    }
}
