//! Telemetry events: idempotent batch inserts (durable when they return,
//! or split from the wait for the disk), rows the database refuses isolated
//! (`ingest`), keyset-paginated export, retention. How a batch goes in
//! differs by database: `sqlite/events.rs` (multi-row inserts, the WAL
//! flush) and `postgres/events.rs` (`COPY` in a task of its own).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::column::{micros, Ts};
use crate::error::db_err;
use crate::{Inner, Store, StoreError};

pub(crate) mod ingest;

pub use ingest::RefusedEvent;

/// A telemetry event to store (owned: servers batch them).
///
/// `event_id` is the client's UUID, kept as [`uuid::Uuid`] (16 bytes): the
/// server parses the client's string once, malformed ids never reach the
/// store, and both databases keep the 16 raw bytes (`uuid` on PostgreSQL,
/// a 16-byte BLOB on SQLite) rather than 36 characters of text, which makes
/// the idempotency index less than half the size and its comparisons plain
/// byte comparisons. Random (v4) and time-ordered (v7) ids are both fine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The idempotency key: an event whose id is stored already is dropped.
    pub event_id: uuid::Uuid,
    /// 64 lowercase hex characters: a pseudonym, never a raw identifier.
    pub unit: String,
    /// `None` when there is none (`Some("")` is refused by the database).
    pub community: Option<String>,
    /// Not empty.
    pub name: String,
    /// When the event happened (client time), truncated to microseconds.
    pub ts: DateTime<Utc>,
    /// A flat JSON object (validated by the caller).
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EventRecord {
    pub event_id: uuid::Uuid,
    pub unit: String,
    pub community: Option<String>,
    pub name: String,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[sqlx(json)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl EventRecord {
    /// Where the next page of an export starts (after this record).
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            ts: self.ts,
            event_id: self.event_id,
        }
    }
}

/// The position of an event in export order, (ts, event_id): pass the
/// [`EventRecord::cursor`] of the last record of a page to get the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventCursor {
    pub ts: DateTime<Utc>,
    pub event_id: uuid::Uuid,
}

/// Which events to count or export: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    pub name: Option<String>,
    pub unit: Option<String>,
    pub community: Option<String>,
    /// Events at or after this time (`ts >= from`).
    pub from: Option<DateTime<Utc>>,
    /// Events before this time (`ts < to`).
    pub to: Option<DateTime<Utc>>,
}

/// What [`Store::insert_events`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertOutcome {
    /// Events stored by this call.
    pub inserted: u64,
    /// Ascending indexes into the batch of the events not stored because
    /// their id was stored already (by an earlier call, or concurrently by
    /// another) or occurs earlier in the same batch.
    pub duplicates: Vec<usize>,
    /// The events the database refused (a constraint, a value it cannot
    /// store), ascending by index: not stored, while the rest of the batch
    /// was.
    #[serde(default)]
    pub refused: Vec<RefusedEvent>,
}

/// Where a [`Store::insert_events_unsynced`] commit stands in the order of
/// commits, for [`Store::sync_events`].
#[must_use = "the events are on disk only once Store::sync_events has returned for this point"]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncPoint(u64);

/// An event ready for a backend: deduplicated within its batch, sorted by
/// id, timestamps truncated, properties serialized.
pub(crate) struct PreparedEvent<'a> {
    pub(crate) event: &'a NewEvent,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) properties: String,
}

