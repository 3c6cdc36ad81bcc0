//! Several metrics of one trial in one statement
//! ([`Store::metrics_cells`](crate::Store::metrics_cells)): the exposures'
//! window bounds are computed once for all of them, and a per-unit value
//! that several metrics use (the same events, window and filters) once.
//!
//! Shape:
//!
//! ```text
//! exp   the analysed exposures with every bound any metric needs (on
//!       SQLite each distinct bound is one strftime per unit: computing
//!       them once instead of once per metric is most of the saving)
//! pu    one row per unit whose earliest metric window has closed: per
//!       metric i whether its own window has closed (ok{i}); the distinct
//!       per-unit values c{k} (SQLite: one correlated subquery each, a
//!       range seek on the covering (unit, name, ts) index; PostgreSQL: one
//!       aggregate per event name over the union of that name's windows,
//!       a FILTER clause per value, so each unit's events of a name are
//!       read once, and a value over several names adds its parts)
//! cap   per capped metric, as in the one-metric statement, over its units
//! out   per metric, GROUP BY arm, community over the units of ok{i};
//!       UNION ALL, tagged with the metric's position m
//! ```
//!
//! A unit's values are those of [`super::compile`]: the same conditions
//! (names, window, filters) and the same aggregates, so the cells are the
//! same (on PostgreSQL a sum of a property's values over several event
//! names adds each name's sum: the last bits of a floating-point sum may
//! differ from the one-metric statement's).
//!
//! PostgreSQL runs it without JIT compilation (`SET LOCAL jit = off`):
//! compiling its many expressions took 2.7 s and saved less.

use super::{
    capped, cast_null, cell_sums, intern, lit, percentile_rank, Agg, Bind, Bounds, Builder,
    Compiled, Dialect,
};
use commonlab_core::experiments::{Cap, Metric, MetricKind, MetricValue};

fn name_in(names: &[String]) -> String {
    if names.len() == 1 {
        format!("v.name = {}", names[0])
    } else {
        format!("v.name IN ({})", names.join(", "))
    }
}

/// A per-unit value: the events of `names` (placeholders) within
/// [`lo`, `hi`) (offsets in seconds from the exposure) passing `filters`,
/// aggregated by `agg`.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    names: Vec<String>,
    lo: i64,
    hi: i64,
    filters: Vec<String>,
    agg: Agg,
}

/// The distinct per-unit values of the statement.
#[derive(Default)]
struct Values {
    values: Vec<Value>,
}

impl Values {
    /// The column of `value` (`c{k}`), added if new.
    fn col(&mut self, value: Value) -> String {
        format!("c{}", intern(&mut self.values, value))
    }
}

/// SQLite: each value one correlated subquery (a range seek per name on
/// the covering index), as in the one-metric statement.
fn sqlite_value(v: &Value, bounds: &mut Bounds) -> String {
    let mut conds = vec![
        "v.unit = e.unit".to_string(),
        name_in(&v.names),
        format!("v.ts >= {}", bounds.col(v.lo)),
        format!("v.ts < {}", bounds.col(v.hi)),
    ];
    conds.extend(v.filters.iter().cloned());
    v.agg
        .sqlite(&format!("FROM events v WHERE {}", conds.join(" AND ")))
}

/// A value's part of one event name (PostgreSQL): its window, filters and,
/// for a sum, the summed expression (`None`: a count).
type Part = (i64, i64, Vec<String>, Option<String>);

