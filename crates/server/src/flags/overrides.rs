//! What an import does with the cohort overrides already in the flag set.
//!
//! Overrides are developers' (`PUT /api/v1/flags/{key}/cohorts/{name}`); a
//! flagd file imported by a researcher usually has none. So an import keeps
//! every override of a flag that is still in the file, unless the file
//! defines a cohort of the same name (the file's wins) or the override's
//! variant is no longer a variant of the flag; with `replace_overrides`
//! (CLI `--replace-overrides`) the file's cohorts replace them all. Every
//! override is reported as kept or dropped, with the reason.

use serde::Serialize;
use serde_json::Value;

/// An override carried over by an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = OverrideKept)]
pub struct Kept {
    pub flag: String,
    pub cohort: String,
}

/// An override an import removed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = OverrideDropped)]
pub struct Dropped {
    pub flag: String,
    pub cohort: String,
    pub reason: String,
}

/// The fate of every override the flag set had before an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OverridesReport {
    pub kept: Vec<Kept>,
    pub dropped: Vec<Dropped>,
}

fn cohorts(flag: &Value) -> &[Value] {
    flag.get("cohorts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn name(cohort: &Value) -> &str {
    cohort.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Carries the overrides of `current` (the stored head document) into
/// `imported` (the canonical imported document), in place: after the
/// file's own cohorts of each flag, in their previous order.
pub fn carry(imported: &mut Value, current: &Value, replace: bool) -> OverridesReport {
    let mut report = OverridesReport::default();
    let Some(before) = current.get("flags").and_then(Value::as_object) else {
        return report;
    };
    for (key, old) in before {
        let mut drop = |cohort: &Value, reason: String| {
            report.dropped.push(Dropped {
                flag: key.clone(),
                cohort: name(cohort).to_string(),
                reason,
            })
        };
        let Some(new) = imported.get_mut("flags").and_then(|f| f.get_mut(key)) else {
            for c in cohorts(old) {
                drop(c, "the flag is not in the imported file".into());
            }
            continue;
        };
        let mut carried = Vec::new();
        for c in cohorts(old) {
            let variant = c.get("variant").and_then(Value::as_str).unwrap_or("");
            if replace {
                drop(
                    c,
                    "replaced by the file's overrides (replace_overrides)".into(),
                );
            } else if cohorts(new).iter().any(|n| name(n) == name(c)) {
                drop(c, "the file defines a cohort of this name".into());
            } else if new.get("variants").and_then(|v| v.get(variant)).is_none() {
                drop(
                    c,
                    format!("its variant {variant:?} is not a variant of the imported flag"),
                );
            } else {
                carried.push(c.clone());
            }
        }
        if carried.is_empty() {
            continue;
        }
        for c in &carried {
            report.kept.push(Kept {
                flag: key.clone(),
                cohort: name(c).to_string(),
            });
        }
        if let Some(obj) = new.as_object_mut() {
            let mut list = cohorts(&Value::Object(obj.clone())).to_vec();
            list.extend(carried);
            obj.insert("cohorts".into(), Value::Array(list));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cohort(name: &str, variant: &str) -> Value {
        json!({"name": name, "attribute": "community", "values": ["x"], "variant": variant})
    }

    #[test]
    fn keeps_what_it_can_and_says_why_it_drops_the_rest() {
        let current = json!({"flags": {
            "kept": {"variants": {"a": 1, "b": 2}, "cohorts": [cohort("c1", "a"), cohort("c2", "b")]},
            "gone": {"variants": {"a": 1}, "cohorts": [cohort("c3", "a")]},
            "renamed-variant": {"variants": {"a": 1}, "cohorts": [cohort("c4", "a")]},
            "file-wins": {"variants": {"a": 1, "b": 2}, "cohorts": [cohort("c5", "a"), cohort("c6", "b")]},
            "plain": {"variants": {"a": 1}}
        }});
        let mut imported = json!({"flags": {
            "kept": {"variants": {"a": 10, "b": 20}},
            "renamed-variant": {"variants": {"z": 1}},
            "file-wins": {"variants": {"a": 1, "b": 2}, "cohorts": [cohort("c5", "b")]},
            "plain": {"variants": {"a": 1}},
            "new": {"variants": {"a": 1}}
        }});
        let report = carry(&mut imported, &current, false);
        let kept: Vec<(&str, &str)> = report
            .kept
            .iter()
            .map(|k| (k.flag.as_str(), k.cohort.as_str()))
            .collect();
        assert_eq!(kept, [("kept", "c1"), ("kept", "c2"), ("file-wins", "c6")]);
        let dropped: Vec<(&str, &str)> = report
            .dropped
            .iter()
            .map(|d| (d.flag.as_str(), d.cohort.as_str()))
            .collect();
        assert_eq!(
            dropped,
            [
                ("gone", "c3"),
                ("renamed-variant", "c4"),
                ("file-wins", "c5")
            ]
        );
        assert!(report.dropped[1].reason.contains("\"a\""));
        assert_eq!(
            imported["flags"]["kept"]["cohorts"],
            json!([cohort("c1", "a"), cohort("c2", "b")])
        );
        assert_eq!(
            imported["flags"]["file-wins"]["cohorts"],
            json!([cohort("c5", "b"), cohort("c6", "b")])
        );
        assert!(imported["flags"]["plain"].get("cohorts").is_none());
        assert!(imported["flags"]["renamed-variant"]
            .get("cohorts")
            .is_none());
    }

    #[test]
    fn replace_takes_the_files_overrides_only() {
        let current =
            json!({"flags": {"f": {"variants": {"a": 1}, "cohorts": [cohort("c1", "a")]}}});
        let mut imported = json!({"flags": {"f": {"variants": {"a": 1}}}});
        let before = imported.clone();
        let report = carry(&mut imported, &current, true);
        assert!(report.kept.is_empty());
        assert_eq!(report.dropped.len(), 1);
        assert_eq!(imported, before);
    }
}