impl Store {
    /// Stores the events of `batch` whose ids are not stored yet, all with
    /// `received_at`, in one transaction: `Ok` only once they are committed
    /// durably ([`Store::insert_events_unsynced`] then
    /// [`Store::sync_events`]). Reports which events were duplicates (id
    /// stored already, or repeated earlier in the batch: the first
    /// occurrence wins), so a retried batch stores nothing twice. Safe
    /// against concurrent callers in any number of processes: every id is
    /// stored once and reported as inserted by exactly one of them. Rows
    /// the database refuses (malformed unit, empty name, a NUL byte on
    /// PostgreSQL, …) are left out and reported in
    /// [`InsertOutcome::refused`]; the rest is committed in one transaction
    /// (see `ingest`: they are found by bisection in transactions that are
    /// rolled back).
    ///
    /// PostgreSQL: `COPY` into a per-connection temporary staging table,
    /// then `INSERT … SELECT … ORDER BY event_id ON CONFLICT DO NOTHING`
    /// (sorted, so that concurrent batches take index locks in the same
    /// order and cannot deadlock). SQLite: multi-row `INSERT … ON CONFLICT
    /// DO NOTHING` statements in one `BEGIN IMMEDIATE` transaction. Only
    /// when fewer rows than events went in does either read back which ids
    /// are its own (SQLite: the rows above the largest rowid before;
    /// PostgreSQL: the rows whose `xmin` is this transaction).
    pub async fn insert_events(
        &self,
        batch: &[NewEvent],
        received_at: DateTime<Utc>,
    ) -> Result<InsertOutcome, StoreError> {
        let (outcome, point) = self.insert_events_unsynced(batch, received_at).await?;
        self.sync_events(point).await?;
        Ok(outcome)
    }

    /// [`Store::insert_events`] without waiting for the disk: the events
    /// are committed (visible, and they survive the process being killed)
    /// but survive a power loss only once [`Store::sync_events`] has
    /// returned for the [`SyncPoint`]. Lets a caller start the next
    /// transaction while the disk flushes this one. PostgreSQL commits
    /// durably here already (its default `synchronous_commit`); SQLite
    /// commits with `synchronous = NORMAL` and flushes the WAL in
    /// `sync_events`, one flush for every commit made before it.
    pub async fn insert_events_unsynced(
        &self,
        batch: &[NewEvent],
        received_at: DateTime<Utc>,
    ) -> Result<(InsertOutcome, SyncPoint), StoreError> {
        let (mut prepared, mut duplicates) = prepare_events(batch)?;
        if prepared.is_empty() {
            let outcome = InsertOutcome {
                inserted: 0,
                duplicates,
                refused: Vec::new(),
            };
            return Ok((outcome, SyncPoint(0)));
        }
        let received_at = micros(received_at);
        let ((ids, point), refused_ids) = self.insert_isolating(&mut prepared, received_at).await?;
        let inserted: std::collections::HashSet<uuid::Uuid> = ids.into_iter().collect();
        let mut first_index: std::collections::HashMap<uuid::Uuid, usize> =
            std::collections::HashMap::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            first_index.entry(e.event_id).or_insert(i);
        }
        for p in &prepared {
            if !inserted.contains(&p.event.event_id) {
                duplicates.push(first_index[&p.event.event_id]);
            }
        }
        let mut refused: Vec<RefusedEvent> = Vec::with_capacity(refused_ids.len());
        if !refused_ids.is_empty() {
            // A repeat of a refused event (same id later in the batch) is
            // refused with it, not reported as stored.
            let reasons: std::collections::HashMap<uuid::Uuid, String> =
                refused_ids.into_iter().collect();
            duplicates.retain(|&i| match reasons.get(&batch[i].event_id) {
                Some(reason) => {
                    refused.push(RefusedEvent {
                        index: i,
                        reason: reason.clone(),
                    });
                    false
                }
                None => true,
            });
            refused.extend(reasons.into_iter().map(|(id, reason)| RefusedEvent {
                index: first_index[&id],
                reason,
            }));
            refused.sort_unstable_by_key(|r| r.index);
        }
        duplicates.sort_unstable();
        let outcome = InsertOutcome {
            inserted: inserted.len() as u64,
            duplicates,
            refused,
        };
        Ok((outcome, SyncPoint(point)))
    }

    /// Returns once the events of the [`Store::insert_events_unsynced`]
    /// call that gave `point` (and of every earlier one) are on disk.
    /// Concurrent callers share one flush.
    pub async fn sync_events(&self, point: SyncPoint) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Sqlite(s) => s.sync_events(point.0).await,
            Inner::Postgres(_) => Ok(()),
        }
    }

    /// How many event transactions are worth running at once: SQLite has
    /// one writer; PostgreSQL overlaps one transaction's commit (its WAL
    /// flush) with the next ones' work.
    pub fn event_writers(&self) -> usize {
        match &self.inner {
            Inner::Sqlite(_) => 1,
            Inner::Postgres(_) => crate::postgres::EVENT_WRITERS,
        }
    }

    /// How many stored events match `filter`.
    pub async fn count_events(&self, filter: &EventFilter) -> Result<u64, StoreError> {
        let n: i64 = with_backend!(self, |db| {
            let mut q = QueryBuilder::new("SELECT COUNT(*) FROM events WHERE 1 = 1");
            push_filter(&mut q, filter);
            q.build_query_scalar().fetch_one(db.reader()).await
        })
        .map_err(db_err)?;
        Ok(n as u64)
    }

    /// A page of the events matching `filter` in (ts, event_id) order:
    /// those after `after` (the [`EventRecord::cursor`] of the last record
    /// of the previous page), at most `limit`. Keyset pagination: a page
    /// costs the same wherever it is, and events inserted meanwhile are
    /// neither skipped nor repeated unless they sort before the cursor.
    pub async fn export_events(
        &self,
        filter: &EventFilter,
        after: Option<&EventCursor>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        with_backend!(self, |db| {
            let mut q = QueryBuilder::new(
                "SELECT event_id, unit, community, name, ts, received_at, properties \
                 FROM events WHERE 1 = 1",
            );
            push_filter(&mut q, filter);
            if let Some(after) = after {
                q.push(" AND (ts, event_id) > (")
                    .push_bind(Ts(micros(after.ts)))
                    .push(", ")
                    .push_bind(after.event_id)
                    .push(")");
            }
            q.push(" ORDER BY ts, event_id LIMIT ")
                .push_bind(i64::from(limit));
            q.build_query_as().fetch_all(db.reader()).await
        })
        .map_err(db_err)
    }

    /// Retention: deletes the events whose `ts` is before `cutoff`, at most
    /// `batch_limit` (at least 1) per transaction so that no transaction
    /// holds locks (SQLite: the write lock) for long, until none is left;
    /// returns how many were deleted. Each round finds its rows through the
    /// index on the event time (migration 0005: `(ts)` on PostgreSQL,
    /// `(ts, event_id)` on SQLite), so a sweep with nothing to delete costs
    /// one index probe (docs/benchmarks.md, "Telemetry storage").
    pub async fn delete_events_before(
        &self,
        cutoff: DateTime<Utc>,
        batch_limit: u32,
    ) -> Result<u64, StoreError> {
        let cutoff = Ts(micros(cutoff));
        let limit = i64::from(batch_limit.max(1));
        let mut total = 0;
        loop {
            let deleted = dispatch!(self.delete_events_batch(cutoff, limit))?;
            total += deleted;
            if deleted < limit as u64 {
                return Ok(total);
            }
        }
    }
}

