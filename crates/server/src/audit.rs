//! Who changes what and why: the actor, reason and time that every change
//! (flags, trials, keys, erasures) records in its audit log.

use crate::clock::Clock;
use chrono::{DateTime, Utc};

/// Who changes what and why.
#[derive(Debug, Clone)]
pub struct ChangeMeta<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

impl<'a> ChangeMeta<'a> {
    /// A change by `actor` for `reason`, now by `clock`.
    pub fn now(actor: &'a str, reason: &'a str, clock: &Clock) -> Self {
        ChangeMeta {
            actor,
            reason,
            at: clock.now(),
        }
    }
}
