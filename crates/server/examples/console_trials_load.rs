//! The console's trial page under load (docs/benchmarks.md, "Console:
//! the trial page"): a real server on loopback, in this process, on a
//! fresh database holding a running hash trial with `--units` (default
//! 200,000) exposed units in 20 communities and one event for every other
//! unit, written through the store (`record_exposures`, `insert_events`).
//!
//! A researcher signs in (the console's sign-in form), then:
//!
//! 1. the first view of the trial page (the digest computed: arm counts
//!    and the analysis of the stored trial), timed alone;
//! 2. `--concurrency` clients (default 4) load the page back to back for
//!    `--seconds` (default 30; the digest is recomputed every 10 s in a
//!    background task started by the view that finds it stale, which is
//!    served the stale one: that computation shares the cores with the
//!    views, so its cost is in the run). The
//!    server-side time of every view (from the request entering the router
//!    to its response head) and the client-side time are reported as
//!    p50/p99/max, with the number of views over 10 ms.
//!
//! ```text
//! cargo run --release -p commonlab-server --example console_trials_load -- \
//!     [--database-url postgres://...] [--units 200000] [--concurrency 4] [--seconds 30]
//! ```
//! Without `--database-url`, a SQLite file in a temporary directory. The
//! example migrates and fills the database it is given: on PostgreSQL pass
//! a scratch schema (`...?options=-c%20search_path%3Dconsole_load`, created
//! empty beforehand and dropped afterwards).

use anyhow::{ensure, Context, Result};
use axum::extract::Request;
use axum::middleware::Next;
use chrono::Utc;
use commonlab_core::auth::Role;
use commonlab_core::privacy::StudyKey;
use commonlab_server::keys::create_key;
use commonlab_server::{build_state, layers, routes, start_app, Clock, Config};
use commonlab_store::{ExposureSource, NewEvent, NewExposure, Store};
use reqwest::header;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FLAGS: &str = include_str!("../tests/fixtures/flags.json");
const TRIAL: &str = include_str!("../tests/fixtures/trials/hash.toml");

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let over = d.iter().filter(|x| **x > Duration::from_millis(10)).count();
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.1} ms, over 10 ms: {over}",
        d.len(),
        ms(percentile(&d, 0.50)),
        ms(percentile(&d, 0.99)),
        ms(*d.last().unwrap()),
    );
}

