//! `events`: import historical events through the pipeline of
//! `POST /v1/events` (with a progress bar), export stored events as NDJSON.

use super::with_store;
use crate::args::EventsCmd;
use crate::input::read_events;
use crate::output::{self, errln, outln};
use crate::study_key;
use anyhow::{anyhow, bail, Context, Result};
use commonlab_server::settings::Settings;
use commonlab_store::Store;
use std::io::Write;
use std::path::{Path, PathBuf};

pub async fn run(settings: &Settings, cmd: EventsCmd) -> Result<()> {
    with_store(&settings.database_url, async |store| match cmd {
        EventsCmd::Import { file, batch, .. } => import(settings, store, &file, batch).await,
        EventsCmd::Export {
            name,
            community,
            from,
            to,
            output,
        } => {
            let time = |s: Option<String>, flag: &str| -> Result<_> {
                s.map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|_| anyhow!("{flag}: '{s}' is not an RFC 3339 time"))
                })
                .transpose()
            };
            let filter = commonlab_store::EventFilter {
                name,
                unit: None,
                community,
                from: time(from, "--from")?,
                to: time(to, "--to")?,
            };
            export(store, &filter, output).await
        }
    })
    .await
}

async fn import(settings: &Settings, store: &Store, file: &Path, batch: usize) -> Result<()> {
    let key = study_key::existing(&settings.study_key_file, store).await?;
    let config = settings.to_config(key);
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let items = read_events(file, &text)?;
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let now = chrono::Utc::now();
    let (mut stored, mut duplicates, mut rejected) = (0u64, 0usize, 0usize);
    let mut dropped = commonlab_server::events::Dropped::default();
    for chunk in items.chunks(batch.max(1)) {
        // The pipeline of POST /v1/events: validation, allow-lists,
        // pseudonymisation, consent.
        let admitted = commonlab_server::events::admit(
            store,
            &config,
            chunk.iter().map(|(line, v)| (*line, v)),
            now,
        )
        .await?;
        for r in &admitted.rejected {
            rejected += 1;
            bar.suspend(|| errln!("{}:{}: {}: {}", file.display(), r.index, r.field, r.reason));
        }
        dropped.not_allowed += admitted.dropped.not_allowed;
        dropped.no_consent += admitted.dropped.no_consent;
        dropped.properties_removed += admitted.dropped.properties_removed;
        if !admitted.events.is_empty() {
            let out = store.insert_events(&admitted.events, now).await?;
            stored += out.inserted;
            duplicates += out.duplicates.len();
            // Refused by the database (a constraint): named like invalid
            // events, by their line.
            for r in &out.refused {
                rejected += 1;
                let line = admitted.origin[r.index];
                bar.suspend(|| {
                    errln!(
                        "{}:{line}: the database refused this event: {}",
                        file.display(),
                        r.reason
                    )
                });
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    outln!(
        "{} events read: {stored} stored, {duplicates} already stored, {rejected} rejected, {} not on the allow-list, {} without consent ({} properties removed)",
        items.len(),
        dropped.not_allowed,
        dropped.no_consent,
        dropped.properties_removed
    )?;
    if rejected > 0 {
        bail!("{rejected} event(s) rejected (listed above); the valid ones were stored");
    }
    Ok(())
}

/// Every stored event matching `filter`, as NDJSON, in pages of 5,000, to
/// `output` or standard output (stopping when its reader closes it).
async fn export(
    store: &Store,
    filter: &commonlab_store::EventFilter,
    output: Option<PathBuf>,
) -> Result<()> {
    let n = match &output {
        Some(p) => {
            let file = std::fs::File::create(p)
                .with_context(|| format!("cannot write {}", p.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = write_events(store, filter, &mut out).await?;
            out.flush()?;
            n
        }
        None => {
            let mut out = output::Stdout::new();
            let n = write_events(store, filter, &mut out).await;
            out.finish(n)?
        }
    };
    errln!("{n} events exported");
    Ok(())
}

async fn write_events(
    store: &Store,
    filter: &commonlab_store::EventFilter,
    out: &mut impl Write,
) -> Result<u64> {
    let mut after = None;
    let mut n = 0u64;
    loop {
        let page = store.export_events(filter, after.as_ref(), 5000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        for e in &page {
            let line = serde_json::json!({
                "event_id": e.event_id, "unit": e.unit, "community": e.community, "name": e.name,
                "timestamp": e.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "received_at": e.received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "properties": e.properties,
            });
            writeln!(out, "{line}")?;
            n += 1;
        }
    }
    Ok(n)
}
