//! The report as data: everything a rendered report shows, built (purely)
//! from a stored trial and its design-aware analysis. `results.json` is
//! this document in canonical form ([`crate::canonical`]); the HTML and
//! Markdown templates render it and nothing else, so every number in them
//! is in `results.json`.

use crate::analysis::{
    community_rows, CommunityRow, DecisionOutcome, MetricAnalysis, MetricRows, PlannedComparisons,
    Quality, StoredTrial, TrialAnalysis,
};
use crate::breakdown::{self, CommunityEffect};
use crate::canonical::sha256;
use crate::surveys::SurveyInput;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{format_rfc3339, Design, Horizon, TrialSpec, Unit};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The format of `results.json` (bumped when a field changes meaning).
pub const SCHEMA: &str = "commonlab-report/1";

/// Who made the report and how: the reproducibility footer's inputs that do
/// not come from the data.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// Commonlab's version (`CARGO_PKG_VERSION` of the binary).
    pub version: String,
    /// The git commit the binary was built from, when known at build time.
    pub commit: Option<String>,
    /// The exact command (or request) that made the report.
    pub command: String,
}

/// A trial event that changed the plan or departed from it.
#[derive(Debug, Clone, Serialize)]
pub struct Deviation {
    /// `amend` or `deviation`.
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
    pub spec_hash: String,
}

/// The lifecycle dates (from the trial's event log).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dates {
    pub planned_start: String,
    pub planned_end: String,
    pub started: Option<DateTime<Utc>>,
    pub stopped: Option<DateTime<Utc>>,
    pub concluded: Option<DateTime<Utc>>,
}

