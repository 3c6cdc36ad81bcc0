//! Commonlab's statistics engine: pure functions from sufficient statistics
//! (or per-unit / per-cluster values) to estimates with uncertainty. No IO,
//! no async, no global configuration; randomness comes from a seed the
//! caller passes.

/// Why a method gave no estimate. Never a silent NaN, never a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum StatsError {
    /// The input cannot support an estimate (e.g. "control arm has zero variance").
    #[error("{0}")]
    Degenerate(String),
    /// The input is malformed (e.g. negative counts, mismatched lengths).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

pub type Result<T> = std::result::Result<T, StatsError>;

pub mod analyze;
pub mod bayes;
pub mod cluster;
pub mod cuped;
pub mod cuped_strata;
pub mod dist;
pub mod effects;
pub mod multiple;
pub mod nonparametric;
pub mod omega;
pub mod permutation;
pub mod poststrat;
pub mod power;
pub mod randomization;
pub mod response;
pub mod rows;
pub mod rows_model;
pub mod sequential;
pub mod srm;
pub mod stepped_wedge;
pub mod survey;
pub mod switchback;
