//! The exposures a community design's evaluations serve, counted per
//! (trial, community, period, arm served) in memory and added to the store
//! by the exposure writer ([`super::exposure::run_writer`]) about once a
//! second: no write per evaluation, one upsert per flush
//! (`Store::add_period_exposures`). The schedule-adherence check reads
//! them (`report::analysis::quality`).
//!
//! Bounded: only the communities a trial's design lists are counted, in
//! the trial's periods, so the tally holds at most communities × periods ×
//! variants of the flag entries per running trial, whatever the contexts
//! say (`docs/security.md`).

use super::cache::RunningTrial;
use chrono::{DateTime, Utc};
use commonlab_store::{merge_period_exposures, PeriodExposures};
use std::collections::HashMap;
use std::sync::Mutex;

/// One arm served in one (trial, community, period).
#[derive(Debug)]
struct ArmCount {
    arm: String,
    n: i64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

#[derive(Debug)]
struct Cell {
    community: String,
    arms: Vec<ArmCount>,
}

/// Counts not yet in the store, keyed by (trial id, index of the community
/// in the design's list, period index).
#[derive(Debug, Default)]
pub struct ServedTally {
    cells: Mutex<HashMap<(i64, u32, u32), Cell>>,
    /// Counts taken but not written (the store was unavailable).
    unwritten: Mutex<Vec<PeriodExposures>>,
}

impl ServedTally {
    /// Counts one exposure of `community` served `arm` at `at`, if the
    /// trial is a community design listing `community` and `at` is in one
    /// of its periods (otherwise nothing). Allocates only the first time a
    /// (trial, community, period, arm) is seen since the last flush.
    pub fn add(&self, trial: &RunningTrial, community: &str, arm: &str, at: DateTime<Utc>) {
        let Some(communities) = trial.spec.design.communities() else {
            return;
        };
        let Some(c) = communities.iter().position(|c| c == community) else {
            return;
        };
        let ts = at.timestamp();
        let Some(p) = trial.periods.iter().find(|p| ts >= p.start && ts < p.end) else {
            return;
        };
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let cell = cells
            .entry((trial.id, c as u32, p.index))
            .or_insert_with(|| Cell {
                community: community.to_string(),
                arms: Vec::new(),
            });
        match cell.arms.iter_mut().find(|a| a.arm == arm) {
            Some(a) => {
                a.n += 1;
                a.first = a.first.min(at);
                a.last = a.last.max(at);
            }
            None => cell.arms.push(ArmCount {
                arm: arm.to_string(),
                n: 1,
                first: at,
                last: at,
            }),
        }
    }

    /// Takes every count (the tally is empty afterwards), as store rows.
    pub fn take(&self) -> Vec<PeriodExposures> {
        let cells = std::mem::take(&mut *self.cells.lock().unwrap_or_else(|e| e.into_inner()));
        let unwritten =
            std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|e| e.into_inner()));
        cells
            .into_iter()
            .flat_map(|((trial_id, _, period), cell)| {
                let community = cell.community;
                cell.arms.into_iter().map(move |a| PeriodExposures {
                    trial_id,
                    community: community.clone(),
                    period: i64::from(period),
                    arm: a.arm,
                    exposures: a.n,
                    first: a.first,
                    last: a.last,
                })
            })
            .chain(unwritten)
            .collect()
    }

    /// Puts back counts that could not be written: the next
    /// [`ServedTally::take`] returns them again (merged, so they take one
    /// row per key however often they come back).
    pub fn restore(&self, rows: Vec<PeriodExposures>) {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|e| e.into_inner());
        let merged = merge_period_exposures(unwritten.drain(..).chain(rows));
        *unwritten = merged;
    }

    /// Exposures counted and not yet written.
    pub fn pending(&self) -> i64 {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let counted: i64 = cells.values().flat_map(|c| &c.arms).map(|a| a.n).sum();
        drop(cells);
        let unwritten = self.unwritten.lock().unwrap_or_else(|e| e.into_inner());
        counted + unwritten.iter().map(|r| r.exposures).sum::<i64>()
    }
}
