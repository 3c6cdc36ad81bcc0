//! The `commonlab analyze` JSON contract: sufficient statistics in, every
//! method's estimates out. See `docs/analyze.md` for the full schema.
//!
//! [`parse_input`] deserialises with unknown fields rejected (the error names
//! the JSON path) and validates the structure; [`analyze`] never fails — any
//! estimate that cannot be computed becomes an `{"error": "..."}` entry at the
//! narrowest level (one entry, one comparison, one metric, or the SRM block).
//! [`to_markdown`] renders a human-readable report.

use crate::bayes::{self, BayesResult, Prior};
use crate::effects::{self, Alternative, ArmMoments, ArmStats, Estimate, MetricKind, Scale};
use crate::response::{self, ArmResponse, ResponseCheck};
use crate::{cuped, multiple, poststrat, sequential, srm, Result, StatsError};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt::Write as _;

fn default_alpha() -> f64 {
    0.05
}
fn default_tuning() -> f64 {
    5000.0
}

/// Input document of `commonlab analyze`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeInput {
    /// Significance level α in (0, 1) (default 0.05).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Sequential tuning parameter N* (default 5000).
    #[serde(default = "default_tuning")]
    pub sequential_tuning_parameter: f64,
    /// Proper normal prior on the relative lift (default N(0, 0.3²)).
    #[serde(default)]
    pub prior: Option<Prior>,
    /// Allocation weights per arm (default equal).
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Units assigned per arm, for the SRM check.
    #[serde(default)]
    pub users: Option<Vec<f64>>,
    /// Arm names; the first is control.
    pub arms: Vec<String>,
    /// Metrics to analyse.
    pub metrics: Vec<MetricInput>,
    /// Survey waves: invited and responding units per arm, for the
    /// differential-response check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey_response: Option<Vec<SurveyWaveInput>>,
}

/// One survey wave: per arm (in the order of `arms`) the units invited and
/// the units that responded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyWaveInput {
    /// Wave name (unique), e.g. "baseline".
    pub wave: String,
    /// Units invited, one count per arm.
    pub invited: Vec<u64>,
    /// Units that responded, one count per arm.
    pub responded: Vec<u64>,
}

/// One metric: either `stats` (one entry per arm) or `strata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricInput {
    /// Metric name (unique).
    pub name: String,
    /// `mean`, `proportion` or `ratio`.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Per-arm statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<ArmStats>>,
    /// Per-stratum (community) per-arm statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<Vec<StratumInput>>,
}

/// One stratum of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StratumInput {
    /// Stratum (community) name.
    pub name: String,
    /// Per-arm statistics within the stratum.
    pub stats: Vec<ArmStats>,
}

/// Parse and validate an input document. Unknown fields and type errors are
/// reported with their JSON path, e.g. `metrics[0].stats[1].sumsq: unknown field ...`.
pub fn parse_input(json: &str) -> Result<AnalyzeInput> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let input: AnalyzeInput = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        StatsError::InvalidInput(format!("{path}: {}", e.into_inner()))
    })?;
    validate(&input)?;
    Ok(input)
}

