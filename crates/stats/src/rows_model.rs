//! Which model the few-community analysis ([`crate::rows::analyze_rows`])
//! fits, and which of its results leads.
//!
//! **Model.** Communities differ in their level far more than a treatment
//! moves them, so the treatment is compared *within* communities wherever the
//! data allow: community and period fixed effects,
//! `value ~ 1 + period FE + cluster FE [+ covariate] + treated`, whenever some
//! community is observed both untreated and treated (every stepped wedge; a
//! cluster or blocked design with baseline periods before the treated
//! communities start). Where every community stays in one arm for the whole
//! trial (a pure parallel cluster design), community fixed effects would
//! absorb the treatment: the comparison can only be between communities, so
//! the model is `value ~ 1 [+ period FE] [+ stratum FE] [+ covariate] +
//! treated` and all inference is at the community level (randomisation over
//! the community assignments; CR2 with clusters = communities). The model
//! without community effects is fitted on a within-community design only on
//! request ([`CommunityEffects::None`]); its estimate mixes between-community
//! differences into the effect. Every output says which model ran and why
//! (`model`, `model_reason`).
//!
//! **Lead.** [`lead`] names the result to report first; see
//! `docs/analyze-few.md` for the calibration behind it.

use serde::{Deserialize, Serialize};

use crate::randomization::RandomisationResult;
use crate::rows::{DesignKind, Outcome};
use crate::stepped_wedge::Panel;
use crate::{Result, StatsError};

/// Community fixed effects in the model (`design.community_effects`). Absent
/// (the default): fixed effects wherever some community is observed both
/// untreated and treated, the between-community model otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommunityEffects {
    /// Require community fixed effects (invalid input when every community
    /// stays in one arm: they would absorb the treatment).
    Fixed,
    /// The model without community effects, `value ~ 1 + period FE +
    /// treated`, on request: its estimate mixes between-community differences
    /// into the effect.
    None,
}

/// The model chosen for a design: community fixed effects or not, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelChoice {
    pub cluster_fe: bool,
    pub reason: String,
}

