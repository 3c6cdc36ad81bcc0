//! Privacy: consent decisions (append-only history per unit and scope),
//! erasure of a unit with its append-only log, the fingerprint of the study
//! key the stored pseudonyms were made with, and the counters replicas poll
//! to forget what they cached about units.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::AssertSqlSafe;

use crate::column::{micros, Ts};
use crate::error::{db_err, write_err, UnknownValue};
use crate::{Inner, Store, StoreError, BUMP_COUNTER};

/// A consent decision of a unit for a scope (see [`Store::consent_state`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ConsentRecord {
    pub unit: String,
    pub scope: String,
    /// The version of the consent text the decision was made on.
    pub text_version: String,
    /// `true` granted, `false` withdrawn (stored as `granted` / `withdrawn`).
    #[sqlx(rename = "status", try_from = "ConsentStatus")]
    pub granted: bool,
    pub at: DateTime<Utc>,
}

/// How many rows [`Store::erase_unit`] deleted; also the `counts` kept in
/// the erasure log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureOutcome {
    pub events: u64,
    pub exposures: u64,
    pub assignments: u64,
    pub consents: u64,
    /// Survey responses (0 in entries logged before surveys existed).
    #[serde(default)]
    pub survey_responses: u64,
    /// Survey invitations (0 in entries logged before they existed).
    #[serde(default)]
    pub survey_invitations: u64,
}

/// One entry of the append-only erasure log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ErasureRecord {
    pub unit: String,
    pub erased_at: DateTime<Utc>,
    #[sqlx(json)]
    pub counts: ErasureOutcome,
    /// Who erased the unit, and why (`None` only in entries logged before
    /// they were recorded).
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// What the database says about the study key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyKeyState {
    /// The fingerprint recorded at the key's first use, if any.
    pub fingerprint: Option<String>,
    /// Whether any pseudonymised row is stored (events, exposures,
    /// assignments, consents, erasure log, survey responses and
    /// invitations): a new key would match none.
    pub pseudonymised_data: bool,
}

/// The counters bumped by every erasure and every consent decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitVersions {
    pub erasures: i64,
    pub consents: i64,
}

/// `consents.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsentStatus {
    Granted,
    Withdrawn,
}

impl ConsentStatus {
    fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

impl From<bool> for ConsentStatus {
    fn from(granted: bool) -> Self {
        if granted {
            ConsentStatus::Granted
        } else {
            ConsentStatus::Withdrawn
        }
    }
}

impl From<ConsentStatus> for bool {
    fn from(status: ConsentStatus) -> bool {
        status == ConsentStatus::Granted
    }
}

impl std::str::FromStr for ConsentStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ConsentStatus::Granted, ConsentStatus::Withdrawn]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue::new("consent status", s))
    }
}

/// Units per consent query (bounds the statement's size).
const UNITS_PER_QUERY: usize = 5_000;

