//! OFREP: the OpenFeature Remote Evaluation Protocol (`/ofrep/v1/...`).
//!
//! Errors on these routes use OFREP's own bodies (`errorCode`,
//! `errorDetails`), not problem+json, so that OpenFeature providers map them
//! to their error codes; authentication failures (401/403), which OFREP gives
//! no body for, are problem+json like the rest of the server.

use crate::auth::{KeyCache, RequireSdk};
use crate::extract::{is_json, BodyError};
use crate::flag_set::FlagCache;
use crate::flags::limits::{OfrepLimits, OfrepQuota};
use crate::observability::Metrics;
use crate::route::Route;
use crate::surveys::trigger::{self, Triggers};
use crate::trials::cache::RunningTrials;
use crate::trials::decision::Decider;
use crate::trials::exposure::Decision;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commonlab_core::flags::{
    ErrorCode, EvalContext, FlagSet, FlagValue, Metadata, Reason, Resolution,
};
use commonlab_store::ExposureSource;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    FlagCache: FromRef<S>,
    Decider: FromRef<S>,
    KeyCache: FromRef<S>,
    Arc<OfrepLimits>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
    Triggers: FromRef<S>,
{
    vec![
        Route::post("/ofrep/v1/evaluate/flags/{key}", evaluate_one),
        Route::post("/ofrep/v1/evaluate/flags", evaluate_bulk),
    ]
}

#[derive(Deserialize)]
struct EvaluationRequest {
    context: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a FlagValue>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: Cow<'a, Metadata>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    error_code: &'static str,
    error_details: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Metadata>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Ok(Success<'a>),
    Err(Failure<'a>),
}

static NO_METADATA: std::sync::LazyLock<Metadata> = std::sync::LazyLock::new(Metadata::new);

/// The wire item of a survey-trigger flag's answer (`surveys::trigger`).
fn trigger_item<'a>(key: &'a str, a: &'a trigger::Answer) -> Item<'a> {
    Item::Ok(Success {
        key,
        value: Some(&a.value),
        reason: a.reason(),
        variant: Some(a.variant()),
        metadata: Cow::Borrowed(&NO_METADATA),
    })
}

/// The wire item for a resolution, or for the trial arm that replaces it
/// (`trial`: the decision and the arm's value).
fn item<'a>(
    key: &'a str,
    r: &'a Resolution<'a>,
    trial: Option<(&'a Decision, &'a FlagValue)>,
) -> Item<'a> {
    if let (None, Some((d, value))) = (&r.error, trial) {
        {
            // The trial's arm, with metadata naming the trial and arm.
            let mut metadata = r.metadata.clone();
            metadata.insert("trialKey".into(), d.trial.key.clone().into());
            metadata.insert("trialArm".into(), d.arm.clone().into());
            metadata.insert("trialVersion".into(), d.trial.version.into());
            return Item::Ok(Success {
                key,
                value: Some(value),
                reason: "SPLIT",
                variant: Some(&d.arm),
                metadata: Cow::Owned(metadata),
            });
        }
    }
    match &r.error {
        None => Item::Ok(Success {
            key,
            value: r.value,
            reason: r.reason.as_str(),
            variant: r.variant,
            metadata: Cow::Borrowed(r.metadata),
        }),
        Some(e) if e.code == ErrorCode::FlagNotFound => Item::Err(Failure {
            key: Some(key),
            error_code: e.code.as_str(),
            error_details: Cow::Owned(format!("flag '{key}' was not found")),
            metadata: None,
        }),
        Some(e) => Item::Err(Failure {
            key: Some(key),
            error_code: e.code.as_str(),
            error_details: Cow::Borrowed(&e.detail),
            metadata: (!r.metadata.is_empty()).then_some(r.metadata),
        }),
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn failure(status: StatusCode, key: Option<&str>, code: &'static str, details: &str) -> Response {
    let body = serde_json::to_vec(&Failure {
        key,
        error_code: code,
        error_details: Cow::Borrowed(details),
        metadata: None,
    })
    .unwrap_or_default();
    json_response(status, body)
}

fn boxed_failure(
    status: StatusCode,
    key: Option<&str>,
    code: &'static str,
    details: &str,
) -> Box<Response> {
    Box::new(failure(status, key, code, details))
}

/// Parses an OFREP request body; `Err` is the ready OFREP error response.
fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
) -> Result<serde_json::Value, Box<Response>> {
    if !is_json(headers) {
        let e = BodyError::UnsupportedMediaType;
        return Err(boxed_failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            key,
            "GENERAL",
            &e.message(),
        ));
    }
    let req: EvaluationRequest = crate::extract::parse_json(body).map_err(|e| {
        boxed_failure(
            StatusCode::BAD_REQUEST,
            key,
            "INVALID_CONTEXT",
            &e.message(),
        )
    })?;
    match req.context {
        Some(ctx @ serde_json::Value::Object(_)) => {
            if let Some(tk) = ctx.get("targetingKey") {
                if !tk.is_string() {
                    return Err(boxed_failure(
                        StatusCode::BAD_REQUEST,
                        key,
                        "INVALID_CONTEXT",
                        "context.targetingKey must be a string",
                    ));
                }
            }
            // The limits of /v1/events: bounded lengths, no control characters.
            crate::context::validate(&ctx).map_err(|e| {
                boxed_failure(
                    StatusCode::BAD_REQUEST,
                    key,
                    "INVALID_CONTEXT",
                    &e.message(),
                )
            })?;
            Ok(ctx)
        }
        Some(_) => Err(boxed_failure(
            StatusCode::BAD_REQUEST,
            key,
            "INVALID_CONTEXT",
            "context must be a JSON object",
        )),
        // OFREP makes `context` required, but SDKs send `{}` when the
        // application has no context: evaluate with an empty one.
        None => Ok(serde_json::Value::Object(serde_json::Map::new())),
    }
}

