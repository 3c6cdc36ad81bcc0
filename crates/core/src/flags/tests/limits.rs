//! Limits on what a document can make evaluation do: shared evaluators are
//! compiled once and referenced, rules whose evaluation would cost too much
//! or nest too deep are refused at load (naming the evaluator), and the
//! context cannot make an evaluation run away (fuel).

use super::{eval_json, lenient, strict};
use crate::flags::{EvalContext, FlagSet, LoadMode, Rule};
use serde_json::{json, Map, Value};

/// The 1.2 KB flag set: `eN = {"and": [{"$ref": "eN-1"}, {"$ref":
/// "eN-1"}]}` for N = 1..=levels, a flag targeting `{"$ref": "e<levels>"}`.
fn ref_bomb(levels: usize) -> Value {
    let mut evaluators = Map::new();
    evaluators.insert("e0".into(), json!({"==": [{"var": "tier"}, "gold"]}));
    for n in 1..=levels {
        let prev = format!("e{}", n - 1);
        evaluators.insert(
            format!("e{n}"),
            json!({"and": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    json!({
        "flags": {
            "bomb": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": format!("e{levels}")}, "on", "off"]}
            }
        },
        "$evaluators": evaluators
    })
}

fn refused(doc: &Value) -> crate::flags::ParseError {
    for mode in [LoadMode::Lenient, LoadMode::Strict] {
        if FlagSet::from_value(doc, mode).is_ok() {
            panic!("accepted in {mode:?} mode");
        }
    }
    let text = serde_json::to_string(doc).unwrap();
    let Err(from_text) = FlagSet::from_json_str(&text, LoadMode::Lenient) else {
        panic!("accepted from text");
    };
    assert!(from_text.line > 0, "{from_text}");
    match FlagSet::from_value(doc, LoadMode::Lenient) {
        Err(e) => e,
        Ok(_) => unreachable!(),
    }
}

#[test]
fn the_ref_bomb_is_refused_naming_the_evaluator() {
    let doc = ref_bomb(20);
    assert!(serde_json::to_string(&doc).unwrap().len() < 1300);
    let e = refused(&doc);
    assert!(e.pointer.starts_with("/$evaluators/e"), "{e}");
    let name = e.pointer.trim_start_matches("/$evaluators/");
    assert!(e.message.contains(&format!("evaluator \"{name}\"")), "{e}");
    assert!(e.message.contains("limit"), "{e}");
    // The first evaluator over the limit: every smaller one is within it.
    let n: usize = name[1..].parse().unwrap();
    assert!(n > 5 && n < 20, "{e}");
    lenient(&ref_bomb(n - 1));
}

#[test]
fn shared_evaluators_evaluate_like_inlined_ones() {
    // Within the limits, a shared evaluator answers exactly like its copy.
    let shared = strict(&ref_bomb(8));
    let mut inlined = json!({"==": [{"var": "tier"}, "gold"]});
    for _ in 0..8 {
        inlined = json!({"and": [inlined.clone(), inlined]});
    }
    let copy = strict(&json!({"flags": {"bomb": {
        "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [inlined, "on", "off"]}
    }}}));
    for ctx in [json!({"tier": "gold"}), json!({"tier": "tin"}), json!({})] {
        let a = eval_json(&shared, "bomb", &ctx, 0);
        assert_eq!(a, eval_json(&copy, "bomb", &ctx, 0), "{ctx}");
    }
    assert_eq!(
        eval_json(&shared, "bomb", &json!({"tier": "gold"}), 0)["variant"],
        "on"
    );
    // The stored document keeps the `$ref`s as written.
    assert_eq!(
        shared.to_document()["$evaluators"],
        ref_bomb(8)["$evaluators"]
    );
}

#[test]
fn a_long_ref_chain_is_refused_before_it_overflows_the_stack() {
    let mut evaluators = Map::new();
    evaluators.insert("c0".into(), json!({"var": "x"}));
    for n in 1..5_000 {
        evaluators.insert(
            format!("c{n}"),
            json!({"!": {"$ref": format!("c{}", n - 1)}}),
        );
    }
    let doc = json!({
        "flags": {"chain": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"$ref": "c4999"}}},
        "$evaluators": evaluators
    });
    let e = refused(&doc);
    assert!(e.pointer.starts_with("/$evaluators/c"), "{e}");
    assert!(e.message.contains("levels"), "{e}");

    // A chain just within the limit loads and evaluates (on a test
    // thread's stack, in a debug build).
    let mut evaluators = Map::new();
    evaluators.insert("c0".into(), json!({"var": "x"}));
    for n in 1..60 {
        evaluators.insert(
            format!("c{n}"),
            json!({"!": {"$ref": format!("c{}", n - 1)}}),
        );
    }
    let doc = json!({
        "flags": {"chain": {"state": "ENABLED", "variants": {"true": 1, "false": 0},
            "defaultVariant": "false", "targeting": {"!": {"$ref": "c59"}}}},
        "$evaluators": evaluators
    });
    let set = strict(&doc);
    // 61 negations of x.
    assert_eq!(
        eval_json(&set, "chain", &json!({"x": true}), 0)["variant"],
        "true"
    );
    assert_eq!(
        eval_json(&set, "chain", &json!({"x": false}), 0)["variant"],
        "false"
    );
}

#[test]
fn a_flag_referring_to_a_deep_evaluator_from_deep_inside_is_refused() {
    // Each part is within the depth limit; together they are not.
    let mut deep = json!({"var": "x"});
    for _ in 0..60 {
        deep = json!({"!": deep});
    }
    let mut targeting = json!({"$ref": "deep"});
    for _ in 0..70 {
        targeting = json!({"!": targeting});
    }
    let doc = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"true": 1, "false": 0},
            "defaultVariant": "false", "targeting": targeting}},
        "$evaluators": {"deep": deep}
    });
    let e = refused(&doc);
    assert_eq!(e.pointer, "/flags/f/targeting", "{e}");
}