impl Store {
    /// Appends a consent decision of `unit` for `scope` (history is kept:
    /// [`Store::consent_state`] is the latest) and bumps the consent counter
    /// ([`Store::unit_versions`]) in the same transaction.
    pub async fn set_consent(
        &self,
        unit: &str,
        scope: &str,
        text_version: &str,
        granted: bool,
        at: DateTime<Utc>,
    ) -> Result<ConsentRecord, StoreError> {
        let record = ConsentRecord {
            unit: unit.to_string(),
            scope: scope.to_string(),
            text_version: text_version.to_string(),
            granted,
            at: micros(at),
        };
        let c = &record;
        let result: Result<(), sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            sqlx::query(INSERT_CONSENT)
                .bind(&c.unit)
                .bind(&c.scope)
                .bind(&c.text_version)
                .bind(ConsentStatus::from(c.granted).as_str())
                .bind(Ts(c.at))
                .execute(&mut *tx)
                .await?;
            sqlx::query(BUMP_COUNTER)
                .bind(CONSENTS_COUNTER)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        });
        result.map_err(write_err)?;
        Ok(record)
    }

    /// The latest consent decision of `unit` for `scope` (latest `at`; of
    /// equal ones the last recorded); `None` if there is none.
    pub async fn consent_state(
        &self,
        unit: &str,
        scope: &str,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(CONSENT_STATE)
            .bind(unit)
            .bind(scope)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Every consent decision of `unit`, all scopes, oldest first (for
    /// access requests and audits).
    pub async fn consent_history(&self, unit: &str) -> Result<Vec<ConsentRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(CONSENT_HISTORY)
            .bind(unit)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
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
            // The dialects differ in how a list is bound: SQLite takes it
            // as JSON text, PostgreSQL as an array.
            let rows: Vec<String> = match &self.inner {
                Inner::Sqlite(db) => {
                    let list = serde_json::to_string(chunk)
                        .map_err(|e| StoreError::InvalidState(e.to_string()))?;
                    let sql = units_with_consent("IN (SELECT value FROM json_each($2))");
                    sqlx::query_scalar(AssertSqlSafe(sql))
                        .bind(scope)
                        .bind(list)
                        .fetch_all(db.reader())
                        .await
                }
                Inner::Postgres(db) => {
                    sqlx::query_scalar(AssertSqlSafe(units_with_consent("= ANY($2)")))
                        .bind(scope)
                        .bind(chunk)
                        .fetch_all(db.reader())
                        .await
                }
            }
            .map_err(db_err)?;
            granted.extend(rows);
        }
        Ok(granted)
    }

    /// Erases everything stored about `unit` in ONE transaction: its
    /// events, exposures, assignments, consent history, survey
    /// responses and invitations, and appends the counts to the append-only erasure log (kept to replay erasures after
    /// a backup restore, see [`Store::erasures_since`]). Calling it again
    /// deletes nothing and logs again. Events of the unit committed after
    /// this returns are stored as usual: stop ingesting for the unit (record
    /// the withdrawal of consent) first. `actor` and `reason` (both
    /// required, not empty) go into the log; the erasure counter
    /// ([`Store::unit_versions`]) is bumped so that every replica drops what
    /// it cached about units.
    pub async fn erase_unit(
        &self,
        unit: &str,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<ErasureOutcome, StoreError> {
        if actor.trim().is_empty() || reason.trim().is_empty() {
            return Err(StoreError::InvalidState(
                "an erasure needs an actor and a reason for the erasure log".into(),
            ));
        }
        let at = Ts(micros(at));
        let result: Result<ErasureOutcome, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let mut deleted = [0u64; 6];
            for (n, statement) in deleted.iter_mut().zip([
                ERASE_EVENTS,
                ERASE_EXPOSURES,
                ERASE_ASSIGNMENTS,
                ERASE_CONSENTS,
                ERASE_SURVEY_RESPONSES,
                ERASE_SURVEY_INVITATIONS,
            ]) {
                *n = sqlx::query(statement)
                    .bind(unit)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            let [events, exposures, assignments, consents, survey_responses, survey_invitations] =
                deleted;
            let outcome = ErasureOutcome {
                events,
                exposures,
                assignments,
                consents,
                survey_responses,
                survey_invitations,
            };
            sqlx::query(INSERT_ERASURE)
                .bind(unit)
                .bind(at)
                .bind(Json(outcome))
                .bind(actor)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            sqlx::query(BUMP_COUNTER)
                .bind(ERASURES_COUNTER)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(outcome)
        });
        result.map_err(write_err)
    }

    /// The erasure log from `at` on (inclusive), oldest first.
    pub async fn erasures_since(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<ErasureRecord>, StoreError> {
        let at = Ts(micros(at));
        with_backend!(self, |db| sqlx::query_as(ERASURES_SINCE)
            .bind(at)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// The recorded study key fingerprint and whether pseudonymised data exist.
    pub async fn study_key_state(&self) -> Result<StudyKeyState, StoreError> {
        with_backend!(self, |db| {
            let fingerprint = sqlx::query_scalar(STUDY_KEY)
                .fetch_optional(db.reader())
                .await
                .map_err(db_err)?;
            let pseudonymised_data = sqlx::query_scalar(PSEUDONYMISED_DATA)
                .fetch_one(db.reader())
                .await
                .map_err(db_err)?;
            Ok(StudyKeyState {
                fingerprint,
                pseudonymised_data,
            })
        })
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
        let at = Ts(micros(at));
        let result: Result<String, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            sqlx::query(RECORD_STUDY_KEY)
                .bind(fingerprint)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            let recorded = sqlx::query_scalar(STUDY_KEY).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(recorded)
        });
        result.map_err(write_err)
    }

    /// The erasure and consent counters (see [`Store::erase_unit`],
    /// [`Store::set_consent`]).
    pub async fn unit_versions(&self) -> Result<UnitVersions, StoreError> {
        let rows: Vec<(String, i64)> = with_backend!(self, |db| sqlx::query_as(UNIT_VERSIONS)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)?;
        let mut v = UnitVersions::default();
        for (name, value) in rows {
            match name.as_str() {
                ERASURES_COUNTER => v.erasures = value,
                CONSENTS_COUNTER => v.consents = value,
                _ => {}
            }
        }
        Ok(v)
    }
}

