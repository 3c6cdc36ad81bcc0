//! Trials: the lifecycle ([`service`], shared with the CLI), the API
//! ([`api`]), and the evaluation path: the cache of running trials
//! ([`cache`]), the decision of which arm a unit gets ([`decision`]), the
//! consent and erasure caches about units it reads ([`unit_cache`]), and
//! the exposure writer ([`exposure`], with its bounded de-duplication,
//! [`dedup`], and the tally of exposures a community design serves per
//! period, [`served`]). [`analysis`] turns a stored trial's metrics into the
//! statistics engine's input; [`overview`] is a trial as shown (API and
//! `experiments show`), with where it is in its schedule.

pub mod analysis;
pub mod api;
pub mod cache;
pub mod decision;
pub mod dedup;
pub mod exposure;
pub mod overview;
pub mod report;
pub mod served;
pub mod service;
pub mod ship;
pub mod unit_cache;

pub use cache::{Allocation, RunningTrial, RunningTrials, TrialCache};
pub use decision::Decider;
pub use exposure::{run_writer, Decision, ExposureSink, PendingExposure};
pub use service::ACTIONS;
pub use unit_cache::UnitCache;
