//! Load on the survey pages (docs/benchmarks.md, "Survey pages"): a real
//! server on loopback, in this process, on a fresh database.
//!
//! 0. Cost of one render: one respondent's page rendered through the
//!    router in this process, one request at a time (no network), in 10
//!    batches of 500; the fastest and the median batch's mean per render
//!    (the fastest batch is the least disturbed by other load).
//! 1. Render time: `--concurrency` respondents (default 50), each on its
//!    own link and connection, load their current page (a randomised page
//!    of 5 Likert items) `--renders` times each, pausing a think time
//!    between loads (`--think-ms`, default 100: a pause drawn evenly from
//!    half to one and a half times it; 0 loads back to back, which measures
//!    queueing at saturation rather than a page's cost); the server-side time of
//!    every `GET /s/{token}` (from the request entering the router to its
//!    response head: link check, limits, two store reads, rendering) and
//!    the client-side time are reported as p50/p99/max.
//! 2. No loss: `--respondents` (default 1,000) respondents complete a
//!    20-item survey (4 pages of 5 required items) all at once: consent,
//!    then each page loaded and posted, then the thanks page. Every
//!    response is then read back from the store and compared with what was
//!    sent; any difference, or any answer other than 303/200 on the way,
//!    fails the run.
//!
//! ```text
//! cargo run --release -p commonlab-server --example survey_load -- \
//!     [--database-url postgres://...] [--respondents 1000] [--concurrency 50] \
//!     [--renders 200] [--think-ms 100]
//! ```
//! Without `--database-url`, a SQLite file in a temporary directory.

use anyhow::{ensure, Context, Result};
use axum::extract::Request;
use axum::middleware::Next;
use chrono::Utc;
use commonlab_core::privacy::StudyKey;
use commonlab_core::surveys::token::{sign, TokenClaims};
use commonlab_server::surveys::pages::form_token;
use commonlab_server::{build_state, layers, routes, start_app, Clock, Config};
use commonlab_store::{NewCampaign, NewInstrument, ResponseStatus, Store};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn twenty_items() -> String {
    let mut s = String::from(
        "key = \"load20\"\nversion = 1\nlanguages = [\"en\", \"es\"]\nsource = \"Commonlab load test.\"\n\
         title.en = \"Twenty\"\ntitle.es = \"Veinte\"\nintro.en = \"i\"\nintro.es = \"i\"\n\
         [consent]\nversion = \"1\"\ntext.en = \"ok\"\ntext.es = \"ok\"\n\
         [label_sets.five]\nen = [\"Strongly disagree\", \"Disagree\", \"Neither\", \"Agree\", \"Strongly agree\"]\n\
         es = [\"Muy en desacuerdo\", \"En desacuerdo\", \"Ni uno ni otro\", \"De acuerdo\", \"Muy de acuerdo\"]\n",
    );
    for page in 0..4 {
        s.push_str("[[pages]]\nrandomise = true\n");
        for i in 0..5 {
            let n = page * 5 + i + 1;
            s.push_str(&format!(
                "[[pages.items]]\nkey = \"q{n}\"\nkind = \"likert\"\npoints = 5\nlabels = \"five\"\nrequired = true\n\
                 text.en = \"Statement number {n} about the platform and the community\"\ntext.es = \"Afirmación {n}\"\n"
            ));
        }
    }
    s
}

fn answer(r: usize, n: usize) -> usize {
    (r * 7 + n * 3) % 5 + 1
}

fn unit(r: usize) -> String {
    hex::encode(Sha256::digest(format!("load-{r}").as_bytes()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    println!(
        "{what}: n = {}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        d.len(),
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.99)),
        ms(*d.last().unwrap())
    );
}

struct Who {
    base: String,
    token: String,
    csrf: String,
    http: reqwest::Client,
}

impl Who {
    async fn get(&self, path: &str) -> Result<reqwest::StatusCode> {
        Ok(self
            .http
            .get(format!("{}/s/{}{path}", self.base, self.token))
            .send()
            .await?
            .status())
    }

