//! The periods of a community design and each metric's window inside them.
//!
//! A switchback's periods are those its design lists (`boundaries`); its
//! washout is cut from the start of each period before the length rule
//! below applies, so no window reaches into a washout.
//!
//! A stepped wedge's periods are the intervals between its steps, plus the
//! baseline before the first step (every community is a control then) and
//! the last step to the schedule's end: `[start, s₁), [s₁, s₂), …, [s_k,
//! end)`. A cluster design has one period, the whole schedule.
//!
//! Length rule: periods may differ in length (months), so a metric is
//! counted in a window of the **same length in every period**: the last
//! `period_window` of each period (default: the shortest period's length).
//! The window ends with its period, so a community that has just crossed
//! over is measured after it has had the longest time to take the feature
//! up, and every period contributes a value on the same footing (a count
//! over 28 days is comparable with another count over 28 days).

use super::{Design, Metric, TrialSpec};

/// One period of a community design: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// 0 for the baseline (or the only period of a cluster design).
    pub index: u32,
    pub start: i64,
    pub end: i64,
}

impl Period {
    pub fn len_secs(self) -> i64 {
        self.end - self.start
    }
}

/// A metric's window inside one period: `[start, end)`, ending with the
/// period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodWindow {
    pub period: u32,
    pub start: i64,
    pub end: i64,
}

impl TrialSpec {
    /// Whether whole communities are randomised (cluster, stepped wedge).
    pub fn is_community_design(&self) -> bool {
        self.design.communities().is_some()
    }

    /// The periods of a community design (empty for designs that
    /// randomise members; see the module docs).
    pub fn periods(&self) -> Vec<Period> {
        periods_of(&self.design, self.schedule.start, self.schedule.end)
    }

    /// The length of the shortest period (`None` without periods).
    pub fn shortest_period(&self) -> Option<i64> {
        self.periods().iter().map(|p| p.len_secs()).min()
    }

    /// `metric`'s window in each period: the last `period_window` (default
    /// the shortest period) of each. Empty for designs without periods.
    pub fn period_windows(&self, metric: &Metric) -> Vec<PeriodWindow> {
        let periods = self.periods();
        let Some(shortest) = periods.iter().map(|p| p.len_secs()).min() else {
            return Vec::new();
        };
        // A switchback's washout opens each period and is never measured.
        let usable = shortest - self.design.washout();
        let len = metric.period_window.unwrap_or(usable).min(usable);
        periods
            .iter()
            .map(|p| PeriodWindow {
                period: p.index,
                start: p.end - len,
                end: p.end,
            })
            .collect()
    }
}

pub(crate) fn periods_of(design: &Design, start: i64, end: i64) -> Vec<Period> {
    let bounds: Vec<i64> = match design {
        Design::SteppedWedge { steps, .. } => std::iter::once(start)
            .chain(steps.iter().copied().filter(|&s| s > start && s < end))
            .chain(std::iter::once(end))
            .collect(),
        Design::Cluster { .. } => vec![start, end],
        Design::Switchback { boundaries, .. } => boundaries.clone(),
        _ => return Vec::new(),
    };
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Period {
            index: i as u32,
            start: w[0],
            end: w[1],
        })
        .collect()
}
