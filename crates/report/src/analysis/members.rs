//! Designs that randomise members: `hash` (the sufficient-statistics
//! engine: Welch, CUPED, post-stratification) and `blocked` (each
//! treatment arm against control within strata, never pooled).

use super::fetch::{MetricData, MetricRows, StoredTrial};
use super::{Beside, Estimate, MetricAnalysis};
use commonlab_core::experiments::{Metric, MetricKind, TrialSpec};
use commonlab_stats::analyze::{
    analyze, AnalyzeInput, Entry, MetricInput, MetricOutcome, StratumInput,
};
use commonlab_stats::cuped_strata::{within_strata, StrataCuped, StratumRow};
use commonlab_stats::effects::{ArmStats, MetricKind as StatsKind};
use commonlab_stats::randomization::Alternative;
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsDesign, RowsInput, RowsOutput};
use commonlab_store::{MemberValue, MetricCell};
use std::collections::BTreeMap;

/// The arms in engine order: control first, then the others in file order.
pub(super) fn arm_order(spec: &TrialSpec) -> Vec<String> {
    let mut arms = vec![spec.control().variant.clone()];
    arms.extend(
        spec.arms
            .iter()
            .filter(|a| !a.control)
            .map(|a| a.variant.clone()),
    );
    arms
}

fn stats_kind(k: MetricKind) -> StatsKind {
    match k {
        MetricKind::Proportion => StatsKind::Proportion,
        MetricKind::Mean | MetricKind::Count => StatsKind::Mean,
        MetricKind::Ratio => StatsKind::Ratio,
    }
}

/// Sums cells into one arm's engine statistics.
fn arm_stats(metric: &Metric, cells: &[&MetricCell]) -> ArmStats {
    let mut s = ArmStats::default();
    let (mut yy, mut x, mut xx, mut xy, mut d, mut dd, mut md, mut dx) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for c in cells {
        s.n += c.n as f64;
        s.sum += c.sum;
        yy += c.sum_squares;
        x += c.x_sum;
        xx += c.x_sum_squares;
        xy += c.xy_sum;
        d += c.d_sum;
        dd += c.d_sum_squares;
        md += c.md_sum;
        dx += c.dx_sum;
    }
    s.sum_squares = Some(yy);
    if metric.covariate.is_some() {
        s.x_sum = Some(x);
        s.x_sum_squares = Some(xx);
        s.xy_sum = Some(xy);
    }
    if metric.kind == MetricKind::Ratio {
        s.d_sum = Some(d);
        s.d_sum_squares = Some(dd);
        s.md_sum = Some(md);
        if metric.covariate.is_some() {
            s.dx_sum = Some(dx);
        }
    }
    s
}

/// The engine's input for one metric: strata per community when every
/// community holds at least 2 units of every arm (post-stratification).
fn metric_input(metric: &Metric, arms: &[String], cells: &[MetricCell]) -> (MetricInput, bool) {
    let per_arm: Vec<Vec<&MetricCell>> = arms
        .iter()
        .map(|a| cells.iter().filter(|c| &c.arm == a).collect())
        .collect();
    let mut communities: BTreeMap<&str, Vec<Vec<&MetricCell>>> = BTreeMap::new();
    let mut unstratifiable = false;
    for c in cells.iter().filter(|c| arms.contains(&c.arm)) {
        match c.community.as_deref() {
            Some(name) => {
                let slot = communities
                    .entry(name)
                    .or_insert_with(|| vec![Vec::new(); arms.len()]);
                let i = arms.iter().position(|a| a == &c.arm).expect("filtered");
                slot[i].push(c);
            }
            None => unstratifiable = true,
        }
    }
    let stratified = !unstratifiable
        && communities.len() >= 2
        && communities.values().all(|slots| {
            slots
                .iter()
                .all(|s| s.iter().map(|c| c.n).sum::<i64>() >= 2)
        });
    let input = MetricInput {
        name: metric.name.clone(),
        kind: stats_kind(metric.kind),
        stats: (!stratified).then(|| per_arm.iter().map(|s| arm_stats(metric, s)).collect()),
        strata: stratified.then(|| {
            communities
                .iter()
                .map(|(name, slots)| StratumInput {
                    name: (*name).to_string(),
                    stats: slots.iter().map(|s| arm_stats(metric, s)).collect(),
                })
                .collect()
        }),
    };
    (input, stratified)
}

fn n_per_arm(arms: &[String], cells: &[MetricCell]) -> BTreeMap<String, i64> {
    arms.iter()
        .map(|a| {
            (
                a.clone(),
                cells.iter().filter(|c| &c.arm == a).map(|c| c.n).sum(),
            )
        })
        .collect()
}

