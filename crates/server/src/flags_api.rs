//! Flag management API under `/api/v1/`: list, get, create, update, delete,
//! enable/disable, cohort overrides, history, import and export. Reads need
//! the `developer` role; state and cohort changes `developer`; definitions
//! (create, update, delete, import) `researcher`.

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::ApiJson;
use crate::extract::ApiQuery;
use crate::problem::Problem;
use crate::service::{self, ChangeMeta, Cohort, FlagChange};
use crate::state::{AppState, LoadedFlags};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commonlab_core::auth::Role;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/flags", get(list_flags).post(create_flag))
        .route(
            "/api/v1/flags/{key}",
            get(get_flag).put(update_flag).delete(delete_flag),
        )
        .route("/api/v1/flags/{key}/state", put(set_state))
        .route(
            "/api/v1/flags/{key}/cohorts/{name}",
            put(put_cohort).delete(delete_cohort),
        )
        .route("/api/v1/flags/{key}/history", get(flag_history))
        .route("/api/v1/history", get(set_history))
        .route("/api/v1/export", get(export))
        .route("/api/v1/import", post(import))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn meta<'a>(state: &AppState, actor: &'a str, reason: &'a str) -> ChangeMeta<'a> {
    ChangeMeta {
        actor,
        reason,
        at: state.clock.now(),
    }
}

/// After a write, serve it at once from this replica too.
async fn after_write(state: &AppState) {
    if let Err(e) = crate::sync::refresh_flags(state).await {
        tracing::warn!(error = %e, "could not refresh flags after a write");
    }
}

fn change_response(status: StatusCode, change: FlagChange) -> Response {
    let etag = change.etag.clone();
    let mut resp = (status, Json(change)).into_response();
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FlagSummary {
    key: String,
    state: &'static str,
    #[serde(rename = "type")]
    value_type: &'static str,
    variants: Vec<String>,
    default_variant: Option<String>,
    etag: String,
}

fn summaries(loaded: &LoadedFlags) -> Vec<FlagSummary> {
    loaded
        .set
        .keys()
        .filter_map(|k| loaded.set.get(k))
        .map(|f| FlagSummary {
            key: f.key().to_string(),
            state: match f.state() {
                commonlab_core::flags::FlagState::Enabled => "ENABLED",
                commonlab_core::flags::FlagState::Disabled => "DISABLED",
            },
            value_type: match f.value_type() {
                commonlab_core::flags::ValueType::Bool => "boolean",
                commonlab_core::flags::ValueType::String => "string",
                commonlab_core::flags::ValueType::Number => "number",
                commonlab_core::flags::ValueType::Object => "object",
            },
            variants: f.variants().map(|(n, _)| n.to_string()).collect(),
            default_variant: f.default_variant().map(str::to_string),
            etag: service::flag_etag(&f.to_json()),
        })
        .collect()
}

/// Reads go to the database, not the cache: a client that just wrote through
/// another replica sees its write.
async fn fresh(state: &AppState) -> Result<(i64, Value), Problem> {
    Ok(service::head(&state.store, &state.config.flag_set).await?)
}

async fn list_flags(State(state): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    crate::sync::refresh_flags(&state)
        .await
        .map_err(Error::from)?;
    let loaded = state.flags.current();
    Ok(Json(json!({
        "revision": loaded.revision,
        "flags": summaries(&loaded),
    }))
    .into_response())
}

async fn get_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let (revision, doc) = fresh(&state).await?;
    let flag = doc
        .get("flags")
        .and_then(|f| f.get(&key))
        .cloned()
        .ok_or_else(|| Error::FlagNotFound(key.clone()))?;
    let etag = service::flag_etag(&flag);
    let mut resp = Json(json!({
        "key": key,
        "revision": revision,
        "etag": etag,
        "flag": flag,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    key: String,
    flag: Value,
    reason: String,
}

async fn create_flag(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let change = service::create_flag(
        &state.store,
        &state.config.flag_set,
        &body.key,
        body.flag,
        &meta(&state, &actor, &body.reason),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::CREATED, change))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    flag: Value,
    reason: String,
}

async fn update_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let change = service::update_flag(
        &state.store,
        &state.config.flag_set,
        &key,
        body.flag,
        &meta(&state, &actor, &body.reason),
        if_match(&headers).as_deref(),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
}

async fn delete_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    let actor = caller.actor();
    let reason = q.reason.unwrap_or_default();
    let change = service::delete_flag(
        &state.store,
        &state.config.flag_set,
        &key,
        &meta(&state, &actor, &reason),
        if_match(&headers).as_deref(),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
    reason: String,
}

async fn set_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StateBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let enabled = match body.state.to_ascii_uppercase().as_str() {
        "ENABLED" => true,
        "DISABLED" => false,
        other => {
            return Err(Problem::validation(format!(
                "state must be ENABLED or DISABLED, not '{other}'"
            ))
            .with_field("/state", "expected ENABLED or DISABLED"))
        }
    };
    let actor = caller.actor();
    let change = service::set_state(
        &state.store,
        &state.config.flag_set,
        &key,
        enabled,
        &meta(&state, &actor, &body.reason),
        if_match(&headers).as_deref(),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CohortBody {
    attribute: String,
    values: Vec<Value>,
    variant: String,
    reason: String,
}

async fn put_cohort(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CohortBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let actor = caller.actor();
    let cohort = Cohort {
        attribute: body.attribute,
        values: body.values,
        variant: body.variant,
    };
    let change = service::set_cohort(
        &state.store,
        &state.config.flag_set,
        &key,
        &name,
        Some(cohort),
        &meta(&state, &actor, &body.reason),
        if_match(&headers).as_deref(),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::OK, change))
}

async fn delete_cohort(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let actor = caller.actor();
    let reason = q.reason.unwrap_or_default();
    let change = service::set_cohort(
        &state.store,
        &state.config.flag_set,
        &key,
        &name,
        None,
        &meta(&state, &actor, &reason),
        if_match(&headers).as_deref(),
    )
    .await?;
    after_write(&state).await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn history(
    state: &AppState,
    flag: Option<&str>,
    q: HistoryQuery,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = state
        .store
        .flag_set_history(&state.config.flag_set, flag, q.before, limit)
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "history": items })).into_response())
}

