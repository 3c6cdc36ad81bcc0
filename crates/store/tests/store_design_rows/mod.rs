//! The rows each design needs (`store::design_rows`), on both backends:
//! per-member values of member-randomised designs agree with the verified
//! per-cell metric query and carry each unit's stratum; community × period
//! cells of community designs agree with an in-process computation of the
//! documented semantics (members active in each period's window, members
//! seen in two communities left out and counted, filters, sums, ratios,
//! caps).

use super::metrics::{close, num, passes, percentile};
use super::*;
use commonlab_core::experiments::{parse_metric_library, Cap, Metric, MetricKind, MetricValue};
use commonlab_store::{MemberValue, PeriodSpan};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const METRICS: &str = r#"
[[metric]]
name = "any_e1"
kind = "proportion"
events = ["e1"]
direction = "increase"

[[metric]]
name = "e1_e2_count"
kind = "count"
events = ["e1", "e2"]
direction = "increase"
filter = { ns = "main" }

[[metric]]
name = "bytes"
kind = "mean"
events = ["e1"]
direction = "increase"
value = { sum = "bytes" }
cap = { percentile = 0.9 }

[[metric]]
name = "e1_per_e2"
kind = "ratio"
events = ["e1", "e2"]
direction = "increase"

[[metric]]
name = "capped"
kind = "count"
events = ["e1", "e2", "other"]
direction = "decrease"
cap = { value = 2 }
"#;

/// Per-member values summed per (arm, community) are the cells of
/// `metric_cells` (checked against the documented semantics in
/// `store_metrics`), and each member carries its assignment's stratum.
#[tokio::test]
async fn member_values_are_the_cells_before_summing() {
    both_backends(|db| async move {
        let store = db.store();
        let library = parse_metric_library(METRICS, "m.toml").unwrap();
        let trial_id = running_trial(store, "members").await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut exposures = Vec::new();
        let mut events = Vec::new();
        for i in 0..60u64 {
            let arm = ["control", "heart", "banner"][rng.random_range(0..3)];
            let community = ["wiki-a", "coop-b"][rng.random_range(0..2)];
            let e = NewExposure {
                community: Some(community.into()),
                excluded_reason: (i % 17 == 0).then(|| "cohort override 'qa'".into()),
                ..exposure(trial_id, i, arm, rng.random_range(0..86_400))
            };
            if e.excluded_reason.is_none() {
                store
                    .assign_fixed(&NewAssignment {
                        stratum: Some(&format!("[\"{community}\"]")),
                        community: Some(community),
                        ..fixed(trial_id, &unit(i), arm, 0)
                    })
                    .await
                    .unwrap();
            }
            exposures.push(e);
            for k in 0..rng.random_range(0..8u64) {
                let mut ev = event(
                    u128::from(i * 100 + k + 1),
                    i,
                    ["e1", "e2", "other"][rng.random_range(0..3)],
                    rng.random_range(-86_400..20 * 86_400),
                );
                let ns = ["main", "talk"][rng.random_range(0..2)];
                ev.properties = props(json!({"ns": ns, "bytes": rng.random_range(0..50)}));
                events.push(ev);
            }
        }
        store.record_exposures(&exposures).await.unwrap();
        store.insert_events(&events, at(0)).await.unwrap();
        let as_of = at(40 * 86_400);
        for m in library.metrics.values() {
            let members = store.member_values(trial_id, m, as_of).await.unwrap();
            assert_eq!(members.len(), 60 - 4, "{}: excluded units left out", m.name);
            assert!(members.windows(2).all(|w| w[0].unit < w[1].unit));
            for v in &members {
                let c = v.community.as_deref().unwrap();
                assert_eq!(v.stratum.as_deref(), Some(format!("[\"{c}\"]").as_str()));
            }
            // (arm, community) -> (n, Σy, Σy², Σd)
            let mut sums: BTreeMap<Key, (i64, f64, f64, f64)> = BTreeMap::new();
            for v in &members {
                let s = sums
                    .entry((v.arm.clone(), v.community.clone()))
                    .or_default();
                s.0 += 1;
                s.1 += v.y;
                s.2 += v.y * v.y;
                s.3 += v.d;
            }
            let cells = store.metric_cells(trial_id, m, as_of).await.unwrap();
            assert_eq!(cells.len(), sums.len(), "{}", m.name);
            assert!(cells.iter().any(|c| c.sum > 0.0), "{}: vacuous", m.name);
            for c in cells {
                let s = sums[&(c.arm.clone(), c.community.clone())];
                assert_eq!(c.n, s.0, "{}", m.name);
                assert!(
                    close(c.sum, s.1) && close(c.sum_squares, s.2) && close(c.d_sum, s.3),
                    "{}",
                    m.name
                );
            }
        }
        // Before any window closes, nobody.
        let m = &library.metrics["any_e1"];
        let none: Vec<MemberValue> = store.member_values(trial_id, m, at(0)).await.unwrap();
        assert!(none.is_empty());
    })
    .await;
}

