//! Evaluation benchmark (hand-rolled: no criterion).
//!
//! `cargo bench -p commonlab-core`. For each case: warm up, then time 5M
//! evaluations in 50 batches of 100k and report the minimum and median
//! nanoseconds per evaluation, and allocations per evaluation counted by a
//! counting global allocator.
//!
//! `unsafe` is denied workspace-wide; it is allowed in this file only because
//! implementing `GlobalAlloc` requires it (every call forwards to `System`).
#![allow(unsafe_code)]

use commonlab_core::flags::{EvalContext, FlagSet, LoadMode};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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

const BATCHES: usize = 50;
const BATCH: usize = 100_000;
const WARMUP: usize = 500_000;
const CONTEXTS: usize = 1024;

fn realistic(variants: Value) -> Value {
    json!({
        "state": "ENABLED",
        "variants": variants,
        "defaultVariant": "off",
        "targeting": {"if": [
            {"in": [{"var": "community"}, ["wiki-a", "coop-b", "social-c"]]},
            {"fractional": [["control", 50], ["small", 25], ["big", 25]]},
            "off"
        ]}
    })
}

/// 100 unrelated flags around the measured ones, so the key lookup is not trivial.
fn document() -> Value {
    let mut flags = serde_json::Map::new();
    for i in 0..100 {
        flags.insert(
            format!("filler-{i:03}"),
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        );
    }
    flags.insert(
        "realistic-string".into(),
        realistic(json!({"control": "control", "small": "small", "big": "big", "off": "off"})),
    );
    flags.insert(
        "realistic-bool".into(),
        realistic(json!({"control": false, "small": true, "big": true, "off": false})),
    );
    flags.insert(
        "realistic-number".into(),
        realistic(json!({"control": 0, "small": 25, "big": 100, "off": -1})),
    );
    flags.insert(
        "static".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
    );
    flags.insert(
        "sem-ver".into(),
        json!({"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
            "targeting": {"if": [{"sem_ver": [{"var": "app.version"}, ">=", "2.1.0"]}, "new", "old"]}}),
    );
    json!({"flags": flags, "metadata": {"flagSetId": "bench"}})
}

fn contexts() -> Vec<Value> {
    let communities = ["wiki-a", "coop-b", "social-c", "elsewhere"];
    let versions = ["2.3.1", "1.9.0", "2.1.0-beta.2", "v3.0.0"];
    (0..CONTEXTS)
        .map(|i| {
            json!({
                "targetingKey": format!("user-{i:05}@example.org"),
                "community": communities[i % communities.len()],
                "app": {"version": versions[(i / 4) % versions.len()], "platform": "android"},
                "lang": "en",
            })
        })
        .collect()
}

fn bench(set: &FlagSet, key: &str, ctxs: &[EvalContext<'_>]) {
    let mask = ctxs.len() - 1;
    let mut sink = 0usize;
    for i in 0..WARMUP {
        let r = set.evaluate(black_box(key), &ctxs[i & mask]);
        sink = sink.wrapping_add(r.variant.map_or(0, str::len));
    }
    let mut per_eval = Vec::with_capacity(BATCHES);
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    for b in 0..BATCHES {
        let start = Instant::now();
        for i in 0..BATCH {
            let r = set.evaluate(black_box(key), &ctxs[(b * BATCH + i) & mask]);
            sink = sink.wrapping_add(r.variant.map_or(0, str::len));
        }
        per_eval.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    black_box(sink);
    per_eval.sort_by(f64::total_cmp);
    let evaluations = (BATCHES * BATCH) as f64;
    println!(
        "{key:<18} min {:>7.1} ns/eval   median {:>7.1} ns/eval   {:.3} allocs/eval   ({} evaluations)",
        per_eval[0],
        per_eval[per_eval.len() / 2],
        allocations as f64 / evaluations,
        BATCHES * BATCH
    );
}

const TRIAL: &str = r#"
key = "bench-trial"
title = "t"
hypothesis = "h"
owner = "o"
flag = "realistic-string"
eligibility = '{"in": [{"var": "community"}, ["wiki-a", "coop-b", "social-c"]]}'
[links]
wp2_parameter = "p"
wp3_feature = "f"
[[arms]]
variant = "control"
weight = 2
control = true
[[arms]]
variant = "small"
weight = 1
[[arms]]
variant = "big"
weight = 1
[unit]
kind = "user"
[design]
kind = "hash"
[metrics.primary]
name = "m"
kind = "proportion"
events = ["e"]
direction = "increase"
[analysis]
alpha = 0.05
sidedness = "two-sided"
mde = 0.05
power = 0.8
horizon = "fixed"
correction = "none"
[analysis.decision]
ship = "s"
iterate = "i"
roll_back = "r"
[schedule]
start = 2023-01-01T00:00:00Z
end = 2024-01-01T00:00:00Z
"#;

/// The flag evaluation plus what the server does in process for a running
/// hash trial: the unit id, eligibility, layer and ramp, the arm.
fn bench_trial(set: &FlagSet, ctxs: &[EvalContext<'_>]) {
    use commonlab_core::experiments::{hash_arm, parse_trial};
    let spec = parse_trial(TRIAL, "bench.toml").expect("bench trial parses");
    let key = "realistic-string";
    let mask = ctxs.len() - 1;
    let mut sink = 0usize;
    let one = |ctx: &EvalContext<'_>| {
        let r = set.evaluate(black_box(key), ctx);
        let mut variant = r.variant;
        if let Some(unit) = ctx.targeting_key() {
            let now = ctx.now_unix_secs();
            if spec.in_ramp(unit, now) && spec.is_eligible(ctx) && spec.in_layer(unit) {
                variant = Some(&hash_arm(&spec, unit).variant);
            }
        }
        variant.map_or(0, str::len)
    };
    for i in 0..WARMUP {
        sink = sink.wrapping_add(one(&ctxs[i & mask]));
    }
    let mut per_eval = Vec::with_capacity(BATCHES);
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    for b in 0..BATCHES {
        let start = Instant::now();
        for i in 0..BATCH {
            sink = sink.wrapping_add(one(&ctxs[(b * BATCH + i) & mask]));
        }
        per_eval.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    black_box(sink);
    per_eval.sort_by(f64::total_cmp);
    println!(
        "{:<18} min {:>7.1} ns/eval   median {:>7.1} ns/eval   {:.3} allocs/eval   ({} evaluations)",
        "hash-trial",
        per_eval[0],
        per_eval[per_eval.len() / 2],
        allocations as f64 / (BATCHES * BATCH) as f64,
        BATCHES * BATCH
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects cases.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (set, warnings) =
        FlagSet::from_value(&document(), LoadMode::Strict).expect("bench document loads");
    assert!(warnings.is_empty());
    let values = contexts();
    let ctxs: Vec<EvalContext<'_>> = values
        .iter()
        .map(|v| EvalContext::new(v, 1_700_000_000))
        .collect();
    println!(
        "{} flags; contexts rotate over {CONTEXTS} subjects",
        set.len()
    );
    for key in [
        "realistic-string",
        "realistic-bool",
        "realistic-number",
        "static",
        "sem-ver",
    ] {
        if filter.as_deref().is_some_and(|f| !key.contains(f)) {
            continue;
        }
        bench(&set, key, &ctxs);
    }
    if filter.as_deref().is_none_or(|f| "hash-trial".contains(f)) {
        bench_trial(&set, &ctxs);
    }
}