/// Structural validation (arm counts, lengths, names, α, N*, prior).
pub fn validate(input: &AnalyzeInput) -> Result<()> {
    let bad = |m: String| Err(StatsError::InvalidInput(m));
    let k = input.arms.len();
    if k < 2 {
        return bad("arms: need at least two arms (control first)".into());
    }
    if !(input.alpha > 0.0 && input.alpha < 1.0) {
        return bad(format!("alpha: must be in (0, 1), got {}", input.alpha));
    }
    if !(input.sequential_tuning_parameter > 0.0 && input.sequential_tuning_parameter.is_finite()) {
        return bad("sequential_tuning_parameter: must be positive".into());
    }
    if let Some(p) = &input.prior {
        if !(p.stddev > 0.0 && p.stddev.is_finite() && p.mean.is_finite()) {
            return bad("prior: stddev must be positive and finite".into());
        }
    }
    if let Some(w) = &input.weights {
        if w.len() != k {
            return bad(format!("weights: {} entries for {k} arms", w.len()));
        }
    }
    if let Some(u) = &input.users {
        if u.len() != k {
            return bad(format!("users: {} entries for {k} arms", u.len()));
        }
    }
    if let Some(waves) = &input.survey_response {
        if waves.is_empty() {
            return bad("survey_response: empty (leave it out instead)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, w) in waves.iter().enumerate() {
            if !seen.insert(w.wave.as_str()) {
                return bad(format!(
                    "survey_response[{i}].wave: duplicate wave {:?}",
                    w.wave
                ));
            }
            for (field, v) in [("invited", &w.invited), ("responded", &w.responded)] {
                if v.len() != k {
                    return bad(format!(
                        "survey_response[{i}].{field}: {} entries for {k} arms",
                        v.len()
                    ));
                }
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, m) in input.metrics.iter().enumerate() {
        if !names.insert(m.name.as_str()) {
            return bad(format!("metrics[{i}].name: duplicate metric {:?}", m.name));
        }
        match (&m.stats, &m.strata) {
            (None, None) => return bad(format!("metrics[{i}]: needs `stats` or `strata`")),
            (Some(_), Some(_)) => {
                return bad(format!(
                    "metrics[{i}]: give either `stats` or `strata`, not both"
                ))
            }
            (Some(s), None) if s.len() != k => {
                return bad(format!(
                    "metrics[{i}].stats: {} entries for {k} arms",
                    s.len()
                ))
            }
            (None, Some(st)) => {
                if st.is_empty() {
                    return bad(format!("metrics[{i}].strata: empty"));
                }
                for (j, s) in st.iter().enumerate() {
                    if s.stats.len() != k {
                        return bad(format!(
                            "metrics[{i}].strata[{j}].stats: {} entries for {k} arms",
                            s.stats.len()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// An ordered name → value map (serialised as a JSON object in insertion order).
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<T> Named<T> {
    /// Look up by name.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Frequentist entry; `null` interval ends are unbounded (one-sided tests).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrequentistEntry {
    /// Point estimate.
    pub effect: f64,
    /// Standard error.
    pub se: f64,
    /// Lower bound, `None` = −∞.
    pub ci_lower: Option<f64>,
    /// Upper bound, `None` = +∞.
    pub ci_upper: Option<f64>,
    /// p-value.
    pub p_value: f64,
}

/// One method's result, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Entry {
    /// Frequentist (fixed-horizon or sequential) result.
    Frequentist(FrequentistEntry),
    /// Bayesian posterior summary.
    Bayesian(BayesResult),
    /// No estimate.
    Error {
        /// Reason.
        error: String,
    },
}

impl Entry {
    fn err(e: &StatsError) -> Entry {
        Entry::Error {
            error: e.to_string(),
        }
    }
    fn freq(r: Result<effects::TestResult>) -> Entry {
        let fin = |x: f64| if x.is_finite() { Some(x) } else { None };
        match r {
            Ok(r) => Entry::Frequentist(FrequentistEntry {
                effect: r.effect,
                se: r.se,
                ci_lower: fin(r.ci_lower),
                ci_upper: fin(r.ci_upper),
                p_value: r.p_value,
            }),
            Err(e) => Entry::err(&e),
        }
    }
    /// The p-value of a frequentist entry.
    pub fn p_value(&self) -> Option<f64> {
        match self {
            Entry::Frequentist(f) => Some(f.p_value),
            _ => None,
        }
    }
}

/// All methods for one estimate (one scale of one comparison).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResults {
    /// Welch two-sided test and CI.
    pub two_sided: Entry,
    /// One-sided, H1: treatment greater.
    pub one_sided_greater: Entry,
    /// One-sided, H1: treatment lesser.
    pub one_sided_lesser: Entry,
    /// Always-valid confidence sequence.
    pub sequential_two_sided: Entry,
    /// Gaussian posterior, flat prior.
    pub bayesian_flat_prior: Entry,
    /// Gaussian posterior, proper normal prior.
    pub bayesian_proper_prior: Entry,
}

impl MethodResults {
    fn all_error(e: &StatsError) -> Self {
        MethodResults {
            two_sided: Entry::err(e),
            one_sided_greater: Entry::err(e),
            one_sided_lesser: Entry::err(e),
            sequential_two_sided: Entry::err(e),
            bayesian_flat_prior: Entry::err(e),
            bayesian_proper_prior: Entry::err(e),
        }
    }

    fn from_estimate(est: Result<Estimate>, scale: Scale, cfg: &Cfg) -> Self {
        let est = match est {
            Ok(e) => e,
            Err(e) => return Self::all_error(&e),
        };
        let bayes = |p: Option<&Prior>| match bayes::posterior(&est, p, scale, cfg.alpha) {
            Ok(b) => Entry::Bayesian(b),
            Err(e) => Entry::err(&e),
        };
        let (two_sided, one_sided_greater, one_sided_lesser) =
            match effects::t_tests_all(&est, cfg.alpha) {
                Ok([a, b, c]) => (Entry::freq(Ok(a)), Entry::freq(Ok(b)), Entry::freq(Ok(c))),
                Err(e) => (Entry::err(&e), Entry::err(&e), Entry::err(&e)),
            };
        MethodResults {
            two_sided,
            one_sided_greater,
            one_sided_lesser,
            sequential_two_sided: Entry::freq(sequential::two_sided(&est, cfg.alpha, cfg.tuning)),
            bayesian_flat_prior: bayes(None),
            bayesian_proper_prior: bayes(Some(&cfg.prior)),
        }
    }
}

/// CUPED block of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CupedResults {
    /// Pooled θ (absent when the covariate could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theta: Option<f64>,
    /// Adjusted absolute lift.
    pub absolute: MethodResults,
    /// Adjusted relative lift.
    pub relative: MethodResults,
}

/// Post-stratified block of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostStratResults {
    /// Number of strata.
    pub strata: usize,
    /// Post-stratified absolute lift.
    pub absolute: MethodResults,
    /// Post-stratified relative lift.
    pub relative: MethodResults,
}

/// One treatment arm against control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Absolute lift.
    pub absolute: MethodResults,
    /// Relative lift.
    pub relative: MethodResults,
    /// CUPED, when every arm carries covariate statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<CupedResults>,
    /// Post-stratification, when the metric was given as strata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_stratified: Option<PostStratResults>,
}

/// Descriptive summary of one arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    /// Arm name.
    pub name: String,
    /// Units.
    pub n: f64,
    /// Arm value: mean, proportion, or ratio ΣM/ΣD (`null` if undefined).
    pub value: Option<f64>,
    /// Unit-level standard deviation of the (linearised) value (`null` if n < 2).
    pub stddev: Option<f64>,
}

/// Results of one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResults {
    /// Metric type.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Per-arm summaries (strata summed).
    pub arms: Vec<ArmSummary>,
    /// Treatment arm name → comparison with control.
    pub comparisons: Named<Comparison>,
}

/// Covariate balance of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceEntry {
    /// Metric whose covariate was checked.
    pub metric: String,
    /// Treatment arm.
    pub arm: String,
    /// X̄_treatment − X̄_control.
    pub difference: Option<f64>,
    /// Welch two-sided p-value.
    pub p_value: Option<f64>,
    /// Why there is no result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// SRM block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SrmBlock {
    /// χ² p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Pearson X².
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// arms − 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub df: Option<f64>,
    /// Expected units per arm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Vec<f64>>,
    /// p < threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<bool>,
    /// 0.001.
    pub threshold: f64,
    /// Why the SRM test did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pre-exposure covariate balance per metric with covariates and arm.
    pub covariate_balance: Vec<BalanceEntry>,
}

/// One member of the multiple-testing family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdjustedEntry {
    /// Metric.
    pub metric: String,
    /// Treatment arm.
    pub arm: String,
    /// Absolute lift.
    pub effect: f64,
    /// Unadjusted two-sided p-value.
    pub p_value: f64,
    /// Adjusted p-value.
    pub adjusted_p_value: f64,
    /// Adjusted interval lower bound.
    pub ci_lower: f64,
    /// Adjusted interval upper bound.
    pub ci_upper: f64,
}

/// Multiple-testing block: the family is every (metric, treatment arm)
/// two-sided Welch test of the absolute lift that has an estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultipleTesting {
    /// Holm–Bonferroni (intervals at α/m).
    pub holm: Vec<AdjustedEntry>,
    /// Benjamini–Hochberg (FCR intervals at R·α/m).
    pub bh: Vec<AdjustedEntry>,
}

/// The differential-response check of one wave (or of the pooled counts),
/// or why it did not run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ResponseEntry {
    /// Test results (see [`crate::response::check`]).
    Ok {
        /// Wave name, or `"pooled"`.
        wave: String,
        /// The check.
        #[serde(flatten)]
        check: ResponseCheck,
    },
    /// No test.
    Error {
        /// Wave name, or `"pooled"`.
        wave: String,
        /// Reason.
        error: String,
    },
}

