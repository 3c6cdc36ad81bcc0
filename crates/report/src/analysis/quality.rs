//! Data-quality checks that fit the design: the sample-ratio mismatch test
//! where members are randomised individually; schedule adherence where
//! whole communities are; exposure counts per arm and community; the units
//! a developer's override excluded.

use super::community::arm_in;
use super::fetch::StoredTrial;
use super::members::arm_order;
use chrono::{DateTime, Utc};
use commonlab_stats::srm::{check, SRM_P_THRESHOLD};
use serde::Serialize;
use std::collections::BTreeMap;

/// Adherence below this share of a community's exposures in a period is
/// flagged.
pub const ADHERENCE_WARNING: f64 = 0.95;

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    /// Sample-ratio mismatch over the exposed units per arm (`hash`,
    /// `blocked`); `None` for community designs (see `srm_note`).
    pub srm: Option<Srm>,
    pub srm_note: Option<String>,
    /// Community designs: per community and period, the share of its
    /// exposures served the arm its schedule says, with the exposures per
    /// arm served.
    pub adherence: Vec<Adherence>,
    /// Exposed units per arm and community (excluded units apart).
    pub exposures: Vec<ExposureCountOut>,
    /// Units a developer's override excluded from the analysis.
    pub excluded: Excluded,
    /// Every warning above, in words.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Srm {
    pub arms: Vec<String>,
    pub observed: Vec<i64>,
    pub expected: Vec<f64>,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// p below [`SRM_P_THRESHOLD`].
    pub mismatch: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adherence {
    pub community: String,
    pub period: i64,
    pub scheduled_arm: String,
    pub exposures: i64,
    pub adherent: i64,
    pub share: f64,
    pub warning: bool,
    /// The exposures of the community in the period per arm served.
    pub served: Vec<Served>,
}

/// Exposures of one community in one period served one arm.
#[derive(Debug, Clone, Serialize)]
pub struct Served {
    pub arm: String,
    pub exposures: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExposureCountOut {
    pub arm: String,
    pub community: Option<String>,
    pub excluded: bool,
    pub units: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Every excluded unit.
    pub count: i64,
    /// The first of them (at most 1,000), oldest first.
    pub units: Vec<ExcludedUnit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExcludedUnit {
    /// The unit's pseudonym.
    pub unit: String,
    pub arm: String,
    pub community: Option<String>,
    pub exposed_at: DateTime<Utc>,
    pub reason: String,
}

pub(super) fn checks(t: &StoredTrial) -> Quality {
    let mut warnings = Vec::new();
    let exposures: Vec<ExposureCountOut> = t
        .exposures
        .iter()
        .map(|e| ExposureCountOut {
            arm: e.arm.clone(),
            community: e.community.clone(),
            excluded: e.excluded,
            units: e.n,
            first: e.first,
            last: e.last,
        })
        .collect();
    let excluded = Excluded {
        count: t.exposures.iter().filter(|e| e.excluded).map(|e| e.n).sum(),
        units: t
            .excluded
            .iter()
            .map(|e| ExcludedUnit {
                unit: e.unit.clone(),
                arm: e.arm.clone(),
                community: e.community.clone(),
                exposed_at: e.exposed_at,
                reason: e.excluded_reason.clone().unwrap_or_default(),
            })
            .collect(),
    };
    if excluded.count > 0 {
        warnings.push(format!(
            "{} units were served by a developer's override and are excluded from the analysis",
            excluded.count
        ));
    }
    let (srm, srm_note, adherence) = if t.spec.is_community_design() {
        let adherence = adherence(t);
        for a in adherence.iter().filter(|a| a.warning) {
            warnings.push(format!(
                "schedule adherence in {} period {} is {:.1}% (below {:.0}%): {} of {} exposures were served {}",
                a.community,
                a.period,
                100.0 * a.share,
                100.0 * ADHERENCE_WARNING,
                a.adherent,
                a.exposures,
                a.scheduled_arm
            ));
        }
        (
            None,
            Some("communities, not members, are randomised: a sample-ratio test over a handful of communities says nothing; schedule adherence per community and period is checked instead".to_string()),
            adherence,
        )
    } else {
        let s = srm(t);
        if s.mismatch {
            warnings.push(format!(
                "sample-ratio mismatch: p = {:.2e} < {SRM_P_THRESHOLD} over {:?} exposed units per arm ({:?} expected); the assignment or exposure logging is broken, do not trust the estimates",
                s.p_value.unwrap_or(0.0),
                s.observed,
                s.expected
            ));
        }
        (Some(s), None, Vec::new())
    };
    Quality {
        srm,
        srm_note,
        adherence,
        exposures,
        excluded,
        warnings,
    }
}

fn srm(t: &StoredTrial) -> Srm {
    let arms = arm_order(&t.spec);
    let observed: Vec<i64> = arms
        .iter()
        .map(|a| {
            t.exposures
                .iter()
                .filter(|e| !e.excluded && &e.arm == a)
                .map(|e| e.n)
                .sum()
        })
        .collect();
    let total_weight = t.spec.total_weight() as f64;
    let weights: Vec<f64> = arms
        .iter()
        .map(|a| t.spec.arm(a).map_or(0.0, |x| f64::from(x.weight)) / total_weight)
        .collect();
    let total: i64 = observed.iter().sum();
    let users: Vec<f64> = observed.iter().map(|&n| n as f64).collect();
    match check(&users, &weights) {
        Ok(r) => Srm {
            arms,
            observed,
            expected: r.expected,
            statistic: Some(r.statistic),
            p_value: Some(r.p_value),
            mismatch: r.mismatch,
            error: None,
        },
        Err(e) => Srm {
            arms,
            observed,
            expected: weights.iter().map(|w| w * total as f64).collect(),
            statistic: None,
            p_value: None,
            mismatch: false,
            error: Some(e.to_string()),
        },
    }
}

/// Per community and period of a community design: the exposures served
/// (every evaluation counted, `Store::add_period_exposures`), and the
/// share of them served the arm the schedule gives the community in that
/// period. An override that serves the scheduled arm is adherent: the
/// community got what its schedule says.
fn adherence(t: &StoredTrial) -> Vec<Adherence> {
    let mut cells: BTreeMap<(String, i64), Adherence> = BTreeMap::new();
    for e in &t.period_exposures {
        let Some(scheduled) = arm_in(t, &e.community, e.period) else {
            continue;
        };
        let a = cells
            .entry((e.community.clone(), e.period))
            .or_insert_with(|| Adherence {
                community: e.community.clone(),
                period: e.period,
                scheduled_arm: scheduled.clone(),
                exposures: 0,
                adherent: 0,
                share: 0.0,
                warning: false,
                served: Vec::new(),
            });
        a.exposures += e.exposures;
        if e.arm == scheduled {
            a.adherent += e.exposures;
        }
        a.served.push(Served {
            arm: e.arm.clone(),
            exposures: e.exposures,
            first: e.first,
            last: e.last,
        });
    }
    cells
        .into_values()
        .map(|mut a| {
            a.share = a.adherent as f64 / a.exposures as f64;
            a.warning = a.share < ADHERENCE_WARNING;
            a
        })
        .collect()
}
