//! The audit log as one list: every change the database records who made
//! and why, read from the append-only logs and records where each kind
//! keeps it (no copy is written): flag-set revisions, trial events, API
//! keys created and revoked, console sign-ins and sign-outs, erasures,
//! survey instruments published and campaigns opened. Newest first,
//! filtered and paged by a cursor ([`AuditCursor`]).
//!
//! Not listed: survey invitations (one row per invited unit; the campaign
//! that made them is) and consent decisions (made by units, not people
//! changing the system). An erasure's target is shown as `unit`, never the
//! pseudonym.
//!
//! The filters apply to the union, so a page reads every source's rows up
//! to the cursor: fine for audit logs of thousands to a few hundred
//! thousand rows (they grow with people's changes, not with traffic).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::column::{micros, Ts};
use crate::error::db_err;
use crate::{Store, StoreError};

/// Where an audit entry comes from (and who may see it decides which are
/// asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSource {
    /// Flag-set revisions (`flag.*`).
    Flags,
    /// Trial events (`trial.*`).
    Trials,
    /// API keys created and revoked (`key.create`, `key.revoke`).
    Keys,
    /// Console sign-ins and sign-outs (`console.sign-in`, `console.sign-out`).
    Sessions,
    /// Erasures of units (`unit.erase`).
    Erasures,
    /// Survey instruments published and campaigns opened
    /// (`survey.publish`, `campaign.create`).
    Surveys,
}

impl AuditSource {
    pub const ALL: [AuditSource; 6] = [
        AuditSource::Flags,
        AuditSource::Trials,
        AuditSource::Keys,
        AuditSource::Sessions,
        AuditSource::Erasures,
        AuditSource::Surveys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditSource::Flags => "flags",
            AuditSource::Trials => "trials",
            AuditSource::Keys => "keys",
            AuditSource::Sessions => "sessions",
            AuditSource::Erasures => "erasures",
            AuditSource::Surveys => "surveys",
        }
    }

    /// The `SELECT` giving this source's entries as (at, source, ref,
    /// actor, action, target, reason).
    fn select(self) -> &'static str {
        match self {
            AuditSource::Flags => FLAGS,
            AuditSource::Trials => TRIALS,
            AuditSource::Keys => KEYS,
            AuditSource::Sessions => SESSIONS,
            AuditSource::Erasures => ERASURES,
            AuditSource::Surveys => SURVEYS,
        }
    }
}

/// A position in the log: entries strictly older than it come next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    pub source: String,
    pub reference: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    /// The sources to read (none: nothing is listed).
    pub sources: &'a [AuditSource],
    /// Exactly this actor (`key:NAME`, `cli:NAME`, …).
    pub actor: Option<&'a str>,
    /// Exactly this action (`flag.update`, `trial.start`, …).
    pub action: Option<&'a str>,
    /// Exactly this target (a flag, trial, key or survey name).
    pub target: Option<&'a str>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// After this entry (the previous page's last).
    pub after: Option<&'a AuditCursor>,
    /// Most entries returned.
    pub limit: usize,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub source: String,
    /// Unique within its source (with `at`, the entry's cursor).
    pub reference: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
}

impl AuditEntry {
    /// The cursor of the page after this entry.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at: self.at,
            source: self.source.clone(),
            reference: self.reference.clone(),
        }
    }
}

