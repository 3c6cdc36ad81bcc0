//! Metric queries against an independent in-process computation of the
//! documented semantics (docs/metrics.md), on both backends: random
//! exposures and events (boundaries hit exactly, typed and mistyped
//! properties, excluded and too-recent units), every metric kind, filter
//! operator, value, window, covariate and cap.

use super::*;
use chrono::Duration as Span;
use commonlab_core::experiments::{
    parse_metric_library, Cap, FilterOp, Metric, MetricKind, MetricValue, Scalar,
};
use commonlab_store::{MetricCell, NewEvent};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

mod property;

const METRICS: &str = r#"
[[metric]]
name = "any_e1_7d"
kind = "proportion"
events = ["e1"]
direction = "increase"
window = ["0d", "7d"]

[[metric]]
name = "e1_e2_count"
kind = "count"
events = ["e1", "e2"]
direction = "increase"
window = ["1d", "8d"]
covariate = ["-3d", "-1d"]

[[metric]]
name = "bytes_main"
kind = "mean"
events = ["e1"]
direction = "increase"
value = { sum = "bytes" }
filter = { ns = "main", bot = { exists = false } }
cap = { percentile = 0.9 }

[[metric]]
name = "bytes_per_e2"
kind = "ratio"
events = ["e1", "e2"]
direction = "increase"
value = { sum = "bytes" }
filter = { bytes = { gte = 10 } }
covariate = false

[[metric]]
name = "capped_count"
kind = "count"
events = ["e1", "e2", "e3"]
direction = "decrease"
window = ["0h", "36h"]
filter = { ns = { in = ["main", 5] }, flag = true }
cap = { value = 2 }

[[metric]]
name = "mid_bytes"
kind = "mean"
events = ["e2"]
direction = "increase"
value = { sum = "bytes" }
filter = { bytes = { gt = 1, lte = 100 }, ns = { ne = "talk" } }
window = ["0d", "10d"]
cap = { percentile = 0.95 }

[[metric]]
name = "ratio_with_covariate"
kind = "ratio"
events = ["e2", "e1"]
direction = "increase"
window = ["0d", "5d"]
filter = { bot = { exists = false } }
cap = { percentile = 0.75 }
"#;

struct Unit {
    id: String,
    arm: &'static str,
    community: Option<&'static str>,
    exposed_at: DateTime<Utc>,
    excluded: bool,
}

struct Ev {
    unit: usize,
    name: &'static str,
    ts: DateTime<Utc>,
    props: Map<String, Value>,
}

fn dataset(seed: u64) -> (Vec<Unit>, Vec<Ev>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let base = at(0) + Span::microseconds(123_456);
    let day = 86_400i64;
    let mut units = Vec::new();
    for i in 0..80u64 {
        units.push(Unit {
            id: unit(1000 + i),
            arm: ["control", "t1", "t2"][rng.random_range(0..3)],
            community: [Some("wiki-a"), Some("coop-b"), None][rng.random_range(0..3)],
            exposed_at: base
                + Span::seconds(rng.random_range(0..20 * day))
                + Span::microseconds(rng.random_range(0..1_000_000)),
            excluded: rng.random_bool(0.1),
        });
    }
    let mut events = Vec::new();
    let offsets_exact = [
        0,
        day,
        7 * day,
        8 * day,
        -day,
        -3 * day,
        36 * 3600,
        14 * day,
        -14 * day,
    ];
    for (u, unit) in units.iter().enumerate() {
        let n = rng.random_range(0..25);
        for k in 0..n {
            let offset = if k < 3 {
                offsets_exact[rng.random_range(0..offsets_exact.len())]
                    + [-1i64, 0, 0, 1][rng.random_range(0..4)]
            } else {
                rng.random_range(-16 * day..16 * day)
            };
            let mut props = Map::new();
            match rng.random_range(0..5) {
                0 => {}
                1 => {
                    props.insert("ns".into(), json!("main"));
                }
                2 => {
                    props.insert("ns".into(), json!("talk"));
                }
                3 => {
                    props.insert("ns".into(), json!(5));
                }
                _ => {
                    props.insert("ns".into(), json!("5"));
                }
            }
            match rng.random_range(0..6) {
                0 => {}
                1 => {
                    props.insert("bytes".into(), json!(rng.random_range(0..200)));
                }
                2 => {
                    props.insert("bytes".into(), json!(rng.random_range(0.0..150.0)));
                }
                3 => {
                    props.insert("bytes".into(), json!("12"));
                }
                4 => {
                    props.insert("bytes".into(), json!(100));
                }
                _ => {
                    props.insert("bytes".into(), json!(rng.random_range(-50..3000)));
                }
            }
            if rng.random_bool(0.15) {
                props.insert("bot".into(), json!(rng.random_bool(0.5)));
            }
            if rng.random_bool(0.6) {
                props.insert("flag".into(), json!(rng.random_bool(0.7)));
            }
            events.push(Ev {
                unit: u,
                name: ["e1", "e1", "e2", "e3", "other"][rng.random_range(0..5)],
                ts: unit.exposed_at + Span::seconds(offset),
                props,
            });
        }
    }
    (units, events)
}

