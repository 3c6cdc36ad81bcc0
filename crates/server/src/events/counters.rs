//! What ingestion stored, refused and dropped in this process (exported at
//! `/metrics` by [`crate::observability`]; no personal data).

use std::sync::atomic::{AtomicU64, Ordering};

/// Ingestion counters of this process.
#[derive(Default)]
pub struct IngestCounters {
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped_not_allowed: AtomicU64,
    pub dropped_no_consent: AtomicU64,
    pub properties_removed: AtomicU64,
}

impl IngestCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