/// First treated period of every community (`T` when never treated), for
/// designs that randomise whole communities. Errors name the community.
pub(crate) fn community_starts(
    panel: &Panel,
    names: &[String],
    kind: DesignKind,
) -> Result<Vec<usize>> {
    let t = panel.n_periods;
    let mut state = vec![None::<bool>; panel.n_clusters * t];
    for i in 0..panel.y.len() {
        let (c, p) = (panel.cluster[i], panel.period[i]);
        match state[c * t + p] {
            None => state[c * t + p] = Some(panel.treated[i]),
            Some(s) if s != panel.treated[i] => {
                let hint = match kind {
                    DesignKind::SteppedWedge => "a stepped wedge switches whole communities at once",
                    _ => "a community-level design randomises whole communities (users randomised within communities: kind `blocked_users`)",
                };
                return Err(StatsError::InvalidInput(format!(
                    "cluster {} has both treated and control rows in one period; {hint}",
                    names[c]
                )));
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(panel.n_clusters);
    for c in 0..panel.n_clusters {
        let mut start = t;
        for p in 0..t {
            match state[c * t + p] {
                Some(true) if start == t => start = p,
                Some(false) if start < t => {
                    return Err(StatsError::InvalidInput(format!(
                        "cluster {} returns to control after being treated; treatment must stay on once it starts",
                        names[c]
                    )))
                }
                _ => {}
            }
        }
        out.push(start);
    }
    Ok(out)
}

/// Chooses the model from the crossover periods (`starts[c] = T` when `c` is
/// never treated) and the request.
pub(crate) fn choose_model(
    kind: DesignKind,
    requested: Option<CommunityEffects>,
    starts: &[usize],
    n_periods: usize,
) -> Result<ModelChoice> {
    let within = starts.iter().any(|&s| s > 0 && s < n_periods);
    let absorbs = "every community is in one arm for the whole trial, so community fixed effects would absorb the treatment";
    match (requested, within) {
        (Some(CommunityEffects::None), _) => Ok(ModelChoice {
            cluster_fe: false,
            reason: "community effects left out on request (community_effects = none): the estimate compares \
                     communities with each other, so between-community differences enter the effect"
                .into(),
        }),
        (_, true) => Ok(ModelChoice {
            cluster_fe: true,
            reason: format!(
                "community and period fixed effects{}: each community is compared with itself untreated and \
                 treated, period effects absorb common time trends{}",
                if requested.is_some() { " (requested)" } else { " (default)" },
                if kind == DesignKind::Blocked {
                    "; community effects contain the stratum effects"
                } else {
                    ""
                }
            ),
        }),
        (Some(CommunityEffects::Fixed), false) => Err(StatsError::InvalidInput(format!(
            "community fixed effects requested, but {absorbs}; leave community_effects out for the between-community analysis"
        ))),
        (None, false) => Ok(ModelChoice {
            cluster_fe: false,
            reason: format!(
                "between-community comparison: {absorbs}. Inference is at the community level \
                 (randomisation over community assignments, CR2 with communities as clusters){}",
                if n_periods > 1 {
                    "; period effects absorb common time trends"
                } else {
                    ""
                }
            ),
        }),
    }
}

/// Below this many clusters the design counts as "few clusters": CR1 carries
/// an over-rejection note and, without community fixed effects, CR2 with
/// Imbens–Kolesár df leads (Angrist & Pischke's 42; our calibration used 4–6
/// communities).
pub const FEW_CLUSTERS: usize = 42;

/// Why a CR2 variant leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadReason {
    /// Community fixed effects: residuals sum to zero within every
    /// community, so the residual intra-cluster correlation is not
    /// identifiable (estimated ≤ 0, truncated to 0) and the Imbens–Kolesár
    /// df equal the Bell–McCaffrey df. `cr2` leads.
    CommunityFixedEffects,
    /// No community effects and fewer than [`FEW_CLUSTERS`] clusters: the
    /// Bell–McCaffrey df under the identity working model over-rejected in
    /// our stepped-wedge calibration of that model, the Imbens–Kolesár df
    /// (same CR2 variance) held the nominal level.
    FewClustersCalibration,
    /// No community effects and [`FEW_CLUSTERS`] or more clusters: the two
    /// df are close; the Bell–McCaffrey df (clubSandwich's default) leads.
    ManyClusters,
}

/// Which CR2 result the engine presents as its lead model-based result.
/// Both stay in the output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cr2Lead {
    /// `"CR2-IK"` or `"CR2"` (the `method` of the leading [`crate::cluster::ClusterTest`]).
    pub method: String,
    /// Output field holding the leading result: `"cr2_ik"` or `"cr2"`.
    pub field: String,
    /// Machine-readable reason.
    pub reason: LeadReason,
    /// The reason in words, with the calibration figures.
    pub detail: String,
}

/// The lead CR2 variant for a design with `clusters` clusters, with or
/// without community fixed effects.
pub fn cr2_lead(clusters: usize, community_fe: bool) -> Cr2Lead {
    if community_fe {
        Cr2Lead {
            method: "CR2".into(),
            field: "cr2".into(),
            reason: LeadReason::CommunityFixedEffects,
            detail: "community fixed effects: residuals sum to zero within every community, so the residual \
                     intra-cluster correlation is not identifiable and the Imbens–Kolesár df equal the \
                     Bell–McCaffrey df; CR2 (Bell–McCaffrey df) leads"
                .into(),
        }
    } else if clusters < FEW_CLUSTERS {
        Cr2Lead {
            method: "CR2-IK".into(),
            field: "cr2_ik".into(),
            reason: LeadReason::FewClustersCalibration,
            detail: format!(
                "{clusters} clusters (< {FEW_CLUSTERS}), no community effects: CR2 with Imbens–Kolesár df \
                 leads. Under the null, CR2 with Bell–McCaffrey df (identity working model, clubSandwich's \
                 default) rejected 5.3–5.8% at nominal 5% in 10,000 simulated 4–6-community stepped wedges \
                 analysed without community effects; with the Imbens–Kolesár df (Bell–McCaffrey under a \
                 working model with the residual intra-cluster correlation) 3.9–4.7%. Same standard error, \
                 fewer df."
            ),
        }
    } else {
        Cr2Lead {
            method: "CR2".into(),
            field: "cr2".into(),
            reason: LeadReason::ManyClusters,
            detail: format!(
                "{clusters} clusters (≥ {FEW_CLUSTERS}): CR2 with Bell–McCaffrey df leads; the \
                 Imbens–Kolesár df differs little with this many clusters."
            ),
        }
    }
}

/// Why a result is the lead result of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadMethodReason {
    /// Every assignment the design allowed was enumerated: the randomisation
    /// p-value is exact under the sharp null whatever the outcome's
    /// distribution or the number of communities.
    ExactEnumeration,
    /// Too many assignments to enumerate: sampled randomisation inference.
    SampledRandomisation,
    /// Randomisation inference gave no result: the lead CR2 result instead.
    RandomisationUnavailable,
}