impl Store {
    /// The entries of `q`, newest first (ties: by source, then reference,
    /// descending), at most `q.limit`.
    pub async fn audit_entries(&self, q: &AuditQuery<'_>) -> Result<Vec<AuditEntry>, StoreError> {
        if q.sources.is_empty() || q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sources: Vec<AuditSource> = q.sources.to_vec();
        sources.sort_by_key(|s| s.as_str());
        sources.dedup();
        let union: Vec<&str> = sources.iter().map(|s| s.select()).collect();
        let mut sql = format!(
            "SELECT at, source, reference, actor, action, target, reason FROM ({}) a WHERE 1 = 1",
            union.join(" UNION ALL ")
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if q.actor.is_some() {
            sql += &format!(" AND actor = ${}", next());
        }
        if q.action.is_some() {
            sql += &format!(" AND action = ${}", next());
        }
        if q.target.is_some() {
            sql += &format!(" AND target = ${}", next());
        }
        if q.from.is_some() {
            sql += &format!(" AND at >= ${}", next());
        }
        if q.until.is_some() {
            sql += &format!(" AND at < ${}", next());
        }
        if q.after.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql += &format!(" AND (at, source, reference) < (${a}, ${b}, ${c})");
        }
        sql += &format!(
            " ORDER BY at DESC, source DESC, reference DESC LIMIT ${}",
            next()
        );
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        with_backend!(self, |db| {
            // Only fixed fragments and parameter numbers: every value is bound.
            let mut query = sqlx::query_as::<_, AuditEntry>(sqlx::AssertSqlSafe(sql.clone()));
            for v in [q.actor, q.action, q.target].into_iter().flatten() {
                query = query.bind(v);
            }
            for t in [q.from, q.until].into_iter().flatten() {
                query = query.bind(Ts(micros(t)));
            }
            if let Some(c) = q.after {
                query = query
                    .bind(Ts(micros(c.at)))
                    .bind(c.source.as_str())
                    .bind(c.reference.as_str());
            }
            query.bind(limit).fetch_all(db.reader()).await
        })
        .map_err(db_err)
    }
}

const FLAGS: &str = "SELECT r.created_at AS at, 'flags' AS source, \
     CAST(r.flag_set_id AS TEXT) || ':' || CAST(r.revision AS TEXT) AS reference, \
     r.actor AS actor, 'flag.' || r.action AS action, COALESCE(r.flag_key, f.name) AS target, \
     r.reason AS reason \
     FROM flag_set_revisions r JOIN flag_sets f ON f.id = r.flag_set_id";

const TRIALS: &str = "SELECT e.created_at AS at, 'trials' AS source, \
     CAST(e.trial_id AS TEXT) || ':' || CAST(e.seq AS TEXT) AS reference, \
     e.actor AS actor, 'trial.' || e.action AS action, t.key AS target, e.reason AS reason \
     FROM trial_events e JOIN trials t ON t.id = e.trial_id";

const KEYS: &str = "SELECT created_at AS at, 'keys' AS source, id || ':create' AS reference, \
     created_by AS actor, 'key.create' AS action, name AS target, created_reason AS reason \
     FROM api_keys \
     UNION ALL \
     SELECT revoked_at, 'keys', id || ':revoke', COALESCE(revoked_by, '(not recorded)'), \
     'key.revoke', name, revoked_reason FROM api_keys WHERE revoked_at IS NOT NULL";

const SESSIONS: &str = "SELECT s.created_at AS at, 'sessions' AS source, \
     substr(s.id, 1, 16) || ':in' AS reference, 'key:' || k.name AS actor, \
     'console.sign-in' AS action, k.name AS target, NULL AS reason \
     FROM console_sessions s JOIN api_keys k ON k.id = s.key_id \
     UNION ALL \
     SELECT s.ended_at, 'sessions', substr(s.id, 1, 16) || ':out', 'key:' || k.name, \
     'console.sign-out', k.name, NULL \
     FROM console_sessions s JOIN api_keys k ON k.id = s.key_id \
     WHERE s.end_reason = 'sign-out'";

const ERASURES: &str = "SELECT erased_at AS at, 'erasures' AS source, \
     CAST(id AS TEXT) AS reference, COALESCE(actor, '(not recorded)') AS actor, \
     'unit.erase' AS action, 'unit' AS target, reason AS reason FROM erasure_log";

const SURVEYS: &str = "SELECT published_at AS at, 'surveys' AS source, \
     'i:' || key || ':' || CAST(version AS TEXT) AS reference, published_by AS actor, \
     'survey.publish' AS action, key AS target, reason AS reason FROM survey_instruments \
     UNION ALL \
     SELECT created_at, 'surveys', 'c:' || CAST(id AS TEXT), created_by, 'campaign.create', \
     key, reason FROM survey_campaigns";
