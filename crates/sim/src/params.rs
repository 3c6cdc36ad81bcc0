//! The parameter file: the same document a report writes for the
//! simulation team (`wp2-parameters.json`), so that what one trial measured
//! can seed the simulation of the next. Every rate is per member per day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::SimError;

/// The `format` every parameter file carries.
pub const FORMAT: &str = "commonlab-wp2-parameters/1";

/// Contribution events: what "activity" counts and what the Gini and the
/// participation shares are computed over.
pub const CONTRIBUTIONS: [&str; 4] = ["edit", "comment", "review", "task_completed"];

/// A whole simulation's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimParams {
    /// Always [`FORMAT`].
    pub format: String,
    pub communities: Vec<CommunityParams>,
    /// Per trial arm (the OFREP variant name): what the arm changes. An arm
    /// not listed changes nothing (a control).
    #[serde(default)]
    pub effects: BTreeMap<String, ArmEffect>,
    /// Share of a treated member's effect that reaches each untreated member
    /// of the same community, scaled by the share of its active members who
    /// are treated (0: none, 1: as much as treated members get).
    #[serde(default)]
    pub spillover: f64,
    #[serde(default)]
    pub survey: SurveyParams,
}

/// One community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityParams {
    /// The community attribute sent in OFREP contexts and events.
    pub name: String,
    /// Members at day 0.
    pub members: u32,
    /// Share of members who never contribute (lurkers). Default: by size,
    /// see [`default_inactive_share`].
    #[serde(default)]
    pub inactive_share: Option<f64>,
    /// How activity is spread over the members who contribute.
    #[serde(default)]
    pub activity: ActivityDist,
    /// Mean events per active member per day, by event type
    /// (`session_start`, `edit`, `comment`, `review`, `task_completed`,
    /// `thanks_sent`). A member's own rate is this times its activity.
    #[serde(default = "default_event_rates")]
    pub event_rates: BTreeMap<String, f64>,
    /// Sessions per lurker per day (lurkers read; they emit only
    /// `session_start`).
    #[serde(default = "default_lurker_sessions")]
    pub lurker_sessions: f64,
    /// New members per day (Poisson).
    #[serde(default = "default_join_rate")]
    pub join_rate: f64,
    /// Daily probability that a member leaves.
    #[serde(default = "default_leave_hazard")]
    pub leave_hazard: f64,
    /// Multiplies the leave hazard of a member who contributed and was
    /// thanked in the last [`THANKED_MEMORY_DAYS`] days (the social reward).
    #[serde(default = "default_thanked_retention")]
    pub thanked_retention: f64,
    /// Probability that a contribution is thanked by another member.
    #[serde(default = "default_thanks_probability")]
    pub thanks_probability: f64,
}

/// Days a thank-you keeps lowering a member's leave hazard.
pub const THANKED_MEMORY_DAYS: u32 = 14;

/// The distribution of activity multipliers (mean 1 by construction for
/// the lognormal; the power law is normalised to mean 1 when drawn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActivityDist {
    /// Lognormal with this σ and μ = −σ²/2 (mean 1).
    Lognormal { sigma: f64 },
    /// Truncated power law p(x) ∝ x^−alpha on [1, xmax], rescaled to mean 1.
    PowerLaw { alpha: f64, xmax: f64 },
}

impl Default for ActivityDist {
    /// σ = 1.2: the Gini of the contributors' activity alone is
    /// 2Φ(σ/√2) − 1 ≈ 0.60 (counts add Poisson noise on top).
    fn default() -> Self {
        ActivityDist::Lognormal { sigma: 1.2 }
    }
}

/// What one arm changes, relative to control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ArmEffect {
    /// Multiplies a treated member's rate of these event types; the key
    /// `"*"` applies to every contribution event without its own entry.
    #[serde(default)]
    pub rate_multipliers: BTreeMap<String, f64>,
    /// Multiplies a treated member's leave hazard (below 1: retained).
    #[serde(default = "one")]
    pub retention_multiplier: f64,
    /// Added to a treated member's latent survey trait, in SD units.
    #[serde(default)]
    pub survey_shift: f64,
}

/// Survey behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyParams {
    /// Probability of answering an invitation, by role.
    pub response_propensity: BTreeMap<String, f64>,
    /// Loading of every item on the latent trait (its SD is 1).
    pub loading: f64,
    /// SD of each item's own noise.
    pub item_noise: f64,
}

impl Default for SurveyParams {
    /// Loading 1 and noise 1: items correlate at 0.5, so a 4-item scale has
    /// a Cronbach's alpha near 0.8 before rounding to the Likert points.
    fn default() -> Self {
        let propensity = [
            ("core", 0.8),
            ("contributor", 0.5),
            ("peripheral", 0.3),
            ("lurker", 0.1),
        ];
        SurveyParams {
            response_propensity: propensity
                .into_iter()
                .map(|(role, p)| (role.to_string(), p))
                .collect(),
            loading: 1.0,
            item_noise: 1.0,
        }
    }
}

fn one() -> f64 {
    1.0
}
fn default_lurker_sessions() -> f64 {
    0.15
}
fn default_join_rate() -> f64 {
    0.2
}
fn default_leave_hazard() -> f64 {
    0.004
}
fn default_thanked_retention() -> f64 {
    0.5
}
fn default_thanks_probability() -> f64 {
    0.1
}

