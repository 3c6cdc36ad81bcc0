//! PostgreSQL backend: one pool, READ COMMITTED transactions whose
//! conditional writes do the compare-and-set (see the crate documentation),
//! and event ingestion by `COPY` (`events`). Everything else runs the shared
//! statements through `with_backend!`.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Postgres, Transaction};

use crate::error::{bad_url, migrate_err};
use crate::StoreError;

mod events;

pub(crate) use events::EVENT_WRITERS;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(crate) async fn connect(url: &str, size: Option<u32>) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e| bad_url(url, e))?;
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(size.unwrap_or(crate::StoreOptions::DEFAULT_POSTGRES_CONNECTIONS))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(events::CREATE_EVENTS_STAGING).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(reason) => bad_url(url, reason),
                // Refused connections are retried until the timeout.
                sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {target} within {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                )),
                other => StoreError::Unavailable(format!("PostgreSQL at {target}: {other}")),
            })?;
        Ok(PgStore { pool })
    }

    /// The pool, for reads.
    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, for a statement on its own.
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction at READ COMMITTED. sqlx claims it before the `BEGIN`
    /// round trip, so dropped at any point it is rolled back before the
    /// connection is used again.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(migrate_err)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}
