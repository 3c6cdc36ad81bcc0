//! A small agent-based simulator of commons-based peer production (CBPP)
//! communities, for rehearsing trials before real communities see them.
//!
//! The model is pure and seeded: no IO, no clock. [`Simulation::step`] simulates one day
//! and asks its caller which arm each visiting member is served (the driver
//! answers by evaluating the flag over OFREP, so assignment and exposure go
//! through the real server); it returns the day's events for the driver to
//! send through the ingestion API. The same seed and the same answers give
//! the same events. [`drive`] runs it against a real server.
//!
//! The model (defaults in [`params`], documented in `docs/simulator.md`):
//! - **Members** have a role (core, contributor, peripheral, lurker) and an
//!   activity multiplier: lurkers never contribute; the others draw theirs
//!   from a heavy-tailed distribution (lognormal or truncated power law,
//!   mean 1). Roles follow the activity rank at the start: the top 1% of
//!   all members are core, the next 9% contributors, other active members
//!   peripheral. Joiners get the role their activity would have had.
//! - **A day:** each member visits in `Poisson(a·r_session)` sessions
//!   (lurkers: `lurker_sessions`); a visit reveals the member's arm; each
//!   session brings `Poisson(a·r_k / r_session)` events of each
//!   contribution type `k`, times the arm's multiplier. Each contribution
//!   is thanked by another visitor of the same community with probability
//!   `thanks_probability` (times the sender's arm multiplier for
//!   `thanks_sent`).
//! - **Spillover:** an untreated visitor's multiplier is
//!   `1 + spillover · s · (m̄ − 1)`, where `s` is the share of yesterday's
//!   visitors of the community who were treated and `m̄` their mean
//!   multiplier.
//! - **Leaving:** each day a member leaves with `leave_hazard`, times
//!   `thanked_retention` if thanked and contributing in the last 14 days,
//!   times the arm's `retention_multiplier` if treated.
//! - **Surveys:** see [`Simulation::answer`].

pub mod drive;
pub mod load;
pub mod params;
pub mod power;
pub mod summary;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};

pub use params::{ActivityDist, ArmEffect, CommunityParams, SimParams, SurveyParams};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    #[error("parameter file, line {line}, at `{path}`: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("parameter `{field}` {why}")]
    Invalid { field: String, why: String },
}

/// A member's place in the community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Core,
    Contributor,
    Peripheral,
    Lurker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Contributor => "contributor",
            Role::Peripheral => "peripheral",
            Role::Lurker => "lurker",
        }
    }
}

/// One simulated member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Stable and unique: `<community>-m<number>`.
    pub id: String,
    /// Index into [`SimParams::communities`].
    pub community: usize,
    pub role: Role,
    /// Contribution multiplier (0 for lurkers).
    pub activity: f64,
    /// The member's latent survey trait (standard normal).
    pub latent: f64,
    pub joined: u32,
    /// The day the member left, if it has.
    pub left: Option<u32>,
    /// The arm the member was last served (None: never a trial arm).
    pub arm: Option<String>,
    pub last_contributed: Option<u32>,
    pub last_thanked: Option<u32>,
    /// Contribution events so far.
    pub contributions: u64,
}

impl Member {
    pub fn present(&self) -> bool {
        self.left.is_none()
    }
}

/// One event of a simulated day.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// Index into [`Simulation::members`].
    pub member: usize,
    pub name: &'static str,
    /// Seconds after the start of the day (0 ..< 86,400).
    pub second: u32,
}

/// Who joins and who visits on a day, before their arms are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Visits {
    day: u32,
    joined: Vec<usize>,
    /// (member, session start seconds, sorted).
    sessions: Vec<(usize, Vec<u32>)>,
}

impl Visits {
    pub fn day(&self) -> u32 {
        self.day
    }

    /// The visitors (indices into [`Simulation::members`]), in member
    /// order, with the second their first session starts.
    pub fn visitors(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.sessions.iter().map(|(i, s)| (*i, s[0]))
    }
}

/// What happened on one day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Day {
    pub day: u32,
    /// In time order.
    pub events: Vec<SimEvent>,
    /// Members who visited (and were asked their arm).
    pub visitors: Vec<usize>,
    pub joined: Vec<usize>,
    pub left: Vec<usize>,
}

const SESSION: &str = "session_start";
const THANKS_SENT: &str = "thanks_sent";
const THANKS_RECEIVED: &str = "thanks_received";

