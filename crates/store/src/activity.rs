//! Members' activity in a community over a time range, aggregated in the
//! database (for the simulation team's parameters, `wp2-parameters.json`;
//! `docs/reports.md`): each active member's event count, each event
//! type's events and members, and the members seen by the end of the
//! range. No event row leaves the database.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::column::Ts;
use crate::error::db_err;
use crate::{Store, StoreError};

/// At most this many active members of one community are read (their
/// counts only); a larger community is refused rather than read whole.
pub const MAX_ACTIVE_MEMBERS: i64 = 5_000_000;

/// One event type's activity in a community.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct EventTypeActivity {
    pub name: String,
    pub events: i64,
    /// Distinct members with at least one such event.
    pub members: i64,
}

/// A community's activity in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityActivity {
    pub community: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Members (pseudonyms) with any event in the community before `to`.
    pub members_seen: i64,
    /// Each active member's events in the range, ascending.
    pub events_per_active_member: Vec<i64>,
    /// By event type, sorted by name.
    pub event_types: Vec<EventTypeActivity>,
}

/// Per (member, event type) counts in the range, materialised once, then
/// summed per member (kind 0: the members' totals, at most `$4` rows) and
/// per event type (kind 1: events and distinct members). One pass over the
/// community's range of the covering index (migration 0009) instead of one
/// per figure, and no `COUNT(DISTINCT)` (a sort per group on PostgreSQL):
/// on the metric bench's 10M events, 1.2 s against 3.0 s per community on
/// PostgreSQL, and 1.3 s against 1.4 s on SQLite (docs/benchmarks.md, "A
/// report of ten metrics, quiet machine").
const PER_MEMBER_AND_TYPE: &str = "WITH un AS MATERIALIZED ( \
     SELECT unit, name, COUNT(*) AS c FROM events \
     WHERE community = $1 AND ts >= $2 AND ts < $3 GROUP BY unit, name) \
     SELECT kind, name, n, m FROM ( \
       SELECT 0 AS kind, CAST(NULL AS TEXT) AS name, CAST(SUM(c) AS BIGINT) AS n, \
              CAST(0 AS BIGINT) AS m \
       FROM un GROUP BY unit ORDER BY n LIMIT $4) per_member \
     UNION ALL \
     SELECT 1, name, CAST(SUM(c) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM un GROUP BY name";
/// PostgreSQL: [`PER_MEMBER_AND_TYPE`] and [`SEEN`] in one pass. The
/// counts are of the events before `$3` and the members seen are those of
/// `un` (kind 2); the range's figures keep only the counts from `$2` on.
/// On the metric bench's 10M events 1.7 s per community against 1.6 s
/// and 1.0 s for the two statements (docs/benchmarks.md, "Metrics in one
/// statement"). SQLite keeps the two: its `SEEN` walks the (community,
/// unit) index in order in 0.1 s, and the range pass would read the events
/// before `from` too.
const PER_MEMBER_TYPE_AND_SEEN: &str = "WITH un AS MATERIALIZED ( \
     SELECT unit, name, COUNT(*) FILTER (WHERE ts >= $2) AS c FROM events \
     WHERE community = $1 AND ts < $3 GROUP BY unit, name) \
     SELECT kind, name, n, m FROM ( \
       SELECT 0 AS kind, CAST(NULL AS TEXT) AS name, CAST(SUM(c) AS BIGINT) AS n, \
              CAST(0 AS BIGINT) AS m \
       FROM un GROUP BY unit HAVING SUM(c) > 0 ORDER BY n LIMIT $4) per_member \
     UNION ALL \
     SELECT 1, name, CAST(SUM(c) AS BIGINT), CAST(COUNT(*) FILTER (WHERE c > 0) AS BIGINT) \
     FROM un GROUP BY name HAVING SUM(c) > 0 \
     UNION ALL \
     SELECT 2, CAST(NULL AS TEXT), (SELECT COUNT(*) FROM (SELECT unit FROM un GROUP BY unit) s), \
            CAST(0 AS BIGINT)";
const SEEN: &str =
    "SELECT COUNT(*) FROM (SELECT DISTINCT unit FROM events WHERE community = $1 AND ts < $2) seen";

