//! Keeping a replica's caches fresh: every `poll_interval` the server asks the
//! database for the flag set's head revision, the keys and trials versions
//! and the erasure and consent counters (cheap queries) and reloads, or
//! forgets, what changed. With the default 200 ms a change made
//! through any replica is served by all of them well within a second.

use crate::state::{AppState, CachedKey, KeysSnapshot, LoadedFlags};
use commonlab_core::auth::{ApiKeyHash, Role};
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_store::StoreError;
use tokio::sync::watch;

/// Reloads the flag set if the database has a newer revision than the cache.
pub async fn refresh_flags(state: &AppState) -> Result<(), StoreError> {
    let set = &state.config.flag_set;
    let versions = state.store.flag_set_versions().await?;
    let head_rev = versions
        .iter()
        .find(|(name, _)| name == set)
        .map(|(_, r)| *r)
        .unwrap_or(0);
    if head_rev == state.flags.current().revision {
        return Ok(());
    }
    let Some(head) = state.store.flag_set_head(set).await? else {
        return Ok(());
    };
    install_document(state, head.revision, &head.document);
    Ok(())
}

/// Compiles a stored document and installs it in the cache. Stored documents
/// were validated when written, so failure here means the database was edited
/// by hand: the previous set keeps being served and the error is logged.
pub fn install_document(state: &AppState, revision: i64, document: &str) {
    match FlagSet::from_json_str(document, LoadMode::Lenient) {
        Ok((set, _warnings)) => state.flags.install(LoadedFlags { revision, set }),
        Err(e) => tracing::error!(revision, error = %e, "stored flag set does not compile"),
    }
}

/// Reloads the active keys if the keys version changed.
pub async fn refresh_keys(state: &AppState) -> Result<(), StoreError> {
    let version = state.store.keys_version().await?;
    let current = state.keys.current();
    if version == current.version && (version != 0 || !current.by_id.is_empty()) {
        return Ok(());
    }
    let records = state.store.active_api_keys().await?;
    let mut by_id = std::collections::HashMap::with_capacity(records.len());
    for r in records {
        let (Ok(role), Ok(hash)) = (r.role.parse::<Role>(), ApiKeyHash::from_hex(&r.hash_hex))
        else {
            tracing::error!(key = %r.id, "stored API key has an unknown role or a bad hash; ignored");
            continue;
        };
        by_id.insert(
            r.id,
            CachedKey {
                name: r.name,
                role,
                hash,
            },
        );
    }
    state.keys.install(KeysSnapshot { version, by_id });
    Ok(())
}

/// Refreshes every cache once.
pub async fn refresh_all(state: &AppState) -> Result<(), StoreError> {
    refresh_flags(state).await?;
    refresh_keys(state).await?;
    crate::unit_cache::refresh(state).await?;
    crate::trials::refresh(state).await
}

/// Polls until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match refresh_all(&state).await {
            Ok(()) if failing => {
                tracing::info!("database reachable again; caches refreshed");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "could not refresh caches; serving the last known state");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
