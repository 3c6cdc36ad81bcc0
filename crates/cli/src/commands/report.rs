//! `report`: a stored trial's validation report (`commonlab report KEY`),
//! every concluded trial's with an index page (`--all`), and `report
//! verify DIR` (recompute and compare every number). The report itself is
//! `commonlab_report` (document, templates, charts); this module reads
//! the store, writes files and prints.

use super::with_store;
use crate::args::{ReportArgs, ReportCmd};
use crate::output::outln;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use commonlab_report::document::Provenance;
use commonlab_report::render::IndexEntry;
use commonlab_report::{canonical, render, verify, Options};
use commonlab_server::settings::Settings;
use commonlab_server::trials::analysis;
use commonlab_store::{Store, TrialStatus};
use std::path::{Path, PathBuf};

/// The git commit the binary was built from (`commonlab_report::GIT_COMMIT`,
/// docs/reports.md).
pub const COMMIT: &str = commonlab_report::GIT_COMMIT;

fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| anyhow!("--as-of: {s:?} is not an RFC 3339 date-time ({e})"))
}

/// The command line as typed (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "commonlab".to_string() } else { a };
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn provenance(command: String) -> Provenance {
    Provenance {
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit: Some(COMMIT.to_string()),
        command,
    }
}

/// The progress bar on stderr: drawn only when stdout and stderr are both
/// terminals (nothing is drawn into a file or a pipe, or between the lines
/// of a log that captures one of them). Its length grows as each trial's
/// plan is read: one step per metric, one for rendering and writing.
fn progress() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// The [`commonlab_report::ActivityScope`] the report of `key` will have
/// under `opts`, from the stored trial before its analysis.
async fn predicted_scope(
    store: &Store,
    key: &str,
    opts: &Options,
) -> Result<commonlab_report::ActivityScope> {
    let record = store
        .get_trial(key)
        .await?
        .with_context(|| format!("no trial {key}"))?;
    let spec = commonlab_core::experiments::parse_trial(&record.spec_source, key)
        .map_err(|e| anyhow::anyhow!("trial {key}: {} mistakes in its file", e.len()))?;
    let as_of = opts
        .as_of
        .unwrap_or_else(|| commonlab_report::default_as_of(&record, opts.now));
    let exposed = store
        .exposure_counts(record.id)
        .await?
        .into_iter()
        .filter_map(|e| e.community);
    Ok(commonlab_report::ActivityScope::predict(
        &spec, exposed, as_of,
    ))
}