/// Deduplicates `batch` by event id (the first occurrence wins; the
/// indexes of later ones are returned), sorts the rest by id, truncates
/// timestamps and serializes properties.
fn prepare_events(batch: &[NewEvent]) -> Result<(Vec<PreparedEvent<'_>>, Vec<usize>), StoreError> {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let mut repeated = Vec::new();
    let mut prepared = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        if !seen.insert(event.event_id) {
            repeated.push(i);
            continue;
        }
        let properties = serde_json::to_string(&event.properties)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
        prepared.push(PreparedEvent {
            event,
            ts: micros(event.ts),
            properties,
        });
    }
    prepared.sort_unstable_by_key(|p| p.event.event_id);
    Ok((prepared, repeated))
}

/// Appends the conditions of `filter` to a `… WHERE 1 = 1` statement.
fn push_filter<DB: Database>(q: &mut QueryBuilder<DB>, filter: &EventFilter)
where
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Ts: for<'a> Encode<'a, DB> + Type<DB>,
{
    if let Some(name) = &filter.name {
        q.push(" AND name = ").push_bind(name.as_str());
    }
    if let Some(unit) = &filter.unit {
        q.push(" AND unit = ").push_bind(unit.as_str());
    }
    if let Some(community) = &filter.community {
        q.push(" AND community = ").push_bind(community.as_str());
    }
    if let Some(from) = filter.from {
        q.push(" AND ts >= ").push_bind(Ts(micros(from)));
    }
    if let Some(to) = filter.to {
        q.push(" AND ts < ").push_bind(Ts(micros(to)));
    }
}
