//! Trial API under `/api/v1/trials` (reads: `developer`; changes:
//! `researcher`) and explicit exposures (`POST /api/v1/exposures`, `sdk`).

use super::cache::TrialCache;
use super::decision::Decider;
use super::overview::TrialOverview;
use super::service::{self, Move};
use crate::audit::ChangeMeta;
use crate::auth::{KeyCache, RequireDeveloper, RequireResearcher, RequireSdk};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::flag_set::FlagCache;
use crate::openapi::shapes;
use crate::problem::Problem;
use crate::route::Route;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_core::flags::EvalContext;
use commonlab_store::{ExposureSource, Store, TrialStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    TrialsContext: FromRef<S>,
    FlagCache: FromRef<S>,
    Decider: FromRef<S>,
    KeyCache: FromRef<S>,
{
    vec![
        Route::get("/api/v1/trials", list),
        Route::post("/api/v1/trials", create),
        Route::post("/api/v1/trials/validate", validate),
        Route::get("/api/v1/trials/{key}", show),
        Route::put("/api/v1/trials/{key}", update_draft),
        Route::post("/api/v1/trials/{key}/amend", amend),
        Route::get("/api/v1/trials/{key}/assignments", assignments),
        Route::get("/api/v1/trials/{key}/analysis", analysis),
        Route::get("/api/v1/trials/{key}/report", super::report::report),
        // `{action}` is one of [`service::ACTIONS`].
        Route::post("/api/v1/trials/{key}/{action}", lifecycle),
        Route::post("/api/v1/exposures", exposure),
    ]
}

/// What the trial handlers need: the store, which flag set trials are
/// checked against, the clock, and the running-trials cache (refreshed
/// after a change).
#[derive(Clone)]
pub struct TrialsContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub trials: TrialCache,
}

impl TrialsContext {
    fn set(&self) -> &str {
        &self.config.flag_set
    }

    fn meta<'a>(&self, actor: &'a str, reason: &'a str) -> ChangeMeta<'a> {
        ChangeMeta::now(actor, reason, &self.clock)
    }

    async fn after_write(&self) {
        if let Err(e) = self.trials.refresh(&self.store).await {
            tracing::warn!(error = %e, "could not refresh trials after a write");
        }
    }
}

