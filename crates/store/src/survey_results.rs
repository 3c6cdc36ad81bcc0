//! Survey invitations and the rows survey results are computed from: who a
//! campaign invited (the denominator of response rates), joined at analysis
//! time with the arm and community of the unit's first exposure to the
//! campaign's trial, by pseudonym. Responses themselves live in `surveys`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::QueryBuilder;

use crate::column::{micros, Ts};
use crate::error::{db_err, write_err};
use crate::{Store, StoreError};

/// Rows per multi-row `INSERT` (6 parameters each, far under SQLite's
/// 32,766).
const INVITATIONS_PER_STATEMENT: usize = 500;

/// A unit to invite: its pseudonym (64 lowercase hex characters) and, when
/// known, its community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvitation {
    pub unit: String,
    pub community: Option<String>,
}

/// One unit of a campaign as results see it: invited or not (a response
/// may come without an invitation, through an in-app survey), the
/// community it was invited with, and the arm and community of its first
/// exposure to the campaign's trial (none for units never exposed, excluded
/// by an override, or when the campaign has no trial).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CampaignUnit {
    pub unit: String,
    pub invited: bool,
    pub invited_community: Option<String>,
    pub arm: Option<String>,
    pub exposed_community: Option<String>,
}

impl CampaignUnit {
    /// The community given with the invitation, else the exposure's.
    pub fn community(&self) -> Option<&str> {
        self.invited_community
            .as_deref()
            .or(self.exposed_community.as_deref())
    }
}

impl Store {
    /// Records that `campaign_id` invited these units, in one transaction
    /// (all or nothing), in unit order; returns how many were new. Inviting
    /// a unit again changes nothing (the first invitation, with its
    /// community, is kept), so a retried request is harmless.
    pub async fn invite_units(
        &self,
        campaign_id: i64,
        units: &[NewInvitation],
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if units.is_empty() {
            return Ok(0);
        }
        let mut sorted: Vec<&NewInvitation> = units.iter().collect();
        sorted.sort_by(|a, b| a.unit.cmp(&b.unit));
        let at = Ts(micros(at));
        let result: Result<u64, sqlx::Error> = with_backend!(self, async |db| {
            let mut tx = db.begin_write().await?;
            let mut new = 0;
            for chunk in sorted.chunks(INVITATIONS_PER_STATEMENT) {
                let mut q = QueryBuilder::new(INSERT_INVITATIONS);
                q.push_values(chunk, |mut row, i| {
                    row.push_bind(campaign_id)
                        .push_bind(i.unit.as_str())
                        .push_bind(i.community.as_deref())
                        .push_bind(at)
                        .push_bind(actor)
                        .push_bind(reason);
                });
                q.push(" ON CONFLICT (campaign_id, unit) DO NOTHING");
                new += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        });
        result.map_err(write_err)
    }

    /// How many units the campaign invited.
    pub async fn invitation_count(&self, campaign_id: i64) -> Result<i64, StoreError> {
        with_backend!(self, |db| sqlx::query_scalar(COUNT_INVITATIONS)
            .bind(campaign_id)
            .fetch_one(db.reader())
            .await)
        .map_err(db_err)
    }

    /// Every unit the campaign invited or that responded to it, by unit,
    /// with the arm and community of its first exposure to the campaign's
    /// trial (not excluded). Arms are joined here, at analysis time, and
    /// never stored with a response.
    pub async fn campaign_units(&self, campaign_id: i64) -> Result<Vec<CampaignUnit>, StoreError> {
        with_backend!(self, |db| sqlx::query_as(CAMPAIGN_UNITS)
            .bind(campaign_id)
            .fetch_all(db.reader())
            .await)
        .map_err(db_err)
    }
}

const INSERT_INVITATIONS: &str = "INSERT INTO survey_invitations \
     (campaign_id, unit, community, invited_at, invited_by, reason) ";

const COUNT_INVITATIONS: &str = "SELECT COUNT(*) FROM survey_invitations WHERE campaign_id = $1";

/// $1 campaign. The trial is found by the campaign's `trial_key`.
const CAMPAIGN_UNITS: &str = "SELECT u.unit AS unit, \
     CASE WHEN i.unit IS NULL THEN FALSE ELSE TRUE END AS invited, \
     i.community AS invited_community, e.arm AS arm, e.community AS exposed_community \
     FROM (SELECT unit FROM survey_invitations WHERE campaign_id = $1 \
           UNION SELECT unit FROM survey_responses WHERE campaign_id = $1) u \
     LEFT JOIN survey_invitations i ON i.campaign_id = $1 AND i.unit = u.unit \
     LEFT JOIN exposures e ON e.unit = u.unit AND e.excluded = FALSE AND e.trial_id = \
       (SELECT t.id FROM trials t JOIN survey_campaigns c ON c.trial_key = t.key WHERE c.id = $1) \
     ORDER BY u.unit";
