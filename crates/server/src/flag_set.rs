//! The flag set, as stored and as served: the head revision's document
//! ([`head`]), and the compiled set this replica serves ([`FlagCache`]),
//! refreshed from the database (by the poller, [`crate::sync`], and after a
//! write through this replica). Read by the flags feature and by trials
//! (which are checked against the flags), so it belongs to neither.

use crate::error::Error;
use arc_swap::ArcSwap;
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_store::{FlagSetRevision, Store, StoreError};
use serde_json::{json, Value};
use std::sync::Arc;

/// How many revisions below a head that does not compile are tried, newest
/// first, for one that does.
pub const MAX_FALLBACK_REVISIONS: i64 = 20;

/// The compiled flag set at one revision.
pub struct LoadedFlags {
    pub revision: i64,
    pub set: FlagSet,
}

/// A stored revision this replica could not compile (see
/// [`FlagCache::refresh`]): it keeps serving an older one and reports this
/// at `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagSetProblem {
    /// The revision that does not compile (the head when it was read).
    pub revision: i64,
    /// Why, with the JSON pointer of the offending evaluator or flag.
    pub error: String,
}

#[derive(Clone)]
pub struct FlagCache {
    loaded: Arc<ArcSwap<LoadedFlags>>,
    problem: Arc<std::sync::Mutex<Option<FlagSetProblem>>>,
}

impl FlagCache {
    pub fn new() -> Self {
        FlagCache {
            loaded: Arc::new(ArcSwap::from_pointee(LoadedFlags {
                revision: 0,
                set: FlagSet::empty(),
            })),
            problem: Arc::default(),
        }
    }
    pub fn current(&self) -> arc_swap::Guard<Arc<LoadedFlags>> {
        self.loaded.load()
    }
    /// An owned handle on the current set, to hold across awaits.
    pub fn snapshot(&self) -> Arc<LoadedFlags> {
        self.loaded.load_full()
    }
    /// Installs `loaded` unless the cache already holds a newer revision.
    pub fn install(&self, loaded: LoadedFlags) {
        let new = Arc::new(loaded);
        self.loaded.rcu(|old| {
            if old.revision > new.revision {
                Arc::clone(old)
            } else {
                Arc::clone(&new)
            }
        });
    }
    /// The newest stored revision that could not be compiled, if it is
    /// still the head.
    pub fn problem(&self) -> Option<FlagSetProblem> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn set_problem(&self, problem: Option<FlagSetProblem>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Reloads flag set `set` if the database has a newer revision than the
    /// cache.
    ///
    /// A stored revision that does not compile (written before a limit
    /// existed, or by hand) never takes the replica down: the error is logged
    /// once, the newest older revision that compiles is served (the one
    /// already in the cache, or at start the newest of the
    /// [`MAX_FALLBACK_REVISIONS`] below the head), and the problem is
    /// reported at `/readyz` until a newer revision replaces it.
    pub async fn refresh(&self, store: &Store, set: &str) -> Result<(), StoreError> {
        let versions = store.flag_set_versions().await?;
        let head_rev = versions
            .iter()
            .find(|(name, _)| name == set)
            .map(|(_, r)| *r)
            .unwrap_or(0);
        let served = self.current().revision;
        if head_rev == served {
            self.set_problem(None);
            return Ok(());
        }
        if self.problem().is_some_and(|p| p.revision == head_rev) {
            return Ok(());
        }
        let Some(head) = store.flag_set_head(set).await? else {
            return Ok(());
        };
        let error = match compile(&head.document) {
            Ok(compiled) => {
                self.install(LoadedFlags {
                    revision: head.revision,
                    set: compiled,
                });
                self.set_problem(None);
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
        self.set_problem(Some(FlagSetProblem {
            revision: head.revision,
            error,
        }));
        let floor = served.max(head.revision - 1 - MAX_FALLBACK_REVISIONS);
        let mut rev = head.revision - 1;
        while rev > floor {
            if let Some(older) = store.flag_set_revision(set, rev).await? {
                match compile(&older.document) {
                    Ok(compiled) => {
                        tracing::warn!(flag_set = %set, revision = rev, "serving an older revision");
                        self.install(LoadedFlags {
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
}

impl Default for FlagCache {
    fn default() -> Self {
        Self::new()
    }
}

fn compile(document: &str) -> Result<FlagSet, String> {
    FlagSet::from_json_str(document, LoadMode::Lenient)
        .map(|(set, _warnings)| set)
        .map_err(|e| e.to_string())
}

/// The document of a flag set that has never been written.
pub fn empty_document() -> Value {
    json!({ "flags": {} })
}

/// The head revision and its document (revision 0 and an empty document when
/// the set has never been written).
pub async fn head(store: &Store, set: &str) -> Result<(i64, Value), Error> {
    match store.flag_set_head(set).await? {
        None => Ok((0, empty_document())),
        Some(FlagSetRevision {
            revision, document, ..
        }) => {
            let doc = serde_json::from_str(&document).map_err(|e| {
                Error::Store(StoreError::NotFound(format!(
                    "a readable document at revision {revision} ({e})"
                )))
            })?;
            Ok((revision, doc))
        }
    }
}
