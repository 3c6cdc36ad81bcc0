//! The server crate's error type, shared by the HTTP handlers and the CLI, and
//! its rendering as problem+json.

use crate::problem::{FieldError, Problem};
use commonlab_core::experiments::SpecError;
use commonlab_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("flag '{0}' not found")]
    FlagNotFound(String),
    #[error("flag '{0}' already exists")]
    FlagExists(String),
    #[error("{message}")]
    Invalid {
        message: String,
        issues: Vec<FieldError>,
    },
    #[error(
        "'{what}' changed since you read it: you sent {given}, the current version is {current}"
    )]
    Stale {
        what: String,
        given: String,
        current: String,
        revision: i64,
    },
    #[error("this change needs an If-Match header with the ETag you read ({0})")]
    PreconditionRequired(&'static str),
    #[error("a reason is required for every change (it goes into the audit log)")]
    ReasonRequired,
    #[error("the flag set is being changed by others too often; retry")]
    Busy,
    /// A trial concluded before its data are complete, without `force`.
    #[error("{0}")]
    DataIncomplete(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn invalid(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Error::Invalid {
            issues: vec![FieldError {
                pointer: pointer.into(),
                detail: message.clone(),
                line: None,
                column: None,
            }],
            message,
        }
    }
}

/// A trial file's errors: the crate's validation error, every field with
/// its position kept.
impl From<Vec<SpecError>> for Error {
    fn from(errors: Vec<SpecError>) -> Self {
        let message = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Error::Invalid {
            message,
            issues: errors
                .into_iter()
                .map(|e| FieldError {
                    pointer: e.field,
                    detail: e.message,
                    line: Some(e.line),
                    column: Some(e.column),
                })
                .collect(),
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::FlagNotFound(_) => Problem::not_found(msg),
            Error::FlagExists(_) => Problem::conflict(msg),
            Error::Invalid { issues, .. } => {
                let mut p = Problem::validation(msg);
                p.errors = issues;
                p
            }
            Error::Stale { revision, .. } => Problem::precondition_failed(msg, Some(revision)),
            Error::PreconditionRequired(_) => Problem::new(
                axum::http::StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "If-Match required",
                msg,
            ),
            Error::ReasonRequired => Problem::validation(msg).with_field("/reason", "required"),
            Error::Busy => Problem::unavailable(msg),
            Error::DataIncomplete(_) => Problem::conflict(msg).with_field(
                "/force",
                "the data are not complete: send \"force\": true with a reason to conclude anyway (recorded as a deviation)",
            ),
            Error::Store(s) => s.into(),
        }
    }
}
