//! Simulation-based power of a trial file's design, in memory: `N` seeded
//! simulated trials with the given effects and `N` with none, each
//! analysed as the report analyses that design (see [`analysis`]), give
//! per comparison and method the rejection rate at the plan's alpha
//! (power) and under no effect (false-positive rate), with their Monte
//! Carlo standard errors, and the smallest p-value the randomisation
//! inference could give.
//!
//! A community design (cluster, stepped wedge, switchback) is also simulated with the
//! members randomised within their communities instead (`blocked_users`),
//! on the same populations and effects, spillover included: what
//! per-member randomisation would reach, and how much spillover shrinks
//! its estimate.
//!
//! Reproducible: simulated trial `i` draws everything from
//! `splitmix64(seed + i)` (its population, its assignment and the
//! randomisation inference), whatever the number of threads; the effect
//! and no-effect runs of trial `i` share their population and assignment
//! (common random numbers). What is simulated of the trial file: its
//! arms, weights, design and schedule (days from start to end), the
//! primary metric's kind and window; not its ramp, eligibility rule (but
//! its community list), CUPED covariate or cap (`docs/power.md`).

mod analysis;
mod switchback;
mod trial;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use commonlab_core::experiments::{Correction, Design, Metric, MetricKind, Sidedness, TrialSpec};
use commonlab_stats::randomization::Alternative;
use serde::Serialize;
use serde_json::Value;

use crate::{params, ArmEffect, SimError, SimParams};
use analysis::{Inference, Measure, MethodOutcome};
use trial::Assignment;

/// Most simulated trials in one run.
pub const MAX_SIMULATIONS: usize = 100_000;
/// Longest simulated trial, in days.
pub const MAX_DAYS: u32 = 3_650;

/// A design under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanDesign {
    Hash,
    Blocked,
    /// Members randomised in permuted blocks within communities, analysed
    /// with the stratified permutation test (the comparison design).
    BlockedUsers,
    Cluster,
    SteppedWedge,
    /// Communities switched on or off in each period (`docs/analyze-few.md`,
    /// "Switchback").
    Switchback,
}

impl PlanDesign {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanDesign::Hash => "hash",
            PlanDesign::Blocked => "blocked",
            PlanDesign::BlockedUsers => "blocked_users",
            PlanDesign::Cluster => "cluster",
            PlanDesign::SteppedWedge => "stepped_wedge",
            PlanDesign::Switchback => "switchback",
        }
    }

    fn of(design: &Design) -> Self {
        match design {
            Design::Hash { .. } => PlanDesign::Hash,
            Design::Blocked { .. } => PlanDesign::Blocked,
            Design::Cluster { .. } => PlanDesign::Cluster,
            Design::SteppedWedge { .. } => PlanDesign::SteppedWedge,
            Design::Switchback { .. } => PlanDesign::Switchback,
        }
    }

    /// Stepped wedges and switchbacks compare one treatment with control.
    pub(crate) fn single_treatment(self) -> bool {
        matches!(self, PlanDesign::SteppedWedge | PlanDesign::Switchback)
    }

    fn assignment(self) -> Assignment {
        match self {
            PlanDesign::Hash => Assignment::Hash,
            PlanDesign::Blocked | PlanDesign::BlockedUsers => Assignment::BlockedUsers,
            PlanDesign::Cluster => Assignment::Cluster,
            PlanDesign::SteppedWedge => Assignment::SteppedWedge,
            PlanDesign::Switchback => Assignment::Switchback,
        }
    }

    fn analysis(self) -> &'static str {
        match self {
            PlanDesign::Hash => "each arm against control, Welch's t-test on per-member values",
            PlanDesign::Blocked => {
                "each arm against control, Welch post-stratified by community on per-member values"
            }
            PlanDesign::BlockedUsers => {
                "members randomised within communities: stratified permutation test (leads), post-stratified t beside it"
            }
            PlanDesign::Cluster => {
                "one row per community: randomisation inference over the allocations (leads), CR2 beside it"
            }
            PlanDesign::SteppedWedge => {
                "community x period rows, community and period fixed effects: randomisation inference over all orders (leads), CR2 beside it"
            }
            PlanDesign::Switchback => {
                "community x period rows (washout days left out), community and period fixed effects: randomisation inference over the scheme's allocations (leads, two-sided), CR2 beside it"
            }
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    pub spec: TrialSpec,
    /// The communities and behaviour (its `effects` are ignored: see
    /// `effects`); name them with [`name_communities`].
    pub params: SimParams,
    /// The true effect of each arm (by variant).
    pub effects: BTreeMap<String, ArmEffect>,
    /// Simulated trials per scenario (with effects, without).
    pub simulations: usize,
    pub seed: u64,
    /// Simulated days (default: the schedule's length).
    pub days: Option<u32>,
    /// Also simulate members randomised within communities (for a
    /// community design).
    pub compare_blocked_users: bool,
    /// Sampled assignments when randomisation inference cannot enumerate.
    pub randomisation_draws: usize,
    /// The metric simulated (by name; default the primary).
    pub metric: Option<String>,
}

