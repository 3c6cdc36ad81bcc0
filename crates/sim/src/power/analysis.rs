//! From one simulated trial to the rows its design's analysis uses, and
//! that analysis (`commonlab_stats`), as the report runs it:
//!
//! - members randomised (`hash`): one value per member in the metric's
//!   window after its first exposure; each treatment arm against control
//!   by Welch's t-test;
//! - members in permuted blocks within communities (`blocked`): the same
//!   values, each arm against control post-stratified by community
//!   (Welch within strata; pooled Welch when a community has fewer than
//!   two members in an arm, as the stored-trial analysis does);
//! - the same as a comparison design (`blocked_users`): the rows of
//!   `stats::rows` with design `blocked_users`, the stratified permutation
//!   test leading and the post-stratified t beside it;
//! - whole communities (`cluster`): one row per community (the mean of its
//!   members' values), randomisation inference over the allocations the
//!   design could have drawn, CR2 beside it;
//! - stepped wedge: community × period rows (periods between the steps,
//!   the baseline before the first), the mean over the members who
//!   visited in the period of their events in it; community and period
//!   fixed effects, randomisation inference over all orders (exact when
//!   there are at most 100,000), CR2 beside it.

use commonlab_stats::effects::{self, ArmStats, MetricKind, Scale};
use commonlab_stats::poststrat::{self, Stratum};
use commonlab_stats::randomization::Alternative;
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsDesign, RowsInput};

use super::trial::{day_start, Records};
use super::PlanDesign;
use commonlab_core::experiments::TrialSpec;

/// What is measured on each member.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measure {
    /// Window after first exposure, in days: `[from, to)`.
    pub from: u32,
    pub to: u32,
    /// 1 if the member had at least one counted event (a proportion
    /// metric), else the count.
    pub indicator: bool,
}

/// How the p-values are computed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inference {
    pub alpha: f64,
    pub alternative: Alternative,
    pub randomisation_draws: usize,
    pub seed: u64,
}

/// One method's result on one comparison of one simulated trial.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MethodOutcome {
    pub p_value: Option<f64>,
    pub estimate: Option<f64>,
    pub min_attainable_p: Option<f64>,
    pub error: Option<String>,
}

impl MethodOutcome {
    fn failed(e: impl ToString) -> Self {
        MethodOutcome {
            p_value: None,
            estimate: None,
            min_attainable_p: None,
            error: Some(e.to_string()),
        }
    }
}

/// The methods each design reports, the lead first.
pub(crate) fn methods(design: PlanDesign) -> &'static [&'static str] {
    match design {
        PlanDesign::Hash => &["Welch t"],
        PlanDesign::Blocked => &["post-stratified Welch"],
        PlanDesign::BlockedUsers => &["stratified permutation", "post-stratified t"],
        PlanDesign::Cluster | PlanDesign::SteppedWedge | PlanDesign::Switchback => {
            &["randomisation", "CR2"]
        }
    }
}

/// Per treatment arm (in file order), one outcome per [`methods`] entry.
pub(crate) fn analyse(
    design: PlanDesign,
    spec: &TrialSpec,
    names: &[String],
    records: &Records,
    measure: Measure,
    inference: Inference,
) -> Vec<Vec<MethodOutcome>> {
    let control = spec.arms.iter().position(|a| a.control).unwrap_or(0);
    let treatments: Vec<usize> = (0..spec.arms.len())
        .filter(|&i| i != control && (!design.single_treatment() || i == treated_arm(spec)))
        .collect();
    treatments
        .into_iter()
        .map(|arm| match design {
            PlanDesign::Hash | PlanDesign::Blocked => {
                vec![welch(design, records, measure, control, arm, inference)]
            }
            PlanDesign::BlockedUsers => {
                blocked_users(names, records, measure, control, arm, inference)
            }
            PlanDesign::Cluster => cluster(spec, names, records, measure, control, arm, inference),
            PlanDesign::SteppedWedge => stepped_wedge(spec, names, records, measure, inference),
            PlanDesign::Switchback => {
                super::switchback::analyse(spec, names, records, measure, inference)
            }
        })
        .collect()
}

fn treated_arm(spec: &TrialSpec) -> usize {
    let t = &spec.treatment().variant;
    spec.arms.iter().position(|a| &a.variant == t).unwrap_or(1)
}

/// Members whose window closed: (community, arm, value).
fn member_values(records: &Records, m: Measure) -> Vec<(usize, usize, f64)> {
    records
        .members
        .iter()
        .filter_map(|r| {
            let (first, arm) = r.exposure?;
            let (from, to) = (first + m.from, first + m.to);
            if to > records.days {
                return None;
            }
            let n = r.events.iter().filter(|&&d| d >= from && d < to).count();
            Some((r.community, arm, value(n, m)))
        })
        .collect()
}

