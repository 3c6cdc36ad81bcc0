//! Survey management shared by the API and the CLI: publishing instrument
//! versions, creating campaigns for a trial's waves, personal links, and
//! reading results and per-unit scale scores.

use chrono::{DateTime, Utc};
use commonlab_core::experiments::parse_trial;
use commonlab_core::privacy::{pseudonymise, StudyKey};
use commonlab_core::surveys::token::{sign, TokenClaims};
use commonlab_core::surveys::{parse_instrument, Instrument};
use commonlab_store::{
    CampaignRecord, InstrumentRecord, NewCampaign, NewInstrument, NewInvitation, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::results::{self, SurveyResults, UnitScaleScore};
use crate::audit::ChangeMeta;
use crate::config::SurveyKeys;
use crate::error::Error;

/// Most units one links request may name.
pub const MAX_LINKS_PER_REQUEST: usize = 10_000;
/// Longest raw unit id accepted, in bytes.
pub const MAX_UNIT_ID_BYTES: usize = 256;
/// Longest community name accepted with an invitation, in bytes.
pub const MAX_COMMUNITY_BYTES: usize = 100;
/// The path of the survey page a personal link opens (`/s/{token}`).
pub const LINK_PATH: &str = "/s/";

fn need_reason(meta: &ChangeMeta<'_>) -> Result<(), Error> {
    if meta.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    Ok(())
}

/// Parses `source` (every problem with its line and field) and publishes
/// its version. The same content again is a no-op (`false`); other content
/// under a published version is refused (409): a changed instrument needs a
/// new version, so that answers keep the version they were given under.
pub async fn publish(
    store: &Store,
    source: &str,
    file: &str,
    meta: &ChangeMeta<'_>,
) -> Result<(InstrumentRecord, bool), Error> {
    need_reason(meta)?;
    let instrument = parse_instrument(source, file)?;
    let hash = hex::encode(Sha256::digest(source.as_bytes()));
    let published = store
        .publish_instrument(&NewInstrument {
            key: &instrument.key,
            version: i64::from(instrument.version),
            source,
            hash: &hash,
            actor: meta.actor,
            reason: meta.reason,
            at: meta.at,
        })
        .await?;
    Ok(published)
}

/// A published instrument version, parsed.
pub async fn instrument(store: &Store, key: &str, version: i64) -> Result<Instrument, Error> {
    let record = store.instrument(key, version).await?.ok_or_else(|| {
        StoreError::NotFound(format!("published survey '{key}' version {version}"))
    })?;
    Ok(parse_instrument(
        &record.source,
        &format!("{key} v{version}"),
    )?)
}

/// A campaign to create (the API's body, the CLI's flags).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub key: String,
    pub instrument: String,
    pub version: i64,
    #[serde(default)]
    pub trial: Option<String>,
    pub wave: String,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    /// The survey-trigger flag's key (`docs/surveys.md`, "In-app"); when
    /// absent, the trial wave's `trigger_flag`, if any.
    #[serde(default)]
    pub trigger_flag: Option<String>,
    #[serde(default)]
    pub reason: String,
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

const KEY_RULE: &str =
    "lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters";

/// Creates a campaign of a published instrument version for a wave. With
/// a trial, the trial must name the wave and give this instrument in it
/// (`[[surveys]]` of its file). Refused with the field named: a key that
/// is not a key, an unpublished version, an unknown trial or wave, a
/// campaign that closes before it opens or has closed already, a
/// trigger flag that is not a flag key, is defined in a flag set, or
/// differs from the trial wave's `trigger_flag`. Dates
/// that do not fit the wave's timing are reported as `warnings`.
pub async fn create_campaign(
    store: &Store,
    req: &CampaignRequest,
    meta: &ChangeMeta<'_>,
) -> Result<CampaignSummary, Error> {
    need_reason(meta)?;
    for (field, value) in [
        ("/key", &req.key),
        ("/wave", &req.wave),
        ("/instrument", &req.instrument),
    ] {
        if !is_key(value) {
            return Err(Error::invalid(
                field,
                format!("{value:?} is not a valid key; expected {KEY_RULE}"),
            ));
        }
    }
    if req.closes_at <= req.opens_at {
        return Err(Error::invalid(
            "/closes_at",
            "the campaign must close after it opens",
        ));
    }
    if req.closes_at <= meta.at {
        return Err(Error::invalid(
            "/closes_at",
            "the campaign would be closed already",
        ));
    }
    if store
        .instrument(&req.instrument, req.version)
        .await?
        .is_none()
    {
        return Err(Error::invalid(
            "/version",
            format!(
                "survey '{}' version {} is not published (commonlab surveys publish)",
                req.instrument, req.version
            ),
        ));
    }
    let mut warnings = Vec::new();
    let mut trigger_flag = req.trigger_flag.clone();
    if let Some(trial) = &req.trial {
        let Some(record) = store.get_trial(trial).await? else {
            return Err(Error::invalid("/trial", format!("no trial '{trial}'")));
        };
        let spec = parse_trial(&record.spec_source, &format!("trial {trial}"))?;
        let given = spec.wave_instruments(&req.wave);
        if given.is_empty() {
            let waves: std::collections::BTreeSet<&str> =
                spec.surveys.iter().map(|s| s.wave.as_str()).collect();
            return Err(Error::invalid(
                "/wave",
                format!(
                    "trial '{trial}' has no wave '{}' (its waves: {})",
                    req.wave,
                    if waves.is_empty() {
                        "none".to_string()
                    } else {
                        waves.into_iter().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        }
        warnings = spec.wave_timing_warnings(
            &req.wave,
            req.opens_at.timestamp(),
            req.closes_at.timestamp(),
        );
        match (spec.wave_trigger_flag(&req.wave), &trigger_flag) {
            (Some(f), Some(given)) if f != given => {
                return Err(Error::invalid(
                    "/trigger_flag",
                    format!(
                        "wave '{}' of trial '{trial}' has trigger_flag {f:?}, not {given:?}; leave it out to take the wave's",
                        req.wave
                    ),
                ))
            }
            (Some(f), None) => trigger_flag = Some(f.to_string()),
            _ => {}
        }
        if !given.contains(&req.instrument.as_str()) {
            return Err(Error::invalid(
                "/instrument",
                format!(
                    "wave '{}' of trial '{trial}' gives {}, not '{}'",
                    req.wave,
                    given.join(", "),
                    req.instrument
                ),
            ));
        }
    }
    if let Some(flag) = &trigger_flag {
        check_trigger_flag(store, flag).await?;
    }
    let c = store
        .create_campaign(&NewCampaign {
            key: &req.key,
            instrument: &req.instrument,
            version: req.version,
            trial_key: req.trial.as_deref(),
            wave: &req.wave,
            opens_at: req.opens_at,
            closes_at: req.closes_at,
            trigger_flag: trigger_flag.as_deref(),
            actor: meta.actor,
            reason: meta.reason,
            at: meta.at,
        })
        .await?;
    let mut s = summary(store, c, meta.at).await?;
    s.warnings = warnings;
    Ok(s)
}

/// A survey-trigger flag must be a flag key that no flag set defines (the
/// server answers it; a flag of the set would shadow it).
async fn check_trigger_flag(store: &Store, flag: &str) -> Result<(), Error> {
    commonlab_core::flags::check_new_key(flag).map_err(|e| Error::invalid("/trigger_flag", e))?;
    for (set, _) in store.flag_set_versions().await? {
        let Some(head) = store.flag_set_head(&set).await? else {
            continue;
        };
        let doc: serde_json::Value = serde_json::from_str(&head.document).unwrap_or_default();
        if doc.get("flags").and_then(|f| f.get(flag)).is_some() {
            return Err(Error::invalid(
                "/trigger_flag",
                format!(
                    "{flag:?} is a flag of flag set '{set}'; a survey-trigger flag is answered by the server and must not be defined in a flag set (choose another key, or remove the flag)"
                ),
            ));
        }
    }
    Ok(())
}

/// A campaign with its counts, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    #[serde(flatten)]
    pub campaign: CampaignRecord,
    /// On creation: where the campaign's dates do not fit its wave's
    /// timing in the trial's file (advice; the campaign is created).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `scheduled`, `open` or `closed` (at the time of the request).
    pub state: &'static str,
    pub invited: i64,
    pub responses: commonlab_store::ResponseCounts,
}

pub fn campaign_state(c: &CampaignRecord, now: DateTime<Utc>) -> &'static str {
    if now < c.opens_at {
        "scheduled"
    } else if now < c.closes_at {
        "open"
    } else {
        "closed"
    }
}

pub async fn summary(
    store: &Store,
    c: CampaignRecord,
    now: DateTime<Utc>,
) -> Result<CampaignSummary, Error> {
    Ok(CampaignSummary {
        warnings: Vec::new(),
        state: campaign_state(&c, now),
        invited: store.invitation_count(c.id).await?,
        responses: store.response_counts(c.id).await?,
        campaign: c,
    })
}

pub async fn campaign(store: &Store, key: &str) -> Result<CampaignRecord, Error> {
    Ok(store
        .campaign(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("campaign '{key}'")))?)
}

/// A unit to invite: its raw id (pseudonymised here, never stored) and,
/// optionally, its community.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UnitRef {
    Id(String),
    WithCommunity {
        id: String,
        #[serde(default)]
        community: Option<String>,
    },
}

impl UnitRef {
    pub fn id(&self) -> &str {
        match self {
            UnitRef::Id(id) | UnitRef::WithCommunity { id, .. } => id,
        }
    }

    pub fn community(&self) -> Option<&str> {
        match self {
            UnitRef::Id(_) => None,
            UnitRef::WithCommunity { community, .. } => community.as_deref(),
        }
    }
}

/// One personal link.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// The raw id, as given (so the caller can send the link).
    pub unit: String,
    pub pseudonym: String,
    pub token: String,
    /// `/s/{token}` on the server.
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Links {
    pub campaign: String,
    pub wave: String,
    /// Every link expires when the campaign closes.
    pub expires_at: DateTime<Utc>,
    /// Units invited for the first time by this request.
    pub new_invitations: u64,
    pub links: Vec<Link>,
}

/// Invites `units` to the campaign and signs their personal links (which
/// expire when the campaign closes). Raw ids are pseudonymised with the
/// study key and never stored; the invitations (pseudonyms, communities)
/// are stored in one transaction, idempotently, so asking again gives the
/// same links. Refused with the field named: no units, more than
/// [`MAX_LINKS_PER_REQUEST`], an empty, over-long or control-character id
/// or community, a campaign that has closed.
pub async fn create_links(
    store: &Store,
    study_key: &StudyKey,
    keys: &SurveyKeys,
    campaign_key: &str,
    units: &[UnitRef],
    meta: &ChangeMeta<'_>,
) -> Result<Links, Error> {
    need_reason(meta)?;
    if units.is_empty() {
        return Err(Error::invalid("/units", "name at least one unit"));
    }
    if units.len() > MAX_LINKS_PER_REQUEST {
        return Err(Error::invalid(
            "/units",
            format!(
                "at most {MAX_LINKS_PER_REQUEST} units per request; {} given",
                units.len()
            ),
        ));
    }
    for (i, u) in units.iter().enumerate() {
        let id = u.id();
        if id.is_empty() || id.len() > MAX_UNIT_ID_BYTES || id.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("/units/{i}"),
                format!("a unit id is 1 to {MAX_UNIT_ID_BYTES} bytes without control characters"),
            ));
        }
        if let Some(c) = u.community() {
            if c.is_empty() || c.len() > MAX_COMMUNITY_BYTES || c.chars().any(char::is_control) {
                return Err(Error::invalid(
                    format!("/units/{i}/community"),
                    format!("a community is 1 to {MAX_COMMUNITY_BYTES} bytes without control characters"),
                ));
            }
        }
    }
    let c = campaign(store, campaign_key).await?;
    if meta.at >= c.closes_at {
        return Err(Error::Store(StoreError::InvalidState(format!(
            "campaign '{}' closed at {}; links are only made for a campaign that has not closed",
            c.key,
            c.closes_at.to_rfc3339()
        ))));
    }
    let mut links = Vec::with_capacity(units.len());
    let mut invitations = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        let pseudonym = pseudonymise(study_key, u.id()).to_string();
        let claims = TokenClaims::new(&c.key, &pseudonym, &c.wave, c.closes_at)
            .map_err(|e| Error::invalid(format!("/units/{i}"), e.to_string()))?;
        let token = sign(keys.token(), &claims);
        invitations.push(NewInvitation {
            unit: pseudonym.clone(),
            community: u.community().map(str::to_string),
        });
        links.push(Link {
            unit: u.id().to_string(),
            path: format!("{LINK_PATH}{token}"),
            pseudonym,
            token,
        });
    }
    let new_invitations = store
        .invite_units(c.id, &invitations, meta.actor, meta.reason, meta.at)
        .await?;
    Ok(Links {
        campaign: c.key,
        wave: c.wave,
        expires_at: c.closes_at,
        new_invitations,
        links,
    })
}

