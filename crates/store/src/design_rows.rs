//! The rows a trial's design needs, computed inside the database from its
//! exposures, assignments and events (one statement per metric; no event
//! row leaves the database; `docs/metrics.md`, "Rows by design").
//!
//! - Designs that randomise members (`hash`, `blocked`): one row per
//!   exposed member with its arm, community and stratum (from its
//!   assignment) and its metric in the window after first exposure
//!   ([`Store::member_values`]; the same per-unit values as
//!   [`Store::metric_cells`], before they are summed).
//! - Community designs (`cluster`, `stepped_wedge`): the members of the
//!   design's communities and their metric in each period's window
//!   ([`Store::community_period_cells`], summed per community and period,
//!   or per member with [`Store::community_member_values`]).
//!
//! A member of a community design is a unit (pseudonym) with at least one
//! event (of any name) carrying one of the design's communities in a
//! period's window; it is counted in that period. Community designs record
//! one exposure per community (the community is the unit), not per member,
//! so a member's community is the `community` of its events; a member whose
//! events carry two or more of the communities within the analysed windows
//! is left out of every row and counted ([`CommunityRows::excluded_members`]).
//! For designs that randomise members the community recorded with the
//! member's first exposure (its OFREP context) is the one used: its events'
//! communities are not consulted.

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{Cap, Metric, MetricKind, MetricValue, PERCENTILE_SCALE};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::column::Ts;
use crate::error::db_err;
use crate::metrics::{compile_shaped, Bind, Builder, Dialect, Shape};
use crate::{Backend, Store, StoreError};

/// One exposed member of a design that randomises members, with its
/// metric values (after capping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MemberValue {
    /// The member's pseudonym.
    pub unit: String,
    pub arm: String,
    /// The community recorded with its first exposure.
    pub community: Option<String>,
    /// Its stratum (blocked designs: the JSON array of the strata values).
    pub stratum: Option<String>,
    /// The metric in its window (for ratios, the numerator).
    pub y: f64,
    /// The pre-exposure covariate (0 without one).
    pub x: f64,
    /// Ratio denominator (0 for other kinds).
    pub d: f64,
}

/// A metric's window inside one period of a community design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodSpan {
    pub period: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Sufficient statistics of the members of one community in one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CommunityCell {
    pub community: String,
    pub period: i64,
    /// Members active in the period's window.
    pub n: i64,
    pub sum: f64,
    pub sum_squares: f64,
    pub d_sum: f64,
    pub d_sum_squares: f64,
    pub yd_sum: f64,
    /// The cap applied to members' values (`None` without capping).
    pub y_cap: Option<f64>,
}

/// One member's metric in one period of a community design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MemberPeriodValue {
    pub unit: String,
    pub community: String,
    pub period: i64,
    pub y: f64,
    pub d: f64,
}

/// [`Store::community_period_cells`]: the cells and the members left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityRows {
    /// By community, then period.
    pub cells: Vec<CommunityCell>,
    /// Members whose events carried two or more of the design's
    /// communities in the windows: in no cell.
    pub excluded_members: i64,
}

#[derive(sqlx::FromRow)]
struct CellRow {
    community: Option<String>,
    period: i64,
    n: i64,
    sum: f64,
    sum_squares: f64,
    d_sum: f64,
    d_sum_squares: f64,
    yd_sum: f64,
    y_cap: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    unit: Option<String>,
    community: Option<String>,
    period: i64,
    y: f64,
    d: f64,
}

