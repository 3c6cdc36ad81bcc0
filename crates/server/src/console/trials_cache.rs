//! The trial page's aggregates, cached per replica ([`TrialDigests`]): a
//! trial page view never recomputes from raw events. A [`Digest`] holds
//! what needs the exposures or the events: the units assigned and exposed
//! per arm (`Store::arm_counts`) and the analysis of the stored trial
//! (`trials::analysis::analyse`: the data-quality checks with the exposures
//! per arm and community, the survey response), with what is derived from
//! the trial's file (the parsed spec, where it is in its schedule, the
//! schedule table), so a view parses nothing. It is computed at most
//! once per trial every `console_trial_cache` (default
//! [`crate::config::Config`]'s 10 s) and when the trial's status or
//! version changes; the page states when it was computed.
//!
//! Refreshing: the first view of a trial waits for its digest, and so does
//! the first view after the trial's status or version changed (what the
//! page says of its state must match). A view that finds a digest merely
//! older than the TTL is served it at once (its time is on the page) and
//! starts one refresh in the background, so no view waits for a
//! recomputation of a known trial, and a trial has at most one computation
//! running. The refreshes are tasks owned by [`TrialDigests`]: finished
//! ones are reaped when the next starts, and [`TrialDigests::shutdown`]
//! (called by [`crate::Running::wait`]) cancels and joins those still
//! running; they only read, so cancelling one loses nothing. A refresh
//! that fails is logged and the stale digest kept; the next view tries
//! again. At most [`MAX_DIGESTS`] trials are kept (the least recently
//! computed is dropped first).

use super::trials::{diagram, Diagram};
use crate::error::Error;
use crate::trials::analysis;
use crate::trials::overview::{schedule_view, ScheduleView};
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, TrialSpec};
use commonlab_report::analysis::TrialAnalysis;
use commonlab_store::{Store, TrialRecord, TrialStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Most trials whose digest a replica keeps.
pub const MAX_DIGESTS: usize = 64;

/// A trial's aggregates as of `as_of`.
#[derive(Debug)]
pub struct Digest {
    /// The trial's status and version it was computed for.
    stamp: (TrialStatus, i64),
    computed: Instant,
    /// The clock's time when it was computed.
    pub as_of: DateTime<Utc>,
    /// Per arm, sorted: units assigned, units exposed (not excluded).
    pub arms: Vec<(String, i64, i64)>,
    /// The analysis, or why there is none.
    pub analysis: Result<TrialAnalysis, String>,
    pub spec: TrialSpec,
    /// Where the trial is in its schedule, as of `as_of`.
    pub schedule: ScheduleView,
    pub diagram: Option<Diagram>,
}

#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Digest>>>,
    /// Held by the request or task computing the digest.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl Slot {
    fn set(&self, d: Arc<Digest>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
    }

    fn current(&self) -> Option<Arc<Digest>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The replica's digests, by trial key, and the refreshes running.
#[derive(Default)]
pub struct TrialDigests {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Background refreshes (at most one per slot); `None` once shut down.
    refreshes: Mutex<Option<JoinSet<()>>>,
    shut_down: std::sync::atomic::AtomicBool,
}

fn stamp(t: &TrialRecord) -> (TrialStatus, i64) {
    (t.status, t.version)
}

impl TrialDigests {
    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slots.get(key) {
            return s.clone();
        }
        if slots.len() >= MAX_DIGESTS {
            // Drop the least recently computed (one without a digest yet
            // first: it is being computed by a request that holds it).
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| s.current().map(|d| d.computed))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                slots.remove(&k);
            }
        }
        slots.entry(key.to_string()).or_default().clone()
    }

    /// Forgets `key`'s digest (after a change made through this replica):
    /// the next view computes it.
    pub fn forget(&self, key: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// The digest of `trial`: a fresh one (younger than `ttl`, for its
    /// status and version); else one for its status and version, served
    /// at once while a background refresh starts; else (none yet, or the
    /// trial changed) computed now.
    pub async fn get(
        &self,
        store: &Store,
        trial: &TrialRecord,
        now: DateTime<Utc>,
        ttl: Duration,
        min_cell: usize,
    ) -> Result<Arc<Digest>, Error> {
        let slot = self.slot(&trial.key);
        let same = |d: &Digest| d.stamp == stamp(trial);
        let fresh = |d: &Digest| same(d) && d.computed.elapsed() < ttl;
        let _guard = match slot.current() {
            Some(d) if fresh(&d) => return Ok(d),
            Some(stale) if same(&stale) => {
                if let Ok(guard) = slot.refreshing.clone().try_lock_owned() {
                    self.refresh_in_background(store, trial, now, min_cell, slot, guard);
                }
                return Ok(stale);
            }
            _ => {
                let g = slot.refreshing.lock().await;
                // Computed by the request that held the lock meanwhile.
                if let Some(d) = slot.current().filter(|d| fresh(d)) {
                    return Ok(d);
                }
                g
            }
        };
        let d = Arc::new(compute(store, trial, now, min_cell).await?);
        slot.set(d.clone());
        Ok(d)
    }

    /// Recomputes `trial`'s digest in a task of [`Self::refreshes`],
    /// holding `guard` (the slot's refresh lock) until it is stored.
    fn refresh_in_background(
        &self,
        store: &Store,
        trial: &TrialRecord,
        now: DateTime<Utc>,
        min_cell: usize,
        slot: Arc<Slot>,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let mut refreshes = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
        if self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let tasks = refreshes.get_or_insert_with(JoinSet::new);
        while tasks.try_join_next().is_some() {}
        let (store, trial) = (store.clone(), trial.clone());
        tasks.spawn(async move {
            let _guard = guard;
            match compute(&store, &trial, now, min_cell).await {
                Ok(d) => slot.set(Arc::new(d)),
                Err(e) => tracing::warn!(
                    trial = %trial.key,
                    error = %e,
                    "refreshing the console's trial digest failed; the previous one is kept"
                ),
            }
        });
    }

    /// Waits for the background refreshes running now (for tests).
    pub async fn settle(&self) {
        let tasks = self
            .refreshes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut tasks) = tasks {
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Cancels the background refreshes and waits for them to end; no new
    /// one starts afterwards (views then compute their digest themselves).
    pub async fn shutdown(&self) {
        let tasks = {
            let mut refreshes = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
            self.shut_down
                .store(true, std::sync::atomic::Ordering::Release);
            refreshes.take()
        };
        if let Some(mut tasks) = tasks {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
}

/// Computes `trial`'s digest as of `now`.
async fn compute(
    store: &Store,
    trial: &TrialRecord,
    now: DateTime<Utc>,
    min_cell: usize,
) -> Result<Digest, Error> {
    let computed = Instant::now();
    let spec = parse_trial(&trial.spec_source, &format!("trial {}", trial.key))?;
    let schedule = schedule_view(trial, now)?;
    let diagram = diagram(&spec, trial, &schedule);
    let arms = store.arm_counts(trial.id).await?;
    let analysis = match analysis::analyse(store, &trial.key, now, min_cell).await {
        Ok(a) => Ok(a),
        Err(Error::Store(e @ commonlab_store::StoreError::Unavailable(_))) => {
            return Err(Error::Store(e))
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(Digest {
        stamp: stamp(trial),
        computed,
        as_of: now,
        arms,
        analysis,
        spec,
        schedule,
        diagram,
    })
}
