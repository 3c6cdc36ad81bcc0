//! Metric definitions compiled to one SQL query per backend.
//!
//! A [`Metric`] becomes a single statement that aggregates per unit inside
//! the database and returns per-(arm, community) sufficient statistics:
//! n, Σy, Σy², Σx, Σx², Σxy (x the pre-exposure covariate), and for ratios
//! Σd, Σd², Σyd, Σdx. No event row leaves the database.
//!
//! Shape (the plan is explained in `docs/benchmarks.md`):
//!
//! ```text
//! exp  the trial's analysed exposures with each unit's window bounds
//! pu   one row per unit: LEFT JOIN events on (unit, name, ts range) +
//!      filters, GROUP BY unit, conditional sums per window
//! cap  (optional) nearest-rank percentile of y and of x over all units
//! out  GROUP BY arm, community
//! ```
//!
//! Timestamps: PostgreSQL `timestamptz` arithmetic; SQLite stores RFC 3339
//! text with six fractional digits (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), so a
//! bound is `strftime('%Y-%m-%dT%H:%M:%S', substr(t, 1, 19), '+N seconds')
//! || substr(t, 20)` and compares as text: whole-second offsets keep the
//! fraction, and only whole seconds go through SQLite's date functions,
//! which round fractions to milliseconds.
//!
//! Percentile caps take the value at rank `ceil(p · n)` computed in
//! integers (`p` has at most six decimals), the same on both databases.
//!
//! Only validated identifiers (property names `[A-Za-z_][A-Za-z0-9_]*`) and
//! numbers produced here (seconds, percentiles, cap values) are written
//! into the SQL text; event names and compared values are bound.

use commonlab_core::experiments::{
    Cap, FilterOp, Metric, MetricKind, MetricValue, Scalar, PERCENTILE_SCALE,
};
use serde::{Deserialize, Serialize};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Database, Encode, Type};

mod fused;

use crate::column::Ts;
use crate::error::{db_err, write_err};
use crate::{Backend, CommunityRows, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder, in order after the trial id (`1`) and
/// the as-of time (`2`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Float(f64),
    Time(chrono::DateTime<chrono::Utc>),
}

/// Binds a compiled metric's values to a sqlx query, in order.
macro_rules! bind_metric {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for b in $binds {
            query = match b {
                $crate::metrics::Bind::Text(t) => query.bind(t.as_str()),
                $crate::metrics::Bind::Float(f) => query.bind(*f),
                $crate::metrics::Bind::Time(t) => query.bind($crate::column::Ts(*t)),
            };
        }
        query
    }};
}

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

/// Sufficient statistics of one metric for the units of one arm in one
/// community (`None`: units exposed without a community).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MetricCell {
    pub arm: String,
    pub community: Option<String>,
    /// Units whose analysis window had closed by the as-of time.
    pub n: i64,
    pub sum: f64,
    pub sum_squares: f64,
    /// Covariate sums (0 without a covariate).
    pub x_sum: f64,
    pub x_sum_squares: f64,
    pub xy_sum: f64,
    /// Ratio denominator sums (0 for other kinds).
    pub d_sum: f64,
    pub d_sum_squares: f64,
    pub md_sum: f64,
    pub dx_sum: f64,
    /// The cap applied to y (`None` without capping).
    pub y_cap: Option<f64>,
    /// The cap applied to x (`None` without capping or covariate).
    pub x_cap: Option<f64>,
}

/// At most this many metrics share one statement ([`Store::metrics_cells`]):
/// SQLite allows 500 terms in a compound SELECT and 2,000 columns, and a
/// trial file may list more metrics than that.
pub const FUSED_METRICS_MAX: usize = 32;

/// A row of the fused statement: the metric's position and its cell.
#[derive(sqlx::FromRow)]
struct FusedCell {
    m: i64,
    #[sqlx(flatten)]
    cell: MetricCell,
}

/// A metric's aggregates, kept for a concluded trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct MetricSnapshot {
    pub metric: String,
    /// The trial's locked plan the metric was computed under.
    pub spec_hash: String,
    /// The analysis time the cells were computed for.
    pub as_of: chrono::DateTime<chrono::Utc>,
    pub computed_at: chrono::DateTime<chrono::Utc>,
    /// Per-(arm, community) sufficient statistics (`hash` designs; empty
    /// for community designs).
    #[sqlx(json)]
    pub cells: Vec<MetricCell>,
    /// Community designs: the community × period cells of the windows
    /// closed at `as_of`, and the members left out (migration 0011).
    /// Aggregates only: no unit in them. `None` for member designs.
    #[sqlx(json(nullable))]
    #[serde(default)]
    pub communities: Option<CommunityRows>,
}

