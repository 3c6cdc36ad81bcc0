//! Test harness: fresh, migrated databases on both backends (feature
//! `test-support`).
//!
//! * SQLite: a new file in a new directory under [`std::env::temp_dir`].
//! * PostgreSQL: a new schema (`cl_test_<unix secs>_<pid>_<n>`) in the
//!   database at `$COMMONLAB_TEST_POSTGRES_URL` (default
//!   [`DEFAULT_POSTGRES_URL`]); the store connects with `search_path` set to
//!   that schema and `application_name` set to its name. If the database
//!   itself is missing it is created. If PostgreSQL cannot be reached the
//!   test **fails** (never skips) with instructions to start it.
//!
//! Both are removed afterwards: by [`TestDb::cleanup`] (which
//! [`both_backends`] calls), or, if the test panicked, when the last clone of
//! the [`TestDb`] is dropped. Schemas left behind by killed test runs are
//! dropped by later runs once they are six hours old.
//!
//! # Use from another crate
//!
//! ```toml
//! [dev-dependencies]
//! commonlab-store = { workspace = true, features = ["test-support"] }
//! tokio.workspace = true
//! ```
//!
//! ```no_run
//! use commonlab_store::testing::{both_backends, TestDb};
//! use commonlab_store::Backend;
//!
//! #[tokio::test]
//! async fn works_on_both() {
//!     both_backends(|db: TestDb| async move {
//!         let store = db.store();
//!         assert!(store.flag_set_head("default").await.unwrap().is_none());
//!         // db.url() reaches the same database: hand it to a server or CLI
//!         // under test, or open a second Store with db.connect_another().
//!     })
//!     .await;
//! }
//!
//! #[tokio::test]
//! async fn only_postgres() {
//!     let db = TestDb::new(Backend::Postgres).await;
//!     db.store().ping().await.unwrap();
//!     db.cleanup().await;
//! }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::error::db_err;
use crate::{Backend, Store, StoreError};

/// Environment variable naming the PostgreSQL database tests use.
pub const POSTGRES_URL_ENV: &str = "COMMONLAB_TEST_POSTGRES_URL";
/// Used when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Both backends, in the order [`both_backends`] runs them.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

const SCHEMA_PREFIX: &str = "cl_test_";
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const START_HINT: &str = "start it with `pg_ctlcluster --skip-systemctl-redirect \
     $(ls /etc/postgresql) main start`, or point COMMONLAB_TEST_POSTGRES_URL at a \
     PostgreSQL database the tests may create schemas in";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs `test` on a fresh migrated SQLite database, then on a fresh migrated
/// PostgreSQL schema, cleaning each up afterwards. The backend in use is
/// printed to stderr (shown when a test fails) and is `db.backend()`.
pub async fn both_backends<F, Fut>(mut test: F)
where
    F: FnMut(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in BACKENDS {
        let db = TestDb::new(backend).await;
        eprintln!("--- store test on {backend}: {}", db.url());
        test(db.clone()).await;
        db.cleanup().await;
    }
}

/// A fresh database for one test. Clones share the database; it is removed
/// by [`TestDb::cleanup`] or when the last clone is dropped.
#[derive(Clone)]
pub struct TestDb {
    store: Store,
    url: String,
    backend: Backend,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.backend)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// A fresh, migrated database. Panics if it cannot be had.
    pub async fn new(backend: Backend) -> TestDb {
        let db = TestDb::unmigrated(backend).await;
        if let Err(e) = db.store.migrate().await {
            panic!("migrating the {backend} test database failed: {e}");
        }
        db
    }

    /// A fresh database without any migration applied.
    pub async fn unmigrated(backend: Backend) -> TestDb {
        let (url, cleanup) = match backend {
            Backend::Sqlite => new_sqlite(),
            Backend::Postgres => new_postgres_schema().await,
        };
        let guard = Arc::new(Guard(Mutex::new(Some(cleanup))));
        let store = match Store::connect(&url).await {
            Ok(store) => store,
            Err(e) => panic!("connecting to the {backend} test database {url} failed: {e}"),
        };
        TestDb {
            store,
            url,
            backend,
            guard,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A URL for [`Store::connect`] that reaches this same database (for
    /// PostgreSQL it carries the schema in `options=-c search_path=…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Another, independent [`Store`] (own pools) on the same database, as
    /// another process would have.
    pub async fn connect_another(&self) -> Store {
        match Store::connect(&self.url).await {
            Ok(store) => store,
            Err(e) => panic!("connecting again to {} failed: {e}", self.url),
        }
    }

    /// [`TestDb::connect_another`] with pools of `max_connections` (for
    /// PostgreSQL the pool; for SQLite the readers, beside the one writer).
    pub async fn connect_another_with(&self, max_connections: u32) -> Store {
        let options = crate::StoreOptions { max_connections };
        match Store::connect_with(&self.url, Some(options)).await {
            Ok(store) => store,
            Err(e) => panic!("connecting again to {} failed: {e}", self.url),
        }
    }

    /// Runs raw SQL (one or more statements) on the store's (write)
    /// connection; returns the rows affected.
    pub async fn execute_raw(&self, statements: &str) -> Result<u64, StoreError> {
        execute_raw(&self.store, statements).await
    }

    /// [`fetch_text_raw`] on this database's store.
    pub async fn fetch_text_raw(&self, query: &str) -> Result<Option<String>, StoreError> {
        fetch_text_raw(&self.store, query).await
    }

    /// Closes the store and removes the database (file or schema).
    pub async fn cleanup(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.store.close()).await;
        let cleanup = self
            .guard
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(cleanup) = cleanup {
            cleanup.run().await;
        }
    }
}

/// Runs raw SQL on `store` (tests only: outside tests, SQL stays inside the
/// store's methods).
pub async fn execute_raw(store: &Store, statements: &str) -> Result<u64, StoreError> {
    with_backend!(store, |db| sqlx::raw_sql(sqlx::AssertSqlSafe(statements))
        .execute(db.writer())
        .await
        .map(|done| done.rows_affected()))
    .map_err(db_err)
}

/// Runs a raw query on `store`'s (write) connection and returns the first
/// column of the first row as text (`None` for no row or NULL).
pub async fn fetch_text_raw(store: &Store, query: &str) -> Result<Option<String>, StoreError> {
    with_backend!(store, |db| {
        let row = sqlx::query(sqlx::AssertSqlSafe(query))
            .fetch_optional(db.writer())
            .await
            .map_err(db_err)?;
        row.map(|r| sqlx::Row::try_get::<Option<String>, _>(&r, 0))
            .transpose()
            .map(Option::flatten)
            .map_err(db_err)
    })
}

/// The WAL file whose flush makes SQLite event commits durable (`None` for
/// PostgreSQL and in-memory SQLite).
pub fn sqlite_wal_path(store: &Store) -> Option<std::path::PathBuf> {
    match &store.inner {
        crate::Inner::Sqlite(s) => s.wal_path(),
        crate::Inner::Postgres(_) => None,
    }
}

/// The PostgreSQL URL tests use.
pub fn postgres_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

struct Guard(Mutex<Option<Cleanup>>);

impl Drop for Guard {
    fn drop(&mut self) {
        let cleanup = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(cleanup) = cleanup else { return };
        // Possibly inside a runtime (a panicking async test): clean up on a
        // thread of our own with a runtime of its own.
        let worker = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(cleanup.run());
            }
        });
        let _ = worker.join();
    }
}

