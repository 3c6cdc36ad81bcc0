//! `/healthz` (the process is up), `/readyz` (it can reach its database;
//! the detail says which flag-set revision it serves and, if the newest
//! stored revision does not compile, why it serves an older one) and
//! `/metrics` (ingestion, HTTP and authentication counters in Prometheus'
//! text format; no personal data). No key needed.

use crate::auth::KeyCache;
use crate::events::counters::IngestCounters;
use crate::flag_set::FlagCache;
use crate::problem::Problem;
use crate::route::{Public, Route};
use crate::serve::HttpCounters;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_store::Store;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    Store: FromRef<S>,
    FlagCache: FromRef<S>,
    KeyCache: FromRef<S>,
    Arc<IngestCounters>: FromRef<S>,
    Arc<HttpCounters>: FromRef<S>,
{
    vec![
        Route::get("/healthz", healthz),
        Route::get("/readyz", readyz),
        Route::get("/metrics", metrics),
    ]
}

async fn healthz(_: Public) -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

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

/// The counters in Prometheus' text format (no personal data).
async fn metrics(
    _: Public,
    State(ingest): State<Arc<IngestCounters>>,
    State(http): State<Arc<HttpCounters>>,
    State(keys): State<KeyCache>,
) -> Response {
    let mut text = ingest.render();
    text.push_str(&http.render(keys.failures().count()));
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
