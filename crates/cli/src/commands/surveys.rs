//! `surveys`: validate and publish instrument files, create and list
//! campaigns, invite units with personal links, read results, export.
//! The logic is `commonlab_server::surveys` (shared with the API); the CLI
//! runs with the database's access, so it may include free text
//! (`--include-text`), as an admin key may.

use super::experiments::files::{join_errors, trial_source};
use super::{change, with_store};
use crate::args::{CampaignCmd, SurveysCmd};
use crate::audit::actor;
use crate::output::{self, errln, outln};
use crate::study_key;
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::experiments::{parse_rfc3339, parse_trial};
use commonlab_core::surveys::parse_instrument;
use commonlab_server::config::SurveyKeys;
use commonlab_server::settings::Settings;
use commonlab_server::surveys::export::{export, Format};
use commonlab_server::surveys::results::{Computed, RateCell, SurveyResults};
use commonlab_server::surveys::service::{self, CampaignRequest, UnitRef};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub async fn run(settings: &Settings, given_actor: Option<&str>, cmd: SurveysCmd) -> Result<()> {
    if let SurveysCmd::Validate { paths, trials } = &cmd {
        return validate(paths, trials.as_deref());
    }
    // A server error for a file: its lines as they are.
    let plain = |e: commonlab_server::Error| match e {
        commonlab_server::Error::Invalid { issues, message }
            if issues.iter().all(|i| i.line.is_some()) =>
        {
            anyhow!(message.replace("; ", "\n"))
        }
        other => anyhow!(other),
    };
    with_store(&settings.database_url, async |store| match cmd {
        SurveysCmd::Validate { .. } => unreachable!("handled above"),
        SurveysCmd::Publish { file, reason } => {
            let source = read(&file)?;
            let actor = actor(given_actor)?;
            let (r, new) = service::publish(
                store,
                &source,
                &file.display().to_string(),
                &change(&actor, &reason),
            )
            .await
            .map_err(plain)?;
            if new {
                outln!(
                    "published survey '{}' version {} (sha256 {})",
                    r.key,
                    r.version,
                    &r.hash[..12]
                )
            } else {
                outln!(
                    "survey '{}' version {} is already published with this content",
                    r.key,
                    r.version
                )
            }
        }
        SurveysCmd::Instruments => {
            outln!(
                "{:<24} {:>7} {:<14} {:<26} BY",
                "KEY",
                "VERSION",
                "SHA256",
                "PUBLISHED"
            )?;
            for i in store.list_instruments().await? {
                outln!(
                    "{:<24} {:>7} {:<14} {:<26} {}",
                    i.key,
                    i.version,
                    &i.hash[..12],
                    output::time(&i.published_at),
                    i.published_by
                )?;
            }
            Ok(())
        }
        SurveysCmd::Campaign(CampaignCmd::Create {
            key,
            instrument,
            version,
            trial,
            wave,
            opens,
            closes,
            trigger_flag,
            reason,
        }) => {
            let time = |flag: &str, s: &str| {
                parse_rfc3339(s)
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .ok_or_else(|| {
                        anyhow!(
                            "--{flag}: {s:?} is not an RFC 3339 time (e.g. 2027-03-01T00:00:00Z)"
                        )
                    })
            };
            let req = CampaignRequest {
                opens_at: time("opens", &opens)?,
                closes_at: time("closes", &closes)?,
                key,
                instrument,
                version,
                trial,
                wave,
                trigger_flag,
                reason: reason.clone(),
            };
            let actor = actor(given_actor)?;
            let s = service::create_campaign(store, &req, &change(&actor, &reason)).await?;
            for w in &s.warnings {
                errln!("warning: {w}");
            }
            let c = s.campaign;
            outln!(
                "created campaign '{}': survey '{}' v{} in wave '{}'{}, open {} to {}",
                c.key,
                c.instrument,
                c.version,
                c.wave,
                c.trial_key
                    .as_deref()
                    .map(|t| format!(" of trial '{t}'"))
                    .unwrap_or_default(),
                output::time(&c.opens_at),
                output::time(&c.closes_at)
            )?;
            if let Some(flag) = &c.trigger_flag {
                outln!("shown in-app to invited units by the survey-trigger flag '{flag}'")?;
            }
            Ok(())
        }
        SurveysCmd::Campaign(CampaignCmd::List) => {
            let now = chrono::Utc::now();
            outln!(
                "{:<20} {:<20} {:<14} {:<12} {:<10} {:>7} {:>9} {:>8}",
                "KEY",
                "SURVEY",
                "TRIAL",
                "WAVE",
                "STATE",
                "INVITED",
                "COMPLETED",
                "DECLINED"
            )?;
            for c in store.list_campaigns().await? {
                let s = service::summary(store, c, now).await?;
                outln!(
                    "{:<20} {:<20} {:<14} {:<12} {:<10} {:>7} {:>9} {:>8}",
                    s.campaign.key,
                    format!("{} v{}", s.campaign.instrument, s.campaign.version),
                    s.campaign.trial_key.as_deref().unwrap_or("-"),
                    s.campaign.wave,
                    s.state,
                    s.invited,
                    s.responses.completed,
                    s.responses.declined
                )?;
            }
            Ok(())
        }
        SurveysCmd::Links {
            campaign,
            units,
            base_url,
            reason,
            output,
            ..
        } => {
            let list = read_units(&units)?;
            let key = study_key::existing(&settings.study_key_file, store).await?;
            let keys = SurveyKeys::derive(&key);
            let actor = actor(given_actor)?;
            let links = service::create_links(
                store,
                &key,
                &keys,
                &campaign,
                &list,
                &change(&actor, &reason),
            )
            .await
            .map_err(|e| match e {
                commonlab_server::Error::Invalid { issues, message } => {
                    let why = issues
                        .first()
                        .map(|i| format!("{} ({})", i.detail, i.pointer))
                        .unwrap_or(message);
                    anyhow!("{}: {why}", units.display())
                }
                other => anyhow!(other),
            })?;
            let base = base_url.as_deref().unwrap_or("").trim_end_matches('/');
            let mut w = commonlab_server::csv_out::Writer::from_writer(Vec::new());
            w.write_record(["unit", "pseudonym", "link"])?;
            for l in &links.links {
                let link = format!("{base}{}", l.path);
                w.write_record([l.unit.as_str(), l.pseudonym.as_str(), link.as_str()])?;
            }
            let bytes = w.into_inner()?;
            match output {
                Some(path) => {
                    study_key::write_private(&path, &String::from_utf8(bytes)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => {
                    let mut out = output::Stdout::new();
                    let r = out.write_all(&bytes);
                    out.finish(r)?;
                }
            }
            errln!(
                "{} link(s) for campaign '{}' (wave '{}'), expiring {}; {} new invitation(s)",
                links.links.len(),
                links.campaign,
                links.wave,
                output::time(&links.expires_at),
                links.new_invitations
            );
            Ok(())
        }
        SurveysCmd::Results {
            campaign,
            format,
            include_text,
        } => {
            let (c, instrument, r) =
                service::results(store, &campaign, settings.survey_min_cell, include_text).await?;
            if format == "json" {
                return output::json(&serde_json::json!({
                    "campaign": c,
                    "instrument": {"key": instrument.key, "version": instrument.version},
                    "results": r,
                }));
            }
            summary(&c.key, &c.wave, &instrument.key, instrument.version, &r)
        }
        SurveysCmd::Response { trial, format } => {
            let r = service::trial_response(store, &trial, settings.survey_min_cell).await?;
            if format == "json" {
                return output::json(&serde_json::json!({"trial": trial, "response": r}));
            }
            outln!("# Survey response of trial {trial}\n")?;
            outln!(
                "Cells with fewer than {} respondents are suppressed.\n",
                r.min_cell
            )?;
            for w in &r.waves {
                outln!("## Wave {} (campaign {})\n", w.wave, w.campaign)?;
                for a in &w.arms {
                    if a.suppressed {
                        outln!("- arm {}: suppressed (small cell)", a.arm)?;
                    } else {
                        outln!(
                            "- arm {}: {}/{} completed ({})",
                            a.arm,
                            a.completed.unwrap_or(0),
                            a.invited.unwrap_or(0),
                            a.rate.map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
                        )?;
                    }
                }
                outln!()?;
            }
            match &r.differential {
                Computed::Value(d) => {
                    for (w, t) in r.waves.iter().zip(&d.waves) {
                        outln!("- wave {}: {}", w.wave, t.message)?;
                    }
                    outln!("- pooled over waves: {}", d.pooled.message)?;
                    if d.flagged {
                        outln!("\n**Warning:** the arms respond at different rates.")?;
                    }
                    Ok(())
                }
                Computed::Error { error } => outln!("Differential response not tested: {error}"),
            }
        }
        SurveysCmd::Export {
            campaign,
            format,
            include_text,
            output,
        } => {
            let f = Format::parse(&format).expect("clap checked the format");
            let (c, instrument, r) =
                service::results(store, &campaign, settings.survey_min_cell, include_text).await?;
            let bytes = export(f, &c, &instrument, &r);
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    errln!("wrote {} ({} bytes)", path.display(), bytes.len());
                    Ok(())
                }
                None => {
                    let mut out = output::Stdout::new();
                    let r = out.write_all(&bytes);
                    out.finish(r)
                }
            }
        }
    })
    .await
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Most units one `links` run reads (the API's limit per request).
const MAX_UNITS: usize = service::MAX_LINKS_PER_REQUEST;

/// One raw id per line, or `id,community`; a header line is skipped.
fn read_units(path: &Path) -> Result<Vec<UnitRef>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        read(path)?
    };
    let mut units = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && (line == "id" || line == "id,community")) {
            continue;
        }
        let (id, community) = match line.split_once(',') {
            Some((id, c)) if !c.trim().is_empty() => (id.trim(), Some(c.trim().to_string())),
            Some((id, _)) => (id.trim(), None),
            None => (line, None),
        };
        if id.is_empty() {
            bail!("{}:{}: an empty unit id", path.display(), n + 1);
        }
        units.push(match community {
            Some(community) => UnitRef::WithCommunity {
                id: id.to_string(),
                community: Some(community),
            },
            None => UnitRef::Id(id.to_string()),
        });
        if units.len() > MAX_UNITS {
            bail!(
                "{}: more than {MAX_UNITS} units; split the file",
                path.display()
            );
        }
    }
    if units.is_empty() {
        bail!("{}: no units", path.display());
    }
    Ok(units)
}