pub(super) fn value(count: usize, m: Measure) -> f64 {
    if m.indicator {
        f64::from(u8::from(count > 0))
    } else {
        count as f64
    }
}

fn arm_stats<'a>(values: impl Iterator<Item = &'a f64>) -> ArmStats {
    let (mut n, mut s, mut ss) = (0.0, 0.0, 0.0);
    for v in values {
        n += 1.0;
        s += v;
        ss += v * v;
    }
    ArmStats::new(n, s, ss)
}

fn stats_alternative(a: Alternative) -> effects::Alternative {
    match a {
        Alternative::TwoSided => effects::Alternative::TwoSided,
        Alternative::Greater => effects::Alternative::Greater,
        Alternative::Less => effects::Alternative::Lesser,
    }
}

/// Welch's t-test (hash), post-stratified by community (blocked).
fn welch(
    design: PlanDesign,
    records: &Records,
    m: Measure,
    control: usize,
    arm: usize,
    inf: Inference,
) -> MethodOutcome {
    let kind = if m.indicator {
        MetricKind::Proportion
    } else {
        MetricKind::Mean
    };
    let values = member_values(records, m);
    let pick = |a: usize, c: Option<usize>| {
        arm_stats(
            values
                .iter()
                .filter(|(vc, va, _)| *va == a && c.is_none_or(|c| c == *vc))
                .map(|(_, _, v)| v),
        )
    };
    let communities = records.community_arms.len();
    let strata: Vec<(String, ArmStats, ArmStats)> = (0..communities)
        .map(|c| (c.to_string(), pick(control, Some(c)), pick(arm, Some(c))))
        .filter(|(_, a, b)| a.n + b.n > 0.0)
        .collect();
    let stratified = design == PlanDesign::Blocked
        && strata.len() >= 2
        && strata.iter().all(|(_, a, b)| a.n >= 2.0 && b.n >= 2.0);
    let estimate = if stratified {
        let s: Vec<Stratum<'_>> = strata
            .iter()
            .map(|(name, a, b)| Stratum {
                name,
                control: a,
                treatment: b,
            })
            .collect();
        poststrat::estimate(kind, &s, Scale::Absolute)
    } else {
        effects::estimate(
            kind,
            &pick(control, None),
            &pick(arm, None),
            Scale::Absolute,
        )
    };
    match estimate.and_then(|e| effects::t_test(&e, inf.alpha, stats_alternative(inf.alternative)))
    {
        Ok(t) => MethodOutcome {
            p_value: Some(t.p_value),
            estimate: Some(t.effect),
            min_attainable_p: None,
            error: None,
        },
        Err(e) => MethodOutcome::failed(e),
    }
}

fn rows_design(kind: DesignKind, names_control: &str, inf: Inference) -> RowsDesign {
    RowsDesign {
        kind,
        control_arm: names_control.to_string(),
        community_effects: None,
        alternative: inf.alternative,
        max_enumerate: 100_000,
        randomisation_draws: inf.randomisation_draws,
        // Not reported: a few draws keep the unused bootstrap cheap.
        wild_bootstrap_draws: 9,
        seed: inf.seed,
    }
}

/// Members randomised within communities: `stats::rows` `blocked_users`.
fn blocked_users(
    names: &[String],
    records: &Records,
    m: Measure,
    control: usize,
    arm: usize,
    inf: Inference,
) -> Vec<MethodOutcome> {
    let rows: Vec<Row> = member_values(records, m)
        .into_iter()
        .filter(|(_, a, _)| *a == control || *a == arm)
        .map(|(c, a, v)| Row {
            cluster: names[c].clone(),
            period: None,
            arm: None,
            treated: Some(a == arm),
            value: v,
            covariate: None,
            stratum: None,
        })
        .collect();
    let input = RowsInput {
        rows,
        design: rows_design(DesignKind::BlockedUsers, "control", inf),
    };
    match analyze_rows(&input) {
        Ok(out) => {
            let ri = match out.randomisation.result {
                Some(r) => MethodOutcome {
                    p_value: Some(r.p_value),
                    estimate: Some(out.estimate),
                    min_attainable_p: Some(r.min_attainable_p),
                    error: None,
                },
                None => MethodOutcome::failed(error_text(out.randomisation.error)),
            };
            let ps = match out.post_stratified {
                Some(o) => match o.result {
                    Some(r) => MethodOutcome {
                        p_value: Some(r.p_value),
                        estimate: Some(r.estimate),
                        min_attainable_p: None,
                        error: None,
                    },
                    None => MethodOutcome::failed(error_text(o.error)),
                },
                None => MethodOutcome::failed("no post-stratified result"),
            };
            vec![ri, ps]
        }
        Err(e) => vec![MethodOutcome::failed(&e), MethodOutcome::failed(&e)],
    }
}