fn base(d: &MetricData) -> MetricAnalysis {
    MetricAnalysis {
        name: d.metric.name.clone(),
        role: d.role,
        kind: d.metric.kind.as_str(),
        direction: d.metric.direction.as_str(),
        unit: d.metric.unit.as_str(),
        library_ref: d.metric.library_ref.clone(),
        source: d.source,
        as_of: d.as_of,
        n: BTreeMap::new(),
        estimates: Vec::new(),
        notice: None,
        detail: serde_json::Value::Null,
    }
}

/// (effect, se, 95% interval, p-value) of a frequentist entry.
type Frequentist = (f64, f64, Option<(f64, f64)>, f64);

fn frequentist(e: &Entry) -> Option<Frequentist> {
    match e {
        Entry::Frequentist(f) => Some((f.effect, f.se, f.ci_lower.zip(f.ci_upper), f.p_value)),
        _ => None,
    }
}

fn entry_error(e: &Entry) -> Option<String> {
    match e {
        Entry::Error { error } => Some(error.clone()),
        _ => None,
    }
}

/// Runs the sufficient-statistics engine on cells (all arms, each treatment
/// arm against control) and reads one estimate per arm off it: CUPED when
/// the metric has a covariate, else post-stratification when the engine was
/// given strata, else Welch.
fn engine_estimates(spec: &TrialSpec, d: &MetricData, cells: &[MetricCell]) -> MetricAnalysis {
    let arms = arm_order(spec);
    let mut out = base(d);
    out.n = n_per_arm(&arms, cells);
    let (input, stratified) = metric_input(&d.metric, &arms, cells);
    let engine_input = AnalyzeInput {
        alpha: spec.analysis.alpha,
        sequential_tuning_parameter: 5000.0,
        prior: None,
        weights: None,
        users: None,
        arms: arms.clone(),
        metrics: vec![input],
        survey_response: None,
    };
    let output = analyze(&engine_input);
    let Some(outcome) = output.metrics.get(&d.metric.name) else {
        return out;
    };
    out.detail = serde_json::to_value(outcome).unwrap_or_default();
    let results = match outcome {
        MetricOutcome::Ok(r) => r,
        MetricOutcome::Error { error } => {
            out.notice = Some(format!("no estimate: {error}"));
            return out;
        }
    };
    let control = spec.control().variant.clone();
    let mut errors = Vec::new();
    for arm in arms.iter().skip(1) {
        let Some(cmp) = results.comparisons.get(arm) else {
            continue;
        };
        let welch = &cmp.absolute.two_sided;
        let cuped = cmp
            .cuped
            .as_ref()
            // A covariate that explains nothing (θ = 0 or undefined, such
            // as no pre-exposure events at all) adjusts nothing: Welch.
            .filter(|c| d.metric.covariate.is_some() && c.theta.is_some_and(|t| t != 0.0))
            .map(|c| &c.absolute.two_sided);
        let post = cmp
            .post_stratified
            .as_ref()
            .filter(|_| stratified)
            .map(|p| &p.absolute.two_sided);
        let candidates = [
            (
                "cuped",
                cuped,
                "the metric has a pre-exposure covariate: CUPED removes the variance it explains (unbiased under randomisation)",
            ),
            (
                "post_stratified",
                post,
                "every community holds at least two members of every arm: post-stratification by community removes between-community variance",
            ),
            (
                "welch",
                Some(welch),
                "Welch's t-test on per-member values (unequal variances)",
            ),
        ];
        let lead = candidates
            .iter()
            .find_map(|(m, e, why)| e.and_then(frequentist).map(|f| (*m, f, *why)));
        let Some((method, (effect, se, ci, p), why)) = lead else {
            errors.push(format!(
                "{arm}: {}",
                entry_error(welch).unwrap_or_else(|| "no estimate".into())
            ));
            continue;
        };
        let beside = candidates
            .iter()
            .filter(|(m, _, _)| *m != method)
            .filter_map(|(m, e, _)| {
                e.map(|e| {
                    let f = frequentist(e);
                    Beside {
                        method: (*m).to_string(),
                        estimate: f.map(|f| f.0),
                        se: f.map(|f| f.1),
                        p_value: f.map(|f| f.3),
                        note: entry_error(e),
                    }
                })
            })
            .collect();
        out.estimates.push(Estimate {
            arm: arm.clone(),
            control: control.clone(),
            estimate: effect,
            se: Some(se),
            ci95: ci,
            p_value: Some(p),
            min_attainable_p: None,
            method: method.to_string(),
            model: None,
            why: why.to_string(),
            beside,
        });
    }
    if !errors.is_empty() {
        out.notice = Some(format!("no estimate for {}", errors.join("; ")));
    }
    out
}

