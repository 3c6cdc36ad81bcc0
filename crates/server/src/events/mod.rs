//! Telemetry: `POST /v1/events` ([`api`]), the ingestion pipeline it shares
//! with `commonlab events import` ([`pipeline`]), the group committer that
//! writes the batches of concurrent requests together ([`group_commit`]),
//! and what ingestion counts for `/metrics` ([`counters`]).

pub mod api;
pub mod counters;
pub mod group_commit;
pub mod pipeline;

pub use api::IngestOutcome;
pub use counters::IngestCounters;
pub use pipeline::{admit, validate_event, Admitted, Dropped, Rejected};
