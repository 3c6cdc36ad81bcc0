//! Survey results of one campaign, computed from its stored responses and
//! units (pure: [`compute`]; the store is read by `surveys::service`):
//!
//! - per respondent: answers raw and recoded, scale scores, completion
//!   state and time;
//! - per scale: the score's distribution overall and per arm, Cronbach's
//!   alpha with its 95% Feldt interval, corrected item-total correlations
//!   and alpha if deleted (`stats::survey`), McDonald's omega from a
//!   one-factor model (`stats::omega`), and a warning when alpha is below
//!   0.7 or above 0.95;
//! - response rates per arm and per community, with the differential
//!   response test (`stats::response`).
//!
//! Arms come from the unit's first exposure to the campaign's trial,
//! joined by pseudonym when results are computed; they are never stored
//! with a response nor shown to a respondent. Every breakdown (an arm, a
//! community) with fewer than `min_cell` respondents is withheld: its
//! counts, rates and means are `null` and `suppressed` is set, and a
//! respondent's arm or community in such a cell is not shown.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use commonlab_core::surveys::results::{is_free_text, score_respondent, ItemValue};
use commonlab_core::surveys::{score_scale, Answer, Answers, Instrument, Scoring};
use commonlab_stats::omega::{mcdonald_omega, Omega};
use commonlab_stats::response::{check, ArmResponse, ResponseTest};
use commonlab_stats::survey::cronbach_alpha;
use commonlab_store::{CampaignUnit, ResponseRecord, ResponseStatus};
use serde::Serialize;

/// Alpha below this: the items may not measure one thing.
pub const ALPHA_LOW: f64 = 0.7;
/// Alpha above this: the items are probably redundant.
pub const ALPHA_HIGH: f64 = 0.95;

/// A value, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Computed<T> {
    Value(T),
    Error { error: String },
}

impl<T> Computed<T> {
    fn from_result<E: std::fmt::Display>(r: Result<T, E>) -> Self {
        match r {
            Ok(v) => Computed::Value(v),
            Err(e) => Computed::Error {
                error: e.to_string(),
            },
        }
    }

    fn error(why: impl Into<String>) -> Self {
        Computed::Error { error: why.into() }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Computed::Value(v) => Some(v),
            Computed::Error { .. } => None,
        }
    }
}

/// Everything the results of a campaign show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SurveyResults {
    /// Breakdowns with fewer respondents than this are withheld.
    pub min_cell: usize,
    /// Whether free-text answers are included (a role allowed to see them).
    pub free_text_included: bool,
    pub response: ResponseRates,
    pub scales: Vec<ScaleResult>,
    pub respondents: Vec<Respondent>,
}

/// One unit's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Respondent {
    /// The pseudonym.
    pub unit: String,
    pub status: ResponseStatus,
    pub invited: bool,
    pub language: String,
    pub consent_version: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds from the start to completion.
    pub completion_seconds: Option<i64>,
    /// `null` when the unit has no arm or its arm's cell is withheld.
    pub arm: Option<String>,
    /// `null` when unknown or its community's cell is withheld.
    pub community: Option<String>,
    /// Which of `arm`, `community` are withheld as small cells.
    pub suppressed: Vec<&'static str>,
    /// Answered items (free text only when included).
    pub items: BTreeMap<String, ItemValue>,
    /// Scale scores (`null`: an item of the scale is unanswered).
    pub scales: BTreeMap<String, Option<f64>>,
}

/// n, mean and standard deviation of scale scores (for an NPS scale the
/// mean is the group's NPS).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The arm (in `by_arm`); absent overall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    pub n: Option<usize>,
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub suppressed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleResult {
    pub key: String,
    pub scoring: &'static str,
    pub items: Vec<String>,
    pub summary: Summary,
    pub by_arm: Vec<Summary>,
    pub reliability: Computed<Reliability>,
}

/// Internal consistency of a scale over the respondents with every item
/// answered, on the items as the scale scores them (reverse coding and the
/// published formulas' recoding applied).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reliability {
    pub n: usize,
    pub alpha: f64,
    /// 95% Feldt interval.
    pub alpha_ci95: (f64, f64),
    pub items: Vec<ItemReliability>,
    pub omega: Computed<Omega>,
    /// Set when alpha < 0.7 or > 0.95.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemReliability {
    pub item: String,
    pub item_total_r: f64,
    /// Correlation with the total of the other items.
    pub corrected_item_total_r: Option<f64>,
    pub alpha_if_deleted: Option<f64>,
}

