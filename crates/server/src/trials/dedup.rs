//! Bounded memory for what a server remembers about units: which (trial,
//! unit) pairs it already reported as exposed, and which arm a blocked
//! design gave a unit.
//!
//! Entries are keyed by a fixed-size digest, never by the raw unit id (a
//! client chooses the id, and its length). The digest is 128 bits of keyed
//! SipHash (two keys drawn at random per process): a client cannot aim for
//! a collision, and an accidental one among a million units has a chance
//! of about 10⁻²⁷.
//!
//! Each cache keeps two generations of one fixed capacity: when the current
//! one is full it becomes the previous one, and the old previous one is
//! dropped; a hit in the previous generation is copied into the current one.
//! So memory never exceeds the budget, recently used entries stay, and
//! eviction costs O(1) per insert. An evicted unit's next exposure is sent
//! again, which the store ignores (it keeps the first); an evicted arm is
//! read again from the database.
//!
//! Hand-written (about sixty lines) rather than an LRU crate: those keep a
//! linked node per entry (40 bytes or more besides the key), where a flat
//! table of 16-byte digests needs 17, and an exact recency order is not
//! needed here.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex};

/// Makes the digests of (trial, unit) pairs.
pub struct Digester(RandomState, RandomState);

impl Default for Digester {
    fn default() -> Self {
        Digester(RandomState::new(), RandomState::new())
    }
}

impl Digester {
    pub fn digest(&self, trial: i64, unit: &str) -> u128 {
        let hi = self.0.hash_one((trial, unit));
        let lo = self.1.hash_one((trial, unit));
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// The digest of an excluded exposure of (trial, unit): not the one
    /// of its plain exposure, so that a unit whose plain exposure was
    /// written is still sent when a cohort override later excludes it.
    pub fn digest_excluded(&self, trial: i64, unit: &str) -> u128 {
        let hi = self.0.hash_one((trial, unit, true));
        let lo = self.1.hash_one((trial, unit, true));
        (u128::from(hi) << 64) | u128::from(lo)
    }

    fn seen_digest(&self, trial: i64, unit: &str, excluded: bool) -> u128 {
        if excluded {
            self.digest_excluded(trial, unit)
        } else {
            self.digest(trial, unit)
        }
    }
}

/// Digests are already uniform: the tables use their low bits as the hash.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type Digests = BuildHasherDefault<DigestHasher>;

/// Largest generation capacity whose two tables fit `budget` bytes, for
/// entries of `entry` bytes (the table adds one control byte per slot and
/// keeps slots a power of two at most 7/8 full).
/// Budgets under about 1 KiB get the smallest table (16 slots) anyway.
fn generation_capacity(budget: usize, entry: usize) -> usize {
    let mut slots = 16usize;
    while 2 * table_slots_bytes(slots * 2, entry) <= budget {
        slots *= 2;
    }
    slots / 8 * 7
}

/// Bytes of a table of `slots` slots of `entry` bytes: the entries, a
/// control byte each, and one group of trailing control bytes.
fn table_slots_bytes(slots: usize, entry: usize) -> usize {
    slots * (entry + 1) + 16
}

/// A set of digests bounded by memory (see the module documentation).
pub struct BoundedSet {
    current: HashSet<u128, Digests>,
    previous: HashSet<u128, Digests>,
    capacity: usize,
}

impl BoundedSet {
    pub fn with_budget(bytes: usize) -> Self {
        BoundedSet {
            current: HashSet::default(),
            previous: HashSet::default(),
            capacity: generation_capacity(bytes, std::mem::size_of::<u128>()),
        }
    }

    /// Inserts `d`; true when it was not there (in either generation).
    pub fn insert(&mut self, d: u128) -> bool {
        if self.current.contains(&d) {
            return false;
        }
        let known = self.previous.contains(&d);
        if self.current.len() >= self.capacity {
            self.previous = HashSet::default();
            let full = std::mem::replace(
                &mut self.current,
                HashSet::with_capacity_and_hasher(self.capacity, Digests::default()),
            );
            self.previous = full;
        } else if self.current.capacity() == 0 {
            self.current = HashSet::with_capacity_and_hasher(self.capacity, Digests::default());
        }
        self.current.insert(d);
        !known
    }

