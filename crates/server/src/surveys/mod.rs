//! Surveys: the respondent's pages ([`pages`]), public behind a personal
//! link token; the management API ([`api`]: instruments, campaigns,
//! personal links, results, exports), the logic it shares with the CLI
//! ([`service`]), results ([`results`], pure), a trial's response across
//! its waves ([`waves`], pure), exports ([`export`], pure) and the
//! survey-trigger flags answered over OFREP ([`trigger`]).

pub mod api;
pub mod export;
pub mod pages;
pub mod results;
pub mod service;
pub mod trigger;
pub mod waves;

#[cfg(test)]
mod results_tests;
