//! The running trials of this replica, compiled, by flag: refreshed from
//! the database like the flag set (by the poller, [`crate::sync`], and after
//! a trial changes through this replica).

use commonlab_core::experiments::{
    format_rfc3339, parse_trial, switchback_schedule, Design, Period, SwitchbackSchedule, TrialSpec,
};
use commonlab_store::{Store, StoreError, TrialRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What was recorded at start besides the seed.
#[derive(Debug, Clone)]
pub enum Allocation {
    None,
    /// Community → arm (variant).
    Cluster(BTreeMap<String, String>),
    /// (community, crossover time in Unix seconds), in crossover order.
    SteppedWedge(Vec<(String, i64)>),
    /// Which community is on in which period.
    Switchback(SwitchbackSchedule),
}

impl Allocation {
    /// The JSON recorded with the trial at start.
    pub fn compute(spec: &TrialSpec, seed: u64) -> (Allocation, Option<String>) {
        match &spec.design {
            Design::Cluster { .. } => {
                let map: BTreeMap<String, String> =
                    commonlab_core::experiments::cluster_allocation(spec, seed)
                        .into_iter()
                        .map(|(c, a)| (c, a.variant.clone()))
                        .collect();
                let json = serde_json::to_string(&map).ok();
                (Allocation::Cluster(map), json)
            }
            Design::SteppedWedge { .. } => {
                let schedule = commonlab_core::experiments::stepped_wedge_schedule(spec, seed);
                let json = serde_json::to_string(
                    &schedule
                        .iter()
                        .map(|(c, t)| {
                            serde_json::json!({
                                "community": c,
                                "crossover": commonlab_core::experiments::format_rfc3339(*t),
                                "crossover_unix": t,
                            })
                        })
                        .collect::<Vec<_>>(),
                )
                .ok();
                (Allocation::SteppedWedge(schedule), json)
            }
            Design::Switchback { .. } => match switchback_schedule(spec, seed) {
                Some(s) => {
                    let json = serde_json::to_string(&switchback_json(&s)).ok();
                    (Allocation::Switchback(s), json)
                }
                None => (Allocation::None, None),
            },
            _ => (Allocation::None, None),
        }
    }

    fn parse(spec: &TrialSpec, json: Option<&str>) -> Option<Allocation> {
        match &spec.design {
            Design::Cluster { .. } => serde_json::from_str(json?).ok().map(Allocation::Cluster),
            Design::SteppedWedge { .. } => {
                let items: Vec<serde_json::Value> = serde_json::from_str(json?).ok()?;
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push((
                        it.get("community")?.as_str()?.to_string(),
                        it.get("crossover_unix")?.as_i64()?,
                    ));
                }
                Some(Allocation::SteppedWedge(out))
            }
            Design::Switchback { .. } => {
                let v: serde_json::Value = serde_json::from_str(json?).ok()?;
                let periods = spec.periods();
                let mut communities = Vec::new();
                let mut on = Vec::new();
                for row in v.get("grid")?.as_array()? {
                    communities.push(row.get("community")?.as_str()?.to_string());
                    let cells: Option<Vec<bool>> = row
                        .get("on")?
                        .as_array()?
                        .iter()
                        .map(|b| b.as_bool())
                        .collect();
                    let cells = cells?;
                    if cells.len() != periods.len() {
                        return None;
                    }
                    on.push(cells);
                }
                Some(Allocation::Switchback(SwitchbackSchedule {
                    communities,
                    periods,
                    on,
                }))
            }
            _ => Some(Allocation::None),
        }
    }
}

/// The switchback grid as recorded at start: the periods and, per
/// community, whether it is on in each.
pub fn switchback_json(s: &SwitchbackSchedule) -> serde_json::Value {
    serde_json::json!({
        "periods": s.periods.iter().map(|p| serde_json::json!({
            "start": format_rfc3339(p.start),
            "end": format_rfc3339(p.end),
        })).collect::<Vec<_>>(),
        "grid": s.communities.iter().zip(&s.on).map(|(c, on)| serde_json::json!({
            "community": c,
            "on": on,
        })).collect::<Vec<_>>(),
    })
}

/// A running trial, compiled.
#[derive(Debug)]
pub struct RunningTrial {
    pub id: i64,
    pub key: String,
    pub version: i64,
    pub seed: u64,
    pub spec: TrialSpec,
    pub allocation: Allocation,
    /// The periods of a community design (`TrialSpec::periods`), computed
    /// once: the exposure tally finds an evaluation's period in them.
    pub periods: Vec<Period>,
}

impl RunningTrial {
    pub fn from_record(r: &TrialRecord) -> Result<RunningTrial, String> {
        let spec = parse_trial(&r.spec_source, &format!("trial {}", r.key)).map_err(|errs| {
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let seed = r.seed.ok_or("a running trial without a seed")? as u64;
        let allocation = Allocation::parse(&spec, r.allocation.as_deref())
            .ok_or("the recorded allocation does not match the design")?;
        Ok(RunningTrial {
            id: r.id,
            key: r.key.clone(),
            version: r.version,
            seed,
            periods: spec.periods(),
            spec,
            allocation,
        })
    }
}

impl RunningTrial {
    /// The first instant after `now_unix` at which the trial may answer a
    /// context differently: [`TrialSpec::next_change`], a stepped-wedge
    /// crossover or a switchback's next period edge.
    pub fn next_change(&self, now_unix: i64) -> Option<i64> {
        let crossover = match &self.allocation {
            Allocation::SteppedWedge(schedule) => schedule
                .iter()
                .map(|(_, t)| *t)
                .filter(|&t| t > now_unix)
                .min(),
            Allocation::Switchback(s) => s.next_switch(now_unix),
            _ => None,
        };
        self.spec
            .next_change(now_unix)
            .into_iter()
            .chain(crossover)
            .min()
    }
}

#[derive(Default)]
pub struct RunningTrials {
    pub version: i64,
    pub by_flag: HashMap<String, Vec<Arc<RunningTrial>>>,
}

impl RunningTrials {
    /// The first instant after `now_unix` at which any running trial may
    /// answer differently.
    pub fn next_change(&self, now_unix: i64) -> Option<i64> {
        self.by_flag
            .values()
            .flatten()
            .filter_map(|t| t.next_change(now_unix))
            .min()
    }
}

#[derive(Clone, Default)]
pub struct TrialCache(Arc<arc_swap::ArcSwap<RunningTrials>>);

impl TrialCache {
    pub fn current(&self) -> arc_swap::Guard<Arc<RunningTrials>> {
        self.0.load()
    }
    pub fn install(&self, t: RunningTrials) {
        self.0.store(Arc::new(t));
    }

    /// Reloads the running trials when the database's trials version
    /// changed.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let version = store.trials_version().await?;
        if version == self.current().version && version != 0 {
            return Ok(());
        }
        let mut by_flag: HashMap<String, Vec<Arc<RunningTrial>>> = HashMap::new();
        for r in store.running_trials().await? {
            match RunningTrial::from_record(&r) {
                Ok(t) => by_flag
                    .entry(t.spec.flag.clone())
                    .or_default()
                    .push(Arc::new(t)),
                Err(e) => {
                    tracing::error!(trial = %r.key, error = %e, "running trial cannot be served")
                }
            }
        }
        self.install(RunningTrials { version, by_flag });
        Ok(())
    }
}
