//! `metrics`: check a metric library, show a stored trial's metric as SQL
//! and its query plan.

use super::experiments::files::{join_errors, load_library};
use super::with_store;
use crate::args::MetricsCmd;
use crate::output::outln;
use anyhow::{anyhow, bail, Result};
use commonlab_server::settings::Settings;
use std::path::PathBuf;

pub async fn run(settings: &Settings, cmd: MetricsCmd) -> Result<()> {
    match cmd {
        MetricsCmd::Validate { file } => {
            let path = file.unwrap_or_else(|| PathBuf::from("experiments/metrics.toml"));
            let lib = load_library(&path)?;
            outln!(
                "ok  {} ({} metrics: {})",
                path.display(),
                lib.metrics.len(),
                lib.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
        MetricsCmd::Sql {
            trial,
            metric,
            explain,
        } => {
            with_store(&settings.database_url, async |store| {
                let record = store
                    .get_trial(&trial)
                    .await?
                    .ok_or_else(|| anyhow!("trial '{trial}' not found"))?;
                let spec = commonlab_core::experiments::parse_trial(
                    &record.spec_source,
                    &format!("trial {trial}"),
                )
                .map_err(|errs| anyhow!(join_errors(&errs, "\n")))?;
                let all = std::iter::once(&spec.metrics.primary)
                    .chain(&spec.metrics.secondary)
                    .chain(&spec.metrics.guardrails);
                let Some(m) = all.clone().find(|m| m.name == metric) else {
                    let names: Vec<&str> = all.map(|m| m.name.as_str()).collect();
                    bail!(
                        "trial '{trial}' has no metric '{metric}'; it has: {}",
                        names.join(", ")
                    );
                };
                outln!("-- ?1/$1 = trial id {}, ?2/$2 = as-of time", record.id)?;
                outln!("{};", store.metric_sql(m))?;
                if explain {
                    for line in store.metric_plan(record.id, m, chrono::Utc::now()).await? {
                        outln!("-- {line}")?;
                    }
                }
                Ok(())
            })
            .await
        }
    }
}
