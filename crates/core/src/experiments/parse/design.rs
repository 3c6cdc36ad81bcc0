//! `[design]` (how units are randomised: hash, blocked, cluster, stepped
//! wedge; switchback in [`super::switchback`]) and `[schedule]` (start, end, ramp), which a stepped wedge's
//! crossover steps must fall within.

use super::Cx;
use crate::experiments::{format_rfc3339, minimal_block, Arm, Design, RampStep, Schedule, Unit};
use crate::toml_reader::{as_date, Kind, Node, Report, Tbl};

const DESIGN_FIELDS: &[&str] = &[
    "kind",
    "salt",
    "strata",
    "block_size",
    "communities",
    "steps",
    "first_step",
    "step_days",
    "step_count",
    "period",
    "boundaries",
    "scheme",
    "probability",
    "washout",
];

pub(super) fn read_design(
    cx: &mut Cx<'_>,
    n: &Node,
    key: Option<&str>,
    arms: Option<&[Arm]>,
    unit: Option<&Unit>,
    schedule: Option<&Schedule>,
) -> Option<Design> {
    let t = Tbl::open(cx, n, "design", DESIGN_FIELDS)?;
    let (kind, kind_pos) = t.choice(
        cx,
        "kind",
        &["hash", "blocked", "cluster", "stepped_wedge", "switchback"],
    )?;
    let allowed: &[&str] = match kind.as_str() {
        "hash" => &["kind", "salt"],
        "blocked" => &["kind", "strata", "block_size"],
        "cluster" => &["kind", "communities"],
        "switchback" => &[
            "kind",
            "communities",
            "period",
            "boundaries",
            "scheme",
            "probability",
            "washout",
        ],
        _ => &[
            "kind",
            "communities",
            "steps",
            "first_step",
            "step_days",
            "step_count",
        ],
    };
    let mut ok = true;
    for (k, v) in t.entries {
        if !allowed.contains(&k.as_str()) && DESIGN_FIELDS.contains(&k.as_str()) {
            cx.err(
                v.pos,
                &t.field(k),
                format!(
                    "not used by a {kind} design; its fields are: {}",
                    allowed.join(", ")
                ),
            );
            ok = false;
        }
    }
    if matches!(kind.as_str(), "cluster" | "stepped_wedge" | "switchback") {
        if let Some(Unit::User) = unit {
            cx.err(
                kind_pos,
                "design.kind",
                format!("a {kind} design randomises whole communities; set unit.kind = \"community\" (or use a hash or blocked design for users)"),
            );
            ok = false;
        }
    }
    let design = match kind.as_str() {
        "hash" => {
            let salt = match t.opt_string(cx, "salt") {
                Some(s) => s.or_else(|| key.map(str::to_string)),
                None => None,
            };
            Design::Hash { salt: salt? }
        }
        "blocked" => {
            let strata = t.strings(cx, "strata", true);
            let arms = arms?;
            let m = minimal_block(arms);
            let block_size = match t.opt_int(cx, "block_size", 1, 100_000) {
                Some(Some(b)) if (b as u64).checked_rem(m) != Some(0) => {
                    let pos = t.get("block_size").map_or(t.pos, |n| n.pos);
                    cx.err(
                        pos,
                        "design.block_size",
                        format!(
                            "{b} is not a multiple of {m} (the arm weights in lowest terms sum to {m}); expected e.g. {}, {} or {}",
                            m,
                            2 * m,
                            4 * m
                        ),
                    );
                    None
                }
                Some(Some(b)) => Some(b as u64),
                Some(None) => Some(default_block_size(m)),
                None => None,
            };
            Design::Blocked {
                strata: strata?,
                block_size: block_size?,
            }
        }
        "cluster" => {
            let communities = t.strings(cx, "communities", false)?;
            let arms = arms?;
            let counts = crate::experiments::assign::cluster_counts(arms, communities.len());
            if let Some(i) = counts.iter().position(|&c| c == 0) {
                let pos = t.get("communities").map_or(t.pos, |n| n.pos);
                cx.err(
                    pos,
                    "design.communities",
                    format!(
                        "{} communities split by the arm weights leave arm {:?} with none; list more communities or change the weights",
                        communities.len(),
                        arms[i].variant
                    ),
                );
                return None;
            }
            Design::Cluster { communities }
        }
        "switchback" => super::switchback::read_switchback(cx, &t, kind_pos, arms, schedule)?,
        _ => {
            let communities = t.strings(cx, "communities", false);
            let steps = read_steps(cx, &t, schedule);
            if let Some(arms) = arms {
                if arms.len() != 2 {
                    cx.err(
                        kind_pos,
                        "design.kind",
                        format!("a stepped_wedge design needs exactly 2 arms (control and treatment), found {}", arms.len()),
                    );
                    ok = false;
                }
            }
            let (communities, steps) = (communities?, steps?);
            if communities.len() < steps.len() {
                let pos = t.get("communities").map_or(t.pos, |n| n.pos);
                cx.err(
                    pos,
                    "design.communities",
                    format!(
                        "{} communities cannot fill {} steps; list at least as many communities as steps",
                        communities.len(),
                        steps.len()
                    ),
                );
                return None;
            }
            Design::SteppedWedge { communities, steps }
        }
    };
    ok.then_some(design)
}

