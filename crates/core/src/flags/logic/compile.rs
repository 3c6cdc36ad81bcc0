//! JSON targeting rule -> [`Expr`], with `$ref`s to shared evaluators
//! compiled once and shared, schema-level problems reported as
//! [`LoadWarning`]s, and the limits of [`super::cost`] enforced.

use super::cost::{measure, Cost, MAX_RULE_COST, MAX_RULE_DEPTH};
use super::val::NumBuf;
use super::{Bucket, Expr, Fractional, Op, Shared, Var, VarPath, Weight, MAX_TOTAL_WEIGHT};
use crate::flags::locate::push_segment;
use crate::flags::semver::{self, Version};
use crate::flags::LoadWarning;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Compiles targeting rules against one document's `$evaluators`.
pub(crate) struct Compiler<'d> {
    evaluators: &'d Map<String, Value>,
    /// Compiled evaluators; `Err` holds why the evaluator can only fail.
    cache: BTreeMap<String, Result<Arc<Shared>, String>>,
    /// Evaluators being compiled (to detect `$ref` cycles).
    active: Vec<String>,
    /// Nesting of the value being compiled, `$ref`s followed.
    depth: usize,
    pub(crate) warnings: Vec<LoadWarning>,
    /// A limit was exceeded: the whole document (or rule) must be refused.
    /// Once set, compilation stops descending.
    pub(crate) fatal: Option<LoadWarning>,
}

/// A compiled rule and its cost.
pub(crate) struct Compiled {
    pub(crate) expr: Expr,
    pub(crate) cost: Cost,
}

/// Why a rule can only fail: set by unknown operators and unresolvable `$ref`s.
type Broken = Option<String>;

impl<'d> Compiler<'d> {
    pub(crate) fn new(evaluators: &'d Map<String, Value>) -> Self {
        Compiler {
            evaluators,
            cache: BTreeMap::new(),
            active: Vec::new(),
            depth: 0,
            warnings: Vec::new(),
            fatal: None,
        }
    }

    fn refuse(&mut self, ptr: &str, message: String) {
        if self.fatal.is_none() {
            self.fatal = Some(LoadWarning {
                pointer: ptr.to_string(),
                message,
            });
        }
    }

    /// The `$ref` chain being compiled, for messages.
    fn chain(&self) -> String {
        if self.active.is_empty() {
            String::new()
        } else {
            format!(" (through $ref {})", self.active.join(" -> "))
        }
    }

    /// Refuses a rule whose cost or depth is over the limits. `what` names
    /// it in the message.
    fn check_limits(&mut self, cost: Cost, ptr: &str, what: &str) {
        if cost.depth > MAX_RULE_DEPTH {
            self.refuse(
                ptr,
                format!(
                    "{what} nests {} levels deep counting its $refs, more than the limit of {MAX_RULE_DEPTH}",
                    cost.depth
                ),
            );
        } else if cost.units > MAX_RULE_COST {
            let units = if cost.units == u64::MAX {
                "more than 2^64".to_string()
            } else {
                cost.units.to_string()
            };
            self.refuse(
                ptr,
                format!(
                    "{what} is too expensive to evaluate: {units} cost units counting every $ref each time it is reached, more than the limit of {MAX_RULE_COST} (see docs/security.md, Flags)"
                ),
            );
        }
    }

    fn warn(&mut self, ptr: &str, message: impl Into<String>) {
        self.warnings.push(LoadWarning {
            pointer: ptr.to_string(),
            message: message.into(),
        });
    }

    /// Compiles every shared evaluator once, so that their problems are
    /// reported where they are defined, once.
    pub(crate) fn compile_evaluators(&mut self) {
        let evaluators = self.evaluators;
        for name in evaluators.keys() {
            let _ = self.evaluator(name);
        }
    }

    fn evaluator(&mut self, name: &str) -> Result<Arc<Shared>, String> {
        if let Some(done) = self.cache.get(name) {
            return done.clone();
        }
        let Some(body) = self.evaluators.get(name) else {
            return Err(format!("unknown evaluator {name:?}"));
        };
        self.active.push(name.to_string());
        let mut ptr = String::from("/$evaluators");
        push_segment(&mut ptr, name);
        if !body.is_object() {
            self.warn(
                &ptr,
                "a shared evaluator should be a JSONLogic rule (an object)",
            );
        }
        let result = self
            .compile_rule(body, &mut ptr, &format!("evaluator {name:?}"))
            .map(|c| {
                Arc::new(Shared {
                    expr: c.expr,
                    cost: c.cost,
                })
            });
        self.active.pop();
        self.cache.insert(name.to_string(), result.clone());
        result
    }

