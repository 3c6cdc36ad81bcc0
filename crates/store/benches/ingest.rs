//! Ingestion throughput of `Store::insert_events`: rows/s for batches of 500
//! and 5,000 events, every batch one durable commit (SQLite WAL with
//! `synchronous = FULL`; PostgreSQL as configured, its settings printed),
//! with random (UUIDv4) and time-ordered (UUIDv7) ids, on both backends.
//!
//! ```text
//! cargo bench -p commonlab-store --bench ingest
//! ```
//!
//! Needs PostgreSQL like the tests (`COMMONLAB_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); each run uses fresh databases
//! from `commonlab_store::testing`, removed afterwards. Environment:
//!
//! * `INGEST_BENCH_ROWS`: rows measured per configuration (default 100000);
//! * `INGEST_BENCH_UNITS`: distinct units (default 200000, as in
//!   `bench/ingest-load.sh`; the morning figures used 2,000);
//! * `INGEST_BENCH_PRELOAD`: rows stored (same id kind, not measured) before
//!   measuring, to see how the id kind behaves on a big table (default 0);
//! * `INGEST_BENCH_WRITERS`: concurrent writers, each with its own `Store`
//!   as separate server processes would have (default 1);
//! * `INGEST_BENCH_INDEX_AB=1`: each configuration twice in a row, with
//!   and without migration 0009's index `events_community_unit_ts_idx`
//!   (dropped from the fresh database before measuring), to see what the
//!   community designs' index costs ingestion (column `0009`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commonlab_store::testing::{TestDb, BACKENDS};
use commonlab_store::{Backend, EventFilter, NewEvent, Store};
use serde_json::{json, Map, Value};
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
enum Ids {
    V4,
    V7,
}

impl Ids {
    fn next(self) -> Uuid {
        match self {
            Ids::V4 => Uuid::new_v4(),
            Ids::V7 => Uuid::now_v7(),
        }
    }
}

const NAMES: [&str; 8] = [
    "app_open",
    "screen_view",
    "button_tap",
    "form_submit",
    "lesson_start",
    "lesson_done",
    "sync",
    "error",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: spreads unit numbers over the key space as HMAC pseudonyms are.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Distinct units in the generated events (`INGEST_BENCH_UNITS`, default
/// 200,000 as in `bench/ingest-load.sh`, so that this is the limit for the
/// same rows).
fn units() -> u64 {
    env_usize("INGEST_BENCH_UNITS", 200_000).max(1) as u64
}

/// A realistic event: one of `units()` pseudonymous units (uniform 64-hex,
/// like HMAC output), 8 names, 5 communities, four typed properties.
fn make_event(ids: Ids, n: usize, base: DateTime<Utc>) -> NewEvent {
    let properties: Map<String, Value> = match json!({
        "screen": format!("screen-{}", n % 37),
        "duration_ms": (n * 7919) % 60_000,
        "ratio": (n % 1000) as f64 / 1000.0,
        "online": !n.is_multiple_of(3),
    }) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    NewEvent {
        event_id: ids.next(),
        unit: format!(
            "{:016x}",
            splitmix((n as u64).wrapping_mul(2_654_435_761) % units())
        )
        .repeat(4),
        // One event in six without a community.
        community: (!n.is_multiple_of(6)).then(|| format!("community-{}", n % 5)),
        name: NAMES[n % NAMES.len()].to_string(),
        ts: base + chrono::Duration::milliseconds(n as i64),
        properties,
    }
}

fn batches(ids: Ids, rows: usize, batch: usize, offset: usize) -> Vec<Vec<NewEvent>> {
    let base = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    (0..rows)
        .map(|n| make_event(ids, offset + n, base))
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(<[NewEvent]>::to_vec)
        .collect()
}

/// Drops migration 0009's index from `db` (a fresh test database).
async fn drop_community_index(db: &TestDb) {
    use sqlx::Connection as _;
    let sql = "DROP INDEX events_community_unit_ts_idx";
    match db.store().backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }
}

async fn durability(db: &TestDb) -> String {
    let show = |q: &'static str| async move {
        db.fetch_text_raw(q)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "?".into())
    };
    match db.backend() {
        Backend::Sqlite => format!(
            "journal_mode={} synchronous={} (2 = FULL)",
            show("SELECT CAST(journal_mode AS TEXT) FROM pragma_journal_mode").await,
            show("SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous").await,
        ),
        Backend::Postgres => format!(
            "{}; fsync={} synchronous_commit={} wal_sync_method={}",
            show("SELECT split_part(version(), ',', 1)").await,
            show("SELECT current_setting('fsync')").await,
            show("SELECT current_setting('synchronous_commit')").await,
            show("SELECT current_setting('wal_sync_method')").await,
        ),
    }
}

