//! Surveys: published instrument versions (never changed), campaigns that
//! invite units to a wave, and one response per unit and campaign, saved
//! page by page under the unit's pseudonym only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::column::{micros, Ts};
use crate::error::{db_err, is_unique_violation, write_err, UnknownValue};
use crate::{Store, StoreError};

/// An instrument version to publish.
#[derive(Debug, Clone, Copy)]
pub struct NewInstrument<'a> {
    pub key: &'a str,
    pub version: i64,
    /// The TOML file, byte for byte.
    pub source: &'a str,
    /// SHA-256 of `source`, 64 lowercase hex characters.
    pub hash: &'a str,
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

/// A published instrument version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct InstrumentRecord {
    pub key: String,
    pub version: i64,
    pub source: String,
    pub hash: String,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
    pub reason: String,
}

/// A campaign to create.
#[derive(Debug, Clone, Copy)]
pub struct NewCampaign<'a> {
    pub key: &'a str,
    pub instrument: &'a str,
    pub version: i64,
    /// The trial whose arms the answers are analysed by, if any.
    pub trial_key: Option<&'a str>,
    pub wave: &'a str,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// The survey-trigger flag's key, if the campaign has one (checked by
    /// the caller, and by the database: a flag key).
    pub trigger_flag: Option<&'a str>,
    pub actor: &'a str,
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CampaignRecord {
    pub id: i64,
    pub key: String,
    pub instrument: String,
    pub version: i64,
    pub trial_key: Option<String>,
    pub wave: String,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: String,
    /// The survey-trigger flag (`docs/surveys.md`, "In-app"), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_flag: Option<String>,
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseStatus {
    Started,
    Completed,
    /// Consent was declined: nothing but the refusal is kept.
    Declined,
}

impl ResponseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Started => "started",
            ResponseStatus::Completed => "completed",
            ResponseStatus::Declined => "declined",
        }
    }
}

impl std::str::FromStr for ResponseStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ResponseStatus::Started,
            ResponseStatus::Completed,
            ResponseStatus::Declined,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| UnknownValue::new("response status", s))
    }
}

impl TryFrom<String> for ResponseStatus {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// One unit's response to one campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ResponseRecord {
    pub campaign_id: i64,
    /// The pseudonym.
    pub unit: String,
    #[sqlx(try_from = "String")]
    pub status: ResponseStatus,
    pub language: String,
    pub consent_version: String,
    /// The next page to answer (the number of pages once completed).
    pub page: i64,
    /// Every answer so far, by item key.
    #[sqlx(json)]
    pub answers: Map<String, Value>,
    /// The item order shown on each randomised page, by page number.
    #[sqlx(json)]
    pub orders: Map<String, Value>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Responses of a campaign by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResponseCounts {
    pub started: i64,
    pub completed: i64,
    pub declined: i64,
}

impl Store {
    /// Publishes an instrument version. Publishing the same key and version
    /// with the same content again is a no-op (returns the stored one and
    /// `false`); with other content it is refused
    /// ([`StoreError::InvalidState`]): a changed instrument is a new
    /// version, so that answers keep the version they were given under.
    pub async fn publish_instrument(
        &self,
        i: &NewInstrument<'_>,
    ) -> Result<(InstrumentRecord, bool), StoreError> {
        let at = Ts(micros(i.at));
        let inserted = with_backend!(self, |db| sqlx::query(INSERT_INSTRUMENT)
            .bind(i.key)
            .bind(i.version)
            .bind(i.source)
            .bind(i.hash)
            .bind(at)
            .bind(i.actor)
            .bind(i.reason)
            .execute(db.writer())
            .await
            .map(|r| r.rows_affected()));
        let new = match inserted {
            Ok(_) => true,
            Err(e) if is_unique_violation(&e) => false,
            Err(e) => return Err(write_err(e)),
        };
        let stored = self.instrument(i.key, i.version).await?.ok_or_else(|| {
            StoreError::NotFound(format!("survey '{}' version {}", i.key, i.version))
        })?;
        if !new && stored.hash != i.hash {
            return Err(StoreError::InvalidState(format!(
                "survey '{}' version {} is published with other content; publish the change as version {}",
                i.key,
                i.version,
                i.version + 1
            )));
        }
        Ok((stored, new))
    }

