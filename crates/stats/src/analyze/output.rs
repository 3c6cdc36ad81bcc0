//! The output document's types (see `docs/analyze.md`), and how a method's
//! result or error becomes an [`Entry`].

use super::Cfg;
use crate::bayes::{self, BayesResult, Prior};
use crate::effects::{self, Estimate, MetricKind, Scale};
use crate::response::ResponseCheck;
use crate::{sequential, Result, StatsError};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

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

    pub(super) fn from_estimate(est: Result<Estimate>, scale: Scale, cfg: &Cfg) -> Self {
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
    pub(super) fn new(wave: &str, r: Result<ResponseCheck>) -> Self {
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
