//! Running trials on the evaluation path: a cache of the running trials by
//! flag (refreshed from the database like the flag set), the decision of
//! which arm a unit gets, and the exposure writer that records first
//! exposures in batches off the request path.
//!
//! Exposure rule: a single-flag OFREP evaluation that returns a trial arm is
//! an exposure; a bulk evaluation is one only when the trial says
//! `exposure.bulk = true`; clients that prefetch report real exposures with
//! `POST /api/v1/exposures`. Units are pseudonymised (HMAC-SHA256 under the
//! study key) before anything is stored.

use crate::dedup::ExposureDedup;
use crate::state::AppState;
use commonlab_core::experiments::{
    arm_at, blocked_arm, hash_arm, parse_trial, Design, TrialSpec, Unit,
};
use commonlab_core::flags::EvalContext;
use commonlab_core::privacy::{pseudonymise, StudyKey};
use commonlab_store::{
    ExposureSource, NewAssignment, NewExposure, NewSequentialAssignment, Store, StoreError,
    TrialRecord,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What was recorded at start besides the seed.
#[derive(Debug, Clone)]
pub enum Allocation {
    None,
    /// Community → arm (variant).
    Cluster(BTreeMap<String, String>),
    /// (community, crossover time in Unix seconds), in crossover order.
    SteppedWedge(Vec<(String, i64)>),
}

impl Allocation {
    /// The JSON recorded with the trial at start.
    pub fn compute(spec: &TrialSpec, seed: u64) -> (Allocation, Option<String>) {
        match &spec.design {
            Design::Cluster { .. } => {
                let map: BTreeMap<String, String> =
                    commonlab_core::experiments::cluster_allocation(spec, seed)
                        .into_iter()
                        .map(|(c, a)| (c, a.variant.clone()))
                        .collect();
                let json = serde_json::to_string(&map).ok();
                (Allocation::Cluster(map), json)
            }
            Design::SteppedWedge { .. } => {
                let schedule = commonlab_core::experiments::stepped_wedge_schedule(spec, seed);
                let json = serde_json::to_string(
                    &schedule
                        .iter()
                        .map(|(c, t)| {
                            serde_json::json!({
                                "community": c,
                                "crossover": commonlab_core::experiments::format_rfc3339(*t),
                                "crossover_unix": t,
                            })
                        })
                        .collect::<Vec<_>>(),
                )
                .ok();
                (Allocation::SteppedWedge(schedule), json)
            }
            _ => (Allocation::None, None),
        }
    }

    fn parse(spec: &TrialSpec, json: Option<&str>) -> Option<Allocation> {
        match &spec.design {
            Design::Cluster { .. } => serde_json::from_str(json?).ok().map(Allocation::Cluster),
            Design::SteppedWedge { .. } => {
                let items: Vec<serde_json::Value> = serde_json::from_str(json?).ok()?;
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push((
                        it.get("community")?.as_str()?.to_string(),
                        it.get("crossover_unix")?.as_i64()?,
                    ));
                }
                Some(Allocation::SteppedWedge(out))
            }
            _ => Some(Allocation::None),
        }
    }
}

/// A running trial, compiled.
#[derive(Debug)]
pub struct RunningTrial {
    pub id: i64,
    pub key: String,
    pub version: i64,
    pub seed: u64,
    pub spec: TrialSpec,
    pub allocation: Allocation,
}

impl RunningTrial {
    pub fn from_record(r: &TrialRecord) -> Result<RunningTrial, String> {
        let spec = parse_trial(&r.spec_source, &format!("trial {}", r.key)).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let seed = r.seed.ok_or("a running trial without a seed")? as u64;
        let allocation = Allocation::parse(&spec, r.allocation.as_deref())
            .ok_or("the recorded allocation does not match the design")?;
        Ok(RunningTrial {
            id: r.id,
            key: r.key.clone(),
            version: r.version,
            seed,
            spec,
            allocation,
        })
    }
}

impl RunningTrial {
    /// The first instant after `now_unix` at which the trial may answer a
    /// context differently: [`TrialSpec::next_change`] or a stepped-wedge
    /// crossover.
    pub fn next_change(&self, now_unix: i64) -> Option<i64> {
        let crossover = match &self.allocation {
            Allocation::SteppedWedge(schedule) => schedule
                .iter()
                .map(|(_, t)| *t)
                .filter(|&t| t > now_unix)
                .min(),
            _ => None,
        };
        self.spec
            .next_change(now_unix)
            .into_iter()
            .chain(crossover)
            .min()
    }
}

#[derive(Default)]
pub struct RunningTrials {
    pub version: i64,
    pub by_flag: HashMap<String, Vec<Arc<RunningTrial>>>,
}

