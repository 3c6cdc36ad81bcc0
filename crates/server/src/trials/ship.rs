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
//! Two steps, not one transaction: the conclusion is recorded first (the
//! decision stands even if the flag change then fails, and the error says
//! how to apply it). Shipping an already concluded trial applies the flag
//! change only.

use super::service;
use crate::audit::ChangeMeta;
use crate::error::Error;
use commonlab_core::experiments::parse_trial;
use commonlab_store::{Store, StoreError, TrialRecord, TrialStatus};
use serde_json::Value;

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
    let trial = if record.status == TrialStatus::Concluded {
        record
    } else {
        service::conclude(store, key, meta, force).await?
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
    let change = crate::flags::service::change_flag(
        store,
        set,
        &flag,
        "ship",
        &ship_meta,
        None,
        |current| {
            let Some(current) = current else {
                return Err(Error::FlagNotFound(flag.clone()));
            };
            let mut next = current.clone();
            let Some(obj) = next.as_object_mut() else {
                return Err(Error::invalid("/ship", format!("flag {flag} is not an object")));
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
        },
    )
    .await
    .map_err(|e| match e {
        Error::Store(s) => Error::Store(StoreError::Unavailable(format!(
            "trial '{key}' is concluded but its flag change failed ({s}); apply it again with `commonlab experiments conclude {key} --ship {arm} --reason ...`"
        ))),
        other => other,
    })?;
    Ok(Shipped {
        trial,
        flag: spec.flag,
        variant: arm.to_string(),
        action,
        revision: change.revision,
    })
}
