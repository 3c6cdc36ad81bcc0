//! Flags: evaluation over OFREP ([`ofrep`], rate-limited per key and per
//! address by [`limits`]), the management API ([`api`]),
//! and the changes both the API and the CLI make ([`service`], with which
//! cohort overrides an import keeps, [`overrides`], and how a change to a
//! trial's flag is worded as a deviation, [`deviations`]). The stored and
//! served set they work on is [`crate::flag_set`].

pub mod api;
pub mod deviations;
pub mod limits;
pub mod ofrep;
pub mod overrides;
pub mod service;

pub use api::FlagsContext;
