//! The conditional changes of a trial row (see `Store::update_trial`): which
//! statuses each allows, its `UPDATE`, its event, and why it was refused.

use super::trial_columns;
use crate::{FlagSetAppend, MetricSnapshot, StoreError, TrialRecord, TrialStatus};

/// A conditional change of a trial row.
pub(crate) enum TrialUpdate<'a> {
    DraftSpec {
        expected_hash: &'a str,
        source: &'a str,
        canonical: &'a str,
        hash: &'a str,
        flag_key: &'a str,
    },
    Start {
        seed: i64,
        allocation: Option<&'a str>,
    },
    Status {
        from: &'a [TrialStatus],
        to: TrialStatus,
    },
    Amend {
        source: &'a str,
        canonical: &'a str,
        hash: &'a str,
    },
    /// To concluded, if the spec is still the one `snapshots` were computed
    /// under; the snapshots are stored in the same transaction.
    Conclude {
        from: &'a [TrialStatus],
        spec_hash: &'a str,
        version: i64,
        snapshots: &'a [MetricSnapshot],
        /// Recorded as a `deviation` event after the `conclude` one (a
        /// conclusion before the data were complete).
        deviation: Option<&'a str>,
        /// A flag-set revision appended in the same transaction (the
        /// conclusion ships an arm); its head having moved refuses the
        /// whole change.
        ship: Option<&'a FlagSetAppend<'a>>,
    },
}

impl TrialUpdate<'_> {
    fn allowed(&self) -> &[TrialStatus] {
        match self {
            TrialUpdate::DraftSpec { .. } | TrialUpdate::Start { .. } => &[TrialStatus::Draft],
            TrialUpdate::Status { from, .. } | TrialUpdate::Conclude { from, .. } => from,
            TrialUpdate::Amend { .. } => &[TrialStatus::Running, TrialStatus::Stopped],
        }
    }

    /// The `trial_events.action` recorded for the change.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            TrialUpdate::DraftSpec { .. } => "update",
            TrialUpdate::Start { .. } => "start",
            TrialUpdate::Status { to, .. } => to.action(),
            TrialUpdate::Amend { .. } => "amend",
            TrialUpdate::Conclude { .. } => "conclude",
        }
    }

    fn describe(&self) -> String {
        match self {
            TrialUpdate::DraftSpec { .. } => "updating the spec".to_string(),
            TrialUpdate::Start { .. } => "starting".to_string(),
            TrialUpdate::Status { to, .. } => format!("moving to {to}"),
            TrialUpdate::Amend { .. } => "amending".to_string(),
            TrialUpdate::Conclude { .. } => "concluding".to_string(),
        }
    }

    /// Why the change cannot apply to `current`; `None` if it now could.
    pub(crate) fn refusal(&self, key: &str, current: Option<&TrialRecord>) -> Option<StoreError> {
        let Some(trial) = current else {
            return Some(StoreError::NotFound(format!("trial '{key}'")));
        };
        let allowed = self.allowed();
        if !allowed.contains(&trial.status) {
            let needed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            return Some(StoreError::InvalidState(format!(
                "trial '{key}' is {}; {} needs {}",
                trial.status,
                self.describe(),
                needed.join(" or ")
            )));
        }
        if let TrialUpdate::DraftSpec { expected_hash, .. } = self {
            if trial.spec_hash != *expected_hash {
                return Some(StoreError::SpecConflict {
                    expected: expected_hash.to_string(),
                    current: trial.spec_hash.clone(),
                });
            }
        }
        if let TrialUpdate::Conclude {
            spec_hash, version, ..
        } = self
        {
            if trial.spec_hash != *spec_hash || trial.version != *version {
                return Some(StoreError::SpecConflict {
                    expected: format!("{spec_hash} (version {version})"),
                    current: format!("{} (version {})", trial.spec_hash, trial.version),
                });
            }
        }
        None
    }

    /// The conditional `UPDATE … RETURNING` the trial: `$1` key, `$2` at,
    /// then the variant's values in declaration order (`expected_hash`
    /// last).
    pub(crate) fn sql(&self) -> String {
        let cols = trial_columns!();
        match self {
            TrialUpdate::DraftSpec { .. } => format!(
                "UPDATE trials SET spec_source = $3, spec_canonical = $4, spec_hash = $5, \
                 flag_key = $6, updated_at = $2 \
                 WHERE key = $1 AND status = 'draft' AND spec_hash = $7 RETURNING {cols}"
            ),
            TrialUpdate::Start { .. } => format!(
                "UPDATE trials SET status = 'running', seed = $3, allocation = $4, \
                 started_at = $2, updated_at = $2 \
                 WHERE key = $1 AND status = 'draft' RETURNING {cols}"
            ),
            TrialUpdate::Status { from, to } => {
                // `Store::set_trial_status` never moves anything to draft.
                let stamp = match to {
                    TrialStatus::Running => ", started_at = COALESCE(started_at, $2)",
                    TrialStatus::Stopped => ", stopped_at = $2",
                    TrialStatus::Concluded => ", concluded_at = $2",
                    TrialStatus::Archived => ", archived_at = $2",
                    TrialStatus::Draft => "",
                };
                // Enum names only: safe to inline.
                let from: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
                format!(
                    "UPDATE trials SET status = '{to}', updated_at = $2{stamp} \
                     WHERE key = $1 AND status IN ({}) RETURNING {cols}",
                    from.join(", ")
                )
            }
            TrialUpdate::Amend { .. } => format!(
                "UPDATE trials SET spec_source = $3, spec_canonical = $4, spec_hash = $5, \
                 version = version + 1, updated_at = $2 \
                 WHERE key = $1 AND status IN ('running', 'stopped') RETURNING {cols}"
            ),
            TrialUpdate::Conclude { from, .. } => {
                // Enum names only: safe to inline.
                let from: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
                format!(
                    "UPDATE trials SET status = 'concluded', updated_at = $2, concluded_at = $2 \
                     WHERE key = $1 AND status IN ({}) AND spec_hash = $3 AND version = $4 \
                     RETURNING {cols}",
                    from.join(", ")
                )
            }
        }
    }

    /// The reason of a `deviation` event to record with the change.
    pub(crate) fn deviation(&self) -> Option<&str> {
        match self {
            TrialUpdate::Conclude { deviation, .. } => *deviation,
            _ => None,
        }
    }

    /// The flag-set revision to append with the change.
    pub(crate) fn ship(&self) -> Option<&FlagSetAppend<'_>> {
        match self {
            TrialUpdate::Conclude { ship, .. } => *ship,
            _ => None,
        }
    }

    /// The snapshots to store with the change.
    pub(crate) fn snapshots(&self) -> &[MetricSnapshot] {
        match self {
            TrialUpdate::Conclude { snapshots, .. } => snapshots,
            _ => &[],
        }
    }
}