fn scalar_eq(v: Option<&Value>, s: &Scalar) -> bool {
    match (v, s) {
        (Some(Value::String(a)), Scalar::Str(b)) => a == b,
        (Some(Value::Number(a)), Scalar::Num(b)) => a.as_f64() == Some(*b),
        (Some(Value::Bool(a)), Scalar::Bool(b)) => a == b,
        _ => false,
    }
}

pub(crate) fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
        .filter(|_| v.is_some_and(Value::is_number))
}

pub(crate) fn passes(m: &Metric, props: &Map<String, Value>) -> bool {
    m.filters.iter().all(|f| {
        let v = props.get(&f.property);
        match &f.op {
            FilterOp::Eq(s) => scalar_eq(v, s),
            FilterOp::Ne(s) => !scalar_eq(v, s),
            FilterOp::In(list) => list.iter().any(|s| scalar_eq(v, s)),
            FilterOp::Gt(x) => num(v).is_some_and(|a| a > *x),
            FilterOp::Gte(x) => num(v).is_some_and(|a| a >= *x),
            FilterOp::Lt(x) => num(v).is_some_and(|a| a < *x),
            FilterOp::Lte(x) => num(v).is_some_and(|a| a <= *x),
            FilterOp::Exists(b) => v.is_some() == *b,
        }
    })
}

/// Nearest rank: the value at 1-based rank ceil(p·n) of the sorted values,
/// with p the decimal written (at most six places): in integers.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[nearest_rank(p, v.len()) - 1]
}

fn nearest_rank(p: f64, n: usize) -> usize {
    let k = Cap::percentile_millionths(p).expect("a validated percentile") as u128;
    let n = n as u128;
    // ceil(k·n / 10⁶)
    (k * n).div_ceil(1_000_000) as usize
}

