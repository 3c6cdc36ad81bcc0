//! The layers around every route, outermost first:
//!
//! - a request span naming the matched route template (`/api/v1/units/{id}`),
//!   never the raw path, so unit ids do not reach the log;
//! - panics caught and answered 500 problem+json (tower-http's
//!   `CatchPanicLayer`), logged and counted;
//! - the request timeout (408 problem+json), and every error answer that is
//!   not JSON (axum's plain-text rejections, such as a path segment that is
//!   not valid percent-encoded UTF-8) turned into problem+json;
//! - the body limit.

use crate::problem::Problem;
use crate::serve::HttpCounters;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};
use tower_http::trace::TraceLayer;

/// Wraps `routes` (every feature router, merged) in the server's layers.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let guard = Guard {
        timeout: state.config.request_timeout,
        counters: Arc::clone(&state.http_counters),
    };
    let panics = PanicToProblem(Arc::clone(&state.http_counters));
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(middleware::from_fn_with_state(guard, guard_request))
        .layer(CatchPanicLayer::custom(panics))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The span of a request: method and route template. The path itself may
/// hold a member's id (`/api/v1/units/{id}/consent`) and is not recorded.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("(no route)");
    tracing::info_span!("request", method = %req.method(), route)
}

async fn not_found() -> impl IntoResponse {
    Problem::not_found("no such route; see README.md for the API")
}

async fn method_not_allowed() -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this route does not accept that method",
    )
}

#[derive(Clone)]
struct Guard {
    timeout: Duration,
    counters: Arc<HttpCounters>,
}

async fn guard_request(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(guard.timeout, next.run(req)).await {
        Ok(resp) => as_problem(resp).await,
        Err(_) => {
            guard
                .counters
                .request_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                timeout_ms = guard.timeout.as_millis() as u64,
                "request timed out"
            );
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
                format!(
                    "the request did not complete within {} ms (request_timeout): its body came too slowly, or the server was too busy; retry",
                    guard.timeout.as_millis()
                ),
            )
            .into_response()
        }
    }
}

/// An error answer that is not JSON (problem+json, or OFREP's own error
/// bodies) becomes problem+json with the same status and headers, its text
/// as the detail.
async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = if text.is_empty() {
        title.to_string()
    } else {
        text
    };
    let slug = match status {
        StatusCode::BAD_REQUEST => "bad-request".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "too-large".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type".to_string(),
        StatusCode::UNPROCESSABLE_ENTITY => "validation".to_string(),
        s => format!("http-{}", s.as_u16()),
    };
    let mut out = Problem::new(status, &slug, title, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

#[derive(Clone)]
struct PanicToProblem(Arc<HttpCounters>);

impl ResponseForPanic for PanicToProblem {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(&mut self, err: Box<dyn Any + Send + 'static>) -> Response {
        let message = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        self.0.panics.fetch_add(1, Ordering::Relaxed);
        tracing::error!(panic = %message, "a request handler panicked; answered 500");
        Problem::internal().into_response()
    }
}
