//! Seeded synthetic stored trials (no database): the rows each design's
//! analysis reads, with a known effect.

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{
    cluster_allocation, parse_trial, stepped_wedge_schedule, TrialSpec,
};
use commonlab_report::analysis::{Allocation, MetricData, MetricRows, Role, Source, StoredTrial};
use commonlab_report::document::{Dates, Provenance, TrialHistory};
use commonlab_store::{
    CommunityCell, CommunityRows, ExposureCount, MemberValue, MetricCell, PeriodExposures,
    PeriodSpan,
};

pub const THANKS: &str = include_str!("../../../../experiments/thanks-button.toml");
pub const DASHBOARD: &str = include_str!("../../../../experiments/value-dashboard.toml");

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// A small count with mean about `mean` (sum of Bernoulli draws).
    pub fn count(&mut self, mean: f64) -> f64 {
        (0..8).filter(|_| self.chance(mean / 8.0)).count() as f64
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn provenance() -> Provenance {
    Provenance {
        version: "0.0.0-test".into(),
        commit: Some("0000000".into()),
        command: "commonlab report KEY --format all".into(),
    }
}

pub fn history(spec: &TrialSpec) -> TrialHistory {
    TrialHistory {
        dates: Dates {
            planned_start: commonlab_core::experiments::format_rfc3339(spec.schedule.start),
            planned_end: commonlab_core::experiments::format_rfc3339(spec.schedule.end),
            started: Some(at("2027-02-01T00:00:00Z")),
            stopped: None,
            concluded: None,
        },
        deviations: Vec::new(),
    }
}

const COMMUNITIES: [&str; 4] = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];

fn exposure(arm: &str, community: &str, n: i64) -> ExposureCount {
    ExposureCount {
        arm: arm.into(),
        community: Some(community.into()),
        excluded: false,
        n,
        first: at("2027-01-12T00:00:00Z"),
        last: at("2027-01-30T00:00:00Z"),
    }
}

/// A member-randomised trial (blocked as shipped, or `hash` when the
/// design is replaced): 4 communities of 32 members, arms 2:1:1, the
/// banner lifting the primary proportion by 0.15 and the heart by 0.05.
pub fn members_trial(source: &str, seed: u64) -> StoredTrial {
    let spec = parse_trial(source, "thanks-button.toml").unwrap();
    let mut rng = Rng(seed);
    let arms = ["control", "control", "heart", "banner"];
    let mut members = Vec::new();
    for (ci, c) in COMMUNITIES.iter().enumerate() {
        for i in 0..32 {
            let arm = arms[i % 4];
            let lift = match arm {
                "banner" => 0.15,
                "heart" => 0.05,
                _ => 0.0,
            };
            members.push((
                format!("m{ci}-{i}"),
                arm,
                *c,
                0.25 + 0.05 * ci as f64 + lift,
            ));
        }
    }
    let hash = spec.design.kind() == "hash";
    let metrics = commonlab_report::analysis::StoredTrial::plan_metrics(&spec)
        .into_iter()
        .map(|(m, role)| {
            let values: Vec<MemberValue> = members
                .iter()
                .map(|(unit, arm, c, p)| {
                    let (y, d) = match m.kind {
                        commonlab_core::experiments::MetricKind::Proportion => {
                            (if rng.chance(*p) { 1.0 } else { 0.0 }, 0.0)
                        }
                        commonlab_core::experiments::MetricKind::Ratio => {
                            let d = 1.0 + rng.count(2.0);
                            (rng.count(d * p), d)
                        }
                        _ => (
                            rng.count(if role == Role::Guardrail {
                                0.3
                            } else {
                                4.0 * p
                            }),
                            0.0,
                        ),
                    };
                    MemberValue {
                        unit: unit.clone(),
                        arm: (*arm).into(),
                        community: Some((*c).into()),
                        stratum: Some((*c).into()),
                        y,
                        x: 0.0,
                        d,
                    }
                })
                .collect();
            let rows = if hash {
                let mut cells: Vec<MetricCell> = Vec::new();
                for v in &values {
                    let pos = cells
                        .iter()
                        .position(|c| c.arm == v.arm && c.community == v.community);
                    let i = pos.unwrap_or_else(|| {
                        cells.push(MetricCell {
                            arm: v.arm.clone(),
                            community: v.community.clone(),
                            n: 0,
                            sum: 0.0,
                            sum_squares: 0.0,
                            x_sum: 0.0,
                            x_sum_squares: 0.0,
                            xy_sum: 0.0,
                            d_sum: 0.0,
                            d_sum_squares: 0.0,
                            md_sum: 0.0,
                            dx_sum: 0.0,
                            y_cap: None,
                            x_cap: None,
                        });
                        cells.len() - 1
                    });
                    let c = &mut cells[i];
                    c.n += 1;
                    c.sum += v.y;
                    c.sum_squares += v.y * v.y;
                    c.d_sum += v.d;
                    c.d_sum_squares += v.d * v.d;
                    c.md_sum += v.y * v.d;
                }
                MetricRows::Cells(cells)
            } else {
                MetricRows::Members(values)
            };
            MetricData {
                metric: m.clone(),
                role,
                source: Source::Database,
                as_of: at("2027-03-01T00:00:00Z"),
                rows,
            }
        })
        .collect();
    let mut exposures = Vec::new();
    for c in COMMUNITIES {
        exposures.push(exposure("control", c, 40));
        exposures.push(exposure("heart", c, 20));
        exposures.push(exposure("banner", c, 20));
    }
    StoredTrial {
        key: spec.key.clone(),
        spec_hash: "a".repeat(64),
        status: "stopped".into(),
        seed: Some(seed),
        as_of: at("2027-03-01T00:00:00Z"),
        allocation: Allocation::None,
        metrics,
        exposures,
        excluded: Vec::new(),
        period_exposures: Vec::new(),
        spec,
    }
}

