//! `[metrics]` of a trial (primary, secondary, guardrails) and the metric
//! library (`experiments/metrics.toml`): metric definitions (kind, events,
//! value, filters, window, covariate, cap) and `ref = "name"` references
//! into the library.

use super::Cx;
use crate::experiments::{
    format_duration, parse_duration, Cap, Direction, FilterOp, Metric, MetricKind, MetricLibrary,
    MetricUnit, MetricValue, Metrics, PropertyFilter, Scalar, SpecError, Window, DEFAULT_WINDOW,
    MAX_WINDOW_SECS,
};
use crate::experiments::{Design, Period};
use crate::toml_reader::{ident, join, parse_document, Kind, Node, Report, Tbl};
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use toml_edit::Item;

/// Parses a metric library (`experiments/metrics.toml`): an array of
/// `[[metric]]` tables, each a full metric definition with a `name`.
pub fn parse_metric_library(src: &str, file: &str) -> Result<MetricLibrary, Vec<SpecError>> {
    let root = parse_document(src, file)?;
    let doc = toml_edit::DocumentMut::from_str(src).expect("the source parsed as TOML above");
    let mut cx = Cx::new(file, None);
    let mut metrics = BTreeMap::new();
    let mut ok = true;
    if let Some(t) = Tbl::open(&mut cx, &root, "", &["metric"]) {
        match t.get("metric") {
            None => {}
            Some(n) => match &n.kind {
                Kind::Array(items) => {
                    let mut names = BTreeSet::new();
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("metric[{i}]");
                        if matches!(&item.kind, Kind::Table(e) if e.iter().any(|(k, _)| k == "ref"))
                        {
                            cx.err(
                                item.pos,
                                &path,
                                "a library metric cannot refer to another; define it in full",
                            );
                            ok = false;
                            continue;
                        }
                        match read_metric(&mut cx, item, &path, &mut names) {
                            Some(m) => {
                                metrics.insert(m.name.clone(), m);
                            }
                            None => ok = false,
                        }
                    }
                }
                _ => {
                    cx.wrong_type(n, "metric", "an array of tables ([[metric]])");
                    ok = false;
                }
            },
        }
    }
    let mut sources = BTreeMap::new();
    if let Some(arr) = doc.get("metric").and_then(Item::as_array_of_tables) {
        for t in arr.iter() {
            if let Some(name) = t.get("name").and_then(Item::as_str) {
                sources.insert(name.to_string(), t.clone().into_inline_table());
            }
        }
    }
    let lib = ok.then(|| MetricLibrary {
        file: file.to_string(),
        metrics,
        sources,
    });
    cx.errors.finish(lib, "metric library")
}

const METRIC_FIELDS: &[&str] = &[
    "name",
    "kind",
    "events",
    "direction",
    "value",
    "filter",
    "window",
    "covariate",
    "cap",
    "unit",
    "period_window",
];

fn check_unique_name(cx: &mut Cx<'_>, t: &Tbl<'_>, name: &str, names: &mut BTreeSet<String>) {
    if !names.insert(name.to_string()) {
        let pos = t.get("name").or(t.get("ref")).map_or(t.pos, |n| n.pos);
        cx.err(
            pos,
            &t.field("name"),
            format!("duplicate metric name {name:?}"),
        );
    }
}

fn read_metric(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    names: &mut BTreeSet<String>,
) -> Option<Metric> {
    let is_ref = matches!(&n.kind, Kind::Table(e) if e.iter().any(|(k, _)| k == "ref"));
    if is_ref {
        return read_metric_ref(cx, n, path, names);
    }
    let t = Tbl::open(cx, n, path, METRIC_FIELDS)?;
    cx.positions.insert(path.to_string(), t.pos);
    for f in ["unit", "period_window"] {
        if let Some(node) = t.get(f) {
            cx.positions.insert(t.field(f), node.pos);
        }
    }
    let name = ident(cx, &t, "name");
    if let Some(name) = &name {
        check_unique_name(cx, &t, name, names);
    }
    let body = read_metric_body(cx, &t);
    Some(Metric {
        name: name?,
        library_ref: None,
        ..body?
    })
}

