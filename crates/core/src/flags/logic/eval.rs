//! Evaluation of compiled targeting expressions.

use super::cost::text_units;
use super::val::{js_less, js_less_eq, NumBuf, Val};
use super::{Expr, Fractional, Op, Var, VarPath, Weight, MAX_TOTAL_WEIGHT};
use crate::flags::murmur3::{bucket, Murmur3};
use crate::flags::semver::{self, Version};
use serde_json::Value;
use std::borrow::Cow;
use std::cell::Cell;

/// Where a flag's top-level result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An ordinary rule.
    Rule,
    /// A `fractional` split (reason SPLIT; DEFAULT when it returned null,
    /// e.g. without a targeting key to bucket on, as flagd does).
    Split,
}

/// What one evaluation may still spend (see `cost`): every node visited,
/// and the bytes and elements operators copy or scan. Once it has run out,
/// every expression evaluates to null and the caller reports the failure.
#[derive(Debug)]
pub(crate) struct Fuel {
    left: Cell<u64>,
    out: Cell<bool>,
}

impl Fuel {
    pub(crate) fn new(units: u64) -> Fuel {
        Fuel {
            left: Cell::new(units),
            out: Cell::new(false),
        }
    }

    /// Spends `units`; `false` (for good) when there is not enough left.
    #[inline]
    pub(crate) fn burn(&self, units: u64) -> bool {
        let left = self.left.get();
        if left >= units && !self.out.get() {
            self.left.set(left - units);
            true
        } else {
            self.out.set(true);
            false
        }
    }

    /// Whether the evaluation ran out (its result is not to be used).
    pub(crate) fn ran_out(&self) -> bool {
        self.out.get()
    }
}

/// What a rule can see besides its own literals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'s> {
    pub(crate) flag_key: &'s str,
    /// The evaluation context (an object, or null when there is none).
    pub(crate) ctx: &'s Value,
    pub(crate) now: i64,
    pub(crate) targeting_key: Option<&'s str>,
    pub(crate) fuel: &'s Fuel,
}

/// The data `var` reads: the context, or an element inside an array operator.
#[derive(Clone, Copy)]
enum Scope<'s, 'x> {
    Root,
    Item(&'x Val<'s>),
    Reduce {
        current: &'x Val<'s>,
        accumulator: &'x Val<'s>,
    },
}

#[inline]
fn json_get<'s>(v: &'s Value, seg: &str) -> Option<&'s Value> {
    match v {
        // Evaluation contexts are small: comparing a few keys (lengths
        // first) beats hashing the key with SipHash.
        Value::Object(m) if m.len() <= 8 => m.iter().find_map(|(k, v)| (k == seg).then_some(v)),
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    }
}

fn navigate_json<'s, 'p>(mut v: &'s Value, segs: impl Iterator<Item = &'p str>) -> Option<Val<'s>> {
    for seg in segs {
        v = json_get(v, seg)?;
    }
    Some(Val::from_json(v))
}

fn navigate_val<'s, 'p>(v: &Val<'s>, mut segs: impl Iterator<Item = &'p str>) -> Option<Val<'s>> {
    let Some(first) = segs.next() else {
        return Some(v.clone());
    };
    match v {
        Val::Json(j) => navigate_json(json_get(j, first)?, segs),
        Val::List(items) => navigate_val(items.get(first.parse::<usize>().ok()?)?, segs),
        _ => None,
    }
}

/// Reads a dotted path from the evaluation context, including
/// `$flagd.flagKey` and `$flagd.timestamp`. `None` when absent.
#[inline]
pub(crate) fn lookup_path<'s, 'p>(
    env: &Env<'s>,
    mut segs: impl Iterator<Item = &'p str>,
) -> Option<Val<'s>> {
    let Some(first) = segs.next() else {
        return Some(Val::from_json(env.ctx));
    };
    if first == "$flagd" {
        let v = match segs.next()? {
            "flagKey" => Val::Str(Cow::Borrowed(env.flag_key)),
            "timestamp" => Val::Num(env.now as f64),
            _ => return None,
        };
        return segs.next().is_none().then_some(v);
    }
    navigate_json(json_get(env.ctx, first)?, segs)
}