/// The documented semantics, computed in process.
fn expected(m: &Metric, units: &[Unit], events: &[Ev], as_of: DateTime<Utc>) -> Vec<MetricCell> {
    let secs = Span::seconds;
    let mut rows = Vec::new(); // (unit index, y, x, d)
    for (u, unit) in units.iter().enumerate() {
        let t0 = unit.exposed_at;
        if unit.excluded || t0 + secs(m.window.end_secs) > as_of {
            continue;
        }
        let within =
            |ts: DateTime<Utc>, lo: i64, hi: i64| ts >= t0 + secs(lo) && ts < t0 + secs(hi);
        let (mut y, mut x, mut d) = (0.0, 0.0, 0.0);
        for e in events.iter().filter(|e| e.unit == u && passes(m, &e.props)) {
            if !m.events.iter().any(|n| n == e.name) {
                continue;
            }
            let value = match &m.value {
                MetricValue::Count => 1.0,
                MetricValue::Sum(p) => num(e.props.get(p)).unwrap_or(0.0),
            };
            let w = within(e.ts, m.window.start_secs, m.window.end_secs);
            let c = m
                .covariate
                .is_some_and(|c| within(e.ts, c.start_secs, c.end_secs));
            match m.kind {
                MetricKind::Proportion => {
                    if w {
                        y = 1.0;
                    }
                    if c {
                        x = 1.0;
                    }
                }
                MetricKind::Mean | MetricKind::Count => {
                    if w {
                        y += value;
                    }
                    if c {
                        x += value;
                    }
                }
                MetricKind::Ratio => {
                    if e.name == m.events[0] {
                        if w {
                            y += value;
                        }
                        if c {
                            x += value;
                        }
                    } else if w {
                        d += 1.0;
                    }
                }
            }
        }
        rows.push((u, y, x, d));
    }
    let (ycap, xcap) = match m.cap {
        None => (None, None),
        Some(Cap::Value(v)) => (Some(v), m.covariate.map(|_| v)),
        Some(Cap::Percentile(p)) => {
            let ys: Vec<f64> = rows.iter().map(|r| r.1).collect();
            let xs: Vec<f64> = rows.iter().map(|r| r.2).collect();
            (
                Some(if ys.is_empty() {
                    0.0
                } else {
                    percentile(&ys, p)
                }),
                m.covariate.map(|_| {
                    if xs.is_empty() {
                        0.0
                    } else {
                        percentile(&xs, p)
                    }
                }),
            )
        }
    };
    let mut cells: BTreeMap<(String, Option<String>), MetricCell> = BTreeMap::new();
    for (u, y, x, d) in rows {
        let y = ycap.map_or(y, |c| y.min(c));
        let x = xcap.map_or(x, |c| x.min(c));
        let unit = &units[u];
        let key = (unit.arm.to_string(), unit.community.map(str::to_string));
        let c = cells.entry(key.clone()).or_insert(MetricCell {
            arm: key.0,
            community: key.1,
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
            y_cap: ycap,
            x_cap: xcap,
        });
        c.n += 1;
        c.sum += y;
        c.sum_squares += y * y;
        c.x_sum += x;
        c.x_sum_squares += x * x;
        c.xy_sum += x * y;
        c.d_sum += d;
        c.d_sum_squares += d * d;
        c.md_sum += y * d;
        c.dx_sum += d * x;
    }
    // The database sorts NULL communities first on SQLite and last on
    // PostgreSQL: compare as sorted by (arm, community) with None first.
    cells.into_values().collect()
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_cells(name: &str, backend: Backend, mut got: Vec<MetricCell>, want: &[MetricCell]) {
    got.sort_by(|a, b| (&a.arm, &a.community).cmp(&(&b.arm, &b.community)));
    assert_eq!(
        got.len(),
        want.len(),
        "{backend} {name}: cells {got:?} vs {want:?}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (&g.arm, &g.community, g.n),
            (&w.arm, &w.community, w.n),
            "{backend} {name}"
        );
        for (field, a, b) in [
            ("sum", g.sum, w.sum),
            ("sum_squares", g.sum_squares, w.sum_squares),
            ("x_sum", g.x_sum, w.x_sum),
            ("x_sum_squares", g.x_sum_squares, w.x_sum_squares),
            ("xy_sum", g.xy_sum, w.xy_sum),
            ("d_sum", g.d_sum, w.d_sum),
            ("d_sum_squares", g.d_sum_squares, w.d_sum_squares),
            ("md_sum", g.md_sum, w.md_sum),
            ("dx_sum", g.dx_sum, w.dx_sum),
        ] {
            assert!(
                close(a, b),
                "{backend} {name} {}/{:?} {field}: got {a}, want {b}",
                g.arm,
                g.community
            );
        }
        assert_eq!(
            g.y_cap.is_some(),
            w.y_cap.is_some(),
            "{backend} {name} y_cap"
        );
        assert_eq!(
            g.x_cap.is_some(),
            w.x_cap.is_some(),
            "{backend} {name} x_cap"
        );
        if let (Some(a), Some(b)) = (g.y_cap, w.y_cap) {
            assert!(close(a, b), "{backend} {name} y_cap {a} vs {b}");
        }
        if let (Some(a), Some(b)) = (g.x_cap, w.x_cap) {
            assert!(close(a, b), "{backend} {name} x_cap {a} vs {b}");
        }
    }
}