async fn flag_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    history(&state, Some(&key), q).await
}

async fn set_history(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    history(&state, None, q).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Developer)?;
    let (revision, doc) = fresh(&state).await?;
    let body = match q.format.as_deref() {
        None | Some("commonlab") => doc,
        Some("flagd") => {
            let (set, _) = commonlab_core::flags::FlagSet::from_value(
                &doc,
                commonlab_core::flags::LoadMode::Lenient,
            )
            .map_err(|e| Error::invalid(e.pointer.clone(), e.to_string()))?;
            set.to_flagd_document()
        }
        Some(other) => {
            return Err(Problem::validation(format!(
                "unknown export format '{other}': use 'flagd' or 'commonlab'"
            ))
            .with_field("/format", "expected flagd or commonlab"))
        }
    };
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&service::set_etag(revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    reason: Option<String>,
    strict: Option<bool>,
    /// Take the file's cohort overrides only, dropping the stored ones.
    replace_overrides: Option<bool>,
}

async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Researcher)?;
    if !crate::extract::is_json(&headers) {
        return Err(crate::extract::BodyError::UnsupportedMediaType.into());
    }
    let body = body.map_err(crate::extract::BodyError::from_bytes_rejection)?;
    let source = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("the document is not valid UTF-8"))?;
    let expected = match if_match(&headers) {
        None => None,
        Some(tag) if tag == "*" => None,
        Some(tag) => Some(service::parse_set_etag(&tag).ok_or_else(|| {
            Problem::bad_request(format!(
                "If-Match must be a flag-set ETag like \"rev-3\" (from GET /api/v1/export), not {tag}"
            ))
        })?),
    };
    let actor = caller.actor();
    let reason = q.reason.unwrap_or_default();
    let outcome = service::import(
        &state.store,
        &state.config.flag_set,
        source,
        &meta(&state, &actor, &reason),
        expected,
        q.strict.unwrap_or(false),
        q.replace_overrides.unwrap_or(false),
    )
    .await?;
    after_write(&state).await;
    let mut resp = Json(&outcome).into_response();
    if let Ok(v) = HeaderValue::from_str(&service::set_etag(outcome.revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}