/// `{ ref = "name" }` (optionally with `direction`): a definition from the
/// metric library.
fn read_metric_ref(
    cx: &mut Cx<'_>,
    n: &Node,
    path: &str,
    names: &mut BTreeSet<String>,
) -> Option<Metric> {
    let t = Tbl::open(cx, n, path, &["ref", "direction"])?;
    cx.positions
        .insert(path.to_string(), t.get("ref").map_or(t.pos, |n| n.pos));
    let name = ident(cx, &t, "ref")?;
    check_unique_name(cx, &t, &name, names);
    let pos = t.get("ref").map_or(t.pos, |n| n.pos);
    let found = match cx.library {
        None => {
            cx.err(
                pos,
                &t.field("ref"),
                format!("metric {name:?} refers to the metric library, but none was loaded (put the definitions in experiments/metrics.toml beside the trial file, or inline them)"),
            );
            return None;
        }
        Some(lib) => match lib.metrics.get(&name) {
            Some(m) => m.clone(),
            None => {
                let known: Vec<&str> = lib.metrics.keys().map(String::as_str).collect();
                let file = lib.file.clone();
                cx.err(
                    pos,
                    &t.field("ref"),
                    format!(
                        "unknown metric {name:?}; {file} defines: {}",
                        if known.is_empty() {
                            "nothing".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                return None;
            }
        },
    };
    let direction = match t.get("direction") {
        None => Some(found.direction),
        Some(_) => read_direction(cx, &t),
    };
    Some(Metric {
        direction: direction?,
        library_ref: Some(name),
        ..found
    })
}

fn read_direction(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<Direction> {
    t.choice(cx, "direction", &["increase", "decrease"])
        .map(|(d, _)| {
            if d == "increase" {
                Direction::Increase
            } else {
                Direction::Decrease
            }
        })
}

/// Everything but the name (set to "" here).
fn read_metric_body(cx: &mut Cx<'_>, t: &Tbl<'_>) -> Option<Metric> {
    let kind = t
        .choice(cx, "kind", &["proportion", "mean", "ratio", "count"])
        .map(|(k, _)| match k.as_str() {
            "proportion" => MetricKind::Proportion,
            "mean" => MetricKind::Mean,
            "ratio" => MetricKind::Ratio,
            _ => MetricKind::Count,
        });
    let events = t.strings(cx, "events", false);
    let direction = read_direction(cx, t);
    if let (Some(MetricKind::Ratio), Some(ev)) = (kind, &events) {
        if ev.len() != 2 {
            let pos = t.get("events").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                &t.field("events"),
                format!(
                    "a ratio metric needs exactly 2 events, [numerator, denominator]; found {}",
                    ev.len()
                ),
            );
            return None;
        }
    }
    let value = read_metric_value(cx, t, kind);
    let filters = match t.get("filter") {
        None => Some(Vec::new()),
        Some(n) => read_filters(cx, n, &t.field("filter")),
    };
    let window = match t.get("window") {
        None => Some(DEFAULT_WINDOW),
        Some(n) => read_window(cx, n, &t.field("window"), WindowSide::After),
    };
    let covariate = match (t.get("covariate"), window) {
        (None, Some(w)) => Some(Window::new(-w.len_secs(), 0)),
        (None, None) => None,
        (
            Some(Node {
                kind: Kind::Bool(b),
                ..
            }),
            Some(w),
        ) => Some(b.then(|| Window::new(-w.len_secs(), 0)).flatten()),
        (
            Some(Node {
                kind: Kind::Bool(_),
                ..
            }),
            None,
        ) => None,
        (Some(n), _) => read_window(cx, n, &t.field("covariate"), WindowSide::Before).map(Some),
    };
    let cap = match t.get("cap") {
        None => Some(None),
        Some(n) => read_cap(cx, n, &t.field("cap"), kind).map(Some),
    };
    let unit = match t.get("unit") {
        None => Some(MetricUnit::Member),
        Some(_) => t
            .choice(cx, "unit", &["member", "community"])
            .map(|(u, _)| {
                if u == "community" {
                    MetricUnit::Community
                } else {
                    MetricUnit::Member
                }
            }),
    };
    let period_window = match t.get("period_window") {
        None => Some(None),
        Some(n) => read_period_window(cx, n, &t.field("period_window")).map(Some),
    };
    Some(Metric {
        name: String::new(),
        kind: kind?,
        events: events?,
        direction: direction?,
        value: value?,
        filters: filters?,
        window: window?,
        covariate: covariate?,
        cap: cap?,
        unit: unit?,
        period_window: period_window?,
        library_ref: None,
    })
}

/// `period_window = "28d"`: a positive duration (the window's length
/// inside each period of a community design; checked against the periods
/// in [`check_metric_units`]).
fn read_period_window(cx: &mut Cx<'_>, n: &Node, field: &str) -> Option<i64> {
    let secs = match &n.kind {
        Kind::Str(s) => parse_duration(s),
        _ => None,
    };
    match secs {
        Some(v) if v > 0 && v <= MAX_WINDOW_SECS => Some(v),
        _ => {
            cx.err(
                n.pos,
                field,
                format!(
                    "expected a positive duration such as \"28d\" or \"7d\" (the window at the end of each period); found {}",
                    n.describe()
                ),
            );
            None
        }
    }
}

/// The checks of a trial's metrics that need its design: `unit =
/// "community"` and `period_window` only in community designs (cluster,
/// stepped wedge), and a period window no longer than the shortest period.
pub(super) fn check_metric_units(
    cx: &mut Cx<'_>,
    spec_design: &Design,
    periods: &[Period],
    metrics: &Metrics,
) {
    let community = spec_design.communities().is_some();
    // A switchback's washout is never measured: the window must fit after it.
    let shortest = periods
        .iter()
        .map(|p| p.len_secs())
        .min()
        .map(|s| s - spec_design.washout());
    let named = std::iter::once(("metrics.primary".to_string(), &metrics.primary))
        .chain(
            metrics
                .secondary
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("metrics.secondary[{i}]"), m)),
        )
        .chain(
            metrics
                .guardrails
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("metrics.guardrails[{i}]"), m)),
        );
    for (path, m) in named {
        let pos_of = |cx: &Cx<'_>, f: &str| {
            cx.positions
                .get(&format!("{path}.{f}"))
                .or_else(|| cx.positions.get(&path))
                .copied()
        };
        if m.unit == MetricUnit::Community && !community {
            if let Some(pos) = pos_of(cx, "unit") {
                cx.err(
                    pos,
                    &format!("{path}.unit"),
                    format!(
                        "unit = \"community\" counts a metric per community; a {} design randomises members, so its metrics are per member (remove unit or use \"member\")",
                        spec_design.kind()
                    ),
                );
            }
        }
        if let Some(w) = m.period_window {
            let Some(pos) = pos_of(cx, "period_window") else {
                continue;
            };
            match shortest {
                None => cx.err(
                    pos,
                    &format!("{path}.period_window"),
                    format!(
                        "period_window applies to community designs (cluster, stepped_wedge, switchback); a {} design counts each member in `window` after first exposure",
                        spec_design.kind()
                    ),
                ),
                Some(s) if w > s => cx.err(
                    pos,
                    &format!("{path}.period_window"),
                    format!(
                        "\"{}\" is longer than the shortest period ({}{}); every period must hold the window",
                        format_duration(w),
                        format_duration(s),
                        if spec_design.washout() > 0 { " after its washout" } else { "" }
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

fn read_metric_value(
    cx: &mut Cx<'_>,
    t: &Tbl<'_>,
    kind: Option<MetricKind>,
) -> Option<MetricValue> {
    let Some(n) = t.get("value") else {
        return Some(MetricValue::Count);
    };
    let field = t.field("value");
    let expected = "\"count\" or a table { sum = \"property\" }";
    let value = match &n.kind {
        Kind::Str(s) if s == "count" => MetricValue::Count,
        Kind::Table(entries) => {
            let vt = Tbl::open(cx, n, &field, &["sum"])?;
            if entries.is_empty() {
                cx.err(n.pos, &field, format!("expected {expected}"));
                return None;
            }
            MetricValue::Sum(property_name(cx, &vt, "sum")?)
        }
        Kind::Str(s) => {
            cx.err(
                n.pos,
                &field,
                format!("{s:?} is not valid; expected {expected}"),
            );
            return None;
        }
        _ => {
            cx.wrong_type(n, &field, expected);
            return None;
        }
    };
    if let (MetricValue::Sum(_), Some(k @ (MetricKind::Proportion | MetricKind::Count))) =
        (&value, kind)
    {
        cx.err(
            n.pos,
            &field,
            format!(
                "a {} metric counts events; a summed value needs kind = \"mean\" or \"ratio\"",
                k.as_str()
            ),
        );
        return None;
    }
    Some(value)
}

/// Event property names: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
pub(crate) fn is_property_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn property_name(cx: &mut Cx<'_>, t: &Tbl<'_>, name: &str) -> Option<String> {
    let s = t.string(cx, name)?;
    if !is_property_name(&s) {
        let pos = t.get(name).map_or(t.pos, |n| n.pos);
        cx.err(
            pos,
            &t.field(name),
            format!("{s:?} is not a valid property name; expected letters, digits and '_' (not starting with a digit, at most 64 characters)"),
        );
        return None;
    }
    Some(s)
}

fn scalar(n: &Node) -> Option<Scalar> {
    match &n.kind {
        Kind::Str(s) => Some(Scalar::Str(s.clone())),
        Kind::Int(i) => Some(Scalar::Num(*i as f64)),
        Kind::Float(f) if f.is_finite() => Some(Scalar::Num(*f)),
        Kind::Bool(b) => Some(Scalar::Bool(*b)),
        _ => None,
    }
}

fn number(n: &Node) -> Option<f64> {
    match &n.kind {
        Kind::Int(i) => Some(*i as f64),
        Kind::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// `filter = { property = scalar | { op = value, … }, … }`.
fn read_filters(cx: &mut Cx<'_>, n: &Node, field: &str) -> Option<Vec<PropertyFilter>> {
    let Kind::Table(entries) = &n.kind else {
        cx.wrong_type(
            n,
            field,
            "a table of property = value or property = { op = value } (ops: eq, ne, in, gt, gte, lt, lte, exists)",
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (prop, v) in entries {
        let f = join(field, prop);
        if !is_property_name(prop) {
            cx.err(
                v.pos,
                &f,
                format!("{prop:?} is not a valid property name; expected letters, digits and '_' (not starting with a digit, at most 64 characters)"),
            );
            ok = false;
            continue;
        }
        if let Some(s) = scalar(v) {
            out.push(PropertyFilter {
                property: prop.clone(),
                op: FilterOp::Eq(s),
            });
            continue;
        }
        let Kind::Table(ops) = &v.kind else {
            cx.wrong_type(
                v,
                &f,
                "a string, number or boolean, or a table of comparisons",
            );
            ok = false;
            continue;
        };
        if ops.is_empty() {
            cx.err(
                v.pos,
                &f,
                "empty table; expected comparisons such as { gte = 1 }",
            );
            ok = false;
        }
        for (op, x) in ops {
            let of = join(&f, op);
            let parsed = match op.as_str() {
                "eq" => scalar(x).map(FilterOp::Eq),
                "ne" => scalar(x).map(FilterOp::Ne),
                "gt" => number(x).map(FilterOp::Gt),
                "gte" => number(x).map(FilterOp::Gte),
                "lt" => number(x).map(FilterOp::Lt),
                "lte" => number(x).map(FilterOp::Lte),
                "exists" => match x.kind {
                    Kind::Bool(b) => Some(FilterOp::Exists(b)),
                    _ => None,
                },
                "in" => match &x.kind {
                    Kind::Array(items) if !items.is_empty() => items
                        .iter()
                        .map(scalar)
                        .collect::<Option<Vec<_>>>()
                        .map(FilterOp::In),
                    _ => None,
                },
                _ => {
                    cx.err(
                        x.pos,
                        &of,
                        "unknown comparison; expected one of: eq, ne, in, gt, gte, lt, lte, exists",
                    );
                    ok = false;
                    continue;
                }
            };
            match parsed {
                Some(op) => out.push(PropertyFilter {
                    property: prop.clone(),
                    op,
                }),
                None => {
                    let expected = match op.as_str() {
                        "eq" | "ne" => "a string, number or boolean",
                        "in" => "a non-empty array of strings, numbers or booleans",
                        "exists" => "true or false",
                        _ => "a number",
                    };
                    cx.wrong_type(x, &of, expected);
                    ok = false;
                }
            }
        }
    }
    ok.then_some(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WindowSide {
    /// The analysis window: starts at or after first exposure.
    After,
    /// The covariate window: ends at or before first exposure.
    Before,
}

/// `["0d", "14d"]`: `[start, end)` relative to first exposure.
fn read_window(cx: &mut Cx<'_>, n: &Node, field: &str, side: WindowSide) -> Option<Window> {
    let expected = match side {
        WindowSide::After => "an array [start, end] of durations such as [\"0d\", \"14d\"] (d, h, m or s)",
        WindowSide::Before => "false, true (the window of the same length before exposure), or an array [start, end] of durations ending at or before exposure such as [\"-14d\", \"0d\"]",
    };
    let items = match &n.kind {
        Kind::Array(items) if items.len() == 2 => items,
        _ => {
            cx.wrong_type(n, field, expected);
            return None;
        }
    };
    let mut bounds = [0i64; 2];
    for (i, item) in items.iter().enumerate() {
        let secs = match &item.kind {
            Kind::Str(s) => parse_duration(s),
            _ => None,
        };
        match secs {
            Some(v) if v.abs() > MAX_WINDOW_SECS => {
                cx.err(
                    item.pos,
                    &format!("{field}[{i}]"),
                    format!(
                        "\"{}\" is too far from first exposure; window bounds must lie within {} (about ten years) either way",
                        format_duration(v),
                        format_duration(MAX_WINDOW_SECS)
                    ),
                );
                return None;
            }
            Some(v) => bounds[i] = v,
            None => {
                cx.err(
                    item.pos,
                    &format!("{field}[{i}]"),
                    format!("expected a duration such as \"14d\", \"-14d\", \"12h\", \"30m\" or \"0d\"; found {}", item.describe()),
                );
                return None;
            }
        }
    }
    let Some(w) = Window::new(bounds[0], bounds[1]) else {
        cx.err(n.pos, field, "the window's start must be before its end");
        return None;
    };
    match side {
        WindowSide::After if w.start_secs < 0 => {
            cx.err(
                n.pos,
                field,
                "the analysis window must start at or after first exposure (\"0d\" or later); pre-exposure data belong in `covariate`",
            );
            None
        }
        WindowSide::Before if w.end_secs > 0 => {
            cx.err(
                n.pos,
                field,
                "the covariate window must end at or before first exposure (\"0d\" or earlier), or the treatment could change it",
            );
            None
        }
        _ => Some(w),
    }
}

fn read_cap(cx: &mut Cx<'_>, n: &Node, field: &str, kind: Option<MetricKind>) -> Option<Cap> {
    if kind == Some(MetricKind::Proportion) {
        cx.err(
            n.pos,
            field,
            "a proportion is 0 or 1 per unit; capping does not apply",
        );
        return None;
    }
    let t = Tbl::open(cx, n, field, &["percentile", "value"])?;
    match (t.get("percentile"), t.get("value")) {
        (Some(node), None) => {
            let p = t.opt_number(cx, "percentile", 0.0, 1.0).flatten()?;
            if Cap::percentile_millionths(p).is_none() {
                cx.err(
                    node.pos,
                    &t.field("percentile"),
                    format!("{p} has more than six decimals; write the percentile with at most six, such as 0.99 or 0.999999"),
                );
                return None;
            }
            Some(Cap::Percentile(p))
        }
        (None, Some(_)) => t
            .opt_number(cx, "value", 0.0, f64::INFINITY)
            .flatten()
            .map(Cap::Value),
        _ => {
            cx.err(
                n.pos,
                field,
                "expected exactly one of { percentile = 0.99 } or { value = 50 }",
            );
            None
        }
    }
}

fn read_metric_list(
    cx: &mut Cx<'_>,
    t: &Tbl<'_>,
    name: &str,
    names: &mut BTreeSet<String>,
) -> Option<Vec<Metric>> {
    let Some(n) = t.get(name) else {
        return Some(Vec::new());
    };
    let field = t.field(name);
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(n, &field, &format!("an array of tables ([[{field}]])"));
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match read_metric(cx, item, &format!("{field}[{i}]"), names) {
            Some(m) => out.push(m),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn read_metrics(cx: &mut Cx<'_>, n: &Node) -> Option<Metrics> {
    let t = Tbl::open(cx, n, "metrics", &["primary", "secondary", "guardrails"])?;
    let mut names = BTreeSet::new();
    let primary = match t.req(
        cx,
        "primary",
        "a table ([metrics.primary]) with name, kind, events and direction",
    ) {
        Some(
            p @ Node {
                kind: Kind::Array(items),
                ..
            },
        ) => {
            cx.err(
                p.pos,
                "metrics.primary",
                format!("exactly one primary metric is allowed, found an array of {}; move the others to metrics.secondary", items.len()),
            );
            None
        }
        Some(p) => read_metric(cx, p, "metrics.primary", &mut names),
        None => None,
    };
    let secondary = read_metric_list(cx, &t, "secondary", &mut names);
    let guardrails = read_metric_list(cx, &t, "guardrails", &mut names);
    Some(Metrics {
        primary: primary?,
        secondary: secondary?,
        guardrails: guardrails?,
    })
}
