//! Community designs: `cluster` (communities randomised once) and
//! `stepped_wedge` (communities cross over at randomised steps), analysed
//! on community × period rows (`docs/analyze.md`, "Rows by design").

use super::fetch::{Allocation, MetricData, MetricRows, StoredTrial};
use super::members::{arm_order, rows_design};
use super::{Beside, Estimate, MetricAnalysis};
use commonlab_core::experiments::{MetricKind, MetricUnit};
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsInput, RowsOutput};
use commonlab_store::CommunityCell;
use serde::Serialize;

/// One community in one period: the row the analysis fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunityRow {
    pub community: String,
    pub period: i64,
    /// The arm the schedule (or allocation) gave the community then.
    pub arm: String,
    pub treated: bool,
    /// Members active in the period's window.
    pub members: i64,
    /// The metric: the members' mean (`unit = "member"`; for ratios the
    /// ratio of their sums) or the community's total (`unit =
    /// "community"`; for proportions 1 when any member counted).
    pub value: f64,
}

/// The arm of `community` in `period` (index into the trial's periods).
pub(super) fn arm_in(t: &StoredTrial, community: &str, period: i64) -> Option<String> {
    let control = t.spec.control().variant.clone();
    match &t.allocation {
        Allocation::Cluster(map) => map.get(community).cloned(),
        Allocation::SteppedWedge(schedule) => {
            let (_, crossover) = schedule.iter().find(|(c, _)| c == community)?;
            let start = t
                .spec
                .periods()
                .iter()
                .find(|p| i64::from(p.index) == period)?
                .start;
            Some(if start >= *crossover {
                t.spec.treatment().variant.clone()
            } else {
                control
            })
        }
        Allocation::Switchback(s) => {
            let on = s.on_in(community, usize::try_from(period).ok()?)?;
            Some(if on {
                t.spec.treatment().variant.clone()
            } else {
                control
            })
        }
        Allocation::None => None,
    }
}

fn value(kind: MetricKind, unit: MetricUnit, c: &CommunityCell) -> Option<f64> {
    match (kind, unit) {
        (MetricKind::Ratio, _) => (c.d_sum > 0.0).then(|| c.sum / c.d_sum),
        (_, MetricUnit::Member) => (c.n > 0).then(|| c.sum / c.n as f64),
        (MetricKind::Proportion, MetricUnit::Community) => {
            Some(if c.sum > 0.0 { 1.0 } else { 0.0 })
        }
        (_, MetricUnit::Community) => Some(c.sum),
    }
}

/// The community × period rows of one metric (cells without a defined
/// value, a ratio without denominator events, are left out).
pub fn community_rows(t: &StoredTrial, d: &MetricData) -> Vec<CommunityRow> {
    let MetricRows::Communities { rows, .. } = &d.rows else {
        return Vec::new();
    };
    let control = t.spec.control().variant.clone();
    rows.cells
        .iter()
        .filter_map(|c| {
            let arm = arm_in(t, &c.community, c.period)?;
            Some(CommunityRow {
                community: c.community.clone(),
                period: c.period,
                treated: arm != control,
                arm,
                members: c.n,
                value: value(d.metric.kind, d.metric.unit, c)?,
            })
        })
        .collect()
}

/// The engine's rows for one treatment arm against control.
pub fn engine_rows(rows: &[CommunityRow], control: &str, arm: &str) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.arm == control || r.arm == arm)
        .map(|r| Row {
            cluster: r.community.clone(),
            period: Some(r.period),
            arm: Some(r.arm.clone()),
            treated: None,
            value: r.value,
            covariate: None,
            stratum: None,
        })
        .collect()
}

pub(super) fn analyse_community(t: &StoredTrial) -> Vec<MetricAnalysis> {
    let arms = arm_order(&t.spec);
    let control = arms[0].clone();
    let kind = if t.spec.design.kind() == "stepped_wedge" {
        DesignKind::SteppedWedge
    } else {
        DesignKind::Cluster
    };
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
                n: arms
                    .iter()
                    .map(|a| (a.clone(), rows.iter().filter(|r| &r.arm == a).count() as i64))
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
            let mut detail = serde_json::Map::new();
            let treatments: Vec<&String> = arms.iter().skip(1).collect();
            // A stepped wedge has one treatment (the first arm that is not
            // control); a cluster design compares each arm with control.
            let treatments = if kind == DesignKind::SteppedWedge {
                treatments.into_iter().take(1).collect()
            } else {
                treatments
            };
            if !rows.is_empty() {
                for arm in treatments {
                    let input = RowsInput {
                        rows: engine_rows(&rows, &control, arm),
                        design: rows_design(kind, &control, t.seed),
                    };
                    match analyze_rows(&input) {
                        Ok(r) => {
                            detail.insert(arm.clone(), serde_json::to_value(&r).unwrap_or_default());
                            out.estimates.push(community_estimate(&r, arm, &control));
                        }
                        Err(e) => notes.push(format!("no estimate for {arm}: {e}")),
                    }
                }
            }
            out.detail = serde_json::Value::Object(detail);
            if !notes.is_empty() {
                out.notice = Some(notes.join("; "));
            }
            out
        })
        .collect()
}

fn community_estimate(r: &RowsOutput, arm: &str, control: &str) -> Estimate {
    let ri = r.randomisation.result.as_ref();
    let cr2 = match r.cr2_lead.as_ref().map(|l| l.field.as_str()) {
        Some("cr2_ik") => r.cr2_ik.as_ref(),
        _ => r.cr2.as_ref(),
    }
    .and_then(|o| o.result.as_ref());
    let (p, method) = match (ri, cr2) {
        (Some(ri), _) => (Some(ri.p_value), "randomisation".to_string()),
        (None, Some(c)) => (Some(c.p_value), c.method.clone()),
        (None, None) => (None, r.lead.method.clone()),
    };
    let mut beside = Vec::new();
    let mut push =
        |name: &str, est: Option<f64>, se: Option<f64>, p: Option<f64>, note: Option<String>| {
            beside.push(Beside {
                method: name.to_string(),
                estimate: est,
                se,
                p_value: p,
                note,
            })
        };
    for (name, o) in [("cr2", &r.cr2), ("cr2_ik", &r.cr2_ik), ("cr1", &r.cr1)] {
        if let Some(o) = o {
            let c = o.result.as_ref();
            push(
                name,
                c.map(|c| c.estimate),
                c.map(|c| c.se),
                c.map(|c| c.p_value),
                o.error
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| c.and_then(|c| c.note.clone())),
            );
        }
    }
    if let Some(o) = &r.wild_bootstrap {
        let w = o.result.as_ref();
        push(
            "wild_cluster_bootstrap",
            Some(r.estimate),
            None,
            w.map(|w| w.p_value),
            o.error.as_ref().map(ToString::to_string),
        );
    }
    if let Some(o) = &r.ibragimov_muller {
        let m = o.result.as_ref();
        push(
            "ibragimov_muller",
            m.map(|m| m.mean),
            m.map(|m| m.se),
            m.map(|m| m.p_value),
            o.error.as_ref().map(ToString::to_string),
        );
    }
    Estimate {
        arm: arm.to_string(),
        control: control.to_string(),
        estimate: r.estimate,
        se: cr2.map(|c| c.se),
        ci95: cr2.map(|c| c.ci95),
        p_value: p,
        min_attainable_p: ri.map(|ri| ri.min_attainable_p).or(r.lead.min_attainable_p),
        method,
        model: Some(r.model.clone()),
        why: format!("{} Model: {}", r.lead.detail, r.model_reason),
        beside,
    }
}
