//! Metric computation in the database: one metric (per-unit count of an
//! event in the 14 days after first exposure, the 14 days before as the
//! CUPED covariate, aggregated to per-arm and community sums) over 10
//! million events and 200,000 exposed units, on both backends.
//!
//! ```text
//! cargo bench -p commonlab-store --bench metrics
//! ```
//!
//! The dataset is generated inside each database the first time (a few
//! minutes) and kept for later runs: SQLite in
//! `target/bench-data/metrics.db`, PostgreSQL in the schema `bench_metrics`
//! of `COMMONLAB_TEST_POSTGRES_URL`'s database (default
//! `postgres://postgres@127.0.0.1:5432/test`). Environment:
//!
//! * `METRICS_BENCH_UNITS` (200000) and `METRICS_BENCH_EVENTS_PER_UNIT`
//!   (50): the dataset's size; a different size regenerates it;
//! * `METRICS_BENCH_RUNS` (5): timed runs per backend (after one warm-up);
//! * `METRICS_BENCH_ONLY` (`sqlite` or `postgres`): one backend.
//!
//! Events: 40% are the metric's event, the rest three other names; times
//! spread uniformly over 40 days either side of the unit's exposure (so
//! about 3.5 metric events per unit fall in each window); ids time-ordered;
//! rows stored in counter order (units: see `unit_hex`).
//!
//! Second measurement, on the same data (issue 12): a stepped wedge over
//! the dataset's 4 communities (`c0` … `c3`, each unit in one), five
//! 20-day periods from 2026-11-22 (the baseline, then one crossover every
//! 20 days), the share of members with a `contribution_created` in each
//! period: every community × period row produced in the database
//! (`Store::community_period_cells`, all 10M events in the windows) and
//! analysed (`rows::analyze_rows`, stepped wedge: randomisation inference
//! over the 24 orders, CR2, the wild cluster bootstrap over all 6⁴ weight
//! vectors). `METRICS_BENCH_DESIGN=0` skips it.
//!
//! Third measurement (issue 14): the ten metrics of
//! `bench/report-trial.toml` (stored as the trial `bench-report` with the
//! exposures of `bench-metrics`): each by `Store::metric_cells`, one at a
//! time and `k` at a time (level `k`), and by `Store::metrics_cells` in
//! `K` fused statements at once (level `fK`); `METRICS_BENCH_CONCURRENCY`
//! lists the levels (default `1,2,f1,f2`), which alternate within each
//! run. `METRICS_BENCH_REPORT=0` skips it, `METRICS_BENCH_HASH=0`
//! skips the timed runs of the first measurement. `bench/report-10m.sh`
//! times `commonlab report bench-report` on the same data.
//!
//! Each row also gives the median CPU time of this process (user and
//! system, `/proc/self/stat`): with SQLite, the statements' own work,
//! whatever else the machine runs.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_metric_library, parse_trial, Metric};
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsDesign, RowsInput};
use commonlab_store::{NewTrial, PeriodSpan, Store, TrialChange};
use futures_util::StreamExt;
use sqlx::{AssertSqlSafe, Connection};

const METRIC: &str = r#"
[[metric]]
name = "contributions_14d"
kind = "count"
events = ["contribution_created"]
direction = "increase"
window = ["0d", "14d"]
covariate = ["-14d", "0d"]
"#;

const SHARE: &str = r#"
[[metric]]
name = "contributor_share"
kind = "proportion"
events = ["contribution_created"]
direction = "increase"
"#;

const REPORT_TRIAL: &str = include_str!("../../../bench/report-trial.toml");