/// A rejection rate over simulated trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rate {
    pub rate: f64,
    /// `√(rate·(1 − rate)/completed)`.
    pub mc_se: f64,
    pub rejected: usize,
    /// Simulated trials the method gave a p-value for.
    pub completed: usize,
}

impl Rate {
    fn of(rejected: usize, completed: usize) -> Option<Rate> {
        (completed > 0).then(|| {
            let rate = rejected as f64 / completed as f64;
            Rate {
                rate,
                mc_se: (rate * (1.0 - rate) / completed as f64).sqrt(),
                rejected,
                completed,
            }
        })
    }
}

/// One method on one comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodPower {
    pub method: String,
    /// The result the report leads with.
    pub lead: bool,
    /// Share of trials with the effects rejected at alpha (p ≤ alpha).
    pub power: Option<Rate>,
    /// Share of trials without effects rejected at alpha.
    pub false_positive_rate: Option<Rate>,
    /// Power after the plan's correction over the design's comparisons
    /// (lead method, trials with more than one comparison and a
    /// correction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_power: Option<Rate>,
    /// Mean estimate with the effects (absolute, in the metric's units).
    pub mean_estimate: Option<f64>,
    /// Mean estimate without effects.
    pub mean_estimate_null: Option<f64>,
    /// Randomisation inference: the largest, over the simulated trials,
    /// of the smallest p-value the design could give.
    pub min_attainable_p: Option<f64>,
    /// Analyses that gave no p-value (both scenarios), and the first reason.
    pub failed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One treatment arm against control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonPower {
    pub arm: String,
    pub control: String,
    pub methods: Vec<MethodPower>,
}

/// One design under test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesignPower {
    pub design: PlanDesign,
    /// `planned` (the trial file's) or `comparison`.
    pub role: &'static str,
    pub analysis: &'static str,
    pub comparisons: Vec<ComparisonPower>,
}

/// A community simulated, by name and size at day 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommunitySize {
    pub name: String,
    pub members: u32,
}

/// The primary metric as simulated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasureSummary {
    pub name: String,
    pub kind: &'static str,
    /// The events counted (the metric's own, where the simulator emits
    /// them; every contribution event otherwise).
    pub events: Vec<String>,
    /// Days after first exposure, `[from, to)` (user-level rows).
    pub window_days: (u32, u32),
    pub value: &'static str,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerReport {
    pub trial: String,
    pub design: PlanDesign,
    pub simulations: usize,
    pub seed: u64,
    pub days: u32,
    pub alpha: f64,
    pub sidedness: &'static str,
    pub correction: &'static str,
    pub metric: MeasureSummary,
    pub communities: Vec<CommunitySize>,
    pub spillover: f64,
    pub effects: BTreeMap<String, ArmEffect>,
    pub designs: Vec<DesignPower>,
    pub notes: Vec<String>,
}

