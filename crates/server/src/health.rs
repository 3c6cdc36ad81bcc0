//! `/healthz` (the process is up), `/readyz` (it can reach its database;
//! the detail says which flag-set revision it serves and, if the newest
//! stored revision does not compile, why it serves an older one) and
//! `/metrics` (requests, evaluations, ingestion, exposures, queues, pools
//! and authentication in Prometheus' text format, rendered by
//! [`crate::observability`]; no personal data). No key needed.

use crate::flag_set::FlagCache;
use crate::observability::MetricsSources;
use crate::problem::Problem;
use crate::route::{Public, Route};
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_store::Store;
use serde_json::{json, Value};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    Store: FromRef<S>,
    FlagCache: FromRef<S>,
    MetricsSources: FromRef<S>,
{
    vec![
        Route::get("/healthz", healthz),
        Route::get("/readyz", readyz),
        Route::get("/metrics", metrics),
    ]
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    operation_id = "healthz",
    summary = "Liveness (no authentication)",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`.", body = crate::openapi::shapes::Health),
    ),
)]
async fn healthz(_: Public) -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    operation_id = "readyz",
    summary = "Readiness: the database answers (no authentication)",
    responses(
        (status = 200, description = "Ready, with the flag-set revision served (and `flagSetProblem` when the stored set could not be loaded).", body = crate::openapi::shapes::Readiness),
        (status = 503, description = "The database does not answer.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
    ),
)]
async fn readyz(
    _: Public,
    State(store): State<Store>,
    State(flags): State<FlagCache>,
) -> Result<Json<Value>, Problem> {
    store.ping().await?;
    let mut body = json!({
        "status": "ready",
        "flagSetRevision": flags.current().revision,
    });
    // Still ready: the replica serves the last good set.
    if let Some(problem) = flags.problem() {
        body["flagSetProblem"] = json!(problem);
    }
    Ok(Json(body))
}

/// Every series in Prometheus' text format (no personal data).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "metrics",
    summary = "Metrics of this process (Prometheus text format; no authentication, no personal data)",
    responses(
        (status = 200, description = "Every series.", body = String, content_type = "text/plain; version=0.0.4"),
    ),
)]
async fn metrics(_: Public, State(sources): State<MetricsSources>) -> Response {
    let text = sources.metrics.render(&sources);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
