//! Intermediate values of targeting evaluation and the JavaScript coercions
//! JSONLogic inherits from json-logic-js (truthiness, `==`, `<`, `String()`,
//! `Number()`, `parseFloat`).
//!
//! Values borrow from the compiled rule and from the evaluation context
//! wherever they can, so that ordinary rules evaluate without allocating.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// A JSONLogic value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'s> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'s, str>),
    /// A borrowed JSON array or object (never a scalar: scalars are unpacked).
    Json(&'s Value),
    /// An array computed during evaluation (`map`, `merge`, `missing`, ...).
    List(Vec<Val<'s>>),
}

impl<'s> Val<'s> {
    #[inline]
    pub(crate) fn from_json(v: &'s Value) -> Val<'s> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(v),
        }
    }

    /// Converts to an owned JSON value (tests, diagnostics, `Rule::evaluate`).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    Value::from(*n as i64)
                } else {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
            }
            Val::Str(s) => Value::String(s.to_string()),
            Val::Json(v) => (*v).clone(),
            Val::List(items) => Value::Array(items.iter().map(Val::to_json).collect()),
        }
    }

    /// JSONLogic truthiness: like JavaScript, except that an empty array is false.
    #[inline]
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Json(Value::Array(a)) => !a.is_empty(),
            Val::Json(_) => true,
            Val::List(items) => !items.is_empty(),
        }
    }

    /// What copying this value costs in fuel (see `cost`): one unit per
    /// value plus its text.
    pub(crate) fn units(&self) -> u64 {
        match self {
            Val::Str(s) => 1 + super::cost::text_units(s.len()),
            Val::List(items) => items.iter().fold(1u64, |n, v| n.saturating_add(v.units())),
            _ => 1,
        }
    }

    pub(crate) fn is_array(&self) -> bool {
        matches!(self, Val::Json(Value::Array(_)) | Val::List(_))
    }

    /// Number of elements if this is an array.
    pub(crate) fn array_len(&self) -> Option<usize> {
        match self {
            Val::Json(Value::Array(a)) => Some(a.len()),
            Val::List(items) => Some(items.len()),
            _ => None,
        }
    }

    /// Calls `f` with each element of an array (nothing for non-arrays) until
    /// it returns `false`.
    pub(crate) fn for_each_elem(&self, mut f: impl FnMut(&Val<'s>) -> bool) {
        match self {
            Val::Json(Value::Array(a)) => {
                for v in a {
                    if !f(&Val::from_json(v)) {
                        break;
                    }
                }
            }
            Val::List(items) => {
                for v in items {
                    if !f(v) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// JavaScript `String(x)` (or, with `in_join`, the element conversion of
    /// `Array.prototype.join`, where null becomes ""), streamed in pieces.
    pub(crate) fn write_js(&self, in_join: bool, out: &mut dyn FnMut(&str)) {
        match self {
            Val::Null => {
                if !in_join {
                    out("null")
                }
            }
            Val::Bool(b) => out(if *b { "true" } else { "false" }),
            Val::Num(n) => out(NumBuf::new().js(*n)),
            Val::Str(s) => out(s),
            Val::Json(Value::Object(_)) => out("[object Object]"),
            Val::Json(_) | Val::List(_) => {
                let mut first = true;
                self.for_each_elem(|e| {
                    if !first {
                        out(",");
                    }
                    first = false;
                    e.write_js(true, out);
                    true
                });
            }
        }
    }

    /// JavaScript `String(x)`; borrowed when `x` is already a string.
    pub(crate) fn to_js_string(&self) -> Cow<'s, str> {
        match self {
            Val::Str(s) => s.clone(),
            Val::Null => Cow::Borrowed("null"),
            Val::Bool(true) => Cow::Borrowed("true"),
            Val::Bool(false) => Cow::Borrowed("false"),
            _ => {
                let mut s = String::new();
                self.write_js(false, &mut |p| s.push_str(p));
                Cow::Owned(s)
            }
        }
    }

    /// JavaScript `Number(x)`.
    pub(crate) fn to_number(&self) -> f64 {
        match self {
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => js_str_to_number(s),
            Val::Json(Value::Object(_)) => f64::NAN,
            Val::Json(_) | Val::List(_) => js_str_to_number(&self.to_js_string()),
        }
    }

    /// JavaScript `parseFloat(x)`.
    pub(crate) fn parse_float(&self) -> f64 {
        match self {
            Val::Num(n) => *n,
            Val::Str(s) => js_parse_float(s),
            Val::Null | Val::Bool(_) | Val::Json(Value::Object(_)) => f64::NAN,
            Val::Json(_) | Val::List(_) => js_parse_float(&self.to_js_string()),
        }
    }

    /// JavaScript `ToPrimitive` for the relational and equality operators:
    /// arrays become their joined string, objects "[object Object]".
    fn to_primitive(&self) -> Val<'s> {
        match self {
            Val::Json(_) | Val::List(_) => Val::Str(self.to_js_string()),
            other => other.clone(),
        }
    }

    /// JavaScript `===`. Arrays and objects compare by identity.
    #[inline]
    pub(crate) fn strict_eq(&self, other: &Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Json(a), Val::Json(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }

    /// `self === v` for a JSON value, without converting `v`.
    #[inline]
    pub(crate) fn strict_eq_json(&self, v: &Value) -> bool {
        match (self, v) {
            (Val::Str(a), Value::String(b)) => a == b,
            (Val::Num(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Val::Bool(a), Value::Bool(b)) => a == b,
            (Val::Null, Value::Null) => true,
            (Val::Json(a), b) => std::ptr::eq(*a, b),
            _ => false,
        }
    }

    /// JavaScript `==`.
    pub(crate) fn loose_eq(&self, other: &Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Null, _) | (_, Val::Null) => false,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Bool(a), b) => Val::Num(f64::from(u8::from(*a))).loose_eq(b),
            (a, Val::Bool(b)) => a.loose_eq(&Val::Num(f64::from(u8::from(*b)))),
            (Val::Num(a), Val::Str(b)) | (Val::Str(b), Val::Num(a)) => *a == js_str_to_number(b),
            (Val::Json(a), Val::Json(b)) => std::ptr::eq(*a, *b),
            (Val::Json(_) | Val::List(_), Val::Json(_) | Val::List(_)) => false,
            (a @ (Val::Json(_) | Val::List(_)), b) => a.to_primitive().loose_eq(b),
            (a, b @ (Val::Json(_) | Val::List(_))) => a.loose_eq(&b.to_primitive()),
        }
    }
}

/// JavaScript `a < b`; `None` when the comparison is undefined (NaN).
pub(crate) fn js_less(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    if let (Val::Str(x), Val::Str(y)) = (a, b) {
        return Some(x < y);
    }
    let (pa, pb) = (a.to_primitive(), b.to_primitive());
    if let (Val::Str(x), Val::Str(y)) = (&pa, &pb) {
        return Some(x < y);
    }
    let (x, y) = (pa.to_number(), pb.to_number());
    if x.is_nan() || y.is_nan() {
        None
    } else {
        Some(x < y)
    }
}

/// JavaScript `a <= b`.
pub(crate) fn js_less_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    js_less(b, a) == Some(false)
}