fn error_text(e: Option<commonlab_stats::StatsError>) -> String {
    e.map_or_else(|| "no result".to_string(), |e| e.to_string())
}

/// Randomisation inference and CR2 of community-level rows.
fn community_analysis(kind: DesignKind, rows: Vec<Row>, inf: Inference) -> Vec<MethodOutcome> {
    let input = RowsInput {
        rows,
        design: rows_design(kind, "control", inf),
    };
    match analyze_rows(&input) {
        Ok(out) => {
            let ri = match out.randomisation.result {
                Some(r) => MethodOutcome {
                    p_value: Some(r.p_value),
                    estimate: Some(out.estimate),
                    min_attainable_p: Some(r.min_attainable_p),
                    error: None,
                },
                None => MethodOutcome::failed(error_text(out.randomisation.error)),
            };
            let cr2 = match out.cr2.map(|o| o.result.ok_or(o.error)) {
                Some(Ok(r)) => MethodOutcome {
                    p_value: Some(r.p_value),
                    estimate: Some(out.estimate),
                    min_attainable_p: None,
                    error: None,
                },
                Some(Err(e)) => MethodOutcome::failed(error_text(e)),
                None => MethodOutcome::failed("no CR2 result"),
            };
            vec![ri, cr2]
        }
        Err(e) => vec![MethodOutcome::failed(&e), MethodOutcome::failed(&e)],
    }
}

/// Whole communities: one row per community of the arms compared.
fn cluster(
    _spec: &TrialSpec,
    names: &[String],
    records: &Records,
    m: Measure,
    control: usize,
    arm: usize,
    inf: Inference,
) -> Vec<MethodOutcome> {
    let values = member_values(records, m);
    let rows = records
        .community_arms
        .iter()
        .enumerate()
        .filter(|(_, (_, a))| *a == control || *a == arm)
        .filter_map(|(c, (_, a))| {
            let vs: Vec<f64> = values
                .iter()
                .filter(|(vc, _, _)| *vc == c)
                .map(|(_, _, v)| *v)
                .collect();
            (!vs.is_empty()).then(|| Row {
                cluster: names[c].clone(),
                period: None,
                arm: None,
                treated: Some(*a == arm),
                value: vs.iter().sum::<f64>() / vs.len() as f64,
                covariate: None,
                stratum: None,
            })
        })
        .collect();
    community_analysis(DesignKind::Cluster, rows, inf)
}

/// Community × period cells: the mean over the members who visited in
/// the period of their counted events in it.
fn stepped_wedge(
    spec: &TrialSpec,
    names: &[String],
    records: &Records,
    m: Measure,
    inf: Inference,
) -> Vec<MethodOutcome> {
    let steps: Vec<i64> = match &spec.design {
        commonlab_core::experiments::Design::SteppedWedge { steps, .. } => steps.clone(),
        _ => Vec::new(),
    };
    let period_of: Vec<usize> = (0..records.days)
        .map(|d| {
            let t = day_start(spec, d);
            steps.iter().filter(|&&s| s <= t).count()
        })
        .collect();
    let periods = steps.len() + 1;
    let g = names.len();
    // (sum of values, members) per community × period.
    let mut cells = vec![(0.0, 0usize); g * periods];
    let mut active = vec![false; periods];
    let mut counts = vec![0usize; periods];
    for r in &records.members {
        active.iter_mut().for_each(|a| *a = false);
        counts.iter_mut().for_each(|c| *c = 0);
        for &d in &r.visits {
            active[period_of[d as usize]] = true;
        }
        for &d in &r.events {
            counts[period_of[d as usize]] += 1;
        }
        for p in (0..periods).filter(|&p| active[p]) {
            let cell = &mut cells[r.community * periods + p];
            cell.0 += value(counts[p], m);
            cell.1 += 1;
        }
    }
    let first_day_of: Vec<Option<u32>> = (0..periods)
        .map(|p| (0..records.days).find(|&d| period_of[d as usize] == p))
        .collect();
    let mut rows = Vec::new();
    for (c, name) in names.iter().enumerate() {
        for p in 0..periods {
            let (sum, n) = cells[c * periods + p];
            let Some(first) = first_day_of[p] else {
                continue;
            };
            if n == 0 {
                continue;
            }
            let treated = records.community_arms[c]
                .0
                .is_some_and(|from| first >= from);
            rows.push(Row {
                cluster: name.clone(),
                period: Some(p as i64),
                arm: None,
                treated: Some(treated),
                value: sum / n as f64,
                covariate: None,
                stratum: None,
            });
        }
    }
    community_analysis(DesignKind::SteppedWedge, rows, inf)
}