/// What the store knows about a trial beyond its analysis.
#[derive(Debug, Clone, Default)]
pub struct TrialHistory {
    pub dates: Dates,
    pub deviations: Vec<Deviation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub trial: TrialInfo,
    pub summary: Summary,
    pub design: DesignInfo,
    /// Which analysis ran and why.
    pub analysis: AnalysisInfo,
    pub quality: Quality,
    pub results: Vec<MetricResult>,
    pub comparisons: PlannedComparisons,
    pub decision: DecisionOutcome,
    /// Per community, each treatment arm's effect on the primary metric.
    pub communities: Vec<CommunityEffect>,
    /// Stepped wedge and cluster: the primary metric per community and
    /// period (the trajectories chart).
    pub trajectories: Vec<CommunityRow>,
    /// Few-community designs: what the design can and cannot show.
    pub few_communities: Option<FewCommunities>,
    /// The primary metric's estimate as data accrued (the cumulative
    /// effect chart).
    pub cumulative: crate::series::Cumulative,
    /// The primary metric's distribution by arm (the distribution chart).
    pub distribution: crate::series::Distribution,
    /// The trial's survey waves (absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surveys: Option<crate::surveys::SurveySection>,
    pub footer: Footer,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialInfo {
    pub key: String,
    pub title: String,
    pub hypothesis: String,
    pub owner: String,
    pub flag: String,
    pub status: String,
    pub wp2_parameter: String,
    pub wp3_feature: String,
    pub as_of: DateTime<Utc>,
    /// Why there is nothing (or not yet everything) to analyse.
    pub notice: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `ship`, `iterate`, `roll_back` or `inconclusive`.
    pub decision: &'static str,
    pub arm: Option<String>,
    /// The primary metric's result in one paragraph.
    pub paragraph: String,
    /// What data would settle an undecided result (`None` when decided).
    pub to_settle: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmInfo {
    pub variant: String,
    pub weight: u32,
    pub control: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub community: String,
    /// When the community crosses over (stepped wedge) or `None`.
    pub crossover: Option<String>,
    /// Cluster designs: the arm the community was allocated.
    pub arm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodInfo {
    pub period: u32,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DesignInfo {
    pub kind: &'static str,
    /// `user` or `community` (and the attribute naming the community).
    pub unit: String,
    pub arms: Vec<ArmInfo>,
    pub strata: Vec<String>,
    pub communities: Vec<String>,
    /// The eligibility rule as written (JSONLogic), or `None` (everyone).
    pub eligibility: Option<String>,
    pub dates: Dates,
    pub periods: Vec<PeriodInfo>,
    pub schedule: Vec<ScheduleRow>,
    pub plan_hash: String,
    pub alpha: f64,
    pub sidedness: &'static str,
    pub correction: &'static str,
    pub horizon: String,
    pub mde: Option<f64>,
    pub power: Option<f64>,
    /// Amendments and deviations, flagged.
    pub deviations: Vec<Deviation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnalysisInfo {
    pub design: &'static str,
    pub what: String,
    /// Per metric, the lead method and why it leads.
    pub methods: Vec<MethodChoice>,
    /// What the report will not compute for this design, and why.
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodChoice {
    pub metric: String,
    pub method: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub name: String,
    pub role: crate::analysis::Role,
    pub kind: &'static str,
    pub direction: &'static str,
    pub unit: &'static str,
    pub source: crate::analysis::Source,
    pub n: BTreeMap<String, i64>,
    /// Per arm, the mean (or proportion, or ratio) of the analysed units.
    pub arm_values: BTreeMap<String, Option<f64>>,
    pub effects: Vec<Effect>,
    pub notice: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Effect {
    pub arm: String,
    pub control: String,
    pub method: String,
    pub absolute: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub se: Option<f64>,
    /// Relative to the control arm's value (`None` when it is 0 or unknown).
    pub relative: Option<f64>,
    pub relative_ci_low: Option<f64>,
    pub relative_ci_high: Option<f64>,
    /// The lead method's p-value for the plan's sidedness.
    pub p_value: Option<f64>,
    /// Corrected as the plan says (primary metric only).
    pub adjusted_p_value: Option<f64>,
    /// `holm`, `bh`, `none` or `uncorrected`.
    pub correction: &'static str,
    pub min_attainable_p: Option<f64>,
    /// Bayesian (flat prior) chance that the arm beats control in the
    /// metric's desired direction, where the design allows.
    pub chance_to_win: Option<f64>,
    /// Expected loss of shipping the arm (in the metric's units).
    pub risk: Option<f64>,
    pub beside: Vec<crate::analysis::Beside>,
}

impl Effect {
    /// `e` with its relative effect against `control_value` (`None` when
    /// unknown or 0), uncorrected, without Bayesian figures.
    pub fn uncorrected(e: &crate::analysis::Estimate, control_value: Option<f64>) -> Effect {
        let rel = |x: f64| control_value.map(|c| x / c.abs());
        Effect {
            arm: e.arm.clone(),
            control: e.control.clone(),
            method: e.method.clone(),
            absolute: e.estimate,
            ci_low: e.ci95.map(|c| c.0),
            ci_high: e.ci95.map(|c| c.1),
            se: e.se,
            relative: rel(e.estimate),
            relative_ci_low: e.ci95.and_then(|c| rel(c.0)),
            relative_ci_high: e.ci95.and_then(|c| rel(c.1)),
            p_value: e.p_value,
            adjusted_p_value: None,
            correction: "uncorrected",
            min_attainable_p: e.min_attainable_p,
            chance_to_win: None,
            risk: None,
            beside: e.beside.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FewCommunities {
    pub communities: usize,
    pub min_attainable_p: Option<f64>,
    pub paragraph: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Footer {
    pub commonlab_version: String,
    pub commit: Option<String>,
    pub spec_hash: String,
    pub seed: Option<u64>,
    pub as_of: DateTime<Utc>,
    /// Per metric, the rows its analysis read.
    pub row_counts: BTreeMap<String, usize>,
    /// SHA-256 of the aggregates every number was computed from.
    pub data_hash: String,
    pub command: String,
}

/// The rows every metric's analysis read, as text (shortest round-trip
/// form of every number), for the data hash, and their count.
fn data_text(t: &StoredTrial) -> (String, BTreeMap<String, usize>) {
    let mut text = String::new();
    let mut counts = BTreeMap::new();
    for d in &t.metrics {
        let _ = writeln!(
            text,
            "metric {} as_of {}",
            d.metric.name,
            d.as_of.timestamp()
        );
        let mut lines: Vec<String> = match &d.rows {
            MetricRows::Cells(cells) => cells
                .iter()
                .map(|c| {
                    format!(
                        "{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
                        c.arm,
                        c.community,
                        c.n,
                        c.sum,
                        c.sum_squares,
                        c.x_sum,
                        c.x_sum_squares,
                        c.xy_sum,
                        c.d_sum,
                        c.d_sum_squares,
                        c.md_sum,
                        c.dx_sum
                    )
                })
                .collect(),
            MetricRows::Members(members) => members
                .iter()
                .map(|m| {
                    format!(
                        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
                        m.unit, m.arm, m.community, m.stratum, m.y, m.x, m.d
                    )
                })
                .collect(),
            MetricRows::Communities { rows, .. } => rows
                .cells
                .iter()
                .map(|c| {
                    format!(
                        "{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
                        c.community,
                        c.period,
                        c.n,
                        c.sum,
                        c.sum_squares,
                        c.d_sum,
                        c.d_sum_squares,
                        c.yd_sum
                    )
                })
                .collect(),
        };
        // The database returns rows in no promised order.
        lines.sort();
        counts.insert(d.metric.name.clone(), lines.len());
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
    }
    for e in &t.exposures {
        let _ = writeln!(
            text,
            "exposures {}|{:?}|{}|{}",
            e.arm, e.community, e.excluded, e.n
        );
    }
    (text, counts)
}

fn unit_text(u: &Unit) -> String {
    match u {
        Unit::User => "user (the OFREP targetingKey)".into(),
        Unit::Community { attribute } => format!("community (context attribute `{attribute}`)"),
    }
}

fn design_info(t: &StoredTrial, h: &TrialHistory) -> DesignInfo {
    let spec = &t.spec;
    let (strata, communities) = match &spec.design {
        Design::Blocked { strata, .. } => (strata.clone(), Vec::new()),
        Design::Cluster { communities }
        | Design::SteppedWedge { communities, .. }
        | Design::Switchback { communities, .. } => (Vec::new(), communities.clone()),
        Design::Hash { .. } => (Vec::new(), Vec::new()),
    };
    let schedule = match &t.allocation {
        crate::analysis::Allocation::Cluster(map) => map
            .iter()
            .map(|(c, a)| ScheduleRow {
                community: c.clone(),
                crossover: None,
                arm: Some(a.clone()),
            })
            .collect(),
        crate::analysis::Allocation::SteppedWedge(s) => s
            .iter()
            .map(|(c, at)| ScheduleRow {
                community: c.clone(),
                crossover: Some(format_rfc3339(*at)),
                arm: None,
            })
            .collect(),
        // One row per community: its treatment in each period, in order
        // (1 on, 0 off).
        crate::analysis::Allocation::Switchback(s) => s
            .communities
            .iter()
            .zip(&s.on)
            .map(|(c, on)| ScheduleRow {
                community: c.clone(),
                crossover: None,
                arm: Some(
                    on.iter()
                        .map(|&b| if b { "1" } else { "0" })
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            })
            .collect(),
        crate::analysis::Allocation::None => Vec::new(),
    };
    DesignInfo {
        kind: spec.design.kind(),
        unit: unit_text(&spec.unit),
        arms: spec
            .arms
            .iter()
            .map(|a| ArmInfo {
                variant: a.variant.clone(),
                weight: a.weight,
                control: a.control,
            })
            .collect(),
        strata,
        communities,
        eligibility: spec.eligibility.as_ref().map(|r| r.source().to_string()),
        dates: h.dates.clone(),
        periods: spec
            .periods()
            .iter()
            .map(|p| PeriodInfo {
                period: p.index,
                start: format_rfc3339(p.start),
                end: format_rfc3339(p.end),
            })
            .collect(),
        schedule,
        plan_hash: t.spec_hash.clone(),
        alpha: spec.analysis.alpha,
        sidedness: spec.analysis.sidedness.as_str(),
        correction: spec.analysis.correction.as_str(),
        horizon: match spec.analysis.horizon {
            Horizon::Fixed => "fixed".into(),
            Horizon::Sequential { looks } => format!("sequential ({looks} looks)"),
        },
        mde: spec.analysis.mde,
        power: Some(spec.analysis.power),
        deviations: h.deviations.clone(),
    }
}

/// Reads a Bayesian (flat prior) result off the engine's detail, for the
/// metric's desired direction.
fn bayes(m: &MetricAnalysis, arm: &str, method: &str) -> (Option<f64>, Option<f64>) {
    let base = match method {
        "cuped" => &m.detail["comparisons"][arm]["cuped"]["absolute"],
        "post_stratified" => &m.detail["comparisons"][arm]["post_stratified"]["absolute"],
        _ => &m.detail["comparisons"][arm]["absolute"],
    };
    let b = &base["bayesian_flat_prior"];
    let (Some(win), Some(rc), Some(rt)) = (
        b["chance_to_win"].as_f64(),
        b["risk_control"].as_f64(),
        b["risk_treatment"].as_f64(),
    ) else {
        return (None, None);
    };
    if m.direction == "decrease" {
        (Some(1.0 - win), Some(rc))
    } else {
        (Some(win), Some(rt))
    }
}

fn results(t: &StoredTrial, a: &TrialAnalysis) -> Vec<MetricResult> {
    a.metrics
        .iter()
        // Survey scales are reported in their own section.
        .filter(|m| !crate::surveys::is_survey_metric(m))
        .map(|m| {
            let arm_values = breakdown::arm_values(t, &m.name);
            let control_value = arm_values
                .get(&t.spec.control().variant)
                .copied()
                .flatten()
                .filter(|v| *v != 0.0);
            let effects = m
                .estimates
                .iter()
                .map(|e| {
                    let planned = a
                        .comparisons
                        .primary
                        .iter()
                        .chain(&a.comparisons.others)
                        .find(|c| c.metric == m.name && c.arm == e.arm);
                    let (chance_to_win, risk) = if t.spec.is_community_design() {
                        (None, None)
                    } else {
                        bayes(m, &e.arm, &e.method)
                    };
                    Effect {
                        p_value: planned.and_then(|p| p.p_value).or(e.p_value),
                        adjusted_p_value: planned.and_then(|p| p.adjusted_p_value),
                        correction: planned.map_or("uncorrected", |p| p.correction),
                        chance_to_win,
                        risk,
                        ..Effect::uncorrected(e, control_value)
                    }
                })
                .collect();
            MetricResult {
                name: m.name.clone(),
                role: m.role,
                kind: m.kind,
                direction: m.direction,
                unit: m.unit,
                source: m.source,
                n: m.n.clone(),
                arm_values,
                effects,
                notice: m.notice.clone(),
            }
        })
        .collect()
}

fn fmt_num(x: f64) -> String {
    let r = crate::canonical::round(x);
    if r.abs() >= 100.0 {
        format!("{r:.1}")
    } else if r.abs() >= 1.0 {
        format!("{r:.3}")
    } else {
        format!("{r:.4}")
    }
}

fn summary(spec: &TrialSpec, a: &TrialAnalysis, results: &[MetricResult]) -> Summary {
    let primary = results.first();
    let mut p = String::new();
    let decision = a.decision.outcome;
    let _ = write!(
        p,
        "The plan's decision rule gives **{}**{}. ",
        decision.replace('_', " "),
        a.decision
            .arm
            .as_ref()
            .map(|arm| format!(" ({arm})"))
            .unwrap_or_default()
    );
    match primary {
        Some(m) if !m.effects.is_empty() => {
            for e in &m.effects {
                let interval = match (e.ci_low, e.ci_high) {
                    (Some(l), Some(h)) => format!(
                        ", and the 95% interval runs from {} to {}",
                        fmt_num(l),
                        fmt_num(h)
                    ),
                    _ => String::new(),
                };
                let rel = e
                    .relative
                    .map(|r| format!(" ({:+.1}% relative to {})", r * 100.0, e.control))
                    .unwrap_or_default();
                let pv = e
                    .adjusted_p_value
                    .or(e.p_value)
                    .map(|p| format!("; p = {}", fmt_num(p)))
                    .unwrap_or_default();
                let _ = write!(
                    p,
                    "With {} instead of {}, {} changed by {}{rel}{interval}{pv}. ",
                    e.arm,
                    e.control,
                    m.name,
                    fmt_num(e.absolute)
                );
            }
        }
        Some(m) => {
            let _ = write!(
                p,
                "There is no estimate of {} yet: {}. ",
                m.name,
                m.notice.as_deref().unwrap_or("nothing measured")
            );
        }
        None => {}
    }
    if let Some(text) = &a.decision.plan_says {
        let _ = write!(p, "The plan says: {text}");
    }
    let to_settle = match decision {
        "ship" | "roll_back" => None,
        _ => Some(to_settle(spec, primary)),
    };
    Summary {
        decision,
        arm: a.decision.arm.clone(),
        paragraph: p.trim_end().to_string(),
        to_settle,
    }
}

/// What data would settle an undecided result: the sample the plan's
/// minimum detectable effect needs at the standard error observed.
fn to_settle(spec: &TrialSpec, primary: Option<&MetricResult>) -> String {
    let community = spec.is_community_design();
    let more = if community {
        "more communities (each one crossing over adds information; more periods add little once every community has been observed on both sides)"
    } else {
        "more members exposed"
    };
    let Some(m) = primary else {
        return format!("{more}: the primary metric has no estimate yet");
    };
    let se = m
        .effects
        .iter()
        .filter_map(|e| e.se)
        .fold(f64::NAN, f64::max);
    match (spec.analysis.mde, se.is_finite()) {
        (Some(mde), true) if mde > 0.0 => {
            let alpha = spec.analysis.alpha;
            let power = spec.analysis.power;
            let z = commonlab_stats::dist::norm_ppf(1.0 - alpha / 2.0)
                + commonlab_stats::dist::norm_ppf(power);
            let needed_se = mde / z;
            let factor = (se / needed_se).powi(2);
            if factor <= 1.0 {
                format!(
                    "the observed standard error ({}) is already small enough to detect the plan's minimum detectable effect of {} with power {}: the effect is most likely smaller than that; a smaller effect needs a new plan",
                    fmt_num(se),
                    fmt_num(mde),
                    power
                )
            } else {
                let n: i64 = m.n.values().sum();
                format!(
                    "to detect the plan's minimum detectable effect of {} with power {} at alpha {}, the standard error must fall from {} to {}: about {:.1} times the data analysed now ({} {}), i.e. {more}",
                    fmt_num(mde),
                    power,
                    alpha,
                    fmt_num(se),
                    fmt_num(needed_se),
                    factor,
                    n,
                    if community { "community-period cells" } else { "units" }
                )
            }
        }
        _ => format!(
            "{more}; the plan names no minimum detectable effect, so the report cannot say how much"
        ),
    }
}

fn few_communities(t: &StoredTrial, results: &[MetricResult]) -> Option<FewCommunities> {
    let communities = t.spec.design.communities()?.len();
    let min_p = results
        .first()
        .and_then(|m| m.effects.first())
        .and_then(|e| e.min_attainable_p);
    let mut p = format!(
        "Only {communities} communities were randomised, so the trial has {communities} independent units however many members they hold. "
    );
    match min_p {
        Some(mp) => {
            let _ = write!(
                p,
                "Randomisation inference compares the observed effect with the effect under every allocation the design could have drawn; the smallest p-value it can ever give here is {}. ",
                fmt_num(mp)
            );
            if mp >= t.spec.analysis.alpha {
                let _ = write!(
                    p,
                    "That is not below the plan's alpha of {}: this design cannot reach significance by its lead test whatever the data, and its result is descriptive. ",
                    t.spec.analysis.alpha
                );
            }
        }
        None => p.push_str("No allocation test has run yet. "),
    }
    p.push_str("The design can show whether the communities moved together when the feature arrived in each of them (the within-community comparison removes stable differences between communities, and the period effects remove what changed for all of them at once). It cannot separate the feature from anything else that happened in one community at the time it crossed over, cannot estimate how much the effect varies between communities, and says nothing directly about communities unlike these.");
    Some(FewCommunities {
        communities,
        min_attainable_p: min_p,
        paragraph: p,
    })
}

/// The per-user test the report refuses for community designs, in words.
pub fn per_user_refusal(spec: &TrialSpec) -> Option<String> {
    let communities = spec.design.communities()?;
    Some(format!(
        "refused: trial {} randomised whole communities ({}, {} communities), so its members are not independent units; a per-user p-value would count every member as a separate randomisation and overstate the evidence by as much as the members per community. The report analyses communities (randomisation inference, CR2) instead",
        spec.key,
        spec.design.kind(),
        communities.len()
    ))
}

/// Builds the report of a trial without survey input (pure; see
/// [`build_with`]).
pub fn build(
    t: &StoredTrial,
    a: &TrialAnalysis,
    history: &TrialHistory,
    provenance: &Provenance,
) -> Report {
    build_with(t, a, &SurveyInput::default(), &[], history, provenance)
}

/// Builds the report (pure): `surveys` adds what the analysis does not
/// carry of the trial's survey waves (reliability, item answers), `looks`
/// a sequential `hash` plan's primary metric at its past looks
/// ([`crate::series::Look`]); small
/// cells are withheld below `surveys.min_cell` (at least
/// [`crate::DEFAULT_MIN_CELL`] when it is 0).
pub fn build_with(
    t: &StoredTrial,
    a: &TrialAnalysis,
    surveys: &SurveyInput,
    looks: &[crate::series::Look],
    history: &TrialHistory,
    provenance: &Provenance,
) -> Report {
    let min_cell = if surveys.min_cell == 0 {
        crate::DEFAULT_MIN_CELL
    } else {
        surveys.min_cell
    };
    let arms: Vec<String> = t.spec.arms.iter().map(|x| x.variant.clone()).collect();
    let results = results(t, a);
    let (text, row_counts) = data_text(t);
    let primary = &t.spec.metrics.primary;
    let trajectories = if t.spec.is_community_design() {
        t.metrics
            .iter()
            .find(|d| d.metric.name == primary.name)
            .map(|d| community_rows(t, d))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Report {
        schema: SCHEMA,
        trial: TrialInfo {
            key: t.key.clone(),
            title: t.spec.title.clone(),
            hypothesis: t.spec.hypothesis.trim().to_string(),
            owner: t.spec.owner.clone(),
            flag: t.spec.flag.clone(),
            status: t.status.clone(),
            wp2_parameter: t.spec.links.wp2_parameter.clone(),
            wp3_feature: t.spec.links.wp3_feature.clone(),
            as_of: a.as_of,
            notice: a.notice.clone(),
        },
        summary: summary(&t.spec, a, &results),
        design: design_info(t, history),
        analysis: AnalysisInfo {
            design: a.design,
            what: a.design_analysis.clone(),
            methods: a
                .metrics
                .iter()
                .flat_map(|m| {
                    m.estimates.iter().map(|e| MethodChoice {
                        metric: format!("{} ({} vs {})", m.name, e.arm, e.control),
                        method: e.method.clone(),
                        why: e.why.clone(),
                    })
                })
                .collect(),
            refused: per_user_refusal(&t.spec),
        },
        quality: a.quality.clone(),
        communities: breakdown::community_effects(t, &primary.name),
        trajectories,
        few_communities: few_communities(t, &results),
        cumulative: crate::series::cumulative(t, looks),
        distribution: crate::series::distribution(t, min_cell),
        surveys: crate::surveys::section(a, surveys, &arms),
        results,
        comparisons: a.comparisons.clone(),
        decision: a.decision.clone(),
        footer: Footer {
            commonlab_version: provenance.version.clone(),
            commit: provenance.commit.clone(),
            spec_hash: t.spec_hash.clone(),
            seed: t.seed,
            as_of: a.as_of,
            row_counts,
            data_hash: sha256(&text),
            command: provenance.command.clone(),
        },
    }
}
