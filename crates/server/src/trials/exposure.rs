//! First exposures, written off the request path: the decisions of
//! [`super::decision`] ([`Decision`]), the sink handlers send them to, and
//! the writer task that records them in batches.
//!
//! Exposure rule: a single-flag OFREP evaluation that returns a trial arm is
//! an exposure; a bulk evaluation is one only when the trial says
//! `exposure.bulk = true`; clients that prefetch report real exposures with
//! `POST /api/v1/exposures`. Units are pseudonymised (HMAC-SHA256 under the
//! study key) before anything is stored.

use super::cache::RunningTrial;
use super::dedup::ExposureDedup;
use super::served::ServedTally;
use commonlab_core::privacy::{pseudonymise, StudyKey};
use commonlab_store::{ExposureSource, NewAssignment, NewExposure, Store, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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

const BATCH: usize = 2_000;
/// How often the writer adds the counts of [`ServedTally`] to the store.
const SERVED_FLUSH: Duration = Duration::from_secs(1);
/// At shutdown, attempts (backing off from 100 ms) at each batch left
/// before it is counted as dropped; while running, the writer never gives
/// up on a batch.
const SHUTDOWN_ATTEMPTS: u32 = 4;

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

/// Sends first exposures to the writer. Each server remembers which units'
/// exposures it has written, so the database sees each (trial, unit) about
/// once per server; the database keeps the first. A unit counts as seen only
/// once its exposure is in the database: until then (a slow or unavailable
/// store) every evaluation sends it again.
#[derive(Clone)]
pub struct ExposureSink {
    tx: mpsc::Sender<PendingExposure>,
    rx: Arc<Mutex<Option<mpsc::Receiver<PendingExposure>>>>,
    /// The (trial, unit) pairs whose exposure is written and blocked-design
    /// arms, by digest and bounded by memory ([`super::dedup`]): never the
    /// raw ids.
    dedup: Arc<ExposureDedup>,
    /// First exposures that were not recorded: refused by the database, or
    /// still unwritten when the writer had to stop.
    dropped: Arc<AtomicU64>,
    /// First exposures written.
    written: Arc<AtomicU64>,
    /// Community designs: every exposure served, per (trial, community,
    /// period, arm), until the writer adds them to the store.
    served: Arc<ServedTally>,
}

impl Default for ExposureSink {
    fn default() -> Self {
        ExposureSink::with_budget(crate::config::DEFAULT_EXPOSURE_CACHE_BYTES)
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
            written: Arc::default(),
            served: Arc::default(),
        }
    }

    /// Bytes held by the two de-duplication caches.
    pub fn cache_bytes(&self) -> usize {
        self.dedup.allocated_bytes()
    }

    pub(super) fn cached_arm(&self, trial: i64, unit: &str) -> Option<String> {
        self.dedup.cached_arm(trial, unit).map(|a| a.to_string())
    }

    /// Forgets every unit's arm and reported exposures (after an erasure:
    /// the unit is assigned and reported afresh).
    pub fn forget_units(&self) {
        self.dedup.clear();
    }

    pub(super) fn remember_arm(&self, trial: i64, unit: &str, arm: &str) {
        self.dedup.remember_arm(trial, unit, arm);
    }

    /// First exposures this server did not record (refused by the
    /// database, or unwritten at shutdown); each is also logged.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// First exposures this server wrote (`/metrics`).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Exposures waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Remembers that the exposure of `unit` in `trial`, excluded or not,
    /// is in the database.
    fn mark_seen(&self, trial: i64, unit: &str, excluded: bool) {
        self.dedup.mark_seen(trial, unit, excluded);
    }

    /// Records the exposure of a decision (once per unit and server, once
    /// it is written). An excluded decision (a cohort override) is sent
    /// even when the unit's plain exposure was written: the store then
    /// marks that exposure excluded. Every exposure of a community design
    /// is also counted per (community, period, arm served) for the
    /// schedule-adherence check ([`super::served`]).
    pub async fn record(
        &self,
        d: &Decision,
        source: ExposureSource,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        if d.trial.spec.is_community_design() {
            self.served.add(&d.trial, &d.unit_id, &d.arm, at);
        }
        if self
            .dedup
            .is_seen(d.trial.id, &d.unit_id, d.excluded_reason.is_some())
        {
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
    sink.written
        .fetch_add((pending.len() - refused.len()) as u64, Ordering::Relaxed);
    for (i, p) in pending.drain(..).enumerate() {
        if refused.binary_search(&i).is_err() {
            sink.mark_seen(p.trial_id, &p.unit_id, p.excluded_reason.is_some());
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

/// Adds the counts of exposures served per (trial, community, period,
/// arm) to the store in one transaction; on failure they are kept for the
/// next attempt.
async fn flush_served(store: &Store, sink: &ExposureSink) -> Result<(), StoreError> {
    let rows = sink.served.take();
    if rows.is_empty() {
        return Ok(());
    }
    match store.add_period_exposures(&rows).await {
        Ok(()) => Ok(()),
        Err(e) => {
            sink.served.restore(rows);
            Err(e)
        }
    }
}

/// Writes exposures in batches until `shutdown`, then drains what is left.
/// A batch is retried until it is written while the server runs; at
/// shutdown each batch left gets a few attempts, and what still cannot be
/// written is counted ([`ExposureSink::dropped`]) and logged, never dropped
/// silently. About once a second (and once more at shutdown) it adds the
/// exposures served per period ([`ServedTally`]) to the store.
pub async fn run_writer(
    store: Store,
    key: Arc<StudyKey>,
    sink: ExposureSink,
    mut rx: mpsc::Receiver<PendingExposure>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flush = tokio::time::interval(SERVED_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(e) = flush_served(&store, &sink).await {
                    tracing::warn!(error = %e, "could not add the exposures served per period; retrying");
                }
            }
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
    let mut attempt = 0;
    while let Err(e) = flush_served(&store, &sink).await {
        attempt += 1;
        if attempt >= SHUTDOWN_ATTEMPTS {
            tracing::error!(error = %e, lost = sink.served.pending(), "exposures served per period were not added at shutdown");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
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