impl Store {
    /// One metric of a trial, aggregated inside the database by a single
    /// query (see [`metrics`](crate::metrics)): per (arm, community), the
    /// sufficient statistics of the units exposed to the trial (not
    /// excluded) whose analysis window closed at or before `as_of`.
    pub async fn metric_cells(
        &self,
        trial_id: i64,
        metric: &Metric,
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<MetricCell>, StoreError> {
        let q = compile(metric, self.dialect());
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

    /// Several metrics of a trial, each as [`Store::metric_cells`] would
    /// give it, in the order of `metrics`, by one statement ([`fused`]: the
    /// window bounds computed once, and a per-unit value that several
    /// metrics share once). Empty `metrics`: no statement. More than
    /// [`FUSED_METRICS_MAX`] metrics take one statement per that many, one
    /// after another.
    pub async fn metrics_cells(
        &self,
        trial_id: i64,
        metrics: &[&Metric],
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Vec<MetricCell>>, StoreError> {
        let mut out: Vec<Vec<MetricCell>> = Vec::with_capacity(metrics.len());
        for group in metrics.chunks(FUSED_METRICS_MAX) {
            out.extend(self.fused_cells(trial_id, group, as_of).await?);
        }
        Ok(out)
    }

    /// [`Store::metrics_cells`] for at most [`FUSED_METRICS_MAX`] metrics.
    async fn fused_cells(
        &self,
        trial_id: i64,
        metrics: &[&Metric],
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Vec<MetricCell>>, StoreError> {
        let mut out: Vec<Vec<MetricCell>> = vec![Vec::new(); metrics.len()];
        if let [metric] = metrics {
            out[0] = self.metric_cells(trial_id, metric, as_of).await?;
        } else if !metrics.is_empty() {
            let q = fused::compile_many(metrics, self.dialect());
            let rows: Vec<FusedCell> = match &self.inner {
                crate::Inner::Sqlite(db) => {
                    bind_metric!(
                        sqlx::query_as(AssertSqlSafe(q.sql.as_str()))
                            .bind(trial_id)
                            .bind(Ts(as_of)),
                        &q.binds
                    )
                    .fetch_all(db.reader())
                    .await
                }
                crate::Inner::Postgres(db) => {
                    async {
                        let mut tx = db.reader().begin().await?;
                        // Without JIT: compiling this wide statement took
                        // 2.7 s of the 14 it ran, and saved less
                        // (docs/benchmarks.md, "Metrics in one statement").
                        sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
                        let rows = bind_metric!(
                            sqlx::query_as(AssertSqlSafe(q.sql.as_str()))
                                .bind(trial_id)
                                .bind(Ts(as_of)),
                            &q.binds
                        )
                        .fetch_all(&mut *tx)
                        .await?;
                        tx.rollback().await?;
                        Ok(rows)
                    }
                    .await
                }
            }
            .map_err(db_err)?;
            for row in rows {
                let at = usize::try_from(row.m)
                    .ok()
                    .and_then(|m| out.get_mut(m))
                    .ok_or_else(|| {
                        StoreError::Database(sqlx::Error::Protocol(format!(
                            "a fused metric row names metric {} of {}",
                            row.m,
                            metrics.len()
                        )))
                    })?;
                at.push(row.cell);
            }
        }
        Ok(out)
    }

    /// The SQL [`Store::metrics_cells`] runs for `metrics` on this backend
    /// (placeholders as [`Store::metric_sql`]); `None` for fewer than two.
    pub fn metrics_sql(&self, metrics: &[&Metric]) -> Option<String> {
        (metrics.len() > 1).then(|| fused::compile_many(metrics, self.dialect()).sql)
    }

    /// The SQL [`Store::metric_cells`] runs for `metric` on this backend
    /// (placeholders: 1 the trial id, 2 the as-of time, then the metric's
    /// own values).
    pub fn metric_sql(&self, metric: &Metric) -> String {
        compile(metric, self.dialect()).sql
    }

    /// The query plan of [`Store::metric_cells`] (`EXPLAIN QUERY PLAN` on
    /// SQLite, `EXPLAIN` on PostgreSQL), one line per plan node.
    pub async fn metric_plan(
        &self,
        trial_id: i64,
        metric: &Metric,
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let q = compile(metric, self.dialect());
        // SQLite's plan rows are (id, parent, notused, detail), PostgreSQL's
        // one line of text.
        let (explain, detail) = match self.backend() {
            Backend::Sqlite => ("EXPLAIN QUERY PLAN ", 3),
            Backend::Postgres => ("EXPLAIN ", 0),
        };
        let sql = format!("{explain}{}", q.sql);
        with_backend!(self, |db| {
            let rows = bind_metric!(
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(trial_id)
                    .bind(Ts(as_of)),
                &q.binds
            )
            .fetch_all(db.reader())
            .await
            .map_err(db_err)?;
            rows.iter()
                .map(|r| sqlx::Row::try_get::<String, _>(r, detail).map_err(db_err))
                .collect()
        })
    }

    /// Stores (replacing) aggregates of a trial's metrics in one
    /// transaction: what a concluded trial is analysed from once the raw
    /// events are gone.
    pub async fn save_metric_snapshots(
        &self,
        trial_id: i64,
        snapshots: &[MetricSnapshot],
    ) -> Result<(), StoreError> {
        let result: Result<(), sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            for snapshot in snapshots {
                upsert_snapshot(trial_id, snapshot)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        });
        result.map_err(write_err)
    }

    /// The stored aggregates of a trial, by metric name.
    pub async fn metric_snapshots(&self, trial_id: i64) -> Result<Vec<MetricSnapshot>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(SNAPSHOTS)
            .bind(trial_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    fn dialect(&self) -> Dialect {
        match self.backend() {
            Backend::Sqlite => Dialect::Sqlite,
            Backend::Postgres => Dialect::Postgres,
        }
    }
}

/// Stores (replacing) a metric snapshot of a trial, for either database
/// (in the transaction that concludes the trial, or on its own).
pub(crate) fn upsert_snapshot<'s, DB: Database>(
    trial_id: i64,
    s: &'s MetricSnapshot,
) -> Query<'static, DB, DB::Arguments>
where
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    &'s str: for<'q> Encode<'q, DB> + Type<DB>,
    Ts: for<'q> Encode<'q, DB> + Type<DB>,
    Json<&'s [MetricCell]>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<Json<CommunityRows>>: for<'q> Encode<'q, DB> + Type<DB>,
{
    sqlx::query(UPSERT_SNAPSHOT)
        .bind(trial_id)
        .bind(s.metric.as_str())
        .bind(s.spec_hash.as_str())
        .bind(Ts(s.as_of))
        .bind(Ts(s.computed_at))
        .bind(Json(s.cells.as_slice()))
        .bind(s.communities.clone().map(Json))
}

/// $1 trial id, $2 metric, $3 spec hash, $4 as of, $5 computed at, $6 cells,
/// $7 community cells.
const UPSERT_SNAPSHOT: &str = "INSERT INTO metric_snapshots \
     (trial_id, metric, spec_hash, as_of, computed_at, cells, communities) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (trial_id, metric) DO UPDATE SET spec_hash = excluded.spec_hash, \
     as_of = excluded.as_of, computed_at = excluded.computed_at, cells = excluded.cells, \
     communities = excluded.communities";

const SNAPSHOTS: &str = "SELECT metric, spec_hash, as_of, computed_at, cells, communities \
     FROM metric_snapshots WHERE trial_id = $1 ORDER BY metric";

pub(crate) struct Builder {
    pub(crate) dialect: Dialect,
    pub(crate) binds: Vec<Bind>,
    /// Placeholders before the builder's own (`$1 … $offset`).
    pub(crate) offset: usize,
}

impl Builder {
    pub(crate) fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        let n = self.binds.len() + self.offset;
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `exposed_at` shifted by `secs`.
    fn shifted(&self, secs: i64) -> String {
        match (self.dialect, secs) {
            (_, 0) => "exposed_at".to_string(),
            // Whole seconds only go through strftime: SQLite's date
            // functions round a fraction to milliseconds (….999732 would
            // become the next second); the fraction is appended unchanged.
            (Dialect::Sqlite, s) => format!(
                "strftime('%Y-%m-%dT%H:%M:%S', substr(exposed_at, 1, 19), '{s:+} seconds') || substr(exposed_at, 20)"
            ),
            (Dialect::Postgres, s) => format!("exposed_at + interval '{s} seconds'"),
        }
    }

    /// The JSON type test and numeric value of property `p` of `v`.
    pub(crate) fn is_number(&self, p: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json_type(v.properties, '$.{p}') IN ('integer', 'real')"),
            Dialect::Postgres => format!("jsonb_typeof(v.properties -> '{p}') = 'number'"),
        }
    }

    pub(crate) fn number(&self, p: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!(
                "(CASE WHEN {} THEN json_extract(v.properties, '$.{p}') END)",
                self.is_number(p)
            ),
            Dialect::Postgres => format!(
                "(CASE WHEN {} THEN (v.properties ->> '{p}')::float8 END)",
                self.is_number(p)
            ),
        }
    }

    fn equals(&mut self, p: &str, s: &Scalar) -> String {
        match (self.dialect, s) {
            (Dialect::Sqlite, Scalar::Str(x)) => {
                let b = self.bind(Bind::Text(x.clone()));
                format!("(json_type(v.properties, '$.{p}') = 'text' AND json_extract(v.properties, '$.{p}') = {b})")
            }
            (Dialect::Sqlite, Scalar::Num(x)) => {
                let b = self.bind(Bind::Float(*x));
                format!("({} = {b})", self.number(p))
            }
            (Dialect::Sqlite, Scalar::Bool(x)) => {
                format!("(json_type(v.properties, '$.{p}') = '{x}')")
            }
            (Dialect::Postgres, s) => {
                let json = match s {
                    Scalar::Str(x) => serde_json::json!({ p: x }),
                    Scalar::Num(x) => serde_json::json!({ p: x }),
                    Scalar::Bool(x) => serde_json::json!({ p: x }),
                };
                let b = self.bind(Bind::Text(json.to_string()));
                format!("(v.properties @> {b}::jsonb)")
            }
        }
    }

    fn compare(&mut self, p: &str, op: &str, x: f64) -> String {
        let b = self.bind(Bind::Float(x));
        format!("({} {op} {b})", self.number(p))
    }

    /// A condition that is never NULL.
    pub(crate) fn filter(&mut self, p: &str, op: &FilterOp) -> String {
        let cond = match op {
            FilterOp::Eq(s) => self.equals(p, s),
            FilterOp::Ne(s) => {
                let eq = self.equals(p, s);
                format!("NOT {}", self.not_null(&eq))
            }
            FilterOp::In(list) => {
                let parts: Vec<String> = list.iter().map(|s| self.equals(p, s)).collect();
                format!("({})", parts.join(" OR "))
            }
            FilterOp::Gt(x) => self.compare(p, ">", *x),
            FilterOp::Gte(x) => self.compare(p, ">=", *x),
            FilterOp::Lt(x) => self.compare(p, "<", *x),
            FilterOp::Lte(x) => self.compare(p, "<=", *x),
            FilterOp::Exists(b) => {
                let present = match self.dialect {
                    Dialect::Sqlite => format!("json_type(v.properties, '$.{p}') IS NOT NULL"),
                    Dialect::Postgres => format!("v.properties -> '{p}' IS NOT NULL"),
                };
                if *b {
                    present
                } else {
                    format!("NOT ({present})")
                }
            }
        };
        // NULL (property absent) counts as false.
        self.not_null(&cond)
    }

    pub(crate) fn not_null(&self, cond: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("coalesce({cond}, 0)"),
            Dialect::Postgres => format!("coalesce({cond}, false)"),
        }
    }