/// The running simulation.
pub struct Simulation {
    params: SimParams,
    rng: ChaCha8Rng,
    members: Vec<Member>,
    day: u32,
    /// Per community: activity at the 99th and 90th percentile of all
    /// members at day 0 (role thresholds for joiners).
    thresholds: Vec<(f64, f64)>,
    next_number: Vec<u32>,
    /// Per community: (share of yesterday's visitors treated, their mean
    /// multiplier minus one, per event type).
    spill: Vec<(f64, BTreeMap<&'static str, f64>)>,
}

impl Simulation {
    /// A community population at day 0, drawn from `seed`.
    pub fn new(params: SimParams, seed: u64) -> Result<Self, SimError> {
        params.validate()?;
        let mut sim = Simulation {
            rng: ChaCha8Rng::seed_from_u64(seed),
            members: Vec::new(),
            day: 0,
            thresholds: Vec::new(),
            next_number: vec![0; params.communities.len()],
            spill: vec![(0.0, BTreeMap::new()); params.communities.len()],
            params,
        };
        for c in 0..sim.params.communities.len() {
            let n = sim.params.communities[c].members;
            let first = sim.members.len();
            for _ in 0..n {
                let m = sim.draw_member(c);
                sim.members.push(m);
            }
            sim.assign_initial_roles(c, first);
        }
        Ok(sim)
    }

    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// Every member who ever joined, in joining order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The next day [`Simulation::step`] simulates.
    pub fn day(&self) -> u32 {
        self.day
    }

    fn draw_member(&mut self, c: usize) -> Member {
        let cp = &self.params.communities[c];
        let inactive = self.rng.random_bool(cp.inactive_share());
        let activity = if inactive {
            0.0
        } else {
            draw_activity(&cp.activity, &mut self.rng)
        };
        let latent: f64 = Normal::new(0.0, 1.0)
            .expect("unit normal")
            .sample(&mut self.rng);
        self.next_number[c] += 1;
        Member {
            id: format!("{}-m{:05}", cp.name, self.next_number[c]),
            community: c,
            role: if inactive {
                Role::Lurker
            } else {
                Role::Peripheral
            },
            activity,
            latent,
            joined: self.day,
            left: None,
            arm: None,
            last_contributed: None,
            last_thanked: None,
            contributions: 0,
        }
    }

    fn assign_initial_roles(&mut self, c: usize, first: usize) {
        let members = &mut self.members[first..];
        let n = members.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| members[b].activity.total_cmp(&members[a].activity));
        let core = (n.div_ceil(100)).max(1);
        let contributors = (n * 10).div_ceil(100).max(core);
        for (rank, &i) in order.iter().enumerate() {
            let m = &mut members[i];
            if m.role == Role::Lurker {
                continue;
            }
            m.role = if rank < core {
                Role::Core
            } else if rank < contributors {
                Role::Contributor
            } else {
                Role::Peripheral
            };
        }
        let at = |k: usize| {
            order
                .get(k.saturating_sub(1))
                .map_or(f64::INFINITY, |&i| members[i].activity)
        };
        self.thresholds.push((at(core), at(contributors)));
        debug_assert_eq!(self.thresholds.len(), c + 1);
    }

    /// Simulates one day: [`Simulation::begin_day`] then
    /// [`Simulation::end_day`].
    pub fn step(&mut self, arm_of: &mut dyn FnMut(&Member) -> Option<String>) -> Day {
        let visits = self.begin_day();
        self.end_day(visits, arm_of)
    }

