//! The analysis pipeline's pure step on stored trials built in memory:
//! the plan's comparisons and correction, the decision rule, the notices
//! when nothing is measured, the data-quality checks and the rows table.
//! (End to end through both stores: `crates/server/tests/trials/designs.rs`.)

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, TrialSpec};
use commonlab_report::analysis::{
    analyse, rows_table, Allocation, MetricData, MetricRows, Role, Source, StoredTrial,
};
use commonlab_store::{ExposureCount, ExposureRecord, MemberValue};

const THANKS: &str = include_str!("../../../../experiments/thanks-button.toml");

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Members of the blocked example: per stratum 20 control, 10 heart, 10
/// banner; `y(arm, k)` their value, `k` the member's place in its arm and
/// stratum.
fn members(y: impl Fn(&str, usize) -> f64) -> Vec<MemberValue> {
    let mut out = Vec::new();
    for c in ["wiki-a", "coop-b", "social-c", "hackerspace-d"] {
        for i in 0..40 {
            let (arm, k) = match i % 4 {
                0 | 1 => ("control", i / 2),
                2 => ("heart", i / 4),
                _ => ("banner", i / 4),
            };
            out.push(MemberValue {
                unit: format!("{:064x}", out.len()),
                arm: arm.into(),
                community: Some(c.into()),
                stratum: Some(format!("[\"{c}\"]")),
                y: y(arm, k),
                x: 0.0,
                d: 1.0 + (i % 3) as f64,
            });
        }
    }
    out
}

fn stored(spec: TrialSpec, rows: impl Fn(&str) -> Vec<MemberValue>, as_of: &str) -> StoredTrial {
    let as_of = at(as_of);
    let metrics = std::iter::once((&spec.metrics.primary, Role::Primary))
        .chain(spec.metrics.secondary.iter().map(|m| (m, Role::Secondary)))
        .chain(spec.metrics.guardrails.iter().map(|m| (m, Role::Guardrail)))
        .map(|(m, role)| MetricData {
            metric: m.clone(),
            role,
            source: Source::Database,
            as_of,
            rows: MetricRows::Members(rows(&m.name)),
        })
        .collect();
    let exposures = ["banner", "control", "heart"]
        .iter()
        .map(|arm| ExposureCount {
            arm: arm.to_string(),
            community: Some("wiki-a".into()),
            excluded: false,
            n: if *arm == "control" { 80 } else { 40 },
            first: at("2027-01-12T00:00:00Z"),
            last: at("2027-01-20T00:00:00Z"),
        })
        .chain(std::iter::once(ExposureCount {
            arm: "banner".into(),
            community: Some("wiki-a".into()),
            excluded: true,
            n: 1,
            first: at("2027-01-13T00:00:00Z"),
            last: at("2027-01-13T00:00:00Z"),
        }))
        .collect();
    StoredTrial {
        key: spec.key.clone(),
        spec_hash: "ab".repeat(32),
        status: "running".into(),
        seed: Some(7),
        spec,
        as_of,
        allocation: Allocation::None,
        metrics,
        exposures,
        excluded: vec![ExposureRecord {
            unit: "cd".repeat(32),
            arm: "banner".into(),
            community: Some("wiki-a".into()),
            exposed_at: at("2027-01-13T00:00:00Z"),
            excluded_reason: Some("cohort override 'qa'".into()),
        }],
        period_exposures: Vec::new(),
    }
}

fn spec() -> TrialSpec {
    parse_trial(THANKS, "thanks-button.toml").unwrap()
}

/// The example without its secondary metrics (each metric runs two
/// permutation tests of 9,999 draws: slow in a debug build).
fn lean_spec() -> TrialSpec {
    let mut s = spec();
    s.metrics.secondary.clear();
    s
}