/// `surveys validate`: every instrument file, then (with `--trials`) the
/// trials' waves against them.
fn validate(paths: &[PathBuf], trials: Option<&Path>) -> Result<()> {
    let files = toml_files(paths, "surveys")?;
    if files.is_empty() {
        bail!("no instrument files (*.toml) found");
    }
    let mut errors = 0usize;
    let mut keys = BTreeSet::new();
    for file in &files {
        let name = file.display().to_string();
        match read(file)
            .and_then(|s| parse_instrument(&s, &name).map_err(|e| anyhow!(join_errors(&e, "\n"))))
        {
            Ok(i) => {
                let scales: Vec<&str> = i.scales.iter().map(|s| s.key.as_str()).collect();
                outln!(
                    "ok  {name} (survey {} v{}, {} items, languages {}, scales {})",
                    i.key,
                    i.version,
                    i.items().count(),
                    i.languages.join(", "),
                    if scales.is_empty() {
                        "none".to_string()
                    } else {
                        scales.join(", ")
                    }
                )?;
                if !keys.insert(i.key.clone()) {
                    errln!("{name}: key: survey '{}' is defined by two files", i.key);
                    errors += 1;
                }
            }
            Err(e) => {
                errln!("{e}");
                errors += e.to_string().lines().count();
            }
        }
    }
    let mut trial_count = 0;
    if let Some(dir) = trials {
        for file in toml_files(&[dir.to_path_buf()], "experiments")?
            .into_iter()
            .filter(|f| f.file_name().is_none_or(|n| n != "metrics.toml"))
        {
            let name = file.display().to_string();
            let spec = trial_source(&file).and_then(|s| {
                parse_trial(&s, &name)
                    .map_err(|e| anyhow!(join_errors(&e, "\n")))
                    .map(|t| (s, t))
            });
            let (source, spec) = match spec {
                Ok(x) => x,
                Err(e) => {
                    errln!("{e}");
                    errors += e.to_string().lines().count();
                    continue;
                }
            };
            trial_count += 1;
            for (i, s) in spec.surveys.iter().enumerate() {
                if !keys.contains(&s.instrument) {
                    let line = line_of(&source, &format!("\"{}\"", s.instrument));
                    errln!(
                        "{name}:{line}: surveys[{i}].instrument: no instrument '{}' among the files checked (wave '{}')",
                        s.instrument,
                        s.wave
                    );
                    errors += 1;
                }
            }
        }
    }
    if errors > 0 {
        bail!("{errors} error(s)");
    }
    if trials.is_some() {
        outln!(
            "{} instrument file(s) and {trial_count} trial file(s) valid",
            files.len()
        )
    } else {
        outln!("{} instrument file(s) valid", files.len())
    }
}