#[tokio::test]
async fn metric_queries_match_the_documented_semantics() {
    both_backends(|db| async move {
        let store = db.store();
        let library = parse_metric_library(METRICS, "metrics.toml").unwrap();
        let trial_id = running_trial(store, "metrics").await;
        let other_trial = running_trial(store, "other").await;
        let (units, events) = dataset(7);
        let exposures: Vec<NewExposure> = units
            .iter()
            .flat_map(|u| {
                let e = NewExposure {
                    trial_id,
                    unit: u.id.clone(),
                    arm: u.arm.to_string(),
                    community: u.community.map(str::to_string),
                    trial_version: 1,
                    at: u.exposed_at,
                    source: ExposureSource::Single,
                    excluded_reason: u.excluded.then(|| "override".to_string()),
                };
                // The same units in another trial, in the other arm: must
                // not leak into this trial's numbers.
                let o = NewExposure {
                    trial_id: other_trial,
                    arm: "elsewhere".into(),
                    ..e.clone()
                };
                [e, o]
            })
            .collect();
        store.record_exposures(&exposures).await.unwrap();
        let batch: Vec<NewEvent> = events
            .iter()
            .enumerate()
            .map(|(i, e)| NewEvent {
                event_id: uuid::Uuid::from_u128(i as u128 + 1),
                unit: units[e.unit].id.clone(),
                community: units[e.unit].community.map(str::to_string),
                name: e.name.to_string(),
                ts: e.ts,
                properties: e.props.clone(),
            })
            .collect();
        store.insert_events(&batch, at(0)).await.unwrap();

        // As of day 30: some units' windows are still open.
        let as_of = at(0) + Span::days(30);
        for m in library.metrics.values() {
            let got = store.metric_cells(trial_id, m, as_of).await.unwrap();
            let want = expected(m, &units, &events, as_of);
            assert!(want.iter().map(|c| c.n).sum::<i64>() > 20, "{}", m.name);
            assert!(
                want.iter().any(|c| c.sum > 0.0),
                "{}: a vacuous case",
                m.name
            );
            assert_cells(&m.name, store.backend(), got, &want);
            let plan = store.metric_plan(trial_id, m, as_of).await.unwrap();
            assert!(!plan.is_empty());
        }
        // All of them at once: those that can share a statement do
        // (`metrics_cells`), and every metric's cells are still its own.
        let all: Vec<&Metric> = library.metrics.values().collect();
        let together = store.metrics_cells(trial_id, &all, as_of).await.unwrap();
        assert_eq!(together.len(), all.len());
        for (m, got) in all.iter().zip(together) {
            let want = expected(m, &units, &events, as_of);
            assert_cells(&format!("{} (fused)", m.name), store.backend(), got, &want);
        }
        // More than one statement's worth: in several, the same cells.
        let many: Vec<&Metric> = all
            .iter()
            .copied()
            .cycle()
            .take(commonlab_store::FUSED_METRICS_MAX + 3)
            .collect();
        let cells = store.metrics_cells(trial_id, &many, as_of).await.unwrap();
        assert_eq!(cells.len(), many.len());
        for (m, got) in many.iter().zip(cells) {
            let want = expected(m, &units, &events, as_of);
            assert_cells(&format!("{} (many)", m.name), store.backend(), got, &want);
        }
        let sql = store.metrics_sql(&all).expect("several metrics");
        assert!(sql.contains("UNION ALL"), "{sql}");
        // Nothing is exposed to a trial that does not exist.
        let m = &library.metrics["any_e1_7d"];
        assert!(store
            .metrics_cells(9999, &all, as_of)
            .await
            .unwrap()
            .iter()
            .all(Vec::is_empty));
        assert!(store.metric_cells(9999, m, as_of).await.unwrap().is_empty());
        // Before any window closes, nobody is analysed.
        assert!(store
            .metric_cells(trial_id, m, at(0))
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

fn rfc3339(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn exposure_at(trial_id: i64, unit: &str, at: DateTime<Utc>) -> NewExposure {
    NewExposure {
        trial_id,
        unit: unit.to_string(),
        arm: "control".into(),
        community: None,
        trial_version: 1,
        at,
        source: ExposureSource::Single,
        excluded_reason: None,
    }
}

fn event_at(id: u128, unit: &str, name: &str, ts: DateTime<Utc>, props: Value) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::from_u128(id),
        unit: unit.to_string(),
        community: None,
        name: name.to_string(),
        ts,
        properties: props.as_object().cloned().unwrap_or_default(),
    }
}

/// Issue 10, item 22: a first exposure in the last millisecond of a second
/// (SQLite's date functions round it up to the next second) still gets
/// the window [e, e + 60 s), its covariate [e − 60 s, e), and its window
/// closes at exactly e + 60 s.
#[tokio::test]
async fn windows_of_an_exposure_late_in_its_second_are_exact() {
    both_backends(|db| async move {
        let store = db.store();
        let lib = parse_metric_library(
            "[[metric]]\nname = \"minute\"\nkind = \"count\"\nevents = [\"e\"]\ndirection = \"increase\"\nwindow = [\"0s\", \"60s\"]\n",
            "m.toml",
        )
        .unwrap();
        let m = &lib.metrics["minute"];
        let trial_id = running_trial(store, "late-fraction").await;
        let e = rfc3339("2026-12-04T11:50:11.999732Z");
        let u = unit(1);
        store.record_exposures(&[exposure_at(trial_id, &u, e)]).await.unwrap();
        let events = [
            event_at(1, &u, "e", e + Span::milliseconds(60_500), json!({})),
            event_at(2, &u, "e", e - Span::seconds(60), json!({})),
        ];
        store.insert_events(&events, e).await.unwrap();
        let end = e + Span::seconds(60);
        let cells = store.metric_cells(trial_id, m, end).await.unwrap();
        assert_eq!(cells.len(), 1, "{}: the window closed at e + 60 s: {cells:?}", store.backend());
        let c = &cells[0];
        assert_eq!((c.n, c.sum, c.x_sum), (1, 0.0, 1.0), "{}: {c:?}", store.backend());
        let open = store.metric_cells(trial_id, m, end - Span::microseconds(1)).await.unwrap();
        assert!(open.is_empty(), "{}: the window is still open: {open:?}", store.backend());
    })
    .await;
}

/// Issue 10, item 23: the percentile cap is the value at rank ceil(p·n) for
/// the decimal p, never p·n in floating point (0.55 · 100 is 55, and so
/// is its rank; 0.55 · 100 in floating point is a little above).
#[tokio::test]
async fn percentile_caps_take_the_exact_nearest_rank() {
    both_backends(|db| async move {
        let store = db.store();
        let mut next_id = 0u128;
        for (n, percentiles) in [
            (100u64, &[0.55, 0.07, 0.5, 0.936, 0.99, 0.000001][..]),
            (300, &[0.81, 0.55, 0.999999][..]),
        ] {
            let trial_id = running_trial(store, &format!("ranks-{n}")).await;
            let e = at(0);
            let units: Vec<String> = (1..=n).map(|i| unit(10_000 * n + i)).collect();
            let exposures: Vec<NewExposure> =
                units.iter().map(|u| exposure_at(trial_id, u, e)).collect();
            store.record_exposures(&exposures).await.unwrap();
            // Unit i's value is i: the value at rank r is r.
            let events: Vec<NewEvent> = units
                .iter()
                .zip(1..)
                .map(|(u, i)| {
                    next_id += 1;
                    event_at(next_id, u, "v", e + Span::seconds(1), json!({ "v": i }))
                })
                .collect();
            store.insert_events(&events, e).await.unwrap();
            for &p in percentiles {
                let toml = format!(
                    "[[metric]]\nname = \"v\"\nkind = \"mean\"\nevents = [\"v\"]\ndirection = \"increase\"\nvalue = {{ sum = \"v\" }}\nwindow = [\"0s\", \"10s\"]\ncovariate = false\ncap = {{ percentile = {p} }}\n"
                );
                let lib = parse_metric_library(&toml, "m.toml").unwrap();
                let cells = store
                    .metric_cells(trial_id, &lib.metrics["v"], e + Span::days(1))
                    .await
                    .unwrap();
                let want = nearest_rank(p, n as usize) as f64;
                assert_eq!(cells.len(), 1);
                assert_eq!(cells[0].y_cap, Some(want), "{}: p = {p}, n = {n}", store.backend());
                let capped: f64 = (1..=n).map(|i| (i as f64).min(want)).sum();
                assert_eq!(cells[0].sum, capped, "{}: p = {p}, n = {n}", store.backend());
            }
        }
    })
    .await;
}
