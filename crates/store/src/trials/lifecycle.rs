//! Trial lifecycle changes that must see the other trials, or the metric
//! snapshot, in the same transaction (issue 10, item 12).
//!
//! Every trial change (`Store::update_trial`) first bumps the `trials` row
//! of `change_counters`, which on PostgreSQL takes that row's lock until the
//! transaction ends: trial changes are serialised across every process, and
//! a transaction that reads the running trials after the bump sees every
//! change committed before it and none that could commit in between. On
//! SQLite `BEGIN IMMEDIATE` gives the same. So a start (or resume) that
//! checks for overlaps with running trials is atomic with the check: two
//! replicas starting overlapping trials at once get one start and one
//! refusal. Concluding stores the metric snapshots in the transaction that
//! concludes, conditional on the spec they were computed under.

use super::{Shipped, TrialUpdate};
use crate::{
    FlagSetAppend, FlagSetRevision, MetricSnapshot, Store, StoreError, TrialChange, TrialRecord,
    TrialStatus,
};

/// Decides whether a trial may run beside the running trials it is given
/// (every running trial but itself): `Some(reason)` refuses. Called inside
/// the transaction that starts (or resumes) the trial; keep it quick and
/// pure.
pub type OverlapCheck<'a> = dyn Fn(&[TrialRecord]) -> Option<String> + Send + Sync + 'a;

impl Store {
    /// [`Store::start_trial`], refused with [`StoreError::InvalidState`]
    /// carrying the reason `overlaps` gives for the running trials, which
    /// it is given in the same transaction as the start, under the lock
    /// every trial change takes: no other trial can start in between.
    pub async fn start_trial_exclusive(
        &self,
        key: &str,
        seed: i64,
        allocation: Option<&str>,
        change: &TrialChange<'_>,
        overlaps: &OverlapCheck<'_>,
    ) -> Result<TrialRecord, StoreError> {
        let update = TrialUpdate::Start { seed, allocation };
        self.update_trial_checked(key, &update, change, Some(overlaps))
            .await
    }

    /// Stopped → running, checked against the running trials like
    /// [`Store::start_trial_exclusive`] (another trial may have started on
    /// the same units while this one was stopped).
    pub async fn resume_trial_exclusive(
        &self,
        key: &str,
        change: &TrialChange<'_>,
        overlaps: &OverlapCheck<'_>,
    ) -> Result<TrialRecord, StoreError> {
        let update = TrialUpdate::Status {
            from: &[TrialStatus::Stopped],
            to: TrialStatus::Running,
        };
        self.update_trial_checked(key, &update, change, Some(overlaps))
            .await
    }

    /// Concludes a trial whose status is one of `from`, storing `snapshots`
    /// (replacing any earlier ones of the same metrics) in the same
    /// transaction, if the trial's spec is still `spec_hash` at `version`,
    /// the plan the snapshots were computed under. Otherwise nothing is
    /// written: [`StoreError::InvalidState`] naming the status, or
    /// [`StoreError::SpecConflict`] (the trial was amended meanwhile:
    /// compute the snapshots again).
    pub async fn conclude_trial(
        &self,
        key: &str,
        from: &[TrialStatus],
        spec_hash: &str,
        version: i64,
        snapshots: &[MetricSnapshot],
        change: &TrialChange<'_>,
    ) -> Result<TrialRecord, StoreError> {
        let ends = (None, None);
        self.conclude(key, from, spec_hash, version, snapshots, change, ends)
            .await
            .map(|(trial, _)| trial)
    }

    /// [`Store::conclude_trial`] before the trial's data were complete:
    /// the `conclude` event is followed, in the same transaction, by a
    /// `deviation` event with `deviation` as its reason (not empty), so
    /// the report shows the early conclusion as a departure from the plan.
    #[allow(clippy::too_many_arguments)]
    pub async fn conclude_trial_with_deviation(
        &self,
        key: &str,
        from: &[TrialStatus],
        spec_hash: &str,
        version: i64,
        snapshots: &[MetricSnapshot],
        change: &TrialChange<'_>,
        deviation: &str,
    ) -> Result<TrialRecord, StoreError> {
        let ends = (Some(deviation), None);
        self.conclude(key, from, spec_hash, version, snapshots, change, ends)
            .await
            .map(|(trial, _)| trial)
    }

    /// Every conclusion: `ends` is the deviation to record (not empty)
    /// and the flag-set revision to append, each if any.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        key: &str,
        from: &[TrialStatus],
        spec_hash: &str,
        version: i64,
        snapshots: &[MetricSnapshot],
        change: &TrialChange<'_>,
        (deviation, ship): (Option<&str>, Option<&FlagSetAppend<'_>>),
    ) -> Result<(TrialRecord, Option<Shipped>), StoreError> {
        if from.is_empty() || from.contains(&TrialStatus::Draft) {
            return Err(StoreError::InvalidState(format!(
                "trial '{key}': only a started trial can be concluded"
            )));
        }
        if deviation.is_some_and(|d| d.trim().is_empty()) {
            return Err(StoreError::InvalidState(format!(
                "trial '{key}': a deviation needs a reason"
            )));
        }
        let update = TrialUpdate::Conclude {
            from,
            spec_hash,
            version,
            snapshots,
            deviation,
            ship,
        };
        self.update_trial_shipping(key, &update, change, None).await
    }

    /// [`Store::conclude_trial`] (or, with `deviation`,
    /// [`Store::conclude_trial_with_deviation`]) and the flag-set revision
    /// `ship` in ONE transaction: both are written or neither. Refused as
    /// a conclusion is; [`StoreError::Conflict`] with the current head if
    /// the flag set's head is no longer `ship.expected` (compute the
    /// revision again); any error appending the revision rolls the
    /// conclusion back. Returns the concluded trial, the revision and the
    /// trials that recorded a deviation for it.
    #[allow(clippy::too_many_arguments)]
    pub async fn conclude_trial_and_ship(
        &self,
        key: &str,
        from: &[TrialStatus],
        spec_hash: &str,
        version: i64,
        snapshots: &[MetricSnapshot],
        change: &TrialChange<'_>,
        deviation: Option<&str>,
        ship: &FlagSetAppend<'_>,
    ) -> Result<(TrialRecord, FlagSetRevision, Vec<String>), StoreError> {
        let ends = (deviation, Some(ship));
        let (trial, shipped) = self
            .conclude(key, from, spec_hash, version, snapshots, change, ends)
            .await?;
        let (revision, noted) = shipped.ok_or_else(|| {
            StoreError::InvalidState(format!("trial '{key}': the flag change was not written"))
        })?;
        Ok((trial, revision, noted))
    }
}
