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
//! requests are committed together by one task ([`crate::group_commit`]); a
//! batch that cannot be queued within a second gets 503 with `Retry-After`
//! instead of queueing without bound. When every event of a batch is
//! invalid the answer is 422, a problem+json carrying the same members.
//! The shapes are documented in `docs/openapi.json` (served at
//! `GET /openapi.json`, see [`crate::openapi`]).

use crate::auth::Caller;
use crate::extract::BodyError;
use crate::group_commit::SubmitError;
use crate::problem::Problem;
use crate::state::{AppState, Config, IngestCounters};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commonlab_core::auth::Role;
use commonlab_core::privacy::pseudonymise;
use commonlab_store::{NewEvent, Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/metrics", axum::routing::get(metrics))
}

/// Ingestion counters in Prometheus' text format (no personal data).
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.ingest_counters.render();
    text.push_str(&state.http_counters.render(state.keys.failures().count()));
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

const MAX_PROPERTIES: usize = 64;
const MAX_TEXT: usize = 1024;

/// One refused event.
#[derive(Debug, Serialize, PartialEq)]
pub struct Rejected {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub field: String,
    pub reason: String,
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

#[derive(Debug, Default, Serialize)]
pub struct Dropped {
    pub not_allowed: u64,
    pub no_consent: u64,
    pub properties_removed: u64,
}

fn reject(index: usize, id: Option<&str>, field: &str, reason: impl Into<String>) -> Rejected {
    Rejected {
        index,
        event_id: id.map(str::to_string),
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn text<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err("must not be empty".into()),
        Some(Value::String(s)) if s.len() > MAX_TEXT => {
            Err(format!("longer than {MAX_TEXT} bytes"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err("must not contain control characters".into())
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("must be a string".into()),
    }
}

/// Checks one event; `Err` names the field and the reason. The returned
/// event still carries the raw unit id: pseudonymise it before storing.
pub fn validate_event(
    index: usize,
    v: &Value,
    now: DateTime<Utc>,
    max_future_skew: Duration,
) -> Result<NewEvent, Rejected> {
    let Some(obj) = v.as_object() else {
        return Err(reject(index, None, "", "an event must be a JSON object"));
    };
    let id_text = obj.get("event_id").and_then(Value::as_str);
    let r = |field: &str, reason: String| reject(index, id_text, field, reason);
    for key in obj.keys() {
        if ![
            "event_id",
            "unit",
            "community",
            "name",
            "timestamp",
            "properties",
        ]
        .contains(&key.as_str())
        {
            return Err(r(
                key,
                "unknown field (expected event_id, unit, community, name, timestamp, properties)"
                    .into(),
            ));
        }
    }
    let id = match id_text {
        Some(s) => uuid::Uuid::parse_str(s).map_err(|_| r("event_id", "must be a UUID".into()))?,
        None => {
            return Err(r(
                "event_id",
                "required (a UUID chosen by the client)".into(),
            ))
        }
    };
    let unit = text(obj, "unit")
        .map_err(|e| r("unit", e))?
        .ok_or_else(|| r("unit", "required".into()))?;
    let community = text(obj, "community").map_err(|e| r("community", e))?;
    let name = text(obj, "name")
        .map_err(|e| r("name", e))?
        .ok_or_else(|| r("name", "required".into()))?;
    if name.len() > 100
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-$:".contains(&b))
    {
        return Err(r(
            "name",
            "1 to 100 characters of letters, digits and _ . - $ :".into(),
        ));
    }
    let ts_text = text(obj, "timestamp")
        .map_err(|e| r("timestamp", e))?
        .ok_or_else(|| r("timestamp", "required (RFC 3339)".into()))?;
    let ts = DateTime::parse_from_rfc3339(ts_text)
        .map_err(|_| {
            r(
                "timestamp",
                "must be an RFC 3339 date-time, e.g. 2027-01-11T09:00:00Z".into(),
            )
        })?
        .with_timezone(&Utc);
    let skew = chrono::Duration::from_std(max_future_skew).unwrap_or_default();
    if ts > now + skew {
        return Err(r(
            "timestamp",
            format!(
                "more than {} s in the future (clock skew)",
                max_future_skew.as_secs()
            ),
        ));
    }
    let properties = match obj.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            if m.len() > MAX_PROPERTIES {
                return Err(r(
                    "properties",
                    format!("at most {MAX_PROPERTIES} properties"),
                ));
            }
            for (k, v) in m {
                let field = format!("properties.{k}");
                if k.is_empty() || k.len() > 100 || k.chars().any(char::is_control) {
                    return Err(r(
                        &field,
                        "property names are 1 to 100 printable characters".into(),
                    ));
                }
                match v {
                    Value::Null | Value::Bool(_) | Value::Number(_) => {}
                    Value::String(s) if s.len() > MAX_TEXT => {
                        return Err(r(&field, format!("longer than {MAX_TEXT} bytes")))
                    }
                    Value::String(s) if s.contains('\0') => {
                        return Err(r(&field, "must not contain NUL".into()))
                    }
                    Value::String(_) => {}
                    _ => {
                        return Err(r(
                            &field,
                            "properties are flat: a string, number, boolean or null".into(),
                        ))
                    }
                }
            }
            m.clone()
        }
        Some(_) => return Err(r("properties", "must be an object".into())),
    };
    Ok(NewEvent {
        event_id: id,
        unit: unit.to_string(),
        community: community.map(str::to_string),
        name: name.to_string(),
        ts,
        properties,
    })
}

/// What the ingestion pipeline ([`admit`]) made of a batch.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Valid, allowed and consented events, units pseudonymised: to store.
    pub events: Vec<NewEvent>,
    /// The index each of `events` was given (its position in the batch).
    pub origin: Vec<usize>,
    /// Invalid events, with the index they were given.
    pub rejected: Vec<Rejected>,
    /// Valid events (and properties) not stored by policy.
    pub dropped: Dropped,
}

/// The ingestion pipeline, the same for `POST /v1/events` and `commonlab
/// events import`: validates each event (`index` is what an error names:
/// the position in a batch, the line of a file), drops events whose name is
/// not on `allowed_events` and properties not on `allowed_properties`,
/// pseudonymises the unit with the study key and, with `consent_scope`,
/// keeps only units whose latest decision for it is a grant (one lookup for
/// the whole batch).
pub async fn admit<'a>(
    store: &Store,
    config: &Config,
    items: impl IntoIterator<Item = (usize, &'a Value)>,
    now: DateTime<Utc>,
) -> Result<Admitted, StoreError> {
    let mut out = Admitted::default();
    for (index, v) in items {
        match validate_event(index, v, now, config.max_future_skew) {
            Ok(mut event) => {
                if let Some(allowed) = &config.allowed_events {
                    if !allowed.contains(&event.name) {
                        out.dropped.not_allowed += 1;
                        continue;
                    }
                }
                if let Some(allowed) = &config.allowed_properties {
                    let before = event.properties.len();
                    event.properties.retain(|k, _| allowed.contains(k));
                    out.dropped.properties_removed += (before - event.properties.len()) as u64;
                }
                event.unit = pseudonymise(&config.study_key, &event.unit).into_string();
                out.events.push(event);
                out.origin.push(index);
            }
            Err(r) => out.rejected.push(r),
        }
    }
    if let Some(scope) = &config.consent_scope {
        let units: Vec<&str> = out.events.iter().map(|e| e.unit.as_str()).collect();
        let consented = store.units_with_consent(&units, scope).await?;
        let before = out.events.len();
        (out.events, out.origin) = std::mem::take(&mut out.events)
            .into_iter()
            .zip(std::mem::take(&mut out.origin))
            .filter(|(e, _)| consented.contains(&e.unit))
            .unzip();
        out.dropped.no_consent = (before - out.events.len()) as u64;
    }
    Ok(out)
}

/// Splits the body into events; `Err` means nothing is stored.
fn parse_batch(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Value>, Problem> {
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

async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    caller.require(Role::Sdk)?;
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
    let c = &state.ingest_counters;
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
