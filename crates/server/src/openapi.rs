//! `GET /openapi.json`: the OpenAPI 3.1 document of the telemetry API
//! (ingestion, consent, erasure, metrics), hand-written in
//! `docs/openapi.json` and embedded at compile time. No authentication.
//! The server's tests check real responses against its schemas.

use crate::state::AppState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The document, byte for byte as in `docs/openapi.json`.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> Response {
    let mut resp = DOCUMENT.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
