//! Data-driven tests: each file under `src/flags/testdata/` holds inputs and
//! the outcomes they must produce.

use super::{eval_json, lenient, strict};
use crate::flags::logic::{fuel_for, Compiler, Env, Fuel};
use crate::flags::{EvalContext, FlagSet, LoadMode, ValueType};
use serde_json::{Map, Value};

fn parse(name: &str, src: &str) -> Value {
    serde_json::from_str(src).unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

// ---------------------------------------------------------------------------
// Operator fixtures: {"logic", "data", "expect"} evaluated directly.

/// Compiles and evaluates one rule (with `$flagd.flagKey` = "test-flag").
fn apply(logic: &Value, data: &Value, now: i64) -> Result<Value, String> {
    let evaluators = Map::new();
    let mut c = Compiler::new(&evaluators);
    let compiled = c.compile_rule(logic, &mut String::new(), "the rule")?;
    let fuel = Fuel::new(fuel_for(compiled.cost.units));
    let env = Env {
        flag_key: "test-flag",
        ctx: data,
        now,
        targeting_key: data.get("targetingKey").and_then(Value::as_str),
        fuel: &fuel,
    };
    Ok(compiled.expr.eval_root(&env).to_json())
}

fn check_operator_file(name: &str, src: &str) {
    let doc = parse(name, src);
    let cases = doc["cases"].as_array().expect("\"cases\" array");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let logic = &case["logic"];
        let data = case.get("data").unwrap_or(&Value::Null);
        let now = case.get("now").and_then(Value::as_i64).unwrap_or(0);
        let got = apply(logic, data, now);
        let ok = match (case.get("broken"), &got) {
            (Some(Value::Bool(true)), Err(_)) => true,
            (Some(Value::Bool(true)), Ok(_)) => false,
            (_, Ok(v)) => v == &case["expect"],
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!(
                "{name} case {i}: {logic} with {data}: expected {}, got {got:?}",
                case.get("expect").unwrap_or(&Value::Null)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!cases.is_empty());
}

#[test]
fn operators() {
    check_operator_file("operators.json", include_str!("../testdata/operators.json"));
}

#[test]
fn sem_ver() {
    check_operator_file("semver.json", include_str!("../testdata/semver.json"));
}

// ---------------------------------------------------------------------------
// Evaluation fixtures: a list of suites {"document", "cases", ...}.

fn value_type(name: &str) -> ValueType {
    match name {
        "boolean" => ValueType::Bool,
        "string" => ValueType::String,
        "number" => ValueType::Number,
        "object" => ValueType::Object,
        other => panic!("unknown type {other:?} in fixture"),
    }
}

/// Compares the keys present in `expect` with `got`.
fn mismatches(expect: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, want) in expect.as_object().expect("\"expect\" object") {
        if &got[k] != want {
            out.push(format!("{k}: expected {want}, got {}", got[k]));
        }
    }
    out
}

fn check_evaluation_file(name: &str, src: &str) {
    let suites = parse(name, src);
    let mut failures = Vec::new();
    let mut checked = 0;
    for suite in suites.as_array().expect("a list of suites") {
        let suite_name = suite["name"].as_str().unwrap_or("?");
        let set = if suite["mode"] == "lenient" {
            lenient(&suite["document"])
        } else {
            strict(&suite["document"])
        };
        let now = suite
            .get("now")
            .and_then(Value::as_i64)
            .unwrap_or(1_700_000_000);
        // Optionally also check the pure flagd rendering behaves the same.
        let flagd = suite
            .get("flagd_equivalent")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .then(|| strict(&set.to_flagd_document()));
        for case in suite["cases"].as_array().into_iter().flatten() {
            checked += 1;
            let key = case["flag"].as_str().expect("\"flag\"");
            let ctx = case.get("context").cloned().unwrap_or(Value::Null);
            let r = set.evaluate(key, &EvalContext::new(&ctx, now));
            let r = match case.get("type").and_then(Value::as_str) {
                Some(t) => r.expect_type(value_type(t)),
                None => r,
            };
            let got = super::resolution_json(&r);
            for m in mismatches(&case["expect"], &got) {
                failures.push(format!("{name} / {suite_name} / {key} {ctx}: {m}"));
            }
            if let Some(flagd) = &flagd {
                let other = eval_json(flagd, key, &ctx, now);
                if other["value"] != got["value"] || other["variant"] != got["variant"] {
                    failures.push(format!(
                        "{name} / {suite_name} / {key} {ctx}: flagd rendering gives {other}, cohorts give {got}"
                    ));
                }
            }
        }
        for dist in suite["distributions"].as_array().into_iter().flatten() {
            checked += 1;
            let key = dist["flag"].as_str().expect("\"flag\"");
            let samples = dist["samples"].as_u64().expect("\"samples\"");
            let tolerance = dist["tolerance"].as_f64().expect("\"tolerance\"");
            let attribute = dist["attribute"].as_str().unwrap_or("targetingKey");
            let mut counts: Map<String, Value> = Map::new();
            for i in 0..samples {
                let mut ctx = dist
                    .get("context")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                // A dotted attribute creates nested objects.
                let mut slot = &mut ctx;
                for seg in attribute.split('.') {
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    slot = &mut slot[seg];
                }
                *slot = Value::String(format!("subject-{i}@example.org"));
                let r = set.evaluate(key, &EvalContext::new(&ctx, now));
                let variant = r.variant.unwrap_or("<none>").to_string();
                let n = counts.get(&variant).and_then(Value::as_u64).unwrap_or(0);
                counts.insert(variant, Value::from(n + 1));
            }
            for (variant, share) in dist["expect"].as_object().expect("\"expect\"") {
                let n = counts.get(variant).and_then(Value::as_u64).unwrap_or(0);
                let got = n as f64 / samples as f64;
                let want = share.as_f64().expect("share");
                if (got - want).abs() > tolerance {
                    failures.push(format!(
                        "{name} / {suite_name} / {key}: variant {variant} got {got:.4} of {samples}, expected {want} ± {tolerance}"
                    ));
                }
            }
            let unexpected: Vec<_> = counts
                .keys()
                .filter(|k| {
                    !dist["expect"]
                        .as_object()
                        .is_some_and(|e| e.contains_key(*k))
                })
                .collect();
            if !unexpected.is_empty() {
                failures.push(format!(
                    "{name} / {suite_name} / {key}: unexpected variants {unexpected:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 0, "{name} checks nothing");
}

#[test]
fn fractional() {
    check_evaluation_file(
        "fractional.json",
        include_str!("../testdata/fractional.json"),
    );
}

#[test]
fn evaluation_errors() {
    check_evaluation_file("errors.json", include_str!("../testdata/errors.json"));
}

#[test]
fn resolution_reasons() {
    check_evaluation_file("reasons.json", include_str!("../testdata/reasons.json"));
}

#[test]
fn cohorts() {
    check_evaluation_file("cohorts.json", include_str!("../testdata/cohorts.json"));
}

#[test]
fn metadata_merge() {
    check_evaluation_file("metadata.json", include_str!("../testdata/metadata.json"));
}

#[test]
fn typed_evaluation() {
    check_evaluation_file("types.json", include_str!("../testdata/types.json"));
}

#[test]
fn shared_evaluators() {
    check_evaluation_file(
        "evaluators.json",
        include_str!("../testdata/evaluators.json"),
    );
}

// ---------------------------------------------------------------------------
// Loading fixtures: strict vs lenient, warnings and errors with positions.

fn source_of(case: &Value) -> Option<String> {
    match case.get("source")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(lines) => Some(
            lines
                .iter()
                .map(|l| l.as_str().expect("source lines are strings"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => panic!("bad source {other}"),
    }
}

#[test]
fn loading() {
    let cases = parse("loading.json", include_str!("../testdata/loading.json"));
    let mut failures = Vec::new();
    for case in cases.as_array().expect("a list of cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let mode = match case["mode"].as_str() {
            Some("strict") => LoadMode::Strict,
            Some("lenient") => LoadMode::Lenient,
            other => panic!("{name}: bad mode {other:?}"),
        };
        let result = match source_of(case) {
            Some(src) => FlagSet::from_json_str(&src, mode),
            None => FlagSet::from_value(&case["document"], mode),
        };
        match (result, case.get("error")) {
            (Err(e), Some(want)) => {
                let got = serde_json::json!({
                    "line": e.line,
                    "column": e.column,
                    "pointer": e.pointer,
                    "message": e.message,
                    "display": e.to_string(),
                });
                for (k, w) in want.as_object().expect("error object") {
                    let ok = match k.as_str() {
                        "message_contains" => e.message.contains(w.as_str().unwrap_or("")),
                        _ => &got[k] == w,
                    };
                    if !ok {
                        failures.push(format!("{name}: error {k}: expected {w}, got {got}"));
                    }
                }
            }
            (Err(e), None) => failures.push(format!("{name}: unexpected error {e}")),
            (Ok(_), Some(want)) => failures.push(format!("{name}: loaded, expected error {want}")),
            (Ok((set, warnings)), None) => {
                let want: Vec<&Value> = case["warnings"]
                    .as_array()
                    .map(|w| w.iter().collect())
                    .unwrap_or_default();
                if warnings.len() != want.len() {
                    failures.push(format!(
                        "{name}: expected {} warnings, got {}: {warnings:#?}",
                        want.len(),
                        warnings.len()
                    ));
                } else {
                    for (w, expect) in warnings.iter().zip(want) {
                        if w.pointer != expect["pointer"].as_str().unwrap_or("")
                            || !w
                                .message
                                .contains(expect["contains"].as_str().unwrap_or(""))
                        {
                            failures.push(format!("{name}: warning {w} does not match {expect}"));
                        }
                    }
                }
                if let Some(keys) = case.get("keys") {
                    let got: Vec<&str> = set.keys().collect();
                    if serde_json::json!(got) != *keys {
                        failures.push(format!("{name}: keys {got:?}, expected {keys}"));
                    }
                }
                for check in case["evaluate"].as_array().into_iter().flatten() {
                    let key = check["flag"].as_str().expect("flag");
                    let ctx = check.get("context").cloned().unwrap_or(Value::Null);
                    let got = eval_json(&set, key, &ctx, 0);
                    for m in mismatches(&check["expect"], &got) {
                        failures.push(format!("{name}: {key}: {m}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Round trips: to_document, to_flagd_document, exact number serialisation.

#[test]
fn round_trips() {
    let cases = parse("roundtrip.json", include_str!("../testdata/roundtrip.json"));
    let mut failures = Vec::new();
    for case in cases.as_array().expect("a list of cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let set = strict(&case["document"]);
        let doc = set.to_document();
        let want = case.get("expect_document").unwrap_or(&case["document"]);
        if &doc != want {
            failures.push(format!("{name}: to_document gave {doc:#}"));
        }
        let again = strict(&doc).to_document();
        if again != doc {
            failures.push(format!("{name}: second round trip differs: {again:#}"));
        }
        // Exact text of parts of the document (e.g. 0.0 vs 0).
        for (ptr, text) in case["expect_text"].as_object().into_iter().flatten() {
            let part = doc.pointer(ptr).unwrap_or(&Value::Null);
            let got = serde_json::to_string(part).expect("serialises");
            if Some(got.as_str()) != text.as_str() {
                failures.push(format!(
                    "{name}: {ptr} serialises as {got}, expected {text}"
                ));
            }
        }
        if let Some(want) = case.get("expect_flagd_document") {
            let got = set.to_flagd_document();
            if &got != want {
                failures.push(format!("{name}: to_flagd_document gave {got:#}"));
            }
        }
        // Serialising the parsed value text and loading that text again is
        // the same as well (string source path).
        let text = serde_json::to_string_pretty(&doc).expect("serialises");
        match FlagSet::from_json_str(&text, LoadMode::Strict) {
            Ok((s, _)) if s.to_document() == doc => {}
            Ok((s, _)) => failures.push(format!(
                "{name}: text round trip gave {:#}",
                s.to_document()
            )),
            Err(e) => failures.push(format!("{name}: text round trip failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