/// SplitMix64: simulated trial `i`'s seed is `splitmix64(seed + i)`.
pub fn trial_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses `ARM=MULTIPLIER` (every contribution event) or
/// `ARM:EVENT=MULTIPLIER` into `effects`.
pub fn parse_effect(text: &str, effects: &mut BTreeMap<String, ArmEffect>) -> Result<(), SimError> {
    let bad = |why: &str| SimError::Invalid {
        field: format!("--effect {text}"),
        why: why.to_string(),
    };
    let (target, mult) = text
        .split_once('=')
        .ok_or_else(|| bad("expected ARM=MULTIPLIER or ARM:EVENT=MULTIPLIER, e.g. on=1.3"))?;
    let (arm, event) = target.split_once(':').unwrap_or((target, "*"));
    if arm.is_empty() || event.is_empty() {
        return Err(bad("names no arm or no event"));
    }
    let mult: f64 = mult
        .trim()
        .parse()
        .map_err(|_| bad("the multiplier is not a number"))?;
    effects
        .entry(arm.to_string())
        .or_default()
        .rate_multipliers
        .insert(event.to_string(), mult);
    Ok(())
}

/// Names the simulated communities after the trial's own (its design's
/// list, or the `in` list on `community` in its eligibility rule), so
/// that schedules and allocations apply. More sizes than names is an
/// error; a community design needs exactly one size per community.
pub fn name_communities(spec: &TrialSpec, mut p: SimParams) -> Result<SimParams, SimError> {
    let listed = spec.design.communities().map(<[String]>::to_vec);
    let names = listed
        .clone()
        .or_else(|| eligible_communities(spec))
        .unwrap_or_default();
    if names.is_empty() {
        return Ok(p);
    }
    let wrong = p.communities.len() > names.len()
        || (listed.is_some() && p.communities.len() != names.len());
    if wrong {
        return Err(SimError::Invalid {
            field: "communities".into(),
            why: format!(
                "has {} sizes for a trial with {} communities ({}): give one size per community",
                p.communities.len(),
                names.len(),
                names.join(", ")
            ),
        });
    }
    for (c, name) in p.communities.iter_mut().zip(names) {
        c.name = name;
    }
    Ok(p)
}

/// The communities an eligibility rule lists as `{"in": [{"var":
/// "community"}, [...]]}`, wherever it sits in the rule.
pub fn eligible_communities(spec: &TrialSpec) -> Option<Vec<String>> {
    fn find(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(args)) = m.get("in") {
                    if let [Value::Object(var), Value::Array(list)] = args.as_slice() {
                        if var.get("var").and_then(Value::as_str) == Some("community") {
                            return list.iter().map(|x| x.as_str().map(String::from)).collect();
                        }
                    }
                }
                m.values().find_map(find)
            }
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(spec.eligibility.as_ref()?.source())
}

