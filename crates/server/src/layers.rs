//! The layers around every route, outermost first:
//!
//! - [`Guard`]: first the request id (a client's `X-Request-Id` of 1 to 64
//!   characters `[A-Za-z0-9._:-]` is kept, any other is replaced by one of
//!   ours: a random prefix per process and a counter; sent back in the
//!   answer's `X-Request-Id`), then panics caught and answered 500 problem+json (logged and
//!   counted), the request timeout (408 problem+json), and every error
//!   answer that is not JSON (axum's plain-text rejections, such as a path
//!   segment that is not valid percent-encoded UTF-8) turned into
//!   problem+json (the survey pages' HTML answers are kept); then, on every
//!   answer, the security headers
//!   ([`crate::observability`]) and, with `access_log`, its log line;
//! - a request span naming the matched route template (`/api/v1/units/{id}`),
//!   never the raw path, so unit ids do not reach the log, and the request
//!   id;
//! - the body limit.
//!
//! The request id is the guard's rather than tower-http's request-id
//! layers (its first version): axum clones a route's layered service for
//! every request, and those three layers cost about 20,000 instructions
//! an OFREP request (docs/benchmarks.md).
//!
//! The guard is hand-written rather than axum's `from_fn` plus tower-http's
//! `CatchPanicLayer` and `TimeoutLayer` (its first version): one layer that
//! allocates nothing and starts no timer for a request that completes when
//! first polled (an OFREP evaluation, typically), where those box the
//! future, the response body and the inner service, and create a timer for
//! every request, on the path whose cost docs/benchmarks.md tracks.

use crate::config::Config;
use crate::observability::{Metrics, RouteSlot};
use crate::problem::Problem;
use crate::serve::HttpCounters;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};
use tower_http::trace::TraceLayer;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The Content-Security-Policy of every answer that does not set its own:
/// nothing may load, run, frame it or be posted from it (the JSON API
/// needs none of it; pages set their own, narrower-than-default policy:
/// the survey pages allow their one stylesheet by hash).
pub const CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The headers every answer carries unless its handler set them: CSP,
/// `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
/// `X-Frame-Options: DENY` (for browsers without `frame-ancestors`), and
/// `Strict-Transport-Security` when `hsts_max_age` is set.
pub fn security_headers(config: &Config) -> Vec<(HeaderName, HeaderValue)> {
    let mut h = vec![
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    if let Some(age) = config.hsts_max_age {
        h.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_str(&format!("max-age={}", age.as_secs()))
                .expect("digits are a header value"),
        ));
    }
    h
}

/// Wraps `routes` (every feature router, merged) in the server's layers.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let guard = Guard {
        timeout: state.config.request_timeout,
        counters: Arc::clone(&state.http_counters),
        metrics: Arc::clone(&state.metrics),
        headers: Arc::new(security_headers(&state.config)),
        access_log: state.config.access_log,
        ids: MakeId::new(),
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(guard)
        .with_state(state)
}