/// The campaign, its instrument, and its results.
pub async fn results(
    store: &Store,
    campaign_key: &str,
    min_cell: usize,
    include_text: bool,
) -> Result<(CampaignRecord, Instrument, SurveyResults), Error> {
    let c = campaign(store, campaign_key).await?;
    let instrument = instrument(store, &c.instrument, c.version).await?;
    let responses = store.responses(c.id).await?;
    let units = store.campaign_units(c.id).await?;
    let has_trial = c.trial_key.is_some();
    // Reliability fits a model per scale: on a blocking thread, off the
    // request workers.
    let (instrument, r) = match tokio::task::spawn_blocking(move || {
        let r = results::compute(
            &instrument,
            &responses,
            &units,
            has_trial,
            min_cell,
            include_text,
        );
        (instrument, r)
    })
    .await
    {
        Ok(done) => done,
        // Computing results does not panic on stored data (its tests); if
        // it did, that is our bug: let it surface as one (a 500 counted
        // by the panic layer).
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => return Err(StoreError::Unavailable("the server is shutting down".into()).into()),
    };
    Ok((c, instrument, r))
}

/// Every completed response's scale scores with the unit's arm and
/// community (by pseudonym): the per-unit outcome a trial's analysis can
/// take as a metric of the wave.
pub async fn campaign_scale_scores(
    store: &Store,
    campaign_key: &str,
) -> Result<(CampaignRecord, Vec<UnitScaleScore>), Error> {
    let c = campaign(store, campaign_key).await?;
    let instrument = instrument(store, &c.instrument, c.version).await?;
    let responses = store.responses(c.id).await?;
    let units = store.campaign_units(c.id).await?;
    let scores = results::unit_scale_scores(&instrument, &responses, &units);
    Ok((c, scores))
}

