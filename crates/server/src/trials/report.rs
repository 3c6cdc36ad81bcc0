//! `GET /api/v1/trials/{key}/report?format=`: the validation report of a
//! stored trial, the same content `commonlab report` writes
//! (`commonlab_report`; docs/reports.md): `json` (default, `results.json`),
//! `md` or `html` (one self-contained file).

use super::api::TrialsContext;
use crate::auth::RequireResearcher;
use crate::error::Error;
use crate::extract::ApiQuery;
use crate::problem::Problem;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use commonlab_report::document::Provenance;
use commonlab_report::{render, ReportError};
use commonlab_store::{Store, StoreError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    /// `json` (default), `md` or `html`.
    format: Option<String>,
    /// RFC 3339; default: the conclusion of a concluded trial, the stop of
    /// a stopped one, else now.
    as_of: Option<String>,
    /// Ask for a per-user p-value: refused (422) for community designs.
    #[serde(default)]
    per_user: bool,
}

#[utoipa::path(
    get,
    path = "/api/v1/trials/{key}/report",
    tag = "trials",
    operation_id = "trialReport",
    summary = "A stored trial's validation report",
    params(
        ("key" = String, Path, description = "The trial's key."),
        ("format" = Option<String>, Query, description = "`json` (default), `md` or `html`."),
        ("as_of" = Option<String>, Query, description = "RFC 3339 time to analyse at; default the conclusion of a concluded trial, the stop of a stopped one, else now."),
        ("per_user" = Option<bool>, Query, description = "Ask for a per-user p-value: refused with 422 (pointing at `/per_user`) for a trial that randomised communities."),
    ),
    responses(
        (status = 200, description = "The report.", content((crate::openapi::shapes::TrialReport = "application/json"), (String = "text/markdown"), (String = "text/html"))),
        (status = 404, description = "No such trial.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::QueryErrors,
    ),
)]
pub(super) async fn report(
    _: RequireResearcher,
    State(trials): State<TrialsContext>,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, Problem> {
    let format = q.format.as_deref().unwrap_or("json");
    let content_type = match format {
        "json" => "application/json",
        "md" => "text/markdown; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        other => {
            let detail = format!("format {other:?} is not one of json, md, html");
            return Err(Problem::validation(detail.clone()).with_field("/query/format", detail));
        }
    };
    let as_of = match q.as_of.as_deref() {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| {
                    let detail = format!("{s:?} is not an RFC 3339 date-time: {e}");
                    Problem::validation(detail.clone()).with_field("/query/as_of", detail)
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let body = render_report(
        &trials.store,
        &key,
        format,
        as_of,
        q.per_user,
        trials.clock.now(),
        trials.config.survey_min_cell,
    )
    .await?;
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// The report of trial `key` in `format` (`json`, `md` or `html`, checked
/// by the caller) as of `as_of` (default: [`commonlab_report::default_as_of`]
/// at `now`): the API's and the console's (`/console/trials/{key}/report`).
pub async fn render_report(
    store: &Store,
    key: &str,
    format: &str,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    per_user: bool,
    now: chrono::DateTime<chrono::Utc>,
    survey_min_cell: usize,
) -> Result<String, Error> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| Error::from(StoreError::NotFound(format!("trial '{key}'"))))?;
    let as_of = as_of.unwrap_or_else(|| commonlab_report::default_as_of(&record, now));
    let opts = commonlab_report::Options {
        as_of: Some(as_of),
        now,
        per_user,
        provenance: Provenance {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: Some(commonlab_report::GIT_COMMIT.to_string()),
            command: format!(
                "GET /api/v1/trials/{key}/report?format={format}&as_of={}",
                as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        },
    };
    let r = super::analysis::report(store, key, &opts, survey_min_cell).await?;
    let format = format.to_string();
    let rendered = tokio::task::spawn_blocking(move || -> Result<String, ReportError> {
        match format.as_str() {
            "md" => render::markdown(&r),
            "html" => render::html(&r),
            _ => render::results_json(&r),
        }
    })
    .await;
    match rendered {
        Ok(r) => Ok(r?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Unavailable("the server is shutting down".into()).into()),
    }
}