/// Events per active member per day.
pub fn default_event_rates() -> BTreeMap<String, f64> {
    [
        ("session_start", 0.6),
        ("edit", 0.5),
        ("comment", 0.3),
        ("review", 0.1),
        ("task_completed", 0.05),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The share of lurkers when none is given: about 90% in large
/// communities (the "90-9-1" pattern), fewer in small ones where most
/// members joined to take part: 0.9 − 0.55·e^(−n/250), so 0.45 at 50
/// members, 0.56 at 120, 0.73 at 300, 0.87 at 800.
pub fn default_inactive_share(members: u32) -> f64 {
    0.9 - 0.55 * (-(f64::from(members)) / 250.0).exp()
}

impl CommunityParams {
    /// A community of `members` with every default.
    pub fn new(name: impl Into<String>, members: u32) -> Self {
        CommunityParams {
            name: name.into(),
            members,
            inactive_share: None,
            activity: ActivityDist::default(),
            event_rates: default_event_rates(),
            lurker_sessions: default_lurker_sessions(),
            join_rate: default_join_rate(),
            leave_hazard: default_leave_hazard(),
            thanked_retention: default_thanked_retention(),
            thanks_probability: default_thanks_probability(),
        }
    }

    pub fn inactive_share(&self) -> f64 {
        self.inactive_share
            .unwrap_or_else(|| default_inactive_share(self.members))
    }
}

impl SimParams {
    /// Communities of the given sizes, named `community-1`, … with defaults.
    pub fn with_sizes(sizes: &[u32]) -> Self {
        SimParams {
            format: FORMAT.to_string(),
            communities: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| CommunityParams::new(format!("community-{}", i + 1), *n))
                .collect(),
            effects: BTreeMap::new(),
            spillover: 0.0,
            survey: SurveyParams::default(),
        }
    }

    /// Reads and checks a parameter file's text.
    pub fn from_json(text: &str) -> Result<Self, SimError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let params: SimParams = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            SimError::Parse {
                path,
                line: inner.line(),
                message: inner.to_string(),
            }
        })?;
        params.validate()?;
        Ok(params)
    }

    /// Every value in its range, with the offending field named.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |field: String, why: &str| {
            Err(SimError::Invalid {
                field,
                why: why.into(),
            })
        };
        if self.format != FORMAT {
            return bad("format".into(), "must be \"commonlab-wp2-parameters/1\"");
        }
        if self.communities.is_empty() {
            return bad("communities".into(), "needs at least one community");
        }
        if !(0.0..=1.0).contains(&self.spillover) {
            return bad("spillover".into(), "must be between 0 and 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.communities.iter().enumerate() {
            let at = |f: &str| format!("communities[{i}].{f}");
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                return bad(at("name"), "must be present and unique");
            }
            if c.members == 0 || c.members > 1_000_000 {
                return bad(at("members"), "must be between 1 and 1,000,000");
            }
            if let Some(s) = c.inactive_share {
                if !(0.0..1.0).contains(&s) {
                    return bad(at("inactive_share"), "must be in [0, 1)");
                }
            }
            match c.activity {
                ActivityDist::Lognormal { sigma } if !(sigma > 0.0 && sigma <= 5.0) => {
                    return bad(at("activity.sigma"), "must be in (0, 5]");
                }
                ActivityDist::PowerLaw { alpha, xmax }
                    if !(alpha > 1.0 && alpha < 5.0 && xmax > 1.0 && xmax <= 1e6) =>
                {
                    return bad(at("activity"), "needs 1 < alpha < 5 and 1 < xmax <= 1e6");
                }
                _ => {}
            }
            for (event, rate) in &c.event_rates {
                if !(rate.is_finite() && *rate >= 0.0 && *rate <= 1_000.0) {
                    return bad(at(&format!("event_rates.{event}")), "must be in [0, 1000]");
                }
            }
            let probabilities = [
                ("leave_hazard", c.leave_hazard),
                ("thanks_probability", c.thanks_probability),
            ];
            for (field, p) in probabilities {
                if !(0.0..=1.0).contains(&p) {
                    return bad(at(field), "must be a probability");
                }
            }
            let rates = [
                ("join_rate", c.join_rate),
                ("lurker_sessions", c.lurker_sessions),
                ("thanked_retention", c.thanked_retention),
            ];
            for (field, r) in rates {
                if !(r.is_finite() && (0.0..=1_000.0).contains(&r)) {
                    return bad(at(field), "must be in [0, 1000]");
                }
            }
        }
        for (arm, e) in &self.effects {
            let at = |f: &str| format!("effects.{arm}.{f}");
            for (event, m) in &e.rate_multipliers {
                if !(m.is_finite() && *m >= 0.0 && *m <= 100.0) {
                    return bad(
                        at(&format!("rate_multipliers.{event}")),
                        "must be in [0, 100]",
                    );
                }
            }
            if !(e.retention_multiplier.is_finite()
                && (0.0..=100.0).contains(&e.retention_multiplier))
            {
                return bad(at("retention_multiplier"), "must be in [0, 100]");
            }
            if !(e.survey_shift.is_finite() && e.survey_shift.abs() <= 10.0) {
                return bad(at("survey_shift"), "must be within ±10 SD");
            }
        }
        let s = &self.survey;
        for (role, p) in &s.response_propensity {
            if !(0.0..=1.0).contains(p) {
                return bad(
                    format!("survey.response_propensity.{role}"),
                    "must be a probability",
                );
            }
        }
        if !(s.loading.is_finite()
            && s.loading >= 0.0
            && s.item_noise.is_finite()
            && s.item_noise > 0.0)
        {
            return bad("survey".into(), "needs loading >= 0 and item_noise > 0");
        }
        Ok(())
    }
}
