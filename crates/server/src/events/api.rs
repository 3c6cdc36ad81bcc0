//! Telemetry ingestion: `POST /v1/events` (role `sdk` or higher).
//!
//! A batch is a JSON array of events, or NDJSON (`application/x-ndjson`,
//! one event per line). Each event: `event_id` (a UUID chosen by the client:
//! the idempotency key), `unit` (the same raw id the platform sends to OFREP
//! as `targetingKey`; pseudonymised before it is stored), optional
//! `community`, `name`, `timestamp` (RFC 3339; more than the configured skew
//! in the future is refused) and `properties` (a flat object of strings,
//! numbers, booleans and nulls).
//!
//! **Durability:** the answer comes after the accepted events are committed.
//! **Idempotency:** a retried batch stores nothing twice and gets the same
//! status and the same `stored` count (`duplicates` says how many were
//! already there). **Partial acceptance:** invalid events are listed in
//! `rejected` with their index, id, field and reason; the valid ones are
//! stored; so are events the database refuses (a constraint), with its
//! reason. A body that is not JSON (or a line of NDJSON that is not) stores
//! nothing. **Group commit and backpressure:** batches of concurrent
//! requests are committed together by one task ([`super::group_commit`]); a
//! batch that cannot be queued within a second gets 503 with `Retry-After`
//! instead of queueing without bound. When every event of a batch is
//! invalid the answer is 422, a problem+json carrying the same members.
//! The shapes are in the OpenAPI document (served at
//! `GET /api/v1/openapi.json`, see [`crate::openapi`]).

use super::counters::IngestCounters;
use super::group_commit::{GroupCommitter, SubmitError};
use super::pipeline::{admit, reject, Admitted, Dropped, Rejected};
use crate::auth::{KeyCache, RequireSdk};
use crate::clock::Clock;
use crate::config::Config;
use crate::extract::BodyError;
use crate::problem::Problem;
use crate::route::Route;
use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use commonlab_store::Store;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    IngestContext: FromRef<S>,
    KeyCache: FromRef<S>,
{
    vec![Route::post("/v1/events", ingest)]
}

/// What ingestion needs: the settings (limits, allow-lists, study key,
/// consent scope), the store (consent lookups), the group committer, the
/// clock and the counters.
#[derive(Clone)]
pub struct IngestContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub committer: GroupCommitter,
    pub counters: Arc<IngestCounters>,
}

#[derive(Debug, Serialize)]
pub struct IngestOutcome {
    /// Events in the batch.
    pub received: usize,
    /// Events of the batch that are now stored (by this call or before).
    pub stored: u64,
    /// Of those, how many were stored already (a retry).
    pub duplicates: usize,
    /// Valid events not stored by policy: name not on the allow-list, or
    /// no consent from the unit (they are counted, never stored).
    pub dropped: Dropped,
    pub rejected: Vec<Rejected>,
}

