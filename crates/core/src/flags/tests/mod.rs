//! Tests of the flags engine. One test binary for the crate: fixtures are
//! compiled in with `include_str!` (no file IO), and the counting allocator
//! lives in `alloc`.

mod alloc;
mod fixtures;
mod limits;
mod murmur;
mod props;

use super::{EvalContext, FlagSet, LoadMode, Resolution};
use serde_json::{json, Value};

/// Loads a document that must load without warnings.
fn strict(doc: &Value) -> FlagSet {
    match FlagSet::from_value(doc, LoadMode::Strict) {
        Ok((set, warnings)) => {
            assert!(warnings.is_empty());
            set
        }
        Err(e) => panic!("document does not load strictly: {e}\n{doc:#}"),
    }
}

/// Loads a document leniently (warnings allowed).
fn lenient(doc: &Value) -> FlagSet {
    match FlagSet::from_value(doc, LoadMode::Lenient) {
        Ok((set, _)) => set,
        Err(e) => panic!("document does not load: {e}\n{doc:#}"),
    }
}

/// A resolution as JSON, for comparison against fixtures.
fn resolution_json(r: &Resolution<'_>) -> Value {
    json!({
        "value": r.value.map(|v| v.to_json()),
        "variant": r.variant,
        "reason": r.reason.as_str(),
        "error": r.error.as_ref().map(|e| e.code.as_str()),
        "cohort": r.cohort,
        "metadata": r.metadata,
    })
}

/// The realistic flag of the performance target, with the given variants.
pub(super) fn realistic_document(variants: Value) -> Value {
    json!({
        "flags": {
            "realistic": {
                "state": "ENABLED",
                "variants": variants,
                "defaultVariant": "off",
                "targeting": {
                    "if": [
                        {"in": [{"var": "community"}, ["wiki-a", "coop-b", "social-c"]]},
                        {"fractional": [["control", 50], ["small", 25], ["big", 25]]},
                        "off"
                    ]
                }
            }
        }
    })
}

fn eval_json(set: &FlagSet, key: &str, ctx: &Value, now: i64) -> Value {
    resolution_json(&set.evaluate(key, &EvalContext::new(ctx, now)))
}

#[test]
fn flag_sets_can_be_shared_across_threads() {
    fn assert_shareable<T: Send + Sync + 'static>() {}
    assert_shareable::<FlagSet>();
    assert_shareable::<super::Flag>();
    assert_shareable::<super::LoadWarning>();
    assert_shareable::<super::ParseError>();
}

#[test]
fn empty_set_reports_flag_not_found() {
    let set = FlagSet::empty();
    assert!(set.is_empty());
    assert_eq!(set.len(), 0);
    assert_eq!(set.keys().count(), 0);
    let r = set.evaluate("anything", &EvalContext::empty(0));
    assert_eq!(
        r.error.map(|e| e.code),
        Some(super::ErrorCode::FlagNotFound)
    );
    assert_eq!(set.to_document(), json!({"flags": {}}));
}

#[test]
fn wire_names_serialise_as_strings() {
    use super::{ErrorCode, FlagValue, Reason};
    assert_eq!(serde_json::to_string(&Reason::Split).unwrap(), "\"SPLIT\"");
    assert_eq!(
        serde_json::to_string(&Reason::TargetingMatch).unwrap(),
        "\"TARGETING_MATCH\""
    );
    assert_eq!(
        serde_json::to_string(&ErrorCode::TargetingKeyMissing).unwrap(),
        "\"TARGETING_KEY_MISSING\""
    );
    assert_eq!(
        serde_json::to_string(&FlagValue::Float(0.0)).unwrap(),
        "0.0"
    );
    assert_eq!(
        serde_json::to_string(&FlagValue::Float(10.0)).unwrap(),
        "10.0"
    );
    assert_eq!(serde_json::to_string(&FlagValue::Int(10)).unwrap(), "10");
    assert_eq!(
        serde_json::to_string(&FlagValue::Object(serde_json::Map::new())).unwrap(),
        "{}"
    );
}

#[test]
fn new_flag_keys_are_identifiers() {
    use super::check_new_key;
    for ok in [
        "a",
        "thanks-button",
        "new_editor.v2",
        "_private",
        "0day",
        "A-Z_09.x",
    ] {
        assert_eq!(check_new_key(ok), Ok(()), "{ok}");
    }
    let long = "k".repeat(201);
    for (bad, why) in [
        ("", "empty"),
        ("../../etc/passwd", "'/'"),
        ("has space", "' '"),
        ("..", "starts with"),
        (".hidden", "starts with"),
        ("-x", "starts with"),
        ("tab\there", "'\\t'"),
        ("caf\u{e9}", "'\u{e9}'"),
        ("a%2Fb", "'%'"),
        (long.as_str(), "longer than 200"),
    ] {
        let e = check_new_key(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!(check_new_key(&"k".repeat(200)), Ok(()));
}
