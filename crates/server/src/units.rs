//! Units (members) and their data: consent (`PUT/GET
//! /api/v1/units/{id}/consent`) and erasure (`DELETE
//! /api/v1/units/{id}?reason=`). `{id}` is the raw id the platform knows;
//! it is pseudonymised with the study key before it reaches the store, like
//! everywhere else, and the pseudonym is shown only to roles that may
//! export data (researcher and up): an `sdk` key, public in web clients,
//! must not map ids to the pseudonyms of exported data.

use crate::audit::ChangeMeta;
use crate::auth::{KeyCache, RequireResearcher, RequireSdk};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::Problem;
use crate::route::Route;
use crate::trials::exposure::ExposureSink;
use crate::trials::unit_cache::{forget_units, UnitCache};
use axum::extract::{FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_core::auth::Role;
use commonlab_core::privacy::{pseudonymise, StudyKey};
use commonlab_store::{ErasureOutcome, Store};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    UnitsContext: FromRef<S>,
    KeyCache: FromRef<S>,
{
    vec![
        Route::delete("/api/v1/units/{id}", erase),
        Route::put("/api/v1/units/{id}/consent", set_consent),
        Route::get("/api/v1/units/{id}/consent", consent_history),
    ]
}

/// What the unit handlers need: the store, the study key, the clock, and
/// the caches about units this replica forgets at once after a change.
#[derive(Clone)]
pub struct UnitsContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub units: UnitCache,
    pub exposures: ExposureSink,
}

impl UnitsContext {
    fn unit(&self, raw_id: &str) -> commonlab_core::privacy::UnitHash {
        pseudonymise(&self.config.study_key, raw_id)
    }
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

#[utoipa::path(
    put,
    path = "/api/v1/units/{id}/consent",
    tag = "telemetry",
    operation_id = "setConsent",
    summary = "Record a consent decision of a unit",
    params(
        ("id" = String, Path, min_length = 1, description = "The raw unit id the platform knows (the OFREP `targetingKey`); pseudonymised before it reaches the store."),
    ),
    request_body = crate::openapi::shapes::ConsentRequest,
    responses(
        (status = 200, description = "The stored decision (without `unit` for keys below researcher).", body = crate::openapi::shapes::ConsentRecord),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn set_consent(
    RequireSdk(caller): RequireSdk,
    State(state): State<UnitsContext>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConsentBody>,
) -> Result<Response, Problem> {
    check_text("scope", &body.scope)?;
    check_text("text_version", &body.text_version)?;
    let unit = state.unit(&id);
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

#[utoipa::path(
    get,
    path = "/api/v1/units/{id}/consent",
    tag = "telemetry",
    operation_id = "consentHistory",
    summary = "A unit's consent history, all scopes, oldest first",
    params(
        ("id" = String, Path, min_length = 1, description = "The raw unit id the platform knows (the OFREP `targetingKey`); pseudonymised before it reaches the store."),
    ),
    responses(
        (status = 200, description = "The history.", body = crate::openapi::shapes::ConsentHistory),
    ),
)]
async fn consent_history(
    _: RequireResearcher,
    State(state): State<UnitsContext>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let unit = state.unit(&id);
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
    key: &StudyKey,
    raw_id: &str,
    meta: &ChangeMeta<'_>,
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

#[utoipa::path(
    delete,
    path = "/api/v1/units/{id}",
    tag = "telemetry",
    operation_id = "eraseUnit",
    summary = "Erase everything stored about a unit",
    params(
        ("id" = String, Path, min_length = 1, description = "The raw unit id the platform knows (the OFREP `targetingKey`); pseudonymised before it reaches the store."),
        ("reason" = String, Query, min_length = 1, description = "Why the unit is erased (recorded in the erasure log); not empty."),
    ),
    responses(
        (status = 200, description = "What was erased.", body = crate::openapi::shapes::ErasureResponse),
        (status = 422, description = "No reason.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn erase(
    RequireResearcher(caller): RequireResearcher,
    State(state): State<UnitsContext>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = ChangeMeta::now(&actor, q.reason.as_deref().unwrap_or(""), &state.clock);
    let (unit, counts) = erase_unit(&state.store, &state.config.study_key, &id, &meta).await?;
    // This replica forgets at once; the others when they see the erasure
    // counter move.
    forget_units(&state.units, &state.exposures);
    Ok(Json(json!({ "unit": unit, "erased": counts })).into_response())
}
