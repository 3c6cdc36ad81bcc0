//! The IO step: what a stored trial's design needs, read from the store
//! (every metric aggregated in the database).

use crate::ReportError;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{
    cluster_allocation, parse_trial, stepped_wedge_schedule, switchback_schedule, Design, Metric,
    SwitchbackSchedule, TrialSpec,
};
use commonlab_store::{
    CommunityRows, ExposureCount, ExposureRecord, MemberValue, MetricCell, MetricSnapshot,
    PeriodExposures, PeriodSpan, Store, StoreError, TrialStatus,
};
use futures_util::{stream, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;

/// At most this many excluded units are listed (the count is exact).
pub const EXCLUDED_LISTED: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Secondary,
    Guardrail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Computed from the raw events at the analysis time.
    Database,
    /// The aggregates stored when the trial concluded.
    Snapshot,
}

/// A metric's rows, in the shape its design needs.
#[derive(Debug, Clone)]
pub enum MetricRows {
    /// `hash`: per-(arm, community) sufficient statistics.
    Cells(Vec<MetricCell>),
    /// `blocked`: per member, with stratum and arm.
    Members(Vec<MemberValue>),
    /// `cluster`, `stepped_wedge`: community × period cells of the closed
    /// period windows (`closed`); `open` are the windows still open.
    Communities {
        rows: CommunityRows,
        closed: Vec<PeriodSpan>,
        open: Vec<PeriodSpan>,
    },
}

/// One metric of the plan and its rows.
#[derive(Debug, Clone)]
pub struct MetricData {
    pub metric: Metric,
    pub role: Role,
    pub source: Source,
    pub as_of: DateTime<Utc>,
    pub rows: MetricRows,
}

/// Who got what: a cluster design's allocation or a stepped wedge's
/// crossovers, recomputed from the recorded seed (the allocation recorded
/// at start is the same pure function of it).
#[derive(Debug, Clone, PartialEq)]
pub enum Allocation {
    None,
    /// Community → arm.
    Cluster(BTreeMap<String, String>),
    /// (community, crossover time in Unix seconds).
    SteppedWedge(Vec<(String, i64)>),
    /// Which community is on in which period.
    Switchback(SwitchbackSchedule),
}

/// What [`super::analyse`] needs of a stored trial.
#[derive(Debug, Clone)]
pub struct StoredTrial {
    pub key: String,
    pub spec_hash: String,
    pub status: String,
    pub seed: Option<u64>,
    pub spec: TrialSpec,
    pub as_of: DateTime<Utc>,
    pub allocation: Allocation,
    pub metrics: Vec<MetricData>,
    pub exposures: Vec<ExposureCount>,
    /// Units excluded by a developer's override (at most
    /// [`EXCLUDED_LISTED`]).
    pub excluded: Vec<ExposureRecord>,
    /// Community designs: the exposures served per community, period and
    /// arm (schedule adherence).
    pub period_exposures: Vec<PeriodExposures>,
}

impl StoredTrial {
    /// The plan's metrics with their roles, primary first.
    pub fn plan_metrics(spec: &TrialSpec) -> Vec<(&Metric, Role)> {
        std::iter::once((&spec.metrics.primary, Role::Primary))
            .chain(spec.metrics.secondary.iter().map(|m| (m, Role::Secondary)))
            .chain(spec.metrics.guardrails.iter().map(|m| (m, Role::Guardrail)))
            .collect()
    }
}

