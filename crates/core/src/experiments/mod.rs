//! Experiments as code: a trial described in one TOML file, validated,
//! locked (canonical hash of its analysis plan), checked for overlap with
//! other trials, and randomised by pure, documented functions that another
//! language can reproduce. See `docs/experiments.md` for the file format,
//! the exact hash definitions and the lifecycle.
//!
//! Everything here is pure: seeds and times are passed in by the caller
//! (a [`Randomisation`] is drawn once when a trial starts and recorded).
//!
//! - [`parse_trial`] parses and validates a trial file, collecting every
//!   problem as a [`SpecError`] (`file:line:column: field: message`).
//! - [`TrialSpec::check_against_flags`] checks the flag and its variants.
//! - [`TrialSpec::canonical_json`], [`TrialSpec::canonical_hash`] and
//!   [`TrialSpec::locked_changes`] lock the analysis plan.
//! - [`TrialSpec::conflicts_with`] detects overlapping trials.
//! - [`TrialSpec::completion`] says when a started trial's data are
//!   complete (concluding earlier is a recorded deviation).
//! - [`hash_arm`], [`layer_position`], [`blocked_arm`],
//!   [`cluster_allocation`], [`stepped_wedge_schedule`], [`arm_at`] and
//!   [`switchback_schedule`] assign units to arms.

mod assign;
mod canonical;
mod completion;
mod metric;
mod parse;
mod periods;
mod switchback;

#[cfg(test)]
mod tests;

pub use crate::time::{format_rfc3339, parse_rfc3339};
pub use crate::toml_reader::SpecError;
pub use assign::{
    arm_at, blocked_arm, blocked_block, cluster_allocation, hash_arm, hash_point, layer_position,
    prf_u64, ramp_position, scale, stepped_wedge_schedule, Randomisation, LAYER_SPACE,
};
pub use canonical::LOCKED_FIELDS;
pub use completion::Completion;
pub use metric::{
    format_duration, parse_duration, Cap, Direction, FilterOp, Metric, MetricKind, MetricLibrary,
    MetricUnit, MetricValue, PropertyFilter, Scalar, Window, DEFAULT_WINDOW, MAX_WINDOW_SECS,
    PERCENTILE_SCALE,
};
pub use parse::{inline_metric_refs, parse_metric_library, parse_trial, parse_trial_with};
pub use periods::{Period, PeriodWindow};
pub use switchback::{switchback_schedule, SwitchbackSchedule};

use crate::flags::{EvalContext, Rule};
use serde_json::Value;
use std::collections::BTreeMap;

/// A validated trial.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    /// Stable identifier (`[a-z0-9][a-z0-9._-]*`, at most 64 characters).
    pub key: String,
    pub title: String,
    pub hypothesis: String,
    pub owner: String,
    /// Free text; empty when absent.
    pub notes: String,
    pub links: Links,
    /// The flag whose variants are the arms.
    pub flag: String,
    /// In file order; exactly one has `control` set.
    pub arms: Vec<Arm>,
    pub unit: Unit,
    pub design: Design,
    pub eligibility: Option<Rule>,
    pub exposure: Exposure,
    pub metrics: Metrics,
    pub surveys: Vec<Survey>,
    pub analysis: Analysis,
    pub schedule: Schedule,
    pub layer: Option<Layer>,
    /// The file name given to [`parse_trial`].
    pub file: String,
    /// Positions of fields that later checks report on (dotted path ->
    /// line, column).
    positions: BTreeMap<String, (usize, usize)>,
}

/// What the trial informs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The WP2 model parameter.
    pub wp2_parameter: String,
    /// The WP3 feature.
    pub wp3_feature: String,
}

/// An arm: a variant of the trial's flag and its integer allocation weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub variant: String,
    pub weight: u32,
    pub control: bool,
}

/// The unit of randomisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A user: the OFREP `targetingKey`.
    User,
    /// A community: the value of a context attribute (a dotted path, as in
    /// `var`).
    Community { attribute: String },
}