    /// The first half of a day: who joins, who visits and when. The caller
    /// then finds out each visitor's arm (over OFREP, say) and passes it to
    /// [`Simulation::end_day`].
    pub fn begin_day(&mut self) -> Visits {
        let mut joined = Vec::new();
        for c in 0..self.params.communities.len() {
            let rate = self.params.communities[c].join_rate;
            for _ in 0..poisson(rate, &mut self.rng) {
                let mut m = self.draw_member(c);
                let (core, contributor) = self.thresholds[c];
                if m.role != Role::Lurker {
                    m.role = if m.activity >= core {
                        Role::Core
                    } else if m.activity >= contributor {
                        Role::Contributor
                    } else {
                        Role::Peripheral
                    };
                }
                joined.push(self.members.len());
                self.members.push(m);
            }
        }
        let mut sessions: Vec<(usize, Vec<u32>)> = Vec::new();
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if !m.present() {
                continue;
            }
            let cp = &self.params.communities[m.community];
            let rate = if m.role == Role::Lurker {
                cp.lurker_sessions
            } else {
                m.activity * cp.event_rates.get(SESSION).copied().unwrap_or(0.0)
            };
            let n = poisson(rate, &mut self.rng);
            if n == 0 {
                continue;
            }
            let mut starts: Vec<u32> = (0..n)
                .map(|_| self.rng.random_range(0..86_400 - 3_600))
                .collect();
            starts.sort_unstable();
            sessions.push((i, starts));
        }
        Visits {
            day: self.day,
            joined,
            sessions,
        }
    }

    /// The second half of a day: `arm_of` is asked once for each visitor, in
    /// member order, and answers the arm served (`None`: no trial arm, as
    /// for a member the trial does not enrol); then what they do, who
    /// thanks whom, and who leaves.
    ///
    /// # Panics
    /// If `visits` is not the last [`Simulation::begin_day`]'s.
    pub fn end_day(
        &mut self,
        visits: Visits,
        arm_of: &mut dyn FnMut(&Member) -> Option<String>,
    ) -> Day {
        assert_eq!(visits.day, self.day, "end_day with another day's visits");
        let day = self.day;
        let Visits {
            joined, sessions, ..
        } = visits;
        let mut out = Day {
            day,
            joined,
            ..Day::default()
        };
        for (i, starts) in &sessions {
            let arm = arm_of(&self.members[*i]);
            self.members[*i].arm = arm;
            for &s in starts {
                out.events.push(SimEvent {
                    member: *i,
                    name: SESSION,
                    second: s,
                });
            }
            out.visitors.push(*i);
        }
        // Contributions.
        let mut contributions: Vec<(usize, u32)> = Vec::new();
        for (i, starts) in &sessions {
            let m = &self.members[*i];
            if m.role == Role::Lurker {
                continue;
            }
            let cp = &self.params.communities[m.community];
            let per_session_base = cp.event_rates.get(SESSION).copied().unwrap_or(0.0);
            for name in params::CONTRIBUTIONS {
                let rate_k = cp.event_rates.get(name).copied().unwrap_or(0.0);
                if rate_k == 0.0 || per_session_base == 0.0 {
                    continue;
                }
                let mult = self.multiplier(m, name);
                let mean = starts.len() as f64 * rate_k / per_session_base * mult;
                for _ in 0..poisson(mean, &mut self.rng) {
                    let start = starts[self.rng.random_range(0..starts.len())];
                    let second = start + self.rng.random_range(0..3_600);
                    out.events.push(SimEvent {
                        member: *i,
                        name,
                        second,
                    });
                    contributions.push((*i, second));
                }
            }
        }
        // Thanks, from another visitor of the same community.
        let mut by_community: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, _) in &sessions {
            by_community
                .entry(self.members[*i].community)
                .or_default()
                .push(*i);
        }
        for (contributor, second) in &contributions {
            let c = self.members[*contributor].community;
            let visitors = &by_community[&c];
            if visitors.len() < 2 {
                continue;
            }
            let sender = loop {
                let s = visitors[self.rng.random_range(0..visitors.len())];
                if s != *contributor {
                    break s;
                }
            };
            let p = self.params.communities[c].thanks_probability
                * self.multiplier(&self.members[sender], THANKS_SENT);
            if self.rng.random_bool(p.clamp(0.0, 1.0)) {
                let later = (*second + self.rng.random_range(1..600)).min(86_399);
                out.events.push(SimEvent {
                    member: sender,
                    name: THANKS_SENT,
                    second: later,
                });
                out.events.push(SimEvent {
                    member: *contributor,
                    name: THANKS_RECEIVED,
                    second: later,
                });
                self.members[*contributor].last_thanked = Some(day);
            }
        }
        for (i, _) in &contributions {
            let m = &mut self.members[*i];
            m.contributions += 1;
            m.last_contributed = Some(day);
        }
        self.update_spillover(&sessions);
        // Leaving.
        for i in 0..self.members.len() {
            let m = &self.members[i];
            if !m.present() {
                continue;
            }
            let cp = &self.params.communities[m.community];
            let recent = |d: Option<u32>| d.is_some_and(|d| day - d < params::THANKED_MEMORY_DAYS);
            let mut hazard = cp.leave_hazard;
            if recent(m.last_thanked) && recent(m.last_contributed) {
                hazard *= cp.thanked_retention;
            }
            if let Some(effect) = m.arm.as_ref().and_then(|a| self.params.effects.get(a)) {
                hazard *= effect.retention_multiplier;
            }
            if self.rng.random_bool(hazard.clamp(0.0, 1.0)) {
                self.members[i].left = Some(day);
                out.left.push(i);
            }
        }
        out.events.sort_by_key(|e| (e.second, e.member));
        self.day += 1;
        out
    }

    /// The multiplier of `name` for `m` today: its arm's, or the spillover
    /// an untreated member gets.
    fn multiplier(&self, m: &Member, name: &'static str) -> f64 {
        match m.arm.as_ref().and_then(|a| self.params.effects.get(a)) {
            Some(effect) => effect_multiplier(effect, name),
            None => {
                let (share, excess) = &self.spill[m.community];
                1.0 + self.params.spillover * share * excess.get(name).copied().unwrap_or(0.0)
            }
        }
    }

    fn update_spillover(&mut self, sessions: &[(usize, Vec<u32>)]) {
        let names: Vec<&'static str> = params::CONTRIBUTIONS
            .into_iter()
            .chain([THANKS_SENT])
            .collect();
        for c in 0..self.params.communities.len() {
            let mut visitors = 0usize;
            let mut treated = 0usize;
            let mut excess: BTreeMap<&'static str, f64> = BTreeMap::new();
            for (i, _) in sessions {
                let m = &self.members[*i];
                if m.community != c {
                    continue;
                }
                visitors += 1;
                if let Some(effect) = m.arm.as_ref().and_then(|a| self.params.effects.get(a)) {
                    treated += 1;
                    for name in &names {
                        *excess.entry(name).or_default() += effect_multiplier(effect, name) - 1.0;
                    }
                }
            }
            let share = if visitors == 0 {
                0.0
            } else {
                treated as f64 / visitors as f64
            };
            if treated > 0 {
                for v in excess.values_mut() {
                    *v /= treated as f64;
                }
            }
            self.spill[c] = (share, excess);
        }
    }

    /// A member's answers to a survey's Likert-type items, or `None` if the
    /// member does not answer (probability by role). Each answer is
    /// `loading·(latent + shift) + noise` cut into the item's points at the
    /// normal quantiles (uniform answers at shift 0), reversed for
    /// reverse-coded items; `shift` is the served arm's `survey_shift`.
    pub fn answer(&mut self, member: usize, items: &[Item]) -> Option<Vec<i32>> {
        let m = &self.members[member];
        let s = &self.params.survey;
        let p = s
            .response_propensity
            .get(m.role.as_str())
            .copied()
            .unwrap_or(0.0);
        if !self.rng.random_bool(p) {
            return None;
        }
        let shift = m
            .arm
            .as_ref()
            .and_then(|a| self.params.effects.get(a))
            .map_or(0.0, |e| e.survey_shift);
        let trait_value = s.loading * (m.latent + shift);
        let sd = (s.loading * s.loading + s.item_noise * s.item_noise).sqrt();
        let noise = Normal::new(0.0, s.item_noise).expect("validated noise");
        let answers = items
            .iter()
            .map(|item| {
                let z = (trait_value + noise.sample(&mut self.rng)) / sd;
                let points = item.max - item.min + 1;
                let k =
                    ((summary::normal_cdf(z) * points as f64).floor() as i32).clamp(0, points - 1);
                if item.reverse {
                    item.max - k
                } else {
                    item.min + k
                }
            })
            .collect();
        Some(answers)
    }
}