type Key = (String, Option<String>);

const COMMUNITIES: [&str; 3] = ["wiki-a", "coop-b", "social-c"];

/// A pseudonym-like unit: 64 hex digits whose first ones are spread like
/// an HMAC's (the store splits members at [`commonlab_store::SPLIT_AT`]).
fn spread_unit(i: u64) -> String {
    format!("{:016x}{:048x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i)
}

struct Member {
    id: String,
    /// Communities its events carry (two: left out).
    communities: Vec<&'static str>,
}

/// The documented semantics of community × period cells, in process.
/// (community, period) -> (n, Σy, Σy², Σd, Σd², Σyd).
type Cells = BTreeMap<(String, i64), (i64, f64, f64, f64, f64, f64)>;

fn expected_cells(
    m: &Metric,
    members: &[Member],
    events: &[NewEvent],
    windows: &[PeriodSpan],
) -> (Cells, i64) {
    let period_of = |ts: DateTime<Utc>| windows.iter().find(|w| ts >= w.start && ts < w.end);
    let lo = windows.iter().map(|w| w.start).min().unwrap();
    let hi = windows.iter().map(|w| w.end).max().unwrap();
    let mut excluded = 0;
    let mut values: Vec<(String, i64, f64, f64)> = Vec::new();
    for mem in members {
        let mine: Vec<&NewEvent> = events
            .iter()
            .filter(|e| {
                e.unit == mem.id
                    && e.ts >= lo
                    && e.ts < hi
                    && e.community
                        .as_deref()
                        .is_some_and(|c| COMMUNITIES.contains(&c))
            })
            .collect();
        let seen: std::collections::BTreeSet<&str> =
            mine.iter().filter_map(|e| e.community.as_deref()).collect();
        if seen.len() > 1 {
            excluded += 1;
            continue;
        }
        let Some(c) = seen.into_iter().next() else {
            continue;
        };
        for w in windows {
            let inside: Vec<&&NewEvent> =
                mine.iter().filter(|e| period_of(e.ts) == Some(w)).collect();
            if inside.is_empty() {
                continue;
            }
            let (mut y, mut d) = (0.0f64, 0.0);
            for e in inside.iter().filter(|e| passes(m, &e.properties)) {
                let value = match &m.value {
                    MetricValue::Count => 1.0,
                    MetricValue::Sum(p) => num(e.properties.get(p)).unwrap_or(0.0),
                };
                let is_y = match m.kind {
                    MetricKind::Ratio => e.name == m.events[0],
                    _ => m.events.contains(&e.name),
                };
                if is_y {
                    y = if m.kind == MetricKind::Proportion {
                        1.0
                    } else {
                        y + value
                    };
                } else if m.kind == MetricKind::Ratio && e.name == m.events[1] {
                    d += 1.0;
                }
            }
            values.push((c.to_string(), w.period, y, d));
        }
    }
    let cap = match m.cap {
        None => None,
        Some(Cap::Value(v)) => Some(v),
        Some(Cap::Percentile(p)) => {
            let ys: Vec<f64> = values.iter().map(|v| v.2).collect();
            Some(percentile(&ys, p))
        }
    };
    let mut cells: Cells = BTreeMap::new();
    for (c, p, y, d) in values {
        let y = cap.map_or(y, |k| y.min(k));
        let s = cells.entry((c, p)).or_default();
        s.0 += 1;
        s.1 += y;
        s.2 += y * y;
        s.3 += d;
        s.4 += d * d;
        s.5 += y * d;
    }
    (cells, excluded)
}

#[tokio::test]
async fn community_period_cells_match_the_documented_semantics() {
    both_backends(|db| async move {
        let store = db.store();
        let library = parse_metric_library(METRICS, "m.toml").unwrap();
        let communities: Vec<String> = COMMUNITIES.map(String::from).to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let day = 86_400;
        // Three periods of 10 days; windows are their last 7 days.
        let windows: Vec<PeriodSpan> = (0..3)
            .map(|p| PeriodSpan {
                period: p,
                start: at((p * 10 + 3) * day),
                end: at((p + 1) * 10 * day),
            })
            .collect();
        let mut members = Vec::new();
        let mut events = Vec::new();
        for i in 0..90u64 {
            let home = ["wiki-a", "coop-b", "social-c", "elsewhere"][rng.random_range(0..4)];
            let mut cs = vec![home];
            if i % 11 == 0 {
                cs.push("coop-b");
                cs.dedup();
            }
            let n = rng.random_range(0..14);
            for k in 0..n {
                let c = cs[k % cs.len()];
                // Boundaries hit exactly now and then.
                let secs = if k < 2 {
                    windows[rng.random_range(0..3)].start.timestamp() - at(0).timestamp()
                        + [-1i64, 0, 0, 1][rng.random_range(0..4)]
                } else {
                    rng.random_range(-day..31 * day)
                };
                let mut e = event(
                    u128::from(i * 100 + k as u64 + 1),
                    i,
                    ["e1", "e1", "e2", "other"][rng.random_range(0..4)],
                    secs,
                );
                e.community = Some(c.to_string());
                e.unit = spread_unit(i);
                let ns = ["main", "talk"][rng.random_range(0..2)];
                e.properties = props(json!({"ns": ns, "bytes": rng.random_range(0..40)}));
                events.push(e);
            }
            // A member without a community: never counted.
            let mut e = event(u128::from(i * 100 + 99), i, "e1", 15 * day);
            e.community = None;
            e.unit = spread_unit(i);
            events.push(e);
            members.push(Member {
                id: spread_unit(i),
                communities: cs,
            });
        }
        assert!(members.iter().any(|m| m.communities.len() > 1));
        // Members (and members left out) on both sides of the store's
        // split into two halves computed at once.
        for below in [true, false] {
            let side = |m: &&Member| (m.id.as_str() < commonlab_store::SPLIT_AT) == below;
            assert!(members.iter().filter(side).count() > 20);
            assert!(members.iter().filter(side).any(|m| m.communities.len() > 1));
        }
        store.insert_events(&events, at(0)).await.unwrap();
        for m in library.metrics.values() {
            let got = store
                .community_period_cells(m, &communities, &windows)
                .await
                .unwrap();
            let (want, excluded) = expected_cells(m, &members, &events, &windows);
            assert!(excluded > 0);
            assert_eq!(got.excluded_members, excluded, "{}", m.name);
            assert_eq!(got.cells.len(), want.len(), "{}: {:?}", m.name, got.cells);
            assert!(want.values().any(|c| c.1 > 0.0), "{}: vacuous", m.name);
            for c in &got.cells {
                let w = want[&(c.community.clone(), c.period)];
                assert_eq!(c.n, w.0, "{} {}/{}", m.name, c.community, c.period);
                for (a, b) in [
                    (c.sum, w.1),
                    (c.sum_squares, w.2),
                    (c.d_sum, w.3),
                    (c.d_sum_squares, w.4),
                    (c.yd_sum, w.5),
                ] {
                    assert!(
                        close(a, b),
                        "{} {}/{}: {a} vs {b}",
                        m.name,
                        c.community,
                        c.period
                    );
                }
                assert_eq!(c.y_cap.is_some(), m.cap.is_some());
            }
            // Per member: the same numbers before summing.
            let (per_member, excl) = store
                .community_member_values(m, &communities, &windows)
                .await
                .unwrap();
            assert_eq!(excl, excluded);
            assert_eq!(
                per_member.len() as i64,
                want.values().map(|c| c.0).sum::<i64>()
            );
            let total: f64 = per_member.iter().map(|v| v.y).sum();
            assert!(close(total, want.values().map(|c| c.1).sum()), "{}", m.name);
            // Members active in a window without a matching event are
            // counted with 0 (the statement tells them from members
            // without any event by a NULL, not by a 0).
            if m.name != "capped" {
                assert!(
                    per_member.iter().any(|v| v.y == 0.0),
                    "{}: no member active without the metric's event",
                    m.name
                );
            }
        }
        // No closed window: nothing.
        let m = &library.metrics["any_e1"];
        assert!(store
            .community_period_cells(m, &communities, &[])
            .await
            .unwrap()
            .cells
            .is_empty());
    })
    .await;
}
