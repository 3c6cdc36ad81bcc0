//! Units (members) and their data: consent (`PUT/GET
//! /api/v1/units/{id}/consent`) and erasure (`DELETE
//! /api/v1/units/{id}?reason=`). `{id}` is the raw id the platform knows;
//! it is pseudonymised with the study key before it reaches the store, like
//! everywhere else, and the pseudonym is shown only to roles that may
//! export data (researcher and up): an `sdk` key, public in web clients,
//! must not map ids to the pseudonyms of exported data.

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, put};
use axum::{Json, Router};
use commonlab_core::auth::Role;
use commonlab_core::privacy::pseudonymise;
use commonlab_store::{ErasureOutcome, Store};
use serde::Deserialize;
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/units/{id}", delete(erase))
        .route(
            "/api/v1/units/{id}/consent",
            put(set_consent).get(consent_history),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    scope: String,
    text_version: String,
    granted: bool,
}

fn check_text(field: &str, s: &str) -> Result<(), Problem> {
    if s.trim().is_empty() || s.len() > 200 || s.chars().any(char::is_control) {
        return Err(
            Problem::validation(format!("{field} must be 1 to 200 printable characters"))
                .with_field(format!("/{field}"), "1 to 200 printable characters"),
        );
    }
    Ok(())
}

async fn set_consent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConsentBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Sdk)?;
    check_text("scope", &body.scope)?;
    check_text("text_version", &body.text_version)?;
    let unit = pseudonymise(&state.config.study_key, &id);
    let record = state
        .store
        .set_consent(
            unit.as_str(),
            &body.scope,
            &body.text_version,
            body.granted,
            state.clock.now(),
        )
        .await
        .map_err(Error::from)?;
    // This replica decides with the new consent at once (the others when
    // they see the consent counter move).
    state.units.clear();
    let mut body = json!(record);
    if !caller.role.allows(Role::Researcher) {
        if let Some(fields) = body.as_object_mut() {
            fields.remove("unit");
        }
    }
    Ok(Json(body).into_response())
}

async fn consent_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let unit = pseudonymise(&state.config.study_key, &id);
    let history = state
        .store
        .consent_history(unit.as_str())
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "unit": unit, "consent": history })).into_response())
}

/// Erases everything stored about a unit and logs who did it and why
/// (shared with the CLI). The erasure counter it bumps makes every replica
/// forget what it cached about units.
pub async fn erase_unit(
    store: &Store,
    key: &commonlab_core::privacy::StudyKey,
    raw_id: &str,
    meta: &crate::service::ChangeMeta<'_>,
) -> Result<(String, ErasureOutcome), Error> {
    if meta.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    let unit = pseudonymise(key, raw_id).into_string();
    let counts = store
        .erase_unit(&unit, meta.actor, meta.reason, meta.at)
        .await?;
    Ok((unit, counts))
}

#[derive(Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
}

async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let meta = crate::service::ChangeMeta {
        actor: &actor,
        reason: q.reason.as_deref().unwrap_or(""),
        at: state.clock.now(),
    };
    let (unit, counts) = erase_unit(&state.store, &state.config.study_key, &id, &meta).await?;
    // This replica forgets at once; the others when they see the erasure
    // counter move.
    crate::unit_cache::forget_units(&state);
    Ok(Json(json!({ "unit": unit, "erased": counts })).into_response())
}