/// The `change_counters` rows of erasures and consent decisions.
const ERASURES_COUNTER: &str = "erasures";
const CONSENTS_COUNTER: &str = "consents";

/// $1 unit, $2 scope, $3 text version, $4 status, $5 at.
const INSERT_CONSENT: &str =
    "INSERT INTO consents (unit, scope, text_version, status, at) VALUES ($1, $2, $3, $4, $5)";

const CONSENT_STATE: &str = "SELECT unit, scope, text_version, status, at \
     FROM consents WHERE unit = $1 AND scope = $2 ORDER BY at DESC, id DESC LIMIT 1";

const CONSENT_HISTORY: &str = "SELECT unit, scope, text_version, status, at \
     FROM consents WHERE unit = $1 ORDER BY at, id";

/// The latest decision per unit among `$2` for scope `$1`, kept when
/// granted; `{units}` is the dialect's membership test of `$2`.
fn units_with_consent(units: &str) -> String {
    format!(
        "SELECT unit FROM (SELECT unit, status, \
         ROW_NUMBER() OVER (PARTITION BY unit ORDER BY at DESC, id DESC) AS n \
         FROM consents WHERE scope = $1 AND unit {units}) latest \
         WHERE n = 1 AND status = 'granted'"
    )
}

/// Deletes the events of one unit ($1), through `events_unit_name_ts_idx`.
const ERASE_EVENTS: &str = "DELETE FROM events WHERE unit = $1";

/// The primary keys are (trial_id, unit): going through every trial id
/// makes these a handful of index lookups instead of a scan of the
/// table (trials are few; exposures and assignments many).
const ERASE_EXPOSURES: &str =
    "DELETE FROM exposures WHERE trial_id IN (SELECT id FROM trials) AND unit = $1";

const ERASE_ASSIGNMENTS: &str =
    "DELETE FROM assignments WHERE trial_id IN (SELECT id FROM trials) AND unit = $1";

const ERASE_CONSENTS: &str = "DELETE FROM consents WHERE unit = $1";
const ERASE_SURVEY_RESPONSES: &str = "DELETE FROM survey_responses WHERE unit = $1";
const ERASE_SURVEY_INVITATIONS: &str = "DELETE FROM survey_invitations WHERE unit = $1";

/// $1 unit, $2 at, $3 counts (JSON), $4 actor, $5 reason.
const INSERT_ERASURE: &str = "INSERT INTO erasure_log \
     (unit, erased_at, counts, actor, reason) VALUES ($1, $2, $3, $4, $5)";

const ERASURES_SINCE: &str = "SELECT unit, erased_at, counts, actor, reason \
     FROM erasure_log WHERE erased_at >= $1 ORDER BY erased_at, id";

const STUDY_KEY: &str = "SELECT fingerprint FROM study_key WHERE id = 1";

/// $1 fingerprint, $2 at.
const RECORD_STUDY_KEY: &str = "INSERT INTO study_key (id, fingerprint, recorded_at) \
     VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";

const PSEUDONYMISED_DATA: &str = "SELECT EXISTS (SELECT 1 FROM events) \
     OR EXISTS (SELECT 1 FROM exposures) OR EXISTS (SELECT 1 FROM assignments) \
     OR EXISTS (SELECT 1 FROM consents) OR EXISTS (SELECT 1 FROM erasure_log) \
     OR EXISTS (SELECT 1 FROM survey_responses) OR EXISTS (SELECT 1 FROM survey_invitations)";

const UNIT_VERSIONS: &str =
    "SELECT name, value FROM change_counters WHERE name IN ('erasures', 'consents')";
