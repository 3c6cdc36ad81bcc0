//! A positioned TOML reader for Commonlab's hand-written files: trial files
//! and the metric library (`experiments::parse_trial`,
//! `experiments::parse_metric_library`), and any other format written as
//! TOML by a person (survey instruments, `surveys/*.toml`, are next).
//!
//! A file is read in two steps. [`parse_document`] parses it with
//! `toml_edit` (which keeps spans) into a small tree of [`Node`]s, each
//! with its 1-based (line, column) [`Pos`]; a TOML syntax error becomes the
//! file's one [`SpecError`]. The format's reader then walks the tree field
//! by field with the typed getters of [`Tbl`], reporting each problem at
//! the value's position (or the enclosing table's, for a missing field) and
//! reading on, so that one run shows the author every problem in the file.
//! [`Errors::finish`] sorts the problems by position and returns them, or
//! the value when there were none.
//!
//! # Conventions
//!
//! - Every getter reports its own problem (through [`Report`]) and returns
//!   `None`; the caller does not report again. Required fields give
//!   `Option<T>`; optional ones `Option<Option<T>>` (the outer `None`: a
//!   problem was reported; the inner: the field is absent).
//! - Read every field first and apply `?` only when building the value, so
//!   that a problem in one field does not hide those in the others.
//! - Field paths are dotted, with array indices: `metrics.secondary[0].kind`
//!   ([`Tbl::field`], [`join`]). The root table's path is `""`.
//! - [`Tbl::open`] refuses keys outside the list it is given ("unknown
//!   field; expected one of: ..."), so a typo never passes silently.
//!
//! # Reading a new format
//!
//! A format needs nothing but [`Errors`] as its context when its reader
//! only reports problems:
//!
//! ```text
//! pub fn parse_instrument(src: &str, file: &str) -> Result<Instrument, Vec<SpecError>> {
//!     let root = toml_reader::parse_document(src, file)?;
//!     let mut errors = Errors::new(file);
//!     let instrument = read_instrument(&mut errors, &root);
//!     errors.finish(instrument, "survey instrument")
//! }
//!
//! fn read_instrument(cx: &mut impl Report, root: &Node) -> Option<Instrument> {
//!     let t = Tbl::open(cx, root, "", &["key", "title", "questions"])?;
//!     let key = ident(cx, &t, "key");
//!     let title = t.string(cx, "title");
//!     let questions = t
//!         .req(cx, "questions", "an array of tables ([[questions]])")
//!         .and_then(|n| read_questions(cx, n));
//!     Some(Instrument { key: key?, title: title?, questions: questions? })
//! }
//! ```
//!
//! A format that needs more state while reading (the trial reader keeps the
//! metric library it resolves references against and the positions of the
//! fields that later checks report on) wraps an [`Errors`] in its own
//! context and implements [`Report`] by delegating to it. A format that
//! wants its own error type implements [`Report`] on its own collector and
//! converts the [`SpecError`] of a syntax error; reusing [`SpecError`] is
//! simpler, and the CLI and the server already print it
//! (`file:line:column: field: message`) and turn it into problem details.
//!
//! Values `toml_edit` gives no span for (rare: values built by dotted keys)
//! take the position of their key, then of their table.

use crate::time::datetime_to_unix;
use serde_json::Value;
use std::fmt;
use toml_edit::{Datetime, ImDocument, Item};

/// (line, column), both 1-based; columns count characters.
pub(crate) type Pos = (usize, usize);

/// One validation problem in a file, with the position of the offending
/// value (or of the enclosing table when a field is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path of the field, e.g. `metrics.secondary[0].kind`; empty for
    /// TOML syntax errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// A TOML value. Tables keep their keys in document order.
#[derive(Debug)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(Datetime),
    Array(Vec<Node>),
    Table(Vec<(String, Node)>),
}

/// A TOML value and where it was written.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
}

impl Node {
    /// "a string", "an integer", ...: for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
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

    /// The value as JSON (dates as their TOML text; a non-finite float as
    /// null).
    pub(crate) fn to_json(&self) -> Value {
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
pub(crate) struct Lines<'s> {
    src: &'s str,
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Lines { src, starts }
    }

    pub(crate) fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let column = self
            .src
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line + 1, column)
    }

    pub(crate) fn pos_of(&self, span: Option<std::ops::Range<usize>>, fallback: Pos) -> Pos {
        span.map_or(fallback, |s| self.pos(s.start))
    }
}

/// Parses a TOML file into its positioned tree (the root table). A syntax
/// error is returned as the file's only problem.
pub(crate) fn parse_document(src: &str, file: &str) -> Result<Node, Vec<SpecError>> {
    let lines = Lines::new(src);
    let doc = match ImDocument::parse(src) {
        Ok(d) => d,
        Err(e) => return Err(vec![syntax_error(&lines, file, &e)]),
    };
    Ok(convert_item(&lines, doc.as_item(), (1, 1)).expect("a document is a table"))
}

