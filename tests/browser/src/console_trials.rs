//! The console's trial and survey pages in the browser: a researcher signs
//! in through the sign-in form, opens the trial list and a draft trial,
//! starts it through its confirmation page, simulated traffic (OFREP
//! evaluations and telemetry events through the public API) arrives, the
//! trial page shows the exposures, the report opens, the survey list and
//! every preview language open, and the researcher signs out. axe-core runs
//! in every console page (no serious or critical violation), and each is
//! saved as a screenshot under `target/browser-screenshots/` (not
//! committed).

use super::axe_check;
use super::console::click_on_and_wait;
use anyhow::{ensure, Context, Result};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FLAGS: &str = include_str!("../../../crates/server/tests/fixtures/flags.json");
const TRIAL: &str = include_str!("../../../crates/server/tests/fixtures/trials/hash.toml");
const KEY: &str = "thanks-hash";

/// The API, as the trial's operators and SDKs call it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, key: &str, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        ensure!(status.is_success(), "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn new_key(&self, admin: &str, role: &str) -> Result<String> {
        let v = self
            .call(
                admin,
                "/api/v1/keys",
                json!({"name": format!("browser-{role}"), "role": role}),
            )
            .await?;
        Ok(v["key"].as_str().context("a key")?.to_string())
    }
}

/// Checks the page with axe-core and saves its screenshot as `name`.
async fn look(c: &Client, axe: &str, name: &str) -> Result<()> {
    axe_check(c, axe, name).await?;
    let png = c.screenshot().await?;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("console-{name}.png")), png)?;
    Ok(())
}

/// The page's `main` text. A click that navigates returns before the new
/// page replaces the old one, so the element found may go stale while it is
/// read: read again (for up to 10 s).
async fn text(c: &Client) -> Result<String> {
    let mut attempt = 0;
    loop {
        let read = async { c.find(Locator::Css("main")).await?.text().await }.await;
        match read {
            Ok(t) => return Ok(t),
            Err(_) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`text`] once it contains `needle` (the page a click led to has
/// loaded), or after 10 s whatever it is (the caller's check fails).
async fn text_with(c: &Client, needle: &str) -> Result<String> {
    for _ in 0..50 {
        let t = text(c).await?;
        if t.contains(needle) {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    text(c).await
}

/// Runs the walk; answers how many pages axe-core checked.
pub async fn run(c: &Client, axe: &str, base: &str, admin: &str) -> Result<usize> {
    let api = Api {
        http: reqwest::Client::new(),
        base: base.to_string(),
    };
    let r = api
        .http
        .post(format!("{base}/api/v1/import?reason=browser"))
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(FLAGS)
        .send()
        .await?;
    ensure!(r.status().is_success(), "import: {}", r.text().await?);
    api.call(
        admin,
        "/api/v1/trials",
        json!({"source": TRIAL, "reason": "browser test"}),
    )
    .await?;
    let researcher = api.new_key(admin, "researcher").await?;
    let sdk = api.new_key(admin, "sdk").await?;
    let mut checked = 0;

    // Sign in through the form.
    c.goto(&format!("{base}/console/trials")).await?;
    c.find(Locator::Id("key"))
        .await?
        .send_keys(&researcher)
        .await?;
    click_on_and_wait(c, Locator::Css("main form button[type=submit]")).await?;
    // The click returns before the redirect has loaded: wait for it.
    for _ in 0..50 {
        if c.current_url().await?.path() == "/console/trials" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        c.current_url().await?.path() == "/console/trials",
        "after signing in: {}",
        c.current_url().await?
    );
    ensure!(text_with(c, KEY).await?.contains(KEY));
    look(c, axe, "trials").await?;
    checked += 1;

    // The draft, then its start, confirmed.
    click_on_and_wait(c, Locator::LinkText(KEY)).await?;
    c.wait().for_element(Locator::LinkText("Start")).await?;
    look(c, axe, "trial-draft").await?;
    click_on_and_wait(c, Locator::LinkText("Start")).await?;
    ensure!(
        text_with(c, "Start trial").await?.contains("Start trial"),
        "the confirmation page"
    );
    look(c, axe, "trial-start").await?;
    checked += 3;
    c.find(Locator::Id("reason"))
        .await?
        .send_keys("browser pilot")
        .await?;
    click_on_and_wait(c, Locator::Css("main form button[type=submit]")).await?;
    let done = text_with(c, "Done: start").await?;
    ensure!(done.contains("Done: start"), "{done}");

    // Traffic through the public API: evaluations, then events.
    let units = 24;
    let mut events = Vec::new();
    for i in 0..units {
        let r = api
            .http
            .post(format!("{base}/ofrep/v1/evaluate/flags/thanks-button"))
            .bearer_auth(&sdk)
            .json(&json!({"context": {"targetingKey": format!("browser-{i}"), "community": "wiki-a"}}))
            .send()
            .await?;
        ensure!(r.status().is_success(), "OFREP: {}", r.text().await?);
        events.push(json!({
            "event_id": uuid_like(i), "name": "contribution_created",
            "unit": format!("browser-{i}"), "community": "wiki-a",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }));
    }
    let r = api
        .http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&sdk)
        .json(&events)
        .send()
        .await?;
    ensure!(r.status().is_success(), "events: {}", r.text().await?);

    // The exposures arrive on the trial page (its aggregates are at most
    // 10 s old).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        c.goto(&format!("{base}/console/trials/{KEY}")).await?;
        let exposed = c
            .find(Locator::XPath("//dt[.='Exposed']/following-sibling::dd"))
            .await?
            .text()
            .await?;
        if exposed.trim() == units.to_string() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{exposed} exposures on the page after 40 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(text_with(c, "Fixed-horizon plan")
        .await?
        .contains("Fixed-horizon plan"));
    look(c, axe, "trial-running").await?;
    checked += 1;

    // The report.
    click_on_and_wait(c, Locator::LinkText("Open the report")).await?;
    let mut report = String::new();
    for _ in 0..50 {
        // The element may go stale while the report replaces the page.
        let read = async { c.find(Locator::Css("body")).await?.text().await }.await;
        report = read.unwrap_or_default();
        if report.contains(KEY) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(report.contains(KEY), "the report: {report}");
    let png = c.screenshot().await?;
    std::fs::write(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/browser-screenshots/console-report.png"),
        png,
    )?;

    // Surveys: the list and each language of each instrument.
    c.goto(&format!("{base}/console/surveys")).await?;
    look(c, axe, "surveys").await?;
    checked += 1;
    let mut previews = Vec::new();
    for a in c
        .find_all(Locator::Css("a[href*='/preview?lang=']"))
        .await?
    {
        previews.push(a.attr("href").await?.context("a link")?);
    }
    ensure!(!previews.is_empty(), "no preview links");
    for (n, href) in previews.iter().enumerate() {
        c.goto(&format!("{base}{href}")).await?;
        look(c, axe, &format!("survey-preview-{n}")).await?;
        checked += 1;
    }

    // Sign out.
    c.goto(&format!("{base}/console/trials")).await?;
    c.find(Locator::Css("form.who button"))
        .await?
        .click()
        .await?;
    ensure!(
        text(c).await?.contains("You are signed out"),
        "{}",
        text(c).await?
    );
    c.goto(&format!("{base}/console/trials/{KEY}")).await?;
    ensure!(
        c.current_url().await?.path() == "/console/sign-in",
        "after signing out: {}",
        c.current_url().await?
    );
    Ok(checked)
}

/// A fixed UUID per event (the API de-duplicates on it).
fn uuid_like(i: usize) -> String {
    format!("0190a6b8-0000-7000-8000-{i:012}")
}
