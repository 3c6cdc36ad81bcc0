//! Flags: evaluation over OFREP ([`ofrep`]), the management API ([`api`]),
//! the changes both the API and the CLI make ([`service`], with which cohort
//! overrides an import keeps, [`overrides`], and how a change to a trial's
//! flag is worded as a deviation, [`deviations`]), and the compiled set this
//! replica serves ([`cache`]).

pub mod api;
pub mod cache;
pub mod deviations;
pub mod ofrep;
pub mod overrides;
pub mod service;

pub use api::FlagsContext;
pub use cache::{FlagCache, FlagSetProblem, LoadedFlags};
