//! Switchback designs: community × period rows (washout left out by the
//! period windows, `core::experiments::periods`), community and period
//! fixed effects, randomisation inference over the design's own
//! allocations leading, CR2 beside it, and the carry-over check
//! (`stats::switchback`; `docs/analyze-few.md`, "Switchback").

use super::community::{community_rows, CommunityRow};
use super::fetch::{Allocation, MetricRows, StoredTrial};
use super::{Beside, Estimate, MetricAnalysis};
use commonlab_core::experiments::{Design, SwitchbackSchedule, SwitchbackScheme, TrialSpec};
use commonlab_stats::switchback::{
    analyze_switchback, Cell, Scheme, SwitchbackInput, SwitchbackResult,
};

/// Enumerate the design's allocations when there are at most this many.
pub const MAX_ENUMERATE: u64 = 100_000;
/// Otherwise draw this many (seeded by the trial's seed).
pub const DRAWS: usize = 100_000;

pub(super) const DESIGN_ANALYSIS: &str = "switchback: community × period cells (each period's washout left out), community and period fixed effects, randomisation inference over the allocations the design's own scheme could have drawn leading (exact when they are few enough, else seeded sampling with its Monte Carlo error), CR2 beside it, and a carry-over check (the effect after an on period against the effect after an off period)";

/// The statistics engine's scheme for a switchback design.
pub fn scheme_of(spec: &TrialSpec) -> Option<Scheme> {
    let Design::Switchback { scheme, .. } = &spec.design else {
        return None;
    };
    Some(match *scheme {
        SwitchbackScheme::Independent { probability } => Scheme::Independent { probability },
        SwitchbackScheme::Balanced => Scheme::Balanced,
        SwitchbackScheme::BlockedPairs => Scheme::BlockedPairs,
    })
}

/// The engine's input from a switchback's rows (communities in the
/// schedule's order, periods by index).
pub fn switchback_input(
    schedule: &SwitchbackSchedule,
    scheme: Scheme,
    rows: &[CommunityRow],
    seed: u64,
) -> SwitchbackInput {
    SwitchbackInput {
        communities: schedule.communities.len(),
        periods: schedule.periods.len(),
        cells: rows
            .iter()
            .filter_map(|r| {
                Some(Cell {
                    community: schedule
                        .communities
                        .iter()
                        .position(|c| *c == r.community)?,
                    period: usize::try_from(r.period).ok()?,
                    value: r.value,
                })
            })
            .collect(),
        on: schedule.on.clone(),
        scheme,
        max_enumerate: MAX_ENUMERATE,
        draws: DRAWS,
        seed,
    }
}

pub(super) fn analyse_switchback(t: &StoredTrial) -> Vec<MetricAnalysis> {
    let control = t.spec.control().variant.clone();
    let treatment = t.spec.treatment().variant.clone();
    t.metrics
        .iter()
        .map(|d| {
            let rows = community_rows(t, d);
            let mut out = MetricAnalysis {
                name: d.metric.name.clone(),
                role: d.role,
                kind: d.metric.kind.as_str(),
                direction: d.metric.direction.as_str(),
                unit: d.metric.unit.as_str(),
                library_ref: d.metric.library_ref.clone(),
                source: d.source,
                as_of: d.as_of,
                n: [&control, &treatment]
                    .into_iter()
                    .map(|a| {
                        (
                            a.clone(),
                            rows.iter().filter(|r| &r.arm == a).count() as i64,
                        )
                    })
                    .collect(),
                estimates: Vec::new(),
                notice: None,
                detail: serde_json::Value::Null,
            };
            let mut notes = Vec::new();
            if let MetricRows::Communities { rows: cr, open, .. } = &d.rows {
                if cr.excluded_members > 0 {
                    notes.push(format!(
                        "{} members were seen in two or more of the design's communities and are left out",
                        cr.excluded_members
                    ));
                }
                if let Some(w) = open.first() {
                    notes.push(format!(
                        "{} period windows are still open (the next closes at {}); they are not analysed yet",
                        open.len(),
                        w.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ));
                }
            }
            let (Allocation::Switchback(schedule), Some(scheme), Some(seed)) =
                (&t.allocation, scheme_of(&t.spec), t.seed)
            else {
                out.notice = Some("the trial has not started: no schedule was drawn".into());
                return out;
            };
            if !rows.is_empty() {
                let input = switchback_input(schedule, scheme, &rows, seed);
                match analyze_switchback(&input) {
                    Ok(r) => {
                        if let Some(c) = &r.carryover {
                            notes.extend(c.warning.clone());
                        }
                        out.estimates.push(estimate(&r, &treatment, &control));
                        out.detail = serde_json::json!({
                            treatment.clone(): serde_json::to_value(&r).unwrap_or_default()
                        });
                    }
                    Err(e) => notes.push(format!("no estimate for {treatment}: {e}")),
                }
            }
            if !notes.is_empty() {
                out.notice = Some(notes.join("; "));
            }
            out
        })
        .collect()
}

fn estimate(r: &SwitchbackResult, arm: &str, control: &str) -> Estimate {
    let ri = &r.randomisation;
    let mut beside = vec![Beside {
        method: "cr2".into(),
        estimate: Some(r.cr2.estimate),
        se: Some(r.cr2.se),
        p_value: Some(r.cr2.p_value),
        note: Some(format!("{} df (Bell–McCaffrey)", r.cr2.df)),
    }];
    match &r.carryover {
        Some(c) => {
            for (name, t, what) in [
                (
                    "carryover_after_off",
                    &c.after_off,
                    "the effect in periods following an off period",
                ),
                (
                    "carryover_after_on",
                    &c.after_on,
                    "the effect in periods following an on period",
                ),
                (
                    "carryover_difference",
                    &c.difference,
                    "after on minus after off",
                ),
                (
                    "carryover_lingering",
                    &c.lingering,
                    "the effect lingering into an off period after an on period",
                ),
            ] {
                beside.push(Beside {
                    method: name.into(),
                    estimate: Some(t.estimate),
                    se: Some(t.se),
                    p_value: Some(t.p_value),
                    note: Some(format!(
                        "{what}; CR2 95% CI {:.6} to {:.6}",
                        t.ci95.0, t.ci95.1
                    )),
                });
            }
        }
        None => beside.push(Beside {
            method: "carryover".into(),
            estimate: None,
            se: None,
            p_value: None,
            note: r.carryover_error.clone(),
        }),
    }
    let how = if ri.exact {
        format!(
            "every one of the {} allocations the design could have drawn enumerated",
            ri.evaluated
        )
    } else {
        format!(
            "{} allocations drawn from the design (seeded by the trial's seed) out of {}; Monte Carlo standard error of the p-value {:.2e}",
            ri.evaluated,
            ri.total_allocations
                .map_or("more than 2^128".to_string(), |n| n.to_string()),
            ri.mc_se.unwrap_or(0.0)
        )
    };
    Estimate {
        arm: arm.to_string(),
        control: control.to_string(),
        estimate: r.estimate,
        se: Some(r.cr2.se),
        ci95: Some(r.cr2.ci95),
        p_value: Some(ri.p_value),
        min_attainable_p: Some(ri.min_attainable_p),
        method: "randomisation".into(),
        model: Some(r.model.clone()),
        why: format!(
            "Randomisation inference over the switchback's own allocation distribution ({how}; {} not estimable left out); the smallest p-value it can give here is {:.3e}. CR2 (communities as clusters) gives the standard error and interval.",
            ri.not_estimable, ri.min_attainable_p
        ),
        beside,
    }
}