const BASE: &str = "2027-01-01T00:00:00";
const SPREAD_SECS: i64 = 40 * 86_400;
const EXPOSURE_SPREAD_SECS: i64 = 20 * 86_400;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn pg_base() -> String {
    std::env::var("COMMONLAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The generated rows, as SQL over a counter `k` (event) or `u` (unit).
/// Shared by both dialects where the expressions agree.
///
/// A unit is 64 hex digits like a pseudonym: its first digit is `u % 16`
/// (so that units spread over the hex range as HMACs do, which
/// `Store::community_period_cells` relies on to split members into two
/// halves at `"8"`), then `u`. Inserted in counter order, the indexes grow
/// at 16 points per community rather than at random ones.
fn unit_hex(dialect_pg: bool, u: &str) -> String {
    if dialect_pg {
        format!("to_hex({u} % 16) || lpad(to_hex({u}), 63, '0')")
    } else {
        format!("printf('%x%063x', {u} % 16, {u})")
    }
}

/// The trial `key` (created and started with `source` if missing); its id
/// and whether it was created now.
async fn ensure_trial(store: &Store, key: &str, source: &str) -> (i64, bool) {
    if let Some(t) = store.get_trial(key).await.unwrap() {
        return (t.id, false);
    }
    let at: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let hash = "ab".repeat(32);
    store
        .create_trial(&NewTrial {
            key,
            flag_key: "bench",
            spec_source: source,
            spec_canonical: "{}",
            spec_hash: &hash,
            actor: "bench",
            reason: "bench",
            at,
        })
        .await
        .unwrap();
    let change = TrialChange {
        actor: "bench",
        reason: "bench",
        at,
    };
    let id = store.start_trial(key, 1, None, &change).await.unwrap().id;
    (id, true)
}

async fn prepare_store(url: &str) -> (Store, i64) {
    let store = Store::connect_and_migrate(url).await.expect("connect");
    let (trial, _) = ensure_trial(&store, "bench-metrics", "# bench").await;
    (store, trial)
}

/// The report benchmark's trial (`bench/report-trial.toml`, key
/// `bench-report`) with the exposures of `bench-metrics` (copied when the
/// trial is created or the dataset was regenerated).
async fn prepare_report_trial(store: &Store, url: &str, from_trial: i64) -> i64 {
    let (id, _) = ensure_trial(store, "bench-report", REPORT_TRIAL).await;
    let copy = format!(
        "INSERT INTO exposures (trial_id, unit, arm, community, trial_version, exposed_at, source, excluded)
         SELECT {id}, unit, arm, community, trial_version, exposed_at, source, excluded
         FROM exposures WHERE trial_id = {from_trial}"
    );
    let count = format!("SELECT count(*) FROM exposures WHERE trial_id = {id}");
    let wanted = format!("SELECT count(*) FROM exposures WHERE trial_id = {from_trial}");
    macro_rules! sync {
        ($conn:expr) => {{
            let mut conn = $conn;
            let (have,): (i64,) = sqlx::query_as(AssertSqlSafe(count))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            let (want,): (i64,) = sqlx::query_as(AssertSqlSafe(wanted))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            if have != want {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM exposures WHERE trial_id = {id}"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(AssertSqlSafe(copy))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                // Fresh statistics, as autovacuum would give a live table
                // (without them, PostgreSQL's statistics say the new trial
                // has no exposures, and its first percentile-capped metric
                // had not finished after 19 minutes).
                sqlx::query("ANALYZE exposures")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }};
    }
    if url.starts_with("sqlite:") {
        sync!(sqlx::SqliteConnection::connect(url).await.unwrap());
    } else {
        sync!(sqlx::PgConnection::connect(url).await.unwrap());
    }
    id
}

/// The report trial's ten metrics computed as `report::analysis::fetch`
/// does (`Store::metric_cells` each), `concurrency` at a time.
async fn report_metrics(
    store: &Store,
    trial: i64,
    metrics: &[&Metric],
    as_of: DateTime<Utc>,
    concurrency: usize,
) -> Vec<Vec<commonlab_store::MetricCell>> {
    futures_util::stream::iter(metrics.iter().map(|m| store.metric_cells(trial, m, as_of)))
        .buffered(concurrency)
        .map(Result::unwrap)
        .collect()
        .await
}

/// The same by `Store::metrics_cells` (metrics sharing one statement):
/// the metrics in `groups` contiguous groups, the groups at once.
async fn report_metrics_fused(
    store: &Store,
    trial: i64,
    metrics: &[&Metric],
    as_of: DateTime<Utc>,
    groups: usize,
) -> Vec<Vec<commonlab_store::MetricCell>> {
    let size = metrics.len().div_ceil(groups.max(1));
    futures_util::stream::iter(
        metrics
            .chunks(size)
            .map(|g| store.metrics_cells(trial, g, as_of)),
    )
    .buffered(groups.max(1))
    .map(Result::unwrap)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .flatten()
    .collect()
}

async fn sqlite_dataset(units: usize, per_unit: usize) -> (Store, i64, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-data");
    std::fs::create_dir_all(dir).unwrap();
    let path = format!("{dir}/metrics.db");
    let url = format!("sqlite://{path}");
    let (store, trial) = prepare_store(&url).await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // A data set of an earlier generator (other units) is made again.
    let have: (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM exposures WHERE trial_id = {trial}), (SELECT count(*) FROM events),
                (SELECT count(*) FROM exposures WHERE trial_id = {trial} AND unit = (SELECT {hex} FROM (SELECT 17 AS u) one))",
        hex = unit_hex(false, "u"),
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    if have == (units as i64, (units * per_unit) as i64, 1) {
        return (store, trial, url);
    }
    eprintln!(
        "sqlite: generating {units} units and {} events in {path} …",
        units * per_unit
    );
    let started = Instant::now();
    sqlx::raw_sql("PRAGMA synchronous = OFF; DELETE FROM exposures; DELETE FROM events;")
        .execute(&mut conn)
        .await
        .unwrap();
    let exposure = format!("'{BASE}', '+' || ((u * 7919) % {EXPOSURE_SPREAD_SECS}) || ' seconds'");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO exposures (trial_id, unit, arm, community, trial_version, exposed_at, source, excluded)
         WITH RECURSIVE c(u) AS (SELECT 0 UNION ALL SELECT u + 1 FROM c WHERE u < {last})
         SELECT ?1, {hex}, CASE u % 2 WHEN 0 THEN 'control' ELSE 'treatment' END,
                'c' || ((u / 2) % 4), 1, strftime('%Y-%m-%dT%H:%M:%S', {exposure}) || '.000000Z', 'single', 0
         FROM c",
        last = units - 1,
        hex = unit_hex(false, "u"),
    )))
    .bind(trial)
    .execute(&mut conn)
    .await
    .unwrap();
    // In chunks of units, one transaction each.
    let chunk = 20_000usize;
    for start in (0..units).step_by(chunk) {
        let end = (start + chunk).min(units);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties)
             WITH RECURSIVE c(k) AS (SELECT {k0} UNION ALL SELECT k + 1 FROM c WHERE k < {k1}),
             r AS (SELECT k, k / {per_unit} AS u FROM c)
             SELECT CAST(printf('%016d', k) AS BLOB), {hex}, 'c' || ((u / 2) % 4),
                    CASE WHEN k % 5 < 2 THEN 'contribution_created'
                         WHEN k % 5 = 2 THEN 'comment_created'
                         WHEN k % 5 = 3 THEN 'session_started'
                         ELSE 'page_view' END,
                    strftime('%Y-%m-%dT%H:%M:%S', '{BASE}',
                        printf('%+d seconds', ((u * 7919) % {EXPOSURE_SPREAD_SECS}) + ((k * 2654435761) % {span}) - {SPREAD_SECS})) || '.000000Z',
                    '{BASE}.000000Z', '{{}}'
             FROM r",
            k0 = start * per_unit,
            k1 = end * per_unit - 1,
            span = 2 * SPREAD_SECS,
            hex = unit_hex(false, "u"),
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
        .execute(&mut conn)
        .await
        .unwrap();
    eprintln!("sqlite: generated in {:.0?}", started.elapsed());
    (store, trial, url)
}