/// Parses an OFREP request's body (its caller is authenticated by the
/// handler's guard); `Err` is the ready OFREP error response.
fn admit(
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    key: Option<&str>,
) -> Result<serde_json::Value, Box<Response>> {
    let body = body.map_err(|r| {
        let e = BodyError::from_bytes_rejection(r);
        let status = match e {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        boxed_failure(status, key, "GENERAL", &e.message())
    })?;
    parse_request(headers, &body, key)
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::FlagNotFound => StatusCode::NOT_FOUND,
        // A flag that cannot be evaluated for this context (PARSE_ERROR,
        // TARGETING_KEY_MISSING, INVALID_CONTEXT, GENERAL): OFREP's 400
        // `evaluationFailure`, which providers turn into the error code.
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The trial decision for a flag evaluation, if a running trial takes the
/// context. A database failure (only blocked designs touch the database
/// here) serves the flag's normal evaluation rather than an error.
async fn trial_decision(
    decider: &Decider,
    key: &str,
    r: &Resolution<'_>,
    ctx: &EvalContext<'_>,
) -> Option<Decision> {
    if r.error.is_some() || r.reason == Reason::Disabled {
        return None;
    }
    let cohort = r.cohort.zip(r.variant);
    match decider.decide(key, ctx, cohort).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(flag = key, error = %e, "trial assignment failed; serving the flag's own evaluation");
            None
        }
    }
}

/// The value of a decision's arm (None for excluded units or an arm that is
/// not a variant of the flag).
fn arm_value<'a>(
    set: &'a FlagSet,
    key: &str,
    d: Option<&'a Decision>,
) -> Option<(&'a Decision, &'a FlagValue)> {
    let d = d.filter(|d| d.excluded_reason.is_none())?;
    Some((d, set.get(key)?.variant(&d.arm)?))
}