#[test]
fn growing_text_through_refs_is_refused() {
    // `cat` doubling a 4 KB literal: gigabytes of text from a small file.
    let mut evaluators = Map::new();
    evaluators.insert("t0".into(), json!({"cat": ["x".repeat(4096)]}));
    for n in 1..=16 {
        let prev = format!("t{}", n - 1);
        evaluators.insert(
            format!("t{n}"),
            json!({"cat": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    let doc = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a",
            "targeting": {"if": [{"==": [{"$ref": "t16"}, ""]}, "a", null]}}},
        "$evaluators": evaluators
    });
    let e = refused(&doc);
    assert!(e.pointer.starts_with("/$evaluators/t"), "{e}");
}

#[test]
fn nested_iteration_over_literal_arrays_is_refused() {
    let data: Vec<u32> = (0..1000).collect();
    let rule = json!({"some": [data, {"some": [data, {"==": [{"var": ""}, -1]}]}]});
    let doc = json!({"flags": {"f": {"state": "ENABLED", "variants": {"true": 1, "false": 0},
        "defaultVariant": "false", "targeting": rule}}});
    let e = refused(&doc);
    assert_eq!(e.pointer, "/flags/f/targeting", "{e}");
    assert!(Rule::compile(&rule).is_err());
}

#[test]
fn a_set_of_many_flags_sharing_one_expensive_evaluator_is_refused() {
    // Each flag is within the rule limit, the bulk evaluation is not.
    let data: Vec<u32> = (0..10_000).collect();
    let mut flags = Map::new();
    for i in 0..200 {
        flags.insert(
            format!("f{i}"),
            json!({"state": "ENABLED", "variants": {"true": 1, "false": 0},
                "defaultVariant": "false", "targeting": {"$ref": "big"}}),
        );
    }
    let doc = json!({"flags": flags, "$evaluators": {"big": {"in": [{"var": "n"}, data]}}});
    let e = refused(&doc);
    assert_eq!(e.pointer, "/flags", "{e}");
}

#[test]
fn the_context_cannot_make_an_evaluation_run_away() {
    // `cat` of the same context attribute, doubled through refs: cheap
    // statically, but the context decides how long the text is.
    let mut evaluators = Map::new();
    evaluators.insert("s0".into(), json!({"var": "bio"}));
    for n in 1..=10 {
        let prev = format!("s{}", n - 1);
        evaluators.insert(
            format!("s{n}"),
            json!({"cat": [{"$ref": prev}, {"$ref": prev}]}),
        );
    }
    let doc = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
            "targeting": {"if": [{"in": ["needle", {"$ref": "s10"}]}, "b", "a"]}}},
        "$evaluators": evaluators
    });
    let set = strict(&doc);
    let short = eval_json(&set, "f", &json!({"bio": "hay"}), 0);
    assert_eq!(short["variant"], "a");
    assert_eq!(short["reason"], "TARGETING_MATCH");
    let long = json!({"bio": "x".repeat(1 << 20)});
    let r = set.evaluate("f", &EvalContext::new(&long, 0));
    assert_eq!(
        r.error.map(|e| e.code),
        Some(crate::flags::ErrorCode::General)
    );
    // Eligibility rules too: no match rather than a runaway.
    let mut rule = json!({"var": "bio"});
    for _ in 0..10 {
        rule = json!({"cat": [rule.clone(), rule]});
    }
    let rule = Rule::compile(&json!({"in": ["needle", rule]})).unwrap();
    assert!(!rule.matches(&EvalContext::new(&long, 0)));
    assert!(rule.matches(&EvalContext::new(&json!({"bio": "needle"}), 0)));
}

#[test]
fn warnings_still_see_through_refs() {
    // A `$ref` to a constant is checked like the constant it stands for.
    let doc = json!({
        "flags": {"f": {"state": "ENABLED", "variants": {"true": 1, "false": 0},
            "defaultVariant": "false",
            "targeting": {"sem_ver": [{"var": "v"}, "=", {"$ref": "ver"}]}}},
        "$evaluators": {"ver": "not-a-version"}
    });
    let (_, warnings) = FlagSet::from_value(&doc, LoadMode::Lenient).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.pointer == "/flags/f/targeting/sem_ver/2"
                && w.message.contains("not a semantic version")),
        "{warnings:?}"
    );
}

#[test]
fn sets_know_whether_their_answers_depend_on_the_clock() {
    let plain = strict(&ref_bomb(3));
    assert!(!plain.reads_clock());
    let timed = strict(&json!({
        "flags": {
            "launch": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "launched"}, "on", "off"]}},
            "plain": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
        },
        "$evaluators": {"launched": {">=": [{"var": "$flagd.timestamp"}, 1_900_000_000]}}
    }));
    assert!(timed.reads_clock());
    assert!(timed.get("launch").unwrap().reads_clock());
    assert!(!timed.get("plain").unwrap().reads_clock());
    // A path computed at evaluation might name the clock.
    let dynamic = Rule::compile(&json!({"var": {"cat": ["$flagd.", {"var": "which"}]}})).unwrap();
    assert!(dynamic.reads_clock());
    assert!(!Rule::compile(&json!({"var": "$flagd.flagKey"}))
        .unwrap()
        .reads_clock());
}