/// A community trial (stepped wedge as shipped, or `cluster` when the
/// design is replaced): 4 communities over their periods, the feature
/// lifting the primary proportion by 0.08.
pub fn community_trial(source: &str, seed: u64) -> StoredTrial {
    let spec = parse_trial(source, "value-dashboard.toml").unwrap();
    let mut rng = Rng(seed);
    let allocation = if spec.design.kind() == "cluster" {
        Allocation::Cluster(
            cluster_allocation(&spec, seed)
                .into_iter()
                .map(|(c, a)| (c, a.variant.clone()))
                .collect(),
        )
    } else {
        Allocation::SteppedWedge(stepped_wedge_schedule(&spec, seed))
    };
    let treated = |community: &str, start: i64| match &allocation {
        Allocation::Cluster(map) => map.get(community).is_some_and(|a| a != "off"),
        Allocation::SteppedWedge(s) => s.iter().any(|(c, t)| c == community && *t <= start),
        // The fixtures make no switchback trial.
        Allocation::Switchback(_) | Allocation::None => false,
    };
    let periods = spec.periods();
    let metrics = commonlab_report::analysis::StoredTrial::plan_metrics(&spec)
        .into_iter()
        .map(|(m, role)| {
            let windows = spec.period_windows(m);
            let mut cells = Vec::new();
            for (ci, c) in COMMUNITIES.iter().enumerate() {
                for p in &periods {
                    let n = 40 + 30 * ci as i64;
                    let lift = if treated(c, p.start) { 0.08 } else { 0.0 };
                    let base = 0.2 + 0.04 * ci as f64 + 0.01 * f64::from(p.index);
                    let mut sum = 0.0;
                    let mut ss = 0.0;
                    for _ in 0..n {
                        let y = match m.kind {
                            commonlab_core::experiments::MetricKind::Proportion => {
                                if rng.chance(base + lift) {
                                    1.0
                                } else {
                                    0.0
                                }
                            }
                            _ => rng.count(if role == Role::Guardrail {
                                0.2
                            } else {
                                3.0 * (base + lift)
                            }),
                        };
                        sum += y;
                        ss += y * y;
                    }
                    cells.push(CommunityCell {
                        community: (*c).into(),
                        period: i64::from(p.index),
                        n,
                        sum,
                        sum_squares: ss,
                        d_sum: 0.0,
                        d_sum_squares: 0.0,
                        yd_sum: 0.0,
                        y_cap: None,
                    });
                }
            }
            MetricData {
                metric: m.clone(),
                role,
                source: Source::Database,
                as_of: at("2027-07-15T00:00:00Z"),
                rows: MetricRows::Communities {
                    rows: CommunityRows {
                        cells,
                        excluded_members: 0,
                    },
                    closed: windows
                        .iter()
                        .map(|w| PeriodSpan {
                            period: i64::from(w.period),
                            start: DateTime::from_timestamp(w.start, 0).unwrap(),
                            end: DateTime::from_timestamp(w.end, 0).unwrap(),
                        })
                        .collect(),
                    open: Vec::new(),
                },
            }
        })
        .collect();
    let mut exposures = Vec::new();
    let mut period_exposures = Vec::new();
    for c in COMMUNITIES {
        exposures.push(exposure("off", c, 1));
        let first = match &allocation {
            Allocation::Cluster(map) => map.get(c).cloned().unwrap_or_default(),
            _ => "off".into(),
        };
        period_exposures.push(PeriodExposures {
            trial_id: 1,
            community: c.into(),
            period: 0,
            arm: first,
            exposures: 1,
            first: at("2027-02-01T08:00:00Z"),
            last: at("2027-02-01T08:00:00Z"),
        });
    }
    StoredTrial {
        key: spec.key.clone(),
        spec_hash: "b".repeat(64),
        status: "stopped".into(),
        seed: Some(seed),
        as_of: at("2027-07-15T00:00:00Z"),
        allocation,
        metrics,
        exposures,
        excluded: Vec::new(),
        period_exposures,
        spec,
    }
}