#[derive(sqlx::FromRow)]
struct ActivityRow {
    kind: i32,
    name: Option<String>,
    n: i64,
    m: i64,
}

impl Store {
    /// `community`'s activity in `[from, to)` (see the module docs).
    /// [`StoreError::InvalidState`] when more than [`MAX_ACTIVE_MEMBERS`]
    /// members were active.
    pub async fn community_activity(
        &self,
        community: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<CommunityActivity, StoreError> {
        let statement = match self.backend() {
            crate::Backend::Sqlite => PER_MEMBER_AND_TYPE,
            crate::Backend::Postgres => PER_MEMBER_TYPE_AND_SEEN,
        };
        let rows: Vec<ActivityRow> = with_backend!(self, |db| sqlx::query_as(statement)
            .bind(community)
            .bind(Ts(from))
            .bind(Ts(to))
            .bind(MAX_ACTIVE_MEMBERS + 1)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)?;
        let mut per_member = Vec::new();
        let mut event_types = Vec::new();
        let mut seen = None;
        for r in rows {
            match (r.kind, r.name) {
                (0, _) => per_member.push(r.n),
                (2, _) => seen = Some(r.n),
                (_, Some(name)) => event_types.push(EventTypeActivity {
                    name,
                    events: r.n,
                    members: r.m,
                }),
                (_, None) => {}
            }
        }
        if per_member.len() as i64 > MAX_ACTIVE_MEMBERS {
            return Err(StoreError::InvalidState(format!(
                "community {community} has more than {MAX_ACTIVE_MEMBERS} active members; its activity is not read"
            )));
        }
        per_member.sort_unstable();
        event_types.sort_by(|a, b| a.name.cmp(&b.name));
        let members_seen: i64 = match seen {
            Some(n) => n,
            None => with_backend!(self, |db| sqlx::query_scalar(SEEN)
                .bind(community)
                .bind(Ts(to))
                .fetch_one(db.reader())
                .await)
            .map_err(db_err)?,
        };
        Ok(CommunityActivity {
            community: community.to_string(),
            from,
            to,
            members_seen,
            events_per_active_member: per_member,
            event_types,
        })
    }
}

/// At most this many distinct units are counted by
/// [`Store::community_unit_share`] (each count stops there).
pub const MAX_SHARE_UNITS: i64 = 1_000_000;

/// Units with an event in `[from, to)`, and those of them with an event in
/// one of some communities (the console's preview of a cohort override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UnitShare {
    pub matching: i64,
    pub total: i64,
    /// A count reached [`MAX_SHARE_UNITS`] and stopped there.
    pub capped: bool,
}

impl Store {
    /// Distinct units with an event in `[from, to)`, and those with one in
    /// a community of `communities` (at most 1,000 names), each count
    /// stopping at [`MAX_SHARE_UNITS`]. Reads the events' index ranges by
    /// time (and community) only: no event row leaves the database.
    pub async fn community_unit_share(
        &self,
        communities: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<UnitShare, StoreError> {
        if communities.len() > 1_000 {
            return Err(StoreError::InvalidState(
                "more than 1000 communities in one preview".into(),
            ));
        }
        // One builder per backend (the macro's `db` differs in type).
        macro_rules! count {
            ($only:expr) => {{
                let only: Option<&[String]> = $only;
                with_backend!(self, |db| {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT COUNT(*) FROM (SELECT DISTINCT unit FROM events WHERE ts >= ",
                    );
                    q.push_bind(Ts(from)).push(" AND ts < ").push_bind(Ts(to));
                    if let Some(list) = only {
                        q.push(" AND community IN (");
                        let mut sep = q.separated(", ");
                        for c in list {
                            sep.push_bind(c.clone());
                        }
                        q.push(")");
                    }
                    q.push(" LIMIT ").push_bind(MAX_SHARE_UNITS).push(") AS u");
                    q.build_query_scalar::<i64>().fetch_one(db.reader()).await
                })
                .map_err(db_err)
            }};
        }
        let total = count!(None)?;
        let matching = if communities.is_empty() {
            0
        } else {
            count!(Some(communities))?
        };
        Ok(UnitShare {
            matching,
            total,
            capped: total >= MAX_SHARE_UNITS || matching >= MAX_SHARE_UNITS,
        })
    }
}