/// Counts of one breakdown; `null` when withheld.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateCell {
    /// The arm or community (absent for the whole campaign).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub invited: Option<u64>,
    pub started: Option<u64>,
    pub completed: Option<u64>,
    pub declined: Option<u64>,
    /// completed / invited.
    pub rate: Option<f64>,
    pub suppressed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseRates {
    /// Invited units (the campaign as a whole is never withheld).
    pub overall: RateCell,
    /// Responses from units that were not invited (in-app surveys); not in
    /// any rate.
    pub uninvited_responses: u64,
    /// Invited units by the arm of their first exposure.
    pub by_arm: Vec<RateCell>,
    /// Invited units without an arm (never exposed, excluded by an
    /// override, or the campaign has no trial).
    pub without_arm: RateCell,
    pub by_community: Vec<RateCell>,
    /// Whether the arms complete at different rates; `null` without a trial.
    pub differential: Option<Computed<Differential>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Differential {
    pub test: ResponseTest,
    pub chi2: f64,
    pub df: f64,
    pub p_value: f64,
    pub fisher_p: Option<f64>,
    /// p < 0.001: the arms respond at different rates.
    pub flagged: bool,
    pub message: String,
}

/// One unit's score on one scale, with the arm and community of its first
/// exposure: the per-unit outcome a trial analysis takes
/// ([`unit_scale_scores`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitScaleScore {
    pub unit: String,
    pub arm: Option<String>,
    pub community: Option<String>,
    pub scale: String,
    pub score: f64,
}

/// The answers of a stored response (entries that are not answers are
/// left out: the pages only store validated ones).
pub fn answers_of(r: &ResponseRecord) -> Answers {
    r.answers
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value::<Answer>(v.clone()).ok()?)))
        .collect()
}

/// Every completed response's score on every scale it has one for, by
/// unit then scale (the pure core of `surveys::service::campaign_scale_scores`).
pub fn unit_scale_scores(
    instrument: &Instrument,
    responses: &[ResponseRecord],
    units: &[CampaignUnit],
) -> Vec<UnitScaleScore> {
    let by_unit: BTreeMap<&str, &CampaignUnit> =
        units.iter().map(|u| (u.unit.as_str(), u)).collect();
    let mut out = Vec::new();
    for r in responses
        .iter()
        .filter(|r| r.status == ResponseStatus::Completed)
    {
        let answers = answers_of(r);
        let u = by_unit.get(r.unit.as_str());
        for s in &instrument.scales {
            if let Some(score) = score_scale(instrument, s, &answers) {
                out.push(UnitScaleScore {
                    unit: r.unit.clone(),
                    arm: u.and_then(|u| u.arm.clone()),
                    community: u.and_then(|u| u.community().map(str::to_string)),
                    scale: s.key.clone(),
                    score: score.score,
                });
            }
        }
    }
    out
}