impl RunningTrials {
    /// The first instant after `now_unix` at which any running trial may
    /// answer differently.
    pub fn next_change(&self, now_unix: i64) -> Option<i64> {
        self.by_flag
            .values()
            .flatten()
            .filter_map(|t| t.next_change(now_unix))
            .min()
    }
}

#[derive(Clone, Default)]
pub struct TrialCache(Arc<arc_swap::ArcSwap<RunningTrials>>);

impl TrialCache {
    pub fn current(&self) -> arc_swap::Guard<Arc<RunningTrials>> {
        self.0.load()
    }
    pub fn install(&self, t: RunningTrials) {
        self.0.store(Arc::new(t));
    }
}

/// Reloads running trials when the trials version changed.
pub async fn refresh(state: &AppState) -> Result<(), StoreError> {
    let version = state.store.trials_version().await?;
    if version == state.trials.current().version && version != 0 {
        return Ok(());
    }
    let mut by_flag: HashMap<String, Vec<Arc<RunningTrial>>> = HashMap::new();
    for r in state.store.running_trials().await? {
        match RunningTrial::from_record(&r) {
            Ok(t) => by_flag
                .entry(t.spec.flag.clone())
                .or_default()
                .push(Arc::new(t)),
            Err(e) => tracing::error!(trial = %r.key, error = %e, "running trial cannot be served"),
        }
    }
    state.trials.install(RunningTrials { version, by_flag });
    Ok(())
}

/// The arm a unit gets in a trial, with what the exposure record needs.
#[derive(Debug, Clone)]
pub struct Decision {
    pub trial: Arc<RunningTrial>,
    pub arm: String,
    /// The raw unit id. It stays in memory: the exposure writer
    /// pseudonymises it before anything is stored.
    pub unit_id: String,
    pub community: Option<String>,
    /// A developer's cohort override decided the value: the unit is
    /// excluded from the analysis population.
    pub excluded_reason: Option<String>,
}

