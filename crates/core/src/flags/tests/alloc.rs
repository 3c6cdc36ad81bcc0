//! Zero-allocation evaluation, checked with a counting global allocator.
//!
//! `unsafe` is denied workspace-wide; it is allowed in this file only,
//! because implementing `GlobalAlloc` requires it. The allocator forwards
//! every call to `System` unchanged and counts allocations per thread (so
//! tests running in parallel do not disturb each other).
#![allow(unsafe_code)]

use super::{realistic_document, strict};
use crate::flags::{EvalContext, FlagValue, Reason};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

fn count() {
    // `try_with`: the thread-local may already be gone during thread teardown.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    (ALLOCATIONS.with(Cell::get) - before, r)
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![1u8; 32]);
    assert_eq!(n, 1);
    drop(v);
}

fn contexts() -> Vec<Value> {
    vec![
        json!({"targetingKey": "user-1", "community": "wiki-a"}),
        json!({"targetingKey": "someone-else@example.org", "community": "social-c", "lang": "en"}),
        json!({"targetingKey": "user-3", "community": "elsewhere"}),
        json!({"targetingKey": "user-4"}),
        json!({"community": "coop-b"}),
        json!({}),
    ]
}

#[test]
fn realistic_flag_evaluates_without_allocating() {
    let variant_sets = [
        json!({"control": "control", "small": "small", "big": "big", "off": "off"}),
        json!({"control": false, "small": true, "big": true, "off": false}),
        json!({"control": 0, "small": 25, "big": 100, "off": -1}),
        json!({"control": 0.0, "small": 0.25, "big": 1.0, "off": -1.5}),
    ];
    for variants in variant_sets {
        let set = strict(&realistic_document(variants.clone()));
        for ctx in contexts() {
            let ectx = EvalContext::new(&ctx, 1_700_000_000);
            // Warm up (nothing is lazily initialised, but be fair).
            let _ = set.evaluate("realistic", &ectx);
            let (n, r) = allocations(|| set.evaluate("realistic", &ectx));
            assert!(r.error.is_none(), "{ctx}: {r:?}");
            assert_eq!(n, 0, "{n} allocations evaluating {variants} with {ctx}");
        }
        // And the split really happened for someone.
        let ctx = json!({"targetingKey": "user-1", "community": "wiki-a"});
        let r = set.evaluate("realistic", &EvalContext::new(&ctx, 0));
        assert_eq!(r.reason, Reason::Split);
        assert!(matches!(
            r.value,
            Some(
                FlagValue::String(_) | FlagValue::Bool(_) | FlagValue::Int(_) | FlagValue::Float(_)
            )
        ));
    }
}

#[test]
fn other_common_rules_evaluate_without_allocating() {
    let doc = json!({
        "flags": {
            "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "semver": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
                "targeting": {"if": [{"sem_ver": [{"var": "app.version"}, ">=", "2.1.0"]}, "new", "old"]}},
            "cat-bucket": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["a", 1], ["b", 1]]}},
            "cohorts": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "cohorts": [{"name": "pilot", "attribute": "community", "values": ["wiki-a", "coop-b"], "variant": "on"}],
                "targeting": {"if": [{"ends_with": [{"var": "email"}, "@commonlab.org"]}, "on", null]}},
            "arith": {"state": "ENABLED", "variants": {"true": "yes", "false": "no"}, "defaultVariant": "false",
                "targeting": {"and": [{">=": [{"var": "age"}, 18]}, {"<": [{"var": "$flagd.timestamp"}, 1800000000]}, {"!": {"var": "banned"}}]}},
            "disabled": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
        },
        "metadata": {"flagSetId": "alloc"}
    });
    let set = strict(&doc);
    let ctxs = [
        json!({"targetingKey": "k1", "app": {"version": "2.3.0"}, "email": "ada@commonlab.org", "community": "wiki-a", "age": 30}),
        json!({"targetingKey": "k2", "app": {"version": "1.9.9-beta.1"}, "email": "bob@example.org", "age": 12, "banned": true}),
        json!({"app": {"version": 3}, "community": "nowhere"}),
        json!({}),
    ];
    for ctx in &ctxs {
        let ectx = EvalContext::new(ctx, 1_700_000_000);
        for key in [
            "static",
            "semver",
            "cat-bucket",
            "cohorts",
            "arith",
            "disabled",
            "not-a-flag",
        ] {
            let _ = set.evaluate(key, &ectx);
            let (n, r) = allocations(|| set.evaluate(key, &ectx));
            assert_eq!(n, 0, "{n} allocations evaluating {key} with {ctx}: {r:?}");
        }
    }
}
