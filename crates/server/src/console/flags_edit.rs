//! The flag page's forms (developers and up, as the flag API's state and
//! cohort changes), each through [`crate::flags::service`] with the
//! flag's ETag read with the page (a concurrent change refuses the form):
//!
//! - `POST /console/flags/{key}/state`: enable or disable, reason required.
//! - `POST /console/flags/{key}/cohorts`: add or replace a cohort override
//!   (`action=preview` shows what the rule would match and saves nothing).
//! - `POST /console/flags/{key}/cohorts/remove`: remove the override
//!   `name`, reason required.
//!
//! A form with mistakes comes back (422) with what was typed and each
//! error beside its field; nothing is written.
//!
//! The preview counts, among the units with any event in the last
//! [`PREVIEW_DAYS`] days, those with an event in one of the cohort's
//! communities ([`commonlab_store::Store::community_unit_share`]): only a
//! rule on the `community` attribute can be previewed, since the events
//! record no other attribute of a unit.

use super::csrf::ConsoleForm;
use super::flags::{flag_page, flag_path, CohortDraft, FieldError, Forms, Preview};
use super::layout;
use super::session::{ConsoleDeveloper, Session};
use super::ConsoleContext;
use crate::error::Error;
use crate::flags::service::{self, ChangeMeta, Cohort};
use crate::route::Route;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::post("/console/flags/{key}/state", set_state),
        Route::post("/console/flags/{key}/cohorts", put_cohort),
        Route::post("/console/flags/{key}/cohorts/remove", remove_cohort),
    ]
}

/// Days of events the preview reads.
pub const PREVIEW_DAYS: i64 = 7;
/// Longest reason accepted (as the flag service's).
pub const MAX_REASON: usize = 2_000;
/// Most values of one cohort typed in the form.
pub const MAX_VALUES: usize = 100;
/// Longest name, attribute or value.
pub const MAX_TEXT: usize = 200;

fn err(anchor: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        anchor,
        message: message.into(),
    }
}

fn reason_error(reason: &str, anchor: &'static str) -> Option<FieldError> {
    let r = reason.trim();
    (r.is_empty() || r.len() > MAX_REASON).then(|| {
        err(
            anchor,
            format!("Say why (a reason of 1 to {MAX_REASON} characters is required)."),
        )
    })
}

/// After a change: serve it from this replica at once, and show the page.
async fn changed(ctx: &ConsoleContext, key: &str) -> Response {
    if let Err(e) = ctx.flags.refresh(&ctx.store, &ctx.config.flag_set).await {
        tracing::warn!(error = %e, "could not refresh flags after a console change");
    }
    layout::see_other(&flag_path(key))
}

/// A refusal of the flag service, as form errors (or a page).
fn service_refusal(s: &Session, e: Error) -> Result<Vec<FieldError>, Box<Response>> {
    match e {
        Error::ReasonRequired => Ok(vec![err("reason", "A reason is required.")]),
        Error::Stale { .. } => Ok(vec![err(
            "etag",
            "The flag was changed by someone else since this page was shown: check it again below and resubmit.",
        )]),
        Error::Invalid { message, .. } => Ok(vec![err("cohort-name", message)]),
        Error::FlagNotFound(k) => Err(Box::new(layout::error_page(
            Some(s),
            StatusCode::NOT_FOUND,
            "No such flag",
            &format!("There is no flag '{k}' in the flag set."),
        ))),
        Error::Store(e) => Err(Box::new(layout::store_failed(s, e))),
        other => Ok(vec![err("cohort-name", other.to_string())]),
    }
}

#[derive(Deserialize)]
struct StateForm {
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    etag: String,
}

