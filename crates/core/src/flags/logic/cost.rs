//! What evaluating a compiled rule can cost, and the limits a document must
//! stay within (documented in `docs/security.md`, section "Flags").
//!
//! Shared evaluators are compiled once and referenced ([`super::Expr::Ref`]),
//! so a document's compiled size grows with its text. What sharing cannot
//! remove is the work: a rule that refers to an evaluator twice evaluates it
//! twice, and `eN = {"and": [{"$ref": "eN-1"}, {"$ref": "eN-1"}]}` doubles
//! that work at every level. So every rule gets a static *cost*: the number
//! of nodes one evaluation may visit with every `$ref` counted as often as
//! it is reached, literal text and arrays counted by size, and the body of
//! an array operator (`map`, `filter`, `all`, `some`, `none`, `reduce`)
//! counted once per element of its data. Documents whose rules cost more
//! than [`MAX_RULE_COST`] (or [`MAX_SET_COST`] together), or nest deeper
//! than [`MAX_RULE_DEPTH`], are refused.
//!
//! What the static cost cannot see is the evaluation context (a `var` may
//! name a long string or array), so evaluation also carries a budget of
//! *fuel* ([`fuel_for`]), spent on every node and on the bytes and elements
//! operators copy or scan; a flag that runs out fails with GENERAL.

use super::{Expr, Op, VarPath, Weight};
use serde_json::Value;

/// Deepest nesting of a rule: operators, literal arrays and `$ref`s (each
/// `$ref` is a level, plus the evaluator's own nesting). The same as
/// serde_json's nesting limit, so only `$ref` chains reach it.
pub const MAX_RULE_DEPTH: usize = 128;

/// Most cost units one rule (a flag's targeting, a shared evaluator, a
/// trial's eligibility rule) may have.
pub const MAX_RULE_COST: u64 = 50_000;

/// Most cost units all the flags of a set may have together (what a bulk
/// evaluation can cost).
pub const MAX_SET_COST: u64 = 500_000;

/// Literal text counts one unit per this many bytes (plus one per value).
const BYTES_PER_UNIT: u64 = 16;

/// Fuel every evaluation gets whatever its cost: room for the context.
const FUEL_BASE: u64 = 10_000;

/// Fuel per cost unit of the rule.
const FUEL_PER_UNIT: u64 = 16;

/// The fuel of one evaluation of a rule of `cost` units.
pub(crate) fn fuel_for(cost: u64) -> u64 {
    FUEL_BASE.saturating_add(cost.saturating_mul(FUEL_PER_UNIT))
}

/// Fuel for `bytes` of text copied or scanned.
pub(crate) fn text_units(bytes: usize) -> u64 {
    bytes as u64 / BYTES_PER_UNIT
}

/// A rule's static cost and depth, and whether its result may depend on
/// the time of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) units: u64,
    pub(crate) depth: usize,
    /// It reads `$flagd.timestamp` (or a `var` path computed at evaluation,
    /// which might name it).
    pub(crate) reads_clock: bool,
}

impl Cost {
    const LEAF: Cost = Cost {
        units: 1,
        depth: 1,
        reads_clock: false,
    };
}

/// The cost of a compiled expression. Walks the expression's own nodes
/// once; a `$ref` contributes the cost stored with its evaluator.
pub(crate) fn measure(e: &Expr) -> Cost {
    match e {
        Expr::Null | Expr::Bool(_) | Expr::Num(_) => Cost::LEAF,
        Expr::Str(s) => Cost {
            units: 1 + text_units(s.len()),
            ..Cost::LEAF
        },
        Expr::Json(v) => Cost {
            units: json_units(v),
            ..Cost::LEAF
        },
        Expr::Array(items) => node(items.iter().map(measure)),
        Expr::Var(var) => {
            let (path, reads_clock) = match &var.path {
                VarPath::Static(segs) => (
                    None,
                    matches!(&segs[..], [first, second] if &**first == "$flagd" && &**second == "timestamp"),
                ),
                VarPath::Dynamic(e) => (Some(measure(e)), true),
            };
            let mut cost = node(path.into_iter().chain(var.default.as_ref().map(measure)));
            cost.reads_clock |= reads_clock;
            cost
        }
        Expr::Op(op, args) => {
            let parts: Vec<Cost> = args.iter().map(measure).collect();
            let mut cost = node(parts.iter().copied());
            if let (Some(data), Some(body)) = (parts.first(), parts.get(1)) {
                // The body runs once per element; a data expression cannot
                // yield more elements than it costs (context arrays aside,
                // which fuel covers). `reduce` may also copy its growing
                // accumulator on every step.
                let per_element = match op {
                    Op::Map | Op::Filter | Op::All | Op::Some | Op::None => Some(body.units),
                    Op::Reduce => Some(body.units.saturating_add(data.units)),
                    _ => None,
                };
                if let Some(per) = per_element {
                    cost.units = cost
                        .units
                        .saturating_sub(body.units)
                        .saturating_add(data.units.saturating_mul(per));
                }
            }
            cost
        }
        Expr::Fractional(f) => {
            let by = f.bucket_by.as_ref().map(measure);
            let buckets = f.buckets.iter().flat_map(|b| {
                let w = match &b.weight {
                    Weight::Const(_) => None,
                    Weight::Dyn(e) => Some(measure(e)),
                };
                std::iter::once(measure(&b.variant)).chain(w)
            });
            node(by.into_iter().chain(buckets))
        }
        Expr::Ref(shared) => Cost {
            units: shared.cost.units.saturating_add(1),
            depth: shared.cost.depth.saturating_add(1),
            reads_clock: shared.cost.reads_clock,
        },
    }
}

/// One node over its children.
fn node(children: impl Iterator<Item = Cost>) -> Cost {
    let mut cost = Cost::LEAF;
    for c in children {
        cost.units = cost.units.saturating_add(c.units);
        cost.depth = cost.depth.max(c.depth.saturating_add(1));
        cost.reads_clock |= c.reads_clock;
    }
    cost
}

/// A literal's size in units: one per value, plus its text.
fn json_units(v: &Value) -> u64 {
    match v {
        Value::String(s) => 1 + text_units(s.len()),
        Value::Array(items) => items
            .iter()
            .fold(1u64, |n, x| n.saturating_add(json_units(x))),
        Value::Object(m) => m.iter().fold(1u64, |n, (k, x)| {
            n.saturating_add(text_units(k.len()))
                .saturating_add(json_units(x))
        }),
        _ => 1,
    }
}
