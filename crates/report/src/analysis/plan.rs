//! The plan's comparisons (each treatment arm against control on the
//! primary metric, corrected as the plan names: Holm, Benjamini–Hochberg
//! or none; other metrics reported uncorrected and labelled so) and its
//! decision rule evaluated.
//!
//! One-sided plans: the two-sided p-value of the lead method is halved when
//! the estimate lies in the desired direction (1 − p/2 otherwise).
//!
//! The rule, in order: no estimate of the primary metric → `inconclusive`;
//! a guardrail worsening significantly (uncorrected p below alpha, in the
//! undesired direction) in any arm, or the primary metric moving
//! significantly the wrong way → `roll_back`; a treatment arm improving the
//! primary metric significantly after correction → `ship` (the arm with the
//! smallest corrected p-value, then the larger improvement); a point
//! estimate in the desired direction without significance → `iterate`;
//! otherwise `inconclusive`.

use super::{MetricAnalysis, Role};
use commonlab_core::experiments::{Correction, Direction, Sidedness, TrialSpec};
use commonlab_stats::multiple::{benjamini_hochberg, holm};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct PlannedComparisons {
    /// The primary metric.
    pub metric: String,
    /// `holm`, `bh` or `none`, as the plan names.
    pub correction: &'static str,
    pub alpha: f64,
    /// `two-sided` or `one-sided`.
    pub sidedness: &'static str,
    /// Each treatment arm against control on the primary metric.
    pub primary: Vec<PlannedComparison>,
    /// Secondary metrics and guardrails, uncorrected.
    pub others: Vec<PlannedComparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedComparison {
    pub metric: String,
    pub role: Role,
    pub arm: String,
    pub control: String,
    pub estimate: f64,
    pub method: String,
    /// The lead method's p-value, for the plan's sidedness.
    pub p_value: Option<f64>,
    /// Corrected over the primary metric's comparisons (`None` for the
    /// other metrics: `correction` says `uncorrected`).
    pub adjusted_p_value: Option<f64>,
    /// `holm`, `bh`, `none` or `uncorrected`.
    pub correction: &'static str,
    /// p (adjusted for the primary) below alpha.
    pub significant: bool,
    /// The estimate lies in the metric's desired direction.
    pub favourable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionOutcome {
    /// `ship`, `iterate`, `roll_back` or `inconclusive`.
    pub outcome: &'static str,
    /// The arm to ship (for `ship`).
    pub arm: Option<String>,
    /// The plan's text for this outcome (`inconclusive` has none).
    pub plan_says: Option<String>,
    /// Why, in words.
    pub reasons: Vec<String>,
}

fn one_sided(p: f64, favourable: bool) -> f64 {
    if favourable {
        p / 2.0
    } else {
        1.0 - p / 2.0
    }
}

fn sign(d: Direction) -> f64 {
    match d {
        Direction::Increase => 1.0,
        Direction::Decrease => -1.0,
    }
}

fn rows(spec: &TrialSpec, m: &MetricAnalysis) -> Vec<PlannedComparison> {
    let dir = if m.direction == "decrease" {
        Direction::Decrease
    } else {
        Direction::Increase
    };
    m.estimates
        .iter()
        .map(|e| {
            let favourable = e.estimate * sign(dir) > 0.0;
            let p = e.p_value.map(|p| match spec.analysis.sidedness {
                Sidedness::TwoSided => p,
                Sidedness::OneSided => one_sided(p, favourable),
            });
            PlannedComparison {
                metric: m.name.clone(),
                role: m.role,
                arm: e.arm.clone(),
                control: e.control.clone(),
                estimate: e.estimate,
                method: e.method.clone(),
                p_value: p,
                adjusted_p_value: None,
                correction: "uncorrected",
                significant: p.is_some_and(|p| p < spec.analysis.alpha),
                favourable,
            }
        })
        .collect()
}

pub(super) fn comparisons(spec: &TrialSpec, metrics: &[MetricAnalysis]) -> PlannedComparisons {
    let alpha = spec.analysis.alpha;
    let mut primary = metrics
        .iter()
        .find(|m| m.role == Role::Primary)
        .map(|m| rows(spec, m))
        .unwrap_or_default();
    let with_p: Vec<usize> = (0..primary.len())
        .filter(|&i| primary[i].p_value.is_some())
        .collect();
    let ps: Vec<f64> = with_p.iter().filter_map(|&i| primary[i].p_value).collect();
    let adjusted = match spec.analysis.correction {
        Correction::Holm => holm(&ps).ok(),
        Correction::Bh => benjamini_hochberg(&ps).ok(),
        Correction::None => Some(ps.clone()),
    };
    for (k, &i) in with_p.iter().enumerate() {
        let adj = adjusted.as_ref().and_then(|a| a.get(k).copied());
        let c = &mut primary[i];
        c.adjusted_p_value = adj;
        c.correction = spec.analysis.correction.as_str();
        c.significant = adj.is_some_and(|p| p < alpha);
    }
    let others = metrics
        .iter()
        .filter(|m| m.role != Role::Primary)
        .flat_map(|m| rows(spec, m))
        .collect();
    PlannedComparisons {
        metric: spec.metrics.primary.name.clone(),
        correction: spec.analysis.correction.as_str(),
        alpha,
        sidedness: spec.analysis.sidedness.as_str(),
        primary,
        others,
    }
}

pub(super) fn decide(
    spec: &TrialSpec,
    metrics: &[MetricAnalysis],
    c: &PlannedComparisons,
) -> DecisionOutcome {
    let d = &spec.analysis.decision;
    let outcome =
        |o: &'static str, arm: Option<String>, plan: Option<&String>, reasons: Vec<String>| {
            DecisionOutcome {
                outcome: o,
                arm,
                plan_says: plan.cloned(),
                reasons,
            }
        };
    if c.primary.iter().all(|p| p.p_value.is_none()) {
        let why = metrics
            .iter()
            .find(|m| m.role == Role::Primary)
            .and_then(|m| m.notice.clone())
            .unwrap_or_else(|| "no measurement yet".into());
        return outcome(
            "inconclusive",
            None,
            None,
            vec![format!(
                "no estimate of the primary metric {}: {why}",
                c.metric
            )],
        );
    }
    let mut harms: Vec<String> = c
        .others
        .iter()
        .filter(|o| o.role == Role::Guardrail && o.significant && !o.favourable)
        .map(|o| {
            format!(
                "guardrail {} worsens in {} ({:+.4}, p = {:.4}, uncorrected)",
                o.metric,
                o.arm,
                o.estimate,
                o.p_value.unwrap_or(1.0)
            )
        })
        .collect();
    harms.extend(
        c.primary
            .iter()
            .filter(|p| p.significant && !p.favourable)
            .map(|p| {
                format!(
                    "the primary metric {} moves the wrong way in {} ({:+.4}, adjusted p = {:.4})",
                    p.metric,
                    p.arm,
                    p.estimate,
                    p.adjusted_p_value.unwrap_or(1.0)
                )
            }),
    );
    if !harms.is_empty() {
        return outcome("roll_back", None, Some(&d.roll_back), harms);
    }
    let mut winners: Vec<&PlannedComparison> = c
        .primary
        .iter()
        .filter(|p| p.significant && p.favourable)
        .collect();
    winners.sort_by(|a, b| {
        a.adjusted_p_value
            .unwrap_or(1.0)
            .total_cmp(&b.adjusted_p_value.unwrap_or(1.0))
            .then(b.estimate.abs().total_cmp(&a.estimate.abs()))
    });
    if let Some(w) = winners.first() {
        return outcome(
            "ship",
            Some(w.arm.clone()),
            Some(&d.ship),
            vec![format!(
                "{} improves {} ({:+.4}, {} p = {:.4} < {}) and no guardrail worsens significantly",
                w.arm,
                w.metric,
                w.estimate,
                w.correction,
                w.adjusted_p_value.unwrap_or(1.0),
                c.alpha
            )],
        );
    }
    let hopeful: Vec<String> = c
        .primary
        .iter()
        .filter(|p| p.favourable)
        .map(|p| {
            format!(
                "{} points the desired way on {} ({:+.4}) but is not significant ({} p = {:.4})",
                p.arm,
                p.metric,
                p.estimate,
                p.correction,
                p.adjusted_p_value.or(p.p_value).unwrap_or(1.0)
            )
        })
        .collect();
    if !hopeful.is_empty() {
        return outcome("iterate", None, Some(&d.iterate), hopeful);
    }
    outcome(
        "inconclusive",
        None,
        None,
        vec![format!(
            "no treatment arm moves {} the desired way, and none significantly the wrong way; the plan names no action for this result",
            c.metric
        )],
    )
}
