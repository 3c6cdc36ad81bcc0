//! The survey pages in a real browser: headless Chromium, driven over
//! WebDriver (fantoccini), answers the shipped CBPP instrument in English
//! and in Spanish against a running `commonlab serve`: consent, invalid
//! answers and their errors, leaving and resuming from the same link,
//! completion, and the refusal of a completed link; axe-core runs in every
//! page and any serious or critical violation fails the run. Then the
//! stored responses are checked through the store. Then the web console
//! ([`console`]): sign-in, every page, keys, sign-out.
//!
//! Run by `tests/browser/run.sh` (which installs Chromium, chromedriver and
//! axe-core and starts the server), not by `cargo test`: it needs all
//! three. Settings come from the environment:
//! `COMMONLAB_DATABASE_URL` (the server's database), `STUDY_KEY_FILE` (the
//! server's study key, to sign links), `BASE_URL` (the server),
//! `WEBDRIVER_URL` (chromedriver), `AXE_JS` (axe.min.js), `ADMIN_KEY_FILE`
//! (the admin key `serve` wrote), `SCREENSHOT_DIR` (where screenshots go).

mod console;
mod console_flags;

mod console_trials;

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use commonlab_core::privacy::StudyKey;
use commonlab_core::surveys::token::{sign, TokenClaims, TOKEN_KEY_LABEL};
use commonlab_store::{NewCampaign, NewInstrument, ResponseStatus, Store};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const INSTRUMENT: &str = include_str!("../../../surveys/cbpp-community.toml");
const CAMPAIGN: &str = "browser-baseline";

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run tests/browser/run.sh)"))
}

/// The words each language's pages must show.
struct Words {
    lang: &'static str,
    consent: &'static str,
    problem: &'static str,
    number: &'static str,
    required: &'static str,
    page2: &'static str,
    page3: &'static str,
    thanks: &'static str,
    completed: &'static str,
}

const EN: Words = Words {
    lang: "en",
    consent: "Do you agree to take part?",
    problem: "There is a problem",
    number: "Enter a number, like 12 or 2.5",
    required: "Answer this question",
    page2: "Page 2 of 4",
    page3: "Page 3 of 4",
    thanks: "Thank you",
    completed: "You have already answered this survey",
};

const ES: Words = Words {
    lang: "es",
    consent: "¿Aceptas participar?",
    problem: "Hay un problema",
    number: "Escribe un número, como 12 o 2.5",
    required: "Responde esta pregunta",
    page2: "Página 2 de 4",
    page3: "Página 3 de 4",
    thanks: "Gracias",
    completed: "Ya has respondido esta encuesta",
};

const COMMENT: &str = "<script>alert('x')</script> ñandú & \"quotes\"";

