//! One simulated trial: the population drawn from a seed, each visitor
//! served the arm the design assigns (with the same functions the server
//! uses: `core::experiments::{hash_arm, blocked_arm, cluster_allocation,
//! stepped_wedge_schedule, arm_at}`), and what the analysis needs of each
//! member: its first exposure, the days it visited and the days of its
//! counted events.

use commonlab_core::experiments::{
    arm_at, blocked_arm, cluster_allocation, hash_arm, stepped_wedge_schedule, switchback_schedule,
    Design, SwitchbackSchedule, TrialSpec,
};

use crate::{SimError, SimParams, Simulation};

/// How units are assigned in one simulated trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assignment {
    /// Members by the salted hash (a fresh salt per simulated trial).
    Hash,
    /// Members in random permuted blocks within their community.
    BlockedUsers,
    /// Whole communities, balanced by weight, once.
    Cluster,
    /// Whole communities crossing over at the design's steps.
    SteppedWedge,
    /// Whole communities switched on or off in each period.
    Switchback,
}

/// What one member did, as the analysis needs it.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberRecord {
    /// Index into the simulation's communities.
    pub community: usize,
    /// The day of the member's first visit under the trial and the arm
    /// (index into `spec.arms`) served then.
    pub exposure: Option<(u32, usize)>,
    /// Days visited, ascending, each once.
    pub visits: Vec<u32>,
    /// The day of each counted event, ascending.
    pub events: Vec<u32>,
}

/// A finished simulated trial.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    pub days: u32,
    pub members: Vec<MemberRecord>,
    /// Per community, the day from which it is treated (`None`: never), for
    /// community designs; the arm (index into `spec.arms`) it is given when
    /// treated.
    pub community_arms: Vec<(Option<u32>, usize)>,
    /// Switchbacks: the grid drawn for this trial.
    pub switchback: Option<SwitchbackSchedule>,
}

/// The per-trial state of the assignment.
struct Assigner<'a> {
    spec: &'a TrialSpec,
    kind: Assignment,
    seed: u64,
    /// Hash: the spec with this trial's salt.
    salted: Option<TrialSpec>,
    /// Blocked: the next position in each community.
    positions: Vec<u64>,
    /// Community designs: per community, (first treated day, treated arm).
    community_arms: Vec<(Option<u32>, usize)>,
    /// Switchbacks: the grid, and per community whether it is on each day.
    switchback: Option<SwitchbackSchedule>,
    on_by_day: Vec<Vec<bool>>,
}

impl<'a> Assigner<'a> {
    fn new(
        spec: &'a TrialSpec,
        kind: Assignment,
        seed: u64,
        names: &[String],
        days: u32,
    ) -> Result<Self, SimError> {
        let control = spec.arms.iter().position(|a| a.control).unwrap_or(0);
        let arm_index = |variant: &str| spec.arms.iter().position(|a| a.variant == variant);
        let mut community_arms = vec![(None, control); names.len()];
        let missing = |name: &str| SimError::Invalid {
            field: "communities".into(),
            why: format!("'{name}' is not one of the design's communities"),
        };
        match kind {
            Assignment::Cluster => {
                let allocation = cluster_allocation(spec, seed);
                for (c, name) in names.iter().enumerate() {
                    let arm = allocation.get(name).ok_or_else(|| missing(name))?;
                    let i = arm_index(&arm.variant).unwrap_or(control);
                    community_arms[c] = ((i != control).then_some(0), i);
                }
            }
            Assignment::SteppedWedge => {
                let schedule = stepped_wedge_schedule(spec, seed);
                let treatment = arm_index(&spec.treatment().variant).unwrap_or(control);
                for (c, name) in names.iter().enumerate() {
                    if !schedule.iter().any(|(n, _)| n == name) {
                        return Err(missing(name));
                    }
                    let first = (0..days).find(|&d| {
                        arm_at(spec, &schedule, name, day_start(spec, d))
                            .is_some_and(|a| !a.control)
                    });
                    community_arms[c] = (first, treatment);
                }
            }
            Assignment::Hash | Assignment::BlockedUsers | Assignment::Switchback => {}
        }
        let switchback = (kind == Assignment::Switchback)
            .then(|| switchback_schedule(spec, seed))
            .flatten();
        let mut on_by_day = Vec::new();
        if let Some(s) = &switchback {
            for name in names {
                if !s.communities.contains(name) {
                    return Err(missing(name));
                }
                on_by_day.push(
                    (0..days)
                        .map(|d| s.on_at(name, day_start(spec, d)).unwrap_or(false))
                        .collect(),
                );
            }
        }
        let salted = (kind == Assignment::Hash).then(|| {
            let mut s = spec.clone();
            s.design = Design::Hash {
                salt: format!("{}:{seed}", spec.salt()),
            };
            s
        });
        Ok(Assigner {
            spec,
            kind,
            seed,
            salted,
            positions: vec![0; names.len()],
            community_arms,
            switchback,
            on_by_day,
        })
    }

