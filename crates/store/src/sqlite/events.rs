//! SQLite side of [`crate::events`]: multi-row inserts on the writer,
//! committed with `synchronous = NORMAL` and made durable by one flush of
//! the WAL for many commits ([`WalSync`]).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, QueryBuilder, Sqlite};

use super::{SqliteStore, BEGIN_WRITE};
use crate::column::Ts;
use crate::error::write_err;
use crate::events::PreparedEvent;
use crate::StoreError;

/// Event inserts commit with `synchronous = NORMAL` (the writer does not
/// wait for the disk) and become durable when [`WalSync::sync`] has called
/// `fdatasync` on the WAL file after them. The writer can so build the next
/// transaction while the disk flushes the previous one, and one flush covers
/// every commit made before it started (docs/benchmarks.md).
///
/// Why this is as durable as `synchronous = FULL` once `sync` returns: a
/// commit's WAL frames (and the WAL header) are written to the file before
/// `COMMIT` returns, and `fdatasync` on any descriptor of the file flushes
/// them all. If a checkpoint has meanwhile copied them into the database
/// (and possibly restarted the WAL), SQLite syncs the WAL before and the
/// database after every checkpoint in `NORMAL` mode, so they are durable
/// there; if the WAL file is gone (the last connection checkpointed and
/// deleted it), likewise.
pub(crate) struct WalSync {
    /// `None` for in-memory databases, which have nothing to flush.
    path: Option<std::path::PathBuf>,
    /// Number of event commits made so far.
    committed: AtomicU64,
    /// Every commit up to this number is durable, or the error of a flush
    /// that failed. The lock makes concurrent callers share one flush.
    synced: tokio::sync::Mutex<Result<u64, String>>,
}

/// The writer connection while it commits with `synchronous = NORMAL`:
/// unless it was set back to `FULL`, dropping it (an error, a cancelled
/// future) closes the connection instead of handing the other writes one
/// that does not wait for the disk.
struct NormalSyncGuard {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    restored: bool,
}

impl Drop for NormalSyncGuard {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

impl WalSync {
    pub(super) fn new(path: Option<std::path::PathBuf>) -> WalSync {
        WalSync {
            path,
            committed: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(Ok(0)),
        }
    }

    /// Records a commit; returns its number for [`WalSync::sync`].
    fn committed(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once commit number `upto` (and every earlier one) is durable.
    ///
    /// After a failed flush, every later call fails too: the kernel may
    /// have dropped the unwritten pages and marked them clean, so a later
    /// flush that succeeds proves nothing about them (PostgreSQL stops for
    /// the same reason). Nothing is acknowledged until the process is
    /// restarted and SQLite recovers from what is really on disk; clients
    /// retry the batches they were refused.
    pub(crate) async fn sync(&self, upto: u64) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut synced = self.synced.lock().await;
        match &*synced {
            Err(failed) => return Err(StoreError::Unavailable(failed.clone())),
            Ok(done) if *done >= upto => return Ok(()),
            Ok(_) => {}
        }
        // Everything committed before the flush starts is covered by it.
        let target = self.committed.load(Ordering::SeqCst);
        let path = path.clone();
        let flushed = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(file) => file.sync_data(),
            // Checkpointed into the (synced) database and deleted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await;
        let failure = match flushed {
            Ok(Ok(())) => {
                *synced = Ok(target);
                return Ok(());
            }
            Ok(Err(e)) => format!("could not flush the WAL to disk: {e}; restart the server"),
            Err(e) => format!("the WAL flush did not finish: {e}; restart the server"),
        };
        tracing::error!(error = %failure, "events can no longer be acknowledged");
        *synced = Err(failure.clone());
        Err(StoreError::Unavailable(failure))
    }
}

impl SqliteStore {
    /// Inserts `batch` (deduplicated and sorted by id, timestamps
    /// truncated) in one transaction committed with `synchronous = NORMAL`;
    /// returns the ids inserted and the commit's number, durable once
    /// [`WalSync::sync`] has returned for it.
    pub(crate) async fn insert_events_unsynced(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Vec<uuid::Uuid>, u64), StoreError> {
        let received_at = Ts(received_at).text();
        let mut guard = NormalSyncGuard {
            conn: self.write.acquire().await.map_err(write_err)?,
            restored: false,
        };
        let conn = &mut guard.conn;
        let result: Result<Option<Vec<uuid::Uuid>>, sqlx::Error> = async {
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut **conn)
                .await?;
            let mut tx = conn.begin_with(BEGIN_WRITE).await?;
            // New rows get rowids above the largest one (rowid table, no
            // AUTOINCREMENT), and the write lock keeps others out: the rows
            // above `before` are exactly this transaction's. Reading ids
            // back only when some event was a duplicate is cheaper than
            // `RETURNING`, which streams every id back row by row.
            let before: i64 = sqlx::query_scalar(LARGEST_EVENT_ROWID)
                .fetch_one(&mut *tx)
                .await?;
            let stored = insert_event_rows(&mut tx, batch, &received_at).await?;
            let inserted = if stored == batch.len() as u64 {
                None
            } else {
                Some(
                    sqlx::query_scalar(EVENT_IDS_ABOVE_ROWID)
                        .bind(before)
                        .fetch_all(&mut *tx)
                        .await?,
                )
            };
            tx.commit().await?;
            Ok(inserted)
        }
        .await;
        let restored = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut **conn)
            .await;
        guard.restored = restored.is_ok();
        drop(guard);
        let inserted = result.map_err(write_err)?;
        let seq = self.wal.committed();
        restored.map_err(write_err)?;
        let ids = match inserted {
            None => batch.iter().map(|p| p.event.event_id).collect(),
            Some(ids) => ids,
        };
        Ok((ids, seq))
    }

    /// Whether the database accepts every row of `batch`: inserts them in
    /// a transaction that is always rolled back (see `crate::events::ingest`).
    pub(crate) async fn probe_events(
        &self,
        batch: &[PreparedEvent<'_>],
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let received_at = Ts(received_at).text();
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.begin_write().await?;
            insert_event_rows(&mut tx, batch, &received_at).await?;
            tx.rollback().await
        }
        .await;
        result.map_err(write_err)
    }

    #[cfg(feature = "test-support")]
    pub(crate) fn wal_path(&self) -> Option<std::path::PathBuf> {
        self.wal.path.clone()
    }

    pub(crate) async fn sync_events(&self, upto: u64) -> Result<(), StoreError> {
        self.wal.sync(upto).await
    }

    /// Deletes at most `limit` events older than `cutoff` in one
    /// transaction.
    pub(crate) async fn delete_events_batch(
        &self,
        cutoff: Ts,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let result: Result<u64, sqlx::Error> = async {
            let mut tx = self.begin_write().await?;
            let done = sqlx::query(DELETE_EVENTS_BATCH)
                .bind(cutoff)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        }
        .await;
        result.map_err(write_err)
    }
}

