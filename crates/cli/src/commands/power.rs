//! `power`: simulation-based power of a trial file's design, in memory
//! (`commonlab_sim::power`; docs/power.md). Parses, runs on every core
//! with a progress bar on a terminal, prints.

use crate::args::PowerArgs;
use crate::commands::experiments::files::trial_source;
use crate::output::{self, outln};
use anyhow::{anyhow, bail, Context, Result};
use commonlab_core::experiments::parse_trial;
use commonlab_sim::power::{self, PowerConfig, PowerReport, Rate};
use commonlab_sim::SimParams;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

pub async fn run(args: PowerArgs) -> Result<()> {
    let path = trial_path(&args.trial);
    let source = trial_source(&path)?;
    let mut spec = parse_trial(&source, &path.display().to_string()).map_err(|errs| {
        anyhow!(errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    })?;
    if let Some(alpha) = args.alpha {
        if !(alpha > 0.0 && alpha < 1.0) {
            bail!("--alpha {alpha}: must be between 0 and 1");
        }
        spec.analysis.alpha = alpha;
    }
    let mut params = match &args.params {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            SimParams::from_json(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => SimParams::with_sizes(&args.members),
    };
    if let Some(s) = args.spillover {
        params.spillover = s;
    }
    params.validate().map_err(|e| anyhow!("{e}"))?;
    let params = power::name_communities(&spec, params).map_err(|e| anyhow!("{e}"))?;
    let mut effects = BTreeMap::new();
    for e in &args.effect {
        power::parse_effect(e, &mut effects).map_err(|e| anyhow!("{e}"))?;
    }
    let defaulted = effects.is_empty();
    if defaulted {
        for arm in spec.arms.iter().filter(|a| !a.control) {
            power::parse_effect(&format!("{}=1.5", arm.variant), &mut effects)
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    let cfg = PowerConfig {
        spec,
        params,
        effects,
        simulations: args.simulate,
        seed: args.seed,
        days: args.days,
        compare_blocked_users: args.compare == "blocked_users",
        randomisation_draws: args.randomisation_draws,
        metric: args.metric.clone(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let bar = if std::io::stdout().is_terminal() {
        indicatif::ProgressBar::new(args.simulate as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} simulated trials, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let tick = bar.clone();
    let report = tokio::task::spawn_blocking(move || {
        power::run(&cfg, threads, &|| tick.inc(1)).map_err(|e| anyhow!("{e}"))
    })
    .await
    .map_err(|e| anyhow!("the simulation failed: {e}"))??;
    bar.finish_and_clear();
    if args.json {
        return output::json(&report);
    }
    print_report(&report, defaulted)
}

/// A path to a file, or `experiments/KEY.toml`.
fn trial_path(trial: &str) -> PathBuf {
    let given = Path::new(trial);
    if given.exists() || trial.ends_with(".toml") {
        given.to_path_buf()
    } else {
        Path::new("experiments").join(format!("{trial}.toml"))
    }
}

fn rate(r: &Option<Rate>) -> String {
    match r {
        Some(r) => format!("{:.3} ± {:.3}", r.rate, r.mc_se),
        None => "-".into(),
    }
}

fn print_report(r: &PowerReport, defaulted: bool) -> Result<()> {
    outln!(
        "power of '{}' ({} design) by simulation: {} trials with the effects and {} without, seed {}",
        r.trial,
        r.design.as_str(),
        r.simulations,
        r.simulations,
        r.seed
    )?;
    let communities: Vec<String> = r
        .communities
        .iter()
        .map(|c| format!("{} {}", c.name, c.members))
        .collect();
    outln!(
        "communities (members at day 0): {}; {} days; spillover {}",
        communities.join(", "),
        r.days,
        r.spillover
    )?;
    let effects: Vec<String> = r
        .effects
        .iter()
        .flat_map(|(arm, e)| {
            e.rate_multipliers
                .iter()
                .map(move |(event, m)| format!("{arm}: {event} x{m}"))
        })
        .collect();
    outln!(
        "effects: {}{}",
        effects.join(", "),
        if defaulted {
            " (the default; set with --effect)"
        } else {
            ""
        }
    )?;
    outln!(
        "metric: {} ({}): {}; counted events: {}; days {}-{} after first exposure (a stepped wedge or switchback counts each period instead)",
        r.metric.name,
        r.metric.kind,
        r.metric.value,
        r.metric.events.join(", "),
        r.metric.window_days.0,
        r.metric.window_days.1
    )?;
    outln!(
        "alpha {} {}, rejected when p <= alpha; correction {}",
        r.alpha,
        r.sidedness,
        r.correction
    )?;
    outln!()?;
    outln!(
        "{:<14} {:<18} {:<30} {:>15} {:>15} {:>8} {:>9}",
        "DESIGN",
        "COMPARISON",
        "METHOD",
        "POWER",
        "FALSE POS.",
        "MIN P",
        "ESTIMATE"
    )?;
    for d in &r.designs {
        for c in &d.comparisons {
            for m in &c.methods {
                let method = if m.lead {
                    format!("{} (lead)", m.method)
                } else {
                    m.method.clone()
                };
                outln!(
                    "{:<14} {:<18} {:<30} {:>15} {:>15} {:>8} {:>9}",
                    d.design.as_str(),
                    format!("{} vs {}", c.arm, c.control),
                    method,
                    rate(&m.power),
                    rate(&m.false_positive_rate),
                    m.min_attainable_p.map_or("-".into(), |p| format!("{p:.4}")),
                    m.mean_estimate.map_or("-".into(), |e| format!("{e:.3}"))
                )?;
                if let Some(c) = &m.corrected_power {
                    outln!(
                        "{:<14} {:<18} {:<30} {:>15}",
                        "",
                        "",
                        format!("  after {}", r.correction),
                        rate(&Some(c.clone()))
                    )?;
                }
            }
        }
    }
    outln!()?;
    outln!("POWER and FALSE POS.: share of simulated trials rejected ± Monte Carlo standard error; MIN P: the smallest p-value the randomisation inference can give; ESTIMATE: mean estimate with the effects (absolute)")?;
    for d in &r.designs {
        outln!("{}: {}", d.design.as_str(), d.analysis)?;
    }
    for n in &r.notes {
        outln!("note: {n}")?;
    }
    Ok(())
}