    /// The arm of `record`'s member visiting on `day`.
    fn arm(&mut self, id: &str, record: &MemberRecord, names: &[String], day: u32) -> usize {
        match self.kind {
            Assignment::Hash | Assignment::BlockedUsers => {
                if let Some((_, arm)) = record.exposure {
                    return arm;
                }
                let arm = match &self.salted {
                    Some(spec) => hash_arm(spec, id),
                    None => {
                        let c = record.community;
                        let stratum = format!("[\"{}\"]", names[c]);
                        let position = self.positions[c];
                        self.positions[c] += 1;
                        blocked_arm(self.spec, self.seed, &stratum, position)
                    }
                };
                self.index_of(&arm.variant)
            }
            Assignment::Switchback => {
                let on = self.on_by_day[record.community][day as usize];
                let arm = if on {
                    self.spec.treatment()
                } else {
                    self.spec.control()
                };
                self.index_of(&arm.variant)
            }
            Assignment::Cluster | Assignment::SteppedWedge => {
                match self.community_arms[record.community] {
                    (Some(from), arm) if day >= from => arm,
                    _ => self.spec.arms.iter().position(|a| a.control).unwrap_or(0),
                }
            }
        }
    }

    fn index_of(&self, variant: &str) -> usize {
        self.spec
            .arms
            .iter()
            .position(|a| a.variant == variant)
            .unwrap_or(0)
    }
}

/// Unix seconds at the start of simulated day `day` (day 0 starts with
/// the schedule).
pub(crate) fn day_start(spec: &TrialSpec, day: u32) -> i64 {
    spec.schedule.start + i64::from(day) * 86_400
}

/// Runs one trial of `days` days: the population from `params` (whose
/// effects are the arms' true effects) and `seed`, assigned by `kind` with
/// `seed`; `counted` says which events the metric counts.
pub(crate) fn simulate(
    spec: &TrialSpec,
    params: &SimParams,
    kind: Assignment,
    seed: u64,
    days: u32,
    counted: &dyn Fn(&str) -> bool,
) -> Result<Records, SimError> {
    let names: Vec<String> = params.communities.iter().map(|c| c.name.clone()).collect();
    let mut assigner = Assigner::new(spec, kind, seed, &names, days)?;
    let mut sim = Simulation::new(params.clone(), seed)?;
    let mut members: Vec<MemberRecord> = Vec::new();
    let variants: Vec<String> = spec.arms.iter().map(|a| a.variant.clone()).collect();
    for _ in 0..days {
        let visits = sim.begin_day();
        let day = visits.day();
        for m in &sim.members()[members.len()..] {
            members.push(MemberRecord {
                community: m.community,
                ..MemberRecord::default()
            });
        }
        let mut served: Vec<usize> = Vec::new();
        for (i, _) in visits.visitors() {
            let arm = assigner.arm(&sim.members()[i].id, &members[i], &names, day);
            let record = &mut members[i];
            record.visits.push(day);
            record.exposure.get_or_insert((day, arm));
            served.push(arm);
        }
        // `end_day` asks for the visitors' arms in the order `visitors()`
        // gave them.
        let mut next = served.into_iter();
        let out = sim.end_day(visits, &mut |_| next.next().map(|a| variants[a].clone()));
        for e in &out.events {
            if counted(e.name) {
                members[e.member].events.push(day);
            }
        }
    }
    Ok(Records {
        days,
        members,
        community_arms: assigner.community_arms,
        switchback: assigner.switchback,
    })
}