impl ResponseEntry {
    fn new(wave: &str, r: Result<ResponseCheck>) -> Self {
        match r {
            Ok(check) => ResponseEntry::Ok {
                wave: wave.to_string(),
                check,
            },
            Err(e) => ResponseEntry::Error {
                wave: wave.to_string(),
                error: e.to_string(),
            },
        }
    }
    /// True when the check ran and flagged differential response.
    pub fn flagged(&self) -> bool {
        matches!(self, ResponseEntry::Ok { check, .. } if check.flagged)
    }
}

/// Differential survey response between arms, per wave and pooled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurveyResponseBlock {
    /// One entry per input wave, in input order.
    pub waves: Vec<ResponseEntry>,
    /// Counts summed over waves (only with two or more waves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooled: Option<ResponseEntry>,
    /// True when any wave or the pooled check is flagged: response rates
    /// differ between arms, survey outcomes are not comparable as randomised.
    pub differential_response: bool,
    /// Flag threshold on the p-value (0.001, as for SRM).
    pub threshold: f64,
}

fn survey_response_block(waves: &[SurveyWaveInput], k: usize) -> SurveyResponseBlock {
    let arms = |w: &SurveyWaveInput| -> Result<Vec<ArmResponse>> {
        if w.invited.len() != k || w.responded.len() != k {
            return Err(StatsError::InvalidInput(format!(
                "wave {:?} needs one invited and one responded count for each of the {k} arms",
                w.wave
            )));
        }
        Ok(w.invited
            .iter()
            .zip(&w.responded)
            .map(|(&invited, &responded)| ArmResponse { invited, responded })
            .collect())
    };
    let entries: Vec<ResponseEntry> = waves
        .iter()
        .map(|w| ResponseEntry::new(&w.wave, arms(w).and_then(|a| response::check(&a))))
        .collect();
    let pooled = (waves.len() > 1).then(|| {
        let invalid = waves
            .iter()
            .map(|w| arms(w).and_then(|a| response::check(&a)));
        if let Some((w, e)) = waves.iter().zip(invalid).find_map(|(w, r)| match r {
            Err(e @ StatsError::InvalidInput(_)) => Some((w, e)),
            _ => None,
        }) {
            return ResponseEntry::new(
                "pooled",
                Err(StatsError::InvalidInput(format!(
                    "not pooled: wave {:?} is invalid ({e})",
                    w.wave
                ))),
            );
        }
        let summed = waves.iter().map(arms).try_fold(
            vec![
                ArmResponse {
                    invited: 0,
                    responded: 0
                };
                k
            ],
            |mut acc, w| {
                for (a, b) in acc.iter_mut().zip(w?) {
                    a.invited = a.invited.saturating_add(b.invited);
                    a.responded = a.responded.saturating_add(b.responded);
                }
                Ok::<_, StatsError>(acc)
            },
        );
        ResponseEntry::new("pooled", summed.and_then(|a| response::check(&a)))
    });
    let differential_response = entries.iter().any(ResponseEntry::flagged)
        || pooled.as_ref().is_some_and(ResponseEntry::flagged);
    SurveyResponseBlock {
        waves: entries,
        pooled,
        differential_response,
        threshold: response::RESPONSE_P_THRESHOLD,
    }
}

/// Output document of `commonlab analyze`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyzeOutput {
    /// Sample-ratio mismatch and covariate balance.
    pub srm: SrmBlock,
    /// Differential survey response, when `survey_response` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub survey_response: Option<SurveyResponseBlock>,
    /// Metric name → results (or `{"error": ...}`).
    pub metrics: Named<MetricOutcome>,
    /// Adjusted p-values and intervals over the family.
    pub multiple_testing: MultipleTesting,
}

/// A metric's results or why there are none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MetricOutcome {
    /// Results.
    Ok(MetricResults),
    /// Error.
    Error {
        /// Reason.
        error: String,
    },
}

struct Cfg {
    alpha: f64,
    tuning: f64,
    prior: Prior,
}

