//! One compiled flag ([`Flag`]): its variants, default, cohort overrides
//! ([`Cohort`]) and compiled targeting, and its evaluation (the resolution
//! rules in the module docs of [`crate::flags`]).

use super::logic::val::{NumBuf, Val};
use super::logic::{self, Env, Expr, Fuel, Origin};
use super::{
    ErrorCode, EvalContext, FlagState, FlagValue, Metadata, Reason, Resolution, ValueType,
};
use serde_json::Value;

/// A cohort override (Commonlab extension).
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    pub(super) name: String,
    pub(super) attribute: String,
    pub(super) path: Box<[Box<str>]>,
    pub(super) values: Vec<Value>,
    pub(super) variant: usize,
}

impl Cohort {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Context attribute, a dotted path as in `var`.
    pub fn attribute(&self) -> &str {
        &self.attribute
    }

    /// The attribute values (strings or numbers) that select this cohort.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    fn matches(&self, env: &Env<'_>) -> bool {
        let found = if self.path.is_empty() {
            None
        } else {
            logic::lookup_path(env, self.path.iter().map(|s| &**s))
        };
        match found {
            Some(Val::Str(s)) => self.values.iter().any(|v| v.as_str() == Some(&*s)),
            Some(Val::Num(n)) => self.values.iter().any(|v| v.as_f64() == Some(n)),
            _ => false,
        }
    }

    fn to_json(&self, variant: &str) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), Value::String(self.name.clone()));
        m.insert("attribute".into(), Value::String(self.attribute.clone()));
        m.insert("values".into(), Value::Array(self.values.clone()));
        m.insert("variant".into(), Value::String(variant.to_string()));
        Value::Object(m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DefaultVariant {
    Absent,
    Null,
    Index(usize),
}

#[derive(Debug)]
pub(super) enum Program {
    /// No targeting (absent, null or `{}`).
    None,
    /// A compiled rule, its static cost (see `docs/security.md`) and
    /// whether it reads the clock.
    Rule {
        expr: Expr,
        cost: u64,
        reads_clock: bool,
    },
    /// The rule can only fail (unknown operator or `$ref`): PARSE_ERROR.
    Broken(String),
}

/// One compiled flag.
#[derive(Debug)]
pub struct Flag {
    pub(super) key: String,
    pub(super) state: FlagState,
    pub(super) variants: Vec<(String, FlagValue)>,
    pub(super) default_variant: DefaultVariant,
    pub(super) value_type: ValueType,
    /// The targeting rule as loaded (with `$ref`s unresolved).
    pub(super) targeting: Option<Value>,
    pub(super) program: Program,
    pub(super) cohorts: Vec<Cohort>,
    pub(super) metadata: Metadata,
    /// Flag-set metadata merged with `metadata`.
    pub(super) resolved_metadata: Metadata,
}

impl Flag {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn state(&self) -> FlagState {
        self.state
    }

    /// The type of the default variant (or of the first variant when there
    /// is no default).
    pub fn value_type(&self) -> ValueType {
        self.value_type
    }

    /// Variants in document order.
    pub fn variants(&self) -> impl Iterator<Item = (&str, &FlagValue)> {
        self.variants.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn variant(&self, name: &str) -> Option<&FlagValue> {
        self.variant_index(name).map(|i| &self.variants[i].1)
    }

    pub fn default_variant(&self) -> Option<&str> {
        match self.default_variant {
            DefaultVariant::Index(i) => Some(&self.variants[i].0),
            _ => None,
        }
    }

    /// The flag's own metadata (without the flag set's).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn cohorts(&self) -> &[Cohort] {
        &self.cohorts
    }

    /// The variant a cohort selects.
    pub fn cohort_variant(&self, cohort: &Cohort) -> &str {
        &self.variants[cohort.variant].0
    }

    /// Whether the flag has a targeting rule (beyond cohorts).
    pub fn has_targeting(&self) -> bool {
        !matches!(self.program, Program::None)
    }

    /// Whether the flag's answer may depend on the time of evaluation (its
    /// targeting reads `$flagd.timestamp`, or a `var` path computed at
    /// evaluation that might name it).
    pub fn reads_clock(&self) -> bool {
        matches!(
            self.program,
            Program::Rule {
                reads_clock: true,
                ..
            }
        )
    }

    #[inline]
    fn variant_index(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|(k, _)| k == name)
    }

    /// The flag as JSON, as loaded (including the `cohorts` extension).
    pub fn to_json(&self) -> Value {
        self.json(false)
    }

    pub(super) fn json(&self, flagd: bool) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("state".into(), Value::String(self.state.as_str().into()));
        let variants = self
            .variants
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        m.insert("variants".into(), Value::Object(variants));
        match self.default_variant {
            DefaultVariant::Absent => {}
            DefaultVariant::Null => {
                m.insert("defaultVariant".into(), Value::Null);
            }
            DefaultVariant::Index(i) => {
                m.insert(
                    "defaultVariant".into(),
                    Value::String(self.variants[i].0.clone()),
                );
            }
        }
        let targeting = if flagd && !self.cohorts.is_empty() {
            Some(self.inlined_cohorts())
        } else {
            self.targeting.clone()
        };
        if let Some(t) = targeting {
            m.insert("targeting".into(), t);
        }
        if !self.metadata.is_empty() {
            m.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        if !flagd && !self.cohorts.is_empty() {
            let cohorts = self
                .cohorts
                .iter()
                .map(|c| c.to_json(self.cohort_variant(c)))
                .collect();
            m.insert("cohorts".into(), Value::Array(cohorts));
        }
        Value::Object(m)
    }

    /// `{"if": [{"in": [{"var": attr}, values]}, variant, ..., targeting-or-null]}`.
    fn inlined_cohorts(&self) -> Value {
        let mut args = Vec::with_capacity(self.cohorts.len() * 2 + 1);
        for c in &self.cohorts {
            args.push(serde_json::json!({"in": [{"var": c.attribute}, c.values]}));
            args.push(Value::String(self.cohort_variant(c).to_string()));
        }
        args.push(match &self.targeting {
            Some(Value::Object(m)) if m.is_empty() => Value::Null,
            Some(t) => t.clone(),
            None => Value::Null,
        });
        serde_json::json!({ "if": args })
    }

    fn resolved(&self, index: usize, reason: Reason) -> Resolution<'_> {
        let (name, value) = &self.variants[index];
        Resolution {
            value: Some(value),
            variant: Some(name),
            reason,
            error: None,
            metadata: &self.resolved_metadata,
            cohort: None,
        }
    }

    fn default_resolution(&self, reason: Reason) -> Resolution<'_> {
        match self.default_variant {
            DefaultVariant::Index(i) => self.resolved(i, reason),
            _ => Resolution {
                value: None,
                variant: None,
                reason,
                error: None,
                metadata: &self.resolved_metadata,
                cohort: None,
            },
        }
    }

    /// Evaluates this flag.
    pub fn evaluate(&self, ctx: &EvalContext<'_>) -> Resolution<'_> {
        let meta = &self.resolved_metadata;
        if self.state == FlagState::Disabled {
            return Resolution {
                value: None,
                variant: None,
                reason: Reason::Disabled,
                error: None,
                metadata: meta,
                cohort: None,
            };
        }
        if let Some(problem) = ctx.invalid {
            return Resolution::error(ErrorCode::InvalidContext, problem, meta);
        }
        let fuel = Fuel::new(match &self.program {
            Program::Rule { cost, .. } => logic::fuel_for(*cost),
            _ => 0,
        });
        let env = Env {
            flag_key: &self.key,
            ctx: ctx.context,
            now: ctx.now,
            targeting_key: ctx.targeting_key,
            fuel: &fuel,
        };
        for c in &self.cohorts {
            if c.matches(&env) {
                let mut r = self.resolved(c.variant, Reason::TargetingMatch);
                r.cohort = Some(&c.name);
                return r;
            }
        }
        let rule = match &self.program {
            // No targeting: STATIC, or DEFAULT when the caller's default applies.
            Program::None => {
                let reason = match self.default_variant {
                    DefaultVariant::Index(_) => Reason::Static,
                    _ => Reason::Default,
                };
                return self.default_resolution(reason);
            }
            Program::Broken(reason) => {
                return Resolution::error(
                    ErrorCode::ParseError,
                    format!("invalid targeting rule: {reason}"),
                    meta,
                )
            }
            Program::Rule { expr, .. } => expr,
        };
        let (result, origin) = rule.eval_top(&env);
        if fuel.ran_out() {
            return Resolution::error(
                ErrorCode::General,
                "targeting ran out of its evaluation budget (the rule does too much work for this context; see docs/security.md)",
                meta,
            );
        }
        let reason = match origin {
            Origin::Rule => Reason::TargetingMatch,
            Origin::Split => Reason::Split,
        };
        let index = match &result {
            Val::Null => return self.default_resolution(Reason::Default),
            Val::Str(s) => self.variant_index(s),
            Val::Bool(b) => self.variant_index(if *b { "true" } else { "false" }),
            Val::Num(n) => self.variant_index(NumBuf::new().js(*n)),
            Val::Json(_) | Val::List(_) => {
                return Resolution::error(
                    ErrorCode::General,
                    "targeting returned an array or object instead of a variant name",
                    meta,
                )
            }
        };
        match index {
            Some(i) => self.resolved(i, reason),
            None => Resolution::error(
                ErrorCode::General,
                format!(
                    "targeting returned {:?}, which is not a variant of this flag",
                    result.to_js_string()
                ),
                meta,
            ),
        }
    }
}
