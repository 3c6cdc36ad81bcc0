//! `experiments`: trial files through their lifecycle (create, start, stop,
//! resume, conclude, archive, amend), listed, shown and exported; checking
//! the files is in [`files`].

pub mod files;

use super::{change, with_store};
use crate::args::ExperimentsCmd;
use crate::audit::actor;
use crate::output::{self, errln, outln};
use anyhow::{anyhow, Context, Result};
use commonlab_server::settings::Settings;
use commonlab_server::trial_service::{self, Move};
use commonlab_server::trials::overview::{overview, schedule_view};
use commonlab_store::Store;
use files::{join_errors, trial_source};

pub async fn run(
    settings: &Settings,
    given_actor: Option<&str>,
    cmd: ExperimentsCmd,
) -> Result<()> {
    let set = settings.flag_set.as_str();
    if let ExperimentsCmd::Validate { paths, flags } = &cmd {
        return files::validate(settings, paths, flags.as_deref()).await;
    }
    with_store(&settings.database_url, async |store| {
        let actor = match &cmd {
            ExperimentsCmd::List
            | ExperimentsCmd::Show { .. }
            | ExperimentsCmd::Assignments { .. } => String::new(),
            _ => actor(given_actor)?,
        };
        let file_error = |e: commonlab_server::Error| match e {
            commonlab_server::Error::Invalid { message, .. } => anyhow!(message),
            other => anyhow!(other),
        };
        match cmd {
            ExperimentsCmd::Validate { .. } => unreachable!("handled above"),
            ExperimentsCmd::Create { file, reason } => {
                let source = trial_source(&file)?;
                let name = file.display().to_string();
                let t = trial_service::create(store, set, &source, &name, &change(&actor, &reason))
                    .await
                    .map_err(file_error)?;
                outln!(
                    "created trial '{}' as a draft (spec {})",
                    t.key,
                    &t.spec_hash[..12]
                )?;
            }
            ExperimentsCmd::Start { key, reason } => {
                let t = trial_service::start(store, set, &key, &change(&actor, &reason)).await?;
                outln!(
                    "started trial '{}': plan locked (spec {}), seed {}",
                    t.key,
                    &t.spec_hash[..12],
                    t.seed.unwrap_or_default()
                )?;
                if let Some(a) = &t.allocation {
                    outln!("allocation: {a}")?;
                }
                let schedule = schedule_view(&t, chrono::Utc::now())?;
                if schedule.state != "assigning" {
                    outln!("note: {}", schedule.note)?;
                }
            }
            ExperimentsCmd::Stop { key, reason } => {
                move_trial(store, &key, Move::Stop, &actor, &reason).await?
            }
            ExperimentsCmd::Resume { key, reason } => {
                move_trial(store, &key, Move::Resume, &actor, &reason).await?
            }
            ExperimentsCmd::Conclude {
                key,
                reason,
                force,
                ship: None,
            } => {
                let meta = change(&actor, &reason);
                let t = trial_service::conclude(store, &key, &meta, force).await?;
                outln!("trial '{}' is now {}", t.key, t.status.as_str())?;
            }
            ExperimentsCmd::Conclude {
                key,
                reason,
                force,
                ship: Some(arm),
            } => {
                let meta = change(&actor, &reason);
                let s = commonlab_server::trials::ship::conclude_and_ship(
                    store, set, &key, &arm, &meta, force,
                )
                .await?;
                outln!("trial '{}' is now {}", s.trial.key, s.trial.status.as_str())?;
                outln!(
                    "flag '{}' now serves variant {} to everyone ({}, flag set revision {}); report: {}",
                    s.flag,
                    s.variant,
                    s.action.replace('_', " "),
                    s.revision,
                    commonlab_server::trials::ship::report_link(&s.trial.key)
                )?;
            }
            ExperimentsCmd::Archive { key, reason } => {
                move_trial(store, &key, Move::Archive, &actor, &reason).await?
            }
            ExperimentsCmd::Amend { file, reason } => {
                let source = trial_source(&file)?;
                let name = file.display().to_string();
                let spec = commonlab_core::experiments::parse_trial(&source, &name)
                    .map_err(|errs| anyhow!(join_errors(&errs, "; ")))?;
                let meta = change(&actor, &reason);
                let (t, changed) =
                    trial_service::amend(store, set, &spec.key, &source, &name, &meta)
                        .await
                        .map_err(file_error)?;
                outln!("amended trial '{}' to version {}", t.key, t.version)?;
                if !changed.is_empty() {
                    outln!(
                        "locked fields changed (reported as a deviation): {}",
                        changed.join(", ")
                    )?;
                }
            }
            ExperimentsCmd::List => list(store).await?,
            ExperimentsCmd::Show { key, json } => show(store, &key, json).await?,
            ExperimentsCmd::Assignments { key, output } => {
                let n = match output {
                    Some(path) => {
                        let f = std::fs::File::create(&path)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        trial_service::export_csv(store, &key, std::io::BufWriter::new(f)).await?
                    }
                    None => {
                        let mut out = output::Stdout::new();
                        let n = trial_service::export_csv(store, &key, &mut out).await;
                        out.finish(n)?
                    }
                };
                errln!("{n} assignments exported");
            }
        }
        Ok(())
    })
    .await
}

