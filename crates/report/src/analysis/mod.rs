//! A stored trial analysed as its design requires.
//!
//! Two steps, IO first and pure second:
//!
//! 1. [`fetch`] reads what the design needs from the store, every metric
//!    aggregated inside the database (`store::design_rows`,
//!    `store::metrics`): per-(arm, community) sufficient statistics for
//!    `hash`, per-member values with stratum and arm for `blocked`,
//!    community × period cells for `cluster` and `stepped_wedge` (periods
//!    and their windows from `core`), plus the exposure counts the
//!    data-quality checks need. The result is a [`StoredTrial`].
//! 2. [`analyse`] turns a [`StoredTrial`] into a [`TrialAnalysis`]: per
//!    metric and treatment arm one [`Estimate`] from the analysis the
//!    design calls for (each naming its method and why), the data-quality
//!    checks that fit the design, the plan's comparisons with its
//!    correction, and its decision rule evaluated. Pure: the same stored
//!    trial gives the same analysis (randomness only from the trial's
//!    seed).
//!
//! [`rows_table`] gives the rows a design produced, for `analyze --rows`.
//!
//! Invariants: a treatment arm is compared with control only (arms are
//! never pooled); no estimate is shown as a zero when nothing was
//! measured (the metric carries a [`MetricAnalysis::notice`] saying why);
//! every number comes from the database through the store's methods.

mod community;
mod fetch;
mod members;
mod plan;
mod quality;
mod rows;
mod surveys;
mod switchback;

pub use community::{community_rows, engine_rows, CommunityRow};
pub use fetch::{
    fetch, fetch_with_progress, period_spans, Allocation, MetricData, MetricRows, Role, Source,
    StoredTrial, METRIC_CONCURRENCY,
};
pub use members::{blocked_rows, rows_design};
pub use plan::{DecisionOutcome, PlannedComparison, PlannedComparisons};
pub use quality::{Adherence, Quality, Served, ADHERENCE_WARNING};
pub use rows::{rows_table, RowsTable};
pub use surveys::{analyse_scales, metric_name, ScaleScore, WaveScores};
pub use switchback::{scheme_of, switchback_input, DRAWS as SWITCHBACK_DRAWS};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A trial's analysis (`GET /api/v1/trials/{key}/analysis`, `commonlab
/// analyze --trial`).
#[derive(Debug, Clone, Serialize)]
pub struct TrialAnalysis {
    pub trial: String,
    pub spec_hash: String,
    pub status: String,
    /// `hash`, `blocked`, `cluster`, `stepped_wedge` or `switchback`.
    pub design: &'static str,
    /// What the design's analysis is, in words.
    pub design_analysis: String,
    pub as_of: DateTime<Utc>,
    /// Why there is nothing (or not yet everything) to analyse: the trial
    /// has not started, or no window has closed yet (and when the first
    /// one does).
    pub notice: Option<String>,
    pub metrics: Vec<MetricAnalysis>,
    pub quality: Quality,
    /// The plan's comparisons of the primary metric, corrected as the plan
    /// says.
    pub comparisons: PlannedComparisons,
    /// The plan's decision rule, evaluated.
    pub decision: DecisionOutcome,
    /// The trial's survey waves: response per arm and community and the
    /// differential-response test (filled by the caller that scores the
    /// surveys; absent when the trial has no survey campaign).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey_response: Option<serde_json::Value>,
}

/// One metric's results.
#[derive(Debug, Clone, Serialize)]
pub struct MetricAnalysis {
    pub name: String,
    /// `primary`, `secondary` or `guardrail`.
    pub role: Role,
    pub kind: &'static str,
    pub direction: &'static str,
    /// `member` or `community`.
    pub unit: &'static str,
    pub library_ref: Option<String>,
    /// `database` (computed now) or `snapshot` (stored at conclusion).
    pub source: Source,
    pub as_of: DateTime<Utc>,
    /// Units (members, or community × period cells) analysed, per arm.
    pub n: std::collections::BTreeMap<String, i64>,
    /// One per treatment arm, against control.
    pub estimates: Vec<Estimate>,
    /// Why there is no estimate (or fewer than expected), in words.
    pub notice: Option<String>,
    /// The statistics engine's full output for this metric (per arm for
    /// designs analysed arm by arm), for the report.
    pub detail: serde_json::Value,
}

