//! Privacy bookkeeping: the fingerprint of the study key the stored
//! pseudonyms were made with, the consent lookup of a whole batch, and the
//! counters replicas poll to forget what they cached about units.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::{micros, Inner, Store, StoreError};

/// What the database says about the study key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyKeyState {
    /// The fingerprint recorded at the key's first use, if any.
    pub fingerprint: Option<String>,
    /// Whether any pseudonymised row is stored (events, exposures,
    /// assignments, consents, erasure log): a new key would match none.
    pub pseudonymised_data: bool,
}

/// The counters bumped by every erasure and every consent decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitVersions {
    pub erasures: i64,
    pub consents: i64,
}

/// Units per consent query (bounds the statement's size).
const UNITS_PER_QUERY: usize = 5_000;

impl Store {
    /// The recorded study key fingerprint and whether pseudonymised data exist.
    pub async fn study_key_state(&self) -> Result<StudyKeyState, StoreError> {
        dispatch!(self.study_key_state())
    }

    /// Records `fingerprint` (16 lowercase hex digits) as the database's
    /// study key unless one is recorded already, in one transaction, and
    /// returns the recorded one: `fingerprint` itself, or the other key's
    /// when another process recorded first. Never replaces a recorded one.
    pub async fn record_study_key(
        &self,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        dispatch!(self.record_study_key(fingerprint, micros(at)))
    }

    /// The erasure and consent counters (see [`Store::erase_unit`],
    /// [`Store::set_consent`]).
    pub async fn unit_versions(&self) -> Result<UnitVersions, StoreError> {
        dispatch!(self.unit_versions())
    }

    /// Of `units`, those whose latest consent decision for `scope` is a
    /// grant ([`Store::consent_state`] for many units: one query per
    /// 5,000 distinct units).
    pub async fn units_with_consent(
        &self,
        units: &[&str],
        scope: &str,
    ) -> Result<HashSet<String>, StoreError> {
        let mut distinct: Vec<&str> = units.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let mut granted = HashSet::new();
        for chunk in distinct.chunks(UNITS_PER_QUERY) {
            granted.extend(dispatch!(self.units_with_consent(chunk, scope))?);
        }
        Ok(granted)
    }
}

pub(crate) const STUDY_KEY: &str = "SELECT fingerprint FROM study_key WHERE id = 1";

/// $1 fingerprint, $2 at.
pub(crate) const RECORD_STUDY_KEY: &str = "INSERT INTO study_key (id, fingerprint, recorded_at) \
     VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";

pub(crate) const PSEUDONYMISED_DATA: &str = "SELECT EXISTS (SELECT 1 FROM events) \
     OR EXISTS (SELECT 1 FROM exposures) OR EXISTS (SELECT 1 FROM assignments) \
     OR EXISTS (SELECT 1 FROM consents) OR EXISTS (SELECT 1 FROM erasure_log)";

pub(crate) const UNIT_VERSIONS: &str =
    "SELECT name, value FROM change_counters WHERE name IN ('erasures', 'consents')";

/// The latest decision per unit among `$2` for scope `$1`, kept when
/// granted; `{units}` is the dialect's membership test of `$2`.
pub(crate) fn units_with_consent(units: &str) -> String {
    format!(
        "SELECT unit FROM (SELECT unit, status, \
         ROW_NUMBER() OVER (PARTITION BY unit ORDER BY at DESC, id DESC) AS n \
         FROM consents WHERE scope = $1 AND unit {units}) latest \
         WHERE n = 1 AND status = 'granted'"
    )
}

pub(crate) fn unit_versions(rows: Vec<(String, i64)>) -> UnitVersions {
    let mut v = UnitVersions::default();
    for (name, value) in rows {
        match name.as_str() {
            "erasures" => v.erasures = value,
            "consents" => v.consents = value,
            _ => {}
        }
    }
    v
}