fn summary(kind: MetricKind, name: &str, s: &ArmStats) -> ArmSummary {
    let m = ArmMoments::from_stats(kind, s, false).ok();
    let value = m.map(|m| m.value(kind)).filter(|v| v.is_finite());
    let stddev = m
        .filter(|m| m.n >= 2.0)
        .map(|m| m.unit_variance(kind).max(0.0).sqrt())
        .filter(|v| v.is_finite());
    ArmSummary {
        name: name.to_string(),
        n: s.n,
        value,
        stddev,
    }
}

struct FamilyMember {
    metric: String,
    arm: String,
    est: Estimate,
    p: f64,
}

fn analyze_metric(
    input: &AnalyzeInput,
    m: &MetricInput,
    cfg: &Cfg,
    family: &mut Vec<FamilyMember>,
    balance: &mut Vec<BalanceEntry>,
) -> Result<MetricResults> {
    let k = input.arms.len();
    let kind = m.kind;
    // arm totals
    let totals: Vec<ArmStats> = match (&m.stats, &m.strata) {
        (Some(s), _) => {
            if s.len() != k {
                return Err(StatsError::InvalidInput(format!(
                    "stats has {} entries for {k} arms",
                    s.len()
                )));
            }
            s.clone()
        }
        (None, Some(st)) => {
            let mut t: Vec<ArmStats> = vec![];
            for s in st {
                if s.stats.len() != k {
                    return Err(StatsError::InvalidInput(format!(
                        "stratum {:?} has {} entries for {k} arms",
                        s.name,
                        s.stats.len()
                    )));
                }
                if t.is_empty() {
                    t = s.stats.clone();
                } else {
                    t = t.iter().zip(&s.stats).map(|(a, b)| a.add(b)).collect();
                }
            }
            if t.is_empty() {
                return Err(StatsError::InvalidInput("strata is empty".into()));
            }
            t
        }
        (None, None) => return Err(StatsError::InvalidInput("needs stats or strata".into())),
    };
    let arms = input
        .arms
        .iter()
        .zip(&totals)
        .map(|(n, s)| summary(kind, n, s))
        .collect();
    let with_cov = totals.iter().all(|s| s.has_covariate(kind));
    let control = &totals[0];
    let mut comparisons = Vec::with_capacity(k - 1);
    for (j, treat) in totals.iter().enumerate().skip(1) {
        let abs_est = effects::estimate(kind, control, treat, Scale::Absolute);
        if let Ok(e) = &abs_est {
            if let Ok(r) = effects::t_test(e, cfg.alpha, Alternative::TwoSided) {
                family.push(FamilyMember {
                    metric: m.name.clone(),
                    arm: input.arms[j].clone(),
                    est: *e,
                    p: r.p_value,
                });
            }
        }
        let absolute = MethodResults::from_estimate(abs_est, Scale::Absolute, cfg);
        let relative = MethodResults::from_estimate(
            effects::estimate(kind, control, treat, Scale::Relative),
            Scale::Relative,
            cfg,
        );
        let cuped = if with_cov {
            let bal = srm::covariate_balance(control, treat);
            balance.push(BalanceEntry {
                metric: m.name.clone(),
                arm: input.arms[j].clone(),
                difference: bal.as_ref().ok().map(|b| b.0),
                p_value: bal.as_ref().ok().map(|b| b.1),
                error: bal.as_ref().err().map(|e| e.to_string()),
            });
            let a = cuped::estimate(kind, control, treat, Scale::Absolute);
            let r = cuped::estimate(kind, control, treat, Scale::Relative);
            let theta = a.as_ref().ok().map(|c| c.theta);
            Some(CupedResults {
                theta,
                absolute: MethodResults::from_estimate(a.map(|c| c.estimate), Scale::Absolute, cfg),
                relative: MethodResults::from_estimate(r.map(|c| c.estimate), Scale::Relative, cfg),
            })
        } else {
            None
        };
        let post_stratified = m.strata.as_ref().map(|st| {
            let strata: Vec<poststrat::Stratum<'_>> = st
                .iter()
                .map(|s| poststrat::Stratum {
                    name: &s.name,
                    control: &s.stats[0],
                    treatment: &s.stats[j],
                })
                .collect();
            PostStratResults {
                strata: strata.len(),
                absolute: MethodResults::from_estimate(
                    poststrat::estimate(kind, &strata, Scale::Absolute),
                    Scale::Absolute,
                    cfg,
                ),
                relative: MethodResults::from_estimate(
                    poststrat::estimate(kind, &strata, Scale::Relative),
                    Scale::Relative,
                    cfg,
                ),
            }
        });
        comparisons.push((
            input.arms[j].clone(),
            Comparison {
                absolute,
                relative,
                cuped,
                post_stratified,
            },
        ));
    }
    Ok(MetricResults {
        kind,
        arms,
        comparisons: Named(comparisons),
    })
}

fn srm_block(input: &AnalyzeInput, balance: Vec<BalanceEntry>) -> SrmBlock {
    let mut b = SrmBlock {
        p_value: None,
        statistic: None,
        df: None,
        expected: None,
        mismatch: None,
        threshold: srm::SRM_P_THRESHOLD,
        error: None,
        covariate_balance: balance,
    };
    let k = input.arms.len();
    let weights = input.weights.clone().unwrap_or_else(|| vec![1.0; k]);
    match &input.users {
        None => b.error = Some("users not given".into()),
        Some(users) => match srm::check(users, &weights) {
            Ok(r) => {
                b.p_value = Some(r.p_value);
                b.statistic = Some(r.statistic);
                b.df = Some(r.df);
                b.expected = Some(r.expected);
                b.mismatch = Some(r.mismatch);
            }
            Err(e) => b.error = Some(e.to_string()),
        },
    }
    b
}