    pub(crate) fn float(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("total({expr})"),
            Dialect::Postgres => format!("coalesce(sum({expr}), 0)::float8"),
        }
    }
}

fn lit(x: f64) -> String {
    // `{:?}` prints the shortest text that reads back as the same f64,
    // always with a decimal point or exponent.
    format!("{x:?}")
}

/// The rank of a percentile cap `p` among `n` values, as SQL: rank
/// ceil(p·n) in integers. p = k / SCALE exactly (at most six decimals,
/// checked at validation), so both databases agree with the decimal the
/// researcher wrote (0.55 · 100 is 55, not the 55.000000000000007 of
/// floating point).
fn percentile_rank(p: f64) -> String {
    let scale = PERCENTILE_SCALE;
    let k = Cap::percentile_millionths(p)
        .unwrap_or_else(|| ((p * scale as f64).round() as i64).clamp(1, scale - 1));
    format!("(n * {k} + {}) / {scale}", scale - 1)
}

/// `col` capped at `cap` (`"NULL"`: not capped).
fn capped(col: &str, cap: &str) -> String {
    if cap == "NULL" {
        col.to_string()
    } else {
        format!("(CASE WHEN {col} > {cap} THEN {cap} ELSE {col} END)")
    }
}

/// A cap's value as a float column (PostgreSQL types a bare NULL).
fn cast_null(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("({s})::float8"),
        Dialect::Sqlite => s.to_string(),
    }
}

