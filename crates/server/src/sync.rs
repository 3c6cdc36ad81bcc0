//! Keeping a replica's caches fresh: every `poll_interval` the server asks the
//! database for the flag set's head revision, the keys and trials versions,
//! the erasure and consent counters and the campaigns with a survey-trigger
//! flag (cheap queries) and reloads, or
//! forgets, what changed. With the default 200 ms a change made
//! through any replica is served by all of them well within a second.

use crate::state::AppState;
use commonlab_store::StoreError;
use tokio::sync::watch;

/// Reloads the flag set if the database has a newer revision than the cache
/// (see [`crate::flag_set::FlagCache::refresh`]).
pub async fn refresh_flags(state: &AppState) -> Result<(), StoreError> {
    state
        .flags
        .refresh(&state.store, &state.config.flag_set)
        .await
}

/// Reloads the active keys if the keys version changed.
pub async fn refresh_keys(state: &AppState) -> Result<(), StoreError> {
    state.keys.refresh(&state.store).await
}

/// Reloads the running trials if the trials version changed.
pub async fn refresh_trials(state: &AppState) -> Result<(), StoreError> {
    state.trials.refresh(&state.store).await
}

/// Refreshes every cache once.
pub async fn refresh_all(state: &AppState) -> Result<(), StoreError> {
    refresh_flags(state).await?;
    refresh_keys(state).await?;
    state.units.refresh(&state.store, &state.exposures).await?;
    state.triggers.refresh(&state.store).await?;
    refresh_trials(state).await
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
        state.metrics.upkeep();
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
