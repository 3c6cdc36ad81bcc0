//! What the survey-trigger flags read (`docs/surveys.md`, "In-app"): the
//! campaigns that name a trigger flag, and one unit's standing in them
//! (invited, its response's status) with its latest consent decisions.
//! Everything by pseudonym; nothing here writes.

use serde::Serialize;

use crate::error::db_err;
use crate::surveys::{CampaignRecord, ResponseStatus};
use crate::{Store, StoreError};

/// A unit's standing in one campaign with a trigger flag: invited or not
/// (it may have a response without an invitation), and its response's
/// status if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriggerStanding {
    pub campaign_id: i64,
    pub invited: bool,
    pub status: Option<ResponseStatus>,
}

#[derive(sqlx::FromRow)]
struct StandingRow {
    campaign_id: i64,
    invited: bool,
    status: Option<String>,
}

/// A unit's latest consent decision in one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LatestConsent {
    pub scope: String,
    pub status: String,
}

impl LatestConsent {
    /// Whether the latest decision withdrew consent.
    pub fn withdrawn(&self) -> bool {
        self.status == "withdrawn"
    }
}

impl Store {
    /// Every campaign that names a survey-trigger flag, by key (a few
    /// rows, through `survey_campaigns_trigger_flag_idx`).
    pub async fn trigger_campaigns(&self) -> Result<Vec<CampaignRecord>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(TRIGGER_CAMPAIGNS)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }

    /// `unit`'s (a pseudonym) standing in every campaign with a trigger
    /// flag where it is invited or has a response, by campaign, and its
    /// latest consent decision per scope. Two reads by primary key and
    /// index; no transaction (a decision recorded in between shows on the
    /// next read).
    pub async fn trigger_standing(
        &self,
        unit: &str,
    ) -> Result<(Vec<TriggerStanding>, Vec<LatestConsent>), StoreError> {
        let rows: Vec<StandingRow> = with_backend!(self, |db| sqlx::query_as(TRIGGER_STANDING)
            .bind(unit)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)?;
        let standing = rows
            .into_iter()
            .map(|r| {
                let status = r
                    .status
                    .map(|s| s.parse::<ResponseStatus>())
                    .transpose()
                    .map_err(|e| StoreError::InvalidState(e.to_string()))?;
                Ok(TriggerStanding {
                    campaign_id: r.campaign_id,
                    invited: r.invited,
                    status,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let consents = with_backend!(self, |db| sqlx::query_as(LATEST_CONSENTS)
            .bind(unit)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)?;
        Ok((standing, consents))
    }
}

const TRIGGER_CAMPAIGNS: &str = "SELECT id, key, instrument, version, trial_key, wave, opens_at, \
     closes_at, created_at, created_by, reason, trigger_flag FROM survey_campaigns \
     WHERE trigger_flag IS NOT NULL ORDER BY key";

/// $1 unit. One primary-key probe per campaign with a trigger flag.
const TRIGGER_STANDING: &str = "SELECT c.id AS campaign_id, \
     CASE WHEN i.unit IS NULL THEN FALSE ELSE TRUE END AS invited, r.status AS status \
     FROM survey_campaigns c \
     LEFT JOIN survey_invitations i ON i.campaign_id = c.id AND i.unit = $1 \
     LEFT JOIN survey_responses r ON r.campaign_id = c.id AND r.unit = $1 \
     WHERE c.trigger_flag IS NOT NULL AND (i.unit IS NOT NULL OR r.unit IS NOT NULL) \
     ORDER BY c.id";

/// $1 unit: its latest decision per scope (latest `at`, then last recorded,
/// as `Store::consent_state`).
const LATEST_CONSENTS: &str = "SELECT scope, status FROM (SELECT scope, status, \
     ROW_NUMBER() OVER (PARTITION BY scope ORDER BY at DESC, id DESC) AS n \
     FROM consents WHERE unit = $1) latest WHERE n = 1 ORDER BY scope";