/// Splits the body into events (a JSON array, or NDJSON by its content
/// type); `Err` means nothing is stored. Public for the fuzz targets.
pub fn parse_batch(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Value>, Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-ndjson" | "application/jsonl" => {
            let text = std::str::from_utf8(body).map_err(|_| {
                Problem::bad_request("the body is not valid UTF-8; nothing was stored")
            })?;
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "malformed-json",
                        "Malformed NDJSON",
                        format!("line {} is not JSON ({e}); nothing was stored", i + 1),
                    )
                    .with_field(format!("/{i}"), e.to_string())
                })?;
                out.push(v);
            }
            Ok(out)
        }
        _ if crate::extract::is_json(headers) => match crate::extract::parse_json::<Value>(body) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err(Problem::validation(
                "the body must be a JSON array of events; nothing was stored",
            )
            .with_field("", "expected an array")),
            Err(e) => {
                let mut p: Problem = e.into();
                p.detail.push_str("; nothing was stored");
                Err(p)
            }
        },
        _ => Err(BodyError::UnsupportedMediaType.into()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "telemetry",
    operation_id = "ingestEvents",
    summary = "Store a batch of telemetry events",
    request_body(content((crate::openapi::shapes::EventBatch = "application/json"), (crate::openapi::shapes::EventBatch = "application/x-ndjson")), description = "A JSON array of events, or NDJSON (one event per line; blank lines skipped)."),
    responses(
        (status = 200, description = "The outcome: stored, duplicates, dropped and rejected events.", body = crate::openapi::shapes::IngestOutcome),
        (status = 400, description = "The body (or an NDJSON line) is not JSON; nothing stored.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body or the batch is over its limit; nothing stored.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/json` or `application/x-ndjson`.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an array, or every event invalid (the outcome is in the problem).", body = crate::openapi::shapes::EventsUnprocessable, content_type = "application/problem+json"),
    ),
)]
async fn ingest(
    _: RequireSdk,
    State(state): State<IngestContext>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(BodyError::from_bytes_rejection)?;
    let items = parse_batch(&headers, &body)?;
    let limit = state.config.max_batch_events;
    if items.len() > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch-too-large",
            "Batch too large",
            format!("{} events in one batch; at most {limit} are accepted (split the batch); nothing was stored", items.len()),
        ));
    }
    let now = state.clock.now();
    let Admitted {
        events: batch,
        origin,
        mut rejected,
        dropped,
    } = admit(&state.store, &state.config, items.iter().enumerate(), now).await?;
    let (stored, duplicates) = if batch.is_empty() {
        (0, 0)
    } else {
        let outcome = match state.committer.submit(batch, now).await {
            Ok(o) => o,
            Err(SubmitError::Saturated) => {
                return Err(Problem::unavailable(
                    "the event store is saturated; retry this batch shortly",
                ))
            }
            Err(SubmitError::Closed) => {
                return Err(Problem::unavailable("the server is shutting down; retry"))
            }
            Err(SubmitError::Store(e)) => return Err(e.into()),
        };
        // Events the database refused (a constraint): rejected like invalid
        // ones, the rest of the batch is stored.
        for r in &outcome.refused {
            let index = origin[r.index];
            let id = items[index].get("event_id").and_then(Value::as_str);
            rejected.push(reject(
                index,
                id,
                "",
                format!("the database refused this event: {}", r.reason),
            ));
        }
        rejected.sort_by_key(|r| r.index);
        (
            outcome.inserted + outcome.duplicates.len() as u64,
            outcome.duplicates.len(),
        )
    };
    let c = &state.counters;
    IngestCounters::add(&c.stored, stored - duplicates as u64);
    IngestCounters::add(&c.duplicates, duplicates as u64);
    IngestCounters::add(&c.rejected, rejected.len() as u64);
    IngestCounters::add(&c.dropped_not_allowed, dropped.not_allowed);
    IngestCounters::add(&c.dropped_no_consent, dropped.no_consent);
    IngestCounters::add(&c.properties_removed, dropped.properties_removed);
    let all_invalid =
        stored == 0 && !rejected.is_empty() && dropped.not_allowed + dropped.no_consent == 0;
    let out = IngestOutcome {
        received: items.len(),
        stored,
        duplicates,
        dropped,
        rejected,
    };
    if all_invalid {
        return Ok(all_invalid_problem(out));
    }
    Ok(Json(out).into_response())
}

/// 422 when every event of a batch is invalid: a problem+json (type
/// `events-invalid`) with one `errors` entry per event, and the outcome's
/// members (`received`, `stored`, `rejected`, ...) as extension members,
/// so clients read the per-event errors the same way as in a 200.
fn all_invalid_problem(out: IngestOutcome) -> Response {
    let mut problem = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "events-invalid",
        "Every event of the batch is invalid",
        format!(
            "none of the {} events is valid (see rejected); nothing was stored",
            out.received
        ),
    );
    for r in &out.rejected {
        problem = problem.with_field(rejected_pointer(r), r.reason.clone());
    }
    let mut body = match serde_json::to_value(&problem) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Ok(Value::Object(members)) = serde_json::to_value(&out) {
        body.extend(members);
    }
    let mut resp = (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// The JSON pointer (RFC 6901) of a rejected event's field in the batch:
/// `/3/timestamp`, `/4/properties/a~1b`, `/5` for the event as a whole.
fn rejected_pointer(r: &Rejected) -> String {
    let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
    let mut pointer = format!("/{}", r.index);
    if let Some(key) = r.field.strip_prefix("properties.") {
        pointer.push_str("/properties/");
        pointer.push_str(&escape(key));
    } else if !r.field.is_empty() {
        pointer.push('/');
        pointer.push_str(&escape(&r.field));
    }
    pointer
}