/// Twice the minimal block, but at least 4, so that the last assignment of
/// a block is not predictable from the first.
fn default_block_size(m: u64) -> u64 {
    let mut b = 2 * m;
    while b < 4 {
        b += m;
    }
    b
}

fn read_steps(cx: &mut Cx<'_>, t: &Tbl<'_>, schedule: Option<&Schedule>) -> Option<Vec<i64>> {
    let explicit = t.get("steps");
    let generated = ["first_step", "step_days", "step_count"]
        .iter()
        .any(|k| t.get(k).is_some());
    let (steps, pos) = match (explicit, generated) {
        (Some(n), true) => {
            cx.err(
                n.pos,
                "design.steps",
                "give either steps (a list of dates) or first_step + step_days + step_count, not both",
            );
            return None;
        }
        (Some(n), false) => {
            let Kind::Array(items) = &n.kind else {
                cx.wrong_type(n, "design.steps", "an array of RFC 3339 date-times");
                return None;
            };
            if items.is_empty() {
                cx.err(n.pos, "design.steps", "must not be empty");
                return None;
            }
            let mut steps = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let f = format!("design.steps[{i}]");
                match as_date(cx, item, &f) {
                    Some(s) if steps.last().is_some_and(|&p| p >= s) => {
                        cx.err(item.pos, &f, "steps must be strictly increasing");
                        ok = false;
                    }
                    Some(s) => steps.push(s),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            (steps, n.pos)
        }
        (None, true) => {
            let first = t.date(cx, "first_step");
            let days = t.int(cx, "step_days", 1, 3660);
            let count = t.int(cx, "step_count", 1, 1000);
            let (first, pos) = first?;
            let (days, count) = (days?, count?);
            ((0..count).map(|i| first + i * days * 86_400).collect(), pos)
        }
        (None, false) => {
            t.missing(
                cx,
                "steps",
                "a list of crossover dates, or first_step + step_days + step_count",
            );
            return None;
        }
    };
    if let Some(s) = schedule {
        let first = steps[0];
        let last = *steps.last().expect("non-empty");
        if first <= s.start || last >= s.end {
            cx.err(
                pos,
                "design.steps",
                format!(
                    "every step must fall after schedule.start ({}) and before schedule.end ({}); the steps run from {} to {}",
                    format_rfc3339(s.start),
                    format_rfc3339(s.end),
                    format_rfc3339(first),
                    format_rfc3339(last)
                ),
            );
            return None;
        }
    }
    Some(steps)
}

pub(super) fn read_schedule(cx: &mut Cx<'_>, n: &Node) -> Option<Schedule> {
    let t = Tbl::open(cx, n, "schedule", &["start", "end", "ramp"])?;
    let start = t.date(cx, "start");
    let end = t.date(cx, "end");
    if let (Some((s, _)), Some((e, epos))) = (start, end) {
        if e <= s {
            cx.err(epos, "schedule.end", "must be after schedule.start");
            return None;
        }
    }
    let ramp = match t.get("ramp") {
        None => Some(Vec::new()),
        Some(r) => read_ramp(cx, r, start.map(|s| s.0), end.map(|e| e.0)),
    };
    Some(Schedule {
        start: start?.0,
        end: end?.0,
        ramp: ramp?,
    })
}

fn read_ramp(
    cx: &mut Cx<'_>,
    n: &Node,
    start: Option<i64>,
    end: Option<i64>,
) -> Option<Vec<RampStep>> {
    let Kind::Array(items) = &n.kind else {
        cx.wrong_type(
            n,
            "schedule.ramp",
            "an array of { at = <date-time>, percent = <1..100> }",
        );
        return None;
    };
    let mut out: Vec<RampStep> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("schedule.ramp[{i}]");
        let Some(t) = Tbl::open(cx, item, &path, &["at", "percent"]) else {
            ok = false;
            continue;
        };
        let at = t.date(cx, "at");
        let percent = t.int(cx, "percent", 1, 100);
        let (Some((at, apos)), Some(percent)) = (at, percent) else {
            ok = false;
            continue;
        };
        if let (Some(s), Some(e)) = (start, end) {
            if at < s || at >= e {
                cx.err(
                    apos,
                    &t.field("at"),
                    "must be within the schedule (from start, before end)",
                );
                ok = false;
            }
        }
        if let Some(prev) = out.last() {
            if at <= prev.at || percent as u32 <= prev.percent {
                cx.err(
                    t.pos,
                    &path,
                    "ramp steps must increase in both time and percent",
                );
                ok = false;
            }
        }
        out.push(RampStep {
            at,
            percent: percent as u32,
        });
    }
    ok.then_some(out)
}