#[tokio::main]
async fn main() -> Result<()> {
    let db = env("COMMONLAB_DATABASE_URL")?;
    let key = StudyKey::from_key_file(&std::fs::read_to_string(env("STUDY_KEY_FILE")?)?)
        .map_err(|e| anyhow::anyhow!("study key: {e}"))?;
    let base = env("BASE_URL")?;
    let admin_key = std::fs::read_to_string(env("ADMIN_KEY_FILE")?)?
        .trim()
        .to_string();
    let shots = std::path::PathBuf::from(env("SCREENSHOT_DIR")?);
    let axe = std::fs::read_to_string(env("AXE_JS")?).context("reading axe.min.js")?;
    let store = Store::connect(&db).await?;
    let campaign = seed(&store).await?;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=412,915"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&env("WEBDRIVER_URL")?)
        .await
        .context("starting a Chromium session through chromedriver")?;
    let token_key = key.derive(TOKEN_KEY_LABEL);
    let mut checked = 0;
    let mut console_pages = 0;
    let result = async {
        // The check can fail: a page with an image without a text
        // alternative and an unlabelled field is reported.
        browser
            .goto("data:text/html,<html lang=en><title>t</title><main><img src=x.png><input></main></html>")
            .await?;
        ensure!(
            axe_check(&browser, &axe, "a page made to fail").await.is_err(),
            "axe-core found nothing wrong with a page made to fail"
        );
        for words in [&EN, &ES] {
            let unit = hex::encode(Sha256::digest(format!("browser-{}", words.lang)));
            let claims = TokenClaims::new(
                CAMPAIGN,
                &unit,
                "baseline",
                Utc::now() + chrono::Duration::days(1),
            )?;
            let link = format!("{base}/s/{}?lang={}", sign(&token_key, &claims), words.lang);
            checked += respond(&browser, &axe, &link, words).await?;
            let r = store
                .response(campaign, &unit)
                .await?
                .context("no response stored")?;
            ensure!(r.status == ResponseStatus::Completed, "{:?}", r.status);
            ensure!(r.language == words.lang, "stored language {}", r.language);
            ensure!(r.completed_at.is_some());
            ensure!(r.answers["comments"] == json!(COMMENT), "{:?}", r.answers["comments"]);
            ensure!(r.answers["hours"] == json!(4.5), "{:?}", r.answers["hours"]);
            ensure!(r.answers.len() >= 12, "{} answers", r.answers.len());
            ensure!(r.orders.contains_key("1") && r.orders.contains_key("2"));
            println!("{}: completed with {} answers", words.lang, r.answers.len());
        }
        console_pages = console::run(&browser, &axe, &base, &admin_key, &shots).await?;
        let pages = console_trials::run(&browser, &axe, &base, &admin_key).await?;
        println!("console: trials and surveys walked, {pages} pages checked by axe-core");
        console_pages += pages;
        console_pages +=
            console_flags::run(&browser, &store, &axe, &base, &admin_key, &shots).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = browser.close().await;
    store.close().await;
    result?;
    println!("browser: 2 languages answered, {checked} survey pages and {console_pages} console pages checked by axe-core, 0 serious or critical violations");
    println!("3 passed, 0 failed");
    Ok(())
}

async fn seed(store: &Store) -> Result<i64> {
    let hash = hex::encode(Sha256::digest(INSTRUMENT.as_bytes()));
    let now = Utc::now();
    store
        .publish_instrument(&NewInstrument {
            key: "cbpp-community",
            version: 1,
            source: INSTRUMENT,
            hash: &hash,
            actor: "browser-test",
            reason: "browser test",
            at: now,
        })
        .await?;
    let c = store
        .create_campaign(&NewCampaign {
            key: CAMPAIGN,
            instrument: "cbpp-community",
            version: 1,
            trial_key: None,
            wave: "baseline",
            trigger_flag: None,
            opens_at: now - chrono::Duration::hours(1),
            closes_at: now + chrono::Duration::days(1),
            actor: "browser-test",
            reason: "browser test",
            at: now,
        })
        .await?;
    Ok(c.id)
}

/// Runs axe-core in the page; fails on any serious or critical violation.
async fn axe_check(c: &Client, axe: &str, what: &str) -> Result<()> {
    c.execute(&format!("{axe}\nreturn true;"), vec![]).await?;
    let found = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})
                  .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))))
                  .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"#,
            vec![],
        )
        .await?;
    let bad: Vec<&Value> = found
        .as_array()
        .context("axe answered no list")?
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    if !bad.is_empty() {
        bail!(
            "axe-core on {what}: {}",
            serde_json::to_string_pretty(&bad)?
        );
    }
    Ok(())
}

async fn body_text(c: &Client) -> Result<String> {
    Ok(c.find(Locator::Css("body")).await?.text().await?)
}