/// Banner raises the primary metric a lot, nothing else moves: ship banner,
/// Holm over the two primary comparisons, other metrics uncorrected.
#[test]
fn a_clear_winner_ships() {
    let t = stored(
        spec(),
        |name| {
            members(|arm, i| match (name, arm) {
                ("repeat_contribution_28d", "banner") => f64::from(i != 3),
                (_, _) => f64::from(i % 3 == 0),
            })
        },
        "2027-03-01T00:00:00Z",
    );
    let a = analyse(&t);
    assert_eq!(a.design, "blocked");
    assert!(a.notice.is_none());
    let primary = &a.metrics[0];
    assert_eq!(primary.estimates.len(), 2, "heart and banner, never pooled");
    assert!(primary.estimates.iter().all(|e| e.control == "control"));
    let c = &a.comparisons;
    assert_eq!(c.correction, "holm");
    let ps: Vec<f64> = c.primary.iter().map(|x| x.p_value.unwrap()).collect();
    let adjusted = commonlab_stats::multiple::holm(&ps).unwrap();
    for (x, want) in c.primary.iter().zip(adjusted) {
        assert_eq!(x.adjusted_p_value, Some(want));
        assert_eq!(x.correction, "holm");
    }
    assert!(c
        .others
        .iter()
        .all(|x| x.correction == "uncorrected" && x.adjusted_p_value.is_none()));
    assert_eq!(a.decision.outcome, "ship", "{:?}", a.decision);
    assert_eq!(a.decision.arm.as_deref(), Some("banner"));
    assert_eq!(
        a.decision.plan_says.as_deref(),
        Some(t.spec.analysis.decision.ship.as_str())
    );
    // SRM over the exposed units (80:40:40 is 2:1:1); the excluded unit
    // is listed and counted.
    let srm = a.quality.srm.as_ref().unwrap();
    assert_eq!(srm.observed, [80, 40, 40]);
    assert!(!srm.mismatch);
    assert_eq!(a.quality.excluded.count, 1);
    assert_eq!(a.quality.excluded.units[0].reason, "cohort override 'qa'");
    assert!(a.quality.warnings.iter().any(|w| w.contains("override")));
}

/// A guardrail worsening significantly rolls back, whatever the primary.
#[test]
fn a_harmed_guardrail_rolls_back() {
    let t = stored(
        lean_spec(),
        |name| {
            members(|arm, i| match (name, arm) {
                ("repeat_contribution_28d", "banner") => f64::from(i != 3),
                ("content_reports_per_member", "heart") => 3.0 + (i % 3) as f64,
                (_, _) => f64::from(i % 3 == 0),
            })
        },
        "2027-03-01T00:00:00Z",
    );
    let a = analyse(&t);
    assert_eq!(a.decision.outcome, "roll_back", "{:?}", a.decision);
    assert!(
        a.decision.reasons[0].contains("content_reports_per_member"),
        "{:?}",
        a.decision
    );
    assert_eq!(
        a.decision.plan_says.as_deref(),
        Some(t.spec.analysis.decision.roll_back.as_str())
    );
}

/// No effect anywhere but a point estimate the desired way: iterate.
#[test]
fn an_uncertain_improvement_iterates() {
    let t = stored(
        lean_spec(),
        |name| {
            members(|arm, i| match (name, arm) {
                // One more success in every stratum's heart arm.
                ("repeat_contribution_28d", "heart") => f64::from(i % 3 == 0 || i == 1),
                (_, _) => f64::from(i % 3 == 0),
            })
        },
        "2027-03-01T00:00:00Z",
    );
    let a = analyse(&t);
    assert_eq!(a.decision.outcome, "iterate", "{:?}", a.decision);
}

/// Before the schedule starts, and with no window closed: n is 0 and the
/// analysis says why, never zeros as estimates.
#[test]
fn nothing_measured_is_explained() {
    let early = stored(spec(), |_| Vec::new(), "2027-01-01T00:00:00Z");
    let a = analyse(&early);
    assert!(
        a.notice
            .as_deref()
            .unwrap()
            .contains("starts at 2027-01-11T09:00:00Z"),
        "{:?}",
        a.notice
    );
    assert!(a.metrics.iter().all(|m| m.estimates.is_empty()));
    assert_eq!(a.decision.outcome, "inconclusive");
    let running = stored(spec(), |_| Vec::new(), "2027-01-20T00:00:00Z");
    let a = analyse(&running);
    let notice = a.notice.as_deref().unwrap();
    assert!(
        notice.contains("first exposure was at 2027-01-12T00:00:00Z"),
        "{notice}"
    );
    assert!(
        notice.contains("closes at 2027-02-09T00:00:00Z"),
        "{notice}"
    );
}

#[test]
fn the_rows_table_of_a_blocked_trial() {
    let t = stored(spec(), |_| members(|_, i| i as f64), "2027-03-01T00:00:00Z");
    let table = rows_table(&t);
    assert_eq!(
        table.header,
        [
            "metric",
            "unit",
            "arm",
            "stratum",
            "community",
            "value",
            "covariate",
            "denominator"
        ]
    );
    assert_eq!(table.records.len(), 160 * 6);
    // The 5th member of wiki-a is the 3rd of its control arm.
    assert_eq!(table.records[4][2], "control");
    assert_eq!(table.records[4][3], "[\"wiki-a\"]");
    assert_eq!(table.records[4][5], "2.0");
}
