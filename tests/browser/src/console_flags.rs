//! The console's flag pages in a real browser: a flag is stored; the admin
//! creates a developer key and an sdk key on the keys page; the developer
//! signs in, opens the flags list and the flag's page (axe-core on both,
//! and on the page with form errors and with a preview), sets a cohort
//! override for a community, and the flag evaluated over OFREP for a unit
//! of that community has the override's value.

use super::body_text;
use super::console::{check_page, click_and_wait, path, type_into};
use anyhow::{ensure, Context, Result};
use chrono::Utc;
use commonlab_store::{NewRevision, Store};
use fantoccini::{Client, Locator};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;

const FLAGS: &str = r#"{"flags": {"browser-banner": {"state": "ENABLED",
  "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#;

/// A key of `role` created on the keys page (signed in as admin): its secret.
async fn new_key(c: &Client, base: &str, name: &str, role: &str) -> Result<String> {
    c.goto(&format!("{base}/console/keys")).await?;
    type_into(c, "name", name).await?;
    c.find(Locator::Id("role"))
        .await?
        .select_by_value(role)
        .await?;
    type_into(c, "reason", "browser test of the flag pages").await?;
    click_and_wait(c, "main form button[type=submit]").await?;
    let secret = c.find(Locator::Id("secret")).await?.text().await?;
    ensure!(secret.starts_with("cl_"), "no key shown: {secret}");
    Ok(secret)
}

async fn sign_in(c: &Client, base: &str, key: &str) -> Result<()> {
    c.goto(&format!("{base}/console/sign-in")).await?;
    type_into(c, "key", key).await?;
    click_and_wait(c, "form button[type=submit]").await?;
    ensure!(
        !path(c).await?.starts_with("/console/sign-in"),
        "sign-in failed"
    );
    Ok(())
}

/// `POST /ofrep/v1/evaluate/flags/{flag}` with `context`: the JSON answer.
async fn ofrep(base: &str, key: &str, flag: &str, context: &str) -> Result<Value> {
    let host = base.trim_start_matches("http://");
    let body = format!("{{\"context\": {context}}}");
    let req = format!(
        "POST /ofrep/v1/evaluate/flags/{flag} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A short blocking exchange on the loopback (the test's only HTTP
    // client besides the browser).
    let mut s = std::net::TcpStream::connect(host)?;
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, json) = out.split_once("\r\n\r\n").context("an HTTP answer")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "OFREP answered {head}");
    Ok(serde_json::from_str(json)?)
}

pub async fn run(
    c: &Client,
    store: &Store,
    axe: &str,
    base: &str,
    admin_key: &str,
    shots: &Path,
) -> Result<usize> {
    let mut checked = 0;
    // On top of whatever the walks before this one stored (the trials walk
    // imports the fixture flags).
    let head = store
        .flag_set_head("default")
        .await?
        .map_or(0, |r| r.revision);
    store
        .append_flag_set_revision(
            "default",
            head,
            &NewRevision {
                document: FLAGS,
                actor: "browser-test",
                action: "import",
                flag_key: None,
                reason: "browser test",
                at: Utc::now(),
            },
        )
        .await?;
    sign_in(c, base, admin_key).await?;
    let developer = new_key(c, base, "browser-flags-developer", "developer").await?;
    let sdk = new_key(c, base, "browser-flags-sdk", "sdk").await?;
    click_and_wait(c, "header form button[type=submit]").await?;
    sign_in(c, base, &developer).await?;

    // Before: the default variant.
    let unit = "{\"targetingKey\": \"browser-unit\", \"community\": \"coop-b\"}";
    let v = ofrep(base, &sdk, "browser-banner", unit).await?;
    ensure!(v["value"] == Value::Bool(false), "before: {v}");

    c.goto(&format!("{base}/console/flags")).await?;
    ensure!(body_text(c).await?.contains("browser-banner"), "not listed");
    check_page(c, axe, "flags", shots).await?;
    checked += 1;
    c.goto(&format!("{base}/console/flags/browser-banner"))
        .await?;
    check_page(c, axe, "flag", shots).await?;
    checked += 1;

    // A save without a reason: the error beside the field, axe-clean.
    type_into(c, "cohort-name", "coop-pilot").await?;
    type_into(c, "cohort-values", "coop-b").await?;
    c.find(Locator::Id("cohort-variant"))
        .await?
        .select_by_value("on")
        .await?;
    click_and_wait(c, "button[name=action][value=save]").await?;
    ensure!(
        c.find(Locator::Id("cohort-reason-error")).await.is_ok(),
        "no error beside the reason"
    );
    check_page(c, axe, "flag with errors", shots).await?;
    checked += 1;
    // The preview (no events stored: says so), then save with a reason.
    click_and_wait(c, "button[name=action][value=preview]").await?;
    let preview = c.find(Locator::Id("preview")).await?.text().await?;
    ensure!(preview.contains("last 7 days"), "preview: {preview}");
    check_page(c, axe, "flag with a preview", shots).await?;
    checked += 1;
    type_into(c, "cohort-reason", "the coop pilots the banner").await?;
    click_and_wait(c, "button[name=action][value=save]").await?;
    ensure!(
        path(c).await? == "/console/flags/browser-banner",
        "not back on the flag page"
    );
    ensure!(
        body_text(c).await?.contains("the coop pilots the banner"),
        "the change is not in the history"
    );

    // Served at once by this replica (the console refreshes its cache).
    let v = ofrep(base, &sdk, "browser-banner", unit).await?;
    ensure!(v["value"] == Value::Bool(true), "after: {v}");
    let other = "{\"targetingKey\": \"browser-unit\", \"community\": \"wiki-a\"}";
    let v = ofrep(base, &sdk, "browser-banner", other).await?;
    ensure!(v["value"] == Value::Bool(false), "another community: {v}");
    click_and_wait(c, "header form button[type=submit]").await?;
    println!("console flags: override set and served over OFREP; {checked} pages checked");
    Ok(checked)
}
