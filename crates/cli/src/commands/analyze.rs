//! `analyze`: the statistics engine on a stored trial (`--trial`, every
//! metric computed in the database), on JSON sufficient statistics, or on
//! the rows of a few-community design: a JSON rows document with its design
//! (`docs/analyze-few.md`) or CSV rows with `--design`.

use super::with_store;
use crate::args::AnalyzeArgs;
use crate::input::{is_rows_document, read_input, read_rows, read_rows_document};
use crate::output::{self, errln, out};
use anyhow::{anyhow, bail, Result};
use commonlab_server::settings::Settings;

pub async fn run(settings: &Settings, args: AnalyzeArgs) -> Result<()> {
    match args.trial.clone() {
        Some(key) => trial(settings, &key, &args).await,
        None => offline(args),
    }
}

fn parse_time(s: &str, what: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| anyhow!("{what}: {s:?} is not an RFC 3339 date-time ({e})"))
}

async fn trial(settings: &Settings, key: &str, args: &AnalyzeArgs) -> Result<()> {
    use commonlab_report::analysis as report;
    use commonlab_server::analysis;
    let as_of = match &args.as_of {
        Some(s) => parse_time(s, "--as-of")?,
        None => chrono::Utc::now(),
    };
    let stored = with_store(&settings.database_url, async |store| {
        Ok(analysis::stored(store, key, as_of).await?)
    })
    .await?;
    if args.rows {
        let table = report::rows_table(&stored);
        let mut out = output::Stdout::new();
        let written = (|| -> Result<()> {
            let mut w = commonlab_server::csv_out::Writer::from_writer(&mut out);
            w.write_record(table.header.iter().copied())?;
            for r in &table.records {
                w.write_record(r.iter().map(String::as_str))?;
            }
            w.flush()?;
            Ok(())
        })();
        return out.finish(written);
    }
    let result = report::analyse(&stored);
    match args.format.as_str() {
        "md" => out!("{}", trial_markdown(&result)),
        _ => output::json(&result),
    }
}

fn p(x: Option<f64>) -> String {
    x.map_or("–".into(), |p| format!("{p:.4}"))
}

/// The analysis in Markdown (the full report arrives with issue #14).
fn trial_markdown(a: &commonlab_report::analysis::TrialAnalysis) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Trial {} (plan {}), as of {}\n\nDesign: {} ({}).\n",
        a.trial,
        &a.spec_hash[..a.spec_hash.len().min(12)],
        a.as_of.to_rfc3339(),
        a.design,
        a.design_analysis
    );
    if let Some(n) = &a.notice {
        let _ = writeln!(s, "**{n}**\n");
    }
    let _ = writeln!(
        s,
        "## Decision: {}\n\n{}\n",
        a.decision.outcome,
        a.decision.reasons.join("; ")
    );
    if let Some(text) = &a.decision.plan_says {
        let _ = writeln!(s, "The plan says: {text}\n");
    }
    let _ = writeln!(s, "## Metrics\n");
    for m in &a.metrics {
        let n: Vec<String> = m.n.iter().map(|(a, n)| format!("{a} {n}")).collect();
        let _ = writeln!(
            s,
            "- {} ({}, {}, {}): n {}",
            m.name,
            serde_json::to_value(m.role)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            m.kind,
            m.direction,
            n.join(", ")
        );
        for e in &m.estimates {
            let _ = writeln!(
                s,
                "  - {} vs {}: {:+.6} (SE {}), p = {} by {}",
                e.arm,
                e.control,
                e.estimate,
                p(e.se),
                p(e.p_value),
                e.method
            );
        }
        if let Some(n) = &m.notice {
            let _ = writeln!(s, "  - note: {n}");
        }
    }
    let c = &a.comparisons;
    let _ = writeln!(
        s,
        "\n## Planned comparisons ({}, correction {})\n",
        c.metric, c.correction
    );
    for x in &c.primary {
        let _ = writeln!(
            s,
            "- {} vs {}: p = {}, adjusted p = {}{}",
            x.arm,
            x.control,
            p(x.p_value),
            p(x.adjusted_p_value),
            if x.significant { " (significant)" } else { "" }
        );
    }
    if !a.quality.warnings.is_empty() {
        let _ = writeln!(s, "\n## Data quality\n");
        for w in &a.quality.warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    s
}