fn community_of(ctx: &EvalContext<'_>) -> Option<String> {
    match ctx.context().get("community")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decides whether the context takes part in one of the flag's running
/// trials and, if so, in which arm. `cohort` is the developer override that
/// matched, if any, as (cohort name, variant served). Blocked designs assign
/// through the database on a unit's first evaluation. With `consent_scope`
/// set, a member (a trial whose unit is the user) without a granted consent
/// is not enrolled: `None`, the flag's own answer, nothing recorded.
pub async fn decide(
    state: &AppState,
    flag: &str,
    ctx: &EvalContext<'_>,
    cohort: Option<(&str, &str)>,
) -> Result<Option<Decision>, StoreError> {
    let trials = state.trials.current();
    let Some(list) = trials.by_flag.get(flag) else {
        return Ok(None);
    };
    let now = ctx.now_unix_secs();
    for trial in list {
        let spec = &trial.spec;
        let Some(unit_id) = spec.unit.unit_id(ctx) else {
            continue;
        };
        // Outside the schedule, beyond the ramp, ineligible or in another
        // layer range: the flag's normal evaluation, and no exposure.
        if !spec.in_ramp(&unit_id, now) || !spec.is_eligible(ctx) || !spec.in_layer(&unit_id) {
            continue;
        }
        if let (Some(scope), Unit::User) = (&state.config.consent_scope, &spec.unit) {
            if !crate::unit_cache::consented(state, scope, &unit_id).await? {
                continue;
            }
        }
        let community = community_of(ctx);
        if let Some((c, variant)) = cohort {
            return Ok(Some(Decision {
                trial: Arc::clone(trial),
                arm: variant.to_string(),
                unit_id,
                community,
                excluded_reason: Some(format!("cohort override '{c}'")),
            }));
        }
        let arm = match (&spec.design, &trial.allocation) {
            (Design::Hash { .. }, _) => hash_arm(spec, &unit_id).variant.clone(),
            (Design::Cluster { .. }, Allocation::Cluster(map)) => match map.get(&unit_id) {
                Some(a) => a.clone(),
                None => continue,
            },
            (Design::SteppedWedge { .. }, Allocation::SteppedWedge(schedule)) => {
                match arm_at(spec, schedule, &unit_id, now) {
                    Some(a) => a.variant.clone(),
                    None => continue,
                }
            }
            (Design::Blocked { .. }, _) => {
                blocked(
                    state,
                    trial,
                    &unit_id,
                    spec.stratum(ctx),
                    community.as_deref(),
                )
                .await?
            }
            _ => continue,
        };
        return Ok(Some(Decision {
            trial: Arc::clone(trial),
            arm,
            unit_id,
            community,
            excluded_reason: None,
        }));
    }
    Ok(None)
}

async fn blocked(
    state: &AppState,
    trial: &Arc<RunningTrial>,
    unit_id: &str,
    stratum: String,
    community: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(arm) = state.exposures.cached_arm(trial.id, unit_id) {
        return Ok(arm);
    }
    let unit = pseudonymise(&state.config.study_key, unit_id);
    let t = Arc::clone(trial);
    let stratum_for_arm = stratum.clone();
    let arm_for = move |position: i64| {
        blocked_arm(&t.spec, t.seed, &stratum_for_arm, position as u64)
            .variant
            .clone()
    };
    let (record, _) = state
        .store
        .assign_sequential(
            &NewSequentialAssignment {
                trial_id: trial.id,
                unit: unit.as_str(),
                stratum: Some(&stratum),
                community,
                trial_version: trial.version,
                at: state.clock.now(),
            },
            &arm_for,
        )
        .await?;
    state.exposures.remember_arm(trial.id, unit_id, &record.arm);
    Ok(record.arm)
}

const BATCH: usize = 2_000;
/// At shutdown, attempts (backing off from 100 ms) at each batch left
/// before it is counted as dropped; while running, the writer never gives
/// up on a batch.
const SHUTDOWN_ATTEMPTS: u32 = 4;

/// Sends first exposures to the writer. Each server remembers which units'
/// exposures it has written, so the database sees each (trial, unit) about
/// once per server; the database keeps the first. A unit counts as seen only
/// once its exposure is in the database: until then (a slow or unavailable
/// store) every evaluation sends it again.
/// An exposure on its way to the writer, with the raw unit id.
#[derive(Debug)]
pub struct PendingExposure {
    trial_id: i64,
    unit_id: String,
    arm: String,
    community: Option<String>,
    trial_version: i64,
    at: chrono::DateTime<chrono::Utc>,
    source: ExposureSource,
    excluded_reason: Option<String>,
}

#[derive(Clone)]
pub struct ExposureSink {
    tx: mpsc::Sender<PendingExposure>,
    rx: Arc<Mutex<Option<mpsc::Receiver<PendingExposure>>>>,
    /// The (trial, unit) pairs whose exposure is written and blocked-design
    /// arms, by digest and bounded by memory (`crate::dedup`): never the
    /// raw ids.
    dedup: Arc<ExposureDedup>,
    /// First exposures that were not recorded: refused by the database, or
    /// still unwritten when the writer had to stop.
    dropped: Arc<AtomicU64>,
}

impl Default for ExposureSink {
    fn default() -> Self {
        ExposureSink::with_budget(crate::state::Config::default().exposure_cache_bytes)
    }
}

impl ExposureSink {
    /// The receiving end, for the one writer task ([`run_writer`]).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<PendingExposure>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// A sink whose two de-duplication caches take at most `bytes` each.
    pub fn with_budget(bytes: usize) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        ExposureSink {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            dedup: Arc::new(ExposureDedup::with_budget(bytes)),
            dropped: Arc::default(),
        }
    }

    /// Bytes held by the two de-duplication caches.
    pub fn cache_bytes(&self) -> usize {
        self.dedup.allocated_bytes()
    }

    fn cached_arm(&self, trial: i64, unit: &str) -> Option<String> {
        self.dedup.cached_arm(trial, unit).map(|a| a.to_string())
    }

    /// Forgets every unit's arm and reported exposures (after an erasure:
    /// the unit is assigned and reported afresh).
    pub fn forget_units(&self) {
        self.dedup.clear();
    }

    fn remember_arm(&self, trial: i64, unit: &str, arm: &str) {
        self.dedup.remember_arm(trial, unit, arm);
    }

    /// First exposures this server did not record (refused by the
    /// database, or unwritten at shutdown); each is also logged.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Remembers that the exposure of `unit` in `trial` is in the database.
    fn mark_seen(&self, trial: i64, unit: &str) {
        self.dedup.mark_seen(trial, unit);
    }

    /// Records the exposure of a decision (once per unit and server, once
    /// it is written).
    pub async fn record(
        &self,
        d: &Decision,
        source: ExposureSource,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        if self.dedup.is_seen(d.trial.id, &d.unit_id) {
            return;
        }
        let e = PendingExposure {
            trial_id: d.trial.id,
            unit_id: d.unit_id.clone(),
            arm: d.arm.clone(),
            community: d.community.clone(),
            trial_version: d.trial.version,
            at,
            source,
            excluded_reason: d.excluded_reason.clone(),
        };
        // Waiting here only happens when the writer is 65,536 exposures
        // behind: backpressure rather than loss.
        if self.tx.send(e).await.is_err() {
            self.count_dropped(1);
            tracing::error!("exposure writer is gone; exposure not recorded");
        }
    }
}

/// How long [`write`] keeps trying.
enum Until<'a> {
    /// Until the batch is written or the shutdown signal comes.
    Shutdown(&'a mut watch::Receiver<bool>),
    /// At most this many attempts.
    Attempts(u32),
}