impl Unit {
    pub fn kind(&self) -> &'static str {
        match self {
            Unit::User => "user",
            Unit::Community { .. } => "community",
        }
    }

    /// The unit identifier in an evaluation context: the targeting key, or
    /// the attribute's value (a string, or a number written as JSON writes
    /// it). `None` when absent.
    pub fn unit_id(&self, ctx: &EvalContext<'_>) -> Option<String> {
        match self {
            Unit::User => ctx.targeting_key().map(str::to_string),
            Unit::Community { attribute } => match lookup(ctx.context(), attribute)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            },
        }
    }
}

/// Looks up a dotted path in a JSON object.
fn lookup<'v>(mut v: &'v Value, path: &str) -> Option<&'v Value> {
    for seg in path.split('.') {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// How units are randomised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Design {
    /// Stateless salted hashing ([`hash_arm`]).
    Hash { salt: String },
    /// Random permuted blocks within strata ([`blocked_arm`]); the server
    /// persists each unit's arm on first exposure. `strata` are context
    /// attributes (dotted paths); `block_size` is a multiple of
    /// [`TrialSpec::minimal_block`].
    Blocked {
        strata: Vec<String>,
        block_size: u64,
    },
    /// Whole communities randomised once at start ([`cluster_allocation`]).
    Cluster { communities: Vec<String> },
    /// Every community starts in control and crosses to treatment at a
    /// randomised step ([`stepped_wedge_schedule`]). `steps` are the
    /// crossover times (Unix seconds, strictly increasing).
    SteppedWedge {
        communities: Vec<String>,
        steps: Vec<i64>,
    },
    /// Switchback (crossover): every community is switched on or off in
    /// each period, drawn at start by `scheme` ([`switchback_schedule`]).
    /// `boundaries` are the periods' edges (Unix seconds, strictly
    /// increasing, at least 3: period `k` is `[boundaries[k],
    /// boundaries[k+1])`); events in the first `washout` seconds of each
    /// period are left out of the analysis (exposures are still served).
    Switchback {
        communities: Vec<String>,
        boundaries: Vec<i64>,
        scheme: SwitchbackScheme,
        washout: i64,
    },
}

/// How a switchback draws which communities are on in which period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SwitchbackScheme {
    /// Each community-period on with `probability`, independently.
    Independent { probability: f64 },
    /// Exactly half of the communities on in each period (an even number
    /// of communities).
    Balanced,
    /// Periods taken in consecutive pairs (0-1, 2-3, …): each community is
    /// on in exactly one period of each pair, chosen at random, so on in
    /// exactly half of the periods (an even number of periods).
    BlockedPairs,
}

// The probability is validated finite (in (0, 1)).
impl Eq for SwitchbackScheme {}

impl SwitchbackScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchbackScheme::Independent { .. } => "independent",
            SwitchbackScheme::Balanced => "balanced",
            SwitchbackScheme::BlockedPairs => "blocked_pairs",
        }
    }
}

impl Design {
    pub fn kind(&self) -> &'static str {
        match self {
            Design::Hash { .. } => "hash",
            Design::Blocked { .. } => "blocked",
            Design::Cluster { .. } => "cluster",
            Design::SteppedWedge { .. } => "stepped_wedge",
            Design::Switchback { .. } => "switchback",
        }
    }

    /// The communities a cluster, stepped-wedge or switchback design lists.
    pub fn communities(&self) -> Option<&[String]> {
        match self {
            Design::Cluster { communities }
            | Design::SteppedWedge { communities, .. }
            | Design::Switchback { communities, .. } => Some(communities),
            _ => None,
        }
    }

    /// The washout at the start of each period (seconds; 0 but for a
    /// switchback that sets one).
    pub fn washout(&self) -> i64 {
        match self {
            Design::Switchback { washout, .. } => *washout,
            _ => 0,
        }
    }
}

/// What counts as an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exposure {
    /// Whether bulk OFREP evaluations count (default false).
    pub bulk: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub primary: Metric,
    pub secondary: Vec<Metric>,
    pub guardrails: Vec<Metric>,
}

