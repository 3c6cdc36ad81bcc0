//! Trial API under `/api/v1/trials` (reads: `developer`; changes:
//! `researcher`) and explicit exposures (`POST /api/v1/exposures`, `sdk`).

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::ApiJson;
use crate::problem::Problem;
use crate::service::ChangeMeta;
use crate::state::AppState;
use crate::trial_service::{self, Move};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use commonlab_core::auth::Role;
use commonlab_core::flags::EvalContext;
use commonlab_store::{ExposureSource, TrialStatus};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/trials", get(list).post(create))
        .route("/api/v1/trials/validate", post(validate))
        .route("/api/v1/trials/{key}", get(show).put(update_draft))
        .route("/api/v1/trials/{key}/amend", post(amend))
        .route("/api/v1/trials/{key}/assignments", get(assignments))
        .route("/api/v1/trials/{key}/analysis", get(analysis))
        .route("/api/v1/trials/{key}/{action}", post(lifecycle))
        .route("/api/v1/exposures", post(exposure))
}

fn meta<'a>(state: &AppState, actor: &'a str, reason: &'a str) -> ChangeMeta<'a> {
    ChangeMeta {
        actor,
        reason,
        at: state.clock.now(),
    }
}

async fn after_write(state: &AppState) {
    if let Err(e) = crate::trials::refresh(state).await {
        tracing::warn!(error = %e, "could not refresh trials after a write");
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

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<TrialStatus>().map_err(|e| {
            Problem::validation(e.to_string()).with_field("/query/status", e.to_string())
        })?),
    };
    let trials = state.store.list_trials(status).await.map_err(Error::from)?;
    let items: Vec<Value> = trials
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceBody {
    /// The trial file (TOML).
    source: String,
    /// Name used in error messages (defaults to `request`).
    file: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let file = body.file.as_deref().unwrap_or("request");
    let flags = state.flags.snapshot();
    match trial_service::check(&body.source, file, &flags.set) {
        Ok(spec) => Ok(Json(json!({
            "valid": true, "key": spec.key, "specHash": spec.canonical_hash(),
        }))
        .into_response()),
        Err(errors) => Err(trial_service::spec_errors(errors).into()),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let file = body.file.as_deref().unwrap_or("request");
    let t = trial_service::create(
        &state.store,
        &state.config.flag_set,
        &body.source,
        file,
        &meta(&state, &actor, &body.reason),
    )
    .await?;
    let hash = t.spec_hash.clone();
    Ok(with_etag(
        (StatusCode::CREATED, Json(t)).into_response(),
        &hash,
    ))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let t = state
        .store
        .get_trial(&key)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Problem::not_found(format!("trial '{key}' not found")))?;
    let events = state.store.trial_events(&key).await.map_err(Error::from)?;
    let counts = state.store.arm_counts(t.id).await.map_err(Error::from)?;
    let arms: Vec<Value> = counts
        .into_iter()
        .map(|(arm, assigned, exposed)| json!({"arm": arm, "assigned": assigned, "exposed": exposed}))
        .collect();
    let hash = t.spec_hash.clone();
    Ok(with_etag(
        Json(json!({ "trial": t, "events": events, "arms": arms })).into_response(),
        &hash,
    ))
}

async fn update_draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Err(Error::PreconditionRequired("GET the trial first; its ETag header").into());
    };
    let expected = tag.trim().trim_matches('"').to_string();
    let actor = caller.actor();
    let file = body.file.as_deref().unwrap_or("request");
    let t = trial_service::update_draft(
        &state.store,
        &state.config.flag_set,
        &key,
        &body.source,
        file,
        &expected,
        &meta(&state, &actor, &body.reason),
    )
    .await?;
    let hash = t.spec_hash.clone();
    Ok(with_etag(Json(t).into_response(), &hash))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

async fn lifecycle(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let m = meta(&state, &actor, &body.reason);
    let t = if action == "start" {
        trial_service::start(&state.store, &state.config.flag_set, &key, &m).await?
    } else {
        let mv = Move::parse(&action).ok_or_else(|| {
            Problem::not_found(format!(
                "unknown trial action '{action}': use start, stop, resume, conclude or archive"
            ))
        })?;
        trial_service::transition(&state.store, &key, mv, &m).await?
    };
    after_write(&state).await;
    Ok(Json(t).into_response())
}

async fn amend(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<SourceBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let file = body.file.as_deref().unwrap_or("request");
    let (t, changed) = trial_service::amend(
        &state.store,
        &state.config.flag_set,
        &key,
        &body.source,
        file,
        &meta(&state, &actor, &body.reason),
    )
    .await?;
    after_write(&state).await;
    Ok(Json(json!({ "trial": t, "lockedFieldsChanged": changed })).into_response())
}

async fn assignments(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let mut buf = Vec::new();
    trial_service::export_csv(&state.store, &key, &mut buf).await?;
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
async fn analysis(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<AnalysisQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let as_of = match q.as_of.as_deref() {
        None => state.clock.now(),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| {
                let detail = format!("{s:?} is not an RFC 3339 date-time: {e}");
                Problem::validation(detail.clone()).with_field("/query/as_of", detail)
            })?
            .with_timezone(&chrono::Utc),
    };
    let result = crate::analysis::analyse(&state.store, &key, as_of).await?;
    Ok(Json(result).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExposureBody {
    flag: String,
    context: Value,
}

/// A client that prefetched flags reports that a member could now see the
/// feature. Answers which trial and arm the unit is in (or none).
async fn exposure(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ExposureBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Sdk)?;
    if !body.context.is_object() {
        return Err(Problem::validation("context must be a JSON object")
            .with_field("/context", "expected an object"));
    }
    if let Err(e) = crate::context::validate(&body.context) {
        return Err(Problem::validation(e.message()).with_field(e.pointer, e.reason));
    }
    let now = state.clock.now();
    let flags = state.flags.snapshot();
    let ctx = EvalContext::new(&body.context, now.timestamp());
    let r = flags.set.evaluate(&body.flag, &ctx);
    if let Some(e) = &r.error {
        return Err(
            Problem::validation(format!("flag '{}': {}", body.flag, e.detail))
                .with_field("/flag", e.code.as_str()),
        );
    }
    let cohort = r.cohort.zip(r.variant);
    let decision = crate::trials::decide(&state, &body.flag, &ctx, cohort)
        .await
        .map_err(Error::from)?;
    match decision {
        Some(d) => {
            state
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