/// Writes `pending` (and the assignments of stateless designs), marks the
/// written units as seen and empties `pending`; `false` (leaving `pending`
/// as it was) if the store stayed unavailable for as long as `until`
/// allows. Exposures the database refuses are left out (see
/// [`record_isolating`]), counted as dropped and logged.
async fn write(
    store: &Store,
    key: &StudyKey,
    sink: &ExposureSink,
    pending: &mut Vec<PendingExposure>,
    mut until: Until<'_>,
) -> bool {
    if pending.is_empty() {
        return true;
    }
    let batch: Vec<NewExposure> = pending
        .iter()
        .map(|p| NewExposure {
            trial_id: p.trial_id,
            unit: pseudonymise(key, &p.unit_id).into_string(),
            arm: p.arm.clone(),
            community: p.community.clone(),
            trial_version: p.trial_version,
            at: p.at,
            source: p.source,
            excluded_reason: p.excluded_reason.clone(),
        })
        .collect();
    // Stateless designs get their assignment recorded with the exposure, so
    // the export lists every exposed unit with its arm.
    for e in batch.iter().filter(|e| e.excluded_reason.is_none()) {
        let a = NewAssignment {
            trial_id: e.trial_id,
            unit: &e.unit,
            arm: &e.arm,
            stratum: None,
            community: e.community.as_deref(),
            trial_version: e.trial_version,
            at: e.at,
        };
        if let Err(err) = store.assign_fixed(&a).await {
            tracing::warn!(error = %err, "could not record an assignment");
        }
    }
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        let e = match record_isolating(store, &batch).await {
            Ok(refused) => break refused,
            Err(e) => e,
        };
        match &mut until {
            Until::Attempts(n) if attempt >= *n => {
                tracing::error!(error = %e, n = batch.len(), "could not record exposures at shutdown");
                return false;
            }
            Until::Attempts(_) => tokio::time::sleep(delay).await,
            Until::Shutdown(stop) => {
                tracing::warn!(error = %e, n = batch.len(), "could not record exposures; retrying");
                if *stop.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            return false;
                        }
                    }
                }
            }
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    sink.count_dropped(refused.len());
    for (i, p) in pending.drain(..).enumerate() {
        if refused.binary_search(&i).is_err() {
            sink.mark_seen(p.trial_id, &p.unit_id);
        }
    }
    true
}

/// Records `batch`; if the database refuses a row (a constraint), records
/// the rest by halves and returns the indexes of the rows it refuses on
/// their own, ascending, counted as dropped and logged (they are not marked
/// as seen: a later evaluation sends the unit again). Recording is
/// idempotent, so halves written before an error are harmless to repeat.
async fn record_isolating(store: &Store, batch: &[NewExposure]) -> Result<Vec<usize>, StoreError> {
    let mut refused = Vec::new();
    let mut todo = vec![(0, batch.len())];
    while let Some((lo, hi)) = todo.pop() {
        match store.record_exposures(&batch[lo..hi]).await {
            Ok(_) => {}
            Err(e) if e.is_refused_row() && hi - lo == 1 => {
                tracing::error!(error = %e, trial = batch[lo].trial_id, "the database refused a first exposure; not recorded");
                refused.push(lo);
            }
            Err(e) if e.is_refused_row() => {
                let mid = (lo + hi) / 2;
                todo.push((mid, hi));
                todo.push((lo, mid));
            }
            Err(e) => return Err(e),
        }
    }
    refused.sort_unstable();
    Ok(refused)
}

/// Writes exposures in batches until `shutdown`, then drains what is left.
/// A batch is retried until it is written while the server runs; at
/// shutdown each batch left gets a few attempts, and what still cannot be
/// written is counted ([`ExposureSink::dropped`]) and logged, never dropped
/// silently.
pub async fn run_writer(
    store: Store,
    key: Arc<StudyKey>,
    sink: ExposureSink,
    mut rx: mpsc::Receiver<PendingExposure>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                if !write(&store, &key, &sink, &mut batch, Until::Shutdown(&mut shutdown)).await {
                    break;
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    rx.close();
    let before = sink.dropped();
    let mut reachable = true;
    // `batch` may still hold the batch the shutdown interrupted.
    while !batch.is_empty() || rx.recv_many(&mut batch, BATCH).await > 0 {
        if reachable {
            reachable = write(
                &store,
                &key,
                &sink,
                &mut batch,
                Until::Attempts(SHUTDOWN_ATTEMPTS),
            )
            .await;
        }
        if !reachable {
            sink.count_dropped(batch.len());
            batch.clear();
        }
    }
    let dropped = sink.dropped();
    if dropped > 0 {
        tracing::error!(
            dropped,
            at_shutdown = dropped - before,
            "first exposures were not recorded by this server (refused by the database, or the store was unavailable at shutdown)"
        );
    }
}