fn adjust(family: &[FamilyMember], adjusted: &[f64], interval_alpha: f64) -> Vec<AdjustedEntry> {
    family
        .iter()
        .zip(adjusted)
        .map(|(f, &q)| {
            let r = effects::t_test(&f.est, interval_alpha, Alternative::TwoSided);
            let (lo, hi) = r
                .map(|r| (r.ci_lower, r.ci_upper))
                .unwrap_or((f64::NAN, f64::NAN));
            AdjustedEntry {
                metric: f.metric.clone(),
                arm: f.arm.clone(),
                effect: f.est.effect,
                p_value: f.p,
                adjusted_p_value: q,
                ci_lower: lo,
                ci_upper: hi,
            }
        })
        .collect()
}

/// Analyse every metric. Never fails; see the module docs.
pub fn analyze(input: &AnalyzeInput) -> AnalyzeOutput {
    let cfg = Cfg {
        alpha: input.alpha,
        tuning: input.sequential_tuning_parameter,
        prior: input.prior.unwrap_or(Prior {
            mean: 0.0,
            stddev: 0.3,
        }),
    };
    let mut family = Vec::new();
    let mut balance = Vec::new();
    let mut metrics = Vec::with_capacity(input.metrics.len());
    for m in &input.metrics {
        let out = if input.arms.len() < 2 {
            MetricOutcome::Error {
                error: "need at least two arms".into(),
            }
        } else {
            match analyze_metric(input, m, &cfg, &mut family, &mut balance) {
                Ok(r) => MetricOutcome::Ok(r),
                Err(e) => MetricOutcome::Error {
                    error: e.to_string(),
                },
            }
        };
        metrics.push((m.name.clone(), out));
    }
    let ps: Vec<f64> = family.iter().map(|f| f.p).collect();
    let (holm, bh) = if ps.is_empty() {
        (vec![], vec![])
    } else {
        let h = multiple::holm(&ps).unwrap_or_else(|_| vec![1.0; ps.len()]);
        let b = multiple::benjamini_hochberg(&ps).unwrap_or_else(|_| vec![1.0; ps.len()]);
        let ha = multiple::holm_interval_alpha(cfg.alpha, ps.len());
        let ba = multiple::bh_interval_alpha(cfg.alpha, &b);
        (adjust(&family, &h, ha), adjust(&family, &b, ba))
    };
    AnalyzeOutput {
        srm: srm_block(input, balance),
        survey_response: input
            .survey_response
            .as_deref()
            .map(|w| survey_response_block(w, input.arms.len())),
        metrics: Named(metrics),
        multiple_testing: MultipleTesting { holm, bh },
    }
}

fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e-3 && x.abs() < 1e6 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn fmt_entry(e: &Entry, pct: bool) -> String {
    let f = |x: f64| {
        if pct {
            format!("{:.2}%", 100.0 * x)
        } else {
            fmt_num(x)
        }
    };
    let b = |x: Option<f64>, inf: &str| x.map(f).unwrap_or_else(|| inf.to_string());
    match e {
        Entry::Frequentist(r) => format!(
            "{} [{}, {}] p={}",
            f(r.effect),
            b(r.ci_lower, "−∞"),
            b(r.ci_upper, "∞"),
            fmt_num(r.p_value)
        ),
        Entry::Bayesian(r) => format!(
            "{} [{}, {}] P(win)={:.1}%",
            f(r.effect),
            f(r.ci_lower),
            f(r.ci_upper),
            100.0 * r.chance_to_win
        ),
        Entry::Error { error } => format!("— ({error})"),
    }
}

