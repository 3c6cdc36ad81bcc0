//! Flag-set changes, shared by the HTTP API and the CLI.
//!
//! Every change reads the head revision of the flag set from the database,
//! applies itself to the document, recompiles it (refusing anything that does
//! not compile cleanly for the flag it touches) and appends a new revision
//! with the actor and reason, expecting the head it read. A concurrent writer
//! makes the append fail; the change is then re-applied on the new head, as
//! long as the flag it touches is still the one the caller read (If-Match).

pub use crate::audit::ChangeMeta;
use crate::error::Error;
use crate::flag_set::empty_document;
pub use crate::flag_set::head;
use crate::problem::FieldError;
use crate::surveys::trigger::trigger_keys_among;
use commonlab_core::flags::{FlagSet, LoadMode, LoadWarning};
use commonlab_store::{FlagDeviation, FlagSetRevision, NewRevision, Store, StoreError};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Attempts of a change that keeps losing the race for the head revision
/// before it answers 503 ([`Error::Busy`]).
pub const MAX_ATTEMPTS: u32 = 40;
/// The first backoff ceiling; it doubles after every lost race ...
const BACKOFF_BASE: std::time::Duration = std::time::Duration::from_millis(4);
/// ... up to this ceiling. Each pause is uniform in `[0, ceiling]` (full
/// jitter), so writers that collided spread out: about 2 s in all in the
/// worst case (40 attempts, all at the ceiling, averaging half of it).
const BACKOFF_CAP: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_REASON: usize = 2000;

/// Waits before attempt `attempt` (1-based) of a change that lost a race.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let micros = rand::rng().random_range(0..=ceiling.as_micros() as u64);
    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
}

/// The result of a change to one flag.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FlagChange {
    /// The flag set's revision that holds the change.
    #[schema(minimum = 1)]
    pub revision: i64,
    pub key: String,
    /// The flag after the change; null when the change deleted it.
    #[schema(value_type = Option<crate::openapi::shapes::FlagDefinition>, required = true)]
    pub flag: Option<Value>,
    /// The flag's ETag after the change (as `GET /api/v1/flags/{key}`
    /// answers it); null when the change deleted it.
    #[schema(required = true)]
    pub etag: Option<String>,
    /// Running trials that control the flag and recorded this change as a
    /// deviation in their log.
    // (How: `flags::deviations`.)
    pub deviations: Vec<String>,
}

/// The result of importing a whole document.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ImportOutcome {
    /// The flag set's new revision.
    #[schema(minimum = 1)]
    pub revision: i64,
    /// Flags in the imported document (as loaded).
    pub flags: usize,
    /// What a lenient load ignored or assumed (flagd logs these).
    pub warnings: Vec<WarningOut>,
    /// Which cohort overrides of the previous revision were kept or dropped.
    pub overrides: super::overrides::OverridesReport,
    /// Running trials whose flag the import changed: each recorded a
    /// deviation in its log.
    // (How: `flags::deviations`.)
    pub deviations: Vec<String>,
}

/// A problem of the imported document that a lenient load tolerated.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ImportWarning)]
pub struct WarningOut {
    /// A JSON pointer (RFC 6901) into the imported document.
    pub pointer: String,
    pub message: String,
}

impl From<&LoadWarning> for WarningOut {
    fn from(w: &LoadWarning) -> Self {
        WarningOut {
            pointer: w.pointer.clone(),
            message: w.message.clone(),
        }
    }
}

/// The ETag of one flag's definition: a hash of its canonical JSON.
pub fn flag_etag(flag: &Value) -> String {
    let bytes = serde_json::to_vec(flag).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    format!("\"f-{}\"", hex::encode(&digest[..8]))
}

/// The ETag of a whole flag-set revision.
pub fn set_etag(revision: i64) -> String {
    format!("\"rev-{revision}\"")
}