enum Cleanup {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        admin: Box<PgConnectOptions>,
        schema: String,
    },
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin, schema } => {
                let Ok(Ok(mut conn)) =
                    tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, admin.connect()).await
                else {
                    eprintln!("could not connect to drop test schema {schema}");
                    return;
                };
                // Sessions still open in the schema (a panicked test) could
                // hold locks that DROP SCHEMA would wait for.
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .execute(&mut conn)
                .await;
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await
                {
                    eprintln!("could not drop test schema {schema}: {e}");
                }
                let _ = conn.close().await;
            }
        }
    }
}

fn unique_suffix() -> (u64, u32, u64) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (
        secs,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    )
}

fn new_sqlite() -> (String, Cleanup) {
    let (secs, pid, n) = unique_suffix();
    let dir = std::env::temp_dir().join(format!("commonlab-store-test-{secs}-{pid}-{n}"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create test directory {}: {e}", dir.display());
    }
    let url = format!("sqlite://{}", dir.join("store.db").display());
    (url, Cleanup::Sqlite { dir })
}

async fn new_postgres_schema() -> (String, Cleanup) {
    let base = postgres_url();
    let admin: PgConnectOptions = match base.parse() {
        Ok(options) => options,
        Err(e) => panic!("{POSTGRES_URL_ENV}={base} is not a PostgreSQL URL: {e}"),
    };
    let mut conn = admin_connect(&base, &admin).await;

    sweep_stale_schemas(&mut conn).await;
    let (secs, pid, n) = unique_suffix();
    let schema = format!("{SCHEMA_PREFIX}{secs}_{pid}_{n}");
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut conn)
        .await
    {
        panic!("cannot create test schema {schema} in {base}: {e}");
    }
    let _ = conn.close().await;

    let separator = if base.contains('?') { '&' } else { '?' };
    let url =
        format!("{base}{separator}options=-c%20search_path%3D{schema}&application_name={schema}");
    (
        url,
        Cleanup::Postgres {
            admin: Box::new(admin),
            schema,
        },
    )
}

/// Connects to the test database, creating it if it does not exist.
async fn admin_connect(base: &str, admin: &PgConnectOptions) -> PgConnection {
    let unreachable = |e: &dyn std::fmt::Display| unreachable_postgres(base, e);
    let connect = |options: PgConnectOptions| async move {
        match tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, options.connect()).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    };
    match connect(admin.clone()).await {
        Ok(conn) => conn,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
            let name = admin.get_database().unwrap_or("test").to_string();
            let mut maintenance = match connect(admin.clone().database("postgres")).await {
                Ok(conn) => conn,
                Err(e) => unreachable(&e),
            };
            let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut maintenance)
                .await;
            // Another test may have created it at the same moment.
            if let Err(sqlx::Error::Database(db)) = &created {
                let code = db.code();
                if !matches!(code.as_deref(), Some("42P04") | Some("23505")) {
                    panic!("cannot create test database {name}: {db}");
                }
            }
            let _ = maintenance.close().await;
            match connect(admin.clone()).await {
                Ok(conn) => conn,
                Err(e) => unreachable(&e),
            }
        }
        Err(e) => unreachable(&e),
    }
}

fn unreachable_postgres(base: &str, e: &dyn std::fmt::Display) -> ! {
    panic!("PostgreSQL for tests is unreachable at {base} ({e}): {START_HINT}")
}

async fn sweep_stale_schemas(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname::text, $1)",
    )
    .bind(SCHEMA_PREFIX)
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| now.saturating_sub(secs) > STALE_AFTER.as_secs()) {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}