/// Render the output as a Markdown report.
pub fn to_markdown(out: &AnalyzeOutput) -> String {
    let mut s = String::from("# Experiment analysis\n\n## Sample ratio mismatch\n\n");
    match (&out.srm.error, out.srm.p_value) {
        (Some(e), _) => {
            let _ = writeln!(s, "SRM check not run: {e}.\n");
        }
        (None, Some(p)) => {
            let flag = if out.srm.mismatch == Some(true) {
                "**MISMATCH** — results are suspect"
            } else {
                "ok"
            };
            let _ = writeln!(
                s,
                "χ² = {}, p = {} ({flag}; threshold {}).\n",
                fmt_num(out.srm.statistic.unwrap_or(0.0)),
                fmt_num(p),
                out.srm.threshold
            );
        }
        _ => {}
    }
    if !out.srm.covariate_balance.is_empty() {
        s.push_str("| Metric | Arm | Covariate difference | p |\n|---|---|---|---|\n");
        for b in &out.srm.covariate_balance {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                b.metric,
                b.arm,
                b.difference.map(fmt_num).unwrap_or_else(|| "—".into()),
                b.p_value
                    .map(fmt_num)
                    .unwrap_or_else(|| b.error.clone().unwrap_or_default())
            );
        }
        s.push('\n');
    }
    if let Some(sr) = &out.survey_response {
        s.push_str("## Survey response\n\n");
        let _ = writeln!(
            s,
            "{} (threshold {}).\n",
            if sr.differential_response {
                "**DIFFERENTIAL RESPONSE** between arms — survey outcomes are suspect"
            } else {
                "No differential response between arms"
            },
            sr.threshold
        );
        s.push_str("| Wave | Response rate per arm | Test | p | Flag |\n|---|---|---|---|---|\n");
        for e in sr.waves.iter().chain(&sr.pooled) {
            match e {
                ResponseEntry::Ok { wave, check } => {
                    let rates: Vec<String> = check
                        .rates
                        .iter()
                        .map(|r| format!("{:.1}%", 100.0 * r))
                        .collect();
                    let test = match check.test {
                        response::ResponseTest::ChiSquare => "χ²",
                        response::ResponseTest::FisherExact => "Fisher exact",
                    };
                    let _ = writeln!(
                        s,
                        "| {wave} | {} | {test} | {} | {} |",
                        rates.join(" / "),
                        fmt_num(check.p_value),
                        if check.flagged { "**flagged**" } else { "ok" }
                    );
                }
                ResponseEntry::Error { wave, error } => {
                    let _ = writeln!(s, "| {wave} | — ({error}) | — | — | — |");
                }
            }
        }
        s.push('\n');
    }
    s.push_str("## Metrics\n\n");
    for (name, mo) in &out.metrics.0 {
        let _ = writeln!(s, "### {name}\n");
        let mr = match mo {
            MetricOutcome::Ok(m) => m,
            MetricOutcome::Error { error } => {
                let _ = writeln!(s, "No results: {error}\n");
                continue;
            }
        };
        s.push_str("| Arm | n | Value | Std. dev. |\n|---|---|---|---|\n");
        for a in &mr.arms {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                a.name,
                a.n,
                a.value.map(fmt_num).unwrap_or_else(|| "—".into()),
                a.stddev.map(fmt_num).unwrap_or_else(|| "—".into())
            );
        }
        s.push_str(
            "\n| Arm | Estimate | Absolute lift [CI] | Relative lift [CI] | Sequential (relative) | Bayesian, proper prior (relative) |\n|---|---|---|---|---|---|\n",
        );
        for (arm, c) in &mr.comparisons.0 {
            let mut row = |label: &str, a: &MethodResults, r: &MethodResults| {
                let _ = writeln!(
                    s,
                    "| {arm} | {label} | {} | {} | {} | {} |",
                    fmt_entry(&a.two_sided, false),
                    fmt_entry(&r.two_sided, true),
                    fmt_entry(&r.sequential_two_sided, true),
                    fmt_entry(&r.bayesian_proper_prior, true)
                );
            };
            row("Welch", &c.absolute, &c.relative);
            if let Some(cu) = &c.cuped {
                row("CUPED", &cu.absolute, &cu.relative);
            }
            if let Some(ps) = &c.post_stratified {
                row("Post-stratified", &ps.absolute, &ps.relative);
            }
        }
        s.push('\n');
    }
    if !out.multiple_testing.holm.is_empty() {
        s.push_str("## Multiple testing (absolute lift, two-sided)\n\n| Metric | Arm | p | Holm p | Holm CI | BH p | BH CI |\n|---|---|---|---|---|---|---|\n");
        for (h, b) in out
            .multiple_testing
            .holm
            .iter()
            .zip(&out.multiple_testing.bh)
        {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | [{}, {}] | {} | [{}, {}] |",
                h.metric,
                h.arm,
                fmt_num(h.p_value),
                fmt_num(h.adjusted_p_value),
                fmt_num(h.ci_lower),
                fmt_num(h.ci_upper),
                fmt_num(b.adjusted_p_value),
                fmt_num(b.ci_lower),
                fmt_num(b.ci_upper)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
      "alpha": 0.05,
      "sequential_tuning_parameter": 5000,
      "prior": {"mean": 0, "stddev": 0.3},
      "weights": [0.5, 0.25, 0.25],
      "users": [1000, 510, 490],
      "arms": ["control", "t1", "t2"],
      "metrics": [
        {"name": "visits", "type": "mean", "stats": [
          {"n": 1000, "sum": 5000, "sum_squares": 34000, "x_sum": 4900, "x_sum_squares": 31000, "xy_sum": 30000},
          {"n": 510, "sum": 2700, "sum_squares": 18500, "x_sum": 2480, "x_sum_squares": 15600, "xy_sum": 15500},
          {"n": 490, "sum": 2400, "sum_squares": 16000, "x_sum": 2420, "x_sum_squares": 15300, "xy_sum": 14800}]},
        {"name": "joined", "type": "proportion", "strata": [
          {"name": "north", "stats": [{"n": 600, "sum": 120}, {"n": 300, "sum": 70}, {"n": 290, "sum": 55}]},
          {"name": "south", "stats": [{"n": 400, "sum": 40}, {"n": 210, "sum": 25}, {"n": 200, "sum": 21}]}]},
        {"name": "hours_per_visit", "type": "ratio", "stats": [
          {"n": 1000, "sum": 9000, "sum_squares": 120000, "d_sum": 5000, "d_sum_squares": 34000, "md_sum": 60000},
          {"n": 510, "sum": 4700, "sum_squares": 62000, "d_sum": 2700, "d_sum_squares": 18500, "md_sum": 31500},
          {"n": 490, "sum": 4500, "sum_squares": 60000, "d_sum": 2400, "d_sum_squares": 16000, "md_sum": 29500}]},
        {"name": "broken", "type": "mean", "stats": [
          {"n": 1, "sum": 3, "sum_squares": 9}, {"n": 5, "sum": 10, "sum_squares": 30}, {"n": 5, "sum": 10, "sum_squares": 30}]}
      ]
    }"#;

    #[test]
    fn example_round_trip() {
        let input = parse_input(EXAMPLE).unwrap();
        let out = analyze(&input);
        let v = serde_json::to_value(&out).unwrap();
        assert!(v["srm"]["p_value"].as_f64().unwrap() > 0.001);
        let c = &v["metrics"]["visits"]["comparisons"]["t1"];
        for block in [&c["absolute"], &c["relative"], &c["cuped"]["absolute"]] {
            let p = block["two_sided"]["p_value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            assert!(block["one_sided_greater"]["ci_upper"].is_null());
            assert!(block["one_sided_lesser"]["ci_lower"].is_null());
            assert!(block["bayesian_proper_prior"]["chance_to_win"].is_number());
        }
        assert!(c["cuped"]["theta"].is_number());
        assert!(c.get("post_stratified").is_none());
        let j = &v["metrics"]["joined"]["comparisons"]["t2"];
        assert!(j["post_stratified"]["relative"]["two_sided"]["p_value"].is_number());
        assert!(j.get("cuped").is_none());
        assert!(
            v["metrics"]["hours_per_visit"]["comparisons"]["t1"]["relative"]["two_sided"]["effect"]
                .is_number()
        );
        let b = &v["metrics"]["broken"]["comparisons"]["t1"]["absolute"]["two_sided"];
        assert_eq!(b["error"], "control arm has n < 2");
        // family: 3 estimable metrics x 2 arms
        assert_eq!(out.multiple_testing.holm.len(), 6);
        for e in &out.multiple_testing.bh {
            assert!(e.adjusted_p_value >= e.p_value);
        }
        let md = to_markdown(&out);
        assert!(
            md.contains("### visits") && md.contains("CUPED") && md.contains("Post-stratified")
        );
        // order of metrics preserved
        let keys: Vec<&String> = v["metrics"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["visits", "joined", "hours_per_visit", "broken"]);
    }

    #[test]
    fn unknown_fields_are_rejected_with_path() {
        let bad = EXAMPLE.replace("\"sum_squares\": 34000", "\"sum_sq\": 34000");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(
            e.contains("metrics[0].stats[0]") && e.contains("sum_sq"),
            "{e}"
        );
        let bad = EXAMPLE.replace("\"alpha\": 0.05", "\"alpah\": 0.05");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(e.contains("alpah"), "{e}");
        let bad = EXAMPLE.replace("\"type\": \"ratio\"", "\"type\": \"median\"");
        let e = parse_input(&bad).unwrap_err().to_string();
        assert!(e.contains("metrics[2].type"), "{e}");
    }

    #[test]
    fn structural_errors() {
        let bad = EXAMPLE.replace("\"users\": [1000, 510, 490]", "\"users\": [1000, 510]");
        assert!(parse_input(&bad).unwrap_err().to_string().contains("users"));
        let bad = EXAMPLE.replace("\"alpha\": 0.05", "\"alpha\": 1.5");
        assert!(parse_input(&bad).unwrap_err().to_string().contains("alpha"));
    }

    fn arm_any() -> impl proptest::strategy::Strategy<Value = ArmStats> {
        use proptest::prelude::*;
        (0u32..6, -5i32..6, 0u32..40, proptest::option::of(-3i32..4)).prop_map(|(n, s, ss, x)| {
            let mut a = ArmStats::new(n as f64, s as f64, ss as f64);
            if let Some(x) = x {
                a = a.with_covariate(x as f64, (x * x) as f64, (x * s) as f64);
                a.dx_sum = Some(x as f64);
            }
            a.d_sum = Some(n as f64);
            a.d_sum_squares = Some(n as f64);
            a.md_sum = Some(s as f64);
            a
        })
    }

    fn assert_finite(r: &MethodResults) {
        for e in [
            &r.two_sided,
            &r.one_sided_greater,
            &r.one_sided_lesser,
            &r.sequential_two_sided,
            &r.bayesian_flat_prior,
            &r.bayesian_proper_prior,
        ] {
            match e {
                Entry::Frequentist(f) => {
                    assert!(
                        f.effect.is_finite()
                            && f.se.is_finite()
                            && (0.0..=1.0).contains(&f.p_value)
                    );
                    assert!(
                        f.ci_lower.is_none_or(f64::is_finite)
                            && f.ci_upper.is_none_or(f64::is_finite)
                    );
                }
                Entry::Bayesian(b) => {
                    assert!(
                        b.effect.is_finite()
                            && b.se.is_finite()
                            && (0.0..=1.0).contains(&b.chance_to_win)
                    );
                    assert!(b.risk_control.is_finite() && b.risk_treatment.is_finite());
                }
                Entry::Error { error } => assert!(!error.is_empty()),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn tiny_and_degenerate_inputs_never_panic_or_nan(
            a in arm_any(), b in arm_any(), c in arm_any(), ki in 0usize..3, strat in proptest::bool::ANY
        ) {
            let kind = [MetricKind::Mean, MetricKind::Proportion, MetricKind::Ratio][ki];
            let stats = vec![a.clone(), b.clone(), c.clone()];
            let metric = if strat {
                MetricInput { name: "m".into(), kind, stats: None, strata: Some(vec![
                    StratumInput { name: "s1".into(), stats: stats.clone() },
                    StratumInput { name: "s2".into(), stats: vec![b, c, a] },
                ]) }
            } else {
                MetricInput { name: "m".into(), kind, stats: Some(stats), strata: None }
            };
            let input = AnalyzeInput {
                alpha: 0.05, sequential_tuning_parameter: 5000.0, prior: None, weights: None,
                users: Some(vec![3.0, 0.0, 2.0]), arms: vec!["c".into(), "t1".into(), "t2".into()],
                metrics: vec![metric], survey_response: None,
            };
            let out = analyze(&input);
            if let Some(MetricOutcome::Ok(m)) = out.metrics.get("m") {
                for (_, c) in &m.comparisons.0 {
                    assert_finite(&c.absolute);
                    assert_finite(&c.relative);
                    if let Some(cu) = &c.cuped { assert_finite(&cu.absolute); assert_finite(&cu.relative); }
                    if let Some(ps) = &c.post_stratified { assert_finite(&ps.absolute); assert_finite(&ps.relative); }
                }
            }
            let _ = to_markdown(&out);
            serde_json::to_string(&out).unwrap();
        }
    }

    const RESPONSE_REF: &str = include_str!("../reference/few_response_waves.json");

    fn close(name: &str, what: &str, got: &serde_json::Value, want: &serde_json::Value) {
        let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
        assert!(
            (g - w).abs() <= 1e-9 * w.abs() || (g - w).abs() < 1e-15,
            "{name} {what}: {g:e} vs {w:e}"
        );
    }

    fn check_response_entry(name: &str, got: &serde_json::Value, want: &serde_json::Value) {
        match want["error"].as_str() {
            Some(kind) => {
                let e = got["error"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {got}"));
                assert_eq!(
                    e.starts_with("invalid input"),
                    kind == "invalid_input",
                    "{name}: {e}"
                );
                assert!(got.get("p_value").is_none());
            }
            None => {
                for key in ["chi2", "chi2_p", "min_expected", "p_value"] {
                    close(name, key, &got[key], &want[key]);
                }
                assert_eq!(got["df"].as_f64(), want["df"].as_f64(), "{name}");
                assert_eq!(got["test"], want["test"], "{name}");
                assert_eq!(got["flagged"], want["flagged"], "{name}");
                match want.get("fisher_p") {
                    Some(fp) => close(name, "fisher_p", &got["fisher_p"], fp),
                    None => assert!(got["fisher_p"].is_null(), "{name}"),
                }
                for (a, b) in got["rates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(want["rates"].as_array().unwrap())
                {
                    close(name, "rate", a, b);
                }
            }
        }
    }

    #[test]
    fn survey_response_matches_scipy() {
        let v: serde_json::Value = serde_json::from_str(RESPONSE_REF).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let (mut flagged, mut fisher, mut errors) = (0, 0, 0);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let doc = serde_json::json!({
                "arms": c["arms"], "metrics": [], "survey_response": c["survey_response"]
            });
            let out = analyze(&parse_input(&doc.to_string()).unwrap());
            let got = serde_json::to_value(&out).unwrap()["survey_response"].clone();
            let want = &c["expected"];
            let gw = got["waves"].as_array().unwrap();
            let ww = want["waves"].as_array().unwrap();
            assert_eq!(gw.len(), ww.len());
            for (i, (g, w)) in gw.iter().zip(ww).enumerate() {
                assert_eq!(g["wave"], c["survey_response"][i]["wave"]);
                check_response_entry(name, g, w);
                fisher += usize::from(w["test"] == "fisher_exact");
                errors += usize::from(w.get("error").is_some());
            }
            match want.get("pooled") {
                Some(w) => {
                    assert_eq!(got["pooled"]["wave"], "pooled");
                    check_response_entry(name, &got["pooled"], w);
                }
                None => assert!(got.get("pooled").is_none(), "{name}"),
            }
            assert_eq!(
                got["differential_response"], want["differential_response"],
                "{name}"
            );
            assert_eq!(got["threshold"], 0.001);
            flagged += usize::from(want["differential_response"] == true);
            let md = to_markdown(&out);
            assert!(md.contains("## Survey response"));
            assert_eq!(
                md.contains("DIFFERENTIAL RESPONSE"),
                want["differential_response"] == true
            );
        }
        assert!(
            flagged >= 5 && fisher >= 5 && errors >= 3,
            "{flagged} {fisher} {errors}"
        );
    }

    #[test]
    fn survey_response_is_optional_and_validated() {
        let out = analyze(&parse_input(EXAMPLE).unwrap());
        assert!(out.survey_response.is_none());
        let v = serde_json::to_value(&out).unwrap();
        assert!(v.get("survey_response").is_none());
        let with = |sr: &str| {
            EXAMPLE.replacen(
                "\"alpha\": 0.05,",
                &format!("\"alpha\": 0.05, \"survey_response\": {sr},"),
                1,
            )
        };
        let ok = parse_input(&with(
            r#"[{"wave": "endline", "invited": [900, 450, 450], "responded": [400, 150, 205]}]"#,
        ))
        .unwrap();
        let out = analyze(&ok);
        let sr = out.survey_response.as_ref().unwrap();
        assert!(sr.pooled.is_none() && sr.differential_response);
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2], "responded": [1, 1, 1]}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("survey_response[0].invited"), "{e}");
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1]}, {"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1]}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("survey_response[1].wave"), "{e}");
        let e = parse_input(&with(
            r#"[{"wave": "w", "invited": [1, 2, 3], "responded": [1, 1, 1], "sent": 3}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("survey_response[0]") && e.contains("sent"),
            "{e}"
        );
        assert!(parse_input(&with("[]")).is_err());
        // analyze() without parse_input: a wave of the wrong length is an entry error, not a panic
        let mut bad = ok.clone();
        bad.survey_response = Some(vec![
            SurveyWaveInput {
                wave: "a".into(),
                invited: vec![10, 10],
                responded: vec![5, 5],
            },
            SurveyWaveInput {
                wave: "b".into(),
                invited: vec![10, 10, 10],
                responded: vec![5, 5, 5],
            },
        ]);
        let sr = analyze(&bad).survey_response.unwrap();
        assert!(
            matches!(&sr.waves[0], ResponseEntry::Error { error, .. } if error.contains("3 arms"))
        );
        assert!(matches!(sr.pooled, Some(ResponseEntry::Error { .. })));
        assert!(matches!(sr.waves[1], ResponseEntry::Ok { .. }));
    }

    #[test]
    fn srm_flags_mismatch() {
        let bad = EXAMPLE.replace("\"users\": [1000, 510, 490]", "\"users\": [1000, 600, 400]");
        let out = analyze(&parse_input(&bad).unwrap());
        assert_eq!(out.srm.mismatch, Some(true));
    }
}