/// The columns of a [`MetricCell`] after `arm, community`, summed over the
/// rows of y, x, d, yc and xc.
fn cell_sums(b: &Builder) -> String {
    format!(
        "count(*) AS n,\n  {sy} AS sum, {syy} AS sum_squares,\n  {sx} AS x_sum, {sxx} AS x_sum_squares, {sxy} AS xy_sum,\n  {sd} AS d_sum, {sdd} AS d_sum_squares, {syd} AS md_sum, {sdx} AS dx_sum,\n  max(yc) AS y_cap, max(xc) AS x_cap",
        sy = b.float("y"),
        syy = b.float("y * y"),
        sx = b.float("x"),
        sxx = b.float("x * x"),
        sxy = b.float("x * y"),
        sd = b.float("d"),
        sdd = b.float("d * d"),
        syd = b.float("y * d"),
        sdx = b.float("d * x"),
    )
}

/// How a per-unit value aggregates its events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Agg {
    /// 1 if there is one, else 0 (proportions).
    Exists,
    Count,
    /// The sum of this expression over the events.
    Sum(String),
}

impl Agg {
    /// A metric's y or x (`count_only` false) or a ratio's d (true): `sum`
    /// is the summed expression of its `value`, if any.
    fn of(kind: MetricKind, sum: Option<&str>, count_only: bool) -> Agg {
        match (kind, sum) {
            (MetricKind::Proportion, _) => Agg::Exists,
            (_, Some(v)) if !count_only => Agg::Sum(v.to_string()),
            _ => Agg::Count,
        }
    }

