//! Flag management API under `/api/v1/`: list, get, create, update, delete,
//! enable/disable, cohort overrides, history, import and export. Reads need
//! the `developer` role; state and cohort changes `developer`; definitions
//! (create, update, delete, import) `researcher`.

use super::service::{self, ChangeMeta, Cohort, FlagChange, ImportOutcome};
use crate::auth::{Caller, RequireDeveloper, RequireResearcher};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::flag_set::{FlagCache, LoadedFlags};
use crate::openapi::shapes;
use crate::problem::Problem;
use crate::route::Route;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    FlagsContext: FromRef<S>,
    crate::auth::KeyCache: FromRef<S>,
{
    vec![
        Route::get("/api/v1/flags", list_flags),
        Route::post("/api/v1/flags", create_flag),
        Route::get("/api/v1/flags/{key}", get_flag),
        Route::put("/api/v1/flags/{key}", update_flag),
        Route::delete("/api/v1/flags/{key}", delete_flag),
        Route::put("/api/v1/flags/{key}/state", set_state),
        Route::put("/api/v1/flags/{key}/cohorts/{name}", put_cohort),
        Route::delete("/api/v1/flags/{key}/cohorts/{name}", delete_cohort),
        Route::get("/api/v1/flags/{key}/history", flag_history),
        Route::get("/api/v1/history", set_history),
        Route::get("/api/v1/export", export),
        Route::post("/api/v1/import", import),
    ]
}

/// What the flag management handlers need: the store, the cache of the
/// served set (refreshed after a write), which set, and the clock.
#[derive(Clone)]
pub struct FlagsContext {
    pub store: Store,
    pub cache: FlagCache,
    pub config: Arc<Config>,
    pub clock: Clock,
}

impl FlagsContext {
    fn set(&self) -> &str {
        &self.config.flag_set
    }

    fn meta<'a>(&self, actor: &'a str, reason: &'a str) -> ChangeMeta<'a> {
        ChangeMeta::now(actor, reason, &self.clock)
    }

    /// After a write, serve it at once from this replica too.
    async fn after_write(&self) {
        if let Err(e) = self.cache.refresh(&self.store, self.set()).await {
            tracing::warn!(error = %e, "could not refresh flags after a write");
        }
    }