/// One survey wave of a trial: an instrument given at a point in time
/// (`[[surveys]]`; a wave may give several instruments, each once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The instrument's key (`surveys/KEY.toml`).
    pub instrument: String,
    /// The wave's key (e.g. `baseline`, `followup`).
    pub wave: String,
    pub timing: WaveTiming,
    /// The survey-trigger flag of the wave (`trigger_flag`): a flag key the
    /// server answers over OFREP for units invited to a campaign of the
    /// wave, with their personal link (`docs/surveys.md`, "In-app").
    pub trigger_flag: Option<String>,
}

/// When a wave is due. A campaign of the wave sets the actual opening and
/// closing times; the timing says which units to invite when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveTiming {
    /// Before the trial starts (`when = "before_start"`).
    BeforeStart,
    /// This long after each unit's first exposure
    /// (`after_first_exposure = "14d"`).
    AfterFirstExposure { seconds: i64 },
    /// When the trial ends (`when = "at_end"`).
    AtEnd,
    /// No timing given (the `waves = [...]` shorthand).
    Unscheduled,
}

impl WaveTiming {
    /// As written in the file (`before_start`, `14d after first exposure`, ...).
    pub fn describe(&self) -> String {
        match self {
            WaveTiming::BeforeStart => "before_start".into(),
            WaveTiming::AfterFirstExposure { seconds } => {
                format!("{} after first exposure", format_duration(*seconds))
            }
            WaveTiming::AtEnd => "at_end".into(),
            WaveTiming::Unscheduled => "unscheduled".into(),
        }
    }
}

impl TrialSpec {
    /// Where a campaign open from `opens` to `closes` (Unix seconds) does
    /// not fit the timing of `wave`: a `before_start` wave still open when
    /// the trial starts (answers given after seeing an arm), an `at_end`
    /// wave opening before the trial ends, an `after_first_exposure` wave
    /// closing before any unit can be due. Empty when it fits, the wave is
    /// unscheduled or unknown. Advice for the researcher, not an error.
    pub fn wave_timing_warnings(&self, wave: &str, opens: i64, closes: i64) -> Vec<String> {
        let Some(timing) = self
            .surveys
            .iter()
            .find(|s| s.wave == wave)
            .map(|s| s.timing)
        else {
            return Vec::new();
        };
        let (start, end) = (self.schedule.start, self.schedule.end);
        let at = |t: i64| format_rfc3339(t);
        match timing {
            WaveTiming::BeforeStart if closes > start => vec![format!(
                "wave '{wave}' is due before the trial starts ({}), but the campaign closes at {}: units may answer after seeing their arm",
                at(start),
                at(closes)
            )],
            WaveTiming::AtEnd if opens < end => vec![format!(
                "wave '{wave}' is due when the trial ends ({}), but the campaign opens at {}",
                at(end),
                at(opens)
            )],
            WaveTiming::AfterFirstExposure { seconds } if closes <= start + seconds => vec![format!(
                "wave '{wave}' is due {} after each unit's first exposure, but the campaign closes at {}, before any unit can be due (the trial starts {})",
                format_duration(seconds),
                at(closes),
                at(start)
            )],
            _ => Vec::new(),
        }
    }

    /// The instruments a wave of this trial gives (empty for an unknown wave).
    /// The survey-trigger flag the file gives `wave`, if any (every entry
    /// of a wave gives the same one: checked when parsed).
    pub fn wave_trigger_flag(&self, wave: &str) -> Option<&str> {
        self.surveys
            .iter()
            .filter(|s| s.wave == wave)
            .find_map(|s| s.trigger_flag.as_deref())
    }