/// A client's request id is kept when it is 1 to [`MAX_REQUEST_ID_LEN`]
/// characters `[A-Za-z0-9._:-]` (else one of ours replaces it), so that
/// ids in logs are short and plain.
fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Our request ids: 8 random hex digits per process (so replicas' ids
/// differ), a dash, and a counter in hex.
#[derive(Clone)]
struct MakeId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl MakeId {
    fn new() -> MakeId {
        MakeId {
            prefix: format!("{:08x}", rand::random::<u32>()).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeId {
    fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).expect("hex digits and a dash")
    }
}

/// The span of a request: method and route template. The path itself may
/// hold a member's id (`/api/v1/units/{id}/consent`) and is not recorded.
/// At `debug`: formatting the span's fields for every request took about
/// 12% of an OFREP evaluation's CPU at `info` (docs/benchmarks.md); the
/// lines logged at `info` and above while serving a request (failed
/// authentication, panics, timeouts) name the route themselves.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("(no route)");
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Display (%), not Debug: no quoting and escaping.
    tracing::debug_span!("request", method = %req.method(), route = %route, request_id = %id)
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

/// The guard layer (see the module documentation).
#[derive(Clone)]
pub struct Guard {
    timeout: Duration,
    counters: Arc<HttpCounters>,
    metrics: Arc<Metrics>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    access_log: bool,
    ids: MakeId,
}

impl<S> Layer<S> for Guard {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            guard: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
}

impl<S> Service<Request> for GuardService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        // For the log line of a panic or a timeout (an Arc, not a copy).
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let slot = self
            .guard
            .metrics
            .route_slot(&method, route.as_ref().map(MatchedPath::as_str));
        // The request id, set on the request before the span is made.
        let request_id = match req.headers().get(&REQUEST_ID) {
            Some(v) if valid_request_id(v) => v.clone(),
            _ => {
                let id = self.guard.ids.next();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let request_id = Some(request_id);
        let state = match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(inner) => GuardState::Running {
                inner,
                deadline: None,
            },
            Err(panic) => GuardState::Done {
                resp: Some(panicked(&self.guard.counters, route.as_ref(), panic)),
            },
        };
        GuardFuture {
            state,
            guard: self.guard.clone(),
            route,
            done: Done {
                start,
                method,
                slot,
                request_id,
            },
        }
    }
}

pin_project_lite::pin_project! {
    pub struct GuardFuture<F> {
        #[pin]
        state: GuardState<F>,
        guard: Guard,
        route: Option<MatchedPath>,
        done: Done,
    }
}

/// What the answer of a request is counted and logged with.
struct Done {
    start: Instant,
    method: Method,
    slot: Option<RouteSlot>,
    request_id: Option<HeaderValue>,
}

pin_project_lite::pin_project! {
    #[project = GuardStateProj]
    enum GuardState<F> {
        Running {
            #[pin]
            inner: F,
            // Armed only when the handler does not complete at once.
            deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        },
        Converting {
            converting: Pin<Box<dyn Future<Output = Response> + Send>>,
        },
        Done {
            resp: Option<Response>,
        },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                GuardStateProj::Running { inner, deadline } => {
                    match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                        Ok(Poll::Ready(Ok(resp))) => match needs_problem(&resp) {
                            false => {
                                return Poll::Ready(Ok(finish(
                                    this.guard, this.route, this.done, resp,
                                )))
                            }
                            true => GuardState::Converting {
                                converting: Box::pin(as_problem(resp)),
                            },
                        },
                        Ok(Poll::Ready(Err(never))) => match never {},
                        Err(panic) => GuardState::Done {
                            resp: Some(panicked(&this.guard.counters, this.route.as_ref(), panic)),
                        },
                        Ok(Poll::Pending) => {
                            let limit = this.guard.timeout;
                            let sleep =
                                deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            GuardState::Done {
                                resp: Some(timed_out(this.guard, this.route.as_ref())),
                            }
                        }
                    }
                }
                GuardStateProj::Converting { converting } => {
                    return converting
                        .as_mut()
                        .poll(cx)
                        .map(|resp| Ok(finish(this.guard, this.route, this.done, resp)));
                }
                GuardStateProj::Done { resp } => {
                    let resp = resp
                        .take()
                        .unwrap_or_else(|| Problem::internal().into_response());
                    return Poll::Ready(Ok(finish(this.guard, this.route, this.done, resp)));
                }
            };
            this.state.set(next);
        }
    }
}

/// Every answer's last step: the security headers its handler did not
/// set, its count and latency, and its access-log line.
fn finish(guard: &Guard, route: &Option<MatchedPath>, done: &Done, mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    if let Some(id) = &done.request_id {
        headers.insert(REQUEST_ID, id.clone());
    }
    for (name, value) in guard.headers.iter() {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let elapsed = done.start.elapsed();
    let route = route.as_ref().map(MatchedPath::as_str);
    let status = resp.status().as_u16();
    guard
        .metrics
        .count_request(done.slot, &done.method, route, status, elapsed);
    if guard.access_log {
        let id = done.request_id.as_ref().and_then(|v| v.to_str().ok());
        tracing::info!(
            target: "commonlab::access",
            method = %done.method,
            route = route.unwrap_or("(no route)"),
            status,
            duration_us = elapsed.as_micros() as u64,
            request_id = id.unwrap_or(""),
            "request"
        );
    }
    resp
}

fn route_name(route: Option<&MatchedPath>) -> &str {
    route.map_or("(no route)", MatchedPath::as_str)
}

fn timed_out(guard: &Guard, route: Option<&MatchedPath>) -> Response {
    guard
        .counters
        .request_timeouts
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        route = route_name(route),
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

fn panicked(
    counters: &HttpCounters,
    route: Option<&MatchedPath>,
    err: Box<dyn Any + Send + 'static>,
) -> Response {
    let message = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    counters.panics.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        route = route_name(route),
        panic = %message,
        "a request handler panicked; answered 500"
    );
    Problem::internal().into_response()
}

/// An error answer that is neither JSON (problem+json, or OFREP's own
/// error bodies) nor a page for people (the survey pages' friendly
/// refusals, `text/html`).
fn needs_problem(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"))
}

/// An error answer that is not JSON (problem+json, or OFREP's own error
/// bodies) becomes problem+json with the same status and headers, its text
/// as the detail.
async fn as_problem(resp: Response) -> Response {
    let status = resp.status();
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