/// Data brought from elsewhere: `--input`.
fn offline(args: AnalyzeArgs) -> Result<()> {
    use commonlab_stats::{analyze as sufficient, rows};
    let path = args
        .input
        .as_deref()
        .ok_or_else(|| anyhow!("--input or --trial is required"))?;
    let text = read_input(path)?;
    let name = path.display().to_string();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let json = match (args.input_format.as_deref(), extension.as_deref()) {
        (Some(format), _) => format == "json",
        (None, Some("json")) => true,
        (None, Some("csv")) => false,
        (None, _) => args.design.is_none(),
    };
    if json && is_rows_document(&text) {
        let input = read_rows_document(&text, &name)?;
        return rows_document(&args, input, &name);
    }
    match (&args.design, json) {
        (None, true) => {
            let input = sufficient::parse_input(&text).map_err(|e| anyhow!("{name}: {e}"))?;
            let out = sufficient::analyze(&input);
            match args.format.as_str() {
                "md" => out!("{}", sufficient::to_markdown(&out)),
                _ => output::json(&out),
            }
        }
        (None, false) => bail!(
            "{name}: CSV rows need --design (cluster, stepped_wedge, blocked or blocked_users); \
             a JSON rows document carries its design"
        ),
        (Some(_), true) => bail!(
            "{name}: with --design, JSON input is a rows document \
             ({{\"rows\": [...], \"design\": {{...}}}}, docs/analyze-few.md), or give CSV rows"
        ),
        (Some(design), false) => {
            if args.cluster_fixed_effects {
                errln!(
                    "note: --cluster-fixed-effects does nothing and will be removed: community and period \
                     fixed effects are the default (--without-community-effects leaves them out)"
                );
            }
            let kind: rows::DesignKind =
                serde_json::from_value(serde_json::Value::String(design.clone()))?;
            let input = rows::RowsInput {
                rows: read_rows(&text, &name)?,
                design: rows::RowsDesign {
                    kind,
                    control_arm: args.control_arm.clone().unwrap_or_else(|| "control".into()),
                    community_effects: args
                        .without_community_effects
                        .then_some(rows::CommunityEffects::None),
                    seed: args.seed.unwrap_or(0),
                    ..serde_json::from_value(serde_json::json!({"kind": design}))?
                },
            };
            print_rows(&args, &input, &name)
        }
    }
}

/// A JSON rows document (`docs/analyze-few.md`): its design is its own;
/// the flags that would set it are refused rather than silently ignored or
/// silently preferred.
fn rows_document(
    args: &AnalyzeArgs,
    input: commonlab_stats::rows::RowsInput,
    name: &str,
) -> Result<()> {
    if let Some(design) = &args.design {
        let kind = serde_json::to_value(input.design.kind)?;
        if kind.as_str() != Some(design.as_str()) {
            bail!("{name}: --design {design} but the document's design.kind is {kind}");
        }
    }
    let set_by_flag = [
        ("--control-arm", args.control_arm.is_some()),
        ("--seed", args.seed.is_some()),
        (
            "--without-community-effects",
            args.without_community_effects,
        ),
        ("--cluster-fixed-effects", args.cluster_fixed_effects),
    ];
    if let Some((flag, _)) = set_by_flag.iter().find(|(_, given)| *given) {
        bail!("{name}: {flag} cannot change a JSON rows document: set it in the document's design");
    }
    print_rows(args, &input, name)
}

fn print_rows(
    args: &AnalyzeArgs,
    input: &commonlab_stats::rows::RowsInput,
    name: &str,
) -> Result<()> {
    let out = commonlab_stats::rows::analyze_rows(input).map_err(|e| anyhow!("{name}: {e}"))?;
    match args.format.as_str() {
        "md" => out!("{}", rows_markdown(&out)?),
        _ => output::json(&out),
    }
}

/// A plain Markdown rendering of the few-community result: its JSON, fenced.
fn rows_markdown(out: &commonlab_stats::rows::RowsOutput) -> Result<String> {
    Ok(format!(
        "# Few-community analysis\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(out)?
    ))
}
