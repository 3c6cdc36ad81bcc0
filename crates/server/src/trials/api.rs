//! Trial API under `/api/v1/trials` (reads: `developer`; changes:
//! `researcher`) and explicit exposures (`POST /api/v1/exposures`, `sdk`).

use super::cache::TrialCache;
use super::decision::Decider;
use super::service::{self, Move};
use crate::audit::ChangeMeta;
use crate::auth::{KeyCache, RequireDeveloper, RequireResearcher, RequireSdk};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::flag_set::FlagCache;
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

impl SourceBody {
    fn file(&self) -> &str {
        self.file.as_deref().unwrap_or("request")
    }
}

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

async fn show(
    _: RequireDeveloper,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let shown = super::overview::overview(&trials.store, &key, trials.clock.now()).await?;
    let hash = shown.trial.spec_hash.clone();
    Ok(with_etag(Json(shown).into_response(), &hash))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
    /// `conclude` only: conclude before the data are complete, recorded as
    /// a deviation with the reason.
    #[serde(default)]
    force: bool,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExposureBody {
    flag: String,
    context: Value,
}

/// A client that prefetched flags reports that a member could now see the
/// feature. Answers which trial and arm the unit is in (or none).
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