/// The results of a campaign (see the module docs).
pub fn compute(
    instrument: &Instrument,
    responses: &[ResponseRecord],
    units: &[CampaignUnit],
    has_trial: bool,
    min_cell: usize,
    include_text: bool,
) -> SurveyResults {
    let by_unit: BTreeMap<&str, &CampaignUnit> =
        units.iter().map(|u| (u.unit.as_str(), u)).collect();
    let arm_of = |unit: &str| by_unit.get(unit).and_then(|u| u.arm.as_deref());
    let community_of = |unit: &str| by_unit.get(unit).and_then(|u| u.community());
    let completed: Vec<&ResponseRecord> = responses
        .iter()
        .filter(|r| r.status == ResponseStatus::Completed)
        .collect();
    // Respondents (completed responses) per arm and per community.
    let mut per_arm: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_community: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &completed {
        if let Some(a) = arm_of(&r.unit) {
            *per_arm.entry(a).or_default() += 1;
        }
        if let Some(c) = community_of(&r.unit) {
            *per_community.entry(c).or_default() += 1;
        }
    }
    let big = |count: Option<&usize>| count.copied().unwrap_or(0) >= min_cell;

    let hidden: BTreeSet<&str> = instrument
        .items()
        .filter(|(_, i)| is_free_text(i) && !include_text)
        .map(|(_, i)| i.key.as_str())
        .collect();
    let respondents = responses
        .iter()
        .map(|r| {
            let answers = answers_of(r);
            let mut scores = score_respondent(instrument, &answers);
            scores.items.retain(|k, _| !hidden.contains(k.as_str()));
            if !include_text {
                // A multiple choice keeps its codes, not its "other" text.
                for v in scores.items.values_mut() {
                    if let Answer::Choices { other, .. } = &mut v.raw {
                        *other = None;
                    }
                }
            }
            let mut suppressed = Vec::new();
            let arm = arm_of(&r.unit).filter(|a| {
                let ok = big(per_arm.get(a));
                if !ok {
                    suppressed.push("arm");
                }
                ok
            });
            let community = community_of(&r.unit).filter(|c| {
                let ok = big(per_community.get(c));
                if !ok {
                    suppressed.push("community");
                }
                ok
            });
            Respondent {
                unit: r.unit.clone(),
                status: r.status,
                invited: by_unit.get(r.unit.as_str()).is_some_and(|u| u.invited),
                language: r.language.clone(),
                consent_version: r.consent_version.clone(),
                started_at: r.started_at,
                completed_at: r.completed_at,
                completion_seconds: r.completed_at.map(|c| (c - r.started_at).num_seconds()),
                arm: arm.map(str::to_string),
                community: community.map(str::to_string),
                suppressed,
                items: scores.items,
                scales: scores.scales,
            }
        })
        .collect();

    let scales = instrument
        .scales
        .iter()
        .map(|s| {
            let scored: Vec<(&str, Vec<f64>, f64)> = responses
                .iter()
                .filter(|r| r.status != ResponseStatus::Declined)
                .filter_map(|r| {
                    let x = score_scale(instrument, s, &answers_of(r))?;
                    Some((r.unit.as_str(), x.recoded, x.score))
                })
                .collect();
            let all: Vec<f64> = scored.iter().map(|(_, _, x)| *x).collect();
            let mut arms: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for (unit, _, x) in &scored {
                if let Some(a) = arm_of(unit) {
                    arms.entry(a).or_default().push(*x);
                }
            }
            let rows: Vec<Vec<f64>> = scored.iter().map(|(_, r, _)| r.clone()).collect();
            ScaleResult {
                key: s.key.clone(),
                scoring: s.scoring.name(),
                items: s.items.clone(),
                summary: summary(None, &all, min_cell),
                by_arm: arms
                    .iter()
                    .map(|(a, xs)| summary(Some(a), xs, min_cell))
                    .collect(),
                reliability: reliability(s.scoring, &s.items, &rows, min_cell),
            }
        })
        .collect();

    SurveyResults {
        min_cell,
        free_text_included: include_text,
        response: rates(responses, units, has_trial, min_cell),
        scales,
        respondents,
    }
}

fn summary(arm: Option<&str>, xs: &[f64], min_cell: usize) -> Summary {
    let n = xs.len();
    let suppressed = arm.is_some() && n < min_cell;
    if suppressed || n == 0 {
        return Summary {
            arm: arm.map(str::to_string),
            n: (!suppressed).then_some(n),
            mean: None,
            sd: None,
            suppressed,
        };
    }
    let nf = n as f64;
    let mean = xs.iter().sum::<f64>() / nf;
    let sd =
        (n > 1).then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt());
    Summary {
        arm: arm.map(str::to_string),
        n: Some(n),
        mean: Some(mean),
        sd,
        suppressed,
    }
}

