//! `commonlab report verify DIR`: does every number of a report still
//! match its data? The caller recomputes the report as of the time the
//! stored one names, with the stored provenance, and [`compare`] names the
//! first value that differs (a JSON path such as
//! `results[0].effects[1].p_value`).

use serde_json::Value;

/// The first difference between a stored and a recomputed report.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: String,
    pub stored: String,
    pub recomputed: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the report says {}, the data now give {}",
            self.path, self.stored, self.recomputed
        )
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |c| c.0)]
        )
    } else {
        s
    }
}

fn walk(path: &str, a: &Value, b: &Value) -> Option<Mismatch> {
    let here = || Mismatch {
        path: if path.is_empty() {
            "(root)".into()
        } else {
            path.to_string()
        },
        stored: short(a),
        recomputed: short(b),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match y.get(k) {
                    Some(w) => {
                        if let Some(m) = walk(&p, v, w) {
                            return Some(m);
                        }
                    }
                    None => {
                        return Some(Mismatch {
                            path: p,
                            stored: short(v),
                            recomputed: "(absent)".into(),
                        })
                    }
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map(|k| Mismatch {
                path: if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                },
                stored: "(absent)".into(),
                recomputed: short(&y[k]),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(m) = walk(&format!("{path}[{i}]"), v, w) {
                    return Some(m);
                }
            }
            (x.len() != y.len()).then(|| Mismatch {
                path: format!("{path} (length)"),
                stored: x.len().to_string(),
                recomputed: y.len().to_string(),
            })
        }
        _ => (a != b).then(here),
    }
}

/// Compares two `results.json` documents; `None` when every value matches.
pub fn compare(stored: &Value, recomputed: &Value) -> Option<Mismatch> {
    walk("", stored, recomputed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_first_difference() {
        let a = json!({"results": [{"effects": [{"p": 0.1}, {"p": 0.2}]}], "x": 1});
        let mut b = a.clone();
        assert_eq!(compare(&a, &b), None);
        b["results"][0]["effects"][1]["p"] = json!(0.25);
        b["x"] = json!(2);
        let m = compare(&a, &b).unwrap();
        assert_eq!(m.path, "results[0].effects[1].p");
        assert_eq!(m.stored, "0.2");
        assert_eq!(m.recomputed, "0.25");
        b["results"][0]["effects"].as_array_mut().unwrap().pop();
        assert_eq!(compare(&a, &b).unwrap().path, "results[0].effects (length)");
    }
}
