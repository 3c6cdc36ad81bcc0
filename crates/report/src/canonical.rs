//! Fixed number formatting and content hashes, so that the same data give
//! byte-identical `results.json`.
//!
//! Every floating-point number in a report is rounded to
//! [`SIGNIFICANT`] significant digits before it is written: the last bits
//! of a sum depend on the order the database added the rows in, and a
//! reviewer's re-run must not differ in them. Integers are kept as they
//! are. Object keys keep the order the report's types declare them in
//! (fixed in the code); maps are `BTreeMap`s (sorted).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Significant digits kept of every floating-point number.
pub const SIGNIFICANT: usize = 10;

/// `x` rounded to [`SIGNIFICANT`] significant digits (non-finite numbers
/// become `null` in JSON anyway; they are returned unchanged).
pub fn round(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { 0.0 } else { x };
    }
    let text = format!("{:.*e}", SIGNIFICANT - 1, x);
    text.parse().unwrap_or(x)
}

/// Rounds every float inside `v` (see [`round`]).
pub fn canonicalise(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                let r = round(x);
                *v = serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalise),
        Value::Object(map) => map.values_mut().for_each(canonicalise),
        _ => {}
    }
}

/// `value` as canonical JSON: rounded floats, two-space indentation, a
/// final newline.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(value)?;
    canonicalise(&mut v);
    let mut text = serde_json::to_string_pretty(&v)?;
    text.push('\n');
    Ok(text)
}

/// `value` as a canonical JSON value (what the templates render).
pub fn to_value<T: Serialize>(value: &T) -> Result<Value, serde_json::Error> {
    let mut v = serde_json::to_value(value)?;
    canonicalise(&mut v);
    Ok(v)
}

/// Hex SHA-256 of `text`.
pub fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_hides_the_last_bits_of_a_sum() {
        let a = 0.1 + 0.2 + 0.3;
        let b = 0.3 + 0.2 + 0.1;
        assert_ne!(a, b);
        assert_eq!(round(a), round(b));
        assert_eq!(round(123_456.789_012_345), 123_456.789_0);
        assert_eq!(round(-0.000_123_456_789_012_3), -0.000_123_456_789_0);
        assert_eq!(round(0.0), 0.0);
    }

    #[test]
    fn canonical_json_is_stable() {
        let v = serde_json::json!({"b": [1, 2.000_000_000_000_1], "a": 3});
        let text = to_json(&v).unwrap();
        assert_eq!(
            text,
            "{\n  \"b\": [\n    1,\n    2.0\n  ],\n  \"a\": 3\n}\n"
        );
    }
}