/// The reason an item answers with (`ERROR` for an error), for the
/// evaluation counters.
fn item_reason(item: &Item<'_>) -> &'static str {
    match item {
        Item::Ok(s) => s.reason,
        Item::Err(_) => "ERROR",
    }
}

/// Counts an evaluation of `key` answered by `item`.
fn count(metrics: &Metrics, set: &FlagSet, key: &str, item: &Item<'_>) {
    metrics.count_evaluation(key, set.get(key).is_some(), item_reason(item));
}

#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "ofrep",
    operation_id = "ofrepEvaluateFlag",
    summary = "Evaluate one flag (OFREP)",
    params(
        ("key" = String, Path, description = "The flag's key."),
    ),
    request_body = crate::openapi::shapes::OfrepRequest,
    responses(
        (status = 200, description = "The flag resolved.", body = crate::openapi::shapes::OfrepSuccess),
        (status = 404, description = "No such flag (`FLAG_NOT_FOUND`).", body = crate::openapi::shapes::OfrepError),
        (status = 400, description = "The body is not JSON or the context is invalid (`INVALID_CONTEXT`), or the flag cannot be evaluated for it.", body = crate::openapi::shapes::OfrepError),
        (status = 413, description = "The body is over the size limit (`GENERAL`).", body = crate::openapi::shapes::OfrepError),
        (status = 415, description = "The body is not `application/json` (`GENERAL`).", body = crate::openapi::shapes::OfrepError),
        (status = 429, description = "Over the rate limit of this key or address; retry after `Retry-After` seconds.", headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
// Each argument is an extractor (the guard, the quota, the substates).
#[allow(clippy::too_many_arguments)]
async fn evaluate_one(
    _: RequireSdk,
    OfrepQuota(metrics): OfrepQuota,
    State(flags): State<FlagCache>,
    State(decider): State<Decider>,
    State(triggers): State<Triggers>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let ctx_value = match admit(&headers, body, Some(&key)) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let loaded = flags.snapshot();
    let now = decider.clock.now();
    let ctx = EvalContext::new(&ctx_value, now.timestamp());
    let r = loaded.set.evaluate(&key, &ctx);
    if matches!(&r.error, Some(e) if e.code == ErrorCode::FlagNotFound) {
        let tk = ctx_value.get("targetingKey").and_then(|v| v.as_str());
        if let Some(a) = triggers.evaluate(&key, tk, now).await {
            let item = trigger_item(&key, &a);
            metrics.count_evaluation(&key, true, item_reason(&item));
            return json_response(
                StatusCode::OK,
                serde_json::to_vec(&item).unwrap_or_default(),
            );
        }
    }
    let decision = trial_decision(&decider, &key, &r, &ctx).await;
    if let Some(d) = &decision {
        decider
            .exposures
            .record(d, ExposureSource::Single, now)
            .await;
    }
    let trial = arm_value(&loaded.set, &key, decision.as_ref());
    let status = r
        .error
        .as_ref()
        .map(|e| status_for(e.code))
        .unwrap_or(StatusCode::OK);
    let item = item(&key, &r, trial);
    count(&metrics, &loaded.set, &key, &item);
    let body = serde_json::to_vec(&item).unwrap_or_default();
    json_response(status, body)
}

#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: &'a Metadata,
}

/// The bulk ETag names the flag-set revision, the trials version, the
/// context it was evaluated for and, when answers depend on the time, the
/// instant until which they hold (`valid_until`, Unix seconds: the next
/// stepped-wedge crossover, ramp step or schedule bound of a running trial,
/// or the next second when a rule reads `$flagd.timestamp`). The same
/// context at the same revision before that instant gives the same answer,
/// so the client may keep its cache (304); from that instant on the ETag is
/// another one.
fn bulk_etag(
    revision: i64,
    trials_version: i64,
    context_body: &[u8],
    valid_until: Option<i64>,
) -> String {
    let digest = Sha256::digest(context_body);
    let until = valid_until.map(|t| format!("-t{t}")).unwrap_or_default();
    format!(
        "\"{revision}-{trials_version}-{}{until}\"",
        hex::encode(&digest[..8])
    )
}

/// When the bulk answers at `now` stop holding (see [`bulk_etag`]).
fn valid_until(set: &FlagSet, trials: &RunningTrials, now: i64) -> Option<i64> {
    let clock = set.reads_clock().then_some(now.saturating_add(1));
    trials.next_change(now).into_iter().chain(clock).min()
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "ofrep",
    operation_id = "ofrepEvaluateFlags",
    summary = "Evaluate every flag (OFREP bulk)",
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of an earlier answer: 304 while it still holds."),
    ),
    request_body = crate::openapi::shapes::OfrepRequest,
    responses(
        (status = 200, description = "Every flag, resolved or failed.", body = crate::openapi::shapes::OfrepBulk, headers(("ETag" = String, description = "Names the revision, trials version, context and validity."))),
        (status = 304, description = "The answer named by `If-None-Match` still holds."),
        (status = 400, description = "The body is not JSON or the context is invalid (`INVALID_CONTEXT`), or the flag cannot be evaluated for it.", body = crate::openapi::shapes::OfrepError),
        (status = 413, description = "The body is over the size limit (`GENERAL`).", body = crate::openapi::shapes::OfrepError),
        (status = 415, description = "The body is not `application/json` (`GENERAL`).", body = crate::openapi::shapes::OfrepError),
        (status = 429, description = "Over the rate limit of this key or address; retry after `Retry-After` seconds.", headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
async fn evaluate_bulk(
    _: RequireSdk,
    OfrepQuota(metrics): OfrepQuota,
    State(flags): State<FlagCache>,
    State(decider): State<Decider>,
    State(triggers): State<Triggers>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let ctx_value = match admit(&headers, body, None) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let loaded = flags.snapshot();
    let trials = decider.trials.current();
    let mut canonical_ctx = serde_json::to_vec(&ctx_value).unwrap_or_default();
    let now = decider.clock.now();
    // Survey-trigger flags (none defined in the flag set) answer by the
    // unit's standing: their answers go into the ETag's digest.
    let tk = ctx_value.get("targetingKey").and_then(|v| v.as_str());
    let mut trigger_answers = triggers.evaluate_all(tk, now).await;
    trigger_answers.retain(|(k, _)| loaded.set.get(k).is_none());
    for (k, a) in &trigger_answers {
        canonical_ctx.extend_from_slice(k.as_bytes());
        canonical_ctx.extend_from_slice(a.variant().as_bytes());
        canonical_ctx.extend(serde_json::to_vec(&a.value).unwrap_or_default());
    }
    // Trials and the clock change the answer too: the trials version and
    // the instant of the next change are part of the ETag.
    let until = valid_until(&loaded.set, &trials, now.timestamp());
    let until = match (!trigger_answers.is_empty())
        .then(|| triggers.next_change(now.timestamp()))
        .flatten()
    {
        Some(t) => Some(until.map_or(t, |u| u.min(t))),
        None => until,
    };
    let etag = bulk_etag(loaded.revision, trials.version, &canonical_ctx, until);
    if etag_matches(&headers, &etag) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return resp;
    }
    let ctx = EvalContext::new(&ctx_value, now.timestamp());
    let keys: Vec<&str> = loaded.set.keys().collect();
    let results: Vec<Resolution<'_>> = keys.iter().map(|k| loaded.set.evaluate(k, &ctx)).collect();
    let mut decisions: Vec<Option<Decision>> = Vec::with_capacity(keys.len());
    for (k, r) in keys.iter().zip(results.iter()) {
        let d = if trials.by_flag.contains_key(*k) {
            trial_decision(&decider, k, r, &ctx).await
        } else {
            None
        };
        if let Some(d) = d.as_ref().filter(|d| d.trial.spec.exposure.bulk) {
            decider.exposures.record(d, ExposureSource::Bulk, now).await;
        }
        decisions.push(d);
    }
    let mut items: Vec<Item<'_>> = keys
        .iter()
        .zip(results.iter())
        .zip(decisions.iter())
        .map(|((k, r), d)| item(k, r, arm_value(&loaded.set, k, d.as_ref())))
        .collect();
    for (k, it) in keys.iter().zip(items.iter()) {
        count(&metrics, &loaded.set, k, it);
    }
    for (k, a) in &trigger_answers {
        let it = trigger_item(k, a);
        metrics.count_evaluation(k, true, item_reason(&it));
        items.push(it);
    }
    let body = serde_json::to_vec(&Bulk {
        flags: items,
        metadata: loaded.set.metadata(),
    })
    .unwrap_or_default();
    let mut resp = json_response(StatusCode::OK, body);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}
