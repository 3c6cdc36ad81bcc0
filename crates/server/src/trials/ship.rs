//! Applying a trial's decision to its flag (`commonlab experiments
//! conclude KEY --ship ARM`; `docs/reports.md`, "Decision and the flag
//! change"): conclude the trial (with its snapshot, as `conclude` does),
//! then serve ARM to everyone: the flag's default variant becomes ARM, its
//! targeting is removed and it is enabled. Shipping the control arm is a
//! roll-back, any other arm a roll-out. The flag change is a flag-set
//! revision (action `ship`) whose reason names the trial, the change and
//! where its report is, so the audit log links the decision to its
//! evidence.
//!
//! One transaction: the conclusion (its snapshot, and the deviation of a
//! forced one) and the flag-set revision are written together by
//! `Store::conclude_trial_and_ship`, or neither is (a failed or dropped
//! flag change leaves the trial as it was). The revision is computed from
//! the head it is appended to; if the head moved meanwhile, it is computed
//! again. Shipping an already concluded trial applies the flag change
//! only.

use super::service::{self, ConclusionFuture, Prepared, WriteConclusion};
use crate::audit::ChangeMeta;
use crate::error::Error;
use crate::flags::service::{change_flag, change_flag_with, StoreFuture, WriteRevision};
use commonlab_core::experiments::parse_trial;
use commonlab_store::{
    FlagDeviation, FlagSetAppend, FlagSetRevision, NewRevision, Store, StoreError, TrialRecord,
    TrialStatus,
};
use serde_json::Value;
use std::sync::Mutex;

/// What [`conclude_and_ship`] did.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub trial: TrialRecord,
    pub flag: String,
    pub variant: String,
    /// `roll_out` or `roll_back`.
    pub action: &'static str,
    /// The flag set's revision that serves `variant` to everyone.
    pub revision: i64,
}

/// Where a trial's report is served.
pub fn report_link(key: &str) -> String {
    format!("/api/v1/trials/{key}/report?format=html")
}

/// Concludes `key` (unless it is already concluded) and ships `arm`.
pub async fn conclude_and_ship(
    store: &Store,
    set: &str,
    key: &str,
    arm: &str,
    meta: &ChangeMeta<'_>,
    force: bool,
) -> Result<Shipped, Error> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec = parse_trial(&record.spec_source, &format!("trial {key}"))?;
    let Some(chosen) = spec.arms.iter().find(|a| a.variant == arm) else {
        let arms: Vec<&str> = spec.arms.iter().map(|a| a.variant.as_str()).collect();
        return Err(Error::invalid(
            "/ship",
            format!(
                "{arm:?} is not an arm of trial '{key}' (its arms: {})",
                arms.join(", ")
            ),
        ));
    };
    let action = if chosen.control {
        "roll_back"
    } else {
        "roll_out"
    };
    let reason = format!(
        "{} (trial '{key}' concluded: {} of variant {arm} to everyone; report: {}, or `commonlab report {key}`)",
        meta.reason.trim(),
        action.replace('_', " "),
        report_link(key)
    );
    let ship_meta = ChangeMeta {
        actor: meta.actor,
        reason: &reason,
        at: meta.at,
    };
    let flag = spec.flag.clone();
    let apply = |current: Option<&Value>| serve_to_everyone(&flag, arm, current);
    let (trial, revision) = if record.status == TrialStatus::Concluded {
        let change = change_flag(store, set, &flag, "ship", &ship_meta, None, apply).await?;
        (record, change.revision)
    } else {
        let writer = ShipWith {
            set,
            flag: &flag,
            meta: &ship_meta,
            apply: &apply,
            revision: Mutex::new(None),
        };
        let trial = service::conclude_with(store, key, meta, force, &writer).await?;
        let revision = writer
            .revision
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                Error::Store(StoreError::Unavailable(format!(
                    "trial '{key}': the flag change was not written"
                )))
            })?;
        (trial, revision)
    };
    Ok(Shipped {
        trial,
        flag: spec.flag,
        variant: arm.to_string(),
        action,
        revision,
    })
}

/// The flag served `arm` to everyone: its default variant, no targeting,
/// enabled.
fn serve_to_everyone(
    flag: &str,
    arm: &str,
    current: Option<&Value>,
) -> Result<Option<Value>, Error> {
    let Some(current) = current else {
        return Err(Error::FlagNotFound(flag.to_string()));
    };
    let mut next = current.clone();
    let Some(obj) = next.as_object_mut() else {
        return Err(Error::invalid(
            "/ship",
            format!("flag {flag} is not an object"),
        ));
    };
    let has_variant = obj
        .get("variants")
        .and_then(Value::as_object)
        .is_some_and(|v| v.contains_key(arm));
    if !has_variant {
        return Err(Error::invalid(
            "/ship",
            format!("flag {flag} has no variant {arm:?}"),
        ));
    }
    obj.insert("defaultVariant".into(), Value::String(arm.to_string()));
    obj.insert("state".into(), Value::String("ENABLED".into()));
    obj.shift_remove("targeting");
    Ok(Some(next))
}

type Apply<'a> = dyn Fn(Option<&Value>) -> Result<Option<Value>, Error> + Sync + 'a;

/// Writes a prepared conclusion with the flag change, in one transaction.
struct ShipWith<'x> {
    set: &'x str,
    flag: &'x str,
    meta: &'x ChangeMeta<'x>,
    apply: &'x Apply<'x>,
    /// The flag set's revision written with the conclusion.
    revision: Mutex<Option<i64>>,
}

impl WriteConclusion for ShipWith<'_> {
    fn write<'a>(&'a self, store: &'a Store, p: &'a Prepared<'a>) -> ConclusionFuture<'a> {
        Box::pin(async move {
            let writer = Together {
                p,
                trial: Mutex::new(None),
            };
            let change = change_flag_with(
                store, self.set, self.flag, "ship", self.meta, None, self.apply, &writer,
            )
            .await?;
            *self.revision.lock().unwrap_or_else(|e| e.into_inner()) = Some(change.revision);
            let trial = writer
                .trial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            trial.ok_or_else(|| {
                Error::Store(StoreError::Unavailable(format!(
                    "trial '{}': not concluded",
                    p.key
                )))
            })
        })
    }
}

/// The flag-set revision written by `Store::conclude_trial_and_ship`, with
/// the prepared conclusion.
struct Together<'a> {
    p: &'a Prepared<'a>,
    trial: Mutex<Option<TrialRecord>>,
}

impl WriteRevision for Together<'_> {
    fn write<'a>(
        &'a self,
        store: &'a Store,
        set: &'a str,
        expected: i64,
        change: &'a NewRevision<'a>,
        deviations: &'a [FlagDeviation<'a>],
    ) -> StoreFuture<'a, (FlagSetRevision, Vec<String>)> {
        Box::pin(async move {
            let p = self.p;
            let ship = FlagSetAppend {
                set,
                expected,
                change: *change,
                deviations,
            };
            let (trial, revision, noted) = store
                .conclude_trial_and_ship(
                    p.key,
                    p.checked,
                    p.spec_hash,
                    p.version,
                    p.snapshots,
                    p.change,
                    p.deviation,
                    &ship,
                )
                .await?;
            *self.trial.lock().unwrap_or_else(|e| e.into_inner()) = Some(trial);
            Ok((revision, noted))
        })
    }
}