    pub fn wave_instruments(&self, wave: &str) -> Vec<&str> {
        self.surveys
            .iter()
            .filter(|s| s.wave == wave)
            .map(|s| s.instrument.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidedness {
    OneSided,
    TwoSided,
}

impl Sidedness {
    pub fn as_str(self) -> &'static str {
        match self {
            Sidedness::OneSided => "one-sided",
            Sidedness::TwoSided => "two-sided",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    Fixed,
    /// Group-sequential with this many planned looks (at least 2).
    Sequential {
        looks: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    None,
    Holm,
    /// Benjamini–Hochberg.
    Bh,
}

impl Correction {
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::None => "none",
            Correction::Holm => "holm",
            Correction::Bh => "bh",
        }
    }
}

/// What each result means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ship: String,
    pub iterate: String,
    pub roll_back: String,
}

/// The pre-registered analysis plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub alpha: f64,
    pub sidedness: Sidedness,
    /// Minimum detectable effect on the primary metric (absolute, in the
    /// metric's units).
    pub mde: Option<f64>,
    /// Target sample size (units, all arms together).
    pub sample_size: Option<u64>,
    /// Default 0.8.
    pub power: f64,
    pub horizon: Horizon,
    pub correction: Correction,
    pub decision: Decision,
}

/// A ramp step: from `at` on, `percent` of eligible units take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampStep {
    pub at: i64,
    pub percent: u32,
}

/// Unix seconds, `start < end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub start: i64,
    pub end: i64,
    pub ramp: Vec<RampStep>,
}

impl Schedule {
    /// The percentage of eligible units taking part at `now`: 0 before
    /// start and from end on; otherwise the last ramp step at or before
    /// `now` (100 without a ramp, 0 before the first step).
    pub fn ramp_percent(&self, now_unix: i64) -> u32 {
        if now_unix < self.start || now_unix >= self.end {
            return 0;
        }
        if self.ramp.is_empty() {
            return 100;
        }
        self.ramp
            .iter()
            .rev()
            .find(|s| s.at <= now_unix)
            .map_or(0, |s| s.percent)
    }
}

/// A mutually exclusive namespace: the trial only takes units whose
/// [`layer_position`] in layer `name` is in `[from, to)` (out of 10000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub from: u32,
    pub to: u32,
}

impl TrialSpec {
    /// The control arm.
    pub fn control(&self) -> &Arm {
        self.arms.iter().find(|a| a.control).expect("validated")
    }

    /// The first arm that is not control (the treatment of a stepped wedge).
    pub fn treatment(&self) -> &Arm {
        self.arms.iter().find(|a| !a.control).expect("validated")
    }

