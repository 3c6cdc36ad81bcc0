//! Limits on an evaluation context (OFREP, and `POST /api/v1/exposures`),
//! the same as `/v1/events` applies to its text: a targeting key or any
//! other string value becomes a unit or community id that is remembered,
//! stored and exported, so its length is bounded and control characters are
//! refused.
//!
//! - attribute names (at every depth): 1 to 100 bytes, no control characters;
//! - string values (at every depth, `targetingKey` included): at most
//!   1,024 bytes, no control characters;
//! - at most 64 attributes in an object and 64 items in an array, and
//!   objects or arrays nested at most 4 deep below the context.

use serde_json::Value;

pub const MAX_KEY: usize = 100;
pub const MAX_TEXT: usize = 1024;
pub const MAX_ENTRIES: usize = 64;
pub const MAX_DEPTH: usize = 4;

/// Why a context was refused: the field (a dotted path from `context`, as
/// OFREP clients write it, and a JSON pointer) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextError {
    pub path: String,
    pub pointer: String,
    pub reason: String,
}

impl ContextError {
    /// `context.targetingKey: longer than 1024 bytes`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.path, self.reason)
    }
}

/// Checks `ctx` (the value of `context`) against the limits above. Walks
/// the context once and allocates only to report an error.
pub fn validate(ctx: &Value) -> Result<(), ContextError> {
    check(ctx, 0).map_err(|mut e| {
        e.path.reverse();
        error(&e.path, e.reason)
    })
}

/// The path to the offending value, innermost first (built on the way
/// out, so that success allocates nothing), and the reason.
struct Refusal {
    path: Vec<String>,
    reason: String,
}

fn refuse(reason: String) -> Refusal {
    Refusal {
        path: Vec::new(),
        reason,
    }
}

fn error(path: &[String], reason: String) -> ContextError {
    let mut dotted = String::from("context");
    let mut pointer = String::from("/context");
    for seg in path {
        dotted.push('.');
        dotted.push_str(seg);
        pointer.push('/');
        pointer.push_str(&seg.replace('~', "~0").replace('/', "~1"));
    }
    ContextError {
        path: dotted,
        pointer,
        reason,
    }
}

/// A name as shown in an error: at most 40 characters, control characters
/// as `?`.
fn shown(key: &str) -> String {
    let cut: String = key
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if cut.len() < key.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// `char::is_control` over `s`: one byte scan while `s` is ASCII, the
/// characters from the first non-ASCII byte on (a character boundary, as
/// every byte before it is ASCII).
fn has_control(s: &str) -> bool {
    match s.bytes().position(|b| !(0x20..0x7f).contains(&b)) {
        None => false,
        Some(i) if s.as_bytes()[i] < 0x80 => true,
        Some(i) => s[i..].chars().any(char::is_control),
    }
}

fn check(v: &Value, depth: usize) -> Result<(), Refusal> {
    match v {
        Value::String(s) => {
            if s.len() > MAX_TEXT {
                return Err(refuse(format!(
                    "longer than {MAX_TEXT} bytes ({})",
                    s.len()
                )));
            }
            if has_control(s) {
                return Err(refuse("must not contain control characters".into()));
            }
            Ok(())
        }
        Value::Object(m) => {
            if depth > MAX_DEPTH {
                return Err(refuse(format!(
                    "objects and arrays nest at most {MAX_DEPTH} deep"
                )));
            }
            if m.len() > MAX_ENTRIES {
                return Err(refuse(format!(
                    "at most {MAX_ENTRIES} attributes ({})",
                    m.len()
                )));
            }
            for (k, item) in m {
                let at = |mut r: Refusal| {
                    r.path.push(shown(k));
                    r
                };
                if k.is_empty() || k.len() > MAX_KEY || has_control(k) {
                    return Err(at(refuse(format!(
                        "attribute names are 1 to {MAX_KEY} bytes without control characters"
                    ))));
                }
                check(item, depth + 1).map_err(at)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(refuse(format!(
                    "objects and arrays nest at most {MAX_DEPTH} deep"
                )));
            }
            if items.len() > MAX_ENTRIES {
                return Err(refuse(format!(
                    "at most {MAX_ENTRIES} items ({})",
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                check(item, depth + 1).map_err(|mut r| {
                    r.path.push(i.to_string());
                    r
                })?;
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_name_the_field() {
        let long = "x".repeat(MAX_TEXT + 1);
        let long_name = format!("context.{}…", "k".repeat(40));
        let cases: Vec<(Value, Option<&str>)> = vec![
            (json!({}), None),
            (
                json!({"targetingKey": "member-42", "community": "wiki-a", "age": 3, "beta": true, "tags": ["a", "b"], "n": null}),
                None,
            ),
            (json!({"targetingKey": "x".repeat(MAX_TEXT)}), None),
            (json!({"targetingKey": long}), Some("context.targetingKey")),
            (
                json!({"targetingKey": "a\u{0}b"}),
                Some("context.targetingKey"),
            ),
            (json!({"community": "wiki\n"}), Some("context.community")),
            (
                json!({"community": "wiki\u{85}"}),
                Some("context.community"),
            ),
            (
                json!({"deep": {"er": [1, {"x": long}]}}),
                Some("context.deep.er.1.x"),
            ),
            (json!({"": 1}), Some("context.")),
            (json!({"a\tb": 1}), Some("context.a?b")),
            (
                json!({"k".repeat(MAX_KEY + 1): 1}),
                Some(long_name.as_str()),
            ),
            (
                json!({"tags": vec![1; MAX_ENTRIES + 1]}),
                Some("context.tags"),
            ),
            (json!({"a": {"b": {"c": {"d": {"e": 1}}}}}), None),
            (
                json!({"a": {"b": {"c": {"d": {"e": {}}}}}}),
                Some("context.a.b.c.d.e"),
            ),
        ];
        let mut wide = serde_json::Map::new();
        for i in 0..=MAX_ENTRIES {
            wide.insert(format!("k{i}"), json!(i));
        }
        let mut cases = cases;
        cases.push((Value::Object(wide), Some("context")));
        for (ctx, want) in cases {
            let got = validate(&ctx).err().map(|e| e.path);
            assert_eq!(got.as_deref(), want, "{ctx}");
        }
    }

    #[test]
    fn pointers_escape_names() {
        let e = validate(&json!({"a/b": {"c~d": "\u{1}"}})).unwrap_err();
        assert_eq!(e.pointer, "/context/a~1b/c~0d");
        assert_eq!(
            e.message(),
            "context.a/b.c~d: must not contain control characters"
        );
    }
}
