//! RFC 9457 problem details (`application/problem+json`) and the server's one
//! error type.
//!
//! Hand-written rather than taken from `http-api-problem`: we need a fixed set
//! of extension members (`errors` with JSON pointers to the offending fields,
//! `currentRevision`) and a direct `IntoResponse` for axum 0.8; the type is
//! forty lines.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commonlab_store::StoreError;
use serde::Serialize;

/// One offending field: a JSON pointer into the request (or the file) and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    #[serde(skip)]
    retry_after: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            type_uri: format!("https://commonlab.dev/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            current_revision: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
            line: None,
            column: None,
        });
        self
    }

    pub fn with_field_error(mut self, e: FieldError) -> Self {
        self.errors.push(e);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }
    pub fn validation(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request is not valid",
            detail,
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn precondition_failed(detail: impl Into<String>, current: Option<i64>) -> Self {
        let mut p = Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "stale-revision",
            "The resource changed since you read it",
            detail,
        );
        p.current_revision = current;
        p
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        p.retry_after = Some(1);
        p
    }
    /// 429 with `Retry-After: retry_after_secs` (at least 1).
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u32) -> Self {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            detail,
        );
        p.retry_after = Some(retry_after_secs.max(1));
        p
    }
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an unexpected error occurred; it has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { expected, current } => Problem::precondition_failed(
                format!("expected revision {expected}, but the current revision is {current}"),
                Some(current),
            ),
            StoreError::NotFound(what) => Problem::not_found(format!("{what} not found")),
            StoreError::AlreadyExists(what) => Problem::conflict(format!("{what} already exists")),
            StoreError::InvalidState(why) => Problem::conflict(why),
            StoreError::SpecConflict { expected, current } => Problem::precondition_failed(
                format!("the draft changed since you read it: expected spec {expected}, current is {current}"),
                None,
            ),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "database unavailable");
                Problem::unavailable("the database is unavailable; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}
