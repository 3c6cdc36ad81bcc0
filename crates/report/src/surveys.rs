//! The report's "Surveys" section (pure): per wave the response by arm with
//! the differential-response test, each scale's score by arm with its
//! estimate, interval and reliability, and each Likert item's answers by
//! arm (the stacked-bar chart).
//!
//! Built from the trial's analysis (the scales are its secondary metrics
//! `survey:WAVE:SCALE`, the response its `survey_response`) and a
//! [`SurveyInput`] the caller that reads the surveys fills (reliability and
//! item answers are not in the analysis; the server's
//! `trials::analysis::survey_input`). Every breakdown by arm with fewer
//! than `min_cell` respondents is withheld, as the survey results do: its
//! n, mean, shares and any estimate involving it are `null`, and the arm
//! is listed in `suppressed`.

use crate::analysis::{MetricAnalysis, TrialAnalysis};
use crate::document::Effect;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the caller that reads the surveys gives the report (see the
/// module docs).
#[derive(Debug, Clone, Default)]
pub struct SurveyInput {
    /// Breakdowns with fewer respondents than this are withheld.
    pub min_cell: usize,
    pub waves: Vec<WaveInput>,
}

/// One wave (campaign) of the trial.
#[derive(Debug, Clone, Default)]
pub struct WaveInput {
    pub wave: String,
    pub campaign: String,
    /// Per scale, in the instrument's order.
    pub reliability: Vec<ScaleReliability>,
    /// The instrument's Likert items, in its order.
    pub likert: Vec<LikertInput>,
}

/// One Likert item's completed answers.
#[derive(Debug, Clone, Default)]
pub struct LikertInput {
    pub item: String,
    /// The point labels (the instrument's default language), 1..=points.
    pub labels: Vec<String>,
    /// (arm of the respondent's first exposure, answer 1..=points).
    pub answers: Vec<(String, u8)>,
}

/// A scale's internal consistency, as the survey results compute it
/// (Cronbach's alpha with its 95% Feldt interval, McDonald's omega).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaleReliability {
    pub scale: String,
    /// Respondents with every item of the scale answered.
    pub n: Option<u64>,
    pub alpha: Option<f64>,
    pub alpha_ci_low: Option<f64>,
    pub alpha_ci_high: Option<f64>,
    pub omega: Option<f64>,
    /// Why a figure is missing, or the alpha warning.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurveySection {
    pub min_cell: usize,
    pub waves: Vec<SurveyWave>,
    /// The differential-response test on the counts pooled over waves.
    pub pooled_differential: Option<DifferentialTest>,
    /// Why there is no differential-response test.
    pub differential_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurveyWave {
    pub wave: String,
    pub campaign: String,
    pub response: Vec<ResponseCell>,
    pub differential: Option<DifferentialTest>,
    pub scales: Vec<SurveyScale>,
    pub likert: Vec<LikertItem>,
}

/// Invited and completed units of one arm (`null` when withheld).
#[derive(Debug, Clone, Serialize)]
pub struct ResponseCell {
    pub arm: String,
    pub invited: Option<u64>,
    pub completed: Option<u64>,
    pub rate: Option<f64>,
    pub suppressed: bool,
}

/// Whether the arms completed at different rates.
#[derive(Debug, Clone, Serialize)]
pub struct DifferentialTest {
    pub test: String,
    pub chi2: Option<f64>,
    pub df: Option<f64>,
    pub p_value: Option<f64>,
    pub fisher_p: Option<f64>,
    pub flagged: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurveyScale {
    pub scale: String,
    /// The analysis's metric, `survey:WAVE:SCALE`.
    pub metric: String,
    /// Respondents per arm (`null`: withheld).
    pub n: BTreeMap<String, Option<i64>>,
    /// Mean score per arm (`null`: withheld or nobody).
    pub means: BTreeMap<String, Option<f64>>,
    /// Arms withheld as small cells.
    pub suppressed: Vec<String>,
    /// Each treatment arm against control (uncorrected).
    pub effects: Vec<Effect>,
    pub notice: Option<String>,
    pub reliability: Option<ScaleReliability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LikertItem {
    pub item: String,
    pub labels: Vec<String>,
    pub by_arm: Vec<LikertArm>,
}

/// One arm's answers to one item: counts and shares per point (`null`
/// when the arm has fewer than `min_cell` answers).
#[derive(Debug, Clone, Serialize)]
pub struct LikertArm {
    pub arm: String,
    pub n: Option<u64>,
    pub counts: Option<Vec<u64>>,
    pub shares: Option<Vec<f64>>,
    pub suppressed: bool,
}

/// Whether `m` is a survey scale's metric.
pub fn is_survey_metric(m: &MetricAnalysis) -> bool {
    m.name.starts_with("survey:") && m.detail.get("survey").is_some()
}

fn differential(v: &Value) -> Option<DifferentialTest> {
    v.get("p_value")?;
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Some(DifferentialTest {
        test: s("test"),
        chi2: v["chi2"].as_f64(),
        df: v["df"].as_f64(),
        p_value: v["p_value"].as_f64(),
        fisher_p: v["fisher_p"].as_f64(),
        flagged: v["flagged"].as_bool().unwrap_or(false),
        message: s("message"),
    })
}

fn response_cells(v: &Value) -> Vec<ResponseCell> {
    v["arms"]
        .as_array()
        .map(|arms| {
            arms.iter()
                .map(|a| ResponseCell {
                    arm: a["arm"].as_str().unwrap_or_default().to_string(),
                    invited: a["invited"].as_u64(),
                    completed: a["completed"].as_u64(),
                    rate: a["rate"].as_f64(),
                    suppressed: a["suppressed"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scale(m: &MetricAnalysis, min_cell: usize, control: &str) -> SurveyScale {
    let k = min_cell as i64;
    let suppressed: Vec<String> =
        m.n.iter()
            .filter(|(_, &n)| n > 0 && n < k)
            .map(|(a, _)| a.clone())
            .collect();
    let withheld = |arm: &str| suppressed.iter().any(|s| s == arm);
    let means: BTreeMap<String, Option<f64>> =
        m.n.keys()
            .map(|a| {
                let v = (!withheld(a))
                    .then(|| m.detail["means"][a].as_f64())
                    .flatten();
                (a.clone(), v)
            })
            .collect();
    let control_mean = means.get(control).copied().flatten().filter(|v| *v != 0.0);
    let mut notices: Vec<String> = m.notice.iter().cloned().collect();
    let effects = m
        .estimates
        .iter()
        .filter(|e| {
            let keep = !withheld(&e.arm) && !withheld(&e.control);
            if !keep {
                notices.push(format!(
                    "{} against {}: withheld (an arm has fewer than {min_cell} respondents)",
                    e.arm, e.control
                ));
            }
            keep
        })
        .map(|e| Effect::uncorrected(e, control_mean))
        .collect();
    SurveyScale {
        scale: m.detail["survey"]["scale"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        metric: m.name.clone(),
        n: m.n
            .iter()
            .map(|(a, &n)| (a.clone(), (!withheld(a)).then_some(n)))
            .collect(),
        means,
        suppressed,
        effects,
        notice: (!notices.is_empty()).then(|| notices.join("; ")),
        reliability: None,
    }
}

/// Counts and shares per point of one item, per arm in `arms` order.
pub fn likert(input: &LikertInput, arms: &[String], min_cell: usize) -> LikertItem {
    let points = input.labels.len();
    let by_arm = arms
        .iter()
        .map(|arm| {
            let mut counts = vec![0u64; points];
            for (a, v) in &input.answers {
                if a == arm && *v >= 1 && usize::from(*v) <= points {
                    counts[usize::from(*v) - 1] += 1;
                }
            }
            let n: u64 = counts.iter().sum();
            let suppressed = n > 0 && n < min_cell as u64;
            let shown = n > 0 && !suppressed;
            LikertArm {
                arm: arm.clone(),
                n: (!suppressed).then_some(n),
                shares: shown.then(|| counts.iter().map(|&c| c as f64 / n as f64).collect()),
                counts: shown.then_some(counts),
                suppressed,
            }
        })
        .collect();
    LikertItem {
        item: input.item.clone(),
        labels: input.labels.clone(),
        by_arm,
    }
}

/// The section, or `None` when the trial has no survey wave.
pub fn section(a: &TrialAnalysis, input: &SurveyInput, arms: &[String]) -> Option<SurveySection> {
    let response = a.survey_response.as_ref();
    let scales: Vec<&MetricAnalysis> = a.metrics.iter().filter(|m| is_survey_metric(m)).collect();
    if response.is_none() && scales.is_empty() && input.waves.is_empty() {
        return None;
    }
    let min_cell = response
        .and_then(|r| r["min_cell"].as_u64())
        .map_or(input.min_cell, |k| k as usize)
        .max(1);
    let control = arms.first().cloned().unwrap_or_default();
    let control = a
        .metrics
        .iter()
        .flat_map(|m| m.estimates.iter().map(|e| e.control.clone()))
        .next()
        .unwrap_or(control);
    // Waves in opening order: the response's, then any only the metrics
    // or the input name.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut push = |wave: &str, campaign: &str| {
        if !order.iter().any(|(w, _)| w == wave) {
            order.push((wave.to_string(), campaign.to_string()));
        }
    };
    if let Some(ws) = response.and_then(|r| r["waves"].as_array()) {
        for w in ws {
            push(
                w["wave"].as_str().unwrap_or_default(),
                w["campaign"].as_str().unwrap_or_default(),
            );
        }
    }
    for m in &scales {
        push(
            m.detail["survey"]["wave"].as_str().unwrap_or_default(),
            m.detail["survey"]["campaign"].as_str().unwrap_or_default(),
        );
    }
    for w in &input.waves {
        push(&w.wave, &w.campaign);
    }
    let by_wave = response.map(|r| &r["differential"]["waves"]);
    let waves = order
        .iter()
        .enumerate()
        .map(|(i, (wave, campaign))| {
            let resp = response
                .and_then(|r| r["waves"].as_array())
                .and_then(|ws| ws.iter().find(|w| w["wave"] == wave.as_str()));
            let extra = input.waves.iter().find(|w| &w.wave == wave);
            let scales = scales
                .iter()
                .filter(|m| m.detail["survey"]["wave"] == wave.as_str())
                .map(|m| {
                    let mut s = scale(m, min_cell, &control);
                    s.reliability = extra
                        .and_then(|x| x.reliability.iter().find(|r| r.scale == s.scale).cloned());
                    s
                })
                .collect();
            SurveyWave {
                wave: wave.clone(),
                campaign: campaign.clone(),
                response: resp.map(response_cells).unwrap_or_default(),
                differential: by_wave.and_then(|d| differential(&d[i])),
                scales,
                likert: extra
                    .map(|x| x.likert.iter().map(|l| likert(l, arms, min_cell)).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Some(SurveySection {
        min_cell,
        waves,
        pooled_differential: response.and_then(|r| differential(&r["differential"]["pooled"])),
        differential_note: response
            .and_then(|r| r["differential"]["error"].as_str())
            .map(str::to_string),
    })
}