pub(super) fn analyse_hash(t: &StoredTrial) -> Vec<MetricAnalysis> {
    t.metrics
        .iter()
        .map(|d| match &d.rows {
            MetricRows::Cells(cells) => engine_estimates(&t.spec, d, cells),
            _ => base(d),
        })
        .collect()
}

/// A member's stratum for the analysis: its assignment's stratum, else the
/// community recorded with its exposure.
pub(super) fn stratum_of(v: &MemberValue) -> String {
    v.stratum
        .clone()
        .or_else(|| v.community.clone())
        .unwrap_or_else(|| "(none)".into())
}

/// The rows of one treatment arm against control (blocked designs).
pub fn blocked_rows(members: &[MemberValue], control: &str, arm: &str) -> Vec<Row> {
    members
        .iter()
        .filter(|v| v.arm == control || v.arm == arm)
        .map(|v| Row {
            cluster: stratum_of(v),
            period: None,
            arm: Some(v.arm.clone()),
            treated: None,
            value: v.y,
            covariate: None,
            stratum: None,
        })
        .collect()
}

/// The design of the rows analyses, with the trial's seed.
pub fn rows_design(kind: DesignKind, control: &str, seed: Option<u64>) -> RowsDesign {
    RowsDesign {
        kind,
        control_arm: control.to_string(),
        community_effects: None,
        alternative: Alternative::TwoSided,
        max_enumerate: 100_000,
        randomisation_draws: 9_999,
        wild_bootstrap_draws: 9_999,
        seed: seed.unwrap_or(0),
    }
}

pub(super) fn analyse_blocked(t: &StoredTrial) -> Vec<MetricAnalysis> {
    let arms = arm_order(&t.spec);
    let control = arms[0].clone();
    t.metrics
        .iter()
        .map(|d| {
            let MetricRows::Members(members) = &d.rows else {
                return base(d);
            };
            if d.metric.kind == MetricKind::Ratio {
                // A ratio of sums needs the delta method: the engine on
                // per-(arm, stratum) cells, each arm against control.
                return engine_estimates(&t.spec, d, &cells_by_stratum(members));
            }
            let mut out = base(d);
            out.n = arms
                .iter()
                .map(|a| {
                    (
                        a.clone(),
                        members.iter().filter(|v| &v.arm == a).count() as i64,
                    )
                })
                .collect();
            let mut detail = serde_json::Map::new();
            let mut errors = Vec::new();
            for arm in arms.iter().skip(1) {
                let input = RowsInput {
                    rows: blocked_rows(members, &control, arm),
                    design: rows_design(DesignKind::BlockedUsers, &control, t.seed),
                };
                // The covariate in the within-stratum comparison.
                let cuped = d
                    .metric
                    .covariate
                    .is_some()
                    .then(|| cuped_within_strata(d.metric.kind, members, &control, arm));
                match analyze_rows(&input) {
                    Ok(r) => {
                        detail.insert(arm.clone(), serde_json::to_value(&r).unwrap_or_default());
                        let mut e = blocked_estimate(&r, arm, &control);
                        if let Some(c) = cuped {
                            e = with_cuped(e, c);
                        }
                        out.estimates.push(e);
                    }
                    Err(e) => errors.push(format!("{arm}: {e}")),
                }
            }
            out.detail = serde_json::Value::Object(detail);
            if !errors.is_empty() {
                out.notice = Some(format!("no estimate for {}", errors.join("; ")));
            }
            out
        })
        .collect()
}

/// Per-(arm, stratum) cells of member values (the stratum as the engine's
/// community).
fn cells_by_stratum(members: &[MemberValue]) -> Vec<MetricCell> {
    let mut cells: BTreeMap<(String, String), MetricCell> = BTreeMap::new();
    for v in members {
        let key = (v.arm.clone(), stratum_of(v));
        let c = cells.entry(key.clone()).or_insert_with(|| MetricCell {
            arm: key.0,
            community: Some(key.1),
            n: 0,
            sum: 0.0,
            sum_squares: 0.0,
            x_sum: 0.0,
            x_sum_squares: 0.0,
            xy_sum: 0.0,
            d_sum: 0.0,
            d_sum_squares: 0.0,
            md_sum: 0.0,
            dx_sum: 0.0,
            y_cap: None,
            x_cap: None,
        });
        c.n += 1;
        c.sum += v.y;
        c.sum_squares += v.y * v.y;
        c.x_sum += v.x;
        c.x_sum_squares += v.x * v.x;
        c.xy_sum += v.x * v.y;
        c.d_sum += v.d;
        c.d_sum_squares += v.d * v.d;
        c.md_sum += v.y * v.d;
        c.dx_sum += v.d * v.x;
    }
    cells.into_values().collect()
}

