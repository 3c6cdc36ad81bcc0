//! What a replica caches about units (members) for the trial decision: their
//! consent, and when to forget it and the trial caches.
//!
//! With `consent_scope` set, a member is enrolled in a trial only while
//! their latest consent decision for that scope is a grant
//! ([`UnitCache::consented`]). Decisions are cached per raw unit id (bounded), so an
//! evaluation costs a database query only the first time a member is seen.
//! Every consent decision and every erasure bumps a counter in the
//! database; the poller ([`crate::sync`]) compares them with the ones seen
//! last and drops the consent cache (a consent change) or every cache about
//! units (an erasure: also the trial arms and reported exposures), so a
//! change made through any replica, or the CLI, holds on all of them
//! within a poll interval. The replica that made the change forgets at once.

use super::exposure::ExposureSink;
use commonlab_core::privacy::{pseudonymise, StudyKey};
use commonlab_store::{Store, StoreError, UnitVersions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Consent decisions cached, at most (then the cache starts over).
const CONSENT_LIMIT: usize = 1_000_000;

#[derive(Default)]
struct Inner {
    /// Bumped whenever the cache is cleared: a lookup that started before
    /// does not store its (possibly stale) answer.
    generation: u64,
    consent: HashMap<String, bool>,
    /// The database's counters when the caches were last checked.
    seen: Option<UnitVersions>,
}

/// Per-replica cache of consent decisions by raw unit id.
#[derive(Clone, Default)]
pub struct UnitCache(Arc<Mutex<Inner>>);

impl UnitCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, unit_id: &str) -> (u64, Option<bool>) {
        let inner = self.lock();
        (inner.generation, inner.consent.get(unit_id).copied())
    }

    fn put(&self, generation: u64, unit_id: &str, granted: bool) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.consent.len() >= CONSENT_LIMIT {
            inner.consent.clear();
        }
        inner.consent.insert(unit_id.to_string(), granted);
    }

    /// Forgets every cached consent decision.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.consent.clear();
    }

    /// Records the database's counters; returns the ones seen before
    /// (`None` the first time).
    fn swap_versions(&self, now: UnitVersions) -> Option<UnitVersions> {
        self.lock().seen.replace(now)
    }
}

/// Forgets everything this replica cached about units: consent, trial arms,
/// reported exposures (after an erasure).
pub fn forget_units(units: &UnitCache, exposures: &ExposureSink) {
    units.clear();
    exposures.forget_units();
}

impl UnitCache {
    /// Whether `unit_id`'s latest consent decision for `scope` is a grant
    /// (`key` pseudonymises it for the store).
    pub async fn consented(
        &self,
        store: &Store,
        key: &StudyKey,
        scope: &str,
        unit_id: &str,
    ) -> Result<bool, StoreError> {
        let (generation, cached) = self.get(unit_id);
        if let Some(granted) = cached {
            return Ok(granted);
        }
        let unit = pseudonymise(key, unit_id);
        let granted = store
            .consent_state(unit.as_str(), scope)
            .await?
            .is_some_and(|c| c.granted);
        self.put(generation, unit_id, granted);
        Ok(granted)
    }

    /// Drops the caches the database's counters say are stale: on a new
    /// erasure every cache about units (this one and `exposures`), on a new
    /// consent decision this one.
    pub async fn refresh(&self, store: &Store, exposures: &ExposureSink) -> Result<(), StoreError> {
        let now = store.unit_versions().await?;
        match self.swap_versions(now) {
            Some(before) if before.erasures != now.erasures => forget_units(self, exposures),
            Some(before) if before.consents != now.consents => self.clear(),
            _ => {}
        }
        Ok(())
    }
}
