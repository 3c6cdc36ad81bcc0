//! `loadtest`: drives a running server open-loop (`commonlab_sim::load`)
//! and prints throughput, latency percentiles per request kind, errors by
//! status and the achieved against the target rate.

use crate::args::LoadtestArgs;
use crate::output::{self, outln};
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::experiments::parse_duration;
use commonlab_sim::load::{self, LoadConfig, LoadReport, Mix, MAX_DURATION};
use std::io::IsTerminal;
use std::time::Duration;

/// Most lines read from a survey links file.
const MAX_LINKS: usize = 100_000;

pub async fn run(args: LoadtestArgs) -> Result<()> {
    let duration = duration(&args.duration)?;
    load::check_target(&args.url, args.allow_remote).map_err(|e| anyhow!("{e}"))?;
    let mix = Mix::parse(&args.mix).map_err(|e| anyhow!("{e}"))?;
    let survey_links = match &args.survey_links {
        Some(path) => links(path, &args.url)?,
        None => Vec::new(),
    };
    let cfg = LoadConfig {
        base_url: args.url.clone(),
        sdk_key: args.key.clone(),
        rate: args.rate,
        duration,
        mix,
        flags: args.flag.clone(),
        communities: args.communities.clone(),
        users: args.users,
        batch: args.batch,
        survey_links,
        research_key: args.research_key.clone(),
        respondents_at_once: args.respondents_at_once,
        seed: args.seed,
        timeout: Duration::from_secs(args.timeout.max(1)),
        max_in_flight: args.max_in_flight,
        allow_remote: args.allow_remote,
    };
    let scheduled = (args.rate * duration.as_secs_f64()).max(1.0) as u64;
    let bar = if std::io::stdout().is_terminal() {
        indicatif::ProgressBar::new(scheduled)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests sent, {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = load::run(&cfg, &|sent| bar.set_position(sent))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    bar.finish_and_clear();
    if args.json {
        return output::json(&report);
    }
    print_report(&args.url, &report)
}

/// `30s`, `2m`, or a number of seconds; at most [`MAX_DURATION`].
fn duration(text: &str) -> Result<Duration> {
    let secs = text
        .trim()
        .parse::<i64>()
        .ok()
        .or_else(|| parse_duration(text))
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow!("--duration '{text}': expected 30s, 2m or a number of seconds"))?;
    let d = Duration::from_secs(secs.unsigned_abs());
    if d > MAX_DURATION {
        bail!("--duration '{text}': at most {} s", MAX_DURATION.as_secs());
    }
    Ok(d)
}

/// The links in `path`, one a line (`#` comments and blank lines skipped);
/// a path starting with `/` is taken on `base`.
fn links(path: &std::path::Path, base: &str) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let url = if line.starts_with('/') {
            format!("{}{line}", base.trim_end_matches('/'))
        } else {
            line.to_string()
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "{}:{}: '{line}' is neither an http(s) URL nor a path starting with /",
                path.display(),
                i + 1
            );
        }
        if out.len() == MAX_LINKS {
            bail!("{}: more than {MAX_LINKS} links", path.display());
        }
        out.push(url);
    }
    if out.is_empty() {
        bail!("{}: no links", path.display());
    }
    Ok(out)
}

fn print_report(url: &str, r: &LoadReport) -> Result<()> {
    let mix = &r.mix;
    outln!(
        "load test of {url}: {} requests/s for {} s (mix single={} bulk={} events={} survey={} answer={}), open loop",
        r.target_rate,
        r.duration_s,
        mix.single,
        mix.bulk,
        mix.events,
        mix.survey,
        mix.answer
    )?;
    outln!(
        "sent {} of {} scheduled at {:.1}/s (target {}), {} ok, {} errors, {} not sent; scheduler late by at most {:.1} ms; last answer after {:.2} s",
        r.sent,
        r.scheduled,
        r.achieved_rate,
        r.target_rate,
        r.ok,
        r.errors,
        r.not_sent,
        r.max_send_lag_ms,
        r.elapsed_s
    )?;
    outln!()?;
    outln!(
        "{:<18} {:>8} {:>8} {:>7} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "KIND",
        "SENT",
        "OK",
        "ERRORS",
        "ANSWER/s",
        "P50 ms",
        "P90 ms",
        "P99 ms",
        "MAX ms"
    )?;
    for k in &r.kinds {
        let errors: u64 = k.errors.values().sum();
        let (p50, p90, p99, max) =
            k.latency_ms
                .as_ref()
                .map_or(("-".into(), "-".into(), "-".into(), "-".into()), |l| {
                    (
                        format!("{:.2}", l.p50),
                        format!("{:.2}", l.p90),
                        format!("{:.2}", l.p99),
                        format!("{:.2}", l.max),
                    )
                });
        outln!(
            "{:<18} {:>8} {:>8} {:>7} {:>9.1} {:>8} {:>8} {:>8} {:>9}",
            k.kind,
            k.sent,
            k.ok,
            errors,
            k.throughput,
            p50,
            p90,
            p99,
            max
        )?;
    }
    outln!()?;
    outln!("latency: from the scheduled send time to the answer's last byte")?;
    for k in &r.kinds {
        if !k.errors.is_empty() {
            let list: Vec<String> = k.errors.iter().map(|(s, n)| format!("{s} x{n}")).collect();
            outln!("errors, {}: {}", k.kind, list.join(", "))?;
        }
        if let Some((events, rejected)) = k.events {
            outln!("events: {events} sent in batches, {rejected} rejected by the server")?;
        }
    }
    if let Some(s) = &r.survey {
        outln!(
            "survey answers: campaign {}, {} links; {} respondents started, {} submitted every page, {} saw the thanks page, {} abandoned after a failed step; {} steps found no respondent free",
            s.campaign,
            s.links,
            s.started,
            s.submitted,
            s.completed,
            s.abandoned,
            s.no_respondent
        )?;
    }
    for n in &r.notes {
        outln!("note: {n}")?;
    }
    Ok(())
}
