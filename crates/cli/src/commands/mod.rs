//! One module per command group; each takes the run's settings and its
//! arguments, and closes the store it opened on every path
//! ([`with_store`]).

pub mod analyze;
pub mod demo;
pub mod events;
pub mod experiments;
pub mod flags;
pub mod keys;
pub mod loadtest;
pub mod metrics;
pub mod power;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod surveys;
pub mod units;

use anyhow::{Context, Result};
use commonlab_server::service::ChangeMeta;
use commonlab_server::settings::DatabaseUrl;
use commonlab_store::Store;

/// Connects to `url` and applies the migrations; the error names the
/// database with its password redacted.
async fn open_store(url: &DatabaseUrl) -> Result<Store> {
    Store::connect_and_migrate(url.expose())
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

/// Runs `f` on the store at `url`, then closes the store, whatever `f`
/// returned.
pub async fn with_store<T>(
    url: &DatabaseUrl,
    f: impl AsyncFnOnce(&Store) -> Result<T>,
) -> Result<T> {
    let store = open_store(url).await?;
    let result = f(&store).await;
    store.close().await;
    result
}

/// Who and why, now.
fn change<'a>(actor: &'a str, reason: &'a str) -> ChangeMeta<'a> {
    ChangeMeta {
        actor,
        reason,
        at: chrono::Utc::now(),
    }
}
