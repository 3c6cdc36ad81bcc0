//! Document -> [`FlagSet`]: validation (problems flagd only logs become
//! [`LoadWarning`]s), compilation of targeting, metadata merging.

use super::flag::{DefaultVariant, Program};
use super::locate::{locate, pointer, push_segment};
use super::logic::{Compiler, MAX_SET_COST};
use super::{
    Cohort, Flag, FlagSet, FlagState, FlagValue, LoadMode, LoadWarning, Metadata, ParseError,
    ValueType,
};
use serde_json::{Map, Value};

struct Loader<'s> {
    src: Option<&'s str>,
}

impl Loader<'_> {
    fn error(&self, pointer: String, message: impl Into<String>) -> ParseError {
        let (line, column) = self.src.map_or((0, 0), |s| locate(s, &pointer));
        ParseError {
            line,
            column,
            pointer,
            message: message.into(),
        }
    }
}

fn warn(c: &mut Compiler<'_>, pointer: String, message: impl Into<String>) {
    c.warnings.push(LoadWarning {
        pointer,
        message: message.into(),
    });
}

fn child(ptr: &str, seg: &str) -> String {
    let mut p = ptr.to_string();
    push_segment(&mut p, seg);
    p
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => v.to_string(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn type_name(t: ValueType) -> &'static str {
    t.as_str()
}

pub(super) fn load(
    doc: &Value,
    mode: LoadMode,
    src: Option<&str>,
) -> Result<(FlagSet, Vec<LoadWarning>), ParseError> {
    let loader = Loader { src };
    let Value::Object(root) = doc else {
        return Err(loader.error(
            String::new(),
            format!(
                "expected an object with a \"flags\" property, found {}",
                describe(doc)
            ),
        ));
    };
    let no_evaluators = Map::new();
    let evaluators = match root.get("$evaluators") {
        Some(Value::Object(m)) => m,
        _ => &no_evaluators,
    };
    let mut c = Compiler::new(evaluators);
    for key in root.keys() {
        if !matches!(
            key.as_str(),
            "flags" | "$evaluators" | "metadata" | "$schema"
        ) {
            warn(
                &mut c,
                pointer(&[key]),
                format!("unknown top-level property {key:?} is ignored"),
            );
        }
    }
    if let Some(other) = root.get("$evaluators").filter(|v| !v.is_object()) {
        warn(
            &mut c,
            "/$evaluators".into(),
            format!(
                "expected an object of shared evaluators, found {}",
                describe(other)
            ),
        );
    }
    let metadata = parse_metadata(&mut c, root.get("metadata"), "/metadata");
    c.compile_evaluators();
    if let Some(over) = c.fatal.take() {
        return Err(loader.error(over.pointer, over.message));
    }

    let mut entries: Vec<(String, &Value, String, bool)> = Vec::new();
    match root.get("flags") {
        None => return Err(loader.error(String::new(), "missing required property \"flags\"")),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                entries.push((k.clone(), v, pointer(&["flags", k]), false));
            }
        }
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                let p = pointer(&["flags", &i.to_string()]);
                match v.get("key") {
                    Some(Value::String(k)) if !k.is_empty() => {
                        if entries.iter().any(|e| &e.0 == k) {
                            return Err(
                                loader.error(child(&p, "key"), format!("duplicate flag key {k:?}"))
                            );
                        }
                        entries.push((k.clone(), v, p, true));
                    }
                    _ => {
                        return Err(loader.error(
                            p,
                            "a flag in a \"flags\" array needs a non-empty string \"key\"",
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(loader.error(
                "/flags".into(),
                format!(
                    "expected an object (or an array) of flags, found {}",
                    describe(other)
                ),
            ))
        }
    }

    let mut flags = Vec::with_capacity(entries.len());
    let mut set_cost = 0u64;
    for (key, v, p, array_form) in entries {
        if let Some(flag) = parse_flag(&loader, &mut c, key, v, &p, array_form, &metadata)? {
            if let Program::Rule { cost, .. } = &flag.program {
                set_cost = set_cost.saturating_add(*cost);
            }
            flags.push(flag);
        }
        if let Some(over) = c.fatal.take() {
            return Err(loader.error(over.pointer, over.message));
        }
    }
    if set_cost > MAX_SET_COST {
        return Err(loader.error(
            "/flags".into(),
            format!(
                "the flags' targeting rules cost {set_cost} units together, more than the limit of {MAX_SET_COST} for one flag set (what a bulk evaluation costs; see docs/security.md, Flags)"
            ),
        ));
    }
    let warnings = std::mem::take(&mut c.warnings);
    if mode == LoadMode::Strict {
        if let Some(w) = warnings.first() {
            return Err(loader.error(w.pointer.clone(), w.message.clone()));
        }
    }
    Ok((FlagSet::new(flags, metadata, evaluators.clone()), warnings))
}

fn parse_metadata(c: &mut Compiler<'_>, v: Option<&Value>, ptr: &str) -> Metadata {
    let mut out = Metadata::new();
    match v {
        None => {}
        Some(Value::Object(m)) => {
            for (k, x) in m {
                match x {
                    Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                        out.insert(k.clone(), x.clone());
                    }
                    _ => warn(
                        c,
                        child(ptr, k),
                        format!(
                            "metadata values must be booleans, strings or numbers, found {}; entry ignored",
                            describe(x)
                        ),
                    ),
                }
            }
        }
        Some(other) => warn(
            c,
            ptr.to_string(),
            format!(
                "expected an object of metadata, found {}; ignored",
                describe(other)
            ),
        ),
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn parse_flag(
    loader: &Loader<'_>,
    c: &mut Compiler<'_>,
    key: String,
    v: &Value,
    ptr: &str,
    array_form: bool,
    set_metadata: &Metadata,
) -> Result<Option<Flag>, ParseError> {
    let Value::Object(obj) = v else {
        warn(
            c,
            ptr.to_string(),
            format!(
                "a flag must be an object, found {}; flag ignored",
                describe(v)
            ),
        );
        return Ok(None);
    };
    if key.is_empty() {
        warn(c, ptr.to_string(), "flag keys must not be empty");
    }
    for k in obj.keys() {
        let known = matches!(
            k.as_str(),
            "state" | "variants" | "defaultVariant" | "targeting" | "metadata" | "cohorts"
        ) || (array_form && k == "key");
        if !known {
            warn(
                c,
                child(ptr, k),
                format!("unknown flag property {k:?} is ignored"),
            );
        }
    }

    let state = match obj.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => FlagState::Enabled,
        Some(Value::String(s)) if s == "DISABLED" => FlagState::Disabled,
        None => {
            warn(
                c,
                ptr.to_string(),
                "missing required property \"state\" (treated as ENABLED)",
            );
            FlagState::Enabled
        }
        Some(other) => {
            warn(
                c,
                child(ptr, "state"),
                format!("expected ENABLED or DISABLED, found {}", describe(other)),
            );
            FlagState::Enabled
        }
    };

    let vptr = child(ptr, "variants");
    let raw_variants = match obj.get("variants") {
        Some(Value::Object(m)) if !m.is_empty() => m,
        Some(Value::Object(_)) => {
            warn(c, vptr, "a flag needs at least one variant; flag ignored");
            return Ok(None);
        }
        None => {
            warn(
                c,
                ptr.to_string(),
                "missing required property \"variants\"; flag ignored",
            );
            return Ok(None);
        }
        Some(other) => {
            warn(
                c,
                vptr,
                format!(
                    "expected an object of variants, found {}; flag ignored",
                    describe(other)
                ),
            );
            return Ok(None);
        }
    };
    let mut variants = Vec::with_capacity(raw_variants.len());
    for (name, raw) in raw_variants {
        if name.is_empty() {
            warn(c, child(&vptr, name), "variant names must not be empty");
        }
        match FlagValue::from_json(raw) {
            Some(value) => {
                if let (Value::Number(n), FlagValue::Float(_)) = (raw, &value) {
                    if !n.is_f64() {
                        warn(
                            c,
                            child(&vptr, name),
                            "integer out of range for a 64-bit signed integer; stored as a float",
                        );
                    }
                }
                variants.push((name.clone(), value));
            }
            None => warn(
                c,
                child(&vptr, name),
                format!(
                    "a variant must be a boolean, string, number or object, found {}; variant ignored",
                    describe(raw)
                ),
            ),
        }
    }
    if variants.is_empty() {
        return Ok(None);
    }
    let first_type = variants[0].1.value_type();
    if let Some((_, other)) = variants.iter().find(|(_, v)| v.value_type() != first_type) {
        warn(
            c,
            vptr.clone(),
            format!(
                "variants mix types ({} and {}); all variants of a flag must have the same type",
                type_name(first_type),
                type_name(other.value_type())
            ),
        );
    }

    let default_variant = match obj.get("defaultVariant") {
        None => DefaultVariant::Absent,
        Some(Value::Null) => DefaultVariant::Null,
        Some(Value::String(name)) => match variants.iter().position(|(k, _)| k == name) {
            Some(i) => DefaultVariant::Index(i),
            None => {
                return Err(loader.error(
                    child(ptr, "defaultVariant"),
                    format!("default variant {name:?} is not one of the flag's variants"),
                ))
            }
        },
        Some(other) => {
            warn(
                c,
                child(ptr, "defaultVariant"),
                format!(
                    "expected a variant name or null, found {}; ignored",
                    describe(other)
                ),
            );
            DefaultVariant::Absent
        }
    };
    let value_type = match default_variant {
        DefaultVariant::Index(i) => variants[i].1.value_type(),
        _ => first_type,
    };

    let metadata = parse_metadata(c, obj.get("metadata"), &child(ptr, "metadata"));

    let (targeting, program) = match obj.get("targeting") {
        None => (None, Program::None),
        Some(t @ Value::Null) => (Some(t.clone()), Program::None),
        Some(t @ Value::Object(m)) if m.is_empty() => (Some(t.clone()), Program::None),
        Some(t) => {
            let mut tptr = child(ptr, "targeting");
            if !t.is_object() {
                warn(
                    c,
                    tptr.clone(),
                    "targeting should be a JSONLogic rule (an object)",
                );
            }
            let program =
                match c.compile_rule(t, &mut tptr, &format!("the targeting of flag {key:?}")) {
                    Ok(compiled) => Program::Rule {
                        expr: compiled.expr,
                        cost: compiled.cost.units,
                        reads_clock: compiled.cost.reads_clock,
                    },
                    Err(reason) => Program::Broken(reason),
                };
            (Some(t.clone()), program)
        }
    };

    let cohorts = parse_cohorts(c, obj.get("cohorts"), &child(ptr, "cohorts"), &variants);

    let mut resolved_metadata = set_metadata.clone();
    for (k, v) in &metadata {
        resolved_metadata.insert(k.clone(), v.clone());
    }

    Ok(Some(Flag {
        key,
        state,
        variants,
        default_variant,
        value_type,
        targeting,
        program,
        cohorts,
        metadata,
        resolved_metadata,
    }))
}

fn parse_cohorts(
    c: &mut Compiler<'_>,
    v: Option<&Value>,
    ptr: &str,
    variants: &[(String, FlagValue)],
) -> Vec<Cohort> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            warn(
                c,
                ptr.to_string(),
                format!(
                    "expected an array of cohorts, found {}; ignored",
                    describe(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Cohort> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = child(ptr, &i.to_string());
        let Value::Object(o) = item else {
            warn(
                c,
                p,
                format!(
                    "a cohort must be an object, found {}; cohort ignored",
                    describe(item)
                ),
            );
            continue;
        };
        for k in o.keys() {
            if !matches!(k.as_str(), "name" | "attribute" | "values" | "variant") {
                warn(
                    c,
                    child(&p, k),
                    format!("unknown cohort property {k:?} is ignored"),
                );
            }
        }
        let name = match o.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                warn(
                    c,
                    child(&p, "name"),
                    "a cohort needs a non-empty string \"name\"; cohort ignored",
                );
                continue;
            }
        };
        if out.iter().any(|x| &x.name == name) {
            warn(
                c,
                child(&p, "name"),
                format!("duplicate cohort name {name:?}; cohort ignored"),
            );
            continue;
        }
        let attribute = match o.get("attribute") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                warn(
                    c,
                    child(&p, "attribute"),
                    "a cohort needs a non-empty string \"attribute\" (a context path); cohort ignored",
                );
                continue;
            }
        };
        let values = match o.get("values") {
            Some(Value::Array(vals)) if vals.iter().all(|x| x.is_string() || x.is_number()) => vals,
            _ => {
                warn(
                    c,
                    child(&p, "values"),
                    "a cohort needs \"values\": an array of strings or numbers; cohort ignored",
                );
                continue;
            }
        };
        let variant = match o.get("variant") {
            Some(Value::String(s)) => match variants.iter().position(|(k, _)| k == s) {
                Some(i) => i,
                None => {
                    warn(
                        c,
                        child(&p, "variant"),
                        format!("unknown variant {s:?}; cohort ignored"),
                    );
                    continue;
                }
            },
            _ => {
                warn(
                    c,
                    child(&p, "variant"),
                    "a cohort needs a \"variant\" name; cohort ignored",
                );
                continue;
            }
        };
        out.push(Cohort {
            name: name.clone(),
            attribute: attribute.clone(),
            path: attribute.split('.').map(Box::from).collect(),
            values: values.clone(),
            variant,
        });
    }
    out
}