    pub fn contains(&self, d: u128) -> bool {
        self.current.contains(&d) || self.previous.contains(&d)
    }

    /// Forgets every entry (and frees the tables).
    pub fn clear(&mut self) {
        self.current = HashSet::default();
        self.previous = HashSet::default();
    }

    /// Entries held (both generations; an entry may be in both).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the two tables.
    pub fn allocated_bytes(&self) -> usize {
        table_bytes(self.current.capacity(), std::mem::size_of::<u128>())
            + table_bytes(self.previous.capacity(), std::mem::size_of::<u128>())
    }

    /// Fewest entries held once the first generation filled.
    pub fn generation_capacity(&self) -> usize {
        self.capacity
    }
}

/// A map from digests to small values, bounded like [`BoundedSet`].
pub struct BoundedMap<V> {
    current: HashMap<u128, V, Digests>,
    previous: HashMap<u128, V, Digests>,
    capacity: usize,
}

impl<V: Clone> BoundedMap<V> {
    /// `V` must not own heap memory for the budget to hold (use an
    /// interned `Arc<str>` rather than a `String`).
    pub fn with_budget(bytes: usize) -> Self {
        BoundedMap {
            current: HashMap::default(),
            previous: HashMap::default(),
            capacity: generation_capacity(bytes, std::mem::size_of::<(u128, V)>()),
        }
    }

    pub fn get(&mut self, d: u128) -> Option<V> {
        if let Some(v) = self.current.get(&d) {
            return Some(v.clone());
        }
        let v = self.previous.get(&d)?.clone();
        self.insert(d, v.clone());
        Some(v)
    }

    pub fn insert(&mut self, d: u128, v: V) {
        if self.current.len() >= self.capacity && !self.current.contains_key(&d) {
            self.previous = HashMap::default();
            let full = std::mem::replace(
                &mut self.current,
                HashMap::with_capacity_and_hasher(self.capacity, Digests::default()),
            );
            self.previous = full;
        } else if self.current.capacity() == 0 {
            self.current = HashMap::with_capacity_and_hasher(self.capacity, Digests::default());
        }
        self.current.insert(d, v);
    }

    /// Forgets every entry (and frees the tables).
    pub fn clear(&mut self) {
        self.current = HashMap::default();
        self.previous = HashMap::default();
    }

    pub fn allocated_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u128, V)>();
        table_bytes(self.current.capacity(), entry) + table_bytes(self.previous.capacity(), entry)
    }
}

/// Blocked-design arms by digest, the arm names interned (they come from
/// trial specs: a handful), so that an entry owns no heap memory.
pub struct ArmCache {
    map: BoundedMap<Arc<str>>,
    names: HashSet<Arc<str>>,
}

impl ArmCache {
    pub fn with_budget(bytes: usize) -> Self {
        ArmCache {
            map: BoundedMap::with_budget(bytes),
            names: HashSet::new(),
        }
    }

    pub fn get(&mut self, d: u128) -> Option<Arc<str>> {
        self.map.get(d)
    }

    pub fn insert(&mut self, d: u128, arm: &str) {
        let name = match self.names.get(arm) {
            Some(n) => Arc::clone(n),
            None => {
                let n: Arc<str> = Arc::from(arm);
                self.names.insert(Arc::clone(&n));
                n
            }
        };
        self.map.insert(d, name);
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn allocated_bytes(&self) -> usize {
        self.map.allocated_bytes()
    }
}

/// What one server remembers to send each first exposure once, and to look
/// up a blocked design's arm once: both caches, each within `bytes`.
pub struct ExposureDedup {
    digester: Digester,
    seen: Mutex<BoundedSet>,
    arms: Mutex<ArmCache>,
}

impl ExposureDedup {
    pub fn with_budget(bytes: usize) -> Self {
        ExposureDedup {
            digester: Digester::default(),
            seen: Mutex::new(BoundedSet::with_budget(bytes)),
            arms: Mutex::new(ArmCache::with_budget(bytes)),
        }
    }