/// PostgreSQL: one CROSS JOIN LATERAL aggregate per event name over the
/// union of its values' windows (one index range per name and unit), each
/// value's part of that name a `FILTER` aggregate; a value over several
/// names adds its parts. Returns the laterals and each value's expression.
fn postgres_values(values: &[Value], bounds: &mut Bounds) -> (Vec<String>, Vec<String>) {
    // Per name: its parts (window, filters, count or sum), distinct.
    let mut names: Vec<(String, Vec<Part>)> = Vec::new();
    let mut refs: Vec<Vec<String>> = Vec::with_capacity(values.len());
    for v in values {
        let sum = match &v.agg {
            Agg::Sum(x) => Some(x.clone()),
            Agg::Exists | Agg::Count => None,
        };
        let part = (v.lo, v.hi, v.filters.clone(), sum);
        let mut mine = Vec::with_capacity(v.names.len());
        for name in &v.names {
            let j = match names.iter().position(|(n, _)| n == name) {
                Some(j) => j,
                None => {
                    names.push((name.clone(), Vec::new()));
                    names.len() - 1
                }
            };
            let q = intern(&mut names[j].1, part.clone());
            mine.push(format!("n{j}.q{q}"));
        }
        refs.push(mine);
    }
    let laterals = names
        .iter()
        .enumerate()
        .map(|(j, (name, parts))| {
            let lo = parts.iter().map(|p| p.0).min().expect("a part");
            let hi = parts.iter().map(|p| p.1).max().expect("a part");
            let aggs: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(q, (plo, phi, filters, sum))| {
                    let mut within = vec![
                        format!("v.ts >= {}", bounds.col(*plo)),
                        format!("v.ts < {}", bounds.col(*phi)),
                    ];
                    within.extend(filters.iter().cloned());
                    let within = within.join(" AND ");
                    match sum {
                        Some(x) => format!("sum({x}) FILTER (WHERE {within}) AS q{q}"),
                        None => format!("count(*) FILTER (WHERE {within}) AS q{q}"),
                    }
                })
                .collect();
            format!(
                "  CROSS JOIN LATERAL (\n    SELECT {}\n    FROM events v\n    WHERE v.unit = e.unit AND v.name = {name}\n      AND v.ts >= {} AND v.ts < {}\n  ) n{j}",
                aggs.join(",\n      "),
                bounds.col(lo),
                bounds.col(hi),
            )
        })
        .collect();
    let exprs = values
        .iter()
        .zip(refs)
        .map(|(v, r)| match &v.agg {
            Agg::Exists => format!("(({}) > 0)::int::float8", r.join(" + ")),
            Agg::Count => format!("({})::float8", r.join(" + ")),
            Agg::Sum(_) => {
                let terms: Vec<String> = r.iter().map(|t| format!("coalesce({t}, 0)")).collect();
                format!("({})::float8", terms.join(" + "))
            }
        })
        .collect();
    (laterals, exprs)
}

/// One metric's columns in `pu`.
struct Columns {
    /// y, x and d: a value column, or a constant zero.
    y: String,
    x: String,
    d: String,
    /// The bound column of its window's end.
    end: String,
    cap: Option<Cap>,
    covariate: bool,
}

