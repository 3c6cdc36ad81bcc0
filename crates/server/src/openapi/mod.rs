//! The OpenAPI 3.1 document of the whole JSON API, generated from the code
//! and served at `GET /api/v1/openapi.json` (and, for older clients, at
//! `GET /openapi.json`, the same bytes). No authentication.
//!
//! How it is made ([`build`]):
//! 1. `utoipa` collects every handler's `#[utoipa::path]` annotation (the
//!    list in [`ApiDoc`]) and the `ToSchema` derives of the request types
//!    they name.
//! 2. Bodies the handlers build as JSON values, or whose types live in
//!    crates without `utoipa` (OFREP items, analyses, reports, surveys,
//!    telemetry), are named by a marker type of [`shapes`] and described in
//!    the files of `shapes/` beside this file; those shapes replace the
//!    markers' placeholders, and the server's tests check real responses against
//!    them.
//! 3. The route table ([`crate::route_table`]) adds each operation's
//!    security (the role of its guard, as bearer or `X-API-Key`) and its
//!    401, 403 and 503 answers: who may call a route is written once, in its
//!    handler's signature.
//!
//! `docs/openapi.json` is a committed copy for readers; the test
//! `openapi::committed_copy_is_fresh` fails when it is stale and says how
//! to regenerate it (`COMMONLAB_BLESS=1 cargo test -p commonlab-server
//! --test api committed_copy`).

pub mod errors;
pub mod shapes;

use crate::route::{Access, Public, Route};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use commonlab_core::auth::Role;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use utoipa::OpenApi;

/// The route of the document, and its older alias.
pub const PATH: &str = "/api/v1/openapi.json";
pub const LEGACY_PATH: &str = "/openapi.json";

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
{
    vec![
        Route::get(PATH, document_route),
        Route::get(LEGACY_PATH, legacy_document_route),
    ]
}

/// The document as served: pretty JSON, built once per process.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = serde_json::to_string_pretty(&build()).expect("a JSON value serialises");
        s.push('\n');
        s
    })
}

fn served() -> Response {
    let mut resp = document().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "openapi",
    summary = "This document (no authentication)",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
async fn document_route(_: Public) -> Response {
    served()
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "meta", operation_id = "openapiLegacy",
    summary = "This document at its older address (the same bytes)",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
async fn legacy_document_route(_: Public) -> Response {
    served()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Commonlab API",
        description = "Generated from the server's code (`commonlab-server`, module `openapi`): \
every route of the route table that answers JSON. Errors are RFC 9457 problem details \
(`application/problem+json`) naming the offending field as a JSON pointer; OFREP routes \
answer OFREP's error bodies. Roles include the ones below them: admin > researcher > \
developer > sdk; each operation's `security` names the least role that may call it. \
The survey pages (`/s/...`) and the web console (`/console/...`) are HTML and not described here (docs/surveys.md, docs/console.md).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8080")),
    paths(
        document_route,
        legacy_document_route,
        crate::health::healthz,
        crate::health::readyz,
        crate::health::metrics,
        crate::flags::ofrep::evaluate_one,
        crate::flags::ofrep::evaluate_bulk,
        crate::flags::api::list_flags,
        crate::flags::api::create_flag,
        crate::flags::api::get_flag,
        crate::flags::api::update_flag,
        crate::flags::api::delete_flag,
        crate::flags::api::set_state,
        crate::flags::api::put_cohort,
        crate::flags::api::delete_cohort,
        crate::flags::api::flag_history,
        crate::flags::api::set_history,
        crate::flags::api::export,
        crate::flags::api::import,
        crate::keys::list,
        crate::keys::create,
        crate::keys::revoke,
        crate::trials::api::list,
        crate::trials::api::create,
        crate::trials::api::validate,
        crate::trials::api::show,
        crate::trials::api::update_draft,
        crate::trials::api::amend,
        crate::trials::api::assignments,
        crate::trials::api::analysis,
        crate::trials::report::report,
        crate::trials::api::lifecycle,
        crate::trials::api::exposure,
        crate::events::api::ingest,
        crate::units::erase,
        crate::units::set_consent,
        crate::units::consent_history,
        crate::surveys::api::list_instruments,
        crate::surveys::api::publish,
        crate::surveys::api::list_campaigns,
        crate::surveys::api::create_campaign,
        crate::surveys::api::show_campaign,
        crate::surveys::api::links,
        crate::surveys::api::results,
        crate::surveys::api::export_campaign,
        crate::surveys::api::trial_response,
    ),
    tags(
        (name = "ofrep", description = "OpenFeature Remote Evaluation Protocol (role sdk)."),
        (name = "flags", description = "Flag management."),
        (name = "keys", description = "API keys (role admin)."),
        (name = "trials", description = "Trials: files, lifecycle, analysis, reports, exposures."),
        (name = "telemetry", description = "Event ingestion, consent and erasure."),
        (name = "surveys", description = "Survey instruments, campaigns and results."),
        (name = "meta", description = "Health, metrics and this document."),
    ),
)]
pub struct ApiDoc;

/// The document: utoipa's output, the hand-described shapes in place of
/// their markers, and each operation's security and 401/403 answers from
/// the route table.
pub fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    doc["openapi"] = json!("3.1.0");
    shapes::merge(&mut doc);
    secure(&mut doc, &crate::route_table());
    doc
}

/// Adds to each operation of `table` its security and, for a route that
/// needs a key, its 401, 403 and 503 answers (the keys and what they guard
/// are in the database).
fn secure(doc: &mut Value, table: &[Route<crate::AppState>]) {
    for route in table {
        let method = route.method().as_str().to_ascii_lowercase();
        let Some(op) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}",
                route.path().replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let Access::Role(role) = route.access() else {
            continue;
        };
        let role = role.as_str();
        op.insert(
            "security".into(),
            json!([{ "bearer": [role] }, { "apiKey": [role] }]),
        );
        let responses = op
            .entry("responses")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("responses is an object");
        let answers = [
            ("401", "Unauthorized"),
            ("403", "Forbidden"),
            ("503", "Unavailable"),
        ];
        for (status, name) in answers {
            if status == "403" && role == Role::Sdk.as_str() {
                continue; // no key is below sdk
            }
            responses
                .entry(status)
                .or_insert_with(|| json!({ "$ref": format!("#/components/responses/{name}") }));
        }
    }
}