/// The example with its `[design]` table replaced.
pub fn with_design(source: &str, design: &str) -> String {
    let start = source.find("[design]").unwrap();
    let end = start + source[start..].find("\n[exposure]").unwrap();
    format!("{}{}\n{}", &source[..start], design, &source[end..])
}

/// A survey wave of a member trial (the inputs the server gives the
/// report): scale scores, the response per arm as `survey_response`, the
/// reliability and the Likert answers. Scale `gratitude` has every arm;
/// scale `belonging` and item `g2` have 3 respondents in `heart` (withheld
/// below 5).
pub fn survey_fixture(
    t: &StoredTrial,
    seed: u64,
) -> (
    Vec<commonlab_report::analysis::WaveScores>,
    serde_json::Value,
    commonlab_report::surveys::SurveyInput,
) {
    use commonlab_report::analysis::{ScaleScore, WaveScores};
    use commonlab_report::surveys::{LikertInput, ScaleReliability, SurveyInput, WaveInput};
    let mut rng = Rng(seed);
    let MetricRows::Members(members) = &t.metrics[0].rows else {
        panic!("a member trial");
    };
    let mut scores = Vec::new();
    let labels: Vec<String> = [
        "Strongly disagree",
        "Disagree",
        "Neutral",
        "Agree",
        "Strongly agree",
    ]
    .map(String::from)
    .to_vec();
    let (mut g1, mut g2) = (Vec::new(), Vec::new());
    let mut invited: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    let mut heart_belonging = 0;
    for m in members {
        let e = invited.entry(m.arm.as_str()).or_default();
        e.0 += 1;
        if !rng.chance(0.6) {
            continue;
        }
        e.1 += 1;
        let lift = match m.arm.as_str() {
            "banner" => 0.6,
            "heart" => 0.2,
            _ => 0.0,
        };
        let score = 3.0 + lift + (rng.unit() - 0.5) * 2.0;
        scores.push(ScaleScore {
            unit: m.unit.clone(),
            arm: Some(m.arm.clone()),
            scale: "gratitude".into(),
            score,
        });
        let heart = m.arm == "heart";
        if !heart || heart_belonging < 3 {
            heart_belonging += u32::from(heart);
            scores.push(ScaleScore {
                unit: m.unit.clone(),
                arm: Some(m.arm.clone()),
                scale: "belonging".into(),
                score: 2.5 + lift / 2.0 + rng.unit(),
            });
            g2.push((m.arm.clone(), 1 + (rng.next() % 5) as u8));
        }
        g1.push((m.arm.clone(), (score.round() as u8).clamp(1, 5)));
    }
    let arms = ["control", "heart", "banner"];
    let cells: Vec<serde_json::Value> = arms
        .iter()
        .map(|a| {
            let (n, c) = invited[a];
            serde_json::json!({"arm": a, "invited": n, "completed": c, "rate": c as f64 / n as f64, "suppressed": false})
        })
        .collect();
    let test = serde_json::json!({"test": "chi_square", "chi2": 1.25, "df": 2.0, "p_value": 0.535, "fisher_p": null, "flagged": false, "message": "the arms completed the survey at similar rates"});
    let response = serde_json::json!({
        "min_cell": 5,
        "arms": arms,
        "waves": [{"campaign": "thanks-followup", "wave": "followup", "arms": cells}],
        "differential": {"waves": [test.clone()], "pooled": test, "flagged": false},
    });
    let waves = vec![WaveScores {
        wave: "followup".into(),
        campaign: "thanks-followup".into(),
        scales: vec!["gratitude".into(), "belonging".into()],
        scores,
    }];
    let input = SurveyInput {
        min_cell: 5,
        waves: vec![WaveInput {
            wave: "followup".into(),
            campaign: "thanks-followup".into(),
            reliability: vec![
                ScaleReliability {
                    scale: "gratitude".into(),
                    n: Some(70),
                    alpha: Some(0.81),
                    alpha_ci_low: Some(0.74),
                    alpha_ci_high: Some(0.87),
                    omega: Some(0.82),
                    note: None,
                },
                ScaleReliability {
                    scale: "belonging".into(),
                    n: Some(60),
                    alpha: Some(0.64),
                    alpha_ci_low: Some(0.5),
                    alpha_ci_high: Some(0.75),
                    omega: None,
                    note: Some("alpha below 0.7; omega: the one-factor model is improper".into()),
                },
            ],
            likert: vec![
                LikertInput {
                    item: "g1".into(),
                    labels: labels.clone(),
                    answers: g1,
                },
                LikertInput {
                    item: "g2".into(),
                    labels,
                    answers: g2,
                },
            ],
        }],
    };
    (waves, response, input)
}
