//! Targeting rules: a JSONLogic subset plus flagd's custom operators, compiled
//! once at load time into an expression tree ([`Expr`]) that is evaluated
//! without re-parsing and, for ordinary rules, without allocating.

mod compile;
mod cost;
mod eval;
pub(crate) mod val;

pub(crate) use compile::Compiler;
pub(crate) use cost::fuel_for;
pub use cost::{MAX_RULE_COST, MAX_RULE_DEPTH, MAX_SET_COST};
pub(crate) use eval::{lookup_path, Env, Fuel, Origin};

use serde_json::Value;
use std::sync::Arc;

/// A compiled targeting expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Null,
    Bool(bool),
    Num(f64),
    Str(Box<str>),
    /// A constant array, or an object that is not an operation.
    Json(Box<Value>),
    /// An array literal with operations inside (evaluated element-wise).
    Array(Box<[Expr]>),
    Var(Box<Var>),
    Op(Op, Box<[Expr]>),
    Fractional(Box<Fractional>),
    /// A `$ref` to a shared evaluator, compiled once and shared by every
    /// rule that refers to it (never copied).
    Ref(Arc<Shared>),
}

/// A compiled `$evaluators` entry.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) expr: Expr,
    /// What evaluating it costs, `$ref`s included (see [`cost`]).
    pub(crate) cost: cost::Cost,
}

impl Expr {
    fn is_const(&self) -> bool {
        matches!(
            self,
            Expr::Null | Expr::Bool(_) | Expr::Num(_) | Expr::Str(_) | Expr::Json(_)
        )
    }

    /// The expression a `$ref` stands for (itself when it is not one).
    fn resolved(&self) -> &Expr {
        let mut e = self;
        while let Expr::Ref(shared) = e {
            e = &shared.expr;
        }
        e
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Var {
    path: VarPath,
    default: Option<Expr>,
}

#[derive(Debug, Clone)]
enum VarPath {
    /// Path split on dots at compile time; empty = the whole data object.
    Static(Box<[Box<str>]>),
    /// Path computed at evaluation time.
    Dynamic(Expr),
}

/// Operators with plain evaluated arguments (plus the array operators, which
/// evaluate their second argument once per element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    If,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Not,
    NotNot,
    And,
    Or,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Cat,
    Substr,
    Merge,
    Missing,
    MissingSome,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
    Map,
    Filter,
    Reduce,
    All,
    Some,
    None,
    StartsWith,
    EndsWith,
    SemVer,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "if" | "?:" => Op::If,
            "==" => Op::Eq,
            "===" => Op::StrictEq,
            "!=" => Op::Ne,
            "!==" => Op::StrictNe,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "and" => Op::And,
            "or" => Op::Or,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "merge" => Op::Merge,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "min" => Op::Min,
            "max" => Op::Max,
            "map" => Op::Map,
            "filter" => Op::Filter,
            "reduce" => Op::Reduce,
            "all" => Op::All,
            "some" => Op::Some,
            "none" => Op::None,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "sem_ver" => Op::SemVer,
            _ => return None,
        })
    }

    /// Argument counts flagd's targeting schema allows.
    fn arity(self) -> (usize, usize) {
        const MANY: usize = usize::MAX;
        match self {
            Op::If | Op::And | Op::Or | Op::Cat | Op::Merge | Op::Add | Op::Min | Op::Max => {
                (1, MANY)
            }
            Op::Sub => (1, 2),
            Op::Mul => (2, MANY),
            Op::Missing => (0, MANY),
            Op::Not | Op::NotNot => (1, 1),
            Op::Lt | Op::Le | Op::Substr => (2, 3),
            Op::Reduce | Op::SemVer => (3, 3),
            Op::Eq
            | Op::StrictEq
            | Op::Ne
            | Op::StrictNe
            | Op::Gt
            | Op::Ge
            | Op::In
            | Op::Div
            | Op::Mod
            | Op::Map
            | Op::Filter
            | Op::All
            | Op::Some
            | Op::None
            | Op::MissingSome
            | Op::StartsWith
            | Op::EndsWith => (2, 2),
        }
    }
}

/// flagd's `fractional`: deterministic pseudorandom split.
#[derive(Debug, Clone)]
pub(crate) struct Fractional {
    /// `None`: bucket on `flagKey + targetingKey`.
    bucket_by: Option<Expr>,
    buckets: Box<[Bucket]>,
    /// Sum of the weights when they are all constant.
    static_total: Option<u32>,
    /// The rule can never produce a value (flagd would return null).
    invalid: bool,
}

#[derive(Debug, Clone)]
struct Bucket {
    variant: Expr,
    weight: Weight,
}

#[derive(Debug, Clone)]
enum Weight {
    Const(u32),
    Dyn(Expr),
}

/// The largest total weight flagd accepts.
const MAX_TOTAL_WEIGHT: u64 = i32::MAX as u64;
