//! Survey scales as metrics of a trial: each scale of each wave the trial
//! names (a campaign of the trial) becomes a secondary metric
//! `survey:WAVE:SCALE`, analysed as the design allows.
//!
//! The caller (the server's `trials::analysis`, which owns the survey
//! scoring) gives per-unit scale scores of completed responses with the
//! arm and community of the unit's first exposure, joined by pseudonym; the
//! respondent never sees or states an arm. Pure.
//!
//! - Members randomised (`hash`, `blocked`): each treatment arm against
//!   control, Welch's t-test on the respondents' scores (uncorrected, as a
//!   secondary metric; the response-rate check beside it says whether
//!   respondents are comparable across arms).
//! - Communities randomised (`cluster`, `stepped_wedge`): no per-member
//!   test (it would ignore that whole communities were randomised, and a
//!   wave's answers are too few communities for a community-level test of
//!   their own): per-arm respondents are counted and the metric says why
//!   there is no estimate.

use super::{Estimate, MetricAnalysis, Role, Source};
use chrono::{DateTime, Utc};
use commonlab_core::experiments::TrialSpec;
use commonlab_stats::effects::{estimate, t_test, Alternative, ArmStats, MetricKind, Scale};
use std::collections::BTreeMap;

/// One respondent's score on one scale.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleScore {
    /// The unit's pseudonym.
    pub unit: String,
    /// The arm of the unit's first exposure (`None`: never exposed).
    pub arm: Option<String>,
    pub scale: String,
    pub score: f64,
}

/// A wave's scale scores (one campaign of the trial).
#[derive(Debug, Clone, PartialEq)]
pub struct WaveScores {
    pub wave: String,
    pub campaign: String,
    /// The instrument's scales, in its order (a scale nobody scored is
    /// still listed, with n = 0).
    pub scales: Vec<String>,
    pub scores: Vec<ScaleScore>,
}

/// The metric name of a wave's scale.
pub fn metric_name(wave: &str, scale: &str) -> String {
    format!("survey:{wave}:{scale}")
}

/// Every scale of every wave as a metric (see the module docs).
pub fn analyse_scales(
    spec: &TrialSpec,
    waves: &[WaveScores],
    as_of: DateTime<Utc>,
) -> Vec<MetricAnalysis> {
    let control = spec.control().variant.clone();
    let arms: Vec<String> = spec.arms.iter().map(|a| a.variant.clone()).collect();
    let community = spec.is_community_design();
    let mut out = Vec::new();
    for w in waves {
        for scale in &w.scales {
            let mut by_arm: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for s in w.scores.iter().filter(|s| &s.scale == scale) {
                if let Some(arm) = s.arm.as_deref() {
                    if s.score.is_finite() {
                        by_arm.entry(arm).or_default().push(s.score);
                    }
                }
            }
            let mut m = MetricAnalysis {
                name: metric_name(&w.wave, scale),
                role: Role::Secondary,
                kind: "mean",
                direction: "increase",
                unit: "member",
                library_ref: None,
                source: Source::Database,
                as_of,
                n: arms
                    .iter()
                    .map(|a| {
                        (
                            a.clone(),
                            by_arm.get(a.as_str()).map_or(0, |v| v.len() as i64),
                        )
                    })
                    .collect(),
                estimates: Vec::new(),
                notice: None,
                detail: serde_json::json!({
                    "survey": {"wave": w.wave, "campaign": w.campaign, "scale": scale},
                    "means": arms.iter().map(|a| (a.clone(), by_arm.get(a.as_str()).map(|v| mean(v)))).collect::<BTreeMap<_, _>>(),
                }),
            };
            if community {
                m.notice = Some(format!(
                    "a survey scale of a community-randomised trial: respondents are counted per arm, but no per-member test is run (it would ignore that whole communities were randomised) and wave '{}' alone holds too few communities for a community-level one; see the per-arm means in detail",
                    w.wave
                ));
                out.push(m);
                continue;
            }
            let mut notices = Vec::new();
            for arm in arms.iter().filter(|a| **a != control) {
                match welch(by_arm.get(control.as_str()), by_arm.get(arm.as_str()), spec.analysis.alpha) {
                    Ok(e) => m.estimates.push(Estimate {
                        arm: arm.clone(),
                        control: control.clone(),
                        estimate: e.effect,
                        se: Some(e.se),
                        ci95: Some((e.ci_lower, e.ci_upper)),
                        p_value: Some(e.p_value),
                        min_attainable_p: None,
                        method: "welch".into(),
                        model: None,
                        why: "members were randomised individually: Welch's t-test on the respondents' scale scores, a secondary survey metric reported uncorrected; compare the response rates per arm before reading it".into(),
                        beside: Vec::new(),
                    }),
                    Err(e) => notices.push(format!("{arm} against {control}: {e}")),
                }
            }
            if !notices.is_empty() {
                m.notice = Some(format!("no estimate for {}", notices.join("; ")));
            }
            out.push(m);
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn welch(
    control: Option<&Vec<f64>>,
    treatment: Option<&Vec<f64>>,
    alpha: f64,
) -> Result<commonlab_stats::effects::TestResult, String> {
    let stats = |v: Option<&Vec<f64>>| {
        let v = v.map(Vec::as_slice).unwrap_or(&[]);
        ArmStats::new(
            v.len() as f64,
            v.iter().sum(),
            v.iter().map(|x| x * x).sum(),
        )
    };
    let (a, b) = (stats(control), stats(treatment));
    if a.n < 2.0 || b.n < 2.0 {
        return Err("fewer than 2 respondents in an arm".into());
    }
    let e = estimate(MetricKind::Mean, &a, &b, Scale::Absolute).map_err(|e| e.to_string())?;
    t_test(&e, alpha, Alternative::TwoSided).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_the_textbook_formula() {
        let c = vec![1.0, 2.0, 4.0, 3.5];
        let t = vec![3.0, 5.0, 4.5, 6.0, 5.5];
        let r = welch(Some(&c), Some(&t), 0.05).unwrap();
        let var = |v: &[f64]| {
            let m = mean(v);
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)
        };
        let se = (var(&c) / 4.0 + var(&t) / 5.0).sqrt();
        assert!((r.effect - (mean(&t) - mean(&c))).abs() < 1e-12);
        assert!((r.se - se).abs() < 1e-12, "{} {se}", r.se);
        assert!(welch(Some(&c), Some(&vec![1.0]), 0.05).is_err());
    }
}
