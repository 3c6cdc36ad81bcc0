//! Trial file (TOML) -> [`TrialSpec`], collecting every problem.
//!
//! The file is read with the positioned TOML reader
//! ([`crate::toml_reader`]) field by field; each problem becomes a
//! [`SpecError`] at the value's position (or the enclosing table's, for a
//! missing field) and reading goes on. This module reads the trial's top
//! level (identity, links, arms, unit, eligibility, layer); its
//! sections are read by
//!
//! - `design`: `[design]` and `[schedule]` (with its ramp), which the
//!   design's steps are checked against;
//! - `metrics`: `[metrics]` and the metric library
//!   ([`parse_metric_library`]), whose definitions `ref = "name"` resolves to;
//! - `analysis`: `[analysis]`, the pre-registered plan;
//! - `surveys`: `[[surveys]]`, the survey waves.
//!
//! Every section reads through the trial's context [`Cx`]: the reader's
//! [`Errors`] plus what only trials need (the metric library references
//! resolve against, and the positions of fields that later checks such as
//! [`TrialSpec::check_against_flags`] report on).

mod analysis;
mod design;
mod metrics;
mod surveys;
mod switchback;

pub use metrics::parse_metric_library;

use super::{Arm, Exposure, Layer, Links, MetricLibrary, SpecError, TrialSpec, Unit, LAYER_SPACE};
use crate::flags::Rule;
use crate::toml_reader::{ident, parse_document, Errors, Kind, Node, Pos, Report, Tbl};
use analysis::read_analysis;
use design::{read_design, read_schedule};
use metrics::{check_metric_units, read_metrics};
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;
use surveys::read_surveys;
use toml_edit::Item;

/// The trial reader's context: the problems found so far, the metric
/// library that `ref = "name"` resolves against (none: references are
/// errors), and the positions of fields that checks after parsing report
/// on (dotted path -> position; kept in [`TrialSpec`]).
struct Cx<'f> {
    errors: Errors<'f>,
    library: Option<&'f MetricLibrary>,
    positions: BTreeMap<String, Pos>,
}

impl<'f> Cx<'f> {
    fn new(file: &'f str, library: Option<&'f MetricLibrary>) -> Self {
        Cx {
            errors: Errors::new(file),
            library,
            positions: BTreeMap::new(),
        }
    }
}

impl Report for Cx<'_> {
    fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.errors.err(pos, field, message);
    }
}

const TOP: &[&str] = &[
    "key",
    "title",
    "hypothesis",
    "owner",
    "notes",
    "links",
    "flag",
    "arms",
    "unit",
    "design",
    "eligibility",
    "exposure",
    "metrics",
    "surveys",
    "analysis",
    "schedule",
    "layer",
];

/// Parses and validates a trial file. `file` is only used in errors. All
/// problems are returned, in document order of discovery. Metric
/// references (`ref = "name"`) are errors: see [`parse_trial_with`].
pub fn parse_trial(src: &str, file: &str) -> Result<TrialSpec, Vec<SpecError>> {
    parse_trial_with(src, file, None)
}

/// [`parse_trial`], resolving metric references against `library`.
pub fn parse_trial_with(
    src: &str,
    file: &str,
    library: Option<&MetricLibrary>,
) -> Result<TrialSpec, Vec<SpecError>> {
    let root = parse_document(src, file)?;
    let mut cx = Cx::new(file, library);
    let spec = read_trial(&mut cx, &root).map(|mut spec| {
        spec.file = file.to_string();
        spec
    });
    let positions = std::mem::take(&mut cx.positions);
    cx.errors.finish(spec, "trial").map(|mut spec| {
        spec.positions = positions;
        spec
    })
}