    /// Whether the exposure of (trial, unit), excluded or not, is known
    /// to be written (and not evicted since).
    pub fn is_seen(&self, trial: i64, unit: &str, excluded: bool) -> bool {
        let d = self.digester.seen_digest(trial, unit, excluded);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(d)
    }

    /// Remembers that the exposure of (trial, unit), excluded or not, is
    /// written.
    pub fn mark_seen(&self, trial: i64, unit: &str, excluded: bool) {
        let d = self.digester.seen_digest(trial, unit, excluded);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d);
    }

    /// Forgets every unit (after an erasure).
    pub fn clear(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.arms.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn cached_arm(&self, trial: i64, unit: &str) -> Option<Arc<str>> {
        let d = self.digester.digest(trial, unit);
        self.arms.lock().unwrap_or_else(|e| e.into_inner()).get(d)
    }

    pub fn remember_arm(&self, trial: i64, unit: &str, arm: &str) {
        let d = self.digester.digest(trial, unit);
        self.arms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(d, arm);
    }

    /// Bytes held by both caches.
    pub fn allocated_bytes(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
        seen.allocated_bytes() + arms.allocated_bytes()
    }
}

/// Bytes of a hash table with `capacity` usable slots of `entry` bytes.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    table_slots_bytes((capacity * 8 / 7).next_power_of_two(), entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digests_do_not_depend_on_the_length_of_the_id() {
        let d = Digester::default();
        let long = "x".repeat(900 * 1024);
        assert_ne!(d.digest(1, &long), d.digest(1, &long[1..]));
        assert_ne!(d.digest(1, "a"), d.digest(2, "a"));
        assert_eq!(d.digest(1, "a"), d.digest(1, "a"));
    }

    #[test]
    fn a_set_stays_within_its_budget_and_keeps_recent_entries() {
        for budget in [1024usize, 64 * 1024, 1 << 20] {
            let mut s = BoundedSet::with_budget(budget);
            let cap = s.generation_capacity();
            assert!(cap >= 14, "budget {budget}: {cap}");
            for i in 0..(cap as u128 * 5) {
                assert!(s.insert(i), "{i} is new");
                assert!(
                    s.allocated_bytes() <= budget,
                    "budget {budget}: {} bytes",
                    s.allocated_bytes()
                );
                // The last `cap` entries are always remembered.
                let back = i.saturating_sub(cap as u128 - 1);
                assert!(s.contains(back), "{back} was inserted recently");
            }
        }
    }

    #[test]
    fn a_map_stays_within_its_budget() {
        let budget = 64 * 1024;
        let mut m: BoundedMap<Arc<str>> = BoundedMap::with_budget(budget);
        let arm: Arc<str> = Arc::from("treatment");
        for i in 0..100_000u128 {
            m.insert(i, Arc::clone(&arm));
            assert!(m.allocated_bytes() <= budget);
        }
        assert_eq!(m.get(99_999).as_deref(), Some("treatment"));
        assert_eq!(m.get(0), None);
    }

    proptest! {
        /// Whatever the order of inserts, a digest inserted twice in a row
        /// (nothing between) is reported new only the first time, and the
        /// set never reports an entry new while it holds it.
        #[test]
        fn insert_reports_new_only_for_unknown_digests(
            ops in proptest::collection::vec(0u128..200, 1..2_000),
        ) {
            let mut s = BoundedSet::with_budget(1024);
            for d in ops {
                let held = s.contains(d);
                prop_assert_eq!(s.insert(d), !held);
                prop_assert!(!s.insert(d));
                prop_assert!(s.allocated_bytes() <= 1024);
            }
        }
    }
}