/// A Likert-type item: answers are integers in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub min: i32,
    pub max: i32,
    pub reverse: bool,
}

fn effect_multiplier(effect: &ArmEffect, name: &str) -> f64 {
    if let Some(m) = effect.rate_multipliers.get(name) {
        return *m;
    }
    if params::CONTRIBUTIONS.contains(&name) {
        if let Some(m) = effect.rate_multipliers.get("*") {
            return *m;
        }
    }
    1.0
}

fn poisson(mean: f64, rng: &mut ChaCha8Rng) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    Poisson::new(mean).map_or(0, |p| p.sample(rng) as u64)
}

/// An activity multiplier with mean 1.
fn draw_activity(dist: &ActivityDist, rng: &mut ChaCha8Rng) -> f64 {
    match *dist {
        ActivityDist::Lognormal { sigma } => LogNormal::new(-sigma * sigma / 2.0, sigma)
            .expect("validated sigma")
            .sample(rng),
        ActivityDist::PowerLaw { alpha, xmax } => {
            // Inverse CDF of x^-alpha on [1, xmax], divided by its mean.
            let u: f64 = rng.random();
            let a1 = 1.0 - alpha;
            let x = (1.0 + u * (xmax.powf(a1) - 1.0)).powf(1.0 / a1);
            x / summary::truncated_power_mean(alpha, xmax)
        }
    }
}
