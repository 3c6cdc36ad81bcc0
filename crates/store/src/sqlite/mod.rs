//! SQLite backend: the pools (one writer connection, a few readers; see
//! the crate documentation), `BEGIN IMMEDIATE`, and event ingestion
//! (`events`). Everything else runs the shared statements through
//! `with_backend!`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::{bad_url, db_err, migrate_err};
use crate::StoreError;

mod events;

use events::WalSync;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes the database's write lock up front (see the crate documentation).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

#[derive(Clone)]
pub(crate) struct SqliteStore {
    /// Up to [`crate::StoreOptions::max_connections`] connections (the writer itself for `:memory:`).
    read: SqlitePool,
    /// Exactly one connection.
    write: SqlitePool,
    /// Durability of event commits made with `synchronous = NORMAL`.
    wal: Arc<WalSync>,
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl SqliteStore {
    pub(crate) async fn connect(url: &str, readers: Option<u32>) -> Result<Self, StoreError> {
        let base: SqliteConnectOptions = url.parse().map_err(|e| bad_url(url, e))?;
        let base = base
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        if is_memory(url) {
            // The database exists only as long as its connection: keep one,
            // forever, and share it between reads and writes.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(base)
                .await
                .map_err(db_err)?;
            return Ok(SqliteStore {
                read: pool.clone(),
                write: pool,
                wal: Arc::new(WalSync::new(None)),
            });
        }

        // The file is created if missing, its directory is not: name it.
        let file = base.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Unavailable(format!(
                    "directory {} does not exist (the database file is created if missing, its directory is not)",
                    dir.display()
                )));
            }
        }
        create_private(file);
        let mut wal = file.as_os_str().to_owned();
        wal.push("-wal");
        // The writer opens (and creates) the file first and switches it to
        // WAL, which is persistent; readers then need not touch the journal
        // mode (changing it needs a lock that busy_timeout cannot wait for).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(
                base.clone()
                    .journal_mode(SqliteJournalMode::Wal)
                    // Checkpoint every 100,000 WAL pages (400 MB) rather than
                    // 1,000: ingestion commits of random ids and units dirty
                    // thousands of index pages each, and a larger WAL lets a
                    // checkpoint write a page once for many commits; a 64 MB
                    // page cache (2 MB by default) keeps the indexes' upper
                    // levels and hot leaves. Measured in docs/benchmarks.md.
                    .pragma("wal_autocheckpoint", "100000")
                    .pragma("cache_size", "-65536")
                    // Deleted rows (erasure, retention) are overwritten with
                    // zeros, in their pages and in freed pages, rather than
                    // left readable in the file. Only the writer deletes.
                    .pragma("secure_delete", "ON"),
            )
            .await
            .map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(readers.unwrap_or(crate::StoreOptions::DEFAULT_SQLITE_READERS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(db_err)?;
        Ok(SqliteStore {
            read,
            write,
            wal: Arc::new(WalSync::new(Some(wal.into()))),
        })
    }

    /// The readers: WAL lets them read while the writer writes.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// The one writer connection, for a statement on its own.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// A write transaction on the writer connection, holding the database's
    /// write lock from its start (`BEGIN IMMEDIATE`). Dropped unfinished,
    /// it is rolled back before the connection is used again.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.write.begin_with(BEGIN_WRITE).await
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await.map_err(migrate_err)
    }

    pub(crate) async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Creates a missing database file readable by its owner only; SQLite
/// gives its `-wal` and `-shm` files the same permissions. Any failure is
/// left for SQLite's own open to report.
fn create_private(path: &std::path::Path) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = opts.open(path);
}
