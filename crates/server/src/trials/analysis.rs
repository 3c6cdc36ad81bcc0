//! A trial's analysis from its stored data: every metric of its locked plan
//! aggregated inside the database (one query per metric, no event leaves
//! it), assembled into the statistics engine's input (`docs/analyze.md`)
//! and analysed. Shared by `GET /api/v1/trials/{key}/analysis` and
//! `commonlab analyze --trial`.

use crate::error::Error;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, Metric, MetricKind, TrialSpec};
use commonlab_stats::analyze::{AnalyzeInput, AnalyzeOutput, MetricInput, StratumInput};
use commonlab_stats::effects::{ArmStats, MetricKind as StatsKind};
use commonlab_store::{MetricCell, MetricSnapshot, Store, StoreError, TrialRecord, TrialStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// What was computed for one metric, beside the engine's input.
#[derive(Debug, Clone, Serialize)]
pub struct MetricProvenance {
    pub name: String,
    /// `primary`, `secondary` or `guardrail`.
    pub role: &'static str,
    pub kind: &'static str,
    pub direction: &'static str,
    /// Units analysed (their window had closed at `as_of`), per arm.
    pub units: BTreeMap<String, i64>,
    /// The caps applied (percentile caps are computed over all units).
    pub y_cap: Option<f64>,
    pub x_cap: Option<f64>,
    /// Whether the engine was given per-community strata (post-
    /// stratification); `false` when a community lacks an arm or has fewer
    /// than 2 units in one.
    pub stratified: bool,
    /// The metric library entry it came from, if any.
    pub library_ref: Option<String>,
    /// `database` (computed now from the raw events) or `snapshot` (the
    /// aggregates stored when the trial concluded).
    pub source: &'static str,
    /// The time the values are for: `as_of`, or the snapshot's.
    pub as_of: DateTime<Utc>,
}

/// The engine's input for a trial, with where each number came from.
#[derive(Debug, Clone, Serialize)]
pub struct TrialAnalysisInput {
    pub trial: String,
    pub spec_hash: String,
    pub as_of: DateTime<Utc>,
    pub input: AnalyzeInput,
    pub metrics: Vec<MetricProvenance>,
}

/// The input and the engine's output.
#[derive(Debug, Clone, Serialize)]
pub struct TrialAnalysis {
    #[serde(flatten)]
    pub input: TrialAnalysisInput,
    pub output: AnalyzeOutput,
}

fn stats_kind(k: MetricKind) -> StatsKind {
    match k {
        MetricKind::Proportion => StatsKind::Proportion,
        MetricKind::Mean | MetricKind::Count => StatsKind::Mean,
        MetricKind::Ratio => StatsKind::Ratio,
    }
}

/// Sums cells into one arm's engine statistics.
fn arm_stats(metric: &Metric, cells: &[&MetricCell]) -> ArmStats {
    let mut s = ArmStats::default();
    let (mut yy, mut x, mut xx, mut xy, mut d, mut dd, mut md, mut dx) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for c in cells {
        s.n += c.n as f64;
        s.sum += c.sum;
        yy += c.sum_squares;
        x += c.x_sum;
        xx += c.x_sum_squares;
        xy += c.xy_sum;
        d += c.d_sum;
        dd += c.d_sum_squares;
        md += c.md_sum;
        dx += c.dx_sum;
    }
    s.sum_squares = Some(yy);
    if metric.covariate.is_some() {
        s.x_sum = Some(x);
        s.x_sum_squares = Some(xx);
        s.xy_sum = Some(xy);
    }
    if metric.kind == MetricKind::Ratio {
        s.d_sum = Some(d);
        s.d_sum_squares = Some(dd);
        s.md_sum = Some(md);
        if metric.covariate.is_some() {
            s.dx_sum = Some(dx);
        }
    }
    s
}

/// The arms in engine order: control first, then the others in file order.
fn arm_order(spec: &TrialSpec) -> Vec<String> {
    let mut arms = vec![spec.control().variant.clone()];
    arms.extend(
        spec.arms
            .iter()
            .filter(|a| !a.control)
            .map(|a| a.variant.clone()),
    );
    arms
}

fn metric_input(
    metric: &Metric,
    arms: &[String],
    cells: &[MetricCell],
) -> (MetricInput, bool, BTreeMap<String, i64>) {
    let per_arm: Vec<Vec<&MetricCell>> = arms
        .iter()
        .map(|a| cells.iter().filter(|c| &c.arm == a).collect())
        .collect();
    let units = arms
        .iter()
        .zip(&per_arm)
        .map(|(a, cs)| (a.clone(), cs.iter().map(|c| c.n).sum()))
        .collect();
    let mut communities: BTreeMap<&str, Vec<Vec<&MetricCell>>> = BTreeMap::new();
    let mut unstratifiable = false;
    for c in cells.iter().filter(|c| arms.contains(&c.arm)) {
        match c.community.as_deref() {
            Some(name) => {
                let slot = communities
                    .entry(name)
                    .or_insert_with(|| vec![Vec::new(); arms.len()]);
                let i = arms.iter().position(|a| a == &c.arm).expect("filtered");
                slot[i].push(c);
            }
            None => unstratifiable = true,
        }
    }
    let stratified = !unstratifiable
        && communities.len() >= 2
        && communities.values().all(|slots| {
            slots
                .iter()
                .all(|s| s.iter().map(|c| c.n).sum::<i64>() >= 2)
        });
    let input = if stratified {
        MetricInput {
            name: metric.name.clone(),
            kind: stats_kind(metric.kind),
            stats: None,
            strata: Some(
                communities
                    .iter()
                    .map(|(name, slots)| StratumInput {
                        name: (*name).to_string(),
                        stats: slots.iter().map(|s| arm_stats(metric, s)).collect(),
                    })
                    .collect(),
            ),
        }
    } else {
        MetricInput {
            name: metric.name.clone(),
            kind: stats_kind(metric.kind),
            stats: Some(per_arm.iter().map(|s| arm_stats(metric, s)).collect()),
            strata: None,
        }
    };
    (input, stratified, units)
}

/// Computes every metric of `key`'s stored plan as of `as_of`.
pub async fn analysis_input(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
) -> Result<TrialAnalysisInput, Error> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec = parse_trial(&record.spec_source, &format!("trial {key}"))?;
    let arms = arm_order(&spec);
    let total_weight: f64 = spec.arms.iter().map(|a| f64::from(a.weight)).sum();
    let weights = arms
        .iter()
        .map(|a| spec.arm(a).map_or(0.0, |x| f64::from(x.weight)) / total_weight)
        .collect();
    let exposed: BTreeMap<String, i64> = store
        .arm_counts(record.id)
        .await?
        .into_iter()
        .map(|(arm, _, exposed)| (arm, exposed))
        .collect();
    let users = arms
        .iter()
        .map(|a| exposed.get(a).copied().unwrap_or(0) as f64)
        .collect();
    let roles = std::iter::once((&spec.metrics.primary, "primary"))
        .chain(spec.metrics.secondary.iter().map(|m| (m, "secondary")))
        .chain(spec.metrics.guardrails.iter().map(|m| (m, "guardrail")));
    // A concluded (or archived after concluding) trial is analysed from
    // the aggregates stored at its conclusion.
    let snapshots: BTreeMap<String, MetricSnapshot> = if matches!(
        record.status,
        TrialStatus::Concluded | TrialStatus::Archived
    ) {
        store
            .metric_snapshots(record.id)
            .await?
            .into_iter()
            .filter(|s| s.spec_hash == record.spec_hash)
            .map(|s| (s.metric.clone(), s))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut metrics = Vec::new();
    let mut provenance = Vec::new();
    for (metric, role) in roles {
        let (cells, source, metric_as_of) = match snapshots.get(&metric.name) {
            Some(s) => (s.cells.clone(), "snapshot", s.as_of),
            None => (
                store.metric_cells(record.id, metric, as_of).await?,
                "database",
                as_of,
            ),
        };
        let (input, stratified, units) = metric_input(metric, &arms, &cells);
        metrics.push(input);
        provenance.push(MetricProvenance {
            name: metric.name.clone(),
            role,
            kind: metric.kind.as_str(),
            direction: metric.direction.as_str(),
            units,
            y_cap: cells.iter().find_map(|c| c.y_cap),
            x_cap: cells.iter().find_map(|c| c.x_cap),
            stratified,
            library_ref: metric.library_ref.clone(),
            source,
            as_of: metric_as_of,
        });
    }
    Ok(TrialAnalysisInput {
        trial: record.key,
        spec_hash: record.spec_hash,
        as_of,
        input: AnalyzeInput {
            alpha: spec.analysis.alpha,
            sequential_tuning_parameter: 5000.0,
            prior: None,
            weights: Some(weights),
            users: Some(users),
            arms,
            metrics,
            survey_response: None,
        },
        metrics: provenance,
    })
}

/// [`analysis_input`], then the engine (on a blocking thread: it is CPU
/// work).
pub async fn analyse(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
) -> Result<TrialAnalysis, Error> {
    let input = analysis_input(store, key, as_of).await?;
    let engine_input = input.input.clone();
    let output =
        match tokio::task::spawn_blocking(move || commonlab_stats::analyze::analyze(&engine_input))
            .await
        {
            Ok(output) => output,
            // The engine does not panic on any input (its property tests); if
            // it did, that is our bug, not the client's: let it surface as one.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => {
                return Err(StoreError::Unavailable("the server is shutting down".into()).into())
            }
        };
    Ok(TrialAnalysis { input, output })
}

/// Computes every metric of the trial as of `at` (the aggregates a trial
/// concludes with; `trial_service` stores them with the conclusion).
pub async fn snapshot(
    store: &Store,
    record: &TrialRecord,
    at: DateTime<Utc>,
) -> Result<Vec<MetricSnapshot>, Error> {
    let spec = parse_trial(&record.spec_source, &format!("trial {}", record.key))?;
    let mut out = Vec::new();
    for metric in std::iter::once(&spec.metrics.primary)
        .chain(&spec.metrics.secondary)
        .chain(&spec.metrics.guardrails)
    {
        out.push(MetricSnapshot {
            metric: metric.name.clone(),
            spec_hash: record.spec_hash.clone(),
            as_of: at,
            computed_at: at,
            cells: store.metric_cells(record.id, metric, at).await?,
        });
    }
    Ok(out)
}