/// Writes one trial's report files into `dir`; returns the decision.
async fn write_one(
    store: &Store,
    key: &str,
    opts: &Options,
    min_cell: usize,
    formats: &[&str],
    dir: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<(String, String, String)> {
    bar.set_message(format!("{key}: computing metrics in the database"));
    // `done` counts this trial's metrics computed so far (several at once
    // when they share a statement, and possibly again as a repeat).
    let start = std::sync::atomic::AtomicU64::new(bar.position());
    let on_metric = |done: usize, total: usize| {
        use std::sync::atomic::Ordering::Relaxed;
        if done == 0 {
            start.store(bar.position(), Relaxed);
            bar.inc_length(total as u64 + 1);
        } else {
            bar.set_position(start.load(Relaxed) + done as u64);
            bar.set_message(format!(
                "{key}: {done} of {total} metrics computed in the database"
            ));
        }
    };
    let all = formats.contains(&"all");
    // `wp2-parameters.json`'s community activity is read beside the
    // metrics, for the scope the report will have; used only if the
    // report's scope turns out the same (else read again after it).
    let early = async {
        if !all {
            return None;
        }
        let scope = predicted_scope(store, key, opts).await.ok()?;
        let activity = commonlab_report::community_activities(store, &scope).await;
        Some((scope, activity))
    };
    let (report, early) = tokio::join!(
        analysis::report_with_progress(store, key, opts, min_cell, &on_metric),
        early
    );
    let report = report?;
    bar.set_message(format!("{key}: rendering"));
    let mut files = commonlab_report::files(&report, formats)?;
    if all {
        bar.set_message(format!("{key}: community activity for WP2"));
        let scope = commonlab_report::ActivityScope::of_report(&report);
        let activity = match early {
            Some((predicted, Ok(activity))) if predicted == scope => activity,
            _ => commonlab_report::community_activities(store, &scope).await?,
        };
        files.push((
            "wp2-parameters.json",
            commonlab_report::wp2_document(&report, &activity)?,
        ));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    bar.inc(1);
    Ok((
        report.trial.title.clone(),
        report.trial.status.clone(),
        report.decision.outcome.to_string(),
    ))
}

pub async fn run(settings: &Settings, args: ReportArgs) -> Result<()> {
    if let Some(ReportCmd::Verify { dir }) = &args.cmd {
        return verify_dir(settings, dir).await;
    }
    let as_of = args.as_of.as_deref().map(parse_time).transpose()?;
    let formats = [args.format.as_str()];
    let opts = Options {
        as_of,
        now: Utc::now(),
        per_user: args.per_user,
        provenance: provenance(command_line()),
    };
    if args.all {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("reports/out"));
        return all(settings, &opts, &out).await;
    }
    let key = args.key.clone().context("a trial key or --all")?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports/out").join(&key));
    let bar = progress();
    let done = with_store(&settings.database_url, async |store| {
        write_one(
            store,
            &key,
            &opts,
            settings.survey_min_cell,
            &formats,
            &dir,
            &bar,
        )
        .await
    })
    .await;
    bar.finish_and_clear();
    let (_, _, decision) = done?;
    outln!(
        "wrote the report of {key} to {} (decision: {decision})",
        dir.display()
    )?;
    Ok(())
}

async fn all(settings: &Settings, opts: &Options, out: &Path) -> Result<()> {
    let min_cell = settings.survey_min_cell;
    with_store(&settings.database_url, async |store| {
        let mut trials = store.list_trials(Some(TrialStatus::Concluded)).await?;
        trials.extend(store.list_trials(Some(TrialStatus::Archived)).await?);
        trials.sort_by(|a, b| a.key.cmp(&b.key));
        let bar = progress();
        let mut entries = Vec::new();
        let mut failures = Vec::new();
        for t in &trials {
            let dir = out.join(&t.key);
            match write_one(store, &t.key, opts, min_cell, &["all"], &dir, &bar).await {
                Ok((title, status, decision)) => entries.push(IndexEntry {
                    key: t.key.clone(),
                    title,
                    status,
                    decision,
                    dir: t.key.clone(),
                }),
                Err(e) => failures.push((t.key.clone(), format!("{e:#}"))),
            }
        }
        bar.finish_and_clear();
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let index = render::index_html(&entries, &failures)?;
        std::fs::write(out.join("index.html"), index)
            .with_context(|| format!("cannot write {}", out.join("index.html").display()))?;
        outln!(
            "wrote {} reports and {}",
            entries.len(),
            out.join("index.html").display()
        )?;
        if !failures.is_empty() {
            bail!(
                "{} trials could not be reported: {}",
                failures.len(),
                failures
                    .iter()
                    .map(|(k, e)| format!("{k}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        Ok(())
    })
    .await
}

async fn verify_dir(settings: &Settings, dir: &Path) -> Result<()> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let stored: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let field = |p: &str| -> Result<String> {
        stored
            .pointer(p)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: {p} is missing: not a Commonlab report", path.display()))
    };
    if field("/schema")? != commonlab_report::document::SCHEMA {
        bail!(
            "{}: schema {} is not {}",
            path.display(),
            field("/schema")?,
            commonlab_report::document::SCHEMA
        );
    }
    let key = field("/trial/key")?;
    let as_of = parse_time(&field("/footer/as_of")?)?;
    let per_user = false;
    let opts = Options {
        as_of: Some(as_of),
        now: Utc::now(),
        per_user,
        provenance: Provenance {
            version: field("/footer/commonlab_version")?,
            commit: stored
                .pointer("/footer/commit")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            command: field("/footer/command")?,
        },
    };
    let report = with_store(&settings.database_url, async |store| {
        Ok(analysis::report(store, &key, &opts, settings.survey_min_cell).await?)
    })
    .await?;
    let fresh = canonical::to_value(&report)?;
    let ours = env!("CARGO_PKG_VERSION");
    if opts.provenance.version != ours {
        outln!(
            "note: the report was made by Commonlab {}, this is {ours}",
            opts.provenance.version
        )?;
    }
    match verify::compare(&stored, &fresh) {
        None => {
            outln!(
                "every number in {} matches the data of {key} as of {}",
                path.display(),
                as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )?;
            Ok(())
        }
        Some(m) => bail!("{} does not match: {m}", path.display()),
    }
}
