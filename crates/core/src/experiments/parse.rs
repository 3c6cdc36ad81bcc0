//! Trial file (TOML) -> [`TrialSpec`], collecting every problem.
//!
//! The TOML is parsed with `toml_edit` (which keeps spans) into a small
//! positioned tree, then read field by field; each problem becomes a
//! [`SpecError`] at the value's position (or the enclosing table's, for a
//! missing field) and reading goes on.

use super::metric::{
    format_duration, parse_duration, Cap, FilterOp, MetricLibrary, MetricValue, PropertyFilter,
    Scalar, Window, DEFAULT_WINDOW, MAX_WINDOW_SECS,
};
use super::time::datetime_to_unix;
use super::{
    minimal_block, Analysis, Arm, Correction, Decision, Design, Direction, Exposure, Horizon,
    Layer, Links, Metric, MetricKind, Metrics, RampStep, Schedule, Sidedness, SpecError, Survey,
    TrialSpec, Unit, LAYER_SPACE,
};
use crate::flags::Rule;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use toml_edit::{Datetime, ImDocument, Item};

type Pos = (usize, usize);

#[derive(Debug)]
enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(Datetime),
    Array(Vec<Node>),
    Table(Vec<(String, Node)>),
}

#[derive(Debug)]
struct Node {
    pos: Pos,
    kind: Kind,
}

impl Node {
    fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Date(_) => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }

    fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Date(d) => Value::String(d.to_string()),
            Kind::Array(a) => Value::Array(a.iter().map(Node::to_json).collect()),
            Kind::Table(t) => {
                Value::Object(t.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// Byte offset -> (line, column), 1-based, columns in characters.
struct Lines<'s> {
    src: &'s str,
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    fn new(src: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Lines { src, starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .src
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line + 1, column)
    }

    fn pos_of(&self, span: Option<std::ops::Range<usize>>, fallback: Pos) -> Pos {
        span.map_or(fallback, |s| self.pos(s.start))
    }
}

fn convert_item(lines: &Lines<'_>, item: &Item, fallback: Pos) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(convert_value(lines, v, fallback)),
        Item::Table(t) => {
            let pos = lines.pos_of(t.span(), fallback);
            let mut entries = Vec::new();
            for (k, child) in t.iter() {
                let kpos = lines.pos_of(t.key(k).and_then(|k| k.span()), pos);
                if let Some(n) = convert_item(lines, child, kpos) {
                    entries.push((k.to_string(), n));
                }
            }
            Some(Node {
                pos,
                kind: Kind::Table(entries),
            })
        }
        Item::ArrayOfTables(a) => {
            let pos = lines.pos_of(a.span(), fallback);
            let items = a
                .iter()
                .filter_map(|t| convert_item(lines, &Item::Table(t.clone()), pos))
                .collect();
            Some(Node {
                pos,
                kind: Kind::Array(items),
            })
        }
    }
}

fn convert_value(lines: &Lines<'_>, v: &toml_edit::Value, fallback: Pos) -> Node {
    use toml_edit::Value as V;
    let pos = lines.pos_of(v.span(), fallback);
    let kind = match v {
        V::String(s) => Kind::Str(s.value().clone()),
        V::Integer(i) => Kind::Int(*i.value()),
        V::Float(f) => Kind::Float(*f.value()),
        V::Boolean(b) => Kind::Bool(*b.value()),
        V::Datetime(d) => Kind::Date(*d.value()),
        V::Array(a) => Kind::Array(a.iter().map(|x| convert_value(lines, x, pos)).collect()),
        V::InlineTable(t) => Kind::Table(
            t.iter()
                .map(|(k, x)| {
                    let kpos = lines.pos_of(t.key(k).and_then(|k| k.span()), pos);
                    (k.to_string(), convert_value(lines, x, kpos))
                })
                .collect(),
        ),
    };
    Node { pos, kind }
}

struct Cx<'f> {
    file: &'f str,
    library: Option<&'f MetricLibrary>,
    errors: Vec<SpecError>,
    positions: BTreeMap<String, Pos>,
}

impl Cx<'_> {
    fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.to_string(),
            line: pos.0,
            column: pos.1,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        self.err(
            node.pos,
            field,
            format!("expected {expected}, found {}", node.describe()),
        );
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// A table being read: its entries, its position and dotted path.
struct Tbl<'n> {
    pos: Pos,
    path: String,
    entries: &'n [(String, Node)],
}

