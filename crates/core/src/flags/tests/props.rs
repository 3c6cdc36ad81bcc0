//! Property tests: determinism, bucketing bounds and proportions, and
//! document round trips for generated flags.

use super::{realistic_document, strict};
use crate::flags::murmur3::bucket;
use crate::flags::{EvalContext, FlagSet, LoadMode, Reason};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        "[a-zA-Z0-9 ._-]{0,10}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        (-100i32..100).prop_map(|i| Value::from(f64::from(i))),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(|i| Value::from(f64::from(i))),
        proptest::num::f64::NORMAL.prop_map(Value::from),
        Just(Value::from(0.0)),
        Just(Value::from(0)),
    ]
}

/// A variant value of the given type (0 bool, 1 string, 2 number, 3 object).
fn variant_value(ty: u8) -> BoxedStrategy<Value> {
    match ty {
        0 => any::<bool>().prop_map(Value::Bool).boxed(),
        1 => "[a-zA-Z0-9 ._-]{0,10}".prop_map(Value::String).boxed(),
        2 => number().boxed(),
        _ => proptest::collection::btree_map("[a-z]{1,5}", scalar(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed(),
    }
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::btree_map("[a-zA-Z]{1,8}", scalar(), 0..3)
}

#[derive(Debug, Clone)]
struct CohortSpec {
    attribute: &'static str,
    values: Vec<Value>,
    variant: Index,
}

fn cohort() -> impl Strategy<Value = CohortSpec> {
    (
        prop_oneof![Just("community"), Just("user.plan"), Just("targetingKey")],
        proptest::collection::vec(
            prop_oneof![
                "[a-z-]{1,6}".prop_map(Value::String),
                (0i64..5).prop_map(Value::from)
            ],
            0..3,
        ),
        any::<Index>(),
    )
        .prop_map(|(attribute, values, variant)| CohortSpec {
            attribute,
            values,
            variant,
        })
}

/// A valid flag in canonical form (what `to_document` produces).
fn flag() -> impl Strategy<Value = Value> {
    (0u8..4)
        .prop_flat_map(|ty| {
            (
                proptest::collection::btree_map("[a-z][a-z0-9-]{0,6}", variant_value(ty), 1..5),
                any::<bool>(),
                0u8..3,
                any::<Index>(),
                metadata(),
                0u8..6,
                (1u32..100, 0u32..100),
                proptest::collection::vec(cohort(), 0..3),
            )
        })
        .prop_map(
            |(variants, enabled, default_kind, default_pick, meta, rule, (w0, w1), cohorts)| {
                let names: Vec<&String> = variants.keys().collect();
                let first = names[0].clone();
                let last = names[names.len() - 1].clone();
                let mut f = Map::new();
                f.insert(
                    "state".into(),
                    json!(if enabled { "ENABLED" } else { "DISABLED" }),
                );
                f.insert(
                    "variants".into(),
                    Value::Object(variants.clone().into_iter().collect()),
                );
                match default_kind {
                    0 => {}
                    1 => {
                        f.insert("defaultVariant".into(), Value::Null);
                    }
                    _ => {
                        f.insert("defaultVariant".into(), json!(default_pick.get(&names)));
                    }
                }
                let targeting = match rule {
                    0 => None,
                    1 => Some(json!({})),
                    2 => Some(
                        json!({"if": [{"in": [{"var": "community"}, ["a", "b"]]}, first, null]}),
                    ),
                    3 => Some(json!({"fractional": [[first, w0], [last, w1]]})),
                    4 => Some(json!({"if": [{"$ref": "staff"}, first, last]})),
                    _ => Some(json!({"fractional": [{"var": "email"}, [first, w0], [last, w1]]})),
                };
                if let Some(t) = targeting {
                    f.insert("targeting".into(), t);
                }
                if !meta.is_empty() {
                    f.insert("metadata".into(), Value::Object(meta.into_iter().collect()));
                }
                if !cohorts.is_empty() {
                    let list = cohorts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            json!({
                                "name": format!("cohort-{i}"),
                                "attribute": c.attribute,
                                "values": c.values,
                                "variant": c.variant.get(&names),
                            })
                        })
                        .collect();
                    f.insert("cohorts".into(), Value::Array(list));
                }
                Value::Object(f)
            },
        )
}

fn document() -> impl Strategy<Value = Value> {
    (
        proptest::collection::btree_map("[a-z][a-z0-9_.-]{0,10}", flag(), 1..5),
        metadata(),
    )
        .prop_map(|(flags, meta)| {
            let mut doc = Map::new();
            doc.insert("flags".into(), Value::Object(flags.into_iter().collect()));
            doc.insert(
                "$evaluators".into(),
                json!({"staff": {"ends_with": [{"var": "email"}, "@commonlab.org"]}}),
            );
            if !meta.is_empty() {
                doc.insert("metadata".into(), Value::Object(meta.into_iter().collect()));
            }
            Value::Object(doc)
        })
}

