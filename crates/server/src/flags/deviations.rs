//! Changes to a flag that a running trial controls are deviations from the
//! trial's plan: disabling the flag stops the arms, a cohort override takes
//! its members out of the trial, a new definition may drop an arm's
//! variant. Every such change (through the API or the CLI, by any role) is
//! recorded in the trial's event log, in the same transaction as the flag
//! revision, as a `deviation` event whose reason says what changed
//! ([`commonlab_store::Store::append_flag_set_revision_with_deviations`];
//! `docs/experiments.md`, "Changes to a trial's flag"). This module words
//! it.

use serde_json::Value;

fn cohort_names(flag: &Value) -> String {
    let names: Vec<&str> = flag
        .get("cohorts")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", names.join(", "))
}

/// What changed in flag `key` between `before` and `after` (`None` when
/// absent), or `None` when nothing did.
pub fn what_changed(key: &str, before: Option<&Value>, after: Option<&Value>) -> Option<String> {
    let (before, after) = match (before, after) {
        (None, None) => return None,
        (Some(_), None) => return Some(format!("flag '{key}' deleted")),
        (None, Some(_)) => return Some(format!("flag '{key}' created")),
        (Some(b), Some(a)) if a == b => return None,
        (Some(b), Some(a)) => (b, a),
    };
    let mut parts = Vec::new();
    let field = |v: &Value, f: &str| v.get(f).cloned().unwrap_or(Value::Null);
    for f in [
        "state",
        "variants",
        "defaultVariant",
        "targeting",
        "cohorts",
        "metadata",
    ] {
        let (b, a) = (field(before, f), field(after, f));
        if a == b {
            continue;
        }
        parts.push(match f {
            "state" => format!(
                "state {} -> {}",
                b.as_str().unwrap_or("unset"),
                a.as_str().unwrap_or("unset")
            ),
            "cohorts" => format!(
                "cohort overrides {} -> {}",
                cohort_names(before),
                cohort_names(after)
            ),
            other => format!("{other} changed"),
        });
    }
    if parts.is_empty() {
        parts.push("definition changed".into());
    }
    Some(format!("flag '{key}': {}", parts.join("; ")))
}

/// The reason recorded with the deviation: what changed, by which action,
/// at which revision, and the author's reason.
pub fn reason(change: &str, action: &str, revision: i64, why: &str) -> String {
    format!("{change} ({action}, flag-set revision {revision}); reason: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_what_changed() {
        let on = json!({"state": "ENABLED", "variants": {"a": 1}});
        let off = json!({"state": "DISABLED", "variants": {"a": 1}});
        assert_eq!(what_changed("f", Some(&on), Some(&on)), None);
        assert_eq!(
            what_changed("f", Some(&on), Some(&off)).unwrap(),
            "flag 'f': state ENABLED -> DISABLED"
        );
        let overridden = json!({"state": "ENABLED", "variants": {"a": 1},
            "cohorts": [{"name": "coop", "attribute": "community", "values": ["c"], "variant": "a"}]});
        assert_eq!(
            what_changed("f", Some(&on), Some(&overridden)).unwrap(),
            "flag 'f': cohort overrides [] -> [coop]"
        );
        let retargeted = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2}, "targeting": {"if": [true, "b"]}});
        assert_eq!(
            what_changed("f", Some(&on), Some(&retargeted)).unwrap(),
            "flag 'f': variants changed; targeting changed"
        );
        assert_eq!(
            what_changed("f", Some(&on), None).unwrap(),
            "flag 'f' deleted"
        );
        assert_eq!(
            reason("flag 'f' deleted", "delete", 7, "retired"),
            "flag 'f' deleted (delete, flag-set revision 7); reason: retired"
        );
    }
}