impl<'n> Tbl<'n> {
    /// Reads `node` as a table whose keys must be among `allowed`.
    fn open(cx: &mut Cx<'_>, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Tbl<'n>> {
        let Kind::Table(entries) = &node.kind else {
            cx.wrong_type(node, path, "a table");
            return None;
        };
        for (k, v) in entries {
            if !allowed.contains(&k.as_str()) {
                cx.err(
                    v.pos,
                    &join(path, k),
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Some(Tbl {
            pos: node.pos,
            path: path.to_string(),
            entries,
        })
    }

    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn field(&self, name: &str) -> String {
        join(&self.path, name)
    }

    fn missing(&self, cx: &mut Cx<'_>, name: &str, expected: &str) {
        cx.err(
            self.pos,
            &self.field(name),
            format!("missing required field; expected {expected}"),
        );
    }

    fn req(&self, cx: &mut Cx<'_>, name: &str, expected: &str) -> Option<&'n Node> {
        let n = self.get(name);
        if n.is_none() {
            self.missing(cx, name, expected);
        }
        n
    }

    /// A required non-empty string.
    fn string(&self, cx: &mut Cx<'_>, name: &str) -> Option<String> {
        let n = self.req(cx, name, "a non-empty string")?;
        as_string(cx, n, &self.field(name))
    }

    fn opt_string(&self, cx: &mut Cx<'_>, name: &str) -> Option<Option<String>> {
        match self.get(name) {
            None => Some(None),
            Some(n) => as_string(cx, n, &self.field(name)).map(Some),
        }
    }

    /// A required string that is one of `options`.
    fn choice(&self, cx: &mut Cx<'_>, name: &str, options: &[&str]) -> Option<(String, Pos)> {
        let expected = format!("one of: {}", options.join(", "));
        let n = self.req(cx, name, &expected)?;
        let field = self.field(name);
        let Kind::Str(s) = &n.kind else {
            cx.wrong_type(n, &field, &expected);
            return None;
        };
        if !options.contains(&s.as_str()) {
            cx.err(
                n.pos,
                &field,
                format!("{s:?} is not valid; expected {expected}"),
            );
            return None;
        }
        Some((s.clone(), n.pos))
    }

    fn opt_int(&self, cx: &mut Cx<'_>, name: &str, min: i64, max: i64) -> Option<Option<i64>> {
        let Some(n) = self.get(name) else {
            return Some(None);
        };
        let field = self.field(name);
        let expected = format!("an integer from {min} to {max}");
        match n.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Some(Some(i)),
            Kind::Int(i) => {
                cx.err(
                    n.pos,
                    &field,
                    format!("{i} is out of range; expected {expected}"),
                );
                None
            }
            _ => {
                cx.wrong_type(n, &field, &expected);
                None
            }
        }
    }

    fn int(&self, cx: &mut Cx<'_>, name: &str, min: i64, max: i64) -> Option<i64> {
        if self.get(name).is_none() {
            self.missing(cx, name, &format!("an integer from {min} to {max}"));
            return None;
        }
        self.opt_int(cx, name, min, max).flatten()
    }

    /// An optional number in the open interval (lo, hi).
    fn opt_number(&self, cx: &mut Cx<'_>, name: &str, lo: f64, hi: f64) -> Option<Option<f64>> {
        let Some(n) = self.get(name) else {
            return Some(None);
        };
        let field = self.field(name);
        let expected = if hi.is_finite() {
            format!("a number greater than {lo} and less than {hi}")
        } else {
            format!("a number greater than {lo}")
        };
        let x = match n.kind {
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => {
                cx.wrong_type(n, &field, &expected);
                return None;
            }
        };
        if !(x > lo && x < hi) {
            cx.err(
                n.pos,
                &field,
                format!("{x} is out of range; expected {expected}"),
            );
            return None;
        }
        Some(Some(x))
    }

    fn opt_bool(&self, cx: &mut Cx<'_>, name: &str) -> Option<Option<bool>> {
        match self.get(name) {
            None => Some(None),
            Some(Node {
                kind: Kind::Bool(b),
                ..
            }) => Some(Some(*b)),
            Some(n) => {
                cx.wrong_type(n, &self.field(name), "true or false");
                None
            }
        }
    }

    fn date(&self, cx: &mut Cx<'_>, name: &str) -> Option<(i64, Pos)> {
        let n = self.req(
            cx,
            name,
            "an RFC 3339 date-time (e.g. 2027-02-01T00:00:00Z)",
        )?;
        as_date(cx, n, &self.field(name)).map(|t| (t, n.pos))
    }

    /// A required non-empty array of distinct non-empty strings.
    fn strings(&self, cx: &mut Cx<'_>, name: &str, allow_empty: bool) -> Option<Vec<String>> {
        let expected = "an array of strings";
        let n = if allow_empty {
            match self.get(name) {
                None => return Some(Vec::new()),
                Some(n) => n,
            }
        } else {
            self.req(cx, name, &format!("a non-empty {}", &expected[3..]))?
        };
        let field = self.field(name);
        let Kind::Array(items) = &n.kind else {
            cx.wrong_type(n, &field, expected);
            return None;
        };
        if items.is_empty() && !allow_empty {
            cx.err(n.pos, &field, "must not be empty");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let f = format!("{field}[{i}]");
            match as_string(cx, item, &f) {
                Some(s) if out.contains(&s) => {
                    cx.err(item.pos, &f, format!("duplicate {s:?}"));
                    ok = false;
                }
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

fn as_string(cx: &mut Cx<'_>, n: &Node, field: &str) -> Option<String> {
    match &n.kind {
        Kind::Str(s) if !s.trim().is_empty() => Some(s.clone()),
        Kind::Str(_) => {
            cx.err(n.pos, field, "must not be empty");
            None
        }
        _ => {
            cx.wrong_type(n, field, "a string");
            None
        }
    }
}

fn as_date(cx: &mut Cx<'_>, n: &Node, field: &str) -> Option<i64> {
    let parsed = match &n.kind {
        Kind::Date(d) => datetime_to_unix(d),
        Kind::Str(s) => match s.parse::<Datetime>() {
            Ok(d) => datetime_to_unix(&d),
            Err(_) => Err(format!(
                "{s:?} is not an RFC 3339 date-time; expected e.g. 2027-02-01T00:00:00Z"
            )),
        },
        _ => {
            cx.wrong_type(
                n,
                field,
                "an RFC 3339 date-time (e.g. 2027-02-01T00:00:00Z)",
            );
            return None;
        }
    };
    match parsed {
        Ok(t) => Some(t),
        Err(m) => {
            cx.err(n.pos, field, m);
            None
        }
    }
}

/// Keys and other identifiers: `[a-z0-9][a-z0-9._-]*`, at most 64.
fn is_ident(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn ident(cx: &mut Cx<'_>, t: &Tbl<'_>, name: &str) -> Option<String> {
    let s = t.string(cx, name)?;
    if !is_ident(&s) {
        let pos = t.get(name).map_or(t.pos, |n| n.pos);
        cx.err(
            pos,
            &t.field(name),
            format!("{s:?} is not a valid key; expected lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit, at most 64 characters)"),
        );
        return None;
    }
    Some(s)
}

const TOP: &[&str] = &[
    "key",
    "title",
    "hypothesis",
    "owner",
    "notes",
    "links",
    "flag",
    "arms",
    "unit",
    "design",
    "eligibility",
    "exposure",
    "metrics",
    "surveys",
    "analysis",
    "schedule",
    "layer",
];

/// Parses and validates a trial file. `file` is only used in errors. All
/// problems are returned, in document order of discovery. Metric
/// references (`ref = "name"`) are errors: see [`parse_trial_with`].
pub fn parse_trial(src: &str, file: &str) -> Result<TrialSpec, Vec<SpecError>> {
    parse_trial_with(src, file, None)
}

fn syntax_error(lines: &Lines<'_>, file: &str, e: &toml_edit::TomlError) -> SpecError {
    let (line, column) = lines.pos_of(e.span(), (1, 1));
    SpecError {
        file: file.to_string(),
        line,
        column,
        field: String::new(),
        message: format!(
            "TOML syntax error: {}",
            e.message().trim_end().replace('\n', "; ")
        ),
    }
}

fn finish<T>(
    file: &str,
    value: Option<T>,
    mut errors: Vec<SpecError>,
    what: &str,
) -> Result<T, Vec<SpecError>> {
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ => {
            if errors.is_empty() {
                errors.push(SpecError {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                    field: String::new(),
                    message: format!("invalid {what}"),
                });
            }
            errors.sort_by_key(|e| (e.line, e.column));
            Err(errors)
        }
    }
}

/// [`parse_trial`], resolving metric references against `library`.
pub fn parse_trial_with(
    src: &str,
    file: &str,
    library: Option<&MetricLibrary>,
) -> Result<TrialSpec, Vec<SpecError>> {
    let lines = Lines::new(src);
    let doc = match ImDocument::parse(src) {
        Ok(d) => d,
        Err(e) => return Err(vec![syntax_error(&lines, file, &e)]),
    };
    let root = convert_item(&lines, doc.as_item(), (1, 1)).expect("a document is a table");
    let mut cx = Cx {
        file,
        library,
        errors: Vec::new(),
        positions: BTreeMap::new(),
    };
    let spec = read_trial(&mut cx, &root).map(|mut spec| {
        spec.file = file.to_string();
        spec
    });
    let positions = std::mem::take(&mut cx.positions);
    finish(file, spec, cx.errors, "trial").map(|mut spec| {
        spec.positions = positions;
        spec
    })
}

/// Parses a metric library (`experiments/metrics.toml`): an array of
/// `[[metric]]` tables, each a full metric definition with a `name`.
pub fn parse_metric_library(src: &str, file: &str) -> Result<MetricLibrary, Vec<SpecError>> {
    let lines = Lines::new(src);
    let spanned = match ImDocument::parse(src) {
        Ok(d) => d,
        Err(e) => return Err(vec![syntax_error(&lines, file, &e)]),
    };
    let root = convert_item(&lines, spanned.as_item(), (1, 1)).expect("a document is a table");
    let doc = toml_edit::DocumentMut::from_str(src).expect("the source parsed as TOML above");
    let mut cx = Cx {
        file,
        library: None,
        errors: Vec::new(),
        positions: BTreeMap::new(),
    };
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
    finish(file, lib, cx.errors, "metric library")
}

/// The trial file with every `ref = "name"` metric replaced by the
/// library's definition (a trial is stored self-contained, so that its
/// locked hash covers the definitions it was started with). The trial is
/// validated first; errors point into the trial file or the library.
pub fn inline_metric_refs(
    src: &str,
    file: &str,
    library: &MetricLibrary,
) -> Result<String, Vec<SpecError>> {
    parse_trial_with(src, file, Some(library))?;
    let mut doc = toml_edit::DocumentMut::from_str(src)
        .expect("a source that parsed as a trial is valid TOML");
    let Some(metrics) = doc.get_mut("metrics").and_then(Item::as_table_like_mut) else {
        return Ok(src.to_string());
    };
    let mut changed = false;
    for (_, item) in metrics.iter_mut() {
        let mut tables: Vec<&mut dyn toml_edit::TableLike> = Vec::new();
        match item {
            Item::Table(t) => tables.push(t),
            Item::ArrayOfTables(a) => {
                tables.extend(a.iter_mut().map(|t| t as &mut dyn toml_edit::TableLike))
            }
            Item::Value(toml_edit::Value::InlineTable(t)) => tables.push(t),
            Item::Value(toml_edit::Value::Array(a)) => {
                for v in a.iter_mut() {
                    if let Some(t) = v.as_inline_table_mut() {
                        tables.push(t);
                    }
                }
            }
            _ => {}
        }
        for t in tables {
            let Some(name) = t.get("ref").and_then(Item::as_str).map(str::to_string) else {
                continue;
            };
            let source = library
                .sources
                .get(&name)
                .expect("parse_trial_with resolved every reference");
            let direction = t.remove("direction");
            t.remove("ref");
            t.insert("name", toml_edit::value(name.as_str()));
            for (k, v) in source.iter() {
                if k != "name" && k != "direction" {
                    t.insert(k, Item::Value(v.clone()));
                }
            }
            let direction =
                direction.or_else(|| source.get("direction").map(|v| Item::Value(v.clone())));
            if let Some(d) = direction {
                t.insert("direction", d);
            }
            changed = true;
        }
    }
    Ok(if changed {
        doc.to_string()
    } else {
        src.to_string()
    })
}

fn read_trial(cx: &mut Cx<'_>, root: &Node) -> Option<TrialSpec> {
    let t = Tbl::open(cx, root, "", TOP)?;
    let key = ident(cx, &t, "key");
    let title = t.string(cx, "title");
    let hypothesis = t.string(cx, "hypothesis");
    let owner = t.string(cx, "owner");
    let notes = t.opt_string(cx, "notes");
    let links = t
        .req(cx, "links", "a table with wp2_parameter and wp3_feature")
        .and_then(|n| read_links(cx, n));
    let flag = t.string(cx, "flag");
    if let Some(n) = t.get("flag") {
        cx.positions.insert("flag".into(), n.pos);
    }
    let arms = t
        .req(
            cx,
            "arms",
            "an array of tables ([[arms]]) with variant, weight and control",
        )
        .and_then(|n| read_arms(cx, n));
    let unit = t
        .req(cx, "unit", "a table with kind = \"user\" or \"community\"")
        .and_then(|n| read_unit(cx, n));
    let schedule = t
        .req(cx, "schedule", "a table with start and end")
        .and_then(|n| read_schedule(cx, n));
    let design = t
        .req(
            cx,
            "design",
            "a table with kind = \"hash\", \"blocked\", \"cluster\" or \"stepped_wedge\"",
        )
        .and_then(|n| {
            read_design(
                cx,
                n,
                key.as_deref(),
                arms.as_deref(),
                unit.as_ref(),
                schedule.as_ref(),
            )
        });
    let eligibility = match t.get("eligibility") {
        None => Some(None),
        Some(n) => read_eligibility(cx, n).map(Some),
    };
    let exposure = match t.get("exposure") {
        None => Some(Exposure::default()),
        Some(n) => Tbl::open(cx, n, "exposure", &["bulk"]).and_then(|e| {
            e.opt_bool(cx, "bulk").map(|b| Exposure {
                bulk: b.unwrap_or(false),
            })
        }),
    };
    let metrics = t
        .req(
            cx,
            "metrics",
            "a table with primary, secondary and guardrails",
        )
        .and_then(|n| read_metrics(cx, n));
    let surveys = match t.get("surveys") {
        None => Some(Vec::new()),
        Some(n) => read_surveys(cx, n),
    };
    let analysis = t
        .req(cx, "analysis", "a table with the analysis plan")
        .and_then(|n| read_analysis(cx, n));
    let layer = match t.get("layer") {
        None => Some(None),
        Some(n) => read_layer(cx, n).map(Some),
    };
    if let (Some(Some(_)), Some(d)) = (&layer, &design) {
        if d.communities().is_some() {
            let pos = t.get("layer").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "layer",
                format!(
                    "a {} design lists its communities explicitly; remove the layer (trials on disjoint community lists do not conflict)",
                    d.kind()
                ),
            );
        }
    }
    Some(TrialSpec {
        key: key?,
        title: title?,
        hypothesis: hypothesis?,
        owner: owner?,
        notes: notes?.unwrap_or_default(),
        links: links?,
        flag: flag?,
        arms: arms?,
        unit: unit?,
        design: design?,
        eligibility: eligibility?,
        exposure: exposure?,
        metrics: metrics?,
        surveys: surveys?,
        analysis: analysis?,
        schedule: schedule?,
        layer: layer?,
        file: String::new(),
        positions: BTreeMap::new(),
    })
}

fn read_links(cx: &mut Cx<'_>, n: &Node) -> Option<Links> {
    let t = Tbl::open(cx, n, "links", &["wp2_parameter", "wp3_feature"])?;
    for f in ["wp2_parameter", "wp3_feature"] {
        let pos = t.get(f).map_or(t.pos, |n| n.pos);
        cx.positions.insert(format!("links.{f}"), pos);
    }
    let wp2 = t.string(cx, "wp2_parameter");
    let wp3 = t.string(cx, "wp3_feature");
    Some(Links {
        wp2_parameter: wp2?,
        wp3_feature: wp3?,
    })
}

fn read_arms(cx: &mut Cx<'_>, n: &Node) -> Option<Vec<Arm>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(n, "arms", "an array of tables ([[arms]])");
        return None;
    };
    if items.len() < 2 {
        cx.err(
            n.pos,
            "arms",
            format!(
                "a trial needs at least 2 arms (one of them control), found {}",
                items.len()
            ),
        );
        return None;
    }
    let mut arms = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("arms[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, &["variant", "weight", "control"]) else {
            ok = false;
            continue;
        };
        let vpos = t.get("variant").map_or(t.pos, |n| n.pos);
        cx.positions.insert(format!("{path}.variant"), vpos);
        let variant = t.string(cx, "variant");
        if let Some(v) = &variant {
            if arms.iter().any(|a: &Arm| &a.variant == v) {
                cx.err(
                    vpos,
                    &t.field("variant"),
                    format!("duplicate arm {v:?}; each variant may be one arm only"),
                );
                ok = false;
            }
        }
        let weight = t.int(cx, "weight", 1, 10_000);
        let control = t.opt_bool(cx, "control");
        match (variant, weight, control) {
            (Some(variant), Some(weight), Some(control)) => arms.push(Arm {
                variant,
                weight: weight as u32,
                control: control.unwrap_or(false),
            }),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let controls = arms.iter().filter(|a| a.control).count();
    if controls != 1 {
        cx.err(
            n.pos,
            "arms",
            format!("exactly one arm must have control = true, found {controls}"),
        );
        return None;
    }
    Some(arms)
}

fn read_unit(cx: &mut Cx<'_>, n: &Node) -> Option<Unit> {
    let t = Tbl::open(cx, n, "unit", &["kind", "attribute"])?;
    cx.positions.insert("unit".into(), t.pos);
    let (kind, _) = t.choice(cx, "kind", &["user", "community"])?;
    if kind == "user" {
        if let Some(a) = t.get("attribute") {
            cx.err(
                a.pos,
                "unit.attribute",
                "only a community unit names an attribute; a user is the OFREP targetingKey",
            );
            return None;
        }
        Some(Unit::User)
    } else {
        let attribute = t.string(cx, "attribute")?;
        Some(Unit::Community { attribute })
    }
}

const DESIGN_FIELDS: &[&str] = &[
    "kind",
    "salt",
    "strata",
    "block_size",
    "communities",
    "steps",
    "first_step",
    "step_days",
    "step_count",
];

fn read_design(
    cx: &mut Cx<'_>,
    n: &Node,
    key: Option<&str>,
    arms: Option<&[Arm]>,
    unit: Option<&Unit>,
    schedule: Option<&Schedule>,
) -> Option<Design> {
    let t = Tbl::open(cx, n, "design", DESIGN_FIELDS)?;
    let (kind, kind_pos) =
        t.choice(cx, "kind", &["hash", "blocked", "cluster", "stepped_wedge"])?;
    let allowed: &[&str] = match kind.as_str() {
        "hash" => &["kind", "salt"],
        "blocked" => &["kind", "strata", "block_size"],
        "cluster" => &["kind", "communities"],
        _ => &[
            "kind",
            "communities",
            "steps",
            "first_step",
            "step_days",
            "step_count",
        ],
    };
    let mut ok = true;
    for (k, v) in t.entries {
        if !allowed.contains(&k.as_str()) && DESIGN_FIELDS.contains(&k.as_str()) {
            cx.err(
                v.pos,
                &t.field(k),
                format!(
                    "not used by a {kind} design; its fields are: {}",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }
    if matches!(kind.as_str(), "cluster" | "stepped_wedge") {
        if let Some(Unit::User) = unit {
            cx.err(
                kind_pos,
                "design.kind",
                format!("a {kind} design randomises whole communities; set unit.kind = \"community\" (or use a hash or blocked design for users)"),
            );
            ok = false;
        }
    }
    let design = match kind.as_str() {
        "hash" => {
            let salt = match t.opt_string(cx, "salt") {
                Some(s) => s.or_else(|| key.map(str::to_string)),
                None => None,
            };
            Design::Hash { salt: salt? }
        }
        "blocked" => {
            let strata = t.strings(cx, "strata", true);
            let arms = arms?;
            let m = minimal_block(arms);
            let block_size = match t.opt_int(cx, "block_size", 1, 100_000) {
                Some(Some(b)) if (b as u64).checked_rem(m) != Some(0) => {
                    let pos = t.get("block_size").map_or(t.pos, |n| n.pos);
                    cx.err(
                        pos,
                        "design.block_size",
                        format!(
                            "{b} is not a multiple of {m} (the arm weights in lowest terms sum to {m}); expected e.g. {}, {} or {}",
                            m,
                            2 * m,
                            4 * m
                        ),
                    );
                    None
                }
                Some(Some(b)) => Some(b as u64),
                Some(None) => Some(default_block_size(m)),
                None => None,
            };
            Design::Blocked {
                strata: strata?,
                block_size: block_size?,
            }
        }
        "cluster" => {
            let communities = t.strings(cx, "communities", false)?;
            let arms = arms?;
            let counts = super::assign::cluster_counts(arms, communities.len());
            if let Some(i) = counts.iter().position(|&c| c == 0) {
                let pos = t.get("communities").map_or(t.pos, |n| n.pos);
                cx.err(
                    pos,
                    "design.communities",
                    format!(
                        "{} communities split by the arm weights leave arm {:?} with none; list more communities or change the weights",
                        communities.len(),
                        arms[i].variant
                    ),
                );
                return None;
            }
            Design::Cluster { communities }
        }
        _ => {
            let communities = t.strings(cx, "communities", false);
            let steps = read_steps(cx, &t, schedule);
            if let Some(arms) = arms {
                if arms.len() != 2 {
                    cx.err(
                        kind_pos,
                        "design.kind",
                        format!("a stepped_wedge design needs exactly 2 arms (control and treatment), found {}", arms.len()),
                    );
                    ok = false;
                }
            }
            let (communities, steps) = (communities?, steps?);
            if communities.len() < steps.len() {
                let pos = t.get("communities").map_or(t.pos, |n| n.pos);
                cx.err(
                    pos,
                    "design.communities",
                    format!(
                        "{} communities cannot fill {} steps; list at least as many communities as steps",
                        communities.len(),
                        steps.len()
                    ),
                );
                return None;
            }
            Design::SteppedWedge { communities, steps }
        }
    };
    ok.then_some(design)
}

/// Twice the minimal block, but at least 4, so that the last assignment of
/// a block is not predictable from the first.
fn default_block_size(m: u64) -> u64 {
    let mut b = 2 * m;
    while b < 4 {
        b += m;
    }
    b
}

fn read_steps(cx: &mut Cx<'_>, t: &Tbl<'_>, schedule: Option<&Schedule>) -> Option<Vec<i64>> {
    let explicit = t.get("steps");
    let generated = ["first_step", "step_days", "step_count"]
        .iter()
        .any(|k| t.get(k).is_some());
    let (steps, pos) = match (explicit, generated) {
        (Some(n), true) => {
            cx.err(
                n.pos,
                "design.steps",
                "give either steps (a list of dates) or first_step + step_days + step_count, not both",
            );
            return None;
        }
        (Some(n), false) => {
            let Kind::Array(items) = &n.kind else {
                cx.wrong_type(n, "design.steps", "an array of RFC 3339 date-times");
                return None;
            };
            if items.is_empty() {
                cx.err(n.pos, "design.steps", "must not be empty");
                return None;
            }
            let mut steps = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let f = format!("design.steps[{i}]");
                match as_date(cx, item, &f) {
                    Some(s) if steps.last().is_some_and(|&p| p >= s) => {
                        cx.err(item.pos, &f, "steps must be strictly increasing");
                        ok = false;
                    }
                    Some(s) => steps.push(s),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            (steps, n.pos)
        }
        (None, true) => {
            let first = t.date(cx, "first_step");
            let days = t.int(cx, "step_days", 1, 3660);
            let count = t.int(cx, "step_count", 1, 1000);
            let (first, pos) = first?;
            let (days, count) = (days?, count?);
            ((0..count).map(|i| first + i * days * 86_400).collect(), pos)
        }
        (None, false) => {
            t.missing(
                cx,
                "steps",
                "a list of crossover dates, or first_step + step_days + step_count",
            );
            return None;
        }
    };
    if let Some(s) = schedule {
        let first = steps[0];
        let last = *steps.last().expect("non-empty");
        if first <= s.start || last >= s.end {
            cx.err(
                pos,
                "design.steps",
                format!(
                    "every step must fall after schedule.start ({}) and before schedule.end ({}); the steps run from {} to {}",
                    super::format_rfc3339(s.start),
                    super::format_rfc3339(s.end),
                    super::format_rfc3339(first),
                    super::format_rfc3339(last)
                ),
            );
            return None;
        }
    }
    Some(steps)
}

fn read_eligibility(cx: &mut Cx<'_>, n: &Node) -> Option<Rule> {
    let rule = match &n.kind {
        Kind::Table(_) => n.to_json(),
        Kind::Str(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(e) => {
                cx.err(
                    n.pos,
                    "eligibility",
                    format!("the string is not valid JSON ({e}); expected a JSONLogic rule as a JSON string or a TOML table"),
                );
                return None;
            }
        },
        _ => {
            cx.wrong_type(
                n,
                "eligibility",
                "a JSONLogic rule (a TOML table or a JSON string)",
            );
            return None;
        }
    };
    match Rule::compile(&rule) {
        Ok(r) => Some(r),
        Err(m) => {
            cx.err(n.pos, "eligibility", format!("invalid targeting rule: {m}"));
            None
        }
    }
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
        library_ref: None,
    })
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

fn read_metrics(cx: &mut Cx<'_>, n: &Node) -> Option<Metrics> {
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

fn read_surveys(cx: &mut Cx<'_>, n: &Node) -> Option<Vec<Survey>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(
            n,
            "surveys",
            "an array of tables ([[surveys]]) with instrument and waves",
        );
        return None;
    };
    let mut out: Vec<Survey> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("surveys[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, &["instrument", "waves"]) else {
            ok = false;
            continue;
        };
        let instrument = ident(cx, &t, "instrument");
        let waves = t.strings(cx, "waves", false);
        if let Some(w) = &waves {
            if let Some(bad) = w.iter().find(|w| !is_ident(w)) {
                let pos = t.get("waves").map_or(t.pos, |n| n.pos);
                cx.err(pos, &t.field("waves"), format!("{bad:?} is not a valid wave key; expected e.g. \"baseline\" or \"follow-up\""));
                ok = false;
            }
        }
        if let Some(ins) = &instrument {
            if out.iter().any(|s| &s.instrument == ins) {
                let pos = t.get("instrument").map_or(t.pos, |n| n.pos);
                cx.err(
                    pos,
                    &t.field("instrument"),
                    format!("instrument {ins:?} is listed twice; list all its waves in one entry"),
                );
                ok = false;
            }
        }
        match (instrument, waves) {
            (Some(instrument), Some(waves)) => out.push(Survey { instrument, waves }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_analysis(cx: &mut Cx<'_>, n: &Node) -> Option<Analysis> {
    let t = Tbl::open(
        cx,
        n,
        "analysis",
        &[
            "alpha",
            "sidedness",
            "mde",
            "sample_size",
            "power",
            "horizon",
            "looks",
            "correction",
            "decision",
        ],
    )?;
    let alpha = match t.get("alpha") {
        None => {
            t.missing(cx, "alpha", "a number greater than 0 and at most 0.5");
            None
        }
        Some(n) => {
            match n.kind {
                Kind::Int(_) | Kind::Float(_) => {
                    let a = if let Kind::Int(i) = n.kind {
                        i as f64
                    } else if let Kind::Float(f) = n.kind {
                        f
                    } else {
                        0.0
                    };
                    if a > 0.0 && a <= 0.5 {
                        Some(a)
                    } else {
                        cx.err(n.pos, "analysis.alpha", format!("{a} is out of range; expected a number greater than 0 and at most 0.5"));
                        None
                    }
                }
                _ => {
                    cx.wrong_type(
                        n,
                        "analysis.alpha",
                        "a number greater than 0 and at most 0.5",
                    );
                    None
                }
            }
        }
    };
    let sidedness = t
        .choice(cx, "sidedness", &["two-sided", "one-sided"])
        .map(|(s, _)| {
            if s == "one-sided" {
                Sidedness::OneSided
            } else {
                Sidedness::TwoSided
            }
        });
    let mde = t.opt_number(cx, "mde", 0.0, f64::INFINITY);
    let sample_size = t.opt_int(cx, "sample_size", 2, i64::MAX);
    if let (Some(None), Some(None)) = (mde, sample_size) {
        t.missing(
            cx,
            "mde",
            "a minimum detectable effect (mde) or a target sample size (sample_size), or both",
        );
    }
    let power = t.opt_number(cx, "power", 0.0, 1.0);
    let horizon = t.choice(cx, "horizon", &["fixed", "sequential"]);
    let looks = t.opt_int(cx, "looks", 2, 100);
    let horizon = match (horizon, looks) {
        (Some((h, _)), Some(None)) if h == "fixed" => Some(Horizon::Fixed),
        (Some((h, _)), Some(Some(_))) if h == "fixed" => {
            let pos = t.get("looks").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "analysis.looks",
                "looks is only for horizon = \"sequential\"",
            );
            None
        }
        (Some(_), Some(Some(l))) => Some(Horizon::Sequential { looks: l as u32 }),
        (Some(_), Some(None)) => {
            t.missing(
                cx,
                "looks",
                "the number of planned looks (an integer from 2 to 100) for a sequential horizon",
            );
            None
        }
        _ => None,
    };
    let correction = t
        .choice(cx, "correction", &["none", "holm", "bh"])
        .map(|(c, _)| match c.as_str() {
            "holm" => Correction::Holm,
            "bh" => Correction::Bh,
            _ => Correction::None,
        });
    let decision = t
        .req(cx, "decision", "a table with ship, iterate and roll_back")
        .and_then(|d| {
            let d = Tbl::open(
                cx,
                d,
                "analysis.decision",
                &["ship", "iterate", "roll_back"],
            )?;
            let ship = d.string(cx, "ship");
            let iterate = d.string(cx, "iterate");
            let roll_back = d.string(cx, "roll_back");
            Some(Decision {
                ship: ship?,
                iterate: iterate?,
                roll_back: roll_back?,
            })
        });
    let (mde, sample_size) = (mde?, sample_size?);
    if mde.is_none() && sample_size.is_none() {
        return None;
    }
    Some(Analysis {
        alpha: alpha?,
        sidedness: sidedness?,
        mde,
        sample_size: sample_size.map(|s| s as u64),
        power: power?.unwrap_or(0.8),
        horizon: horizon?,
        correction: correction?,
        decision: decision?,
    })
}

fn read_schedule(cx: &mut Cx<'_>, n: &Node) -> Option<Schedule> {
    let t = Tbl::open(cx, n, "schedule", &["start", "end", "ramp"])?;
    let start = t.date(cx, "start");
    let end = t.date(cx, "end");
    if let (Some((s, _)), Some((e, epos))) = (start, end) {
        if e <= s {
            cx.err(epos, "schedule.end", "must be after schedule.start");
            return None;
        }
    }
    let ramp = match t.get("ramp") {
        None => Some(Vec::new()),
        Some(r) => read_ramp(cx, r, start.map(|s| s.0), end.map(|e| e.0)),
    };
    Some(Schedule {
        start: start?.0,
        end: end?.0,
        ramp: ramp?,
    })
}

fn read_ramp(
    cx: &mut Cx<'_>,
    n: &Node,
    start: Option<i64>,
    end: Option<i64>,
) -> Option<Vec<RampStep>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(
            n,
            "schedule.ramp",
            "an array of { at = <date-time>, percent = <1..100> }",
        );
        return None;
    };
    let mut out: Vec<RampStep> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("schedule.ramp[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, &["at", "percent"]) else {
            ok = false;
            continue;
        };
        let at = t.date(cx, "at");
        let percent = t.int(cx, "percent", 1, 100);
        let (Some((at, apos)), Some(percent)) = (at, percent) else {
            ok = false;
            continue;
        };
        if let (Some(s), Some(e)) = (start, end) {
            if at < s || at >= e {
                cx.err(
                    apos,
                    &t.field("at"),
                    "must be within the schedule (from start, before end)",
                );
                ok = false;
            }
        }
        if let Some(prev) = out.last() {
            if at <= prev.at || percent as u32 <= prev.percent {
                cx.err(
                    t.pos,
                    &path,
                    "ramp steps must increase in both time and percent",
                );
                ok = false;
            }
        }
        out.push(RampStep {
            at,
            percent: percent as u32,
        });
    }
    ok.then_some(out)
}

fn read_layer(cx: &mut Cx<'_>, n: &Node) -> Option<Layer> {
    let t = Tbl::open(cx, n, "layer", &["name", "from", "to"])?;
    cx.positions.insert("layer".into(), t.pos);
    let name = ident(cx, &t, "name");
    let max = i64::from(LAYER_SPACE);
    let from = t.int(cx, "from", 0, max - 1);
    let to = t.int(cx, "to", 1, max);
    if let (Some(f), Some(to)) = (from, to) {
        if to <= f {
            let pos = t.get("to").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "layer.to",
                format!("the range is [from, to); to must be greater than from ({f})"),
            );
            return None;
        }
    }
    Some(Layer {
        name: name?,
        from: from? as u32,
        to: to? as u32,
    })
}