    pub fn arm(&self, variant: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.variant == variant)
    }

    /// Sum of the arm weights.
    pub fn total_weight(&self) -> u64 {
        self.arms.iter().map(|a| u64::from(a.weight)).sum()
    }

    /// The smallest block that holds every arm in its exact proportion:
    /// the sum of the weights divided by their greatest common divisor.
    pub fn minimal_block(&self) -> u64 {
        minimal_block(&self.arms)
    }

    /// The salt of [`hash_arm`]: the design's salt for a hash design, the
    /// trial key otherwise.
    pub fn salt(&self) -> &str {
        match &self.design {
            Design::Hash { salt } => salt,
            _ => &self.key,
        }
    }

    /// Whether a context is eligible (true without an eligibility rule).
    pub fn is_eligible(&self, ctx: &EvalContext<'_>) -> bool {
        self.eligibility.as_ref().is_none_or(|r| r.matches(ctx))
    }

    /// Whether a unit falls in the trial's layer range (true without a layer).
    pub fn in_layer(&self, unit_id: &str) -> bool {
        self.layer.as_ref().is_none_or(|l| {
            let p = layer_position(&l.name, unit_id);
            l.from <= p && p < l.to
        })
    }

    /// The first instant after `now_unix` at which the trial may answer a
    /// context differently than at `now_unix` (schedule start or end, a
    /// ramp step; the next second when the eligibility rule reads the
    /// clock). Stepped-wedge crossovers are in the allocation recorded at
    /// start, not in the spec: the caller adds them. `None`: never again.
    pub fn next_change(&self, now_unix: i64) -> Option<i64> {
        let clock = self
            .eligibility
            .as_ref()
            .is_some_and(|r| r.reads_clock())
            .then_some(now_unix.saturating_add(1));
        let s = &self.schedule;
        [s.start, s.end]
            .into_iter()
            .chain(s.ramp.iter().map(|step| step.at))
            .filter(|&t| t > now_unix)
            .chain(clock)
            .min()
    }

    /// Whether a unit takes part at `now` under the ramp: its ramp position
    /// `scale(prf("ramp:" + key + ":" + unit_id), 100)` is below
    /// [`Schedule::ramp_percent`]. A unit that is in stays in as the ramp
    /// grows. False outside the schedule.
    pub fn in_ramp(&self, unit_id: &str, now_unix: i64) -> bool {
        let percent = self.schedule.ramp_percent(now_unix);
        percent >= 100 || ramp_position(&self.key, unit_id) < u64::from(percent)
    }

    /// The stratum of a context for a blocked design: the canonical JSON
    /// array of the strata attributes' values, in the order the file lists
    /// them (a missing attribute is `null`), e.g. `["wiki-a","member"]`.
    /// `[]` for designs without strata.
    pub fn stratum(&self, ctx: &EvalContext<'_>) -> String {
        let strata: &[String] = match &self.design {
            Design::Blocked { strata, .. } => strata,
            _ => &[],
        };
        let values: Vec<Value> = strata
            .iter()
            .map(|s| lookup(ctx.context(), s).cloned().unwrap_or(Value::Null))
            .collect();
        canonical::to_canonical_string(&Value::Array(values))
    }

    /// Where a field was written (for reporting later checks).
    fn position(&self, field: &str) -> (usize, usize) {
        self.positions.get(field).copied().unwrap_or((1, 1))
    }

    fn error_at(&self, field: &str, message: String) -> SpecError {
        let (line, column) = self.position(field);
        SpecError {
            file: self.file.clone(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    }

    /// Checks the trial against a flag set: the flag exists, every arm is
    /// one of its variants, and the flag's `wp2Parameter`/`wp3Feature`
    /// metadata (when present) agree with `links`.
    pub fn check_against_flags(&self, flags: &crate::flags::FlagSet) -> Vec<SpecError> {
        let mut errors = Vec::new();
        let Some(flag) = flags.get(&self.flag) else {
            let known: Vec<&str> = flags.keys().collect();
            errors.push(self.error_at(
                "flag",
                format!(
                    "no flag {:?} in the flag set; known flags: {}",
                    self.flag,
                    list_or_none(&known)
                ),
            ));
            return errors;
        };
        let variants: Vec<&str> = flag.variants().map(|(k, _)| k).collect();
        for (i, arm) in self.arms.iter().enumerate() {
            if !variants.contains(&arm.variant.as_str()) {
                errors.push(self.error_at(
                    &format!("arms[{i}].variant"),
                    format!(
                        "{:?} is not a variant of flag {:?}; its variants are: {}",
                        arm.variant,
                        self.flag,
                        list_or_none(&variants)
                    ),
                ));
            }
        }
        for (meta, field, ours) in [
            (
                "wp2Parameter",
                "links.wp2_parameter",
                &self.links.wp2_parameter,
            ),
            ("wp3Feature", "links.wp3_feature", &self.links.wp3_feature),
        ] {
            if let Some(Value::String(theirs)) = flag.metadata().get(meta) {
                if theirs != ours {
                    errors.push(self.error_at(
                        field,
                        format!(
                            "flag {:?} says its {meta} is {theirs:?}, the trial says {ours:?}; make them agree",
                            self.flag
                        ),
                    ));
                }
            }
        }
        errors
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn minimal_block(arms: &[Arm]) -> u64 {
    let g = arms.iter().fold(0, |g, a| gcd(g, u64::from(a.weight)));
    if g == 0 {
        return 1;
    }
    arms.iter().map(|a| u64::from(a.weight) / g).sum()
}
