//! `flags`: import, export, list, get and enable or disable flags.

use super::{change, with_store};
use crate::args::FlagsCmd;
use crate::audit::actor;
use crate::output::{errln, outln};
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_server::service;
use commonlab_server::settings::Settings;
use std::path::Path;

pub async fn run(settings: &Settings, given_actor: Option<&str>, cmd: FlagsCmd) -> Result<()> {
    let set = settings.flag_set.as_str();
    let who = || actor(given_actor);
    with_store(&settings.database_url, async |store| {
        match cmd {
            FlagsCmd::Import {
                file,
                reason,
                strict,
                replace_overrides,
            } => {
                let source = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let actor = who()?;
                let meta = change(&actor, &reason);
                let out =
                    service::import(store, set, &source, &meta, None, strict, replace_overrides)
                        .await
                        .map_err(|e| service_error(e, Some(&file)))?;
                for w in &out.warnings {
                    errln!("warning: {}: {}: {}", file.display(), w.pointer, w.message);
                }
                for k in &out.overrides.kept {
                    outln!("kept cohort override '{}' of flag '{}'", k.cohort, k.flag)?;
                }
                for d in &out.overrides.dropped {
                    outln!(
                        "dropped cohort override '{}' of flag '{}': {}",
                        d.cohort,
                        d.flag,
                        d.reason
                    )?;
                }
                for t in &out.deviations {
                    outln!("recorded as a deviation in running trial '{t}' (its flag changed)")?;
                }
                outln!(
                    "imported {} flags from {} as revision {} ({} warnings)",
                    out.flags,
                    file.display(),
                    out.revision,
                    out.warnings.len()
                )?;
            }
            FlagsCmd::Export { format, output } => {
                let (_, doc) = service::head(store, set).await?;
                let doc = match format.as_str() {
                    "commonlab" => doc,
                    "flagd" => {
                        let (fs, _) = FlagSet::from_value(&doc, LoadMode::Lenient)?;
                        fs.to_flagd_document()
                    }
                    other => bail!("--format: unknown format '{other}' (use commonlab or flagd)"),
                };
                let text = serde_json::to_string_pretty(&doc)?;
                match output {
                    Some(path) => std::fs::write(&path, text + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => outln!("{text}")?,
                }
            }
            FlagsCmd::List => {
                let (rev, doc) = service::head(store, set).await?;
                let (fs, _) = FlagSet::from_value(&doc, LoadMode::Lenient)?;
                outln!("flag set '{set}' at revision {rev}: {} flags", fs.len())?;
                for key in fs.keys() {
                    if let Some(f) = fs.get(key) {
                        outln!(
                            "{:<40} {:<9} {:<8} {}",
                            key,
                            format!("{:?}", f.state()).to_uppercase(),
                            format!("{:?}", f.value_type()).to_lowercase(),
                            f.default_variant().unwrap_or("-")
                        )?;
                    }
                }
            }
            FlagsCmd::Get { key } => {
                let (_, doc) = service::head(store, set).await?;
                let flag = doc
                    .get("flags")
                    .and_then(|f| f.get(&key))
                    .ok_or_else(|| anyhow!("flag '{key}' not found"))?;
                crate::output::json(flag)?;
            }
            FlagsCmd::SetState { key, state, reason } => {
                let enabled = match state.to_ascii_lowercase().as_str() {
                    "enabled" | "enable" | "on" => true,
                    "disabled" | "disable" | "off" => false,
                    other => bail!("state must be 'enabled' or 'disabled', not '{other}'"),
                };
                let actor = who()?;
                let meta = change(&actor, &reason);
                let change = service::set_state(store, set, &key, enabled, &meta, None).await?;
                outln!(
                    "flag '{key}' is now {} (revision {})",
                    if enabled { "enabled" } else { "disabled" },
                    change.revision
                )?;
                for t in &change.deviations {
                    outln!(
                        "recorded as a deviation in running trial '{t}', which controls this flag"
                    )?;
                }
            }
        }
        Ok(())
    })
    .await
}

/// A service error about a file, with each issue's place in it.
fn service_error(e: commonlab_server::Error, file: Option<&Path>) -> anyhow::Error {
    match (&e, file) {
        (commonlab_server::Error::Invalid { issues, .. }, Some(path)) => {
            let mut parts = Vec::new();
            for i in issues {
                let loc = match (i.line, i.column) {
                    (Some(l), Some(c)) => format!("{}:{l}:{c}", path.display()),
                    (Some(l), None) => format!("{}:{l}", path.display()),
                    _ => path.display().to_string(),
                };
                let field = if i.pointer.is_empty() {
                    String::new()
                } else {
                    format!(" {}:", i.pointer)
                };
                parts.push(format!("{loc}:{field} {}", i.detail));
            }
            anyhow!(parts.join("; "))
        }
        _ => anyhow!(e),
    }
}
