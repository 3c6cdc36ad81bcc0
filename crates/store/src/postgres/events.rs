//! PostgreSQL side of [`crate::events`]: `COPY` into a per-connection
//! staging table, then one `INSERT … SELECT`, in a task of its own.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use super::PgStore;
use crate::column::Ts;
use crate::error::write_err;
use crate::events::PreparedEvent;
use crate::StoreError;

/// Event transactions worth running at once (see [`crate::Store::event_writers`]);
/// leaves most of the pool to other work.
pub(crate) const EVENT_WRITERS: usize = 3;

impl PgStore {
    /// `batch` is deduplicated and sorted by id, timestamps truncated.
    /// Returns the ids inserted.
    ///
    /// The transaction runs in a task of its own, so dropping this future
    /// (a client gone, a timeout) cannot interrupt it: sqlx's `COPY` is not
    /// cancel-safe (a `PgCopyIn` dropped while `finish()` awaits its
    /// `CommandComplete` leaves the connection one message out of step, and
    /// the pool hands it on; seen as `BeginFailed` on the next `BEGIN`).
    /// The task owns its data and its pooled connection; it commits or rolls
    /// back whole, and [`PgStore::close`] waits for it (the pool closes only
    /// once every connection is back).
    pub(crate) async fn insert_events(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<uuid::Uuid>, StoreError> {
        let inserted = self.copy_in_task(batch, received_at, true).await?;
        Ok(inserted.unwrap_or_else(|| batch.iter().map(|p| p.event.event_id).collect()))
    }

    /// Whether the database accepts every row of `batch`: the same
    /// transaction as [`PgStore::insert_events`], rolled back (see
    /// `crate::events::ingest`).
    pub(crate) async fn probe_events(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.copy_in_task(batch, received_at, false).await.map(drop)
    }

    /// [`copy_events`] in a task of its own (see [`PgStore::insert_events`]).
    async fn copy_in_task(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: DateTime<Utc>,
        commit: bool,
    ) -> Result<Option<Vec<uuid::Uuid>>, StoreError> {
        let data = copy_text(batch);
        let expected = batch.len() as u64;
        let pool = self.pool.clone();
        let task = tokio::spawn(copy_events(pool, data, expected, received_at, commit));
        match task.await {
            Ok(result) => result.map_err(write_err),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the event transaction was cancelled: {e}"
            ))),
        }
    }

    /// Deletes at most `limit` events older than `cutoff` in one
    /// statement.
    pub(crate) async fn delete_events_batch(
        &self,
        cutoff: Ts,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(DELETE_EVENTS_BATCH)
            .bind(cutoff)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(write_err)?;
        Ok(done.rows_affected())
    }
}

/// Created on every new connection (`after_connect`): the COPY target of
/// [`PgStore::insert_events`]. Temporary (private to its session, never
/// WAL-logged) and emptied at the end of every transaction that used it.
pub(super) const CREATE_EVENTS_STAGING: &str =
    "CREATE TEMPORARY TABLE IF NOT EXISTS events_staging (\
     event_id uuid NOT NULL, unit text NOT NULL, community text, name text NOT NULL, \
     ts timestamptz NOT NULL, properties jsonb NOT NULL) ON COMMIT DELETE ROWS";

/// Text format: tab-separated, `\N` for NULL, backslash escapes.
const COPY_EVENTS: &str =
    "COPY events_staging (event_id, unit, community, name, ts, properties) FROM STDIN";

/// $1 received_at. In id order, so that concurrent batches wait for each
/// other's index entries in the same order (no deadlocks).
const INSERT_STAGED_EVENTS: &str =
    "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) \
     SELECT event_id, unit, community, name, ts, $1, properties FROM events_staging \
     ORDER BY event_id ON CONFLICT (event_id) DO NOTHING";

/// The staged events this transaction inserted (a row's `xmin` is the id of
/// the transaction that inserted it; a conflicting row is someone else's).
const EVENT_IDS_INSERTED_HERE: &str = "SELECT e.event_id FROM events e \
     JOIN events_staging s USING (event_id) WHERE e.xmin = pg_current_xact_id()::xid";

/// A TID scan of at most $2 rows older than $1, found by a sequential scan
/// (heap order is roughly insertion order: old rows first).
const DELETE_EVENTS_BATCH: &str = "DELETE FROM events WHERE ctid = ANY(ARRAY(\
     SELECT ctid FROM events WHERE ts < $1 LIMIT $2))";

/// One event transaction of [`PgStore::insert_events`]: `COPY` of `data`
/// (`expected` rows) into the staging table, then the insert. `None` when
/// every row went in, else the ids this transaction inserted. Rolled back
/// instead of committed unless `commit` (a probe).
async fn copy_events(
    pool: PgPool,
    data: Vec<u8>,
    expected: u64,
    received_at: DateTime<Utc>,
    commit: bool,
) -> Result<Option<Vec<uuid::Uuid>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut copy = tx.copy_in_raw(COPY_EVENTS).await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await?;
    let stored = sqlx::query(INSERT_STAGED_EVENTS)
        .bind(received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if !commit {
        // The staging table is `ON COMMIT DELETE ROWS`: a rollback empties
        // it as well.
        tx.rollback().await?;
        return Ok(None);
    }
    // Reading back which ids went in only when some did not is cheaper
    // than `RETURNING` every id.
    let ids = if stored == expected {
        None
    } else {
        Some(
            sqlx::query_scalar(EVENT_IDS_INSERTED_HERE)
                .fetch_all(&mut *tx)
                .await?,
        )
    };
    tx.commit().await?;
    Ok(ids)
}

/// The COPY text-format rows of `batch`.
fn copy_text(batch: &[PreparedEvent<'_>]) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::with_capacity(batch.len() * 256);
    for p in batch {
        let e = p.event;
        let _ = write!(out, "{}\t", e.event_id.hyphenated());
        copy_escape(&mut out, &e.unit);
        out.push('\t');
        match &e.community {
            Some(c) => copy_escape(&mut out, c),
            None => out.push_str("\\N"),
        }
        out.push('\t');
        copy_escape(&mut out, &e.name);
        let _ = write!(out, "\t{}\t", p.ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        copy_escape(&mut out, &p.properties);
        out.push('\n');
    }
    out.into_bytes()
}

/// Appends `value` escaped for COPY's text format.
fn copy_escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}