/// One metric's rows as its design needs them (see [`fetch`]).
#[allow(clippy::too_many_arguments)]
async fn metric_data(
    store: &Store,
    trial_id: i64,
    spec: &TrialSpec,
    metric: &Metric,
    role: Role,
    snapshot: Option<&MetricSnapshot>,
    as_of: DateTime<Utc>,
    communities: &[String],
    computed: Option<Vec<MetricCell>>,
) -> Result<MetricData, ReportError> {
    let metric_as_of = snapshot.map_or(as_of, |s| s.as_of);
    let source = if snapshot.is_some() {
        Source::Snapshot
    } else {
        Source::Database
    };
    let rows = match &spec.design {
        Design::Hash { .. } => MetricRows::Cells(match (snapshot, computed) {
            (Some(s), _) => s.cells.clone(),
            (None, Some(cells)) => cells,
            (None, None) => store.metric_cells(trial_id, metric, as_of).await?,
        }),
        Design::Blocked { .. } => {
            MetricRows::Members(store.member_values(trial_id, metric, metric_as_of).await?)
        }
        Design::Cluster { .. } | Design::SteppedWedge { .. } | Design::Switchback { .. } => {
            let (closed, open) = period_spans(spec, metric, metric_as_of);
            let rows = match snapshot.and_then(|s| s.communities.clone()) {
                Some(rows) => rows,
                None => {
                    store
                        .community_period_cells(metric, communities, &closed)
                        .await?
                }
            };
            MetricRows::Communities { rows, closed, open }
        }
    };
    // Hash designs analyse their stored cells, community designs their
    // stored community × period cells; blocked designs (per-member rows,
    // not kept) recompute as of the conclusion.
    let source = match (&spec.design, snapshot) {
        (Design::Hash { .. }, _) => source,
        (Design::Blocked { .. }, _) | (_, None) => Source::Database,
        (_, Some(s)) if s.communities.is_some() => Source::Snapshot,
        _ => Source::Database,
    };
    Ok(MetricData {
        metric: metric.clone(),
        role,
        source,
        as_of: metric_as_of,
        rows,
    })
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How many of a trial's metrics are computed at once on PostgreSQL, at
/// most: each is one statement that keeps a core of the database busy,
/// and the machines Commonlab runs on have few (docs/benchmarks.md, "A
/// report of ten metrics"). Never more than the pool's connections less
/// one, so that other readers (the server's requests) still get one.
pub const METRIC_CONCURRENCY: usize = 2;

/// The same on SQLite: one at a time. Two of its metric statements at
/// once took 60 % more CPU than one after the other (the per-member
/// subqueries over materialised CTEs contend inside the library) and were
/// slower in wall time too: 13.2–15.3 s against 11.2–12.8 s for ten
/// metrics over 10M events, measured side by side on a quiet 2-core
/// machine (docs/benchmarks.md, "A report of ten metrics, quiet machine").
/// A community design's metric still splits its members in two halves
/// computed at once (`Store::community_period_cells`), which does pay.
pub const SQLITE_METRIC_CONCURRENCY: usize = 1;

/// [`METRIC_CONCURRENCY`] (or [`SQLITE_METRIC_CONCURRENCY`]) within
/// `store`'s read pool.
fn metric_concurrency(store: &Store) -> usize {
    let wanted = match store.backend() {
        commonlab_store::Backend::Sqlite => SQLITE_METRIC_CONCURRENCY,
        commonlab_store::Backend::Postgres => METRIC_CONCURRENCY,
    };
    let readers = store
        .pool_usage()
        .iter()
        .filter(|p| p.pool != "write")
        .map(|p| p.max as usize)
        .max()
        .unwrap_or(1);
    wanted.min(readers.saturating_sub(1)).max(1)
}

/// A `hash` design's cells of the plan's metrics that have no stored
/// snapshot, computed together by [`Store::metrics_cells`]: one statement
/// for all of them (up to its 32). Not split into statements run at once:
/// on SQLite two took 30 % longer than one (each recomputes the window
/// bounds, the costly part); on PostgreSQL they were no faster, and one
/// leaves the second core to what `commonlab report` reads beside the
/// metrics (wp2's community activity) and to other requests
/// (docs/benchmarks.md, "Metrics in one statement"). Returns the cells by
/// plan position (`None`: from a snapshot) and how many were computed;
/// `progress` is called when they are.
async fn hash_cells(
    store: &Store,
    trial_id: i64,
    plan: &[(&Metric, Role)],
    snapshots: &BTreeMap<String, MetricSnapshot>,
    as_of: DateTime<Utc>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<Option<Vec<MetricCell>>>, usize), ReportError> {
    let mut out = vec![None; plan.len()];
    let wanted: Vec<usize> = (0..plan.len())
        .filter(|&i| !snapshots.contains_key(&plan[i].0.name))
        .collect();
    if wanted.is_empty() {
        return Ok((out, 0));
    }
    let metrics: Vec<&Metric> = wanted.iter().map(|&i| plan[i].0).collect();
    let cells = store.metrics_cells(trial_id, &metrics, as_of).await?;
    for (&i, c) in wanted.iter().zip(cells) {
        out[i] = Some(c);
    }
    progress(wanted.len(), plan.len());
    Ok((out, wanted.len()))
}

/// A community design's windows for `metric`: those closed at `as_of`
/// (analysed) and those still open.
pub fn period_spans(
    spec: &TrialSpec,
    metric: &Metric,
    as_of: DateTime<Utc>,
) -> (Vec<PeriodSpan>, Vec<PeriodSpan>) {
    spec.period_windows(metric)
        .into_iter()
        .map(|w| PeriodSpan {
            period: i64::from(w.period),
            start: at(w.start),
            end: at(w.end),
        })
        .partition(|w| w.end <= as_of)
}

/// Reads `key`'s plan and the rows its design needs as of `as_of` (a
/// concluded trial: as of its conclusion, from the aggregates stored when
/// it concluded where the design's analysis uses aggregates: `hash` and
/// the community designs; `docs/experiments.md`, "Concluding").
pub async fn fetch(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
) -> Result<StoredTrial, ReportError> {
    fetch_with_progress(store, key, as_of, &|_, _| {}).await
}

/// [`fetch`], calling `progress(done, total)` with the number of the plan's
/// metrics computed so far: `(0, total)` before the first, then as they
/// complete (`done` never decreases, may repeat, and jumps by several
/// when metrics share a statement: `hash` designs, see [`hash_cells`]).
/// Up to [`METRIC_CONCURRENCY`] statements run at once; the result is the
/// same as one metric at a time (metrics in the plan's order).
pub async fn fetch_with_progress(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<StoredTrial, ReportError> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec = parse_trial(&record.spec_source, &format!("trial {key}"))?;
    let seed = record.seed.map(|s| s as u64);
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
    let allocation = match (&spec.design, seed) {
        (Design::Cluster { .. }, Some(seed)) => Allocation::Cluster(
            cluster_allocation(&spec, seed)
                .into_iter()
                .map(|(c, a)| (c, a.variant.clone()))
                .collect(),
        ),
        (Design::SteppedWedge { .. }, Some(seed)) => {
            Allocation::SteppedWedge(stepped_wedge_schedule(&spec, seed))
        }
        (Design::Switchback { .. }, Some(seed)) => {
            switchback_schedule(&spec, seed).map_or(Allocation::None, Allocation::Switchback)
        }
        _ => Allocation::None,
    };
    let communities: Vec<String> = spec.design.communities().unwrap_or_default().to_vec();
    let plan = StoredTrial::plan_metrics(&spec);
    let total = plan.len();
    progress(0, total);
    let trial_id = record.id;
    let (mut computed, done) = if matches!(spec.design, Design::Hash { .. }) {
        hash_cells(store, trial_id, &plan, &snapshots, as_of, progress).await?
    } else {
        (vec![None; total], 0)
    };
    // The futures are collected first (they start when polled): a stream
    // over a closure that borrows here would make the future of this
    // function not `Send` for the server (rust-lang/rust#102211).
    let pending: Vec<_> = plan
        .into_iter()
        .zip(computed.iter_mut())
        .map(|((metric, role), cells)| {
            let snapshot = snapshots.get(&metric.name);
            metric_data(
                store,
                trial_id,
                &spec,
                metric,
                role,
                snapshot,
                as_of,
                &communities,
                cells.take(),
            )
        })
        .collect();
    // Results in the plan's order, whichever finishes first.
    let mut rows = stream::iter(pending).buffered(metric_concurrency(store));
    let mut metrics = Vec::with_capacity(total);
    while let Some(m) = rows.next().await {
        metrics.push(m?);
        progress(metrics.len().max(done), total);
    }
    drop(rows);
    let exposures = store.exposure_counts(record.id).await?;
    let excluded = store
        .exposure_records(record.id, true, EXCLUDED_LISTED)
        .await?;
    let period_exposures = if spec.is_community_design() {
        store.period_exposures(record.id).await?
    } else {
        Vec::new()
    };
    Ok(StoredTrial {
        key: record.key,
        spec_hash: record.spec_hash,
        status: record.status.to_string(),
        seed,
        spec,
        as_of,
        allocation,
        metrics,
        exposures,
        excluded,
        period_exposures,
    })
}