    pub async fn instrument(
        &self,
        key: &str,
        version: i64,
    ) -> Result<Option<InstrumentRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(SELECT_INSTRUMENT)
            .bind(key)
            .bind(version)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Every published version, by key then version.
    pub async fn list_instruments(&self) -> Result<Vec<InstrumentRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(LIST_INSTRUMENTS)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Creates a campaign of a published instrument version.
    /// [`StoreError::AlreadyExists`] for a taken key,
    /// [`StoreError::NotFound`] for an unpublished version,
    /// [`StoreError::InvalidState`] when it would close before it opens.
    pub async fn create_campaign(&self, c: &NewCampaign<'_>) -> Result<CampaignRecord, StoreError> {
        if c.closes_at <= c.opens_at {
            return Err(StoreError::InvalidState(format!(
                "campaign '{}' would close before it opens",
                c.key
            )));
        }
        if self.instrument(c.instrument, c.version).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "published survey '{}' version {}",
                c.instrument, c.version
            )));
        }
        let result = with_backend!(self, |db| sqlx::query(INSERT_CAMPAIGN)
            .bind(c.key)
            .bind(c.instrument)
            .bind(c.version)
            .bind(c.trial_key)
            .bind(c.wave)
            .bind(Ts(micros(c.opens_at)))
            .bind(Ts(micros(c.closes_at)))
            .bind(Ts(micros(c.at)))
            .bind(c.actor)
            .bind(c.reason)
            .bind(c.trigger_flag)
            .execute(db.writer())
            .await
            .map(|r| r.rows_affected()));
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("campaign '{}'", c.key)))
            }
            Err(e) => return Err(write_err(e)),
        }
        self.campaign(c.key)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("campaign '{}'", c.key)))
    }

    pub async fn campaign(&self, key: &str) -> Result<Option<CampaignRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(SELECT_CAMPAIGN)
            .bind(key)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    pub async fn list_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(LIST_CAMPAIGNS)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Starts (consent `granted`) or declines a unit's response, or returns
    /// the one it has (resuming from the same link). A declined response
    /// that is started later becomes a started one; a started or completed
    /// one is never reset.
    pub async fn begin_response(
        &self,
        campaign_id: i64,
        unit: &str,
        language: &str,
        consent_version: &str,
        granted: bool,
        at: DateTime<Utc>,
    ) -> Result<ResponseRecord, StoreError> {
        let status = if granted {
            ResponseStatus::Started
        } else {
            ResponseStatus::Declined
        };
        let at = Ts(micros(at));
        let result: Result<(), sqlx::Error> = with_backend!(self, async |db| {
            sqlx::query(BEGIN_RESPONSE)
                .bind(campaign_id)
                .bind(unit)
                .bind(status.as_str())
                .bind(language)
                .bind(consent_version)
                .bind(at)
                .execute(db.writer())
                .await?;
            Ok(())
        });
        result.map_err(write_err)?;
        self.response(campaign_id, unit)
            .await?
            .ok_or_else(|| StoreError::NotFound("the response just begun".into()))
    }

    /// Saves the answers of page `page` (every answer so far, merged by the
    /// caller), the order shown on randomised pages, and moves the response
    /// to `next_page`, completing it when `complete`. Only a started
    /// response at page `page` is changed: a page posted twice, out of
    /// order, or after completion is refused ([`StoreError::InvalidState`]
    /// saying where the response stands), so nothing is mixed up.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_page(
        &self,
        campaign_id: i64,
        unit: &str,
        page: i64,
        answers: &Map<String, Value>,
        orders: &Map<String, Value>,
        next_page: i64,
        complete: bool,
        at: DateTime<Utc>,
    ) -> Result<ResponseRecord, StoreError> {
        let status = if complete {
            ResponseStatus::Completed
        } else {
            ResponseStatus::Started
        };
        let at = Ts(micros(at));
        let changed = with_backend!(self, |db| sqlx::query(SAVE_PAGE)
            .bind(campaign_id)
            .bind(unit)
            .bind(page)
            .bind(Json(answers))
            .bind(Json(orders))
            .bind(next_page)
            .bind(status.as_str())
            .bind(at)
            .execute(db.writer())
            .await
            .map(|r| r.rows_affected()))
        .map_err(write_err)?;
        let now = self.response(campaign_id, unit).await?;
        match now {
            Some(r) if changed == 1 => Ok(r),
            Some(r) => Err(StoreError::InvalidState(format!(
                "the response is {} at page {}; page {} was not saved",
                r.status.as_str(),
                r.page + 1,
                page + 1
            ))),
            None => Err(StoreError::NotFound("a started response".into())),
        }
    }

    pub async fn response(
        &self,
        campaign_id: i64,
        unit: &str,
    ) -> Result<Option<ResponseRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(SELECT_RESPONSE)
            .bind(campaign_id)
            .bind(unit)
            .fetch_optional(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Every response of a campaign, by unit.
    pub async fn responses(&self, campaign_id: i64) -> Result<Vec<ResponseRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(LIST_RESPONSES)
            .bind(campaign_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    pub async fn response_counts(&self, campaign_id: i64) -> Result<ResponseCounts, StoreError> {
        let rows: Vec<(String, i64)> = with_backend!(self, |db| sqlx::query_as(COUNT_RESPONSES)
            .bind(campaign_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)?;
        let mut counts = ResponseCounts::default();
        for (status, n) in rows {
            match status.parse::<ResponseStatus>() {
                Ok(ResponseStatus::Started) => counts.started = n,
                Ok(ResponseStatus::Completed) => counts.completed = n,
                Ok(ResponseStatus::Declined) => counts.declined = n,
                Err(e) => return Err(StoreError::InvalidState(e.to_string())),
            }
        }
        Ok(counts)
    }
}

/// $1 key, $2 version, $3 source, $4 hash, $5 at, $6 actor, $7 reason.
const INSERT_INSTRUMENT: &str = "INSERT INTO survey_instruments \
     (key, version, source, hash, published_at, published_by, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

macro_rules! instrument_columns {
    () => {
        "key, version, source, hash, published_at, published_by, reason"
    };
}

const SELECT_INSTRUMENT: &str = concat!(
    "SELECT ",
    instrument_columns!(),
    " FROM survey_instruments WHERE key = $1 AND version = $2"
);

const LIST_INSTRUMENTS: &str = concat!(
    "SELECT ",
    instrument_columns!(),
    " FROM survey_instruments ORDER BY key, version"
);

/// $1 key … $10 reason, $11 trigger flag.
const INSERT_CAMPAIGN: &str = "INSERT INTO survey_campaigns \
     (key, instrument, version, trial_key, wave, opens_at, closes_at, created_at, created_by, \
      reason, trigger_flag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

macro_rules! campaign_columns {
    () => {
        "id, key, instrument, version, trial_key, wave, opens_at, closes_at, created_at, \
         created_by, reason, trigger_flag"
    };
}

const SELECT_CAMPAIGN: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    " FROM survey_campaigns WHERE key = $1"
);

const LIST_CAMPAIGNS: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    " FROM survey_campaigns ORDER BY key"
);