fn reliability(
    scoring: Scoring,
    items: &[String],
    rows: &[Vec<f64>],
    min_cell: usize,
) -> Computed<Reliability> {
    if items.len() < 2 {
        return Computed::error(format!(
            "a {} scale of one item has no internal consistency to report",
            scoring.name()
        ));
    }
    if rows.len() < min_cell {
        return Computed::error(format!(
            "withheld: {} respondents with every item answered, fewer than {min_cell}",
            rows.len()
        ));
    }
    let a = match cronbach_alpha(rows, 0.95) {
        Ok(a) => a,
        Err(e) => return Computed::error(e.to_string()),
    };
    let warning = if a.alpha < ALPHA_LOW {
        Some(format!(
            "alpha {:.2} is below {ALPHA_LOW}: the items may not measure one thing (check reverse coding and the corrected item-total correlations)",
            a.alpha
        ))
    } else if a.alpha > ALPHA_HIGH {
        Some(format!(
            "alpha {:.2} is above {ALPHA_HIGH}: some items are probably redundant",
            a.alpha
        ))
    } else {
        None
    };
    Computed::Value(Reliability {
        n: a.n,
        alpha: a.alpha,
        alpha_ci95: a.ci,
        items: a
            .item_stats
            .iter()
            .map(|s| ItemReliability {
                item: items[s.item].clone(),
                item_total_r: s.item_total_r,
                corrected_item_total_r: s.corrected_item_total_r,
                alpha_if_deleted: s.alpha_if_deleted,
            })
            .collect(),
        omega: Computed::from_result(mcdonald_omega(rows)),
        warning,
    })
}

#[derive(Default, Clone, Copy)]
struct Counts {
    invited: u64,
    started: u64,
    completed: u64,
    declined: u64,
}

impl Counts {
    fn cell(self, key: Option<&str>, min_cell: usize) -> RateCell {
        let suppressed = key.is_some() && (self.completed as usize) < min_cell;
        let show = |v: u64| (!suppressed).then_some(v);
        RateCell {
            key: key.map(str::to_string),
            invited: show(self.invited),
            started: show(self.started),
            completed: show(self.completed),
            declined: show(self.declined),
            rate: (!suppressed && self.invited > 0)
                .then(|| self.completed as f64 / self.invited as f64),
            suppressed,
        }
    }
}

fn rates(
    responses: &[ResponseRecord],
    units: &[CampaignUnit],
    has_trial: bool,
    min_cell: usize,
) -> ResponseRates {
    let status: BTreeMap<&str, ResponseStatus> = responses
        .iter()
        .map(|r| (r.unit.as_str(), r.status))
        .collect();
    let mut overall = Counts::default();
    let mut arms: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut communities: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut without_arm = Counts::default();
    let mut uninvited = 0;
    for u in units {
        if !u.invited {
            uninvited += u64::from(status.contains_key(u.unit.as_str()));
            continue;
        }
        let mut cells: Vec<&mut Counts> = vec![&mut overall];
        match u.arm.as_deref() {
            Some(a) => cells.push(arms.entry(a).or_default()),
            None => cells.push(&mut without_arm),
        }
        if let Some(c) = u.community() {
            cells.push(communities.entry(c).or_default());
        }
        for c in cells {
            c.invited += 1;
            match status.get(u.unit.as_str()) {
                Some(ResponseStatus::Started) => c.started += 1,
                Some(ResponseStatus::Completed) => c.completed += 1,
                Some(ResponseStatus::Declined) => c.declined += 1,
                None => {}
            }
        }
    }
    let differential = has_trial.then(|| {
        let table: Vec<ArmResponse> = arms
            .values()
            .map(|c| ArmResponse {
                invited: c.invited,
                responded: c.completed,
            })
            .collect();
        if table.len() < 2 {
            return Computed::error(format!(
                "needs invited units in at least two arms ({} so far)",
                table.len()
            ));
        }
        Computed::from_result(check(&table).map(|c| Differential {
            message: if c.flagged {
                format!(
                    "the arms complete the survey at different rates (p = {:.2e}): comparisons of survey outcomes between arms are biased by who answered",
                    c.p_value
                )
            } else {
                format!(
                    "no evidence that the arms complete the survey at different rates (p = {:.3})",
                    c.p_value
                )
            },
            test: c.test,
            chi2: c.chi2,
            df: c.df,
            p_value: c.p_value,
            fisher_p: c.fisher_p,
            flagged: c.flagged,
        }))
    });
    ResponseRates {
        overall: overall.cell(None, min_cell),
        uninvited_responses: uninvited,
        by_arm: arms
            .iter()
            .map(|(k, c)| c.cell(Some(k), min_cell))
            .collect(),
        without_arm: without_arm.cell(Some("(none)"), min_cell),
        by_community: communities
            .iter()
            .map(|(k, c)| c.cell(Some(k), min_cell))
            .collect(),
        differential,
    }
}
