//! The web console in a real browser: signed out, a console page sends
//! the browser to sign in (and back); a wrong key shows its error; the
//! admin key signs in; every page in [`PAGES`] opens with axe-core finding
//! no serious or critical violation, no horizontal scrolling at phone
//! width, and a screenshot saved under `target/browser-screenshots/`; a
//! key is created (shown once) and revoked through its confirmation; then
//! sign-out, after which the console asks to sign in again.

use super::{axe_check, body_text, focus_is_visible};
use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, Locator};
use serde_json::json;
use std::path::Path;

/// Every console page to open signed in as admin (add yours).
pub const PAGES: &[(&str, &str)] = &[
    ("/console/", "Overview"),
    ("/console/audit", "Audit log"),
    ("/console/keys", "API keys"),
];

/// Clicks `selector` and waits for the next page to load.
pub(crate) async fn click_and_wait(c: &Client, selector: &str) -> Result<()> {
    click_on_and_wait(c, Locator::Css(selector)).await
}

/// Clicks the element `at` finds and waits for the next page to load (the
/// click returns before it has: the old document is marked, and the wait
/// ends when a complete document without the mark is there).
pub(crate) async fn click_on_and_wait(c: &Client, at: Locator<'_>) -> Result<()> {
    c.execute("window.__commonlabOld = true; return true;", vec![])
        .await?;
    c.find(at)
        .await
        .with_context(|| format!("no {at:?}"))?
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
    bail!("the page after clicking {at:?} did not load within 10 s")
}

pub(crate) async fn path(c: &Client) -> Result<String> {
    let url = c.current_url().await?;
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}

/// axe-core, no horizontal scroll at this (phone) width, a screenshot.
pub(crate) async fn check_page(c: &Client, axe: &str, what: &str, shots: &Path) -> Result<()> {
    axe_check(c, axe, what).await?;
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await?;
    ensure!(
        fits == json!(true),
        "{what} scrolls sideways at phone width"
    );
    let name: String = what
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect();
    std::fs::write(
        shots.join(format!("console-{name}.png")),
        c.screenshot().await?,
    )?;
    Ok(())
}

pub(crate) async fn type_into(c: &Client, id: &str, text: &str) -> Result<()> {
    let el = c.find(Locator::Id(id)).await?;
    el.clear().await?;
    el.send_keys(text).await?;
    Ok(())
}

/// The whole console run; the number of pages axe checked.
pub async fn run(
    c: &Client,
    axe: &str,
    base: &str,
    admin_key: &str,
    shots: &Path,
) -> Result<usize> {
    let mut checked = 0;
    std::fs::create_dir_all(shots)?;

    // Signed out: to the sign-in page, remembering where we were going.
    c.goto(&format!("{base}/console/audit")).await?;
    let at = path(c).await?;
    ensure!(
        at == "/console/sign-in?next=%2Fconsole%2Faudit",
        "not sent to sign in: {at}"
    );
    check_page(c, axe, "sign-in", shots).await?;
    checked += 1;
    focus_is_visible(c).await?;

    // A wrong key: the error on the page, no session.
    type_into(
        c,
        "key",
        "cl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await?;
    click_and_wait(c, "form button[type=submit]").await?;
    ensure!(
        body_text(c)
            .await?
            .contains("This key is not valid or has been revoked."),
        "no error for a wrong key"
    );
    check_page(c, axe, "sign-in with an error", shots).await?;
    checked += 1;

    // The admin key: back to the page asked for.
    type_into(c, "key", admin_key).await?;
    click_and_wait(c, "form button[type=submit]").await?;
    ensure!(
        path(c).await? == "/console/audit",
        "not back at the audit log"
    );

    for (page, heading) in PAGES {
        c.goto(&format!("{base}{page}")).await?;
        let h1 = c.find(Locator::Css("h1")).await?.text().await?;
        ensure!(
            h1.contains(heading),
            "{page}: heading '{h1}', expected '{heading}'"
        );
        check_page(c, axe, page, shots).await?;
        checked += 1;
    }

    // A key created (shown once) and revoked after confirming.
    c.goto(&format!("{base}/console/keys")).await?;
    type_into(c, "name", "browser-developer").await?;
    c.find(Locator::Id("role"))
        .await?
        .select_by_value("developer")
        .await?;
    type_into(c, "reason", "browser test").await?;
    click_and_wait(c, "main form button[type=submit]").await?;
    let secret = c.find(Locator::Id("secret")).await?.text().await?;
    ensure!(secret.starts_with("cl_"), "no key shown: {secret}");
    check_page(c, axe, "key created", shots).await?;
    checked += 1;
    let id = secret
        .split('_')
        .nth(1)
        .context("the key's id")?
        .to_string();
    c.goto(&format!("{base}/console/keys/{id}/revoke")).await?;
    check_page(c, axe, "revoke a key", shots).await?;
    checked += 1;
    type_into(c, "reason", "browser test done").await?;
    click_and_wait(c, "main form button[type=submit]").await?;
    ensure!(
        body_text(c).await?.contains("was revoked"),
        "no notice after revoking"
    );

    // Sign out: the console asks to sign in again.
    click_and_wait(c, "header form button[type=submit]").await?;
    ensure!(
        body_text(c).await?.contains("You are signed out."),
        "not signed out"
    );
    c.goto(&format!("{base}/console/")).await?;
    ensure!(
        path(c).await?.starts_with("/console/sign-in"),
        "still signed in after signing out"
    );
    println!("console: {checked} pages checked");
    Ok(checked)
}