/// A `toml_edit` syntax error as a [`SpecError`] (empty field).
pub(crate) fn syntax_error(lines: &Lines<'_>, file: &str, e: &toml_edit::TomlError) -> SpecError {
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

/// `None` for an absent item.
pub(crate) fn convert_item(lines: &Lines<'_>, item: &Item, fallback: Pos) -> Option<Node> {
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

pub(crate) fn convert_value(lines: &Lines<'_>, v: &toml_edit::Value, fallback: Pos) -> Node {
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

/// Where a reader's problems go: [`Errors`], or a format's own context
/// that wraps one.
pub(crate) trait Report {
    /// Records a problem with the value at `pos`, in field `field`.
    fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>);

    /// "expected {expected}, found {what the node is}".
    fn wrong_type(&mut self, node: &Node, field: &str, expected: &str) {
        self.err(
            node.pos,
            field,
            format!("expected {expected}, found {}", node.describe()),
        );
    }
}

/// The problems found in one file, in the order they were found.
pub(crate) struct Errors<'f> {
    file: &'f str,
    list: Vec<SpecError>,
}

impl<'f> Errors<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Errors {
            file,
            list: Vec::new(),
        }
    }

    /// The value when there were no problems; otherwise every problem,
    /// sorted by position (a reader that gave no value without reporting
    /// why yields "invalid {what}" at 1:1).
    pub(crate) fn finish<T>(self, value: Option<T>, what: &str) -> Result<T, Vec<SpecError>> {
        let mut errors = self.list;
        match value {
            Some(v) if errors.is_empty() => Ok(v),
            _ => {
                if errors.is_empty() {
                    errors.push(SpecError {
                        file: self.file.to_string(),
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
}

impl Report for Errors<'_> {
    fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.list.push(SpecError {
            file: self.file.to_string(),
            line: pos.0,
            column: pos.1,
            field: field.to_string(),
            message: message.into(),
        });
    }
}

/// `path.name`, or `name` at the root.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// A table being read: its entries, its position and dotted path.
pub(crate) struct Tbl<'n> {
    pub(crate) pos: Pos,
    pub(crate) path: String,
    pub(crate) entries: &'n [(String, Node)],
}

impl<'n> Tbl<'n> {
    /// Reads `node` as a table whose keys must be among `allowed`.
    pub(crate) fn open(
        cx: &mut impl Report,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Tbl<'n>> {
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

    pub(crate) fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The dotted path of field `name`.
    pub(crate) fn field(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// Reports field `name` missing (at the table's position).
    pub(crate) fn missing(&self, cx: &mut impl Report, name: &str, expected: &str) {
        cx.err(
            self.pos,
            &self.field(name),
            format!("missing required field; expected {expected}"),
        );
    }

    /// A required field of any type.
    pub(crate) fn req(&self, cx: &mut impl Report, name: &str, expected: &str) -> Option<&'n Node> {
        let n = self.get(name);
        if n.is_none() {
            self.missing(cx, name, expected);
        }
        n
    }

    /// A required non-empty string.
    pub(crate) fn string(&self, cx: &mut impl Report, name: &str) -> Option<String> {
        let n = self.req(cx, name, "a non-empty string")?;
        as_string(cx, n, &self.field(name))
    }

    pub(crate) fn opt_string(&self, cx: &mut impl Report, name: &str) -> Option<Option<String>> {
        match self.get(name) {
            None => Some(None),
            Some(n) => as_string(cx, n, &self.field(name)).map(Some),
        }
    }

    /// A required string that is one of `options`.
    pub(crate) fn choice(
        &self,
        cx: &mut impl Report,
        name: &str,
        options: &[&str],
    ) -> Option<(String, Pos)> {
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

    /// An optional integer in `min..=max`.
    pub(crate) fn opt_int(
        &self,
        cx: &mut impl Report,
        name: &str,
        min: i64,
        max: i64,
    ) -> Option<Option<i64>> {
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

    /// A required integer in `min..=max`.
    pub(crate) fn int(&self, cx: &mut impl Report, name: &str, min: i64, max: i64) -> Option<i64> {
        if self.get(name).is_none() {
            self.missing(cx, name, &format!("an integer from {min} to {max}"));
            return None;
        }
        self.opt_int(cx, name, min, max).flatten()
    }

    /// An optional number in the open interval (lo, hi).
    pub(crate) fn opt_number(
        &self,
        cx: &mut impl Report,
        name: &str,
        lo: f64,
        hi: f64,
    ) -> Option<Option<f64>> {
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

    pub(crate) fn opt_bool(&self, cx: &mut impl Report, name: &str) -> Option<Option<bool>> {
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

    /// A required date-time, as Unix seconds (see [`as_date`]), and where
    /// it was written.
    pub(crate) fn date(&self, cx: &mut impl Report, name: &str) -> Option<(i64, Pos)> {
        let n = self.req(
            cx,
            name,
            "an RFC 3339 date-time (e.g. 2027-02-01T00:00:00Z)",
        )?;
        as_date(cx, n, &self.field(name)).map(|t| (t, n.pos))
    }

    /// An array of distinct non-empty strings: required and non-empty, or
    /// (`allow_empty`) optional and possibly empty.
    pub(crate) fn strings(
        &self,
        cx: &mut impl Report,
        name: &str,
        allow_empty: bool,
    ) -> Option<Vec<String>> {
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

/// A non-empty (not only white space) string.
pub(crate) fn as_string(cx: &mut impl Report, n: &Node, field: &str) -> Option<String> {
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

/// A TOML date-time, or a string holding one, as Unix seconds: an offset
/// date-time, or a local date (midnight UTC).
pub(crate) fn as_date(cx: &mut impl Report, n: &Node, field: &str) -> Option<i64> {
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
pub(crate) fn is_ident(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A required identifier ([`is_ident`]).
pub(crate) fn ident(cx: &mut impl Report, t: &Tbl<'_>, name: &str) -> Option<String> {
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
