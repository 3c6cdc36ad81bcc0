//! Keeping a replica's caches fresh: every `poll_interval` the server asks the
//! database for the flag set's head revision, the keys and trials versions
//! and the erasure and consent counters (cheap queries) and reloads, or
//! forgets, what changed. With the default 200 ms a change made
//! through any replica is served by all of them well within a second.

use crate::state::{AppState, CachedKey, FlagSetProblem, KeysSnapshot, LoadedFlags};
use commonlab_core::auth::{ApiKeyHash, Role};
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_store::StoreError;
use tokio::sync::watch;

/// How many revisions below a head that does not compile are tried, newest
/// first, for one that does.
pub const MAX_FALLBACK_REVISIONS: i64 = 20;

/// Reloads the flag set if the database has a newer revision than the cache.
///
/// A stored revision that does not compile (written before a limit existed,
/// or by hand) never takes the replica down: the error is logged once, the
/// newest older revision that compiles is served (the one already in the
/// cache, or at start the newest of the [`MAX_FALLBACK_REVISIONS`] below
/// the head), and the problem is reported at `/readyz` until a newer
/// revision replaces it.
pub async fn refresh_flags(state: &AppState) -> Result<(), StoreError> {
    let set = &state.config.flag_set;
    let versions = state.store.flag_set_versions().await?;
    let head_rev = versions
        .iter()
        .find(|(name, _)| name == set)
        .map(|(_, r)| *r)
        .unwrap_or(0);
    let served = state.flags.current().revision;
    if head_rev == served {
        state.flags.set_problem(None);
        return Ok(());
    }
    if state
        .flags
        .problem()
        .is_some_and(|p| p.revision == head_rev)
    {
        return Ok(());
    }
    let Some(head) = state.store.flag_set_head(set).await? else {
        return Ok(());
    };
    let error = match compile(&head.document) {
        Ok(compiled) => {
            state.flags.install(LoadedFlags {
                revision: head.revision,
                set: compiled,
            });
            state.flags.set_problem(None);
            return Ok(());
        }
        Err(error) => error,
    };
    tracing::error!(
        flag_set = %set,
        revision = head.revision,
        %error,
        "stored flag set does not compile; serving the newest revision before it that does"
    );
    state.flags.set_problem(Some(FlagSetProblem {
        revision: head.revision,
        error,
    }));
    let floor = served.max(head.revision - 1 - MAX_FALLBACK_REVISIONS);
    let mut rev = head.revision - 1;
    while rev > floor {
        if let Some(older) = state.store.flag_set_revision(set, rev).await? {
            match compile(&older.document) {
                Ok(compiled) => {
                    tracing::warn!(flag_set = %set, revision = rev, "serving an older revision");
                    state.flags.install(LoadedFlags {
                        revision: rev,
                        set: compiled,
                    });
                    break;
                }
                Err(error) => {
                    tracing::error!(flag_set = %set, revision = rev, %error, "stored flag set does not compile")
                }
            }
        }
        rev -= 1;
    }
    Ok(())
}

fn compile(document: &str) -> Result<FlagSet, String> {
    FlagSet::from_json_str(document, LoadMode::Lenient)
        .map(|(set, _warnings)| set)
        .map_err(|e| e.to_string())
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
