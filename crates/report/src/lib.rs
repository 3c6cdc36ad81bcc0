//! Commonlab's reports: a stored trial analysed as its design requires
//! ([`analysis`]); rendering to HTML, Markdown and JSON comes next.
//!
//! Reads the store (through its methods: no SQL here) and runs the
//! statistics engine; never HTTP, never the server or the CLI.

pub mod analysis;

use commonlab_core::experiments::SpecError;
use commonlab_store::StoreError;

/// What can go wrong while analysing a stored trial.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored plan no longer parses (a newer Commonlab's file, or a
    /// damaged row).
    #[error("the stored trial does not parse: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Spec(Vec<SpecError>),
}

impl From<Vec<SpecError>> for ReportError {
    fn from(e: Vec<SpecError>) -> Self {
        ReportError::Spec(e)
    }
}