async fn postgres_dataset(units: usize, per_unit: usize) -> (Store, i64, String) {
    let base = pg_base();
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL");
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS bench_metrics")
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3Dbench_metrics");
    let (store, trial) = prepare_store(&url).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // A data set of an earlier generator (other units) is made again.
    let have: (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM exposures WHERE trial_id = {trial}), (SELECT count(*) FROM events),
                (SELECT count(*) FROM exposures WHERE trial_id = {trial} AND unit = (SELECT {hex} FROM (SELECT 17 AS u) one))",
        hex = unit_hex(true, "u"),
    )))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    if have == (units as i64, (units * per_unit) as i64, 1) {
        return (store, trial, url);
    }
    eprintln!(
        "postgres: generating {units} units and {} events in schema bench_metrics …",
        units * per_unit
    );
    let started = Instant::now();
    sqlx::raw_sql("TRUNCATE exposures, events")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO exposures (trial_id, unit, arm, community, trial_version, exposed_at, source, excluded)
         SELECT $1, {hex}, CASE u % 2 WHEN 0 THEN 'control' ELSE 'treatment' END,
                'c' || ((u / 2) % 4), 1, timestamptz '{BASE}Z' + make_interval(secs => (u * 7919) % {EXPOSURE_SPREAD_SECS}), 'single', false
         FROM generate_series(0, {last}::bigint) u",
        last = units - 1,
        hex = unit_hex(true, "u"),
    )))
    .bind(trial)
    .execute(&mut conn)
    .await
    .unwrap();
    let chunk = 20_000usize;
    for start in (0..units).step_by(chunk) {
        let end = (start + chunk).min(units);
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties)
             SELECT lpad(to_hex(k), 32, '0')::uuid, {hex}, 'c' || ((u / 2) % 4),
                    CASE WHEN k % 5 < 2 THEN 'contribution_created'
                         WHEN k % 5 = 2 THEN 'comment_created'
                         WHEN k % 5 = 3 THEN 'session_started'
                         ELSE 'page_view' END,
                    timestamptz '{BASE}Z' + make_interval(secs => ((u * 7919) % {EXPOSURE_SPREAD_SECS}) + ((k * 2654435761) % {span}) - {SPREAD_SECS}),
                    timestamptz '{BASE}Z', '{{}}'::jsonb
             FROM (SELECT k, k / {per_unit} AS u FROM generate_series({k0}::bigint, {k1}::bigint) k) r",
            k0 = start * per_unit,
            k1 = end * per_unit - 1,
            span = 2 * SPREAD_SECS,
            hex = unit_hex(true, "u"),
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    for table in ["events", "exposures"] {
        sqlx::raw_sql(AssertSqlSafe(format!("VACUUM (ANALYZE) {table}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    eprintln!("postgres: generated in {:.0?}", started.elapsed());
    (store, trial, url)
}

/// The stepped wedge's rows produced in the database and analysed; the
/// number of rows and members, and the estimate.
async fn stepped_wedge(store: &Store, metric: &Metric) -> (usize, i64, f64) {
    let start: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().unwrap();
    let period = chrono::Duration::days(20);
    let windows: Vec<PeriodSpan> = (0..5)
        .map(|p| PeriodSpan {
            period: p,
            start: start + period * p as i32,
            end: start + period * (p as i32 + 1),
        })
        .collect();
    let communities: Vec<String> = (0..4).map(|c| format!("c{c}")).collect();
    let rows = store
        .community_period_cells(metric, &communities, &windows)
        .await
        .unwrap();
    let members: i64 = rows.cells.iter().map(|c| c.n).sum();
    let input = RowsInput {
        rows: rows
            .cells
            .iter()
            .map(|c| {
                // c0 crosses over after the baseline, c3 in the last period.
                let k: i64 = c.community[1..].parse().unwrap();
                Row {
                    cluster: c.community.clone(),
                    period: Some(c.period),
                    arm: None,
                    treated: Some(c.period > k),
                    value: c.sum / c.n as f64,
                    covariate: None,
                    stratum: None,
                }
            })
            .collect(),
        design: RowsDesign {
            kind: DesignKind::SteppedWedge,
            control_arm: "off".into(),
            community_effects: None,
            alternative: Default::default(),
            max_enumerate: 100_000,
            randomisation_draws: 9_999,
            wild_bootstrap_draws: 9_999,
            seed: 1,
        },
    };
    let out = analyze_rows(&input).unwrap();
    assert!(out.randomisation.result.is_some() && out.cr2.is_some());
    (input.rows.len(), members, out.estimate)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`
/// (Linux; clock ticks of 10 ms). With SQLite the statements run in this
/// process, so on a shared machine this is the work done whatever the
/// others do; with PostgreSQL it is only the client's share.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the file: the 12th and 13th after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// "min / median / max" of wall-clock times and, beside them, the median
/// CPU time of this process.
fn figures(times: &[Duration], cpu: &[Duration]) -> String {
    format!(
        "{:.2} s | {:.2} s | {:.2} s | {:.2} s",
        times.iter().min().unwrap().as_secs_f64(),
        median(times.to_vec()).as_secs_f64(),
        times.iter().max().unwrap().as_secs_f64(),
        median(cpu.to_vec()).as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let units = env_usize("METRICS_BENCH_UNITS", 200_000);
    let per_unit = env_usize("METRICS_BENCH_EVENTS_PER_UNIT", 50);
    let runs = env_usize("METRICS_BENCH_RUNS", 5).max(1);
    let only = std::env::var("METRICS_BENCH_ONLY").unwrap_or_default();
    let library = parse_metric_library(METRIC, "bench.toml").unwrap();
    let metric = &library.metrics["contributions_14d"];
    let as_of: DateTime<Utc> = "2027-03-01T00:00:00Z".parse().unwrap();
    println!("| store | units | events | min | median | max | CPU (median) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for backend in ["sqlite", "postgres"] {
        if !only.is_empty() && only != backend {
            continue;
        }
        let (store, trial, url) = if backend == "sqlite" {
            sqlite_dataset(units, per_unit).await
        } else {
            postgres_dataset(units, per_unit).await
        };
        if std::env::var_os("METRICS_BENCH_PLAN").is_some() {
            eprintln!("{}", store.metric_sql(metric));
            for line in store.metric_plan(trial, metric, as_of).await.unwrap() {
                eprintln!("  {line}");
            }
        }
        let cells = store.metric_cells(trial, metric, as_of).await.unwrap();
        let n: i64 = cells.iter().map(|c| c.n).sum();
        assert_eq!(n, units as i64, "every unit's window has closed");
        let hash_runs = if std::env::var("METRICS_BENCH_HASH").as_deref() == Ok("0") {
            0
        } else {
            runs
        };
        let (mut times, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..hash_runs {
            let (t, c) = (Instant::now(), cpu_time());
            let again = store.metric_cells(trial, metric, as_of).await.unwrap();
            times.push(t.elapsed());
            cpu.push(cpu_time().saturating_sub(c));
            assert_eq!(again, cells);
        }
        let per_arm: Vec<String> = cells
            .iter()
            .map(|c| {
                format!(
                    "{}/{}: n={} mean={:.3} x̄={:.3}",
                    c.arm,
                    c.community.as_deref().unwrap_or("-"),
                    c.n,
                    c.sum / c.n as f64,
                    c.x_sum / c.n as f64
                )
            })
            .collect();
        eprintln!("{backend}: {}", per_arm.join("; "));
        if !times.is_empty() {
            println!(
                "| {backend} | {units} | {} | {} |",
                units * per_unit,
                figures(&times, &cpu),
            );
        }
        if std::env::var("METRICS_BENCH_DESIGN").as_deref() != Ok("0") {
            let share = parse_metric_library(SHARE, "bench.toml").unwrap();
            let share = &share.metrics["contributor_share"];
            if std::env::var_os("METRICS_BENCH_PLAN").is_some() {
                let w = |d: &str| -> DateTime<Utc> { d.parse().unwrap() };
                let windows = [PeriodSpan {
                    period: 0,
                    start: w("2026-11-22T00:00:00Z"),
                    end: w("2026-12-12T00:00:00Z"),
                }];
                eprintln!(
                    "{}",
                    store.community_metric_sql(share, &["c0".into()], &windows)
                );
            }
            let first = stepped_wedge(&store, share).await;
            let (mut times, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (t, c) = (Instant::now(), cpu_time());
                let again = stepped_wedge(&store, share).await;
                times.push(t.elapsed());
                cpu.push(cpu_time().saturating_sub(c));
                assert_eq!(again, first);
            }
            eprintln!(
                "{backend} stepped wedge: {} rows, {} member-periods, estimate {:.5}",
                first.0, first.1, first.2
            );
            println!(
                "| {backend}, stepped wedge rows + analysis | {units} | {} | {} |",
                units * per_unit,
                figures(&times, &cpu),
            );
        }
        if std::env::var("METRICS_BENCH_REPORT").as_deref() != Ok("0") {
            report_trial(&store, &url, trial, as_of, runs, backend, units * per_unit).await;
        }
        store.close().await;
    }
}

/// Third measurement (issue 14): the ten metrics of `bench-report`, one at
/// a time, `k` at a time or fused (`METRICS_BENCH_CONCURRENCY`),
/// alternated within each run so that every level sees the same machine.
async fn report_trial(
    store: &Store,
    url: &str,
    from_trial: i64,
    as_of: DateTime<Utc>,
    runs: usize,
    backend: &str,
    events: usize,
) {
    let id = prepare_report_trial(store, url, from_trial).await;
    let spec = parse_trial(REPORT_TRIAL, "bench/report-trial.toml").unwrap();
    let metrics: Vec<&Metric> = std::iter::once(&spec.metrics.primary)
        .chain(&spec.metrics.secondary)
        .chain(&spec.metrics.guardrails)
        .collect();
    // `k`: one statement per metric, k at a time; `fK`: the metrics in K
    // fused statements, at once.
    let levels: Vec<(bool, usize)> = std::env::var("METRICS_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,2,f1,f2".into())
        .split(',')
        .filter_map(|k| {
            let k = k.trim();
            match k.strip_prefix('f') {
                Some(g) => g.parse().ok().map(|g| (true, g)),
                None => k.parse().ok().map(|k| (false, k)),
            }
        })
        .filter(|&(_, k)| k > 0)
        .collect();
    if std::env::var_os("METRICS_BENCH_PLAN").is_some() {
        eprintln!(
            "{backend} report metrics in one statement:\n{}",
            store.metrics_sql(&metrics).unwrap_or_default()
        );
    }
    let first = report_metrics(store, id, &metrics, as_of, 2).await;
    let mut times = vec![Vec::new(); levels.len()];
    let mut cpu = vec![Vec::new(); levels.len()];
    for _ in 0..runs {
        for (i, &(fused, k)) in levels.iter().enumerate() {
            let (t, c) = (Instant::now(), cpu_time());
            let again = if fused {
                report_metrics_fused(store, id, &metrics, as_of, k).await
            } else {
                report_metrics(store, id, &metrics, as_of, k).await
            };
            times[i].push(t.elapsed());
            cpu[i].push(cpu_time().saturating_sub(c));
            assert_eq!(again, first, "the same cells at any concurrency");
        }
    }
    for (i, &(fused, k)) in levels.iter().enumerate() {
        let how = if fused {
            format!("in {k} fused statement(s) at once")
        } else {
            format!("{k} at a time")
        };
        println!(
            "| {backend}, {} report metrics, {how} | 200000 | {events} | {} |",
            metrics.len(),
            figures(&times[i], &cpu[i]),
        );
    }
}