/// The trial file with every `ref = "name"` metric replaced by the
/// library's definition (a trial is stored self-contained, so that its
/// locked hash covers the definitions it was started with). The trial is
/// validated first; errors point into the trial file or the library.
pub fn inline_metric_refs(
    src: &str,
    file: &str,
    library: &MetricLibrary,
) -> Result<String, Vec<SpecError>> {
    parse_trial_with(src, file, Some(library))?;
    let mut doc = toml_edit::DocumentMut::from_str(src)
        .expect("a source that parsed as a trial is valid TOML");
    let Some(metrics) = doc.get_mut("metrics").and_then(Item::as_table_like_mut) else {
        return Ok(src.to_string());
    };
    let mut changed = false;
    for (_, item) in metrics.iter_mut() {
        let mut tables: Vec<&mut dyn toml_edit::TableLike> = Vec::new();
        match item {
            Item::Table(t) => tables.push(t),
            Item::ArrayOfTables(a) => {
                tables.extend(a.iter_mut().map(|t| t as &mut dyn toml_edit::TableLike))
            }
            Item::Value(toml_edit::Value::InlineTable(t)) => tables.push(t),
            Item::Value(toml_edit::Value::Array(a)) => {
                for v in a.iter_mut() {
                    if let Some(t) = v.as_inline_table_mut() {
                        tables.push(t);
                    }
                }
            }
            _ => {}
        }
        for t in tables {
            let Some(name) = t.get("ref").and_then(Item::as_str).map(str::to_string) else {
                continue;
            };
            let source = library
                .sources
                .get(&name)
                .expect("parse_trial_with resolved every reference");
            let direction = t.remove("direction");
            t.remove("ref");
            t.insert("name", toml_edit::value(name.as_str()));
            for (k, v) in source.iter() {
                if k != "name" && k != "direction" {
                    t.insert(k, Item::Value(v.clone()));
                }
            }
            let direction =
                direction.or_else(|| source.get("direction").map(|v| Item::Value(v.clone())));
            if let Some(d) = direction {
                t.insert("direction", d);
            }
            changed = true;
        }
    }
    Ok(if changed {
        doc.to_string()
    } else {
        src.to_string()
    })
}

fn read_trial(cx: &mut Cx<'_>, root: &Node) -> Option<TrialSpec> {
    let t = Tbl::open(cx, root, "", TOP)?;
    let key = ident(cx, &t, "key");
    let title = t.string(cx, "title");
    let hypothesis = t.string(cx, "hypothesis");
    let owner = t.string(cx, "owner");
    let notes = t.opt_string(cx, "notes");
    let links = t
        .req(cx, "links", "a table with wp2_parameter and wp3_feature")
        .and_then(|n| read_links(cx, n));
    let flag = t.string(cx, "flag");
    if let Some(n) = t.get("flag") {
        cx.positions.insert("flag".into(), n.pos);
    }
    let arms = t
        .req(
            cx,
            "arms",
            "an array of tables ([[arms]]) with variant, weight and control",
        )
        .and_then(|n| read_arms(cx, n));
    let unit = t
        .req(cx, "unit", "a table with kind = \"user\" or \"community\"")
        .and_then(|n| read_unit(cx, n));
    let schedule = t
        .req(cx, "schedule", "a table with start and end")
        .and_then(|n| read_schedule(cx, n));
    let design = t
        .req(
            cx,
            "design",
            "a table with kind = \"hash\", \"blocked\", \"cluster\", \"stepped_wedge\" or \"switchback\"",
        )
        .and_then(|n| {
            read_design(
                cx,
                n,
                key.as_deref(),
                arms.as_deref(),
                unit.as_ref(),
                schedule.as_ref(),
            )
        });
    let eligibility = match t.get("eligibility") {
        None => Some(None),
        Some(n) => read_eligibility(cx, n).map(Some),
    };
    let exposure = match t.get("exposure") {
        None => Some(Exposure::default()),
        Some(n) => Tbl::open(cx, n, "exposure", &["bulk"]).and_then(|e| {
            e.opt_bool(cx, "bulk").map(|b| Exposure {
                bulk: b.unwrap_or(false),
            })
        }),
    };
    let metrics = t
        .req(
            cx,
            "metrics",
            "a table with primary, secondary and guardrails",
        )
        .and_then(|n| read_metrics(cx, n));
    let surveys = match t.get("surveys") {
        None => Some(Vec::new()),
        Some(n) => read_surveys(cx, n),
    };
    let analysis = t
        .req(cx, "analysis", "a table with the analysis plan")
        .and_then(|n| read_analysis(cx, n));
    let layer = match t.get("layer") {
        None => Some(None),
        Some(n) => read_layer(cx, n).map(Some),
    };
    if let (Some(d), Some(m), Some(s)) = (&design, &metrics, &schedule) {
        let periods = super::periods::periods_of(d, s.start, s.end);
        check_metric_units(cx, d, &periods, m);
    }
    if let (Some(Some(_)), Some(d)) = (&layer, &design) {
        if d.communities().is_some() {
            let pos = t.get("layer").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "layer",
                format!(
                    "a {} design lists its communities explicitly; remove the layer (trials on disjoint community lists do not conflict)",
                    d.kind()
                ),
            );
        }
    }
    Some(TrialSpec {
        key: key?,
        title: title?,
        hypothesis: hypothesis?,
        owner: owner?,
        notes: notes?.unwrap_or_default(),
        links: links?,
        flag: flag?,
        arms: arms?,
        unit: unit?,
        design: design?,
        eligibility: eligibility?,
        exposure: exposure?,
        metrics: metrics?,
        surveys: surveys?,
        analysis: analysis?,
        schedule: schedule?,
        layer: layer?,
        file: String::new(),
        positions: BTreeMap::new(),
    })
}