    /// SQLite: the value as a correlated subquery over `from` (`FROM
    /// events v WHERE …`).
    fn sqlite(&self, from: &str) -> String {
        match self {
            Agg::Exists => format!("(CASE WHEN EXISTS (SELECT 1 {from}) THEN 1.0 ELSE 0.0 END)"),
            Agg::Sum(v) => format!("(SELECT total({v}) {from})"),
            Agg::Count => format!("(1.0 * (SELECT count(*) {from}))"),
        }
    }

    /// PostgreSQL: the value as an aggregate over the rows `within`.
    fn postgres(&self, within: &str) -> String {
        match self {
            Agg::Exists => format!("(count(*) FILTER (WHERE {within}) > 0)::int::float8"),
            Agg::Sum(v) => format!("coalesce(sum({v}) FILTER (WHERE {within}), 0)::float8"),
            Agg::Count => format!("(count(*) FILTER (WHERE {within}))::float8"),
        }
    }
}

/// The position of `item` in `items`, appended if new (the columns and
/// binds of a compiled statement, each written once).
fn intern<T: PartialEq>(items: &mut Vec<T>, item: T) -> usize {
    match items.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            items.push(item);
            items.len() - 1
        }
    }
}

/// Window bounds of the `exp` rows: one column per distinct offset.
struct Bounds {
    offsets: Vec<i64>,
}

impl Bounds {
    fn col(&mut self, secs: i64) -> String {
        format!("e.b{}", intern(&mut self.offsets, secs))
    }
}

/// Compiles `metric` for `dialect`. Placeholders: 1 the trial id, 2 the
/// as-of time (units whose window ends after it are left out), then the
/// returned binds.
///
/// Per-unit values: on SQLite, correlated scalar subqueries per exposure
/// (`EXISTS` for proportions, `count(*)` for counts: each one range seek
/// on the covering `(unit, name, ts)` index); on PostgreSQL, one `LEFT
/// JOIN LATERAL` aggregate per exposure over both windows with `FILTER`
/// clauses (index-only scans, parallel workers).
pub(crate) fn compile(metric: &Metric, dialect: Dialect) -> Compiled {
    compile_shaped(metric, dialect, Shape::Cells)
}

