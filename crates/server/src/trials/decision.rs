//! The trial decision on the evaluation path: whether a context takes part
//! in one of a flag's running trials and, if so, in which arm.

use super::cache::{Allocation, RunningTrial, TrialCache};
use super::exposure::Decision;
use super::exposure::ExposureSink;
use super::unit_cache::UnitCache;
use crate::clock::Clock;
use crate::config::Config;
use commonlab_core::experiments::{arm_at, blocked_arm, hash_arm, Design, Unit};
use commonlab_core::flags::EvalContext;
use commonlab_core::privacy::pseudonymise;
use commonlab_store::{NewSequentialAssignment, Store, StoreError};
use std::sync::Arc;

/// What the trial decision needs: the running trials, the consent and arm
/// caches about units, the store (blocked designs assign through it), the
/// study key and consent scope, and the clock. Also where the decisions'
/// exposures go ([`Decider::exposures`]).
#[derive(Clone)]
pub struct Decider {
    pub store: Store,
    pub trials: TrialCache,
    pub exposures: ExposureSink,
    pub units: UnitCache,
    pub config: Arc<Config>,
    pub clock: Clock,
}

fn community_of(ctx: &EvalContext<'_>) -> Option<String> {
    match ctx.context().get("community")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Decider {
    /// Decides whether the context takes part in one of the flag's running
    /// trials and, if so, in which arm. `cohort` is the developer override that
    /// matched, if any, as (cohort name, variant served). Blocked designs assign
    /// through the database on a unit's first evaluation. With `consent_scope`
    /// set, a member (a trial whose unit is the user) without a granted consent
    /// is not enrolled: `None`, the flag's own answer, nothing recorded.
    pub async fn decide(
        &self,
        flag: &str,
        ctx: &EvalContext<'_>,
        cohort: Option<(&str, &str)>,
    ) -> Result<Option<Decision>, StoreError> {
        let trials = self.trials.current();
        let Some(list) = trials.by_flag.get(flag) else {
            return Ok(None);
        };
        let now = ctx.now_unix_secs();
        for trial in list {
            let spec = &trial.spec;
            let Some(unit_id) = spec.unit.unit_id(ctx) else {
                continue;
            };
            // Outside the schedule, beyond the ramp, ineligible or in another
            // layer range: the flag's normal evaluation, and no exposure.
            if !spec.in_ramp(&unit_id, now) || !spec.is_eligible(ctx) || !spec.in_layer(&unit_id) {
                continue;
            }
            if let (Some(scope), Unit::User) = (&self.config.consent_scope, &spec.unit) {
                let consented = self
                    .units
                    .consented(&self.store, &self.config.study_key, scope, &unit_id)
                    .await?;
                if !consented {
                    continue;
                }
            }
            let community = community_of(ctx);
            if let Some((c, variant)) = cohort {
                return Ok(Some(Decision {
                    trial: Arc::clone(trial),
                    arm: variant.to_string(),
                    unit_id,
                    community,
                    excluded_reason: Some(format!("cohort override '{c}'")),
                }));
            }
            let arm = match (&spec.design, &trial.allocation) {
                (Design::Hash { .. }, _) => hash_arm(spec, &unit_id).variant.clone(),
                (Design::Cluster { .. }, Allocation::Cluster(map)) => match map.get(&unit_id) {
                    Some(a) => a.clone(),
                    None => continue,
                },
                (Design::SteppedWedge { .. }, Allocation::SteppedWedge(schedule)) => {
                    match arm_at(spec, schedule, &unit_id, now) {
                        Some(a) => a.variant.clone(),
                        None => continue,
                    }
                }
                (Design::Switchback { .. }, Allocation::Switchback(schedule)) => {
                    // Outside the periods the trial serves nobody.
                    match schedule.on_at(&unit_id, now) {
                        Some(true) => spec.treatment().variant.clone(),
                        Some(false) => spec.control().variant.clone(),
                        None => continue,
                    }
                }
                (Design::Blocked { .. }, _) => {
                    self.blocked(trial, &unit_id, spec.stratum(ctx), community.as_deref())
                        .await?
                }
                _ => continue,
            };
            return Ok(Some(Decision {
                trial: Arc::clone(trial),
                arm,
                unit_id,
                community,
                excluded_reason: None,
            }));
        }
        Ok(None)
    }

    async fn blocked(
        &self,
        trial: &Arc<RunningTrial>,
        unit_id: &str,
        stratum: String,
        community: Option<&str>,
    ) -> Result<String, StoreError> {
        if let Some(arm) = self.exposures.cached_arm(trial.id, unit_id) {
            return Ok(arm);
        }
        let unit = pseudonymise(&self.config.study_key, unit_id);
        let t = Arc::clone(trial);
        let stratum_for_arm = stratum.clone();
        let arm_for = move |position: i64| {
            blocked_arm(&t.spec, t.seed, &stratum_for_arm, position as u64)
                .variant
                .clone()
        };
        let (record, _) = self
            .store
            .assign_sequential(
                &NewSequentialAssignment {
                    trial_id: trial.id,
                    unit: unit.as_str(),
                    stratum: Some(&stratum),
                    community,
                    trial_version: trial.version,
                    at: self.clock.now(),
                },
                &arm_for,
            )
            .await?;
        self.exposures.remember_arm(trial.id, unit_id, &record.arm);
        Ok(record.arm)
    }
}