/// $1 campaign, $2 unit, $3 status, $4 language, $5 consent version, $6 at.
/// A declined response may still be started; nothing else is reset.
const BEGIN_RESPONSE: &str = "INSERT INTO survey_responses \
     (campaign_id, unit, status, language, consent_version, page, answers, orders, \
      started_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, '{}', '{}', $6, $6) \
     ON CONFLICT (campaign_id, unit) DO UPDATE SET status = excluded.status, \
     language = excluded.language, consent_version = excluded.consent_version, \
     updated_at = excluded.updated_at \
     WHERE survey_responses.status = 'declined' AND excluded.status = 'started'";

/// $1 campaign, $2 unit, $3 page, $4 answers, $5 orders, $6 next page,
/// $7 status, $8 at.
const SAVE_PAGE: &str = "UPDATE survey_responses SET answers = $4, orders = $5, page = $6, \
     status = $7, updated_at = $8, \
     completed_at = CASE WHEN $7 = 'completed' THEN $8 ELSE NULL END \
     WHERE campaign_id = $1 AND unit = $2 AND status = 'started' AND page = $3";

macro_rules! response_columns {
    () => {
        "campaign_id, unit, status, language, consent_version, page, answers, orders, \
         started_at, updated_at, completed_at"
    };
}

const SELECT_RESPONSE: &str = concat!(
    "SELECT ",
    response_columns!(),
    " FROM survey_responses WHERE campaign_id = $1 AND unit = $2"
);

const LIST_RESPONSES: &str = concat!(
    "SELECT ",
    response_columns!(),
    " FROM survey_responses WHERE campaign_id = $1 ORDER BY unit"
);

const COUNT_RESPONSES: &str =
    "SELECT status, COUNT(*) FROM survey_responses WHERE campaign_id = $1 GROUP BY status";
