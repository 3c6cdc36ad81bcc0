//! A standalone compiled targeting expression: the same JSONLogic dialect as
//! flag targeting (including `sem_ver`, `starts_with`, `ends_with` and
//! `fractional`), compiled once and evaluated against an [`EvalContext`].
//! Used for experiment eligibility. There are no shared evaluators, so
//! `$ref` is an error.

use super::logic::val::Val;
use super::logic::{fuel_for, Compiler, Env, Expr, Fuel};
use super::EvalContext;
use serde_json::{Map, Value};

/// A compiled standalone rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source: Value,
    expr: Expr,
    cost: u64,
    reads_clock: bool,
}

impl Rule {
    /// Compiles `rule`. Strict: anything flag loading would only warn about
    /// (wrong argument counts, malformed `fractional`, objects with several
    /// keys, ...) is an error, as are unknown operators and `$ref`, and a
    /// rule over the cost and depth limits of flag targeting. The error
    /// names the JSON pointer of the problem inside the rule.
    pub fn compile(rule: &Value) -> Result<Rule, String> {
        let evaluators = Map::new();
        let mut c = Compiler::new(&evaluators);
        let mut ptr = String::new();
        let compiled = c.compile_rule(rule, &mut ptr, "the rule");
        if let Some(over) = c.fatal.take() {
            return Err(over.to_string());
        }
        let compiled = compiled?;
        if let Some(w) = c.warnings.first() {
            return Err(w.to_string());
        }
        Ok(Rule {
            source: rule.clone(),
            expr: compiled.expr,
            cost: compiled.cost.units,
            reads_clock: compiled.cost.reads_clock,
        })
    }

    /// Whether the result may depend on the time of evaluation
    /// (`$flagd.timestamp`).
    pub fn reads_clock(&self) -> bool {
        self.reads_clock
    }

    /// The rule as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// The rule's result as JSON (null for an invalid context, or when the
    /// evaluation runs out of its budget). `fractional`
    /// without a bucketing expression buckets on the targeting key alone
    /// (the flag key is empty).
    pub fn evaluate(&self, ctx: &EvalContext<'_>) -> Value {
        self.eval_with(ctx, |v| v.to_json())
    }

    /// Whether the result is truthy (JSONLogic truthiness); false for an
    /// invalid context or an evaluation that runs out of its budget.
    pub fn matches(&self, ctx: &EvalContext<'_>) -> bool {
        self.eval_with(ctx, |v| v.truthy())
    }

    fn eval_with<T: Default>(&self, ctx: &EvalContext<'_>, f: impl FnOnce(&Val<'_>) -> T) -> T {
        if ctx.invalid.is_some() {
            return T::default();
        }
        let fuel = Fuel::new(fuel_for(self.cost));
        let env = Env {
            flag_key: "",
            ctx: ctx.context,
            now: ctx.now,
            targeting_key: ctx.targeting_key,
            fuel: &fuel,
        };
        let (v, _) = self.expr.eval_top(&env);
        if fuel.ran_out() {
            return T::default();
        }
        f(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_and_matches() {
        let r = Rule::compile(&json!({"and": [
            {"in": [{"var": "community"}, ["wiki-a", "coop-b"]]},
            {"<=": [{"var": "daysSinceActive"}, 30]}
        ]}))
        .unwrap();
        let yes = json!({"community": "wiki-a", "daysSinceActive": 3});
        let no = json!({"community": "wiki-a", "daysSinceActive": 31});
        assert!(r.matches(&EvalContext::new(&yes, 0)));
        assert!(!r.matches(&EvalContext::new(&no, 0)));
        assert_eq!(r.evaluate(&EvalContext::new(&yes, 0)), json!(true));
        assert!(!r.matches(&EvalContext::new(&json!([1]), 0)));
        let t = Rule::compile(&json!({">=": [{"var": "$flagd.timestamp"}, 100]})).unwrap();
        assert!(t.matches(&EvalContext::empty(100)));
        assert!(!t.matches(&EvalContext::empty(99)));
    }

    #[test]
    fn rejects_what_flags_would_warn_about() {
        assert!(Rule::compile(&json!({"nope": [1]})).is_err());
        assert!(Rule::compile(&json!({"$ref": "x"})).is_err());
        assert!(Rule::compile(&json!({"==": [1]})).is_err());
        assert!(Rule::compile(&json!(true)).is_ok());
    }
}
