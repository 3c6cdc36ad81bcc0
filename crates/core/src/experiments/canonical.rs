//! Locking: the canonical JSON of a trial's locked fields, its SHA-256,
//! the dotted fields two versions differ in; and overlap between trials.
//!
//! Canonical JSON: object keys sorted by byte order (UTF-8), no
//! whitespace, strings escaped as JSON requires (serde_json's escaping),
//! integers in decimal and floats in their shortest round-trip form.

use super::{
    format_duration, format_rfc3339, Cap, Design, FilterOp, Horizon, Metric, MetricUnit,
    MetricValue, Scalar, TrialSpec, Unit, Window,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The locked fields, in the order the docs list them.
pub const LOCKED_FIELDS: &[&str] = &[
    "flag",
    "arms",
    "unit",
    "design",
    "eligibility",
    "exposure",
    "metrics",
    "analysis",
    "layer",
];

pub(crate) fn to_canonical_string(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn scalar_json(s: &Scalar) -> Value {
    match s {
        Scalar::Str(s) => json!(s),
        Scalar::Num(n) => json!(n),
        Scalar::Bool(b) => json!(b),
    }
}

fn window_json(w: &Window) -> Value {
    json!([format_duration(w.start_secs), format_duration(w.end_secs)])
}

/// A metric as it is locked: every default resolved (window, covariate,
/// value), filters in file order, library references inlined.
pub(crate) fn metric_json(m: &Metric) -> Value {
    let filters: Vec<Value> = m
        .filters
        .iter()
        .map(|f| {
            let (op, v) = match &f.op {
                FilterOp::Eq(s) => ("eq", scalar_json(s)),
                FilterOp::Ne(s) => ("ne", scalar_json(s)),
                FilterOp::In(v) => ("in", Value::Array(v.iter().map(scalar_json).collect())),
                FilterOp::Gt(x) => ("gt", json!(x)),
                FilterOp::Gte(x) => ("gte", json!(x)),
                FilterOp::Lt(x) => ("lt", json!(x)),
                FilterOp::Lte(x) => ("lte", json!(x)),
                FilterOp::Exists(b) => ("exists", json!(b)),
            };
            json!({"property": f.property, "op": op, "value": v})
        })
        .collect();
    let mut v = json!({
        "name": m.name,
        "kind": m.kind.as_str(),
        "events": m.events,
        "direction": m.direction.as_str(),
        "value": match &m.value {
            MetricValue::Count => json!("count"),
            MetricValue::Sum(p) => json!({"sum": p}),
        },
        "filter": filters,
        "window": window_json(&m.window),
        "covariate": m.covariate.as_ref().map_or(Value::Bool(false), window_json),
        "cap": match m.cap {
            None => Value::Null,
            Some(Cap::Percentile(p)) => json!({"percentile": p}),
            Some(Cap::Value(v)) => json!({"value": v}),
        },
    });
    // Added with community designs' metrics: present only when not the
    // default, so the plans locked before them keep their hash.
    if let Value::Object(o) = &mut v {
        if m.unit != MetricUnit::Member {
            o.insert("unit".into(), json!(m.unit.as_str()));
        }
        if let Some(w) = m.period_window {
            o.insert("period_window".into(), json!(format_duration(w)));
        }
    }
    v
}

impl TrialSpec {
    /// The locked fields as a JSON object (see [`LOCKED_FIELDS`]); dates
    /// are RFC 3339 UTC strings, the default salt and block size appear
    /// resolved.
    pub fn locked_value(&self) -> Value {
        let arms: Vec<Value> = self
            .arms
            .iter()
            .map(|a| json!({"variant": a.variant, "weight": a.weight, "control": a.control}))
            .collect();
        let unit = match &self.unit {
            Unit::User => json!({"kind": "user"}),
            Unit::Community { attribute } => json!({"kind": "community", "attribute": attribute}),
        };
        let design = match &self.design {
            Design::Hash { salt } => json!({"kind": "hash", "salt": salt}),
            Design::Blocked { strata, block_size } => {
                json!({"kind": "blocked", "strata": strata, "block_size": block_size})
            }
            Design::Cluster { communities } => {
                json!({"kind": "cluster", "communities": communities})
            }
            Design::SteppedWedge { communities, steps } => json!({
                "kind": "stepped_wedge",
                "communities": communities,
                "steps": steps.iter().map(|&s| format_rfc3339(s)).collect::<Vec<_>>(),
            }),
            Design::Switchback {
                communities,
                boundaries,
                scheme,
                washout,
            } => {
                let mut d = json!({
                    "kind": "switchback",
                    "communities": communities,
                    "boundaries": boundaries.iter().map(|&s| format_rfc3339(s)).collect::<Vec<_>>(),
                    "scheme": scheme.as_str(),
                    "washout": format_duration(*washout),
                });
                if let super::SwitchbackScheme::Independent { probability } = scheme {
                    d["probability"] = json!(probability);
                }
                d
            }
        };
        let a = &self.analysis;
        let (horizon, looks) = match a.horizon {
            Horizon::Fixed => ("fixed", None),
            Horizon::Sequential { looks } => ("sequential", Some(looks)),
        };
        json!({
            "flag": self.flag,
            "arms": arms,
            "unit": unit,
            "design": design,
            "eligibility": self.eligibility.as_ref().map(|r| r.source().clone()),
            "exposure": {"bulk": self.exposure.bulk},
            "metrics": {
                "primary": metric_json(&self.metrics.primary),
                "secondary": self.metrics.secondary.iter().map(metric_json).collect::<Vec<_>>(),
                "guardrails": self.metrics.guardrails.iter().map(metric_json).collect::<Vec<_>>(),
            },
            "analysis": {
                "alpha": a.alpha,
                "sidedness": a.sidedness.as_str(),
                "mde": a.mde,
                "sample_size": a.sample_size,
                "power": a.power,
                "horizon": horizon,
                "looks": looks,
                "correction": a.correction.as_str(),
                "decision": {
                    "ship": a.decision.ship,
                    "iterate": a.decision.iterate,
                    "roll_back": a.decision.roll_back,
                },
            },
            "layer": self.layer.as_ref().map(|l| json!({"name": l.name, "from": l.from, "to": l.to})),
        })
    }

    /// Canonical JSON of the locked fields.
    pub fn canonical_json(&self) -> String {
        to_canonical_string(&self.locked_value())
    }

    /// Lowercase hex SHA-256 of [`TrialSpec::canonical_json`].
    pub fn canonical_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The dotted paths of locked fields that differ in `newer` (e.g.
    /// `analysis.alpha`, `arms[1].weight`; an array whose length changed
    /// is reported as a whole), sorted. Empty when the lock still holds.
    pub fn locked_changes(&self, newer: &TrialSpec) -> Vec<String> {
        let mut out = Vec::new();
        diff(&self.locked_value(), &newer.locked_value(), "", &mut out);
        out.sort();
        out
    }

    /// Why this trial and `other` cannot run at the same time, if they
    /// cannot: both serve the same flag and neither is kept apart by
    /// disjoint ranges of the same layer or disjoint community lists.
    /// Trials on the same flag with different units always conflict: a
    /// layer splits one unit population, not two.
    pub fn conflicts_with(&self, other: &TrialSpec) -> Option<String> {
        if self.flag != other.flag {
            return None;
        }
        let (a, b) = (&self.key, &other.key);
        if self.unit != other.unit {
            return Some(format!(
                "trials {a:?} and {b:?} both serve flag {:?} but randomise different units ({} vs {}); a flag can serve one trial's variants only, and layers cannot separate different units",
                self.flag,
                describe_unit(&self.unit),
                describe_unit(&other.unit)
            ));
        }
        if let (Some(x), Some(y)) = (self.design.communities(), other.design.communities()) {
            let shared: Vec<&String> = x.iter().filter(|c| y.contains(c)).collect();
            if shared.is_empty() {
                return None;
            }
            return Some(format!(
                "trials {a:?} and {b:?} both serve flag {:?} to communities {}",
                self.flag,
                shared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match (&self.layer, &other.layer) {
            (Some(x), Some(y)) if x.name == y.name => {
                if x.to <= y.from || y.to <= x.from {
                    None
                } else {
                    Some(format!(
                        "trials {a:?} and {b:?} both serve flag {:?} to {} units and their ranges of layer {:?} overlap ([{}, {}) and [{}, {})); give them disjoint ranges",
                        self.flag,
                        self.unit.kind(),
                        x.name,
                        x.from,
                        x.to,
                        y.from,
                        y.to
                    ))
                }
            }
            (Some(x), Some(y)) => Some(format!(
                "trials {a:?} and {b:?} both serve flag {:?} to {} units in different layers ({:?} and {:?}); put them in disjoint ranges of one layer",
                self.flag,
                self.unit.kind(),
                x.name,
                y.name
            )),
            _ => Some(format!(
                "trials {a:?} and {b:?} both serve flag {:?} to {} units; give both a layer with the same name and disjoint ranges",
                self.flag,
                self.unit.kind()
            )),
        }
    }
}

fn describe_unit(u: &Unit) -> String {
    match u {
        Unit::User => "user".into(),
        Unit::Community { attribute } => format!("community by {attribute:?}"),
    }
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    if path == "eligibility" {
        // A rule is compared as a whole.
        if a != b {
            out.push(path.to_string());
        }
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(u, v, &p, out),
                    _ => out.push(p),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(u, v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if a != b {
                out.push(path.to_string());
            }
        }
    }
}