async fn set_state(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
    ConsoleForm(form): ConsoleForm<StateForm>,
) -> Response {
    let mut errors = Vec::new();
    let enabled = match form.state.as_str() {
        "ENABLED" => Some(true),
        "DISABLED" => Some(false),
        _ => {
            errors.push(err("state", "Choose to enable or disable the flag."));
            None
        }
    };
    errors.extend(reason_error(&form.reason, "reason"));
    if let (Some(enabled), true) = (enabled, errors.is_empty()) {
        let actor = s.caller.actor();
        let meta = ChangeMeta::now(&actor, &form.reason, &ctx.clock);
        let tag = Some(form.etag.as_str()).filter(|t| !t.is_empty());
        match service::set_state(&ctx.store, &ctx.config.flag_set, &key, enabled, &meta, tag).await
        {
            Ok(_) => return changed(&ctx, &key).await,
            Err(e) => match service_refusal(&s, e) {
                Ok(e) => errors = e,
                Err(page) => return *page,
            },
        }
    }
    let forms = Forms {
        errors,
        state_reason: form.reason,
        ..Forms::default()
    };
    flag_page(&s, &ctx, &key, forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

#[derive(Deserialize)]
struct CohortForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    attribute: String,
    #[serde(default)]
    values: String,
    #[serde(default)]
    variant: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    etag: String,
    #[serde(default)]
    action: String,
}

/// The values typed, comma-separated, trimmed, empty ones dropped.
pub fn parse_values(typed: &str) -> Vec<String> {
    typed
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

/// The form's mistakes (the variant checked against the stored flag's).
fn check_cohort(form: &CohortForm, variants: &[String], preview: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !printable(form.name.trim()) {
        errors.push(err(
            "cohort-name",
            format!("Name the cohort (1 to {MAX_TEXT} printable characters)."),
        ));
    }
    if !printable(form.attribute.trim()) {
        errors.push(err(
            "cohort-attribute",
            "Name the context attribute the cohort matches (e.g. community).",
        ));
    }
    let values = parse_values(&form.values);
    if values.is_empty() || values.len() > MAX_VALUES || values.iter().any(|v| !printable(v)) {
        errors.push(err(
            "cohort-values",
            format!("Give 1 to {MAX_VALUES} values, separated by commas."),
        ));
    }
    if !variants.iter().any(|v| v == form.variant.trim()) {
        errors.push(err(
            "cohort-variant",
            format!("Choose a variant of the flag: {}.", variants.join(", ")),
        ));
    }
    if !preview {
        errors.extend(reason_error(&form.reason, "cohort-reason"));
    }
    errors
}

async fn variants_of(ctx: &ConsoleContext, key: &str) -> Result<Option<Vec<String>>, Error> {
    let (_, doc) = service::head(&ctx.store, &ctx.config.flag_set).await?;
    Ok(doc.get("flags").and_then(|f| f.get(key)).map(|f| {
        f.get("variants")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }))
}

async fn preview(
    ctx: &ConsoleContext,
    form: &CohortForm,
) -> Result<Preview, commonlab_store::StoreError> {
    if form.attribute.trim() != "community" {
        return Ok(Preview {
            text: format!(
                "No preview: the stored events record each unit's community only, not '{}'.",
                form.attribute.trim()
            ),
        });
    }
    let to = ctx.clock.now();
    let from = to - chrono::Duration::days(PREVIEW_DAYS);
    let share = ctx
        .store
        .community_unit_share(&parse_values(&form.values), from, to)
        .await?;
    let text = if share.total == 0 {
        format!("No unit sent an event in the last {PREVIEW_DAYS} days: nothing to preview.")
    } else {
        let pct = 100.0 * share.matching as f64 / share.total as f64;
        format!(
            "This rule matches {pct:.0}% of the last {PREVIEW_DAYS} days' units ({} of {}{} units with an event, by the community of their events).",
            share.matching,
            share.total,
            if share.capped { " or more" } else { "" }
        )
    };
    Ok(Preview { text })
}

async fn put_cohort(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
    ConsoleForm(form): ConsoleForm<CohortForm>,
) -> Response {
    let variants = match variants_of(&ctx, &key).await {
        Ok(Some(v)) => v,
        Ok(None) => return *service_refusal(&s, Error::FlagNotFound(key)).unwrap_err(),
        Err(e) => {
            return service_refusal(&s, e)
                .err()
                .map_or_else(layout::unavailable, |page| *page)
        }
    };
    let is_preview = form.action == "preview";
    let mut errors = check_cohort(&form, &variants, is_preview);
    let mut shown = None;
    if errors.is_empty() && is_preview {
        match preview(&ctx, &form).await {
            Ok(p) => shown = Some(p),
            Err(e) => return layout::store_failed(&s, e),
        }
    } else if errors.is_empty() {
        let actor = s.caller.actor();
        let meta = ChangeMeta::now(&actor, &form.reason, &ctx.clock);
        let cohort = Cohort {
            attribute: form.attribute.trim().to_string(),
            values: parse_values(&form.values)
                .into_iter()
                .map(Value::String)
                .collect(),
            variant: form.variant.trim().to_string(),
        };
        let tag = Some(form.etag.as_str()).filter(|t| !t.is_empty());
        match service::set_cohort(
            &ctx.store,
            &ctx.config.flag_set,
            &key,
            form.name.trim(),
            Some(cohort),
            &meta,
            tag,
        )
        .await
        {
            Ok(_) => return changed(&ctx, &key).await,
            Err(e) => match service_refusal(&s, e) {
                Ok(e) => errors = e,
                Err(page) => return *page,
            },
        }
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let forms = Forms {
        errors,
        cohort: CohortDraft {
            name: form.name,
            attribute: form.attribute,
            values: form.values,
            variant: form.variant,
            reason: form.reason,
        },
        preview: shown,
        ..Forms::default()
    };
    flag_page(&s, &ctx, &key, forms, status).await
}

#[derive(Deserialize)]
struct RemoveForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    etag: String,
}

async fn remove_cohort(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
    ConsoleForm(form): ConsoleForm<RemoveForm>,
) -> Response {
    let mut errors: Vec<FieldError> = reason_error(&form.reason, "remove-reason")
        .into_iter()
        .collect();
    if errors.is_empty() {
        let actor = s.caller.actor();
        let meta = ChangeMeta::now(&actor, &form.reason, &ctx.clock);
        let tag = Some(form.etag.as_str()).filter(|t| !t.is_empty());
        match service::set_cohort(
            &ctx.store,
            &ctx.config.flag_set,
            &key,
            form.name.trim(),
            None,
            &meta,
            tag,
        )
        .await
        {
            Ok(_) => return changed(&ctx, &key).await,
            Err(Error::Store(commonlab_store::StoreError::NotFound(what))) => {
                return layout::error_page(
                    Some(&s),
                    StatusCode::NOT_FOUND,
                    "No such cohort override",
                    &format!("There is no {what}."),
                )
            }
            Err(e) => match service_refusal(&s, e) {
                Ok(e) => errors = e,
                Err(page) => return *page,
            },
        }
    }
    let forms = Forms {
        errors,
        ..Forms::default()
    };
    flag_page(&s, &ctx, &key, forms, StatusCode::UNPROCESSABLE_ENTITY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_mistakes() {
        assert_eq!(parse_values(" a, b ,,c "), ["a", "b", "c"]);
        let form = CohortForm {
            name: "coop".into(),
            attribute: "community".into(),
            values: "coop-b".into(),
            variant: "warm".into(),
            reason: String::new(),
            etag: String::new(),
            action: String::new(),
        };
        let variants = vec!["plain".to_string(), "warm".to_string()];
        assert!(check_cohort(&form, &variants, true).is_empty());
        let e = check_cohort(&form, &variants, false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].anchor, "cohort-reason");
        let e = check_cohort(&form, &["x".to_string()], true);
        assert_eq!(e[0].anchor, "cohort-variant");
    }
}
