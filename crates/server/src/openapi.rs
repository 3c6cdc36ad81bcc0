//! `GET /openapi.json`: the OpenAPI 3.1 document of the telemetry API
//! (ingestion, consent, erasure, metrics), hand-written in
//! `docs/openapi.json` and embedded at compile time. No authentication.
//! The server's tests check real responses against its schemas.

use crate::route::{Public, Route};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The document, byte for byte as in `docs/openapi.json`.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
{
    vec![Route::get("/openapi.json", document)]
}

async fn document(_: Public) -> Response {
    let mut resp = DOCUMENT.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