fn lookup<'s, 'p>(
    env: &Env<'s>,
    scope: Scope<'s, '_>,
    mut segs: impl Iterator<Item = &'p str>,
) -> Option<Val<'s>> {
    match scope {
        Scope::Root => lookup_path(env, segs),
        Scope::Item(v) => navigate_val(v, segs),
        Scope::Reduce {
            current,
            accumulator,
        } => match segs.next()? {
            "current" => navigate_val(current, segs),
            "accumulator" => navigate_val(accumulator, segs),
            _ => None,
        },
    }
}

/// Calls `f` with `v` as a string the way `sem_ver` and `in` coerce it
/// (numbers formatted on the stack); `None` for other types.
fn with_str<R>(v: &Val<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        Val::Str(s) => Some(f(s)),
        Val::Num(n) => Some(f(NumBuf::new().js(*n))),
        _ => None,
    }
}

/// JavaScript `substr` bounds (in characters) as a byte range of `s`.
fn substr_range(s: &str, start: f64, len: Option<f64>) -> (usize, usize) {
    let to_int = |x: f64| if x.is_nan() { 0.0 } else { x.trunc() };
    let size = s.chars().count() as f64;
    let mut st = to_int(start);
    if st < 0.0 {
        st = (size + st).max(0.0);
    }
    let st = st.min(size);
    let count = match len {
        None => size - st,
        Some(l) => to_int(l).max(0.0).min(size - st),
    };
    let byte_at = |chars: f64| {
        s.char_indices()
            .nth(chars as usize)
            .map_or(s.len(), |(i, _)| i)
    };
    (byte_at(st), byte_at(st + count))
}

fn slice_cow<'s>(s: Cow<'s, str>, (a, b): (usize, usize)) -> Cow<'s, str> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(&s[a..b]),
        Cow::Owned(s) => Cow::Owned(s[a..b].to_string()),
    }
}

fn weight_of(v: &Val<'_>) -> Option<u32> {
    match v {
        Val::Null => Some(1),
        Val::Num(n) if n.is_finite() && n.fract() == 0.0 => {
            if *n < 0.0 {
                Some(0)
            } else if *n > MAX_TOTAL_WEIGHT as f64 {
                None
            } else {
                Some(*n as u32)
            }
        }
        _ => None,
    }
}