/// The trial's metric named `name` (primary, secondary or guardrail), or
/// its primary.
fn metric_of<'s>(spec: &'s TrialSpec, name: Option<&str>) -> Result<&'s Metric, SimError> {
    let m = &spec.metrics;
    let all = || {
        std::iter::once(&m.primary)
            .chain(&m.secondary)
            .chain(&m.guardrails)
    };
    match name {
        None => Ok(&m.primary),
        Some(n) => all()
            .find(|x| x.name == n)
            .ok_or_else(|| SimError::Invalid {
                field: "metric".into(),
                why: format!(
                    "'{n}' is not a metric of the trial ({})",
                    all()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
    }
}

/// Everything fixed for a run, derived from the config once.
struct Setup<'a> {
    cfg: &'a PowerConfig,
    names: Vec<String>,
    designs: Vec<PlanDesign>,
    with_effects: SimParams,
    without: SimParams,
    days: u32,
    measure: Measure,
    counted: Vec<String>,
    alternative: Alternative,
}

/// One simulated trial index: per design, per scenario (effects, none),
/// per comparison, per method.
type TrialOutcome = Vec<[Vec<Vec<MethodOutcome>>; 2]>;

impl<'a> Setup<'a> {
    fn new(cfg: &'a PowerConfig) -> Result<Self, SimError> {
        let spec = &cfg.spec;
        let invalid = |field: &str, why: String| SimError::Invalid {
            field: field.into(),
            why,
        };
        if cfg.simulations == 0 || cfg.simulations > MAX_SIMULATIONS {
            return Err(invalid(
                "simulations",
                format!("must be between 1 and {MAX_SIMULATIONS}"),
            ));
        }
        for arm in cfg.effects.keys() {
            match spec.arm(arm) {
                None => {
                    let arms: Vec<&str> = spec.arms.iter().map(|a| a.variant.as_str()).collect();
                    return Err(invalid(
                        &format!("effects.{arm}"),
                        format!("is not an arm of the trial ({})", arms.join(", ")),
                    ));
                }
                Some(a) if a.control => {
                    return Err(invalid(
                        &format!("effects.{arm}"),
                        "is the control arm: effects are relative to control".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        let schedule_days = (spec.schedule.end - spec.schedule.start).div_euclid(86_400);
        let days = cfg
            .days
            .unwrap_or(u32::try_from(schedule_days.max(1)).unwrap_or(MAX_DAYS));
        if days == 0 || days > MAX_DAYS {
            return Err(invalid(
                "days",
                format!("must be between 1 and {MAX_DAYS} (the schedule gives {schedule_days})"),
            ));
        }
        let mut with_effects = cfg.params.clone();
        with_effects.effects = cfg.effects.clone();
        with_effects.validate()?;
        let mut without = cfg.params.clone();
        without.effects.clear();
        let names: Vec<String> = cfg
            .params
            .communities
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let planned = PlanDesign::of(&spec.design);
        let mut designs = vec![planned];
        let community_design = matches!(
            planned,
            PlanDesign::Cluster | PlanDesign::SteppedWedge | PlanDesign::Switchback
        );
        if community_design {
            let expected = spec.design.communities().unwrap_or(&[]);
            let mut sorted = names.clone();
            sorted.sort();
            let mut want = expected.to_vec();
            want.sort();
            if sorted != want {
                return Err(invalid(
                    "communities",
                    format!(
                        "must be the design's communities ({}); name them with name_communities",
                        expected.join(", ")
                    ),
                ));
            }
            if cfg.compare_blocked_users {
                designs.push(PlanDesign::BlockedUsers);
            }
        }
        let metric = metric_of(spec, cfg.metric.as_deref())?;
        let own: Vec<String> = metric
            .events
            .iter()
            .filter(|e| params::CONTRIBUTIONS.contains(&e.as_str()) || *e == "thanks_sent")
            .cloned()
            .collect();
        let counted = if own.is_empty() {
            params::CONTRIBUTIONS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            own
        };
        let from = u32::try_from(metric.window.start_secs.max(0) / 86_400).unwrap_or(0);
        let to = u32::try_from((metric.window.end_secs + 86_399) / 86_400)
            .unwrap_or(MAX_DAYS)
            .max(from + 1);
        let alternative = match spec.analysis.sidedness {
            Sidedness::TwoSided => Alternative::TwoSided,
            Sidedness::OneSided => match metric.direction.as_str() {
                "decrease" => Alternative::Less,
                _ => Alternative::Greater,
            },
        };
        Ok(Setup {
            cfg,
            names,
            designs,
            with_effects,
            without,
            days,
            measure: Measure {
                from,
                to,
                indicator: metric.kind == MetricKind::Proportion,
            },
            counted,
            alternative,
        })
    }

    /// Simulated trial `i`, every design, both scenarios.
    fn run_one(&self, i: usize) -> Result<TrialOutcome, SimError> {
        let seed = trial_seed(self.cfg.seed, i as u64);
        let counted = |name: &str| self.counted.iter().any(|c| c == name);
        let inference = Inference {
            alpha: self.cfg.spec.analysis.alpha,
            alternative: self.alternative,
            randomisation_draws: self.cfg.randomisation_draws,
            seed,
        };
        let mut out = Vec::with_capacity(self.designs.len());
        for &design in &self.designs {
            let scenario = |params: &SimParams| -> Result<Vec<Vec<MethodOutcome>>, SimError> {
                let records = trial::simulate(
                    &self.cfg.spec,
                    params,
                    design.assignment(),
                    seed,
                    self.days,
                    &counted,
                )?;
                Ok(analysis::analyse(
                    design,
                    &self.cfg.spec,
                    &self.names,
                    &records,
                    self.measure,
                    inference,
                ))
            };
            out.push([scenario(&self.with_effects)?, scenario(&self.without)?]);
        }
        Ok(out)
    }
}

/// Runs the simulations on `threads` threads (at least one), calling
/// `progress` after each simulated trial index. The result does not
/// depend on `threads`.
pub fn run(
    cfg: &PowerConfig,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<PowerReport, SimError> {
    let setup = Setup::new(cfg)?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<TrialOutcome, SimError>)>> =
        Mutex::new(Vec::with_capacity(cfg.simulations));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= cfg.simulations {
                    break;
                }
                let r = setup.run_one(i);
                let failed = r.is_err();
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
                progress();
                if failed {
                    // Stop everyone: the configuration is wrong.
                    next.store(cfg.simulations, Ordering::Relaxed);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut outcomes = Vec::with_capacity(results.len());
    for (_, r) in results {
        outcomes.push(r?);
    }
    Ok(report(&setup, &outcomes))
}

fn report(setup: &Setup<'_>, outcomes: &[TrialOutcome]) -> PowerReport {
    let spec = &setup.cfg.spec;
    let alpha = spec.analysis.alpha;
    let control = spec.control().variant.clone();
    let mut designs = Vec::new();
    let mut notes = Vec::new();
    for (d, &design) in setup.designs.iter().enumerate() {
        let arms: Vec<String> = spec
            .arms
            .iter()
            .filter(|a| {
                !a.control && (!design.single_treatment() || a.variant == spec.treatment().variant)
            })
            .map(|a| a.variant.clone())
            .collect();
        let methods = analysis::methods(design);
        let corrected = corrected_rejections(spec.analysis.correction, alpha, outcomes, d);
        let comparisons = arms
            .iter()
            .enumerate()
            .map(|(k, arm)| ComparisonPower {
                arm: arm.clone(),
                control: control.clone(),
                methods: methods
                    .iter()
                    .enumerate()
                    .map(|(j, name)| {
                        let pick = |s: usize| outcomes.iter().map(move |o| &o[d][s][k][j]);
                        let rate = |s: usize| {
                            let ps: Vec<f64> = pick(s).filter_map(|m| m.p_value).collect();
                            Rate::of(ps.iter().filter(|&&p| p <= alpha).count(), ps.len())
                        };
                        let mean = |s: usize| {
                            let es: Vec<f64> = pick(s).filter_map(|m| m.estimate).collect();
                            (!es.is_empty()).then(|| es.iter().sum::<f64>() / es.len() as f64)
                        };
                        let all = || pick(0).chain(pick(1));
                        MethodPower {
                            method: (*name).to_string(),
                            lead: j == 0,
                            power: rate(0),
                            false_positive_rate: rate(1),
                            corrected_power: if j == 0 {
                                corrected.as_ref().map(|c| c[k].clone())
                            } else {
                                None
                            },
                            mean_estimate: mean(0),
                            mean_estimate_null: mean(1),
                            min_attainable_p: all()
                                .filter_map(|m| m.min_attainable_p)
                                .reduce(f64::max),
                            failed: all().filter(|m| m.p_value.is_none()).count(),
                            first_error: all().find_map(|m| m.error.clone()),
                        }
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        for c in &comparisons {
            let lead = &c.methods[0];
            if let Some(min_p) = lead.min_attainable_p {
                if min_p > alpha {
                    notes.push(format!(
                        "{} ({} vs {}): the smallest p-value {} can give is {:.4} > alpha {alpha}: no effect, however large, can be significant",
                        design.as_str(), c.arm, c.control, lead.method, min_p
                    ));
                } else if min_p > alpha / 2.0 {
                    notes.push(format!(
                        "{} ({} vs {}): the smallest p-value {} can give is {:.4}: it rejects at alpha {alpha} only when the observed assignment is the single most extreme one, and at any alpha below {:.4} never",
                        design.as_str(), c.arm, c.control, lead.method, min_p, min_p
                    ));
                }
            }
            if lead.failed > 0 {
                notes.push(format!(
                    "{} ({} vs {}): {} of {} analyses gave no p-value ({})",
                    design.as_str(),
                    c.arm,
                    c.control,
                    lead.failed,
                    2 * outcomes.len(),
                    lead.first_error.as_deref().unwrap_or("no reason")
                ));
            }
        }
        designs.push(DesignPower {
            design,
            role: if d == 0 { "planned" } else { "comparison" },
            analysis: design.analysis(),
            comparisons,
        });
    }
    let metric = metric_of(spec, setup.cfg.metric.as_deref()).unwrap_or(&spec.metrics.primary);
    PowerReport {
        trial: spec.key.clone(),
        design: setup.designs[0],
        simulations: setup.cfg.simulations,
        seed: setup.cfg.seed,
        days: setup.days,
        alpha,
        sidedness: spec.analysis.sidedness.as_str(),
        correction: spec.analysis.correction.as_str(),
        metric: MeasureSummary {
            name: metric.name.clone(),
            kind: metric.kind.as_str(),
            events: setup.counted.clone(),
            window_days: (setup.measure.from, setup.measure.to),
            value: if setup.measure.indicator {
                "1 if the member had at least one counted event, else 0"
            } else {
                "the number of counted events"
            },
        },
        communities: setup
            .cfg
            .params
            .communities
            .iter()
            .map(|c| CommunitySize {
                name: c.name.clone(),
                members: c.members,
            })
            .collect(),
        spillover: setup.cfg.params.spillover,
        effects: setup.cfg.effects.clone(),
        designs,
        notes,
    }
}

/// With a correction and more than one comparison: per comparison, the
/// rejections of the lead method after adjusting its p-values over the
/// comparisons of each simulated trial with effects (trials where every
/// comparison gave a p-value).
fn corrected_rejections(
    correction: Correction,
    alpha: f64,
    outcomes: &[TrialOutcome],
    d: usize,
) -> Option<Vec<Rate>> {
    let comparisons = outcomes.first()?[d][0].len();
    if correction == Correction::None || comparisons < 2 {
        return None;
    }
    let mut rejected = vec![0usize; comparisons];
    let mut completed = 0usize;
    for o in outcomes {
        let ps: Option<Vec<f64>> = o[d][0].iter().map(|c| c[0].p_value).collect();
        let Some(ps) = ps else { continue };
        let adjusted = match correction {
            Correction::Holm => commonlab_stats::multiple::holm(&ps),
            Correction::Bh => commonlab_stats::multiple::benjamini_hochberg(&ps),
            Correction::None => Ok(ps),
        };
        let Ok(adjusted) = adjusted else { continue };
        completed += 1;
        for (k, q) in adjusted.iter().enumerate() {
            rejected[k] += usize::from(*q <= alpha);
        }
    }
    rejected
        .into_iter()
        .map(|r| Rate::of(r, completed))
        .collect()
}
