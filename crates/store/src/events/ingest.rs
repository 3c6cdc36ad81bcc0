//! Events the database refuses, isolated from the batch they came in.
//!
//! A batch is one transaction, so one row the database refuses (a check
//! constraint, a value it cannot store such as a NUL byte in PostgreSQL
//! text, a trigger's veto) would fail every event of it, and every request
//! grouped into it would be retried forever. Instead, when a batch fails
//! with such a row-level error, the refused rows are found by bisection:
//! halves are inserted in *probe* transactions that are always rolled back
//! (nothing is committed twice, nothing is half-written), narrowing down to
//! single rows. The batch is then committed without them in one
//! transaction, and each refused event is reported with the database's
//! reason. Finding k refused rows among n costs about 2·k·log₂(n) probe
//! transactions; a batch without refused rows costs nothing extra.

use serde::{Deserialize, Serialize};

use super::PreparedEvent;
use crate::error::sqlite_primary_code;
use crate::{Store, StoreError};

/// An event of a batch that the database refused (see
/// [`crate::InsertOutcome::refused`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEvent {
    /// Its index in the batch.
    pub index: usize,
    /// The database's reason, e.g. `new row for relation "events" violates
    /// check constraint "events_unit_check"`.
    pub reason: String,
}

/// Whether `err` is about the values of a row rather than the database or
/// the connection: PostgreSQL data exceptions (class 22, e.g. a NUL byte)
/// and integrity constraint violations (class 23); SQLite
/// `SQLITE_CONSTRAINT` (checks, NOT NULL, a trigger's `RAISE`),
/// `SQLITE_MISMATCH` and `SQLITE_TOOBIG`.
pub(crate) fn is_row_refusal(err: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = err else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    let code = code.as_ref();
    match sqlite_primary_code(code) {
        Some(primary) => matches!(primary, 18..=20),
        None => code.starts_with("22") || code.starts_with("23"),
    }
}

fn reason(err: &StoreError) -> String {
    match err {
        StoreError::Database(sqlx::Error::Database(db)) => db.message().to_string(),
        other => other.to_string(),
    }
}

impl Store {
    /// Inserts `prepared` (see [`Store::insert_events_unsynced`]), leaving
    /// out the rows the database refuses: they are removed from `prepared`
    /// and returned by event id with the reasons, beside the backend's
    /// result for the rest (the ids inserted and the sync point). A failure
    /// that cannot be narrowed down to rows (it is not about values, or no
    /// row fails on its own) is returned as it was.
    pub(crate) async fn insert_isolating(
        &self,
        prepared: &mut Vec<PreparedEvent<'_>>,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<((Vec<uuid::Uuid>, u64), Vec<(uuid::Uuid, String)>), StoreError> {
        let mut refused = Vec::new();
        while !prepared.is_empty() {
            let err = match self.insert_prepared(prepared, received_at).await {
                Ok(done) => return Ok((done, refused)),
                Err(e) if is_row_refusal(&e) => e,
                Err(e) => return Err(e),
            };
            // Each round leaves out at least one row, so this ends.
            let mut found = self
                .refused_rows(prepared, received_at, err)
                .await?
                .into_iter()
                .peekable();
            let mut position = 0;
            prepared.retain(|p| {
                let out = found.next_if(|(k, _)| *k == position);
                position += 1;
                match out {
                    Some((_, why)) => {
                        refused.push((p.event.event_id, why));
                        false
                    }
                    None => true,
                }
            });
        }
        // Every row was refused: nothing was committed.
        Ok(((Vec::new(), 0), refused))
    }

    async fn insert_prepared(
        &self,
        prepared: &[PreparedEvent<'_>],
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Vec<uuid::Uuid>, u64), StoreError> {
        match &self.inner {
            crate::Inner::Sqlite(s) => s.insert_events_unsynced(prepared, received_at).await,
            crate::Inner::Postgres(p) => Ok((p.insert_events(prepared, received_at).await?, 0)),
        }
    }

    /// The rows of `rows` (which failed as a whole with `err`) that the
    /// database refuses on their own, ascending, with the reasons; `Err`
    /// (`err` itself if no single row fails) otherwise.
    async fn refused_rows(
        &self,
        rows: &[PreparedEvent<'_>],
        received_at: chrono::DateTime<chrono::Utc>,
        err: StoreError,
    ) -> Result<Vec<(usize, String)>, StoreError> {
        if rows.len() == 1 {
            return Ok(vec![(0, reason(&err))]);
        }
        let mut found = Vec::new();
        let mid = rows.len() / 2;
        // Depth first, the lower half first: `found` comes out ascending.
        let mut todo = vec![(mid, rows.len()), (0, mid)];
        while let Some((lo, hi)) = todo.pop() {
            match self.probe_events(&rows[lo..hi], received_at).await {
                Ok(()) => {}
                Err(e) if is_row_refusal(&e) && hi - lo == 1 => found.push((lo, reason(&e))),
                Err(e) if is_row_refusal(&e) => {
                    let mid = (lo + hi) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
                Err(e) => return Err(e),
            }
        }
        if found.is_empty() {
            Err(err)
        } else {
            Ok(found)
        }
    }

    async fn probe_events(
        &self,
        rows: &[PreparedEvent<'_>],
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        dispatch!(self.probe_events(rows, received_at))
    }
}
