//! `GET /console/audit`: the audit log (`Store::audit_entries`), newest
//! first, filtered by actor, action, target and time range (UTC), paged
//! by a cursor ([`DEFAULT_PAGE`] entries a page, at most [`MAX_PAGE`]).
//!
//! Every console role may open it, and sees the entries of what its role
//! may read through the API (`docs/security.md`, "Console"): developers
//! flag and trial changes; researchers also survey publications and
//! campaigns and erasures; admins also API keys created and revoked and
//! console sign-ins and sign-outs.

use super::layout::{self, Nav, Template};
use super::session::ConsoleDeveloper;
use super::ConsoleContext;
use crate::route::Route;
use axum::extract::{FromRef, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use commonlab_core::auth::Role;
use commonlab_store::{AuditCursor, AuditEntry, AuditQuery, AuditSource};
use serde::{Deserialize, Serialize};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![Route::get("/console/audit", audit)]
}

static AUDIT: Template = Template::new(
    "console/audit.html",
    include_str!("../../templates/console/audit.html"),
);

/// Entries a page unless `per_page` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// Most entries a page.
pub const MAX_PAGE: usize = 200;
/// Longest filter value kept.
pub const MAX_FILTER: usize = 200;

/// The sources `role` may see.
pub fn sources_for(role: Role) -> &'static [AuditSource] {
    const DEV: &[AuditSource] = &[AuditSource::Flags, AuditSource::Trials];
    const RES: &[AuditSource] = &[
        AuditSource::Flags,
        AuditSource::Trials,
        AuditSource::Surveys,
        AuditSource::Erasures,
    ];
    if role.allows(Role::Admin) {
        &AuditSource::ALL
    } else if role.allows(Role::Researcher) {
        RES
    } else if role.allows(Role::Developer) {
        DEV
    } else {
        &[]
    }
}

#[derive(Deserialize, Default)]
struct Filters {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    from: Option<String>,
    until: Option<String>,
    after: Option<String>,
    per_page: Option<String>,
}

/// A time typed in the filter form (`datetime-local`, UTC), a date, or
/// RFC 3339.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// `MICROS~SOURCE~REFERENCE`, as the "older" link writes it.
fn parse_cursor(s: &str) -> Option<AuditCursor> {
    let mut it = s.splitn(3, '~');
    let micros: i64 = it.next()?.parse().ok()?;
    let source = it.next()?.to_string();
    let reference = it.next()?.to_string();
    Some(AuditCursor {
        at: DateTime::from_timestamp_micros(micros)?,
        source,
        reference,
    })
}

fn write_cursor(c: &AuditCursor) -> String {
    format!("{}~{}~{}", c.at.timestamp_micros(), c.source, c.reference)
}

#[derive(Serialize)]
struct Row {
    at: String,
    actor: String,
    action: String,
    target: String,
    reason: Option<String>,
}

#[derive(Serialize)]
struct FieldError {
    anchor: &'static str,
    message: String,
}

#[derive(Serialize)]
struct AuditView {
    actor: String,
    action: String,
    target: String,
    from: String,
    until: String,
    per_page: usize,
    errors: Vec<FieldError>,
    rows: Vec<Row>,
    older: Option<String>,
    paged: bool,
    sources: Vec<&'static str>,
}

fn kept(v: &Option<String>) -> Option<&str> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_FILTER)
}

async fn audit(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    RawQuery(query): RawQuery,
) -> Response {
    let f: Filters = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut time = |v: &Option<String>, anchor: &'static str| match kept(v) {
        None => None,
        Some(t) => {
            let parsed = parse_time(t);
            if parsed.is_none() {
                errors.push(FieldError {
                    anchor,
                    message: format!(
                        "'{t}' is not a time: use YYYY-MM-DDTHH:MM (UTC) or YYYY-MM-DD."
                    ),
                });
            }
            parsed
        }
    };
    let from = time(&f.from, "from");
    let until = time(&f.until, "until");
    let per_page = kept(&f.per_page)
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE);
    let after = kept(&f.after).and_then(parse_cursor);
    let sources = sources_for(s.caller.role);
    let mut rows = Vec::new();
    let mut older = None;
    if errors.is_empty() {
        let q = AuditQuery {
            sources,
            actor: kept(&f.actor),
            action: kept(&f.action),
            target: kept(&f.target),
            from,
            until,
            after: after.as_ref(),
            limit: per_page + 1,
        };
        let mut entries: Vec<AuditEntry> = match ctx.store.audit_entries(&q).await {
            Ok(e) => e,
            Err(e) => return layout::store_failed(&s, e),
        };
        if entries.len() > per_page {
            entries.truncate(per_page);
            let last = entries.last().expect("a full page").cursor();
            let mut pairs: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("actor", &f.actor),
                ("action", &f.action),
                ("target", &f.target),
                ("from", &f.from),
                ("until", &f.until),
            ] {
                if let Some(v) = kept(v) {
                    pairs.push((k, v.to_string()));
                }
            }
            pairs.push(("per_page", per_page.to_string()));
            pairs.push(("after", write_cursor(&last)));
            older = Some(format!(
                "/console/audit?{}",
                serde_urlencoded::to_string(&pairs).expect("string pairs")
            ));
        }
        rows = entries
            .into_iter()
            .map(|e| Row {
                at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                actor: e.actor,
                action: e.action,
                target: e.target,
                reason: e.reason,
            })
            .collect();
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let show = |v: &Option<String>| kept(v).unwrap_or("").to_string();
    let view = AuditView {
        actor: show(&f.actor),
        action: show(&f.action),
        target: show(&f.target),
        from: show(&f.from),
        until: show(&f.until),
        per_page,
        errors,
        rows,
        older,
        paged: after.is_some(),
        sources: sources.iter().map(|s| s.as_str()).collect(),
    };
    s.page_status(&AUDIT, Nav::Audit, "Audit log", &view, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_cursors_parse() {
        let t = parse_time("2026-01-02T03:04").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-02T03:04:00+00:00");
        assert_eq!(
            parse_time("2026-01-02").unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
        assert!(parse_time("yesterday").is_none());
        let c = AuditCursor {
            at: t,
            source: "flags".into(),
            reference: "1:2~x".into(),
        };
        assert_eq!(parse_cursor(&write_cursor(&c)), Some(c));
        assert_eq!(parse_cursor("x~y~z"), None);
        AUDIT.check().unwrap();
    }

    #[test]
    fn roles_see_what_they_may_read() {
        assert_eq!(sources_for(Role::Developer).len(), 2);
        assert!(!sources_for(Role::Researcher).contains(&AuditSource::Keys));
        assert!(sources_for(Role::Admin).contains(&AuditSource::Sessions));
        assert!(sources_for(Role::Sdk).is_empty());
    }
}