async fn move_trial(store: &Store, key: &str, mv: Move, actor: &str, reason: &str) -> Result<()> {
    let t = trial_service::transition(store, key, mv, &change(actor, reason)).await?;
    outln!("trial '{}' is now {}", t.key, t.status.as_str())
}

async fn list(store: &Store) -> Result<()> {
    outln!(
        "{:<32} {:<10} {:<8} {:<24} FLAG",
        "KEY",
        "STATUS",
        "VERSION",
        "STARTED"
    )?;
    for t in store.list_trials(None).await? {
        outln!(
            "{:<32} {:<10} {:<8} {:<24} {}",
            t.key,
            t.status.as_str(),
            t.version,
            t.started_at
                .map(|s| output::time(&s))
                .unwrap_or_else(|| "-".into()),
            t.flag_key
        )?;
    }
    Ok(())
}

async fn show(store: &Store, key: &str, json: bool) -> Result<()> {
    let shown = overview(store, key, chrono::Utc::now()).await?;
    if json {
        return output::json(&shown);
    }
    let t = &shown.trial;
    outln!(
        "trial {} ({}), version {}, flag {}",
        t.key,
        t.status.as_str(),
        t.version,
        t.flag_key
    )?;
    outln!("spec hash {}", t.spec_hash)?;
    if let Some(seed) = t.seed {
        outln!("seed {seed}")?;
    }
    if let Some(a) = &t.allocation {
        outln!("allocation {a}")?;
    }
    let s = &shown.schedule;
    outln!(
        "schedule {} to {}: {}",
        output::time(&s.start),
        output::time(&s.end),
        s.note
    )?;
    if let Some(g) = &s.switchback {
        outln!(
            "switchback ({} scheme, washout {} at the start of each period): X = {}, . = {}",
            g.scheme,
            g.washout,
            g.on_arm,
            g.off_arm
        )?;
        let width = g
            .grid
            .iter()
            .map(|r| r.community.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let heads: Vec<String> = (1..=g.periods.len()).map(|k| format!("{k:>3}")).collect();
        outln!("{:width$} {}", "period", heads.join(""))?;
        for row in &g.grid {
            let cells: Vec<String> = row
                .on
                .iter()
                .map(|&on| format!("{:>3}", if on { "X" } else { "." }))
                .collect();
            outln!("{:width$} {}", row.community, cells.join(""))?;
        }
        for (k, p) in g.periods.iter().enumerate() {
            let now = if g.current_period == Some(k) {
                " (now)"
            } else {
                ""
            };
            outln!(
                "period {:>3}: {} to {}{now}",
                k + 1,
                output::time(&p.start),
                output::time(&p.end)
            )?;
        }
    }
    if let Some(completion) = &s.completion {
        let when = match s.complete_at {
            Some(_) => "data complete (it can be concluded without --force) when",
            None => "data never complete (concluding needs --force):",
        };
        outln!("{when} {completion}")?;
    }
    for a in &shown.arms {
        outln!(
            "arm {}: {} assigned, {} exposed",
            a.arm,
            a.assigned,
            a.exposed
        )?;
    }
    let deviations = shown
        .events
        .iter()
        .filter(|e| e.action == "deviation" || e.action == "amend")
        .count();
    if deviations > 0 {
        outln!(
            "deviations from the plan: {deviations} (amendments, changes to the flag while running, early conclusions; listed below)"
        )?;
    }
    for e in &shown.events {
        outln!(
            "{} {} by {}: {}",
            output::time(&e.created_at),
            e.action,
            e.actor,
            e.reason
        )?;
    }
    Ok(())
}