/// One treatment arm against control.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub arm: String,
    pub control: String,
    /// Treatment minus control, in the metric's units.
    pub estimate: f64,
    /// Standard error (of the method that gives one: CR2 for the
    /// community designs, whose lead method is randomisation inference).
    pub se: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// The lead method's p-value (two-sided).
    pub p_value: Option<f64>,
    /// The smallest p-value the lead method can give on this design.
    pub min_attainable_p: Option<f64>,
    /// The method the estimate and p-value come from, e.g. `"welch"`,
    /// `"cuped"`, `"post_stratified"`, `"stratified_permutation"`,
    /// `"cuped_within_strata"`, `"randomisation"`.
    pub method: String,
    /// The model fitted, when there is one.
    pub model: Option<String>,
    /// Why this method leads, in words.
    pub why: String,
    /// Other methods' results for the same comparison, for reference.
    pub beside: Vec<Beside>,
}

/// Another method's result for the same comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Beside {
    pub method: String,
    pub estimate: Option<f64>,
    pub se: Option<f64>,
    pub p_value: Option<f64>,
    pub note: Option<String>,
}

/// Analyses a stored trial (pure; see the module docs).
pub fn analyse(t: &StoredTrial) -> TrialAnalysis {
    let metrics: Vec<MetricAnalysis> = match t.spec.design.kind() {
        "hash" => members::analyse_hash(t),
        "blocked" => members::analyse_blocked(t),
        "switchback" => switchback::analyse_switchback(t),
        _ => community::analyse_community(t),
    };
    let quality = quality::checks(t);
    let comparisons = plan::comparisons(&t.spec, &metrics);
    let decision = plan::decide(&t.spec, &metrics, &comparisons);
    TrialAnalysis {
        trial: t.key.clone(),
        spec_hash: t.spec_hash.clone(),
        status: t.status.clone(),
        design: t.spec.design.kind(),
        design_analysis: design_analysis(&t.spec),
        as_of: t.as_of,
        notice: notice(t, &metrics),
        metrics,
        quality,
        comparisons,
        decision,
        survey_response: None,
    }
}

fn design_analysis(spec: &commonlab_core::experiments::TrialSpec) -> String {
    match spec.design.kind() {
        "hash" => "members randomised by hashing: each treatment arm against control, Welch's t-test on per-member values in the window after first exposure, with CUPED when the metric has a pre-exposure covariate and post-stratification by community when every community holds every arm".into(),
        "blocked" => "members randomised in permuted blocks within strata: each treatment arm against control separately (never pooled), the post-stratified difference in means within strata with the stratified permutation test leading".into(),
        "cluster" => "whole communities randomised: community-level analysis of each treatment arm against control, randomisation inference over the allocations the design could have drawn leading, CR2 with communities as clusters beside it".into(),
        "switchback" => switchback::DESIGN_ANALYSIS.into(),
        _ => "stepped wedge: community × period cells, community and period fixed effects, randomisation inference over every order of crossover the design could have drawn leading, CR2 and the wild cluster bootstrap beside it".into(),
    }
}

fn notice(t: &StoredTrial, metrics: &[MetricAnalysis]) -> Option<String> {
    let fmt = |s: i64| commonlab_core::experiments::format_rfc3339(s);
    let as_of = t.as_of.timestamp();
    let measured = metrics.iter().any(|m| m.n.values().any(|&n| n > 0));
    if measured {
        return None;
    }
    if as_of < t.spec.schedule.start {
        return Some(format!(
            "the trial starts at {}; nothing is assigned before then, so nothing is analysed as of {}",
            fmt(t.spec.schedule.start),
            fmt(as_of)
        ));
    }
    let primary = &t.spec.metrics.primary;
    if t.spec.is_community_design() {
        let first = t.spec.period_windows(primary).first().map(|w| w.end);
        return Some(match first {
            Some(end) if end > as_of => format!(
                "no period's window has closed as of {}: the first (period 0) closes at {}; until then n is 0",
                fmt(as_of),
                fmt(end)
            ),
            _ => format!(
                "no member of the design's communities was active in a closed period window as of {}",
                fmt(as_of)
            ),
        });
    }
    let first_exposure = t
        .exposures
        .iter()
        .filter(|e| !e.excluded)
        .map(|e| e.first)
        .min();
    Some(match first_exposure {
        None => format!(
            "no unit has been exposed as of {}, so n is 0",
            fmt(as_of)
        ),
        Some(first) => format!(
            "no unit's analysis window has closed as of {}: the first exposure was at {}, so the first window of {} closes at {}",
            fmt(as_of),
            fmt(first.timestamp()),
            primary.name,
            fmt(first.timestamp() + primary.window.end_secs)
        ),
    })
}