fn read_links(cx: &mut Cx<'_>, n: &Node) -> Option<Links> {
    let t = Tbl::open(cx, n, "links", &["wp2_parameter", "wp3_feature"])?;
    for f in ["wp2_parameter", "wp3_feature"] {
        let pos = t.get(f).map_or(t.pos, |n| n.pos);
        cx.positions.insert(format!("links.{f}"), pos);
    }
    let wp2 = t.string(cx, "wp2_parameter");
    let wp3 = t.string(cx, "wp3_feature");
    Some(Links {
        wp2_parameter: wp2?,
        wp3_feature: wp3?,
    })
}

fn read_arms(cx: &mut Cx<'_>, n: &Node) -> Option<Vec<Arm>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(n, "arms", "an array of tables ([[arms]])");
        return None;
    };
    if items.len() < 2 {
        cx.err(
            n.pos,
            "arms",
            format!(
                "a trial needs at least 2 arms (one of them control), found {}",
                items.len()
            ),
        );
        return None;
    }
    let mut arms = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("arms[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, &["variant", "weight", "control"]) else {
            ok = false;
            continue;
        };
        let vpos = t.get("variant").map_or(t.pos, |n| n.pos);
        cx.positions.insert(format!("{path}.variant"), vpos);
        let variant = t.string(cx, "variant");
        if let Some(v) = &variant {
            if arms.iter().any(|a: &Arm| &a.variant == v) {
                cx.err(
                    vpos,
                    &t.field("variant"),
                    format!("duplicate arm {v:?}; each variant may be one arm only"),
                );
                ok = false;
            }
        }
        let weight = t.int(cx, "weight", 1, 10_000);
        let control = t.opt_bool(cx, "control");
        match (variant, weight, control) {
            (Some(variant), Some(weight), Some(control)) => arms.push(Arm {
                variant,
                weight: weight as u32,
                control: control.unwrap_or(false),
            }),
            _ => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let controls = arms.iter().filter(|a| a.control).count();
    if controls != 1 {
        cx.err(
            n.pos,
            "arms",
            format!("exactly one arm must have control = true, found {controls}"),
        );
        return None;
    }
    Some(arms)
}

fn read_unit(cx: &mut Cx<'_>, n: &Node) -> Option<Unit> {
    let t = Tbl::open(cx, n, "unit", &["kind", "attribute"])?;
    cx.positions.insert("unit".into(), t.pos);
    let (kind, _) = t.choice(cx, "kind", &["user", "community"])?;
    if kind == "user" {
        if let Some(a) = t.get("attribute") {
            cx.err(
                a.pos,
                "unit.attribute",
                "only a community unit names an attribute; a user is the OFREP targetingKey",
            );
            return None;
        }
        Some(Unit::User)
    } else {
        let attribute = t.string(cx, "attribute")?;
        Some(Unit::Community { attribute })
    }
}

fn read_eligibility(cx: &mut Cx<'_>, n: &Node) -> Option<Rule> {
    let rule = match &n.kind {
        Kind::Table(_) => n.to_json(),
        Kind::Str(s) => match serde_json::from_str::<Value>(s) {
            Ok(v) => v,
            Err(e) => {
                cx.err(
                    n.pos,
                    "eligibility",
                    format!("the string is not valid JSON ({e}); expected a JSONLogic rule as a JSON string or a TOML table"),
                );
                return None;
            }
        },
        _ => {
            cx.wrong_type(
                n,
                "eligibility",
                "a JSONLogic rule (a TOML table or a JSON string)",
            );
            return None;
        }
    };
    match Rule::compile(&rule) {
        Ok(r) => Some(r),
        Err(m) => {
            cx.err(n.pos, "eligibility", format!("invalid targeting rule: {m}"));
            None
        }
    }
}

fn read_layer(cx: &mut Cx<'_>, n: &Node) -> Option<Layer> {
    let t = Tbl::open(cx, n, "layer", &["name", "from", "to"])?;
    cx.positions.insert("layer".into(), t.pos);
    let name = ident(cx, &t, "name");
    let max = i64::from(LAYER_SPACE);
    let from = t.int(cx, "from", 0, max - 1);
    let to = t.int(cx, "to", 1, max);
    if let (Some(f), Some(to)) = (from, to) {
        if to <= f {
            let pos = t.get("to").map_or(t.pos, |n| n.pos);
            cx.err(
                pos,
                "layer.to",
                format!("the range is [from, to); to must be greater than from ({f})"),
            );
            return None;
        }
    }
    Some(Layer {
        name: name?,
        from: from? as u32,
        to: to? as u32,
    })
}
