//! The flags pages (developers and up, as the flag API's reads).
//!
//! - `GET /console/flags`: every flag of the served set (from the flag
//!   cache: no database read but the running trials) with its state,
//!   default variant, variants and the running trial controlling it.
//! - `GET /console/flags/{key}`: the flag as stored now (the head
//!   revision: a change just made on any replica shows), its variants,
//!   targeting (pretty JSON), cohort overrides with the forms to add,
//!   edit, preview and remove them, the enable/disable form, and its last
//!   [`HISTORY`] changes from the flag-set log, each with the fields it
//!   changed before and after.
//!
//! The changes ([`super::flags_edit`]) go through
//! [`crate::flags::service`], exactly as the API's: a reason is required,
//! the flag's ETag read with the page guards against a concurrent change,
//! and a change to a flag a running trial controls is recorded as a
//! deviation in the trial's log.

use super::layout::{self, Nav, Template};
use super::session::{ConsoleDeveloper, Session};
use super::ConsoleContext;
use crate::flags::service;
use crate::route::Route;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use commonlab_core::auth::Role;
use commonlab_core::flags::FlagState;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    let mut r = vec![
        Route::get("/console/flags", list),
        Route::get("/console/flags/{key}", show),
    ];
    r.extend(super::flags_edit::routes());
    r
}

static LIST: Template = Template::new(
    "console/flags.html",
    include_str!("../../templates/console/flags.html"),
);
pub(super) static FLAG: Template = Template::new(
    "console/flag.html",
    include_str!("../../templates/console/flag.html"),
);

/// Changes of a flag shown on its page (with the revisions before them,
/// read in one query).
pub const HISTORY: u32 = 10;

#[derive(Serialize)]
struct ListRow {
    key: String,
    path: String,
    enabled: bool,
    default_variant: Option<String>,
    variants: Vec<String>,
    trials: Vec<String>,
}

#[derive(Serialize)]
struct ListView {
    revision: i64,
    rows: Vec<ListRow>,
}

/// Running trials by the flag they control.
async fn running(
    ctx: &ConsoleContext,
) -> Result<Vec<(String, String)>, commonlab_store::StoreError> {
    Ok(ctx
        .store
        .running_trials()
        .await?
        .into_iter()
        .map(|t| (t.flag_key, t.key))
        .collect())
}

fn trials_of(running: &[(String, String)], flag: &str) -> Vec<String> {
    running
        .iter()
        .filter(|(f, _)| f == flag)
        .map(|(_, t)| t.clone())
        .collect()
}

async fn list(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
) -> Response {
    let trials = match running(&ctx).await {
        Ok(t) => t,
        Err(e) => return layout::store_failed(&s, e),
    };
    let loaded = ctx.flags.current();
    let rows = loaded
        .set
        .keys()
        .filter_map(|k| loaded.set.get(k))
        .map(|f| ListRow {
            key: f.key().to_string(),
            path: flag_path(f.key()),
            enabled: f.state() == FlagState::Enabled,
            default_variant: f.default_variant().map(str::to_string),
            variants: f.variants().map(|(n, _)| n.to_string()).collect(),
            trials: trials_of(&trials, f.key()),
        })
        .collect();
    let view = ListView {
        revision: loaded.revision,
        rows,
    };
    s.page(&LIST, Nav::Flags, "Flags", &view)
}

#[derive(Serialize)]
struct Variant {
    name: String,
    value: String,
    default: bool,
}

#[derive(Serialize)]
struct CohortRow {
    name: String,
    /// The flag page with this override in the form.
    edit: String,
    attribute: String,
    values: String,
    variant: String,
}

/// One field a change altered: its JSON before and after.
#[derive(Serialize, Debug, PartialEq)]
pub struct FieldDiff {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Serialize)]
struct HistoryRow {
    revision: i64,
    at: String,
    actor: String,
    action: String,
    reason: String,
    diff: Vec<FieldDiff>,
}

/// A field error shown beside its field and in the summary.
#[derive(Serialize, Clone, Debug)]
pub struct FieldError {
    pub anchor: &'static str,
    pub message: String,
}

