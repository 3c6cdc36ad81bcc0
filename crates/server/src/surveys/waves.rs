//! A trial's survey response across its waves (pure): per wave (campaign)
//! and arm the invited and completed units, each wave's
//! differential-response test and the test on the counts pooled over
//! waves (`stats::response::check_waves`). Cells with fewer than
//! `min_cell` respondents are withheld as in [`super::results`].

use std::collections::{BTreeMap, BTreeSet};

use commonlab_stats::response::{check_waves, ArmResponse};
use commonlab_store::{CampaignUnit, ResponseRecord, ResponseStatus};
use serde::Serialize;

use super::results::{Computed, Differential};

/// One wave's campaign: its key, wave, units and responses.
pub struct WaveData<'a> {
    pub campaign: &'a str,
    pub wave: &'a str,
    pub units: &'a [CampaignUnit],
    pub responses: &'a [ResponseRecord],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmCell {
    pub arm: String,
    pub invited: Option<u64>,
    pub completed: Option<u64>,
    pub rate: Option<f64>,
    pub suppressed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveResponse {
    pub campaign: String,
    pub wave: String,
    pub arms: Vec<ArmCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialResponse {
    pub min_cell: usize,
    /// Every arm seen in any wave, in this order everywhere.
    pub arms: Vec<String>,
    pub waves: Vec<WaveResponse>,
    /// Each wave's test, in `waves` order, and the pooled one; or why
    /// there is none (fewer than two arms, an arm nobody was invited from
    /// in some wave, nobody or everybody completed).
    pub differential: Computed<ByWave>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByWave {
    pub waves: Vec<Differential>,
    pub pooled: Differential,
    /// Any wave or the pool flagged.
    pub flagged: bool,
}

fn differential(c: &commonlab_stats::response::ResponseCheck) -> Differential {
    Differential {
        test: c.test,
        chi2: c.chi2,
        df: c.df,
        p_value: c.p_value,
        fisher_p: c.fisher_p,
        flagged: c.flagged,
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
    }
}

/// Response per wave and arm, with the differential-response tests.
pub fn trial_response(waves: &[WaveData<'_>], min_cell: usize) -> TrialResponse {
    let mut counts: Vec<BTreeMap<&str, ArmResponse>> = Vec::new();
    let mut arms: BTreeSet<&str> = BTreeSet::new();
    for w in waves {
        let done: BTreeSet<&str> = w
            .responses
            .iter()
            .filter(|r| r.status == ResponseStatus::Completed)
            .map(|r| r.unit.as_str())
            .collect();
        let mut by_arm: BTreeMap<&str, ArmResponse> = BTreeMap::new();
        for u in w.units.iter().filter(|u| u.invited) {
            let Some(arm) = u.arm.as_deref() else {
                continue;
            };
            arms.insert(arm);
            let c = by_arm.entry(arm).or_insert(ArmResponse {
                invited: 0,
                responded: 0,
            });
            c.invited += 1;
            c.responded += u64::from(done.contains(u.unit.as_str()));
        }
        counts.push(by_arm);
    }
    let arm_list: Vec<&str> = arms.into_iter().collect();
    let table: Vec<Vec<ArmResponse>> = counts
        .iter()
        .map(|by_arm| {
            arm_list
                .iter()
                .map(|a| {
                    by_arm.get(a).copied().unwrap_or(ArmResponse {
                        invited: 0,
                        responded: 0,
                    })
                })
                .collect()
        })
        .collect();
    let differential = if waves.is_empty() {
        Computed::Error {
            error: "the trial has no survey campaigns".into(),
        }
    } else {
        match check_waves(&table) {
            Ok(r) => Computed::Value(ByWave {
                waves: r.waves.iter().map(differential).collect(),
                pooled: differential(&r.pooled),
                flagged: r.flagged,
            }),
            Err(e) => Computed::Error {
                error: e.to_string(),
            },
        }
    };
    TrialResponse {
        min_cell,
        arms: arm_list.iter().map(|a| a.to_string()).collect(),
        waves: waves
            .iter()
            .zip(&table)
            .map(|(w, row)| WaveResponse {
                campaign: w.campaign.to_string(),
                wave: w.wave.to_string(),
                arms: arm_list
                    .iter()
                    .zip(row)
                    .map(|(a, c)| {
                        let suppressed = (c.responded as usize) < min_cell;
                        ArmCell {
                            arm: a.to_string(),
                            invited: (!suppressed).then_some(c.invited),
                            completed: (!suppressed).then_some(c.responded),
                            rate: (!suppressed && c.invited > 0)
                                .then(|| c.responded as f64 / c.invited as f64),
                            suppressed,
                        }
                    })
                    .collect(),
            })
            .collect(),
        differential,
    }
}