struct Run {
    rows: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run(stores: &[Store], work: Vec<Vec<NewEvent>>) -> Run {
    let received = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
    let writers = stores.len();
    let mut shares: Vec<Vec<Vec<NewEvent>>> = vec![Vec::new(); writers];
    for (i, b) in work.into_iter().enumerate() {
        shares[i % writers].push(b);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (store, share) in stores.iter().cloned().zip(shares) {
        tasks.push(tokio::spawn(async move {
            let mut rows = 0;
            let mut latencies = Vec::new();
            for batch in share {
                let t = Instant::now();
                let out = store.insert_events(&batch, received).await.unwrap();
                latencies.push(t.elapsed());
                assert_eq!(out.inserted as usize, batch.len(), "unexpected duplicates");
                rows += out.inserted;
            }
            (rows, latencies)
        }));
    }
    let mut total = Run {
        rows: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (rows, latencies) = t.await.unwrap();
        total.rows += rows;
        total.latencies.extend(latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    total
}

fn main() {
    let rows = env_usize("INGEST_BENCH_ROWS", 100_000);
    let preload = env_usize("INGEST_BENCH_PRELOAD", 0);
    let writers = env_usize("INGEST_BENCH_WRITERS", 1).max(1);
    let index_variants: &[bool] = if env_usize("INGEST_BENCH_INDEX_AB", 0) == 1 {
        &[true, false]
    } else {
        &[true]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "insert_events: {rows} rows per configuration, {preload} preloaded, \
             {writers} writer(s), durable commit per batch"
        );
        println!(
            "{:<9} {:<4} {:>6} {:>5} {:>9} {:>8} {:>10} {:>9} {:>9} {:>9}",
            "backend",
            "ids",
            "batch",
            "0009",
            "rows",
            "secs",
            "rows/s",
            "p50 ms",
            "p99 ms",
            "retry/s"
        );
        for backend in BACKENDS {
            let mut settings_shown = false;
            for ids in [Ids::V4, Ids::V7] {
                for (batch, &with_index) in [500usize, 5000]
                    .into_iter()
                    .flat_map(|b| index_variants.iter().map(move |i| (b, i)))
                {
                    let db = TestDb::new(backend).await;
                    if !with_index {
                        drop_community_index(&db).await;
                    }
                    if !settings_shown {
                        eprintln!("{backend}: {}", durability(&db).await);
                        settings_shown = true;
                    }
                    let mut stores = vec![db.store().clone()];
                    for _ in 1..writers {
                        stores.push(db.connect_another().await);
                    }
                    if preload > 0 {
                        run(&stores, batches(ids, preload, 5000, 0)).await;
                    }
                    let work = batches(ids, rows, batch, preload);
                    let retry = work[0].clone();
                    let r = run(&stores, work).await;
                    let count = db
                        .store()
                        .count_events(&EventFilter::default())
                        .await
                        .unwrap();
                    assert_eq!(count as usize, rows + preload);
                    // A retried batch: every event is a duplicate.
                    let t = Instant::now();
                    let out = db.store().insert_events(&retry, Utc::now()).await.unwrap();
                    let retry_rate = retry.len() as f64 / t.elapsed().as_secs_f64();
                    assert_eq!(out.duplicates.len(), retry.len());
                    let pct = |p: f64| {
                        let i = ((r.latencies.len() as f64 - 1.0) * p).round() as usize;
                        r.latencies[i].as_secs_f64() * 1000.0
                    };
                    println!(
                        "{:<9} {:<4} {:>6} {:>5} {:>9} {:>8.2} {:>10.0} {:>9.1} {:>9.1} {:>9.0}",
                        backend.as_str(),
                        format!("{ids:?}").to_lowercase(),
                        batch,
                        if with_index { "yes" } else { "no" },
                        r.rows,
                        r.elapsed.as_secs_f64(),
                        r.rows as f64 / r.elapsed.as_secs_f64(),
                        pct(0.5),
                        pct(0.99),
                        retry_rate,
                    );
                    for store in &stores[1..] {
                        store.close().await;
                    }
                    db.cleanup().await;
                }
            }
        }
    });
}
