//! Retention: raw events older than the configured period are deleted by a
//! background task (every replica runs it; deleting is idempotent). Deletion
//! goes in bounded batches so it never holds long locks.

use crate::state::AppState;
use commonlab_store::StoreError;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: u32 = 10_000;

/// Deletes events older than `now - retention` once; returns how many.
pub async fn sweep(state: &AppState) -> Result<u64, StoreError> {
    let Some(keep) = state.config.retention else {
        return Ok(0);
    };
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        return Ok(0);
    };
    let cutoff = state.clock.now() - keep;
    let n = state.store.delete_events_before(cutoff, BATCH).await?;
    if n > 0 {
        tracing::info!(deleted = n, %cutoff, "retention: raw events deleted");
    }
    Ok(n)
}

/// Sweeps every `interval` until `shutdown`.
pub async fn run(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    // The first sweep comes one interval after the start, not at once.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "retention sweep failed; will retry");
        }
    }
}
