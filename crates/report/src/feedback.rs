//! The platform team's feedback (`decision.json`, `decision.md`): the
//! feature, the decision the pre-registered rule gives, its evidence, the
//! guardrails' status and the flag change it implies. `commonlab
//! experiments conclude KEY --ship ARM` applies that change.

use crate::document::Report;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub trial: String,
    pub title: String,
    /// The WP3 feature the trial informs.
    pub feature: String,
    pub flag: String,
    /// `ship`, `iterate`, `roll_back` or `inconclusive`.
    pub decision: &'static str,
    pub arm: Option<String>,
    pub plan_says: Option<String>,
    pub evidence: Vec<String>,
    pub primary: Vec<PrimaryEvidence>,
    pub guardrails: Vec<Guardrail>,
    pub flag_change: FlagChange,
    pub spec_hash: String,
    pub as_of: chrono::DateTime<chrono::Utc>,
    /// The report's file next to this one.
    pub report: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrimaryEvidence {
    pub metric: String,
    pub arm: String,
    pub estimate: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub adjusted_p_value: Option<f64>,
    pub correction: &'static str,
    pub method: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Guardrail {
    pub metric: String,
    pub arm: String,
    pub estimate: f64,
    pub p_value: Option<f64>,
    /// `ok` (no significant change), `worse` (significantly, in the
    /// undesired direction) or `better`.
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagChange {
    /// `roll_out` (serve `variant` to everyone), `roll_back` (serve the
    /// control `variant` to everyone) or `none`.
    pub action: &'static str,
    pub flag: String,
    pub variant: Option<String>,
    /// The command that applies it.
    pub command: Option<String>,
    pub description: String,
}

/// The decision document of a report.
pub fn decision(r: &Report) -> Decision {
    let control = r
        .design
        .arms
        .iter()
        .find(|a| a.control)
        .map(|a| a.variant.clone());
    let flag = r.trial.flag.clone();
    let key = &r.trial.key;
    let flag_change = match (r.decision.outcome, &r.decision.arm) {
        ("ship", Some(arm)) => FlagChange {
            action: "roll_out",
            flag: flag.clone(),
            variant: Some(arm.clone()),
            command: Some(format!(
                "commonlab experiments conclude {key} --ship {arm} --reason \"...\""
            )),
            description: format!(
                "serve variant {arm} of flag {flag} to everyone (the trial's targeting is removed) and conclude the trial"
            ),
        },
        ("roll_back", _) => FlagChange {
            action: "roll_back",
            flag: flag.clone(),
            variant: control.clone(),
            command: control.as_ref().map(|c| {
                format!("commonlab experiments conclude {key} --ship {c} --reason \"...\"")
            }),
            description: format!(
                "serve the control variant {} of flag {flag} to everyone and conclude the trial",
                control.as_deref().unwrap_or("?")
            ),
        },
        (outcome, _) => FlagChange {
            action: "none",
            flag: flag.clone(),
            variant: None,
            command: None,
            description: format!(
                "no flag change: the result is {}; the flag keeps serving the trial's arms until the team decides (see what would settle it)",
                outcome.replace('_', " ")
            ),
        },
    };
    let primary = r
        .results
        .first()
        .map(|m| {
            m.effects
                .iter()
                .map(|e| PrimaryEvidence {
                    metric: m.name.clone(),
                    arm: e.arm.clone(),
                    estimate: e.absolute,
                    ci_low: e.ci_low,
                    ci_high: e.ci_high,
                    adjusted_p_value: e.adjusted_p_value,
                    correction: e.correction,
                    method: e.method.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let guardrails = r
        .comparisons
        .others
        .iter()
        .filter(|o| o.role == crate::analysis::Role::Guardrail)
        .map(|o| Guardrail {
            metric: o.metric.clone(),
            arm: o.arm.clone(),
            estimate: o.estimate,
            p_value: o.p_value,
            status: match (o.significant, o.favourable) {
                (false, _) => "ok",
                (true, false) => "worse",
                (true, true) => "better",
            },
        })
        .collect();
    let mut evidence = vec![r.summary.paragraph.replace("**", "")];
    evidence.extend(r.decision.reasons.iter().cloned());
    if let Some(s) = &r.summary.to_settle {
        evidence.push(format!("what would settle it: {s}"));
    }
    Decision {
        trial: key.clone(),
        title: r.trial.title.clone(),
        feature: r.trial.wp3_feature.clone(),
        flag,
        decision: r.decision.outcome,
        arm: r.decision.arm.clone(),
        plan_says: r.decision.plan_says.clone(),
        evidence,
        primary,
        guardrails,
        flag_change,
        spec_hash: r.footer.spec_hash.clone(),
        as_of: r.footer.as_of,
        report: "report.html",
    }
}