    async fn post(&self, path: &str, fields: &[(String, String)]) -> Result<reqwest::StatusCode> {
        let mut all = vec![
            ("_csrf".to_string(), self.csrf.clone()),
            ("_lang".into(), "en".into()),
        ];
        all.extend_from_slice(fields);
        Ok(self
            .http
            .post(format!("{}/s/{}{path}", self.base, self.token))
            .form(&all)
            .send()
            .await?
            .status())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let respondents: usize = arg("--respondents").map_or(Ok(1_000), |s| s.parse())?;
    let concurrency: usize = arg("--concurrency").map_or(Ok(50), |s| s.parse())?;
    let renders: usize = arg("--renders").map_or(Ok(200), |s| s.parse())?;
    let think: u64 = arg("--think-ms").map_or(Ok(100), |s| s.parse())?;
    let dir = std::env::temp_dir().join(format!("commonlab-survey-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = arg("--database-url")
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("load.db").display()));
    let store = Store::connect_and_migrate(&url).await?;

    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let config = Config {
        survey_rate_per_ip_per_minute: u32::MAX,
        survey_rate_per_link_per_minute: u32::MAX,
        ..Config::new(StudyKey::from_bytes(&key)?)
    };
    let keys = Arc::clone(&config.survey_keys);
    let state = build_state(store.clone(), config, Clock::System).await?;
    let server_times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let recorded = Arc::clone(&server_times);
    let app = layers::with_layers(routes(), state.clone()).layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let recorded = Arc::clone(&recorded);
            async move {
                let timed = req.method() == axum::http::Method::GET;
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

    let source = twenty_items();
    let run = format!("{}", Utc::now().timestamp_micros());
    let now = Utc::now();
    store
        .publish_instrument(&NewInstrument {
            key: "load20",
            version: 1,
            source: &source,
            hash: &hex::encode(Sha256::digest(source.as_bytes())),
            actor: "load",
            reason: "load test",
            at: now,
        })
        .await?;
    let campaign_key = format!("load-{run}");
    let campaign = store
        .create_campaign(&NewCampaign {
            key: &campaign_key,
            instrument: "load20",
            version: 1,
            trial_key: None,
            wave: "w",
            opens_at: now - chrono::Duration::hours(1),
            closes_at: now + chrono::Duration::days(1),
            trigger_flag: None,
            actor: "load",
            reason: "load test",
            at: now,
        })
        .await?;
    let who = |r: usize| -> Result<Who> {
        let claims = TokenClaims::new(
            &campaign_key,
            &unit(r),
            "w",
            now + chrono::Duration::days(1),
        )?;
        let token = sign(keys.token(), &claims);
        Ok(Who {
            base: base.clone(),
            csrf: form_token(&keys, &token),
            token,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    };

    // 0. The cost of one render, through the router, one at a time.
    {
        let me = who(respondents + concurrency)?;
        ensure!(
            me.post("/consent", &[("consent".into(), "yes".into())])
                .await?
                == 303
        );
        let app = commonlab_server::router(server.state.clone());
        let mut batches = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            for _ in 0..500 {
                let req =
                    Request::get(format!("/s/{}", me.token)).body(axum::body::Body::empty())?;
                let resp = tower::ServiceExt::oneshot(app.clone(), req).await?;
                ensure!(resp.status() == 200);
                axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
            }
            batches.push(start.elapsed() / 500);
        }
        batches.sort();
        println!(
            "one render in process (10 batches of 500): fastest batch {:.3} ms, median batch {:.3} ms per render",
            batches[0].as_secs_f64() * 1e3,
            batches[5].as_secs_f64() * 1e3
        );
    }

    // 1. Render time at `concurrency` respondents (links of their own,
    // numbered after the no-loss ones).
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..concurrency {
        let me = who(respondents + r)?;
        tasks.spawn(async move {
            ensure!(
                me.post("/consent", &[("consent".into(), "yes".into())])
                    .await?
                    == 303
            );
            let mut times = Vec::with_capacity(renders);
            for i in 0..renders {
                if think > 0 {
                    let jitter = (r as u64 * 37 + i as u64 * 11) % (think + 1);
                    tokio::time::sleep(Duration::from_millis(think / 2 + jitter)).await;
                }
                let t = Instant::now();
                ensure!(me.get("").await? == 200);
                times.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(times)
        });
    }
    server_times.lock().unwrap().clear();
    let mut client_times = Vec::new();
    while let Some(t) = tasks.join_next().await {
        client_times.extend(t??);
    }
    report(
        &format!("page render, server side ({concurrency} concurrent respondents, think time {think} ms)"),
        std::mem::take(&mut *server_times.lock().unwrap()),
    );
    report("page render, client side (loopback)", client_times);

    // 2. `respondents` complete the 20-item survey at once.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..respondents {
        let me = who(r)?;
        tasks.spawn(async move {
            ensure!(
                me.post("/consent", &[("consent".into(), "yes".into())])
                    .await?
                    == 303
            );
            for page in 0..4 {
                ensure!(me.get("").await? == 200, "respondent {r} page {}", page + 1);
                let fields: Vec<(String, String)> = (1..=5)
                    .map(|i| {
                        let n = page * 5 + i;
                        (format!("q{n}"), answer(r, n).to_string())
                    })
                    .collect();
                let s = me.post(&format!("/pages/{}", page + 1), &fields).await?;
                ensure!(s == 303, "respondent {r} page {}: {s}", page + 1);
            }
            ensure!(me.get("/done").await? == 200);
            Ok::<_, anyhow::Error>(())
        });
    }
    let mut failed = 0;
    while let Some(t) = tasks.join_next().await {
        if let Err(e) = t.context("a respondent task")? {
            failed += 1;
            eprintln!("{e:#}");
        }
    }
    let took = started.elapsed();
    let responses = store.responses(campaign.id).await?;
    let mut complete = 0;
    for r in 0..respondents {
        let me = unit(r);
        let Some(got) = responses.iter().find(|x| x.unit == me) else {
            continue;
        };
        let all_there = (1..=20).all(|n| {
            got.answers.get(&format!("q{n}")).and_then(|v| v.as_f64()) == Some(answer(r, n) as f64)
        });
        if got.status == ResponseStatus::Completed && got.answers.len() == 20 && all_there {
            complete += 1;
        }
    }
    println!(
        "no loss: {respondents} respondents x 20 items at once in {:.1} s ({:.0} page posts/s): {complete} complete and exact, {failed} failed",
        took.as_secs_f64(),
        (respondents * 5) as f64 / took.as_secs_f64()
    );
    server.stop().await?;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(failed == 0 && complete == respondents, "answers were lost");
    Ok(())
}