/// The 1-based line of the first `instrument = ...` line holding `needle`.
fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.trim_start().starts_with("instrument") && l.contains(needle))
        .map_or(1, |n| n + 1)
}

/// The `*.toml` files named, or in the directories named (default
/// `default_dir`), sorted within each directory.
fn toml_files(paths: &[PathBuf], default_dir: &str) -> Result<Vec<PathBuf>> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from(default_dir)]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if root.exists() {
            files.push(root);
        } else {
            bail!("{}: no such file or directory", root.display());
        }
    }
    Ok(files)
}

fn cell(c: &RateCell) -> String {
    if c.suppressed {
        return "suppressed (small cell)".into();
    }
    format!(
        "{}/{} completed ({}), {} started, {} declined",
        c.completed.unwrap_or(0),
        c.invited.unwrap_or(0),
        c.rate.map_or("-".into(), |r| format!("{:.1}%", 100.0 * r)),
        c.started.unwrap_or(0),
        c.declined.unwrap_or(0)
    )
}

fn num(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}"))
}

/// The Markdown summary of `surveys results`.
fn summary(key: &str, wave: &str, instrument: &str, version: u32, r: &SurveyResults) -> Result<()> {
    outln!("# Survey results: campaign {key} (wave {wave}, {instrument} v{version})\n")?;
    outln!(
        "Breakdowns with fewer than {} respondents are suppressed.\n",
        r.min_cell
    )?;
    outln!("## Response\n")?;
    outln!("- invited: {}", cell(&r.response.overall))?;
    outln!(
        "- answered without an invitation: {}",
        r.response.uninvited_responses
    )?;
    for c in &r.response.by_arm {
        outln!("- arm {}: {}", c.key.as_deref().unwrap_or("?"), cell(c))?;
    }
    outln!("- no arm: {}", cell(&r.response.without_arm))?;
    for c in &r.response.by_community {
        outln!(
            "- community {}: {}",
            c.key.as_deref().unwrap_or("?"),
            cell(c)
        )?;
    }
    match &r.response.differential {
        None => outln!("\nNo trial: no differential-response test.")?,
        Some(Computed::Value(d)) => outln!(
            "\n{}{}",
            if d.flagged { "**Warning:** " } else { "" },
            d.message
        )?,
        Some(Computed::Error { error }) => outln!("\nDifferential response not tested: {error}")?,
    }
    outln!("\n## Scales\n")?;
    for s in &r.scales {
        outln!(
            "### {} ({}; n = {}, mean {}, sd {})\n",
            s.key,
            s.scoring,
            s.summary.n.map_or("-".into(), |n| n.to_string()),
            num(s.summary.mean),
            num(s.summary.sd)
        )?;
        for a in &s.by_arm {
            let arm = a.arm.as_deref().unwrap_or("?");
            if a.suppressed {
                outln!("- arm {arm}: suppressed (small cell)")?;
            } else {
                outln!(
                    "- arm {arm}: n = {}, mean {}, sd {}",
                    a.n.unwrap_or(0),
                    num(a.mean),
                    num(a.sd)
                )?;
            }
        }
        match &s.reliability {
            Computed::Value(rel) => {
                outln!(
                    "- Cronbach's alpha {:.3} (95% Feldt {:.3} to {:.3}, n = {})",
                    rel.alpha,
                    rel.alpha_ci95.0,
                    rel.alpha_ci95.1,
                    rel.n
                )?;
                match &rel.omega {
                    Computed::Value(o) => {
                        outln!("- McDonald's omega {:.3} (one-factor model)", o.omega)?
                    }
                    Computed::Error { error } => outln!("- omega not reported: {error}")?,
                }
                for it in &rel.items {
                    outln!(
                        "  - {}: corrected item-total r {}, alpha if deleted {}",
                        it.item,
                        num(it.corrected_item_total_r),
                        num(it.alpha_if_deleted)
                    )?;
                }
                if let Some(w) = &rel.warning {
                    outln!("- **Warning:** {w}")?;
                }
            }
            Computed::Error { error } => outln!("- reliability not reported: {error}")?,
        }
        outln!()?;
    }
    Ok(())
}