fn is_js_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// JavaScript `Number(string)`.
pub(crate) fn js_str_to_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits.chars().fold(0.0, |acc, c| {
                acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
            });
        }
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    if t.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        t.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// JavaScript `parseFloat(string)`: the longest decimal prefix after leading
/// whitespace.
pub(crate) fn js_parse_float(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_space);
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if t[i..].starts_with("Infinity") {
        return if b.first() == Some(&b'-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        digits += j - frac_start;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return f64::NAN;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    t[..i].parse::<f64>().unwrap_or(f64::NAN)
}

/// A stack buffer for formatting one number as JavaScript would, so that
/// numbers can be compared, concatenated and hashed without allocating.
pub(crate) struct NumBuf {
    buf: [u8; 64],
    len: usize,
}

impl fmt::Write for NumBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl NumBuf {
    pub(crate) fn new() -> Self {
        NumBuf {
            buf: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this cannot fail.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// JavaScript `String(n)` (shortest round-trip digits; exponent form
    /// outside `[1e-6, 1e21)`).
    pub(crate) fn js(&mut self, n: f64) -> &str {
        self.len = 0;
        if n.is_nan() {
            return "NaN";
        }
        if n.is_infinite() {
            return if n > 0.0 { "Infinity" } else { "-Infinity" };
        }
        if n == 0.0 {
            return "0";
        }
        let a = n.abs();
        if (1e-6..1e21).contains(&a) {
            let _ = write!(self, "{n}");
        } else {
            let _ = write!(self, "{n:e}");
            // Rust writes "1e21", JavaScript "1e+21".
            if let Some(e) = self.buf[..self.len].iter().position(|&b| b == b'e') {
                if self.buf.get(e + 1) != Some(&b'-') && self.len < self.buf.len() {
                    self.buf.copy_within(e + 1..self.len, e + 2);
                    self.buf[e + 1] = b'+';
                    self.len += 1;
                }
            }
        }
        self.as_str()
    }
}
