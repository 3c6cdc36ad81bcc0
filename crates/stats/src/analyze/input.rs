//! The input document: its types, [`parse_input`] and [`validate`].

use crate::bayes::Prior;
use crate::effects::{ArmStats, MetricKind};
use crate::{Result, StatsError};
use serde::{Deserialize, Serialize};

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
