//! When a started trial's data are complete, so that it may be concluded
//! without a recorded deviation (`docs/experiments.md`, "Concluding").
//!
//! Concluding stores the metric snapshot the trial is analysed from once
//! its raw events are gone; a unit whose window is still open then is left
//! out of it for good. So the data are complete:
//!
//! - for designs that randomise members (`hash`, `blocked`): when the
//!   longest metric window has closed for the last units the trial could
//!   expose, i.e. at the end of exposure (the schedule's end, or the stop
//!   of a stopped trial, whichever is first) plus the end of the longest
//!   window after first exposure;
//! - for designs that randomise communities (`cluster`, `stepped_wedge`):
//!   when the last period closes, at the end of exposure.
//!
//! A trial that could never expose anyone (stopped, or started, after its
//! schedule's end or before its start) is never complete: concluding it
//! is always a deviation. Pure: times are Unix seconds passed in.

use super::{format_duration, format_rfc3339, Design, TrialSpec};

/// When, and by which rule, a trial's data are complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Members randomised: the longest window (`metric`'s, ending
    /// `window_end_secs` after first exposure) closes at `at` for units
    /// exposed up to `exposure_end`.
    Windows {
        at: i64,
        exposure_end: i64,
        metric: String,
        window_end_secs: i64,
    },
    /// Communities randomised: the last period closes at `at`.
    LastPeriod { at: i64 },
    /// No unit could be exposed: exposure would have ended (`exposure_end`)
    /// no later than it could begin (`exposure_start`).
    Never {
        exposure_start: i64,
        exposure_end: i64,
    },
}

impl Completion {
    /// The time the data are complete; `None` if they never will be.
    pub fn at(&self) -> Option<i64> {
        match self {
            Completion::Windows { at, .. } | Completion::LastPeriod { at } => Some(*at),
            Completion::Never { .. } => None,
        }
    }

    /// Whether the data are complete at `now`.
    pub fn is_complete(&self, now: i64) -> bool {
        self.at().is_some_and(|at| now >= at)
    }

    /// The rule in words, e.g. "the longest metric window
    /// (`retention`, 28d after first exposure) closes at
    /// 2027-01-29T00:00:00Z for the last units exposed (exposure ends at
    /// 2027-01-01T00:00:00Z)".
    pub fn describe(&self) -> String {
        match self {
            Completion::Windows {
                at,
                exposure_end,
                metric,
                window_end_secs,
            } => format!(
                "the longest metric window ('{metric}', {} after first exposure) closes at {} \
                 for the last units exposed (exposure ends at {})",
                format_duration(*window_end_secs),
                format_rfc3339(*at),
                format_rfc3339(*exposure_end)
            ),
            Completion::LastPeriod { at } => {
                format!("the last period closes at {}", format_rfc3339(*at))
            }
            Completion::Never {
                exposure_start,
                exposure_end,
            } => format!(
                "no unit can be exposed: exposure ends at {} and could only begin at {}",
                format_rfc3339(*exposure_end),
                format_rfc3339(*exposure_start)
            ),
        }
    }
}

impl TrialSpec {
    /// When the trial's data are complete (see the module documentation),
    /// for a trial started at `started_at` and, if it is stopped now,
    /// stopped at `stopped_at` (the latest stop; `None` while it runs).
    pub fn completion(&self, started_at: i64, stopped_at: Option<i64>) -> Completion {
        let exposure_start = started_at.max(self.schedule.start);
        let exposure_end = stopped_at.map_or(self.schedule.end, |s| s.min(self.schedule.end));
        if exposure_end <= exposure_start {
            return Completion::Never {
                exposure_start,
                exposure_end,
            };
        }
        match self.design {
            Design::Cluster { .. } | Design::SteppedWedge { .. } => {
                Completion::LastPeriod { at: exposure_end }
            }
            // The last period may end before the schedule does.
            Design::Switchback { ref boundaries, .. } => Completion::LastPeriod {
                at: exposure_end.min(*boundaries.last().expect("validated")),
            },
            Design::Hash { .. } | Design::Blocked { .. } => {
                let m = &self.metrics;
                let longest = std::iter::once(&m.primary)
                    .chain(&m.secondary)
                    .chain(&m.guardrails)
                    // The first of equals: the primary before the others.
                    .reduce(|a, b| {
                        if b.window.end_secs > a.window.end_secs {
                            b
                        } else {
                            a
                        }
                    })
                    .expect("a primary metric");
                let window_end_secs = longest.window.end_secs.max(0);
                Completion::Windows {
                    at: exposure_end.saturating_add(window_end_secs),
                    exposure_end,
                    metric: longest.name.clone(),
                    window_end_secs,
                }
            }
        }
    }
}
