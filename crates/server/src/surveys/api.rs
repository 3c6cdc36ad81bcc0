//! The survey management API under `/api/v1/surveys/` (researchers):
//! instruments (list, publish), campaigns (create, list, show), personal
//! links, results and exports, and a trial's response across its waves. Free-text answers are included in results
//! and exports only for admin keys (`docs/security.md`, "Surveys").

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_core::auth::Role;
use serde::Deserialize;
use serde_json::json;

use super::export::{export, Format};
use super::service::{self, CampaignRequest, UnitRef};
use crate::audit::ChangeMeta;
use crate::auth::{Caller, KeyCache, RequireResearcher};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::Problem;
use crate::route::Route;
use commonlab_store::Store;

/// What the survey management handlers need.
#[derive(Clone)]
pub struct SurveysContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    /// Told which units a links request invited.
    pub triggers: super::trigger::Triggers,
}

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    SurveysContext: FromRef<S>,
    KeyCache: FromRef<S>,
{
    vec![
        Route::get("/api/v1/surveys/instruments", list_instruments),
        Route::post("/api/v1/surveys/instruments", publish),
        Route::get("/api/v1/surveys/campaigns", list_campaigns),
        Route::post("/api/v1/surveys/campaigns", create_campaign),
        Route::get("/api/v1/surveys/campaigns/{key}", show_campaign),
        Route::post("/api/v1/surveys/campaigns/{key}/links", links),
        Route::get("/api/v1/surveys/campaigns/{key}/results", results),
        Route::get("/api/v1/surveys/campaigns/{key}/export", export_campaign),
        Route::get("/api/v1/surveys/trials/{key}/response", trial_response),
    ]
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/instruments",
    tag = "surveys",
    operation_id = "listSurveyInstruments",
    summary = "Published survey instrument versions",
    responses(
        (status = 200, description = "The versions.", body = crate::openapi::shapes::InstrumentList),
    ),
)]
async fn list_instruments(
    _: RequireResearcher,
    State(cx): State<SurveysContext>,
) -> Result<Response, Problem> {
    let list = cx.store.list_instruments().await.map_err(Error::from)?;
    let instruments: Vec<_> = list
        .into_iter()
        .map(|i| {
            json!({"key": i.key, "version": i.version, "hash": i.hash,
                   "published_at": i.published_at, "published_by": i.published_by, "reason": i.reason})
        })
        .collect();
    Ok(Json(json!({ "instruments": instruments })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    source: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/surveys/instruments",
    tag = "surveys",
    operation_id = "publishSurveyInstrument",
    summary = "Publish an instrument version",
    request_body = crate::openapi::shapes::PublishInstrument,
    responses(
        (status = 201, description = "Published.", body = crate::openapi::shapes::SurveyInstrument),
        (status = 200, description = "The same version was published already (idempotent).", body = crate::openapi::shapes::SurveyInstrument),
        (status = 409, description = "A different instrument was published under this key and version.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn publish(
    RequireResearcher(caller): RequireResearcher,
    State(cx): State<SurveysContext>,
    ApiJson(body): ApiJson<PublishBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = ChangeMeta::now(&actor, &body.reason, &cx.clock);
    let file = body.file.as_deref().unwrap_or("instrument.toml");
    let (record, new) = service::publish(&cx.store, &body.source, file, &meta).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(
            json!({"key": record.key, "version": record.version, "hash": record.hash,
                    "published_at": record.published_at, "published_by": record.published_by,
                    "reason": record.reason, "new": new}),
        ),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/campaigns",
    tag = "surveys",
    operation_id = "listSurveyCampaigns",
    summary = "Survey campaigns with their counts",
    responses(
        (status = 200, description = "The campaigns.", body = crate::openapi::shapes::CampaignList),
    ),
)]
async fn list_campaigns(
    _: RequireResearcher,
    State(cx): State<SurveysContext>,
) -> Result<Response, Problem> {
    let now = cx.clock.now();
    let mut out = Vec::new();
    for c in cx.store.list_campaigns().await.map_err(Error::from)? {
        out.push(service::summary(&cx.store, c, now).await?);
    }
    Ok(Json(json!({ "campaigns": out })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/surveys/campaigns",
    tag = "surveys",
    operation_id = "createSurveyCampaign",
    summary = "Create a campaign for a wave",
    request_body = crate::openapi::shapes::CreateCampaign,
    responses(
        (status = 201, description = "Created.", body = crate::openapi::shapes::SurveyCampaign),
        (status = 409, description = "A campaign with this key exists.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn create_campaign(
    RequireResearcher(caller): RequireResearcher,
    State(cx): State<SurveysContext>,
    ApiJson(body): ApiJson<CampaignRequest>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = ChangeMeta::now(&actor, &body.reason, &cx.clock);
    let summary = service::create_campaign(&cx.store, &body, &meta).await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/campaigns/{key}",
    tag = "surveys",
    operation_id = "showSurveyCampaign",
    summary = "One campaign with its counts",
    params(
        ("key" = String, Path, description = "The campaign's key."),
    ),
    responses(
        (status = 200, description = "The campaign.", body = crate::openapi::shapes::SurveyCampaign),
        (status = 404, description = "No such campaign.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn show_campaign(
    _: RequireResearcher,
    State(cx): State<SurveysContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let c = service::campaign(&cx.store, &key).await?;
    Ok(Json(service::summary(&cx.store, c, cx.clock.now()).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinksBody {
    units: Vec<UnitRef>,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/surveys/campaigns/{key}/links",
    tag = "surveys",
    operation_id = "createSurveyLinks",
    summary = "Invite units and sign their personal links",
    params(
        ("key" = String, Path, description = "The campaign's key."),
    ),
    request_body = crate::openapi::shapes::LinksRequest,
    responses(
        (status = 200, description = "The links.", body = crate::openapi::shapes::SurveyLinks),
        (status = 404, description = "No such campaign.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The campaign is closed.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn links(
    RequireResearcher(caller): RequireResearcher,
    State(cx): State<SurveysContext>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<LinksBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = ChangeMeta::now(&actor, &body.reason, &cx.clock);
    let links = service::create_links(
        &cx.store,
        &cx.config.study_key,
        &cx.config.survey_keys,
        &key,
        &body.units,
        &meta,
    )
    .await?;
    for l in &links.links {
        cx.triggers.forget(&l.pseudonym);
    }
    // The links are credentials: no cache may keep them.
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(links),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    /// Include free-text answers (admin keys only).
    #[serde(default)]
    include_text: bool,
    /// Leave out the per-respondent list.
    #[serde(default)]
    respondents: Option<bool>,
    /// Export format.
    #[serde(default)]
    format: Option<String>,
}

/// Free text is for admin keys only.
fn text_allowed(caller: &Caller, wanted: bool) -> Result<bool, Problem> {
    if wanted && !caller.role.allows(Role::Admin) {
        return Err(Problem::forbidden(format!(
            "free-text answers may identify respondents and are shown only to admin keys; key '{}' has '{}'",
            caller.name, caller.role
        ))
        .with_field("/include_text", "needs the admin role"));
    }
    Ok(wanted)
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/campaigns/{key}/results",
    tag = "surveys",
    operation_id = "surveyResults",
    summary = "Results of a campaign",
    params(
        ("key" = String, Path, description = "The campaign's key."),
        ("include_text" = Option<bool>, Query, description = "Include free-text answers (text items, the \"other\" text of a multiple choice). Admin keys only: 403 for others (`errors` points at `/include_text`)."),
        ("respondents" = Option<bool>, Query, description = "`false` leaves out the per-respondent list."),
    ),
    responses(
        (status = 200, description = "The results.", body = crate::openapi::shapes::SurveyResults),
        (status = 404, description = "No such campaign.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn results(
    RequireResearcher(caller): RequireResearcher,
    State(cx): State<SurveysContext>,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> Result<Response, Problem> {
    if q.format.is_some() {
        return Err(Problem::validation("format is a parameter of /export")
            .with_field("/format", "not a parameter of results"));
    }
    let include_text = text_allowed(&caller, q.include_text)?;
    let (c, instrument, mut r) =
        service::results(&cx.store, &key, cx.config.survey_min_cell, include_text).await?;
    if q.respondents == Some(false) {
        r.respondents.clear();
    }
    let state = service::campaign_state(&c, cx.clock.now());
    Ok(Json(json!({
        "campaign": c,
        "state": state,
        "instrument": {"key": instrument.key, "version": instrument.version},
        "results": r,
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/campaigns/{key}/export",
    tag = "surveys",
    operation_id = "surveyExport",
    summary = "Export a campaign's answers or codebook",
    params(
        ("key" = String, Path, description = "The campaign's key."),
        ("include_text" = Option<bool>, Query, description = "Include free-text answers (text items, the \"other\" text of a multiple choice). Admin keys only: 403 for others (`errors` points at `/include_text`)."),
        ("format" = Option<String>, Query, description = "`wide` (default), `long`, `codebook-json` or `codebook-csv`."),
    ),
    responses(
        (status = 200, description = "The export.", content((String = "text/csv"), (crate::openapi::shapes::SurveyCodebook = "application/json"))),
        (status = 404, description = "No such campaign.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn export_campaign(
    RequireResearcher(caller): RequireResearcher,
    State(cx): State<SurveysContext>,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> Result<Response, Problem> {
    let name = q.format.as_deref().unwrap_or("wide");
    let Some(format) = Format::parse(name) else {
        return Err(Problem::validation(format!(
            "unknown export format {name:?}; expected one of: {}",
            Format::NAMES.join(", ")
        ))
        .with_field("/format", "unknown format"));
    };
    let include_text = text_allowed(&caller, q.include_text)?;
    let (c, instrument, r) =
        service::results(&cx.store, &key, cx.config.survey_min_cell, include_text).await?;
    let body = export(format, &c, &instrument, &r);
    let ext = if format == Format::CodebookJson {
        "json"
    } else {
        "csv"
    };
    let disposition = format!("attachment; filename=\"{}-{name}.{ext}\"", c.key);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/surveys/trials/{key}/response",
    tag = "surveys",
    operation_id = "surveyTrialResponse",
    summary = "A trial's survey response across its waves",
    params(
        ("key" = String, Path, description = "The trial's key."),
    ),
    responses(
        (status = 200, description = "Response rates per wave and arm, and the differential-response test.", body = crate::openapi::shapes::TrialSurveyResponse),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn trial_response(
    _: RequireResearcher,
    State(cx): State<SurveysContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let r = service::trial_response(&cx.store, &key, cx.config.survey_min_cell).await?;
    Ok(Json(json!({ "trial": key, "response": r })).into_response())
}
