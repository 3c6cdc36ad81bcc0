//! Commonlab's pure domain: flag definitions in flagd's format, their compiled
//! targeting, evaluation, and the API-key model. No IO, no async: the clock,
//! randomness and state are passed in by the caller.

pub mod auth;
pub mod experiments;
pub mod flags;
pub mod privacy;
pub mod surveys;
mod time;
pub(crate) mod toml_reader;

pub use flags::{
    ErrorCode, EvalContext, EvalError, Flag, FlagSet, FlagState, FlagValue, LoadMode, LoadWarning,
    Metadata, ParseError, Reason, Resolution, ValueType,
};
