//! The demo's survey waves: a campaign of a published instrument for a
//! wave of a trial, personal links for the members present, and the
//! simulated members' answers saved through the store's response API page
//! by page, as the survey pages save them (consent first, each page
//! checked with the instrument's own validation).

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Duration, Utc};
use commonlab_core::privacy::StudyKey;
use commonlab_core::surveys::{validate_page, Answer, Answers, Instrument, ItemKind};
use commonlab_server::config::SurveyKeys;
use commonlab_server::service::ChangeMeta;
use commonlab_server::surveys::service::{self, CampaignRequest, UnitRef, MAX_LINKS_PER_REQUEST};
use commonlab_sim::{Item, Simulation};
use commonlab_store::Store;
use serde_json::{Map, Value};

/// What a wave gave: its campaign, who was invited and who answered, and
/// the link of one member who did not (to try the pages).
pub struct Wave {
    pub campaign: String,
    pub invited: usize,
    pub completed: usize,
    pub unanswered_link: Option<String>,
}

/// A campaign of `instrument` for `wave` of `trial`, open from `opens` to
/// `closes`, with every present member invited at `at` and the simulated
/// answers saved at `at`.
#[allow(clippy::too_many_arguments)]
pub async fn run_wave(
    store: &Store,
    study_key: &StudyKey,
    keys: &SurveyKeys,
    sim: &mut Simulation,
    trial: &str,
    wave: &str,
    instrument: &str,
    (opens, closes): (DateTime<Utc>, DateTime<Utc>),
    at: DateTime<Utc>,
    actor: &str,
) -> Result<Wave> {
    let meta = ChangeMeta {
        actor,
        reason: "demo: a survey wave of the simulated communities",
        at,
    };
    let key = format!("{trial}-{wave}-{instrument}");
    let campaign = service::create_campaign(
        store,
        &CampaignRequest {
            key: key.clone(),
            instrument: instrument.to_string(),
            version: 1,
            trial: Some(trial.to_string()),
            wave: wave.to_string(),
            opens_at: opens,
            closes_at: closes,
            trigger_flag: None,
            reason: meta.reason.to_string(),
        },
        &meta,
    )
    .await
    .map_err(|e| anyhow!("campaign {key}: {e}"))?;
    let instr = service::instrument(store, instrument, campaign.campaign.version).await?;
    let members: Vec<(usize, UnitRef)> = sim
        .members()
        .iter()
        .enumerate()
        .filter(|(_, m)| m.present())
        .map(|(i, m)| {
            let community = sim.params().communities[m.community].name.clone();
            (
                i,
                UnitRef::WithCommunity {
                    id: m.id.clone(),
                    community: Some(community),
                },
            )
        })
        .collect();
    let mut wave_out = Wave {
        campaign: key.clone(),
        invited: members.len(),
        completed: 0,
        unanswered_link: None,
    };
    let items = likert_items(&instr);
    for chunk in members.chunks(MAX_LINKS_PER_REQUEST) {
        let units: Vec<UnitRef> = chunk.iter().map(|(_, u)| u.clone()).collect();
        let links = service::create_links(store, study_key, keys, &key, &units, &meta).await?;
        for ((i, _), link) in chunk.iter().zip(&links.links) {
            let role = sim.members()[*i].role.as_str();
            match sim.answer(*i, &items) {
                Some(likert) => {
                    let answers = answers(&instr, role, &likert);
                    save(
                        store,
                        campaign.campaign.id,
                        &link.pseudonym,
                        &instr,
                        &answers,
                        at,
                    )
                    .await?;
                    wave_out.completed += 1;
                }
                None if wave_out.unanswered_link.is_none() => {
                    wave_out.unanswered_link = Some(link.path.clone());
                }
                None => {}
            }
        }
    }
    Ok(wave_out)
}

/// The instrument's Likert-type and NPS items, in page order: what the
/// simulator answers from a member's latent trait.
fn likert_items(i: &Instrument) -> Vec<Item> {
    i.pages
        .iter()
        .flat_map(|p| &p.items)
        .filter_map(|item| match &item.kind {
            ItemKind::Likert { points, .. } => Some(Item {
                min: 1,
                max: i32::from(*points),
                reverse: item.reverse,
            }),
            ItemKind::Nps { .. } => Some(Item {
                min: 0,
                max: 10,
                reverse: false,
            }),
            _ => None,
        })
        .collect()
}

/// A respondent's answers: the simulated Likert answers in item order, a
/// single choice by the member's role (lurkers the first option, core
/// members the last); optional questions of other kinds are skipped.
fn answers(i: &Instrument, role: &str, likert: &[i32]) -> Answers {
    let rank = match role {
        "lurker" => 0.0,
        "peripheral" => 1.0 / 3.0,
        "contributor" => 2.0 / 3.0,
        _ => 1.0,
    };
    let mut out = Answers::new();
    let mut next = likert.iter();
    for item in i.pages.iter().flat_map(|p| &p.items) {
        match &item.kind {
            ItemKind::Likert { .. } | ItemKind::Nps { .. } => {
                if let Some(v) = next.next() {
                    out.insert(item.key.clone(), Answer::Number(f64::from(*v)));
                }
            }
            ItemKind::Single { options } if item.required && !options.is_empty() => {
                let k = ((options.len() - 1) as f64 * rank).round() as usize;
                out.insert(item.key.clone(), Answer::Text(options[k].code.clone()));
            }
            _ => {}
        }
    }
    out
}

/// Consent, then each page's answers, then completion, as the pages save
/// them; a page the instrument's validation refuses is an error (the demo
/// made a wrong answer).
async fn save(
    store: &Store,
    campaign: i64,
    unit: &str,
    i: &Instrument,
    all: &Answers,
    at: DateTime<Utc>,
) -> Result<()> {
    store
        .begin_response(campaign, unit, "en", &i.consent.version, true, at)
        .await?;
    let mut so_far = Answers::new();
    let pages = i.pages.len();
    for (p, page) in i.pages.iter().enumerate() {
        for item in &page.items {
            if let Some(a) = all.get(&item.key) {
                so_far.insert(item.key.clone(), a.clone());
            }
        }
        if let Err(errors) = validate_page(i, p, &so_far) {
            bail!(
                "the demo's answers to page {} of '{}' are refused: {}",
                p + 1,
                i.key,
                errors[0].message
            );
        }
        let json: Map<String, Value> = match serde_json::to_value(&so_far)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let at = at + Duration::seconds(30 * (p as i64 + 1));
        let last = p + 1 == pages;
        store
            .save_page(
                campaign,
                unit,
                p as i64,
                &json,
                &Map::new(),
                p as i64 + 1,
                last,
                at,
            )
            .await?;
    }
    Ok(())
}