/// CUPED within strata of one treatment arm against control
/// (`stats::cuped_strata`): each member's stratum, arm, value and
/// pre-exposure covariate.
fn cuped_within_strata(
    kind: MetricKind,
    members: &[MemberValue],
    control: &str,
    arm: &str,
) -> Result<StrataCuped, String> {
    let strata: Vec<String> = members.iter().map(stratum_of).collect();
    let rows: Vec<StratumRow<'_>> = members
        .iter()
        .zip(&strata)
        .filter(|(v, _)| v.arm == control || v.arm == arm)
        .map(|(v, s)| StratumRow {
            stratum: s,
            treated: v.arm == arm,
            y: v.y,
            x: v.x,
        })
        .collect();
    within_strata(stats_kind(kind), &rows).map_err(|e| e.to_string())
}

/// The blocked estimate led by CUPED within strata when it gives one and
/// the covariate explains something (θ ≠ 0, as for `hash` designs); the
/// stratified permutation test and the post-stratified t-test (without
/// the covariate) beside it. With θ = 0 the estimate as it was; when
/// CUPED gives no estimate, that and the reason beside it.
fn with_cuped(e: Estimate, c: Result<StrataCuped, String>) -> Estimate {
    let mut beside = vec![Beside {
        method: e.method.clone(),
        estimate: Some(e.estimate),
        se: e.se,
        p_value: e.p_value,
        note: Some("without the covariate".into()),
    }];
    let c = match c {
        // A covariate that explains nothing (no variance within strata and
        // arms): the estimate as it was, as for `hash` designs.
        Ok(c) if c.theta == 0.0 => return e,
        Ok(c) => c,
        Err(why) => {
            let mut e = e;
            e.beside.push(Beside {
                method: "cuped_within_strata".into(),
                estimate: None,
                se: None,
                p_value: None,
                note: Some(why),
            });
            return e;
        }
    };
    beside.extend(e.beside.iter().filter(|b| b.method != e.method).cloned());
    let left = if c.left_out.is_empty() {
        String::new()
    } else {
        format!(
            "; strata without two members in each arm left out: {}",
            c.left_out.join(", ")
        )
    };
    Estimate {
        estimate: c.estimate,
        se: Some(c.se),
        ci95: Some((c.ci95[0], c.ci95[1])),
        p_value: Some(c.p_value),
        min_attainable_p: None,
        method: "cuped_within_strata".into(),
        model: Some(format!(
            "y - theta * x compared within {} strata, weighted by stratum size (theta = {:.6}, pooled within stratum and arm; df = {:.1})",
            c.strata, c.theta, c.df
        )),
        why: format!(
            "members were randomised within strata and the metric has a pre-exposure covariate: CUPED within each stratum removes the variance the covariate explains (Student t with the Welch-Satterthwaite df of the stratified variance; the permutation test without the covariate beside){left}"
        ),
        beside,
        ..e
    }
}

fn blocked_estimate(r: &RowsOutput, arm: &str, control: &str) -> Estimate {
    let post = r.post_stratified.as_ref().and_then(|o| o.result.as_ref());
    let perm = r.randomisation.result.as_ref();
    let (method, p, why) = match perm {
        Some(p) => (
            "stratified_permutation",
            Some(p.p_value),
            format!("members were randomised within strata: the permutation test re-randomises them within each stratum as the design did ({})", r.lead.detail),
        ),
        None => (
            "post_stratified",
            post.map(|p| p.p_value),
            format!("the permutation test gave no result ({}); the post-stratified t-test leads", r.lead.detail),
        ),
    };
    Estimate {
        arm: arm.to_string(),
        control: control.to_string(),
        estimate: r.estimate,
        se: post.map(|p| p.se),
        ci95: post.map(|p| p.ci95),
        p_value: p,
        min_attainable_p: perm.map(|p| p.min_attainable_p),
        method: method.to_string(),
        model: Some(r.model.clone()),
        why,
        beside: vec![Beside {
            method: "post_stratified".into(),
            estimate: post.map(|p| p.estimate),
            se: post.map(|p| p.se),
            p_value: post.map(|p| p.p_value),
            note: r
                .post_stratified
                .as_ref()
                .and_then(|o| o.error.as_ref())
                .map(ToString::to_string),
        }],
    }
}