/// The cohort form as typed (or as stored, when editing).
#[derive(Serialize, Default, Clone)]
pub struct CohortDraft {
    pub name: String,
    pub attribute: String,
    pub values: String,
    pub variant: String,
    pub reason: String,
}

/// The preview of a cohort rule.
#[derive(Serialize, Clone)]
pub struct Preview {
    pub text: String,
}

/// What the edit forms bring to the flag page.
#[derive(Default)]
pub struct Forms {
    pub errors: Vec<FieldError>,
    pub cohort: CohortDraft,
    pub state_reason: String,
    pub preview: Option<Preview>,
    pub notice: Option<String>,
    /// The cohort override whose values fill the form.
    pub edit: Option<String>,
}

#[derive(Serialize)]
struct FlagView {
    key: String,
    path: String,
    audit: String,
    revision: i64,
    etag: String,
    enabled: bool,
    default_variant: Option<String>,
    variants: Vec<Variant>,
    targeting: Option<String>,
    cohorts: Vec<CohortRow>,
    trials: Vec<String>,
    history: Vec<HistoryRow>,
    may_edit: bool,
    /// Each error by its field (anchor with `_` for `-`), shown beside it.
    fe: std::collections::BTreeMap<String, String>,
    errors: Vec<FieldError>,
    cohort: CohortDraft,
    state_reason: String,
    preview: Option<Preview>,
    notice: Option<String>,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The fields of a flag definition that differ between two revisions.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldDiff> {
    let mut fields: Vec<String> = Vec::new();
    for v in [before, after].into_iter().flatten() {
        if let Some(o) = v.as_object() {
            for k in o.keys() {
                if !fields.contains(k) {
                    fields.push(k.clone());
                }
            }
        }
    }
    fields
        .into_iter()
        .filter_map(|f| {
            let b = before.and_then(|v| v.get(&f));
            let a = after.and_then(|v| v.get(&f));
            (b != a).then(|| FieldDiff {
                before: b.map(pretty),
                after: a.map(pretty),
                field: f,
            })
        })
        .collect()
}

fn flag_in(document: &str, key: &str) -> Option<Value> {
    let doc: Value = serde_json::from_str(document).ok()?;
    doc.get("flags")?.get(key).cloned()
}

async fn history(
    ctx: &ConsoleContext,
    key: &str,
) -> Result<Vec<HistoryRow>, commonlab_store::StoreError> {
    let set = &ctx.config.flag_set;
    let entries = ctx
        .store
        .flag_set_history(set, Some(key), None, HISTORY)
        .await?;
    // Each change and the revision before it, in one query.
    let mut wanted: Vec<i64> = entries
        .iter()
        .flat_map(|e| [e.revision - 1, e.revision])
        .filter(|r| *r > 0)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let docs: std::collections::HashMap<i64, Option<Value>> = ctx
        .store
        .flag_set_revisions(set, &wanted)
        .await?
        .into_iter()
        .map(|r| (r.revision, flag_in(&r.document, key)))
        .collect();
    let at = |rev: i64| docs.get(&rev).cloned().flatten();
    let rows = entries
        .into_iter()
        .map(|e| HistoryRow {
            diff: diff(at(e.revision - 1).as_ref(), at(e.revision).as_ref()),
            revision: e.revision,
            at: e.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: e.actor,
            action: e.action,
            reason: e.reason,
        })
        .collect();
    Ok(rows)
}

#[derive(Deserialize)]
struct ShowQuery {
    /// A cohort override to edit: the form starts with its values.
    edit: Option<String>,
}

async fn show(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    Path(key): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let forms = Forms {
        edit: q.edit.filter(|n| n.len() <= 200),
        ..Forms::default()
    };
    flag_page(&s, &ctx, &key, forms, StatusCode::OK).await
}

/// The page of flag `key` with `forms` (errors, what was typed, a
/// preview), answered with `status`; 404 for no such flag.
pub async fn flag_page(
    s: &Session,
    ctx: &ConsoleContext,
    key: &str,
    forms: Forms,
    status: StatusCode,
) -> Response {
    let (revision, doc) = match service::head(&ctx.store, &ctx.config.flag_set).await {
        Ok(h) => h,
        Err(crate::error::Error::Store(e)) => return layout::store_failed(s, e),
        Err(e) => {
            return layout::error_page(
                Some(s),
                StatusCode::INTERNAL_SERVER_ERROR,
                "The flag set cannot be read",
                &e.to_string(),
            )
        }
    };
    let Some(flag) = doc.get("flags").and_then(|f| f.get(key)).cloned() else {
        return layout::error_page(
            Some(s),
            StatusCode::NOT_FOUND,
            "No such flag",
            &format!("There is no flag '{key}' in the flag set."),
        );
    };
    let (trials, history) = match (running(ctx).await, history(ctx, key).await) {
        (Ok(t), Ok(h)) => (trials_of(&t, key), h),
        (Err(e), _) | (_, Err(e)) => return layout::store_failed(s, e),
    };
    let default_variant = flag
        .get("defaultVariant")
        .and_then(Value::as_str)
        .map(str::to_string);
    let variants = flag
        .get("variants")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(n, v)| Variant {
                    default: default_variant.as_deref() == Some(n),
                    name: n.clone(),
                    value: serde_json::to_string(v).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let cohorts: Vec<CohortRow> = flag
        .get("cohorts")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|c| {
                    let text = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                    CohortRow {
                        edit: format!(
                            "{}?edit={}#cohort-form",
                            flag_path(key),
                            urlencoding(&text("name"))
                        ),
                        name: text("name"),
                        attribute: text("attribute"),
                        values: values_text(c.get("values")),
                        variant: text("variant"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let mut cohort_form = forms.cohort;
    if let Some(c) = forms
        .edit
        .and_then(|name| cohorts.iter().find(|c: &&CohortRow| c.name == name))
    {
        cohort_form = CohortDraft {
            name: c.name.clone(),
            attribute: c.attribute.clone(),
            values: c.values.clone(),
            variant: c.variant.clone(),
            reason: String::new(),
        };
    }
    let view = FlagView {
        key: key.to_string(),
        path: flag_path(key),
        audit: format!("/console/audit?target={}", urlencoding(key)),
        revision,
        etag: service::flag_etag(&flag),
        enabled: flag.get("state").and_then(Value::as_str) != Some("DISABLED"),
        default_variant,
        variants,
        targeting: flag.get("targeting").map(pretty),
        cohorts,
        trials,
        history,
        may_edit: s.caller.role.allows(Role::Developer),
        fe: forms
            .errors
            .iter()
            .map(|e| (e.anchor.replace('-', "_"), e.message.clone()))
            .collect(),
        errors: forms.errors,
        cohort: cohort_form,
        state_reason: forms.state_reason,
        preview: forms.preview,
        notice: forms.notice,
    };
    s.page_status(&FLAG, Nav::Flags, &format!("Flag {key}"), &view, status)
}

/// `s` as one URL path segment or query value (percent-encoded).
pub fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The page of flag `key`.
pub fn flag_path(key: &str) -> String {
    format!("/console/flags/{}", urlencoding(key))
}

/// A cohort's values as typed in the form: comma-separated.
pub fn values_text(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_name_the_changed_fields() {
        let on = json!({"state": "ENABLED", "variants": {"a": 1}});
        let off = json!({"state": "DISABLED", "variants": {"a": 1}, "cohorts": []});
        let d = diff(Some(&on), Some(&off));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].field, "state");
        assert_eq!(d[0].before.as_deref(), Some("\"ENABLED\""));
        assert_eq!(d[1].field, "cohorts");
        assert_eq!(d[1].before, None);
        assert!(diff(Some(&on), Some(&on)).is_empty());
        assert_eq!(diff(None, Some(&on)).len(), 2);
        assert_eq!(values_text(Some(&json!(["a", 2]))), "a, 2");
        assert_eq!(flag_path("a b/c"), "/console/flags/a%20b%2Fc");
    }

    #[test]
    fn the_templates_compile() {
        LIST.check().unwrap();
        FLAG.check().unwrap();
    }
}