/// Sends the page's form and waits for the next page to have loaded (a
/// mark left on the old page's window is gone).
async fn submit(c: &Client) -> Result<()> {
    c.execute("window.__commonlabOld = true; return true;", vec![])
        .await?;
    c.find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    for _ in 0..200 {
        let loaded = c
            .execute(
                "return window.__commonlabOld === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .unwrap_or(json!(false));
        if loaded == json!(true) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("the next page did not load within 10 s")
}

/// Focus is visible: the focused input has an outline or a shadow.
async fn focus_is_visible(c: &Client) -> Result<()> {
    let v = c
        .execute(
            "const el = document.querySelector('form input:not([type=hidden]), form select, form textarea');
             el.focus();
             const s = getComputedStyle(el);
             return s.outlineStyle !== 'none' && s.outlineWidth !== '0px' || s.boxShadow !== 'none';",
            vec![],
        )
        .await?;
    ensure!(v == json!(true), "no visible focus indicator");
    Ok(())
}

/// Answers every question on the page with a valid answer (the last
/// option of a choice, the first checkbox, 4.5 for a number, every
/// ranking position in order, [`COMMENT`] for free text).
async fn answer_all(c: &Client) -> Result<()> {
    for q in c.find_all(Locator::Css("fieldset.question")).await? {
        let radios = q.find_all(Locator::Css("input[type=radio]")).await?;
        if let Some(last) = radios.last() {
            last.click().await?;
        }
        if let Some(first) = q
            .find_all(Locator::Css("input[type=checkbox]"))
            .await?
            .first()
        {
            if !first.is_selected().await? {
                first.click().await?;
            }
        }
        for input in q.find_all(Locator::Css("input.short")).await? {
            input.clear().await?;
            input.send_keys("4.5").await?;
        }
        for area in q.find_all(Locator::Css("textarea")).await? {
            area.clear().await?;
            area.send_keys(COMMENT).await?;
        }
        let selects = q.find_all(Locator::Css("select")).await?;
        for (i, select) in selects.iter().enumerate() {
            let values = option_values(select).await?;
            select.select_by_value(&values[i]).await?;
        }
    }
    Ok(())
}

async fn option_values(select: &Element) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for o in select.find_all(Locator::Css("option")).await? {
        if let Some(v) = o.attr("value").await?.filter(|v| !v.is_empty()) {
            out.push(v);
        }
    }
    Ok(out)
}

/// One respondent's whole survey; the number of pages axe checked.
async fn respond(c: &Client, axe: &str, link: &str, w: &Words) -> Result<usize> {
    let mut checked = 0;
    c.goto(link).await?;
    let lang = c
        .execute(
            "return document.documentElement.lang + '/' + document.documentElement.dir",
            vec![],
        )
        .await?;
    ensure!(
        lang == json!(format!("{}/ltr", w.lang)),
        "page language {lang}"
    );
    ensure!(body_text(c).await?.contains(w.consent));
    axe_check(c, axe, "the consent page").await?;
    checked += 1;
    focus_is_visible(c).await?;

    // Consent without a choice: the error, then agree.
    submit(c).await?;
    let text = body_text(c).await?;
    ensure!(
        text.contains(w.problem),
        "no error summary on the consent page"
    );
    axe_check(c, axe, "the consent page with its error").await?;
    checked += 1;
    c.find(Locator::Id("consent-yes")).await?.click().await?;
    submit(c).await?;

    // Page 1 sent empty: the required question's error, beside it and in
    // the summary, whose link leads to the field.
    submit(c).await?;
    let text = body_text(c).await?;
    ensure!(
        text.contains(w.problem) && text.contains(w.required),
        "page 1 errors: {text}"
    );
    let summary_link = c
        .find(Locator::Css(".error-summary a"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    ensure!(
        summary_link == "#q-frequency-0",
        "summary link {summary_link}"
    );
    ensure!(c.find(Locator::Id("err-frequency")).await.is_ok());
    axe_check(c, axe, "page 1 with errors").await?;
    checked += 1;
    if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            format!("{dir}/page1-errors-{}.png", w.lang),
            c.screenshot().await?,
        )?;
    }

    // A number that is not one: its error, and what was typed kept.
    answer_all(c).await?;
    let hours = c.find(Locator::Css("input[name=hours]")).await?;
    hours.clear().await?;
    hours.send_keys("abc").await?;
    submit(c).await?;
    let text = body_text(c).await?;
    ensure!(text.contains(w.number), "no number error: {text}");
    let kept = c
        .find(Locator::Css("input[name=hours]"))
        .await?
        .prop("value")
        .await?;
    ensure!(
        kept.as_deref() == Some("abc"),
        "typed value not kept: {kept:?}"
    );
    axe_check(c, axe, "page 1 with a number error").await?;
    checked += 1;

    answer_all(c).await?;
    submit(c).await?;
    ensure!(body_text(c).await?.contains(w.page2), "not on page 2");
    axe_check(c, axe, "page 2").await?;
    checked += 1;
    answer_all(c).await?;
    submit(c).await?;

    // Leave, and come back with the same link: where we were.
    c.goto("about:blank").await?;
    c.goto(link).await?;
    ensure!(
        body_text(c).await?.contains(w.page3),
        "did not resume on page 3"
    );
    axe_check(c, axe, "page 3 (resumed)").await?;
    checked += 1;
    answer_all(c).await?;
    submit(c).await?;

    // The last page: ranking and free text.
    axe_check(c, axe, "page 4").await?;
    checked += 1;
    answer_all(c).await?;
    submit(c).await?;
    ensure!(body_text(c).await?.contains(w.thanks), "no thanks page");
    axe_check(c, axe, "the thanks page").await?;
    checked += 1;

    // The link refuses more once complete.
    c.goto(link).await?;
    ensure!(
        body_text(c).await?.contains(w.completed),
        "completed link not refused"
    );
    axe_check(c, axe, "the completed link").await?;
    checked += 1;
    println!("{}: {checked} pages checked", w.lang);
    Ok(checked)
}