    /// Compiles a rule (`what` names it in messages). `Err` (with the
    /// reason) when the rule can only fail at evaluation: an unknown
    /// operator or an unresolvable `$ref`. A rule over the limits sets
    /// [`Compiler::fatal`].
    pub(crate) fn compile_rule(
        &mut self,
        rule: &Value,
        ptr: &mut String,
        what: &str,
    ) -> Result<Compiled, String> {
        let mut broken = None;
        let expr = self.compile(rule, ptr, &mut broken);
        let cost = measure(&expr);
        self.check_limits(cost, ptr, what);
        match broken {
            Some(reason) => Err(reason),
            None => Ok(Compiled { expr, cost }),
        }
    }

    fn compile(&mut self, v: &Value, ptr: &mut String, broken: &mut Broken) -> Expr {
        if self.fatal.is_some() {
            return Expr::Null;
        }
        if self.depth >= MAX_RULE_DEPTH {
            let message = format!(
                "this rule nests deeper than the limit of {MAX_RULE_DEPTH} levels{}",
                self.chain()
            );
            self.refuse(ptr, message);
            return Expr::Null;
        }
        self.depth += 1;
        let e = self.compile_value(v, ptr, broken);
        self.depth -= 1;
        e
    }

    fn compile_value(&mut self, v: &Value, ptr: &mut String, broken: &mut Broken) -> Expr {
        match v {
            Value::Null => Expr::Null,
            Value::Bool(b) => Expr::Bool(*b),
            Value::Number(n) => Expr::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Expr::Str(s.as_str().into()),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let mark = push_segment(ptr, &i.to_string());
                    out.push(self.compile(item, ptr, broken));
                    ptr.truncate(mark);
                }
                if out.iter().all(Expr::is_const) {
                    Expr::Json(Box::new(v.clone()))
                } else {
                    Expr::Array(out.into())
                }
            }
            Value::Object(map) => {
                let mut entries = map.iter();
                match (entries.next(), entries.next()) {
                    (Some((name, args)), None) => {
                        let mark = push_segment(ptr, name);
                        let e = self.compile_op(name, args, ptr, broken);
                        ptr.truncate(mark);
                        e
                    }
                    (None, _) => Expr::Json(Box::new(v.clone())),
                    (Some(_), Some(_)) => {
                        self.warn(
                            ptr,
                            format!(
                                "an object with {} keys is not an operation; it is used as a literal value",
                                map.len()
                            ),
                        );
                        Expr::Json(Box::new(v.clone()))
                    }
                }
            }
        }
    }

    /// `ptr` already points at the operator's arguments.
    fn compile_op(
        &mut self,
        name: &str,
        args: &Value,
        ptr: &mut String,
        broken: &mut Broken,
    ) -> Expr {
        match name {
            "$ref" => self.compile_ref(args, ptr, broken),
            "var" => self.compile_var(args, ptr, broken),
            "fractional" => self.compile_fractional(args, ptr, broken),
            _ => {
                let Some(op) = Op::from_name(name) else {
                    self.warn(
                        ptr,
                        format!(
                            "unknown operator {name:?}; evaluating this flag returns PARSE_ERROR"
                        ),
                    );
                    broken.get_or_insert_with(|| format!("unknown operator {name:?}"));
                    return Expr::Null;
                };
                let compiled = self.compile_args(args, ptr, broken);
                self.check_op(name, op, &compiled, args.is_array(), ptr);
                Expr::Op(op, compiled.into())
            }
        }
    }

    /// JSONLogic accepts a single non-array argument in place of a one-element list.
    fn compile_args(&mut self, args: &Value, ptr: &mut String, broken: &mut Broken) -> Vec<Expr> {
        match args {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let mark = push_segment(ptr, &i.to_string());
                    out.push(self.compile(item, ptr, broken));
                    ptr.truncate(mark);
                }
                out
            }
            other => vec![self.compile(other, ptr, broken)],
        }
    }

    fn check_op(&mut self, name: &str, op: Op, args: &[Expr], array_form: bool, ptr: &mut String) {
        let n = args.len();
        let (min, max) = op.arity();
        if n < min || n > max {
            let expected = if min == max {
                format!("exactly {min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            let null_note = match op {
                Op::SemVer | Op::StartsWith | Op::EndsWith => "; it always returns null",
                _ => "",
            };
            self.warn(
                ptr,
                format!("{name:?} expects {expected} arguments, got {n}{null_note}"),
            );
            return;
        }
        let arg_ptr = |ptr: &mut String, i: usize| {
            if array_form {
                push_segment(ptr, &i.to_string())
            } else {
                ptr.len()
            }
        };
        match op {
            Op::SemVer => {
                for (i, arg) in args.iter().map(Expr::resolved).enumerate() {
                    let problem = match (i, arg) {
                        (1, Expr::Str(s)) if !semver::is_operator(s) => Some(format!(
                            "unknown sem_ver operator {s:?} (expected one of = != < <= > >= ^ ~); it always returns null"
                        )),
                        (1, e) if e.is_const() && !matches!(e, Expr::Str(_)) => {
                            Some("the sem_ver operator must be a string; it always returns null".into())
                        }
                        (0 | 2, Expr::Str(s)) if Version::parse(s).is_none() => Some(format!(
                            "{s:?} is not a semantic version; sem_ver always returns null"
                        )),
                        (0 | 2, e) if e.is_const() && !matches!(e, Expr::Str(_) | Expr::Num(_)) => {
                            Some("a version must be a string; sem_ver always returns null".into())
                        }
                        _ => None,
                    };
                    if let Some(message) = problem {
                        let mark = arg_ptr(ptr, i);
                        self.warn(ptr, message);
                        ptr.truncate(mark);
                    }
                }
            }
            Op::StartsWith | Op::EndsWith => {
                for (i, arg) in args.iter().map(Expr::resolved).enumerate() {
                    if arg.is_const() && !matches!(arg, Expr::Str(_)) {
                        let mark = arg_ptr(ptr, i);
                        self.warn(
                            ptr,
                            format!("{name:?} compares strings; this argument is not one, so it returns null"),
                        );
                        ptr.truncate(mark);
                    }
                }
            }
            _ => {}
        }
    }

    fn compile_ref(&mut self, args: &Value, ptr: &str, broken: &mut Broken) -> Expr {
        let Value::String(name) = args else {
            self.warn(ptr, "\"$ref\" must name a shared evaluator (a string)");
            broken.get_or_insert_with(|| "invalid $ref".into());
            return Expr::Null;
        };
        if !self.evaluators.contains_key(name) {
            self.warn(
                ptr,
                format!(
                    "unknown evaluator {name:?} in $ref; evaluating this flag returns PARSE_ERROR"
                ),
            );
            broken.get_or_insert_with(|| format!("unknown evaluator {name:?} in $ref"));
            return Expr::Null;
        }
        if self.active.iter().any(|a| a == name) {
            self.warn(
                ptr,
                format!("evaluator {name:?} refers back to itself; evaluating this flag returns PARSE_ERROR"),
            );
            broken.get_or_insert_with(|| format!("evaluator {name:?} refers back to itself"));
            return Expr::Null;
        }
        match self.evaluator(name) {
            Ok(shared) => Expr::Ref(shared),
            Err(reason) => {
                // Already reported where the evaluator is defined.
                broken.get_or_insert_with(|| format!("evaluator {name:?}: {reason}"));
                Expr::Null
            }
        }
    }

    fn compile_var(&mut self, args: &Value, ptr: &mut String, broken: &mut Broken) -> Expr {
        let (path, default, array_form) = match args {
            Value::Array(items) => {
                if items.len() > 2 {
                    self.warn(
                        ptr,
                        "\"var\" takes a path and an optional default; extra arguments are ignored",
                    );
                }
                (items.first(), items.get(1), true)
            }
            other => (Some(other), None, false),
        };
        let split = |s: &str| -> VarPath {
            if s.is_empty() {
                VarPath::Static(Box::new([]))
            } else {
                VarPath::Static(s.split('.').map(Box::from).collect())
            }
        };
        let path = match path {
            None | Some(Value::Null) => VarPath::Static(Box::new([])),
            Some(Value::String(s)) => split(s),
            Some(Value::Number(n)) => split(NumBuf::new().js(n.as_f64().unwrap_or(f64::NAN))),
            Some(Value::Bool(b)) => split(if *b { "true" } else { "false" }),
            Some(dynamic) => {
                let mark = if array_form {
                    push_segment(ptr, "0")
                } else {
                    ptr.len()
                };
                let e = self.compile(dynamic, ptr, broken);
                ptr.truncate(mark);
                VarPath::Dynamic(e)
            }
        };
        if let VarPath::Static(segs) = &path {
            if segs.first().is_some_and(|s| &**s == "$flagd")
                && !(segs.len() == 2 && matches!(&*segs[1], "flagKey" | "timestamp"))
            {
                self.warn(
                    ptr,
                    format!(
                        "unknown flagd property {:?}: only $flagd.flagKey and $flagd.timestamp exist",
                        segs.join(".")
                    ),
                );
            }
        }
        let default = default.map(|d| {
            let mark = push_segment(ptr, "1");
            let e = self.compile(d, ptr, broken);
            ptr.truncate(mark);
            e
        });
        Expr::Var(Box::new(Var { path, default }))
    }

    fn compile_fractional(&mut self, args: &Value, ptr: &mut String, broken: &mut Broken) -> Expr {
        let invalid = || {
            Expr::Fractional(Box::new(Fractional {
                bucket_by: None,
                buckets: Box::new([]),
                static_total: None,
                invalid: true,
            }))
        };
        let items: &[Value] = match args {
            Value::Array(items) if !items.is_empty() => items,
            _ => {
                self.warn(
                    ptr,
                    "\"fractional\" expects an optional bucketing expression followed by [variant, weight] buckets; it always returns null",
                );
                return invalid();
            }
        };
        let mut is_invalid = false;
        let (bucket_by, first_bucket) = match &items[0] {
            Value::Array(_) => (None, 0),
            Value::Object(_) => {
                let mark = push_segment(ptr, "0");
                let e = self.compile(&items[0], ptr, broken);
                ptr.truncate(mark);
                (Some(e), 1)
            }
            Value::Null => (Some(Expr::Null), 1),
            Value::String(s) => {
                let mark = push_segment(ptr, "0");
                self.warn(
                    ptr,
                    "the bucketing value is a constant string, so every subject lands in the same bucket; use an expression such as {\"var\": \"email\"}",
                );
                ptr.truncate(mark);
                (Some(Expr::Str(s.as_str().into())), 1)
            }
            _ => {
                let mark = push_segment(ptr, "0");
                self.warn(
                    ptr,
                    "expected a bucketing expression or a [variant, weight] bucket; \"fractional\" always returns null",
                );
                ptr.truncate(mark);
                is_invalid = true;
                (None, 1)
            }
        };
        if items.len() <= first_bucket {
            self.warn(ptr, "\"fractional\" has no buckets; it always returns null");
            is_invalid = true;
        }
        let mut buckets = Vec::with_capacity(items.len().saturating_sub(first_bucket));
        for (i, item) in items.iter().enumerate().skip(first_bucket) {
            let mark = push_segment(ptr, &i.to_string());
            match item {
                Value::Array(b) if !b.is_empty() => {
                    if b.len() > 2 {
                        self.warn(
                            ptr,
                            "a bucket is [variant, weight]; extra elements are ignored",
                        );
                    }
                    let m = push_segment(ptr, "0");
                    let variant = self.compile(&b[0], ptr, broken);
                    ptr.truncate(m);
                    let m = push_segment(ptr, "1");
                    let weight = match b.get(1) {
                        None | Some(Value::Null) => Weight::Const(1),
                        Some(Value::Number(n)) => match integral(n) {
                            Some(w) if w < 0 => {
                                self.warn(ptr, format!("negative weight {w} is treated as 0"));
                                Weight::Const(0)
                            }
                            Some(w) if w as u64 > MAX_TOTAL_WEIGHT => {
                                self.warn(
                                    ptr,
                                    format!("weight {w} exceeds 2147483647; \"fractional\" always returns null"),
                                );
                                is_invalid = true;
                                Weight::Const(0)
                            }
                            Some(w) => Weight::Const(w as u32),
                            None => {
                                self.warn(
                                    ptr,
                                    format!("weight {n} is not an integer; \"fractional\" always returns null"),
                                );
                                is_invalid = true;
                                Weight::Const(0)
                            }
                        },
                        Some(e @ Value::Object(_)) => Weight::Dyn(self.compile(e, ptr, broken)),
                        Some(_) => {
                            self.warn(
                                ptr,
                                "a weight must be an integer or an expression; \"fractional\" always returns null",
                            );
                            is_invalid = true;
                            Weight::Const(0)
                        }
                    };
                    ptr.truncate(m);
                    buckets.push(Bucket { variant, weight });
                }
                _ => {
                    self.warn(
                        ptr,
                        "a bucket must be a non-empty array [variant, weight]; \"fractional\" always returns null",
                    );
                    is_invalid = true;
                }
            }
            ptr.truncate(mark);
        }
        let mut static_total = None;
        if !is_invalid && buckets.iter().all(|b| matches!(b.weight, Weight::Const(_))) {
            let total: u64 = buckets
                .iter()
                .map(|b| match b.weight {
                    Weight::Const(w) => u64::from(w),
                    Weight::Dyn(_) => 0,
                })
                .sum();
            if total > MAX_TOTAL_WEIGHT {
                self.warn(
                    ptr,
                    format!("the weights sum to {total}, more than 2147483647; \"fractional\" always returns null"),
                );
                is_invalid = true;
            } else if total == 0 {
                self.warn(
                    ptr,
                    "all weights are zero; \"fractional\" always returns null",
                );
            }
            static_total = Some(total as u32);
        }
        Expr::Fractional(Box::new(Fractional {
            bucket_by,
            buckets: buckets.into(),
            static_total,
            invalid: is_invalid,
        }))
    }
}

/// The integer value of a JSON number, if it is whole (`25` or `25.0`).
fn integral(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.as_u64().is_some() {
        return Some(i64::MAX);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.fract() == 0.0).then_some(f as i64)
}