/// What a compiled metric query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Per-(arm, community) sufficient statistics ([`MetricCell`]).
    Cells,
    /// One row per unit: unit, arm, community, stratum (the assignment's),
    /// y, x, d after capping (`design_rows::MemberValue`).
    Units,
}

pub(crate) fn compile_shaped(metric: &Metric, dialect: Dialect, shape: Shape) -> Compiled {
    let mut b = Builder {
        dialect,
        binds: Vec::new(),
        offset: 2,
    };
    let (p1, p2) = match dialect {
        Dialect::Sqlite => ("?1", "?2"),
        Dialect::Postgres => ("$1", "$2"),
    };
    let w = metric.window;
    let c = metric.covariate;
    let mut bounds = Bounds {
        offsets: Vec::new(),
    };
    let (lo, hi) = (bounds.col(w.start_secs), bounds.col(w.end_secs));
    let pre = c.map(|c| (bounds.col(c.start_secs), bounds.col(c.end_secs)));

    // Event names: bound, so any name is safe.
    let names: Vec<String> = metric
        .events
        .iter()
        .map(|e| b.bind(Bind::Text(e.clone())))
        .collect();
    let name_in = |names: &[String]| {
        if names.len() == 1 {
            format!("v.name = {}", names[0])
        } else {
            format!("v.name IN ({})", names.join(", "))
        }
    };
    let filters: Vec<String> = metric
        .filters
        .iter()
        .map(|f| b.filter(&f.property, &f.op))
        .collect();
    let value = match &metric.value {
        MetricValue::Count => None,
        MetricValue::Sum(p) => Some(format!("coalesce({}, 0.0)", b.number(p))),
    };
    // (events matched, window) for y, x and d.
    let (y_names, d_names) = match metric.kind {
        MetricKind::Ratio => (vec![names[0].clone()], Some(vec![names[1].clone()])),
        _ => (names.clone(), None),
    };

    let keep = match shape {
        Shape::Cells => "",
        Shape::Units => "e.unit, e.stratum, ",
    };
    let pu = match dialect {
        Dialect::Sqlite => {
            let seek = |names: &[String], lo: &str, hi: &str| {
                let mut conds = vec![
                    "v.unit = e.unit".to_string(),
                    name_in(names),
                    format!("v.ts >= {lo}"),
                    format!("v.ts < {hi}"),
                ];
                conds.extend(filters.iter().cloned());
                format!("FROM events v WHERE {}", conds.join(" AND "))
            };
            let agg = |names: &[String], lo: &str, hi: &str, count_only: bool| {
                Agg::of(metric.kind, value.as_deref(), count_only).sqlite(&seek(names, lo, hi))
            };
            let y = agg(&y_names, &lo, &hi, false);
            let x = match &pre {
                Some((clo, chi)) => agg(&y_names, clo, chi, false),
                None => "0.0".into(),
            };
            let d = match &d_names {
                Some(dn) => agg(dn, &lo, &hi, true),
                None => "0.0".into(),
            };
            format!("  SELECT {keep}e.arm, e.community,\n    {y} AS y,\n    {x} AS x,\n    {d} AS d\n  FROM exp e")
        }
        Dialect::Postgres => {
            let (jlo, jhi) = match &pre {
                Some(_) => {
                    let c = c.expect("pre implies a covariate");
                    (
                        bounds.col(w.start_secs.min(c.start_secs)),
                        bounds.col(w.end_secs.max(c.end_secs)),
                    )
                }
                None => (lo.clone(), hi.clone()),
            };
            let mut conds = vec![
                "v.unit = e.unit".to_string(),
                name_in(&names),
                format!("v.ts >= {jlo}"),
                format!("v.ts < {jhi}"),
            ];
            conds.extend(filters.iter().cloned());
            let is = |names: &[String]| {
                if metric.kind == MetricKind::Ratio {
                    format!("{} AND ", name_in(names))
                } else {
                    String::new()
                }
            };
            let agg = |names: &[String], lo: &str, hi: &str, count_only: bool| {
                let within = format!("{}v.ts >= {lo} AND v.ts < {hi}", is(names));
                Agg::of(metric.kind, value.as_deref(), count_only).postgres(&within)
            };
            let y = agg(&y_names, &lo, &hi, false);
            let x = match &pre {
                Some((clo, chi)) => agg(&y_names, clo, chi, false),
                None => "0.0::float8".into(),
            };
            let d = match &d_names {
                Some(dn) => agg(dn, &lo, &hi, true),
                None => "0.0::float8".into(),
            };
            format!(
                "  SELECT {keep}e.arm, e.community, a.y, a.x, a.d\n  FROM exp e\n  CROSS JOIN LATERAL (\n    SELECT {y} AS y,\n      {x} AS x,\n      {d} AS d\n    FROM events v\n    WHERE {}\n  ) a",
                conds.join("\n      AND ")
            )
        }
    };

    let included = match dialect {
        Dialect::Sqlite => "excluded = 0",
        Dialect::Postgres => "NOT excluded",
    };
    let end = b.shifted(w.end_secs);
    let as_of_cmp = match dialect {
        Dialect::Sqlite => format!("{end} <= {p2}"),
        Dialect::Postgres => format!("{end} <= {p2}::timestamptz"),
    };
    let bound_cols: Vec<String> = bounds
        .offsets
        .iter()
        .enumerate()
        .map(|(i, &o)| format!("{} AS b{i}", b.shifted(o)))
        .collect();
    // SQLite: compute each unit's bounds once (strftime is the costly part).
    let exp_mat = match dialect {
        Dialect::Sqlite => "MATERIALIZED ",
        Dialect::Postgres => "",
    };
    // SQLite would otherwise inline `pu` and run its subqueries once per
    // reference of y and x below; PostgreSQL materialises a CTE referenced
    // more than once by itself, and only the percentile cap does that.
    let pu_mat = match (dialect, metric.cap) {
        (Dialect::Sqlite, _) | (_, Some(Cap::Percentile(_))) => "MATERIALIZED ",
        _ => "",
    };
    let stratum = match shape {
        Shape::Cells => "",
        Shape::Units => "(SELECT a.stratum FROM assignments a WHERE a.trial_id = exposures.trial_id AND a.unit = exposures.unit) AS stratum,\n    ",
    };
    let mut sql = format!(
        "WITH exp AS {exp_mat}(\n  SELECT unit, arm, community,\n    {stratum}{}\n  FROM exposures\n  WHERE trial_id = {p1} AND {included} AND {as_of_cmp}\n),\n\
         pu AS {pu_mat}(\n{pu}\n)",
        bound_cols.join(",\n    "),
    );
    let (ycap, xcap, from) = match metric.cap {
        None => ("NULL".to_string(), "NULL".to_string(), "pu".to_string()),
        Some(Cap::Value(v)) => (
            lit(v),
            if c.is_some() { lit(v) } else { "NULL".into() },
            "pu".to_string(),
        ),
        Some(Cap::Percentile(p)) => {
            let rank = percentile_rank(p);
            for col in ["y", "x"] {
                sql.push_str(&format!(
                    ",\n{col}_ranked AS (\n  SELECT {col}, row_number() OVER (ORDER BY {col}) AS r, count(*) OVER () AS n FROM pu\n),\n\
                     {col}_cap AS (\n  SELECT coalesce(max({col}), 0.0) AS c FROM {col}_ranked WHERE r = {rank}\n)"
                ));
            }
            (
                "y_cap.c".to_string(),
                if c.is_some() {
                    "x_cap.c".into()
                } else {
                    "NULL".into()
                },
                "pu, y_cap, x_cap".to_string(),
            )
        }
    };
    let yv = capped("y", &ycap);
    let xv = capped("x", &xcap);
    if shape == Shape::Units {
        sql.push_str(&format!(
            ",\nout AS (\n  SELECT unit, arm, community, stratum, {yv} AS y, {xv} AS x, d FROM {from}\n)\n\
             SELECT unit, arm, community, stratum, y, x, d FROM out ORDER BY unit"
        ));
        return Compiled {
            sql,
            binds: b.binds,
        };
    }
    sql.push_str(&format!(
        ",\nout AS (\n  SELECT arm, community, {yv} AS y, {xv} AS x, d, {yc} AS yc, {xc} AS xc FROM {from}\n)\n\
         SELECT arm, community, {sums}\nFROM out\nGROUP BY arm, community\nORDER BY arm, community",
        yc = cast_null(dialect, &ycap),
        xc = cast_null(dialect, &xcap),
        sums = cell_sums(&b),
    ));
    Compiled {
        sql,
        binds: b.binds,
    }
}