fn context() -> impl Strategy<Value = Value> {
    (
        proptest::option::of("[a-zA-Z0-9@._-]{0,24}"),
        proptest::option::of(prop_oneof![
            Just("a"),
            Just("b"),
            Just("wiki-a"),
            Just("coop-b"),
            Just("zzz")
        ]),
        proptest::option::of("[a-z]{1,8}@(commonlab|example)\\.org"),
        any::<i64>(),
    )
        .prop_map(|(tk, community, email, n)| {
            let mut m = Map::new();
            if let Some(tk) = tk {
                m.insert("targetingKey".into(), json!(tk));
            }
            if let Some(c) = community {
                m.insert("community".into(), json!(c));
            }
            if let Some(e) = email {
                m.insert("email".into(), json!(e));
            }
            m.insert("n".into(), json!(n));
            Value::Object(m)
        })
}

proptest! {
    #[test]
    fn generated_documents_round_trip(doc in document()) {
        let set = FlagSet::from_value(&doc, LoadMode::Strict)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{doc:#}")))?
            .0;
        let out = set.to_document();
        prop_assert_eq!(&out, &doc);
        let again = FlagSet::from_value(&out, LoadMode::Strict)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .0
            .to_document();
        prop_assert_eq!(&again, &doc);
        // Through text as well.
        let text = serde_json::to_string(&out).unwrap();
        let from_text = FlagSet::from_json_str(&text, LoadMode::Strict)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .0
            .to_document();
        prop_assert_eq!(from_text, doc);
    }

    #[test]
    fn evaluation_is_deterministic_and_lands_on_a_variant(doc in document(), ctx in context()) {
        let a = strict(&doc);
        let b = strict(&doc);
        let ectx = EvalContext::new(&ctx, 1_700_000_000);
        for key in a.keys() {
            let r1 = a.evaluate(key, &ectx);
            let r2 = a.evaluate(key, &ectx);
            let r3 = b.evaluate(key, &ectx);
            prop_assert_eq!(&r1, &r2);
            prop_assert_eq!(r1.value, r3.value);
            prop_assert_eq!(r1.variant, r3.variant);
            prop_assert_eq!(r1.reason, r3.reason);
            // A valid document gives no errors (a split without a
            // targeting key is DEFAULT, as in flagd).
            prop_assert!(r1.error.is_none(), "{:?}", r1);
            let flag = a.get(key).unwrap();
            if let Some(v) = r1.variant {
                prop_assert_eq!(flag.variant(v), r1.value);
            }
        }
    }

    #[test]
    fn realistic_flag_is_deterministic(ctx in context()) {
        let doc = realistic_document(json!({"control": "c", "small": "s", "big": "b", "off": "o"}));
        let (a, b) = (strict(&doc), strict(&doc));
        let ectx = EvalContext::new(&ctx, 0);
        let r = a.evaluate("realistic", &ectx);
        prop_assert_eq!(&r, &a.evaluate("realistic", &ectx));
        prop_assert_eq!(r.variant, b.evaluate("realistic", &ectx).variant);
        let in_list = matches!(ctx["community"].as_str(), Some("wiki-a" | "coop-b"));
        if in_list && ctx.get("targetingKey").is_some() {
            prop_assert_eq!(r.reason, Reason::Split);
            prop_assert!(matches!(r.variant, Some("control" | "small" | "big")));
        } else if in_list {
            // flagd: no targeting key to split on, so the default variant.
            prop_assert_eq!(r.error, None);
            prop_assert_eq!(r.reason, Reason::Default);
            prop_assert_eq!(r.variant, Some("off"));
        } else {
            prop_assert_eq!(r.variant, Some("off"));
        }
    }

    #[test]
    fn bucket_is_always_within_the_total_weight(hash in any::<u32>(), total in 1u32..=(i32::MAX as u32)) {
        let b = bucket(hash, total);
        prop_assert!(b < total);
        if hash < u32::MAX {
            prop_assert!(bucket(hash + 1, total) >= b);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn fractional_respects_the_weights(weights in proptest::collection::vec(0u32..50, 2..6), salt in "[a-z]{0,6}") {
        let total: u32 = weights.iter().sum();
        prop_assume!(total > 0);
        let buckets: Vec<Value> = weights.iter().enumerate().map(|(i, w)| json!([format!("v{i}"), w])).collect();
        let variants: Map<String, Value> = (0..weights.len()).map(|i| (format!("v{i}"), json!(i))).collect();
        let doc = json!({"flags": {"split": {
            "state": "ENABLED", "variants": variants, "defaultVariant": "v0",
            "targeting": {"fractional": buckets}
        }}});
        let set = FlagSet::from_value(&doc, LoadMode::Lenient).unwrap().0;
        const SAMPLES: usize = 4000;
        let mut counts = vec![0usize; weights.len()];
        for i in 0..SAMPLES {
            let ctx = json!({"targetingKey": format!("{salt}-subject-{i}")});
            let r = set.evaluate("split", &EvalContext::new(&ctx, 0));
            prop_assert_eq!(r.reason, Reason::Split);
            let v: usize = r.variant.unwrap()[1..].parse().unwrap();
            counts[v] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let share = counts[i] as f64 / SAMPLES as f64;
            let want = f64::from(*w) / f64::from(total);
            if *w == 0 {
                prop_assert_eq!(counts[i], 0);
            }
            prop_assert!((share - want).abs() < 0.045, "bucket {} got {:.3}, weight share {:.3}", i, share, want);
        }
    }
}