/// Parses a set ETag (`"rev-N"`, quotes optional, `W/` tolerated).
pub fn parse_set_etag(tag: &str) -> Option<i64> {
    let t = tag.trim().trim_start_matches("W/").trim_matches('"');
    t.strip_prefix("rev-")?.parse().ok()
}

fn check_reason(reason: &str) -> Result<(), Error> {
    let r = reason.trim();
    if r.is_empty() {
        return Err(Error::ReasonRequired);
    }
    if r.len() > MAX_REASON {
        return Err(Error::invalid(
            "/reason",
            format!("the reason is longer than {MAX_REASON} bytes"),
        ));
    }
    Ok(())
}

/// The JSON pointer of a flag inside a document.
pub fn flag_pointer(key: &str) -> String {
    format!("/flags/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn flags_map(doc: &mut Value) -> &mut Map<String, Value> {
    if !doc.get("flags").is_some_and(Value::is_object) {
        doc["flags"] = Value::Object(Map::new());
    }
    doc["flags"].as_object_mut().expect("just made an object")
}

/// Compiles `doc` and returns its canonical form, refusing it if it does not
/// parse or if any warning concerns the pointer prefix `strict_for`.
fn compile(doc: &Value, strict_for: Option<&str>) -> Result<(FlagSet, Vec<LoadWarning>), Error> {
    let (set, warnings) =
        FlagSet::from_value(doc, LoadMode::Lenient).map_err(|e| Error::Invalid {
            message: e.to_string(),
            issues: vec![FieldError {
                pointer: e.pointer.clone(),
                detail: e.message.clone(),
                line: (e.line > 0).then_some(e.line),
                column: (e.column > 0).then_some(e.column),
            }],
        })?;
    if let Some(prefix) = strict_for {
        let bad: Vec<FieldError> = warnings
            .iter()
            .filter(|w| w.pointer == prefix || w.pointer.starts_with(&format!("{prefix}/")))
            .map(|w| FieldError {
                pointer: w.pointer.clone(),
                detail: w.message.clone(),
                line: None,
                column: None,
            })
            .collect();
        if let Some(first) = bad.first() {
            return Err(Error::Invalid {
                message: format!("{}: {}", first.pointer, first.detail),
                issues: bad,
            });
        }
    }
    Ok((set, warnings))
}

/// Applies `f` to the current definition of flag `key` (None when absent) and
/// stores the result (None deletes the flag). `if_match` is the flag's ETag
/// as the caller read it; `None` means "whatever it is now".
pub async fn change_flag<F>(
    store: &Store,
    set: &str,
    key: &str,
    action: &str,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
    f: F,
) -> Result<FlagChange, Error>
where
    F: Fn(Option<&Value>) -> Result<Option<Value>, Error>,
{
    change_flag_with(store, set, key, action, meta, if_match, f, &Append).await
}

/// A future of the store, boxed (the writer of a flag change is chosen at
/// run time).
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// How [`change_flag_with`] writes the revision it computed: given the
/// head it was computed from, the revision and the deviations to record.
pub trait WriteRevision: Sync {
    fn write<'a>(
        &'a self,
        store: &'a Store,
        set: &'a str,
        expected: i64,
        change: &'a NewRevision<'a>,
        deviations: &'a [FlagDeviation<'a>],
    ) -> StoreFuture<'a, (FlagSetRevision, Vec<String>)>;
}

/// The plain flag change: `Store::append_flag_set_revision_with_deviations`.
struct Append;

impl WriteRevision for Append {
    fn write<'a>(
        &'a self,
        store: &'a Store,
        set: &'a str,
        expected: i64,
        change: &'a NewRevision<'a>,
        deviations: &'a [FlagDeviation<'a>],
    ) -> StoreFuture<'a, (FlagSetRevision, Vec<String>)> {
        Box::pin(store.append_flag_set_revision_with_deviations(set, expected, change, deviations))
    }
}

