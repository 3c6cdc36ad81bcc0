//! Variant values and their types.

use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The type of a flag's variants. Integers and floats are both `Number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    String,
    Number,
    Object,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bool => "boolean",
            ValueType::String => "string",
            ValueType::Number => "number",
            ValueType::Object => "object",
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A variant's value. Numbers remember whether they were written as an
/// integer or a float, so that `10` stays `10` and `0.0` stays `0.0`.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagValue {
    Bool(bool),
    String(String),
    Int(i64),
    Float(f64),
    Object(Map<String, Value>),
}

impl FlagValue {
    pub fn value_type(&self) -> ValueType {
        match self {
            FlagValue::Bool(_) => ValueType::Bool,
            FlagValue::String(_) => ValueType::String,
            FlagValue::Int(_) | FlagValue::Float(_) => ValueType::Number,
            FlagValue::Object(_) => ValueType::Object,
        }
    }

    /// The value from JSON; `None` for null and arrays, which flagd does not allow.
    /// Integers beyond `i64` become floats.
    pub fn from_json(v: &Value) -> Option<FlagValue> {
        Some(match v {
            Value::Bool(b) => FlagValue::Bool(*b),
            Value::String(s) => FlagValue::String(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => FlagValue::Int(i),
                _ => FlagValue::Float(n.as_f64()?),
            },
            Value::Object(m) => FlagValue::Object(m.clone()),
            Value::Null | Value::Array(_) => return None,
        })
    }

    /// The value as JSON (a float stays a JSON float: `0.0`, not `0`).
    pub fn to_json(&self) -> Value {
        match self {
            FlagValue::Bool(b) => Value::Bool(*b),
            FlagValue::String(s) => Value::String(s.clone()),
            FlagValue::Int(i) => Value::from(*i),
            FlagValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            FlagValue::Object(m) => Value::Object(m.clone()),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FlagValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            FlagValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Integers as is, floats truncated (as flagd's integer resolution does).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FlagValue::Int(i) => Some(*i),
            FlagValue::Float(f) => Some(*f as i64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            FlagValue::Int(i) => Some(*i as f64),
            FlagValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map<String, Value>> {
        match self {
            FlagValue::Object(m) => Some(m),
            _ => None,
        }
    }
}

impl Serialize for FlagValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FlagValue::Bool(b) => s.serialize_bool(*b),
            FlagValue::String(v) => s.serialize_str(v),
            FlagValue::Int(i) => s.serialize_i64(*i),
            FlagValue::Float(f) => s.serialize_f64(*f),
            FlagValue::Object(m) => m.serialize(s),
        }
    }
}