impl Store {
    /// Per exposed member (not excluded) of a trial that randomises
    /// members, whose analysis window closed at or before `as_of`: its arm,
    /// community, stratum and metric values, computed by one statement
    /// (ordered by unit).
    pub async fn member_values(
        &self,
        trial_id: i64,
        metric: &Metric,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<MemberValue>, StoreError> {
        let q = compile_shaped(metric, self.dialect_of(), Shape::Units);
        with_backend!(self, |db| bind_metric!(
            sqlx::query_as(AssertSqlSafe(q.sql.as_str()))
                .bind(trial_id)
                .bind(Ts(as_of)),
            &q.binds
        )
        .fetch_all(db.reader())
        .await)
        .map_err(db_err)
    }

    /// A community design's metric summed per (community, period) over the
    /// members active in each period's window, in one statement over the
    /// events of `communities` within `windows` (pass only windows that
    /// have closed). Members seen in two communities are counted, not
    /// used. Cells without members are absent.
    pub async fn community_period_cells(
        &self,
        metric: &Metric,
        communities: &[String],
        windows: &[PeriodSpan],
    ) -> Result<CommunityRows, StoreError> {
        if communities.is_empty() || windows.is_empty() {
            return Ok(CommunityRows {
                cells: Vec::new(),
                excluded_members: 0,
            });
        }
        // Two halves of the members at once (see [`SPLIT_AT`]), unless a
        // percentile cap needs every member's value in one statement.
        let halves = if matches!(metric.cap, Some(Cap::Percentile(_))) {
            vec![Members::All]
        } else {
            vec![Members::Below(SPLIT_AT), Members::From(SPLIT_AT)]
        };
        let dialect = self.dialect_of();
        let parts = futures_util::future::try_join_all(halves.into_iter().map(|members| {
            let q = compile_community(metric, dialect, communities, windows, false, members);
            async move {
                let rows: Vec<CellRow> = with_backend!(self, |db| bind_metric!(
                    sqlx::query_as(AssertSqlSafe(q.sql.as_str())),
                    &q.binds
                )
                .fetch_all(db.reader())
                .await)
                .map_err(db_err)?;
                Ok::<_, StoreError>(rows)
            }
        }))
        .await?;
        let mut out = CommunityRows {
            cells: Vec::new(),
            excluded_members: 0,
        };
        let mut cells: std::collections::BTreeMap<(String, i64), CommunityCell> =
            std::collections::BTreeMap::new();
        for r in parts.into_iter().flatten() {
            match r.community {
                Some(community) if r.period >= 0 => {
                    let cell = CommunityCell {
                        community,
                        period: r.period,
                        n: r.n,
                        sum: r.sum,
                        sum_squares: r.sum_squares,
                        d_sum: r.d_sum,
                        d_sum_squares: r.d_sum_squares,
                        yd_sum: r.yd_sum,
                        y_cap: r.y_cap,
                    };
                    match cells.entry((cell.community.clone(), cell.period)) {
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(cell);
                        }
                        std::collections::btree_map::Entry::Occupied(mut o) => {
                            o.get_mut().add(&cell)
                        }
                    }
                }
                _ => out.excluded_members += r.n,
            }
        }
        out.cells = cells.into_values().collect();
        Ok(out)
    }

    /// [`Store::community_period_cells`] per member: one row per (member,
    /// period) ordered by community, period and unit, and the number of
    /// members left out for being seen in two communities.
    pub async fn community_member_values(
        &self,
        metric: &Metric,
        communities: &[String],
        windows: &[PeriodSpan],
    ) -> Result<(Vec<MemberPeriodValue>, i64), StoreError> {
        if communities.is_empty() || windows.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let q = compile_community(
            metric,
            self.dialect_of(),
            communities,
            windows,
            true,
            Members::All,
        );
        let rows: Vec<MemberRow> = with_backend!(self, |db| bind_metric!(
            sqlx::query_as(AssertSqlSafe(q.sql.as_str())),
            &q.binds
        )
        .fetch_all(db.reader())
        .await)
        .map_err(db_err)?;
        let mut excluded = 0;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match (r.unit, r.community) {
                (Some(unit), Some(community)) if r.period >= 0 => out.push(MemberPeriodValue {
                    unit,
                    community,
                    period: r.period,
                    y: r.y,
                    d: r.d,
                }),
                _ => excluded += r.y as i64,
            }
        }
        Ok((out, excluded))
    }

    /// The SQL of [`Store::community_period_cells`] on this backend.
    pub fn community_metric_sql(
        &self,
        metric: &Metric,
        communities: &[String],
        windows: &[PeriodSpan],
    ) -> String {
        compile_community(
            metric,
            self.dialect_of(),
            communities,
            windows,
            false,
            Members::All,
        )
        .sql
    }

    fn dialect_of(&self) -> Dialect {
        match self.backend() {
            Backend::Sqlite => Dialect::Sqlite,
            Backend::Postgres => Dialect::Postgres,
        }
    }
}