    /// Reads go to the database, not the cache: a client that just wrote
    /// through another replica sees its write.
    async fn fresh(&self) -> Result<(i64, Value), Problem> {
        Ok(service::head(&self.store, self.set()).await?)
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
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

#[utoipa::path(
    get,
    path = "/api/v1/flags",
    tag = "flags",
    operation_id = "listFlags",
    summary = "Every flag with its state, type and variants",
    responses(
        (status = 200, description = "The served revision and a summary of every flag.", body = shapes::FlagList),
    ),
)]
async fn list_flags(
    _: RequireDeveloper,
    State(flags): State<FlagsContext>,
) -> Result<Response, Problem> {
    flags
        .cache
        .refresh(&flags.store, flags.set())
        .await
        .map_err(Error::from)?;
    let loaded = flags.cache.current();
    Ok(Json(json!({
        "revision": loaded.revision,
        "flags": summaries(&loaded),
    }))
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/flags/{key}",
    tag = "flags",
    operation_id = "getFlag",
    summary = "One flag's definition",
    params(
        ("key" = String, Path, description = "The flag's key."),
    ),
    responses(
        (status = 200, description = "`key`, `revision`, `etag` and the `flag` definition (flagd's format with Commonlab's extensions).", body = shapes::StoredFlag, headers(("ETag" = String, description = "The flag's ETag (for `If-Match`)."))),
        (status = 404, description = "No such flag.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_flag(
    _: RequireDeveloper,
    State(flags): State<FlagsContext>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let (revision, doc) = flags.fresh().await?;
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

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FlagCreateBody)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    key: String,
    flag: Value,
    reason: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/flags",
    tag = "flags",
    operation_id = "createFlag",
    summary = "Create a flag",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The change: the new revision and the flag.", body = FlagChange, headers(("ETag" = String, description = "The flag's ETag."))),
        (status = 409, description = "A flag with this key exists.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn create_flag(
    RequireResearcher(caller): RequireResearcher,
    State(flags): State<FlagsContext>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = flags.meta(&actor, &body.reason);
    let change =
        service::create_flag(&flags.store, flags.set(), &body.key, body.flag, &meta).await?;
    flags.after_write().await;
    Ok(change_response(StatusCode::CREATED, change))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FlagUpdateBody)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    flag: Value,
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/flags/{key}",
    tag = "flags",
    operation_id = "updateFlag",
    summary = "Replace a flag's definition",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("If-Match" = Option<String>, Header, description = "The flag's ETag read earlier (or `*`); required (428 without it): the change is refused (412) if the flag changed since."),
    ),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The change: the new revision and the flag.", body = FlagChange),
        (status = 404, description = "No such flag (with `If-Match: *`; another ETag of a flag that does not exist is 412).", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        (status = 428, description = "No `If-Match`: GET the flag first and send its ETag.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn update_flag(
    RequireResearcher(caller): RequireResearcher,
    State(flags): State<FlagsContext>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = flags.meta(&actor, &body.reason);
    let tag = if_match(&headers);
    let change = service::update_flag(
        &flags.store,
        flags.set(),
        &key,
        body.flag,
        &meta,
        tag.as_deref(),
    )
    .await?;
    flags.after_write().await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
struct ReasonQuery {
    reason: Option<String>,
}

#[utoipa::path(
    delete,
    path = "/api/v1/flags/{key}",
    tag = "flags",
    operation_id = "deleteFlag",
    summary = "Delete a flag",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("If-Match" = Option<String>, Header, description = "The flag's ETag read earlier (or `*`): the change is refused (412) if the flag changed since."),
        ("reason" = Option<String>, Query, description = "Why (recorded in the audit log); required, not empty."),
    ),
    responses(
        (status = 200, description = "The change: the new revision and the flag.", body = FlagChange),
        (status = 404, description = "No such flag.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn delete_flag(
    RequireResearcher(caller): RequireResearcher,
    State(flags): State<FlagsContext>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let reason = q.reason.unwrap_or_default();
    let meta = flags.meta(&actor, &reason);
    let tag = if_match(&headers);
    let change =
        service::delete_flag(&flags.store, flags.set(), &key, &meta, tag.as_deref()).await?;
    flags.after_write().await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FlagStateBody)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/flags/{key}/state",
    tag = "flags",
    operation_id = "setFlagState",
    summary = "Enable or disable a flag",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("If-Match" = Option<String>, Header, description = "The flag's ETag read earlier (or `*`): the change is refused (412) if the flag changed since."),
    ),
    request_body = StateBody,
    responses(
        (status = 200, description = "The change: the new revision and the flag.", body = FlagChange),
        (status = 404, description = "No such flag.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn set_state(
    RequireDeveloper(caller): RequireDeveloper,
    State(flags): State<FlagsContext>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StateBody>,
) -> Result<Response, Problem> {
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
    let meta = flags.meta(&actor, &body.reason);
    let tag = if_match(&headers);
    let change = service::set_state(
        &flags.store,
        flags.set(),
        &key,
        enabled,
        &meta,
        tag.as_deref(),
    )
    .await?;
    flags.after_write().await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FlagCohortBody)]
#[serde(deny_unknown_fields)]
struct CohortBody {
    attribute: String,
    values: Vec<Value>,
    variant: String,
    reason: String,
}

#[utoipa::path(
    put,
    path = "/api/v1/flags/{key}/cohorts/{name}",
    tag = "flags",
    operation_id = "putFlagCohort",
    summary = "Set a per-cohort override",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("name" = String, Path, description = "The cohort's name."),
        ("If-Match" = Option<String>, Header, description = "The flag's ETag read earlier (or `*`): the change is refused (412) if the flag changed since."),
    ),
    request_body = CohortBody,
    responses(
        (status = 200, description = "The change: the new revision and the flag.", body = FlagChange),
        (status = 404, description = "No such flag.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn put_cohort(
    RequireDeveloper(caller): RequireDeveloper,
    State(flags): State<FlagsContext>,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CohortBody>,
) -> Result<Response, Problem> {
    let cohort = Cohort {
        attribute: body.attribute,
        values: body.values,
        variant: body.variant,
    };
    change_cohort(
        &flags,
        &caller,
        &key,
        &name,
        Some(cohort),
        &body.reason,
        &headers,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/api/v1/flags/{key}/cohorts/{name}",
    tag = "flags",
    operation_id = "deleteFlagCohort",
    summary = "Remove a per-cohort override",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("name" = String, Path, description = "The cohort's name."),
        ("If-Match" = Option<String>, Header, description = "The flag's ETag read earlier (or `*`): the change is refused (412) if the flag changed since."),
        ("reason" = Option<String>, Query, description = "Why (recorded in the audit log); required, not empty."),
    ),
    responses(
        (status = 200, description = "The change: the new revision and the flag.", body = FlagChange),
        (status = 404, description = "No such flag or cohort.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::StaleErrors,
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn delete_cohort(
    RequireDeveloper(caller): RequireDeveloper,
    State(flags): State<FlagsContext>,
    Path((key, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ReasonQuery>,
) -> Result<Response, Problem> {
    let reason = q.reason.unwrap_or_default();
    change_cohort(&flags, &caller, &key, &name, None, &reason, &headers).await
}

/// Sets (`Some`) or removes (`None`) cohort override `name` of flag `key`.
async fn change_cohort(
    flags: &FlagsContext,
    caller: &Caller,
    key: &str,
    name: &str,
    cohort: Option<Cohort>,
    reason: &str,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let meta = flags.meta(&actor, reason);
    let tag = if_match(headers);
    let change = service::set_cohort(
        &flags.store,
        flags.set(),
        key,
        name,
        cohort,
        &meta,
        tag.as_deref(),
    )
    .await?;
    flags.after_write().await;
    Ok(change_response(StatusCode::OK, change))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn history(
    flags: &FlagsContext,
    flag: Option<&str>,
    q: HistoryQuery,
) -> Result<Response, Problem> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let items = flags
        .store
        .flag_set_history(flags.set(), flag, q.before, limit)
        .await
        .map_err(Error::from)?;
    Ok(Json(json!({ "history": items })).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/flags/{key}/history",
    tag = "flags",
    operation_id = "flagHistory",
    summary = "A flag's history from the audit log, newest first",
    params(
        ("key" = String, Path, description = "The flag's key."),
        ("limit" = Option<u32>, Query, description = "At most this many entries (1 to 500, default 50)."),
        ("before" = Option<i64>, Query, description = "Only revisions before this one."),
    ),
    responses(
        (status = 200, description = "`history`: the revisions that changed the flag, with actor and reason.", body = shapes::FlagHistory),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn flag_history(
    _: RequireDeveloper,
    State(flags): State<FlagsContext>,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    history(&flags, Some(&key), q).await
}

#[utoipa::path(
    get,
    path = "/api/v1/history",
    tag = "flags",
    operation_id = "flagSetHistory",
    summary = "The flag set's history from the audit log, newest first",
    params(
        ("limit" = Option<u32>, Query, description = "At most this many entries (1 to 500, default 50)."),
        ("before" = Option<i64>, Query, description = "Only revisions before this one."),
    ),
    responses(
        (status = 200, description = "`history`: the revisions, with actor and reason.", body = shapes::FlagHistory),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn set_history(
    _: RequireDeveloper,
    State(flags): State<FlagsContext>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    history(&flags, None, q).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/export",
    tag = "flags",
    operation_id = "exportFlags",
    summary = "The whole flag set as a document",
    params(
        ("format" = Option<String>, Query, description = "`commonlab` (default) or `flagd`."),
    ),
    responses(
        (status = 200, description = "The flag-set document (in `flagd` format, cohort overrides are written into each flag's `targeting`).", body = shapes::FlagSetDocument, headers(("ETag" = String, description = "The flag set's ETag (`\"rev-N\"`, for the `If-Match` of an import)."))),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn export(
    _: RequireDeveloper,
    State(flags): State<FlagsContext>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    let (revision, doc) = flags.fresh().await?;
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

#[utoipa::path(
    post,
    path = "/api/v1/import",
    tag = "flags",
    operation_id = "importFlags",
    summary = "Replace the flag set with a document",
    params(
        ("If-Match" = Option<String>, Header, description = "A flag-set ETag (`\"rev-3\"`, from GET /api/v1/export) or `*`: the import is refused (412) if the set changed since; one of another form is refused (400)."),
        ("reason" = Option<String>, Query, description = "Why (recorded in the audit log); required, not empty."),
        ("strict" = Option<bool>, Query, description = "Refuse a document with any problem, even one that loads leniently."),
        ("replace_overrides" = Option<bool>, Query, description = "Take the file's cohort overrides only, dropping the stored ones."),
    ),
    request_body = serde_json::Value,
    responses(
        (status = 200, description = "The import outcome: the new revision, warnings, and which cohort overrides were kept or dropped.", body = ImportOutcome, headers(("ETag" = String, description = "The flag set's ETag after the import."))),
        crate::openapi::errors::StaleErrors,
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn import(
    RequireResearcher(caller): RequireResearcher,
    State(flags): State<FlagsContext>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
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
        &flags.store,
        flags.set(),
        source,
        &flags.meta(&actor, &reason),
        expected,
        q.strict.unwrap_or(false),
        q.replace_overrides.unwrap_or(false),
    )
    .await?;
    flags.after_write().await;
    let mut resp = Json(&outcome).into_response();
    if let Ok(v) = HeaderValue::from_str(&service::set_etag(outcome.revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}
