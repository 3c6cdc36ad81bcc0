//! What ingestion stored, refused and dropped in this process (Prometheus
//! text at `/metrics`; no personal data).

use std::sync::atomic::{AtomicU64, Ordering};

/// Ingestion counters of this process (Prometheus text at `/metrics`).
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

    pub fn render(&self) -> String {
        let rows = [
            (
                "commonlab_events_stored_total",
                "Events stored by this process.",
                &self.stored,
            ),
            (
                "commonlab_events_duplicate_total",
                "Events already stored (retries).",
                &self.duplicates,
            ),
            (
                "commonlab_events_rejected_total",
                "Invalid events refused with an error.",
                &self.rejected,
            ),
            (
                "commonlab_events_dropped_not_allowed_total",
                "Events dropped: name not on the allow-list.",
                &self.dropped_not_allowed,
            ),
            (
                "commonlab_events_dropped_no_consent_total",
                "Events dropped: the unit has not consented.",
                &self.dropped_no_consent,
            ),
            (
                "commonlab_event_properties_removed_total",
                "Properties removed: key not on the allow-list.",
                &self.properties_removed,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