fn with_etag(mut resp: Response, hash: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/trials",
    tag = "trials",
    operation_id = "listTrials",
    summary = "Trials, optionally of one status",
    params(
        ("status" = Option<String>, Query, description = "draft, running, stopped, concluded or archived."),
    ),
    responses(
        (status = 200, description = "`trials`: key, flag, status, version, specHash, startedAt, updatedAt.", body = shapes::TrialList),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn list(
    _: RequireDeveloper,
    State(trials): State<TrialsContext>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<TrialStatus>().map_err(|e| {
            Problem::validation(e.to_string()).with_field("/query/status", e.to_string())
        })?),
    };
    let found = trials
        .store
        .list_trials(status)
        .await
        .map_err(Error::from)?;
    let items: Vec<Value> = found
        .iter()
        .map(|t| {
            json!({
                "key": t.key, "flag": t.flag_key, "status": t.status, "version": t.version,
                "specHash": t.spec_hash, "startedAt": t.started_at, "updatedAt": t.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({ "trials": items })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TrialSourceBody)]
#[serde(deny_unknown_fields)]
struct SourceBody {
    /// The trial file (TOML).
    source: String,
    /// Name used in error messages (defaults to `request`).
    file: Option<String>,
    #[serde(default)]
    reason: String,
}

impl SourceBody {
    fn file(&self) -> &str {
        self.file.as_deref().unwrap_or("request")
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/trials/validate",
    tag = "trials",
    operation_id = "validateTrial",
    summary = "Check a trial file without storing it",
    request_body = SourceBody,
    responses(
        (status = 200, description = "`valid`, the trial's `key` and `specHash`.", body = shapes::TrialValidation),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn validate(
    _: RequireDeveloper,
    State(flags): State<FlagCache>,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    let flags = flags.snapshot();
    match service::check(&body.source, body.file(), &flags.set) {
        Ok(spec) => Ok(Json(json!({
            "valid": true, "key": spec.key, "specHash": spec.canonical_hash(),
        }))
        .into_response()),
        Err(errors) => Err(Error::from(errors).into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/trials",
    tag = "trials",
    operation_id = "createTrial",
    summary = "Create a draft trial from its file",
    request_body = SourceBody,
    responses(
        (status = 201, description = "The stored trial.", body = shapes::TrialRecord, headers(("ETag" = String, description = "The trial file's hash."))),
        (status = 409, description = "A trial with this key exists, or its flag is taken.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn create(
    RequireResearcher(caller): RequireResearcher,
    State(trials): State<TrialsContext>,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = trials.meta(&actor, &body.reason);
    let t = service::create(
        &trials.store,
        trials.set(),
        &body.source,
        body.file(),
        &meta,
    )
    .await?;
    let hash = t.spec_hash.clone();
    Ok(with_etag(
        (StatusCode::CREATED, Json(t)).into_response(),
        &hash,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/trials/{key}",
    tag = "trials",
    operation_id = "showTrial",
    summary = "A trial with its overview (exposures per arm, alerts)",
    params(
        ("key" = String, Path, description = "The trial's key."),
    ),
    responses(
        (status = 200, description = "The trial and its overview.", body = TrialOverview, headers(("ETag" = String, description = "The trial file's hash."))),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn show(
    _: RequireDeveloper,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let shown = super::overview::overview(&trials.store, &key, trials.clock.now()).await?;
    let hash = shown.trial.spec_hash.clone();
    Ok(with_etag(Json(shown).into_response(), &hash))
}

#[utoipa::path(
    put,
    path = "/api/v1/trials/{key}",
    tag = "trials",
    operation_id = "updateDraftTrial",
    summary = "Replace a draft trial's file",
    params(
        ("key" = String, Path, description = "The trial's key."),
        ("If-Match" = String, Header, description = "The ETag of GET /api/v1/trials/{key}: the change is refused (412) if the trial changed since, and without it (428)."),
    ),
    request_body = SourceBody,
    responses(
        (status = 200, description = "The stored trial.", body = shapes::TrialRecord, headers(("ETag" = String, description = "The trial file's hash."))),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The trial is not a draft.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        (status = 428, description = "No `If-Match`.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn update_draft(
    RequireResearcher(caller): RequireResearcher,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(Error::PreconditionRequired("GET the trial first; its ETag header").into());
    };
    let expected = tag.trim().trim_matches('"').to_string();
    let actor = caller.actor();
    let t = service::update_draft(
        &trials.store,
        trials.set(),
        &key,
        &body.source,
        body.file(),
        &expected,
        &trials.meta(&actor, &body.reason),
    )
    .await?;
    let hash = t.spec_hash.clone();
    Ok(with_etag(Json(t).into_response(), &hash))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = TrialMoveBody)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
    /// `conclude` only: conclude before the data are complete, recorded as
    /// a deviation with the reason.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/trials/{key}/{action}",
    tag = "trials",
    operation_id = "moveTrial",
    summary = "Start, stop, resume, conclude or archive a trial",
    params(
        ("key" = String, Path, description = "The trial's key."),
        ("action" = String, Path, description = "start, stop, resume, conclude or archive."),
    ),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The trial after the move.", body = shapes::TrialRecord),
        (status = 404, description = "No such trial or action.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The move is not allowed from the trial's status.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn lifecycle(
    RequireResearcher(caller): RequireResearcher,
    State(trials): State<TrialsContext>,
    Path((key, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let m = trials.meta(&actor, &body.reason);
    let mv = match action.as_str() {
        "start" => None,
        other => Some(Move::parse(other).ok_or_else(|| {
            Problem::not_found(format!(
                "unknown trial action '{action}': use start, stop, resume, conclude or archive"
            ))
        })?),
    };
    if body.force && mv != Some(Move::Conclude) {
        let detail = format!("only a conclusion can be forced, not '{action}'");
        return Err(Problem::validation(detail.clone()).with_field("/force", detail));
    }
    let t = match mv {
        None => service::start(&trials.store, trials.set(), &key, &m).await?,
        Some(Move::Conclude) => service::conclude(&trials.store, &key, &m, body.force).await?,
        Some(mv) => service::transition(&trials.store, &key, mv, &m).await?,
    };
    trials.after_write().await;
    Ok(Json(t).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/trials/{key}/amend",
    tag = "trials",
    operation_id = "amendTrial",
    summary = "Amend a running trial (recorded as a deviation when locked fields change)",
    params(
        ("key" = String, Path, description = "The trial's key."),
    ),
    request_body = SourceBody,
    responses(
        (status = 200, description = "`trial` and `lockedFieldsChanged`.", body = shapes::TrialAmendment),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The trial cannot be amended in its status.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn amend(
    RequireResearcher(caller): RequireResearcher,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let (t, changed) = service::amend(
        &trials.store,
        trials.set(),
        &key,
        &body.source,
        body.file(),
        &trials.meta(&actor, &body.reason),
    )
    .await?;
    trials.after_write().await;
    Ok(Json(json!({ "trial": t, "lockedFieldsChanged": changed })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/trials/{key}/assignments",
    tag = "trials",
    operation_id = "trialAssignments",
    summary = "A trial's assignments as CSV",
    params(
        ("key" = String, Path, description = "The trial's key."),
    ),
    responses(
        (status = 200, description = "One row per assigned unit (pseudonyms).", body = String, content_type = "text/csv"),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn assignments(
    _: RequireResearcher,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let mut buf = Vec::new();
    service::export_csv(&trials.store, &key, &mut buf).await?;
    let mut resp = (StatusCode::OK, buf).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalysisQuery {
    /// RFC 3339; default now. Units whose metric window ends later are
    /// left out of that metric.
    as_of: Option<String>,
}

/// Every metric of the trial's locked plan computed in the database, and
/// the statistics engine's results (`docs/metrics.md`, `docs/analyze.md`).
#[utoipa::path(
    get,
    path = "/api/v1/trials/{key}/analysis",
    tag = "trials",
    operation_id = "trialAnalysis",
    summary = "A stored trial analysed as its design requires",
    params(
        ("key" = String, Path, description = "The trial's key.", min_length = 1),
        ("as_of" = Option<String>, Query, format = DateTime, description = "The RFC 3339 time to analyse at (default now); windows that close later are left out."),
    ),
    responses(
        (status = 200, description = "The analysis.", body = crate::openapi::shapes::TrialAnalysis),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn analysis(
    _: RequireResearcher,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<AnalysisQuery>,
) -> Result<Response, Problem> {
    let as_of = match q.as_of.as_deref() {
        None => trials.clock.now(),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                let detail = format!("{s:?} is not an RFC 3339 date-time: {e}");
                Problem::validation(detail.clone()).with_field("/query/as_of", detail)
            })?
            .with_timezone(&chrono::Utc),
    };
    let result =
        super::analysis::analyse(&trials.store, &key, as_of, trials.config.survey_min_cell).await?;
    Ok(Json(result).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ExposureBody {
    flag: String,
    context: Value,
}

/// A client that prefetched flags reports that a member could now see the
/// feature. Answers which trial and arm the unit is in (or none).
#[utoipa::path(
    post,
    path = "/api/v1/exposures",
    tag = "trials",
    operation_id = "logExposure",
    summary = "Log an exposure explicitly (for SDKs that evaluate locally)",
    request_body = ExposureBody,
    responses(
        (status = 200, description = "`trial` (null when no running trial takes the context), `arm`, `excluded`.", body = shapes::ExposureOutcome),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn exposure(
    _: RequireSdk,
    State(flags): State<FlagCache>,
    State(decider): State<Decider>,
    ApiJson(body): ApiJson<ExposureBody>,
) -> Result<Response, Problem> {
    if !body.context.is_object() {
        return Err(Problem::validation("context must be a JSON object")
            .with_field("/context", "expected an object"));
    }
    if let Err(e) = crate::context::validate(&body.context) {
        return Err(Problem::validation(e.message()).with_field(e.pointer, e.reason));
    }
    let now = decider.clock.now();
    let flags = flags.snapshot();
    let ctx = EvalContext::new(&body.context, now.timestamp());
    let r = flags.set.evaluate(&body.flag, &ctx);
    if let Some(e) = &r.error {
        return Err(
            Problem::validation(format!("flag '{}': {}", body.flag, e.detail))
                .with_field("/flag", e.code.as_str()),
        );
    }
    let cohort = r.cohort.zip(r.variant);
    let decision = decider
        .decide(&body.flag, &ctx, cohort)
        .await
        .map_err(Error::from)?;
    match decision {
        Some(d) => {
            decider
                .exposures
                .record(&d, ExposureSource::Explicit, now)
                .await;
            Ok(Json(json!({
                "trial": d.trial.key, "arm": d.arm, "excluded": d.excluded_reason.is_some(),
            }))
            .into_response())
        }
        None => Ok(Json(json!({ "trial": null })).into_response()),
    }
}