/// [`change_flag`] whose revision is written by `writer`: a
/// [`StoreError::Conflict`] from it (the head moved) computes
/// the change again on the new head; any other error is returned.
#[allow(clippy::too_many_arguments)]
pub async fn change_flag_with<F>(
    store: &Store,
    set: &str,
    key: &str,
    action: &str,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
    f: F,
    writer: &dyn WriteRevision,
) -> Result<FlagChange, Error>
where
    F: Fn(Option<&Value>) -> Result<Option<Value>, Error>,
{
    check_reason(meta.reason)?;
    let pointer = flag_pointer(key);
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let (revision, mut doc) = head(store, set).await?;
        let current = doc.get("flags").and_then(|f| f.get(key)).cloned();
        if let Some(expected) = if_match {
            let actual = current
                .as_ref()
                .map(flag_etag)
                .unwrap_or_else(|| "\"absent\"".into());
            if expected.trim() != "*" && expected.trim() != actual {
                return Err(Error::Stale {
                    what: format!("flag {key}"),
                    given: expected.to_string(),
                    current: actual,
                    revision,
                });
            }
        }
        let next = f(current.as_ref())?;
        match &next {
            Some(v) => {
                flags_map(&mut doc).insert(key.to_string(), v.clone());
            }
            None => {
                flags_map(&mut doc).shift_remove(key);
            }
        }
        let (compiled, _) = compile(&doc, Some(&pointer))?;
        let canonical = compiled.to_document();
        let flag = compiled.get(key).map(|f| f.to_json());
        let text = serde_json::to_string(&canonical).expect("JSON serialises");
        let change = NewRevision {
            document: &text,
            actor: meta.actor,
            action,
            flag_key: Some(key),
            reason: meta.reason.trim(),
            at: meta.at,
        };
        let deviation = super::deviations::what_changed(key, current.as_ref(), flag.as_ref())
            .map(|what| super::deviations::reason(&what, action, revision + 1, meta.reason.trim()));
        let deviations: Vec<FlagDeviation<'_>> = deviation
            .iter()
            .map(|reason| FlagDeviation {
                flag_key: key,
                reason,
            })
            .collect();
        match writer
            .write(store, set, revision, &change, &deviations)
            .await
        {
            Ok((rev, noted)) => {
                return Ok(FlagChange {
                    revision: rev.revision,
                    key: key.to_string(),
                    etag: flag.as_ref().map(flag_etag),
                    flag,
                    deviations: noted,
                })
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Busy)
}

/// Replaces the whole flag set with a flagd document. `expected` is the set
/// revision the caller read (None: any). In strict mode any load warning
/// refuses the document; otherwise warnings are returned (as flagd logs them).
/// Cohort overrides of flags still in the document are kept unless
/// `replace_overrides` (see [`super::overrides`]).
pub async fn import(
    store: &Store,
    set: &str,
    source: &str,
    meta: &ChangeMeta<'_>,
    expected: Option<i64>,
    strict: bool,
    replace_overrides: bool,
) -> Result<ImportOutcome, Error> {
    check_reason(meta.reason)?;
    let mode = if strict {
        LoadMode::Strict
    } else {
        LoadMode::Lenient
    };
    let (compiled, warnings) =
        FlagSet::from_json_str(source, mode).map_err(|e| Error::Invalid {
            message: e.to_string(),
            issues: vec![FieldError {
                pointer: e.pointer.clone(),
                detail: e.message.clone(),
                line: (e.line > 0).then_some(e.line),
                column: (e.column > 0).then_some(e.column),
            }],
        })?;
    if let Some(key) = trigger_keys_among(store, compiled.keys()).await?.first() {
        let pointer = flag_pointer(key);
        let (line, column) = commonlab_core::flags::position_of(source, &pointer);
        let why = trigger_key_taken(key);
        return Err(Error::Invalid {
            message: format!("{pointer}: {why}"),
            issues: vec![FieldError {
                pointer,
                detail: why,
                line: Some(line),
                column: Some(column),
            }],
        });
    }
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let stored = store.flag_set_head(set).await?;
        let head_rev = stored.as_ref().map(|h| h.revision).unwrap_or(0);
        // An unreadable head (edited by hand) is what an import repairs.
        let current = stored
            .and_then(|h| serde_json::from_str(&h.document).ok())
            .unwrap_or_else(empty_document);
        check_new_keys(&compiled, &current, source)?;
        let mut doc = compiled.to_document();
        let overrides = super::overrides::carry(&mut doc, &current, replace_overrides);
        if !overrides.kept.is_empty() {
            doc = compile(&doc, None)?.0.to_document();
        }
        let text = serde_json::to_string(&doc).expect("JSON serialises");
        let changed = changed_flags(&current, &doc, head_rev + 1, meta.reason.trim());
        let deviations: Vec<FlagDeviation<'_>> = changed
            .iter()
            .map(|(flag_key, reason)| FlagDeviation { flag_key, reason })
            .collect();
        if let Some(exp) = expected {
            if exp != head_rev {
                return Err(Error::Stale {
                    what: format!("flag set {set}"),
                    given: set_etag(exp),
                    current: set_etag(head_rev),
                    revision: head_rev,
                });
            }
        }
        let change = NewRevision {
            document: &text,
            actor: meta.actor,
            action: "import",
            flag_key: None,
            reason: meta.reason.trim(),
            at: meta.at,
        };
        match store
            .append_flag_set_revision_with_deviations(set, head_rev, &change, &deviations)
            .await
        {
            Ok((rev, noted)) => {
                return Ok(ImportOutcome {
                    revision: rev.revision,
                    flags: compiled.len(),
                    warnings: warnings.iter().map(WarningOut::from).collect(),
                    overrides,
                    deviations: noted,
                })
            }
            Err(StoreError::Conflict { .. }) if expected.is_none() => continue,
            Err(StoreError::Conflict { current, .. }) => {
                return Err(Error::Stale {
                    what: format!("flag set {set}"),
                    given: set_etag(head_rev),
                    current: set_etag(current),
                    revision: current,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Busy)
}

/// The flags an import changes, each with its deviation reason.
fn changed_flags(before: &Value, after: &Value, revision: i64, why: &str) -> Vec<(String, String)> {
    let no_flags = Map::new();
    let flags = |doc: &'_ Value| -> Map<String, Value> {
        doc.get("flags")
            .and_then(Value::as_object)
            .unwrap_or(&no_flags)
            .clone()
    };
    let (b, a) = (flags(before), flags(after));
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let what = super::deviations::what_changed(k, b.get(k), a.get(k))?;
            Some((
                k.clone(),
                super::deviations::reason(&what, "import", revision, why),
            ))
        })
        .collect()
}

/// Creates a flag; refuses if it exists.
pub async fn create_flag(
    store: &Store,
    set: &str,
    key: &str,
    flag: Value,
    meta: &ChangeMeta<'_>,
) -> Result<FlagChange, Error> {
    validate_key(key)?;
    if !trigger_keys_among(store, [key]).await?.is_empty() {
        return Err(Error::invalid("/key", trigger_key_taken(key)));
    }
    change_flag(store, set, key, "create", meta, None, |current| {
        if current.is_some() {
            return Err(Error::FlagExists(key.to_string()));
        }
        Ok(Some(flag.clone()))
    })
    .await
}

/// Replaces a flag's definition; the flag must exist.
pub async fn update_flag(
    store: &Store,
    set: &str,
    key: &str,
    flag: Value,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
) -> Result<FlagChange, Error> {
    let Some(tag) = if_match else {
        return Err(Error::PreconditionRequired(
            "GET the flag first; its ETag header",
        ));
    };
    change_flag(store, set, key, "update", meta, Some(tag), |current| {
        if current.is_none() {
            return Err(Error::FlagNotFound(key.to_string()));
        }
        Ok(Some(flag.clone()))
    })
    .await
}

pub async fn delete_flag(
    store: &Store,
    set: &str,
    key: &str,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
) -> Result<FlagChange, Error> {
    change_flag(store, set, key, "delete", meta, if_match, |current| {
        if current.is_none() {
            return Err(Error::FlagNotFound(key.to_string()));
        }
        Ok(None)
    })
    .await
}

/// Enables or disables a flag.
pub async fn set_state(
    store: &Store,
    set: &str,
    key: &str,
    enabled: bool,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
) -> Result<FlagChange, Error> {
    let state = if enabled { "ENABLED" } else { "DISABLED" };
    change_flag(store, set, key, "set-state", meta, if_match, |current| {
        let mut flag = current
            .cloned()
            .ok_or_else(|| Error::FlagNotFound(key.to_string()))?;
        flag["state"] = Value::String(state.into());
        Ok(Some(flag))
    })
    .await
}

/// A cohort override: members whose `attribute` is one of `values` get `variant`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    pub attribute: String,
    pub values: Vec<Value>,
    pub variant: String,
}