/// The result to report first (`lead` in the output).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lead {
    /// `"randomisation"`, `"permutation"`, `"CR2"` or `"CR2-IK"`.
    pub method: String,
    /// Output field holding it (`"randomisation"`, `"cr2"`, `"cr2_ik"`).
    pub field: String,
    /// Machine-readable reason.
    pub reason: LeadMethodReason,
    /// Smallest p-value the lead method can produce on this design (the
    /// randomisation `min_attainable_p`), when it is randomisation inference.
    pub min_attainable_p: Option<f64>,
    /// The reason in words, with the calibration figures.
    pub detail: String,
}

/// The lead result: randomisation inference whenever it ran (exact when every
/// assignment was enumerated), otherwise the lead CR2 variant.
pub fn lead(
    randomisation: &Outcome<RandomisationResult>,
    cr2: Option<&Cr2Lead>,
    kind: DesignKind,
) -> Lead {
    let name = if kind == DesignKind::BlockedUsers {
        "permutation"
    } else {
        "randomisation"
    };
    match (&randomisation.result, cr2) {
        (Some(r), _) if r.exact => Lead {
            method: name.into(),
            field: "randomisation".into(),
            reason: LeadMethodReason::ExactEnumeration,
            min_attainable_p: Some(r.min_attainable_p),
            detail: format!(
                "all {} assignments the design allowed were enumerated: the {name} p-value is exact under \
                 the null of no effect, whatever the outcome's distribution; the smallest p-value this \
                 design can give is {:.4}",
                r.total_assignments, r.min_attainable_p
            ),
        },
        (Some(r), _) => Lead {
            method: name.into(),
            field: "randomisation".into(),
            reason: LeadMethodReason::SampledRandomisation,
            min_attainable_p: Some(r.min_attainable_p),
            detail: format!(
                "{} of {} allowed assignments sampled (p = (1 + #)/(1 + B) is valid for any number of \
                 draws); the smallest p-value these draws can give is {:.4}",
                r.evaluated, r.total_assignments, r.min_attainable_p
            ),
        },
        (None, Some(c)) => Lead {
            method: c.method.clone(),
            field: c.field.clone(),
            reason: LeadMethodReason::RandomisationUnavailable,
            min_attainable_p: None,
            detail: format!("randomisation inference gave no result; {}", c.detail),
        },
        (None, None) => Lead {
            method: name.into(),
            field: "randomisation".into(),
            reason: LeadMethodReason::RandomisationUnavailable,
            min_attainable_p: None,
            detail: format!("the {name} test gave no result (see its error); no model-based fallback applies"),
        },
    }
}

/// Reads an `analyze_rows` input written before `community_effects` existed
/// (the stored reference data): `design.cluster_fixed_effects: true` is
/// `community_effects: "fixed"`, `false` is `"none"` (the references were
/// fitted without community effects).
#[cfg(test)]
pub(crate) fn legacy_input(v: &serde_json::Value) -> crate::rows::RowsInput {
    let mut v = v.clone();
    let design = v["design"].as_object_mut().unwrap();
    if let Some(fe) = design.remove("cluster_fixed_effects") {
        let model = if fe.as_bool().unwrap() {
            "fixed"
        } else {
            "none"
        };
        design.insert("community_effects".into(), model.into());
    }
    serde_json::from_value(v).unwrap()
}

#[cfg(test)]
#[path = "rows_model_tests.rs"]
mod tests;