impl Expr {
    /// Evaluates a flag's top-level rule. The flag tells whether the result
    /// was produced by `fractional` (reached through `if` branches), which
    /// makes the resolution reason SPLIT.
    #[inline]
    pub(crate) fn eval_top<'s>(&'s self, env: &Env<'s>) -> (Val<'s>, Origin) {
        let mut e = self;
        loop {
            match e {
                Expr::Fractional(f) => return (f.eval(env, Scope::Root), Origin::Split),
                Expr::Op(Op::If, args) => match if_branch(args, env, Scope::Root) {
                    Some(branch) => e = branch,
                    None => return (Val::Null, Origin::Rule),
                },
                Expr::Ref(shared) => e = &shared.expr,
                _ => return (e.eval(env, Scope::Root), Origin::Rule),
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn eval_root<'s>(&'s self, env: &Env<'s>) -> Val<'s> {
        self.eval(env, Scope::Root)
    }

    fn eval<'s>(&'s self, env: &Env<'s>, scope: Scope<'s, '_>) -> Val<'s> {
        if !env.fuel.burn(1) {
            return Val::Null;
        }
        match self {
            Expr::Null => Val::Null,
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(Cow::Borrowed(s)),
            Expr::Json(v) => Val::Json(v),
            Expr::Array(items) => Val::List(items.iter().map(|e| e.eval(env, scope)).collect()),
            Expr::Var(var) => var.eval(env, scope),
            Expr::Op(op, args) => eval_op(*op, args, env, scope),
            Expr::Fractional(f) => f.eval(env, scope),
            Expr::Ref(shared) => shared.expr.eval(env, scope),
        }
    }
}

/// The branch `if` takes (json-logic-js semantics: pairs of condition and
/// value, then an optional else; a lone condition yields its own value).
#[inline]
fn if_branch<'s>(args: &'s [Expr], env: &Env<'s>, scope: Scope<'s, '_>) -> Option<&'s Expr> {
    let mut i = 0;
    while i + 1 < args.len() {
        if args[i].eval(env, scope).truthy() {
            return Some(&args[i + 1]);
        }
        i += 2;
    }
    args.get(i)
}

impl Var {
    #[inline]
    fn eval<'s>(&'s self, env: &Env<'s>, scope: Scope<'s, '_>) -> Val<'s> {
        let found = match &self.path {
            VarPath::Static(segs) => lookup(env, scope, segs.iter().map(|s| &**s)),
            VarPath::Dynamic(e) => match e.eval(env, scope) {
                Val::Null => lookup(env, scope, std::iter::empty()),
                p => {
                    let path = p.to_js_string();
                    if path.is_empty() {
                        lookup(env, scope, std::iter::empty())
                    } else {
                        lookup(env, scope, path.split('.'))
                    }
                }
            },
        };
        match found {
            Some(v) => v,
            None => self
                .default
                .as_ref()
                .map_or(Val::Null, |d| d.eval(env, scope)),
        }
    }
}

impl Fractional {
    fn eval<'s>(&'s self, env: &Env<'s>, scope: Scope<'s, '_>) -> Val<'s> {
        if self.invalid {
            return Val::Null;
        }
        let mut h = Murmur3::new(0);
        let mut by_targeting_key = self.bucket_by.is_none();
        match &self.bucket_by {
            None => {}
            // Hash the pieces of a `cat` one after the other instead of
            // building the concatenated string.
            Some(Expr::Op(Op::Cat, parts)) => {
                for p in parts.iter() {
                    let v = p.eval(env, scope);
                    if !env.fuel.burn(v.units()) {
                        return Val::Null;
                    }
                    v.write_js(true, &mut |s| h.write_str(s));
                }
            }
            Some(e) => match e.eval(env, scope) {
                Val::Str(s) => {
                    if !env.fuel.burn(text_units(s.len())) {
                        return Val::Null;
                    }
                    h.write_str(&s)
                }
                Val::Null => by_targeting_key = true,
                _ => return Val::Null,
            },
        }
        if by_targeting_key {
            // flagd: bucket on flagKey + targetingKey; null without a targeting key.
            let Some(tk) = env.targeting_key else {
                return Val::Null;
            };
            h.write_str(env.flag_key);
            h.write_str(tk);
        }
        let hash = h.finish();

        let chosen = if let Some(total) = self.static_total {
            if total == 0 {
                return Val::Null;
            }
            let b = u64::from(bucket(hash, total));
            let mut end = 0u64;
            self.buckets.iter().position(|bk| {
                end += match bk.weight {
                    Weight::Const(w) => u64::from(w),
                    Weight::Dyn(_) => 0,
                };
                b < end
            })
        } else {
            let n = self.buckets.len();
            let mut stack = [0u32; 16];
            let mut heap = Vec::new();
            let weights: &mut [u32] = if n <= stack.len() {
                &mut stack[..n]
            } else {
                heap.resize(n, 0);
                &mut heap
            };
            let mut total = 0u64;
            for (w, bk) in weights.iter_mut().zip(self.buckets.iter()) {
                *w = match &bk.weight {
                    Weight::Const(c) => *c,
                    Weight::Dyn(e) => match weight_of(&e.eval(env, scope)) {
                        Some(x) => x,
                        None => return Val::Null,
                    },
                };
                total += u64::from(*w);
            }
            if total == 0 || total > MAX_TOTAL_WEIGHT {
                return Val::Null;
            }
            let b = u64::from(bucket(hash, total as u32));
            let mut end = 0u64;
            weights.iter().position(|&w| {
                end += u64::from(w);
                b < end
            })
        };
        match chosen {
            Some(i) => self.buckets[i].variant.eval(env, scope),
            None => Val::Null,
        }
    }
}

fn eval_op<'s>(op: Op, args: &'s [Expr], env: &Env<'s>, scope: Scope<'s, '_>) -> Val<'s> {
    let arg = |i: usize| args.get(i).map_or(Val::Null, |e| e.eval(env, scope));
    match op {
        Op::If => if_branch(args, env, scope).map_or(Val::Null, |e| e.eval(env, scope)),
        Op::Eq => Val::Bool(arg(0).loose_eq(&arg(1))),
        Op::Ne => Val::Bool(!arg(0).loose_eq(&arg(1))),
        Op::StrictEq => Val::Bool(arg(0).strict_eq(&arg(1))),
        Op::StrictNe => Val::Bool(!arg(0).strict_eq(&arg(1))),
        Op::Not => Val::Bool(!arg(0).truthy()),
        Op::NotNot => Val::Bool(arg(0).truthy()),
        Op::And => {
            let mut cur = Val::Null;
            for e in args {
                cur = e.eval(env, scope);
                if !cur.truthy() {
                    break;
                }
            }
            cur
        }
        Op::Or => {
            let mut cur = Val::Null;
            for e in args {
                cur = e.eval(env, scope);
                if cur.truthy() {
                    break;
                }
            }
            cur
        }
        Op::Lt | Op::Le => {
            let cmp = if op == Op::Lt {
                |a: &Val<'_>, b: &Val<'_>| js_less(a, b) == Some(true)
            } else {
                js_less_eq
            };
            let (a, b) = (arg(0), arg(1));
            if args.len() >= 3 {
                let c = arg(2);
                Val::Bool(cmp(&a, &b) && cmp(&b, &c))
            } else {
                Val::Bool(cmp(&a, &b))
            }
        }
        Op::Gt => Val::Bool(js_less(&arg(1), &arg(0)) == Some(true)),
        Op::Ge => Val::Bool(js_less_eq(&arg(1), &arg(0))),
        Op::In => {
            let needle = arg(0);
            let haystack = arg(1);
            let scanned = match &haystack {
                Val::Str(s) => text_units(s.len()),
                Val::Json(Value::Array(items)) => items.len() as u64,
                Val::List(items) => items.len() as u64,
                _ => 0,
            };
            if !env.fuel.burn(scanned) {
                return Val::Null;
            }
            Val::Bool(match haystack {
                Val::Str(hay) => match with_str(&needle, |n| hay.contains(n)) {
                    Some(found) => found,
                    None => hay.contains(&*needle.to_js_string()),
                },
                Val::Json(Value::Array(items)) => items.iter().any(|v| needle.strict_eq_json(v)),
                Val::List(items) => items.iter().any(|v| needle.strict_eq(v)),
                _ => false,
            })
        }
        Op::Cat => {
            if let [only] = args {
                if let v @ Val::Str(_) = only.eval(env, scope) {
                    return v;
                }
            }
            let mut s = String::new();
            for e in args {
                let v = e.eval(env, scope);
                if !env.fuel.burn(v.units()) {
                    return Val::Null;
                }
                v.write_js(true, &mut |p| s.push_str(p));
            }
            Val::Str(Cow::Owned(s))
        }
        Op::Substr => {
            let source = arg(0);
            if !env.fuel.burn(source.units()) {
                return Val::Null;
            }
            let source = source.to_js_string();
            let start = arg(1).to_number();
            let len = (args.len() >= 3).then(|| arg(2).to_number());
            Val::Str(match len {
                Some(end) if end < 0.0 => {
                    let r = substr_range(&source, start, None);
                    let rest = slice_cow(source, r);
                    let keep = (rest.chars().count() as f64 + end).max(0.0);
                    let r = substr_range(&rest, 0.0, Some(keep));
                    slice_cow(rest, r)
                }
                _ => {
                    let r = substr_range(&source, start, len);
                    slice_cow(source, r)
                }
            })
        }
        Op::Merge => {
            let mut out = Vec::new();
            for e in args {
                let v = e.eval(env, scope);
                if !env.fuel.burn(v.units()) {
                    return Val::Null;
                }
                if v.is_array() {
                    v.for_each_elem(|x| {
                        out.push(x.clone());
                        true
                    });
                } else {
                    out.push(v);
                }
            }
            Val::List(out)
        }
        Op::Missing => {
            let first = arg(0);
            if !env.fuel.burn(first.units()) {
                return Val::Null;
            }
            let mut missing = Vec::new();
            let mut check = |key: &Val<'s>| {
                let path = key.to_js_string();
                let found = if path.is_empty() {
                    lookup(env, scope, std::iter::empty())
                } else {
                    lookup(env, scope, path.split('.'))
                };
                let absent = match found {
                    None | Some(Val::Null) => true,
                    Some(Val::Str(s)) => s.is_empty(),
                    Some(_) => false,
                };
                if absent {
                    missing.push(key.clone());
                }
                true
            };
            if first.is_array() {
                first.for_each_elem(check);
            } else {
                check(&first);
                for e in args.iter().skip(1) {
                    check(&e.eval(env, scope));
                }
            }
            Val::List(missing)
        }
        Op::MissingSome => {
            let need = arg(0).to_number();
            let options = arg(1);
            if !env.fuel.burn(options.units()) {
                return Val::Null;
            }
            let total = options.array_len().unwrap_or(0);
            let mut missing = Vec::new();
            options.for_each_elem(|key| {
                let path = key.to_js_string();
                let found = if path.is_empty() {
                    lookup(env, scope, std::iter::empty())
                } else {
                    lookup(env, scope, path.split('.'))
                };
                if matches!(found, None | Some(Val::Null))
                    || matches!(&found, Some(Val::Str(s)) if s.is_empty())
                {
                    missing.push(key.clone());
                }
                true
            });
            if (total - missing.len()) as f64 >= need {
                Val::List(Vec::new())
            } else {
                Val::List(missing)
            }
        }
        Op::Add => Val::Num(args.iter().map(|e| e.eval(env, scope).parse_float()).sum()),
        Op::Mul => match args {
            [] => Val::Null,
            [only] => only.eval(env, scope),
            _ => Val::Num(
                args.iter()
                    .map(|e| e.eval(env, scope).parse_float())
                    .product(),
            ),
        },
        Op::Sub => {
            if args.len() < 2 {
                Val::Num(-arg(0).to_number())
            } else {
                Val::Num(arg(0).to_number() - arg(1).to_number())
            }
        }
        Op::Div => Val::Num(arg(0).to_number() / arg(1).to_number()),
        Op::Mod => Val::Num(arg(0).to_number() % arg(1).to_number()),
        Op::Min | Op::Max => {
            let mut acc = if op == Op::Min {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
            for e in args {
                let n = e.eval(env, scope).to_number();
                if n.is_nan() {
                    return Val::Num(f64::NAN);
                }
                acc = if op == Op::Min {
                    acc.min(n)
                } else {
                    acc.max(n)
                };
            }
            Val::Num(acc)
        }
        Op::Map | Op::Filter | Op::All | Op::Some | Op::None => {
            let data = arg(0);
            // Every element is visited (and may be copied) once.
            if !env.fuel.burn(data.units()) {
                return Val::Null;
            }
            let Some(logic) = args.get(1) else {
                return match op {
                    Op::Map | Op::Filter => Val::List(Vec::new()),
                    Op::None => Val::Bool(true),
                    _ => Val::Bool(false),
                };
            };
            match op {
                Op::Map => {
                    let mut out = Vec::new();
                    data.for_each_elem(|x| {
                        out.push(logic.eval(env, Scope::Item(x)));
                        true
                    });
                    Val::List(out)
                }
                Op::Filter => {
                    let mut out = Vec::new();
                    data.for_each_elem(|x| {
                        if logic.eval(env, Scope::Item(x)).truthy() {
                            out.push(x.clone());
                        }
                        true
                    });
                    Val::List(out)
                }
                Op::All => {
                    if data.array_len().unwrap_or(0) == 0 {
                        return Val::Bool(false);
                    }
                    let mut all = true;
                    data.for_each_elem(|x| {
                        all = logic.eval(env, Scope::Item(x)).truthy();
                        all
                    });
                    Val::Bool(all)
                }
                _ => {
                    let mut any = false;
                    data.for_each_elem(|x| {
                        any = logic.eval(env, Scope::Item(x)).truthy();
                        !any
                    });
                    Val::Bool(if op == Op::Some { any } else { !any })
                }
            }
        }
        Op::Reduce => {
            let data = arg(0);
            let mut acc = arg(2);
            let Some(logic) = args.get(1) else {
                return acc;
            };
            if !data.is_array() {
                return acc;
            }
            data.for_each_elem(|x| {
                if !env.fuel.burn(x.units()) {
                    return false;
                }
                acc = logic.eval(
                    env,
                    Scope::Reduce {
                        current: x,
                        accumulator: &acc,
                    },
                );
                true
            });
            acc
        }
        Op::StartsWith | Op::EndsWith => {
            if args.len() != 2 {
                return Val::Null;
            }
            match (arg(0), arg(1)) {
                (Val::Str(a), Val::Str(b)) => Val::Bool(if op == Op::StartsWith {
                    a.starts_with(&*b)
                } else {
                    a.ends_with(&*b)
                }),
                _ => Val::Null,
            }
        }
        Op::SemVer => {
            if args.len() != 3 {
                return Val::Null;
            }
            let (a, o, b) = (arg(0), arg(1), arg(2));
            let Val::Str(o) = o else {
                return Val::Null;
            };
            let result = with_str(&a, |a| {
                with_str(&b, |b| {
                    let (va, vb) = (Version::parse(a)?, Version::parse(b)?);
                    semver::apply(&va, &o, &vb)
                })
                .flatten()
            })
            .flatten();
            result.map_or(Val::Null, Val::Bool)
        }
    }
}