const INSERT_EVENTS: &str =
    "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) ";

const INSERT_EVENTS_ON_CONFLICT: &str = " ON CONFLICT (event_id) DO NOTHING";

const LARGEST_EVENT_ROWID: &str = "SELECT COALESCE(MAX(rowid), 0) FROM events";

const EVENT_IDS_ABOVE_ROWID: &str = "SELECT event_id FROM events WHERE rowid > ?";

/// At most $2 rows older than $1, found through the `(ts, event_id)` index
/// (migration 0005), deleted by rowid.
const DELETE_EVENTS_BATCH: &str =
    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE ts < $1 LIMIT $2)";

/// Inserts `batch` in multi-row statements; returns how many rows went in
/// (the others' ids were stored already).
async fn insert_event_rows(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    batch: &[PreparedEvent<'_>],
    received_at: &str,
) -> Result<u64, sqlx::Error> {
    let mut stored = 0u64;
    let mut rest = batch;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(event_chunk_len(rest.len()));
        rest = tail;
        let mut q = QueryBuilder::<Sqlite>::new(INSERT_EVENTS);
        q.push_values(chunk, |mut row, p| {
            let e = p.event;
            row.push_bind(e.event_id)
                .push_bind(e.unit.as_str())
                .push_bind(e.community.as_deref())
                .push_bind(e.name.as_str())
                .push_bind(Ts(p.ts))
                .push_bind(received_at)
                .push_bind(p.properties.as_str());
        });
        q.push(INSERT_EVENTS_ON_CONFLICT);
        stored += q.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(stored)
}

/// The most events in one `INSERT` (7 parameters each, within SQLite's
/// 32766).
const EVENTS_PER_STATEMENT: usize = 512;

/// How many of `remaining` events go into the next statement: 512 while
/// there are that many, then the largest power of two that fits, so that a
/// batch of any size uses at most 10 distinct statements, all of which stay
/// in the connection's prepared-statement cache.
fn event_chunk_len(remaining: usize) -> usize {
    if remaining >= EVENTS_PER_STATEMENT {
        EVENTS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_wal_flush_refuses_every_later_acknowledgement() {
        let dir = std::env::temp_dir().join(format!("commonlab-walsync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // `sub` is a file, so opening `sub/db-wal` fails (not "not found").
        let sub = dir.join("sub");
        std::fs::write(&sub, b"").unwrap();
        let wal = WalSync::new(Some(sub.join("db-wal")));
        assert!(
            wal.sync(0).await.is_ok(),
            "nothing committed, nothing to flush"
        );
        let first = wal.committed();
        let err = wal.sync(first).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("restart")),
            "{err:?}"
        );

        // The file can be flushed now, yet nothing is acknowledged any more.
        std::fs::remove_file(&sub).unwrap();
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("db-wal"), b"frames").unwrap();
        let second = wal.committed();
        assert!(wal.sync(second).await.is_err());
        assert!(wal.sync(first).await.is_err());

        // A healthy one flushes and then answers from what it flushed.
        let healthy = WalSync::new(Some(sub.join("db-wal")));
        let point = healthy.committed();
        healthy.sync(point).await.unwrap();
        assert_eq!(*healthy.synced.lock().await, Ok(point));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