/// Adds or replaces the cohort override `name` on a flag (`None` removes it).
pub async fn set_cohort(
    store: &Store,
    set: &str,
    key: &str,
    name: &str,
    cohort: Option<Cohort>,
    meta: &ChangeMeta<'_>,
    if_match: Option<&str>,
) -> Result<FlagChange, Error> {
    change_flag(store, set, key, "cohort", meta, if_match, |current| {
        let mut flag = current
            .cloned()
            .ok_or_else(|| Error::FlagNotFound(key.to_string()))?;
        let mut list: Vec<Value> = flag
            .get("cohorts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let pos = list
            .iter()
            .position(|c| c.get("name").and_then(Value::as_str) == Some(name));
        match (&cohort, pos) {
            (Some(c), at) => {
                let entry = json!({
                    "name": name,
                    "attribute": c.attribute,
                    "values": c.values,
                    "variant": c.variant,
                });
                match at {
                    Some(i) => list[i] = entry,
                    None => list.push(entry),
                }
            }
            (None, Some(i)) => {
                list.remove(i);
            }
            (None, None) => {
                return Err(Error::Store(StoreError::NotFound(format!(
                    "cohort '{name}' on flag '{key}'"
                ))))
            }
        }
        let obj = flag
            .as_object_mut()
            .ok_or_else(|| Error::invalid(flag_pointer(key), "the stored flag is not an object"))?;
        if list.is_empty() {
            obj.shift_remove("cohorts");
        } else {
            obj.insert("cohorts".into(), Value::Array(list));
        }
        Ok(Some(flag))
    })
    .await
}

/// The key of a new flag: an identifier (see
/// [`commonlab_core::flags::check_new_key`]).
pub fn validate_key(key: &str) -> Result<(), Error> {
    commonlab_core::flags::check_new_key(key).map_err(|why| Error::invalid("/key", why))
}

/// Why a flag may not take `key`: a campaign's survey-trigger flag.
fn trigger_key_taken(key: &str) -> String {
    format!("{key:?} is a survey campaign's survey-trigger flag, answered by the server (docs/surveys.md, \"In-app\"); choose another key")
}

/// Refuses an imported document that adds a flag whose key is not an
/// identifier (flags already in `current` keep their keys).
fn check_new_keys(compiled: &FlagSet, current: &Value, source: &str) -> Result<(), Error> {
    let existing = current.get("flags").and_then(Value::as_object);
    for key in compiled.keys() {
        if existing.is_some_and(|m| m.contains_key(key)) {
            continue;
        }
        if let Err(why) = commonlab_core::flags::check_new_key(key) {
            let pointer = flag_pointer(key);
            let (line, column) = commonlab_core::flags::position_of(source, &pointer);
            return Err(Error::Invalid {
                message: format!("{pointer}: {why}"),
                issues: vec![FieldError {
                    pointer,
                    detail: why,
                    line: Some(line),
                    column: Some(column),
                }],
            });
        }
    }
    Ok(())
}