/// A trial's survey response across the waves of its campaigns (in
/// opening order), with each wave's and the pooled differential-response
/// test. [`StoreError::NotFound`] for an unknown trial.
pub async fn trial_response(
    store: &Store,
    trial: &str,
    min_cell: usize,
) -> Result<super::waves::TrialResponse, Error> {
    if store.get_trial(trial).await?.is_none() {
        return Err(StoreError::NotFound(format!("trial '{trial}'")).into());
    }
    let mut campaigns: Vec<CampaignRecord> = store
        .list_campaigns()
        .await?
        .into_iter()
        .filter(|c| c.trial_key.as_deref() == Some(trial))
        .collect();
    campaigns.sort_by(|a, b| (a.opens_at, &a.key).cmp(&(b.opens_at, &b.key)));
    let mut data = Vec::with_capacity(campaigns.len());
    for c in &campaigns {
        data.push((
            store.campaign_units(c.id).await?,
            store.responses(c.id).await?,
        ));
    }
    let waves: Vec<super::waves::WaveData<'_>> = campaigns
        .iter()
        .zip(&data)
        .map(|(c, (units, responses))| super::waves::WaveData {
            campaign: &c.key,
            wave: &c.wave,
            units,
            responses,
        })
        .collect();
    Ok(super::waves::trial_response(&waves, min_cell))
}