/// Compiles `metrics` (at least one) into one statement. Placeholders: 1
/// the trial id, 2 the as-of time, then the returned binds. Rows: `m` (the
/// metric's position in `metrics`) and a [`super::MetricCell`], ordered by
/// m, arm, community.
pub(crate) fn compile_many(metrics: &[&Metric], dialect: Dialect) -> Compiled {
    assert!(!metrics.is_empty(), "at least one metric");
    let mut b = Builder {
        dialect,
        binds: Vec::new(),
        offset: 2,
    };
    let (p1, p2) = match dialect {
        Dialect::Sqlite => ("?1", "?2"),
        Dialect::Postgres => ("$1", "$2"),
    };
    let mut bounds = Bounds {
        offsets: Vec::new(),
    };
    // Each event name bound once, so that equal values compile equal.
    let mut bound_names: Vec<(String, String)> = Vec::new();
    let mut values = Values::default();
    let mut parts = Vec::with_capacity(metrics.len());
    let zero = match dialect {
        Dialect::Sqlite => "0.0",
        Dialect::Postgres => "0.0::float8",
    };
    for metric in metrics {
        let w = metric.window;
        let hi = bounds.col(w.end_secs);
        let names: Vec<String> = metric
            .events
            .iter()
            .map(|n| {
                if let Some((_, p)) = bound_names.iter().find(|(x, _)| x == n) {
                    return p.clone();
                }
                let p = b.bind(Bind::Text(n.clone()));
                bound_names.push((n.clone(), p.clone()));
                p
            })
            .collect();
        let (y_names, d_names) = match metric.kind {
            MetricKind::Ratio => (vec![names[0].clone()], Some(vec![names[1].clone()])),
            _ => (names, None),
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
        let mut agg = |names: &[String], lo: i64, hi: i64, count_only: bool| {
            values.col(Value {
                names: names.to_vec(),
                lo,
                hi,
                filters: filters.clone(),
                agg: Agg::of(metric.kind, value.as_deref(), count_only),
            })
        };
        let y = agg(&y_names, w.start_secs, w.end_secs, false);
        let x = match metric.covariate {
            Some(c) => agg(&y_names, c.start_secs, c.end_secs, false),
            None => zero.to_string(),
        };
        let d = match &d_names {
            Some(dn) => agg(dn, w.start_secs, w.end_secs, true),
            None => zero.to_string(),
        };
        parts.push(Columns {
            y,
            x,
            d,
            end: hi,
            cap: metric.cap,
            covariate: metric.covariate.is_some(),
        });
    }
    let first_end = bounds.col(
        metrics
            .iter()
            .map(|m| m.window.end_secs)
            .min()
            .expect("a metric"),
    );
    let closed = |col: &str| match dialect {
        Dialect::Sqlite => format!("{col} <= {p2}"),
        Dialect::Postgres => format!("{col} <= {p2}::timestamptz"),
    };
    let oks: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{} AS ok{i}", closed(&p.end)))
        .collect();
    let pu = match dialect {
        Dialect::Sqlite => {
            let cols: Vec<String> = values
                .values
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{} AS c{k}", sqlite_value(v, &mut bounds)))
                .collect();
            format!(
                "pu AS MATERIALIZED (\n  SELECT e.arm, e.community, {},\n    {}\n  FROM exp e\n  WHERE {}\n)",
                oks.join(", "),
                cols.join(",\n    "),
                closed(&first_end),
            )
        }
        Dialect::Postgres => {
            let (laterals, exprs) = postgres_values(&values.values, &mut bounds);
            let cols: Vec<String> = exprs
                .iter()
                .enumerate()
                .map(|(k, e)| format!("{e} AS c{k}"))
                .collect();
            format!(
                "pu AS MATERIALIZED (\n  SELECT e.arm, e.community, {},\n    {}\n  FROM exp e\n{}\n  WHERE {}\n)",
                oks.join(", "),
                cols.join(",\n    "),
                laterals.join("\n"),
                closed(&first_end),
            )
        }
    };

    let included = match dialect {
        Dialect::Sqlite => "excluded = 0",
        Dialect::Postgres => "NOT excluded",
    };
    let bound_cols: Vec<String> = bounds
        .offsets
        .iter()
        .enumerate()
        .map(|(i, &o)| format!("{} AS b{i}", b.shifted(o)))
        .collect();
    // SQLite: each bound computed once per unit (strftime is the costly
    // part), not once per reference.
    let exp_mat = match dialect {
        Dialect::Sqlite => "MATERIALIZED ",
        Dialect::Postgres => "",
    };
    let mut sql = format!(
        "WITH exp AS {exp_mat}(\n  SELECT unit, arm, community,\n    {}\n  FROM exposures\n  WHERE trial_id = {p1} AND {included}\n),\n{pu}",
        bound_cols.join(",\n    "),
    );
    let mut selects = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let (ycap, xcap, from) = match p.cap {
            None => ("NULL".to_string(), "NULL".to_string(), "pu".to_string()),
            Some(Cap::Value(v)) => (
                lit(v),
                if p.covariate { lit(v) } else { "NULL".into() },
                "pu".to_string(),
            ),
            Some(Cap::Percentile(q)) => {
                // As in the one-metric statement, over this metric's closed
                // units.
                let rank = percentile_rank(q);
                // x is ranked only when it is a covariate (else constant 0).
                let ranked: &[(&str, &String)] = if p.covariate {
                    &[("y", &p.y), ("x", &p.x)]
                } else {
                    &[("y", &p.y)]
                };
                for &(name, col) in ranked {
                    sql.push_str(&format!(
                        ",\n{name}{i}_ranked AS (\n  SELECT {col} AS v, row_number() OVER (ORDER BY {col}) AS r, count(*) OVER () AS n FROM pu WHERE ok{i}\n),\n\
                         {name}{i}_cap AS (\n  SELECT coalesce(max(v), 0.0) AS c FROM {name}{i}_ranked WHERE r = {rank}\n)"
                    ));
                }
                (
                    format!("y{i}_cap.c"),
                    if p.covariate {
                        format!("x{i}_cap.c")
                    } else {
                        "NULL".into()
                    },
                    if p.covariate {
                        format!("pu, y{i}_cap, x{i}_cap")
                    } else {
                        format!("pu, y{i}_cap")
                    },
                )
            }
        };
        let (yv, xv) = (capped(&p.y, &ycap), capped(&p.x, &xcap));
        sql.push_str(&format!(
            ",\nout{i} AS (\n  SELECT arm, community, {yv} AS y, {xv} AS x, {d} AS d, {yc} AS yc, {xc} AS xc FROM {from} WHERE ok{i}\n)",
            d = p.d,
            yc = cast_null(dialect, &ycap),
            xc = cast_null(dialect, &xcap),
        ));
        selects.push(format!(
            "SELECT CAST({i} AS BIGINT) AS m, arm, community, {}\nFROM out{i}\nGROUP BY arm, community",
            cell_sums(&b)
        ));
    }
    sql.push('\n');
    sql.push_str(&selects.join("\nUNION ALL\n"));
    sql.push_str("\nORDER BY m, arm, community");
    Compiled {
        sql,
        binds: b.binds,
    }
}