/// The value of cookie `name` set by `resp`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            let (k, val) = pair.split_once('=')?;
            (k == name).then(|| val.to_string())
        })
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a form token");
    let rest = &html[at + "name=\"_csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::main]
async fn main() -> Result<()> {
    let units: usize = arg("--units").map_or(Ok(200_000), |s| s.parse())?;
    let concurrency: usize = arg("--concurrency").map_or(Ok(4), |s| s.parse())?;
    let seconds: u64 = arg("--seconds").map_or(Ok(30), |s| s.parse())?;
    let dir = std::env::temp_dir().join(format!("commonlab-console-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = arg("--database-url")
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("load.db").display()));
    let store = Store::connect_and_migrate(&url).await?;

    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let config = Config {
        console_secure_cookie: false,
        ..Config::new(StudyKey::from_bytes(&key)?)
    };
    let state = build_state(store.clone(), config, Clock::System).await?;
    let server_times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let recorded = Arc::clone(&server_times);
    let app = layers::with_layers(routes(), state.clone()).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let recorded = Arc::clone(&recorded);
            async move {
                let timed = req.uri().path() == "/console/trials/thanks-hash";
                let start = Instant::now();
                let resp = next.run(req).await;
                if timed {
                    recorded.lock().unwrap().push(start.elapsed());
                }
                resp
            }
        },
    ));
    let server = start_app("127.0.0.1:0".parse()?, state, app).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The flags and the trial, through the API.
    let now = Utc::now();
    let admin = create_key(&store, "load-admin", Role::Admin, "load", now)
        .await?
        .key;
    commonlab_server::sync::refresh_keys(&server.state).await?;
    let post = |path: &str| http.post(format!("{base}{path}")).bearer_auth(&admin);
    let r = post("/api/v1/import?reason=load")
        .header(header::CONTENT_TYPE, "application/json")
        .body(FLAGS)
        .send()
        .await?;
    ensure!(r.status().is_success(), "import: {}", r.text().await?);
    let r = post("/api/v1/trials")
        .json(&serde_json::json!({"source": TRIAL, "reason": "load"}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "create: {}", r.text().await?);
    let r = post("/api/v1/trials/thanks-hash/start")
        .json(&serde_json::json!({"reason": "load"}))
        .send()
        .await?;
    ensure!(r.status().is_success(), "start: {}", r.text().await?);
    let trial = store.get_trial("thanks-hash").await?.context("the trial")?;

    // The units, through the store.
    let seeded = Instant::now();
    let arms = ["control", "control", "small", "big"];
    for chunk in (0..units).collect::<Vec<_>>().chunks(5_000) {
        let mut exposures = Vec::with_capacity(chunk.len());
        let mut events = Vec::new();
        for &i in chunk {
            let unit = hex::encode(Sha256::digest(format!("unit-{i}").as_bytes()));
            let community = Some(format!("c{}", i % 20));
            let at = now - chrono::Duration::minutes(60 + (i % 600) as i64);
            if i % 2 == 0 {
                events.push(NewEvent {
                    event_id: uuid::Uuid::new_v4(),
                    unit: unit.clone(),
                    community: community.clone(),
                    name: "contribution_created".into(),
                    ts: at + chrono::Duration::minutes(5),
                    properties: Default::default(),
                });
            }
            exposures.push(NewExposure {
                trial_id: trial.id,
                unit,
                arm: arms[i % 4].into(),
                community,
                trial_version: trial.version,
                at,
                source: ExposureSource::Explicit,
                excluded_reason: None,
            });
        }
        store.record_exposures(&exposures).await?;
        store.insert_events(&events, now).await?;
    }
    println!(
        "seeded {units} exposed units and {} events in {:.1} s",
        units.div_ceil(2),
        seeded.elapsed().as_secs_f64()
    );

    // Sign in as a researcher, through the form.
    let researcher = create_key(&store, "load-researcher", Role::Researcher, "load", now)
        .await?
        .key;
    commonlab_server::sync::refresh_keys(&server.state).await?;
    let form = http.get(format!("{base}/console/sign-in")).send().await?;
    let pre = set_cookie(&form, "commonlab_console_pre").context("a pre-session cookie")?;
    let csrf = csrf_of(&form.text().await?);
    let signed = http
        .post(format!("{base}/console/sign-in"))
        .header(header::COOKIE, format!("commonlab_console_pre={pre}"))
        .form(&[
            ("_csrf", csrf.as_str()),
            ("key", researcher.as_str()),
            ("next", ""),
        ])
        .send()
        .await?;
    let session = set_cookie(&signed, "commonlab_console").context("a session cookie")?;
    let cookie = format!("commonlab_console={session}");
    let page = format!("{base}/console/trials/thanks-hash");

    let first = Instant::now();
    let r = http
        .get(&page)
        .header(header::COOKIE, &cookie)
        .send()
        .await?;
    ensure!(r.status().is_success(), "trial page: {}", r.status());
    let html = r.text().await?;
    println!(
        "first view (digest computed): {:.1} ms",
        first.elapsed().as_secs_f64() * 1e3
    );
    ensure!(
        html.contains(&format!("<dt>Exposed</dt><dd>{units}</dd>")),
        "the page does not show {units} exposed units"
    );
    server_times.lock().unwrap().clear();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (http, page, cookie) = (http.clone(), page.clone(), cookie.clone());
        clients.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = http
                    .get(&page)
                    .header(header::COOKIE, &cookie)
                    .send()
                    .await?;
                ensure!(r.status().is_success(), "trial page: {}", r.status());
                r.bytes().await?;
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut client_times = Vec::new();
    for c in clients {
        client_times.extend(c.await??);
    }
    report(
        "server side",
        std::mem::take(&mut *server_times.lock().unwrap()),
    );
    report("client side", client_times);
    server.stop().await?;
    store.close().await;
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