/// Where [`Store::community_period_cells`] splits the members into two
/// halves computed at once (on two reader connections): pseudonyms are
/// hexadecimal HMACs, so about half fall on each side of `"8"`. Any unit
/// lies on exactly one side, so a member's rows (all its communities) are
/// in one half, the members seen in two communities are found within it,
/// and the halves' cells add up to the whole statement's. A unit that is
/// not a pseudonym (tests, imports of raw ids) is still counted once; the
/// halves are then merely unbalanced.
pub const SPLIT_AT: &str = "8";

/// Which members a community statement reads (by pseudonym).
#[derive(Debug, Clone, Copy)]
enum Members {
    All,
    Below(&'static str),
    From(&'static str),
}

impl CommunityCell {
    /// Adds the sums of `other`, the same cell of another set of members.
    fn add(&mut self, other: &CommunityCell) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_squares += other.sum_squares;
        self.d_sum += other.d_sum;
        self.d_sum_squares += other.d_sum_squares;
        self.yd_sum += other.yd_sum;
        self.y_cap = match (self.y_cap, other.y_cap) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The community-design statement (see the module docs). Placeholders are
/// all the builder's: the windows' bounds, the communities, the event
/// names and filter values.
///
/// ```text
/// g      per (community, member): for each window, y (NULL when the
///        member had no event in it) and d, as conditional aggregates of
///        one GROUP BY that
///        follows the order of the covering index (community, unit, ts,
///        name) (migration 0009): no sort, no table access without
///        property filters or summed values
/// multi  members seen in two or more of the communities (left out)
/// mv     per (member, period) where the member was active
/// out  (optional cap) then GROUP BY community, period
/// ```
fn compile_community(
    metric: &Metric,
    dialect: Dialect,
    communities: &[String],
    windows: &[PeriodSpan],
    per_member: bool,
    members: Members,
) -> crate::metrics::Compiled {
    let mut b = Builder {
        dialect,
        binds: Vec::new(),
        offset: 0,
    };
    let ts = |b: &mut Builder, t: DateTime<Utc>| {
        let p = b.bind(Bind::Time(t));
        match dialect {
            Dialect::Postgres => format!("{p}::timestamptz"),
            Dialect::Sqlite => p,
        }
    };
    let lo = windows.iter().map(|w| w.start).min().expect("non-empty");
    let hi = windows.iter().map(|w| w.end).max().expect("non-empty");
    let (lo, hi) = (ts(&mut b, lo), ts(&mut b, hi));
    let bounds: Vec<(i64, String, String)> = windows
        .iter()
        .map(|w| (w.period, ts(&mut b, w.start), ts(&mut b, w.end)))
        .collect();
    let comms: Vec<String> = communities
        .iter()
        .map(|c| b.bind(Bind::Text(c.clone())))
        .collect();
    let names: Vec<String> = metric
        .events
        .iter()
        .map(|e| b.bind(Bind::Text(e.clone())))
        .collect();
    let member_range = match members {
        Members::All => String::new(),
        Members::Below(at) => format!(" AND v.unit < {}", b.bind(Bind::Text(at.to_string()))),
        Members::From(at) => format!(" AND v.unit >= {}", b.bind(Bind::Text(at.to_string()))),
    };
    let name_in = |names: &[String]| format!("v.name IN ({})", names.join(", "));
    let filters: Vec<String> = metric
        .filters
        .iter()
        .map(|f| b.filter(&f.property, &f.op))
        .collect();
    let (y_names, d_names) = match metric.kind {
        MetricKind::Ratio => (vec![names[0].clone()], Some(vec![names[1].clone()])),
        _ => (names.clone(), None),
    };
    let matches = |names: &[String]| {
        let mut c = vec![name_in(names)];
        c.extend(filters.iter().cloned());
        c.join(" AND ")
    };
    let contribution = match (&metric.value, metric.kind) {
        (MetricValue::Sum(p), MetricKind::Mean | MetricKind::Ratio) => {
            format!("coalesce({}, 0.0)", b.number(p))
        }
        _ => "1.0".to_string(),
    };
    let f8 = |e: String| match dialect {
        Dialect::Postgres => format!("({e})::float8"),
        Dialect::Sqlite => e,
    };
    // Per window: y (NULL when the member has no event in the window, so
    // that it also says whether the member was active) and d, as
    // conditional aggregates of one GROUP BY (community, unit) that
    // follows the index order. One aggregate per window for y: an
    // aggregate ignores the NULL of the rows outside the window, and
    // `sum` of no row is NULL (SQLite's `total` would give 0.0; every
    // term is a float, so `sum` adds exactly as `total` does).
    let real = |e: String| match dialect {
        Dialect::Sqlite if e != "1.0" => format!("CAST({e} AS REAL)"),
        _ => e,
    };
    let mut cols = Vec::new();
    for (i, (_, s, e)) in bounds.iter().enumerate() {
        let within = format!("v.ts >= {s} AND v.ts < {e}");
        let hit_y = matches(&y_names);
        let y = match metric.kind {
            MetricKind::Proportion => f8(format!(
                "max(CASE WHEN {within} THEN CASE WHEN {hit_y} THEN 1.0 ELSE 0.0 END END)"
            )),
            _ => f8(format!(
                "sum(CASE WHEN {within} THEN CASE WHEN {hit_y} THEN {} ELSE 0.0 END END)",
                real(contribution.clone())
            )),
        };
        cols.push(format!("{y} AS y{i}"));
        cols.push(match &d_names {
            Some(d) => format!(
                "{} AS d{i}",
                b.float(&format!(
                    "CASE WHEN {within} AND {} THEN 1.0 ELSE 0.0 END",
                    matches(d)
                ))
            ),
            None => format!("{} AS d{i}", f8("0.0".into())),
        });
    }
    let g_mat = match dialect {
        Dialect::Sqlite => "MATERIALIZED ",
        Dialect::Postgres => "",
    };
    let per_window: Vec<String> = bounds
        .iter()
        .enumerate()
        .map(|(i, (period, _, _))| {
            format!(
                "  SELECT community, {period} AS period, unit, y{i} AS y, d{i} AS d FROM g WHERE y{i} IS NOT NULL AND unit NOT IN (SELECT unit FROM multi)"
            )
        })
        .collect();
    let mut sql = format!(
        "WITH g AS {g_mat}(\n  SELECT v.community, v.unit,\n    {}\n  FROM events v\n  WHERE v.community IS NOT NULL AND v.community IN ({}) AND v.ts >= {lo} AND v.ts < {hi}{member_range}\n  GROUP BY v.community, v.unit\n),\n\
         multi AS (\n  SELECT unit FROM g GROUP BY unit HAVING count(*) > 1\n),\n\
         mv AS (\n{}\n)",
        cols.join(",\n    "),
        comms.join(", "),
        per_window.join("\n  UNION ALL\n"),
    );
    let (cap, from) = match metric.cap {
        None => ("NULL".to_string(), "mv".to_string()),
        Some(Cap::Value(v)) => (format!("{v:?}"), "mv".to_string()),
        Some(Cap::Percentile(p)) => {
            let scale = PERCENTILE_SCALE;
            let k = Cap::percentile_millionths(p)
                .unwrap_or_else(|| ((p * scale as f64).round() as i64).clamp(1, scale - 1));
            let rank = format!("(n * {k} + {}) / {scale}", scale - 1);
            sql.push_str(&format!(
                ",\ny_ranked AS (\n  SELECT y, row_number() OVER (ORDER BY y) AS r, count(*) OVER () AS n FROM mv\n),\n\
                 y_cap AS (\n  SELECT coalesce(max(y), 0.0) AS c FROM y_ranked WHERE r = {rank}\n)"
            ));
            ("y_cap.c".to_string(), "mv, y_cap".to_string())
        }
    };
    let capped = if cap == "NULL" {
        "y".to_string()
    } else {
        format!("(CASE WHEN y > {cap} THEN {cap} ELSE y END)")
    };
    let (cast_null, big, text_null) = match dialect {
        Dialect::Postgres => (format!("({cap})::float8"), "::bigint", "NULL::text"),
        Dialect::Sqlite => (cap.clone(), "", "NULL"),
    };
    let (zero, cnt, null_f) = match dialect {
        Dialect::Postgres => ("0.0::float8", "count(*)::float8", "NULL::float8"),
        Dialect::Sqlite => ("0.0", "1.0 * count(*)", "NULL"),
    };
    sql.push_str(&format!(
        ",\nout AS (\n  SELECT community, period, unit, {capped} AS y, d, {cast_null} AS yc FROM {from}\n)\n"
    ));
    if per_member {
        sql.push_str(&format!(
            "SELECT unit, community, period{big} AS period, y, d FROM out\n\
             UNION ALL\n\
             SELECT {text_null}, {text_null}, -1{big}, {cnt}, {zero} FROM multi\n\
             ORDER BY 2, 3, 1"
        ));
    } else {
        sql.push_str(&format!(
            "SELECT community, period{big} AS period, count(*) AS n,\n  {} AS sum, {} AS sum_squares,\n  {} AS d_sum, {} AS d_sum_squares, {} AS yd_sum, max(yc) AS y_cap\nFROM out\nGROUP BY community, period\n\
             UNION ALL\n\
             SELECT {text_null}, -1{big}, count(*), {zero}, {zero}, {zero}, {zero}, {zero}, {null_f} FROM multi",
            b.float("y"),
            b.float("y * y"),
            b.float("d"),
            b.float("d * d"),
            b.float("y * d"),
        ));
    }
    crate::metrics::Compiled {
        sql,
        binds: b.binds,
    }
}

/// Exposed units of a trial per (arm, community, excluded), with the
/// earliest and latest first exposure: the data-quality counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExposureCount {
    pub arm: String,
    pub community: Option<String>,
    pub excluded: bool,
    pub n: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// A first exposure, for the data-quality checks (units excluded by an
/// override; a community design's exposures checked against its schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExposureRecord {
    pub unit: String,
    pub arm: String,
    pub community: Option<String>,
    pub exposed_at: DateTime<Utc>,
    pub excluded_reason: Option<String>,
}

const EXPOSURE_COUNTS: &str = "SELECT arm, community, excluded, count(*) AS n, \
     min(exposed_at) AS first, max(exposed_at) AS last FROM exposures WHERE trial_id = $1 \
     GROUP BY arm, community, excluded ORDER BY arm, community, excluded";

const EXCLUDED_EXPOSURES: &str = "SELECT unit, arm, community, exposed_at, excluded_reason \
     FROM exposures WHERE trial_id = $1 AND excluded_reason IS NOT NULL \
     ORDER BY exposed_at, unit LIMIT $2";

const ALL_EXPOSURES: &str = "SELECT unit, arm, community, exposed_at, excluded_reason \
     FROM exposures WHERE trial_id = $1 ORDER BY exposed_at, unit LIMIT $2";

impl Store {
    /// Exposed units per (arm, community, excluded), sorted.
    pub async fn exposure_counts(&self, trial_id: i64) -> Result<Vec<ExposureCount>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(EXPOSURE_COUNTS)
            .bind(trial_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// The first `limit` exposures of a trial, in time order: all of them
    /// (`excluded_only` false; a community design has one per community)
    /// or those excluded by a developer's override.
    pub async fn exposure_records(
        &self,
        trial_id: i64,
        excluded_only: bool,
        limit: u32,
    ) -> Result<Vec<ExposureRecord>, StoreError> {
        let sql = if excluded_only {
            EXCLUDED_EXPOSURES
        } else {
            ALL_EXPOSURES
        };
        with_backend!(self, |db| sqlx::query_as(sql)
            .bind(trial_id)
            .bind(i64::from(limit))
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }
}
