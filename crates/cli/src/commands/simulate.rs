//! `simulate`: rehearses a stored, running trial with the agent-based
//! simulator (`commonlab_sim`), through the real server: each visitor's arm
//! comes from an OFREP evaluation (assignment and exposure take the real
//! path), the events go through `POST /v1/events`.
//!
//! Without `--server`, a server is started in this process on the
//! database, with a clock the simulator moves day by day from the trial's
//! schedule start, so schedules and stepped-wedge crossovers follow
//! simulated time. With `--server`, the simulated days end now and arms
//! are decided at the real time of each evaluation.

use super::{change, with_store};
use crate::args::SimulateArgs;
use crate::audit::actor;
use crate::output::outln;
use crate::study_key;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use commonlab_core::auth::Role;
use commonlab_core::experiments::{parse_trial, Design, TrialSpec, Unit};
use commonlab_server::settings::Settings;
use commonlab_server::Clock;
use commonlab_sim::drive::{self, ContextFn, ServerClock, Target};
use commonlab_sim::{ArmEffect, SimParams, Simulation};
use commonlab_store::TrialStatus;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn run(settings: &Settings, given_actor: Option<&str>, args: SimulateArgs) -> Result<()> {
    let params = params(&args)?;
    match &args.server {
        Some(url) => {
            let sdk_key = args
                .sdk_key
                .clone()
                .ok_or_else(|| anyhow!("--server needs --sdk-key (an sdk key of that server)"))?;
            let flag = args.flag.clone().ok_or_else(|| {
                anyhow!("--server needs --flag (the trial's flag; the trial file is on the server)")
            })?;
            let target = target(url, &sdk_key, &flag, "community", &args);
            let start = Utc::now() - Duration::days(i64::from(args.days));
            simulate(params, &args, target, start, ServerClock::Real).await
        }
        None => {
            let actor = actor(given_actor)?;
            with_store(&settings.database_url, async |store| {
                let trial = store
                    .get_trial(&args.experiment)
                    .await?
                    .ok_or_else(|| anyhow!("no trial '{}' in this database", args.experiment))?;
                if trial.status != TrialStatus::Running {
                    bail!(
                        "trial '{}' is {}; start it first (commonlab experiments start {} --reason ...)",
                        trial.key,
                        trial.status.as_str(),
                        trial.key
                    );
                }
                let spec = parse_trial(&trial.spec_source, &trial.key)
                    .map_err(|e| anyhow!("the stored trial does not parse: {}", e[0]))?;
                let params = communities_of(&spec, params)?;
                let key = study_key::existing(&settings.study_key_file, store).await?;
                let start = DateTime::from_timestamp(spec.schedule.start, 0)
                    .ok_or_else(|| anyhow!("the trial's schedule start is out of range"))?
                    .max(trial.started_at.unwrap_or(trial.created_at));
                // The key first: the server loads the keys when it starts.
                let meta = change(&actor, "the simulator's evaluations and events");
                let sdk = commonlab_server::keys::create_key_because(
                    store,
                    &format!("simulator-{}", Utc::now().timestamp_micros()),
                    Role::Sdk,
                    &meta,
                )
                .await?;
                let clock = Clock::fixed(start);
                let state =
                    commonlab_server::build_state(store.clone(), settings.to_config(key), clock.clone())
                        .await?;
                let server = commonlab_server::start("127.0.0.1:0".parse()?, state)
                    .await
                    .context("cannot start the in-process server")?;
                let attribute = match &spec.unit {
                    Unit::Community { attribute } => attribute.clone(),
                    Unit::User => "community".into(),
                };
                let base = format!("http://{}", server.addr);
                let target = target(&base, &sdk.key, &spec.flag, &attribute, &args);
                let set = move |t: DateTime<Utc>| clock.set(t);
                let result = simulate(params, &args, target, start, ServerClock::Settable(&set)).await;
                let stopped = server.stop().await;
                store
                    .revoke_api_key_by(&sdk.id, Some(&format!("cli:{actor}")), Some("simulation done"), Utc::now())
                    .await?;
                result?;
                stopped?;
                Ok(())
            })
            .await
        }
    }
}

/// The parameter file, or communities of the given sizes with defaults,
/// with the `--effect`s and `--spillover` applied.
fn params(args: &SimulateArgs) -> Result<SimParams> {
    let mut p = match &args.params {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            SimParams::from_json(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        None => SimParams::with_sizes(&args.members),
    };
    for e in &args.effect {
        let (arm, rest) = e.split_once(':').ok_or_else(|| {
            anyhow!("--effect '{e}': expected ARM:EVENT=MULTIPLIER, e.g. on:*=1.5")
        })?;
        let (event, mult) = rest
            .split_once('=')
            .ok_or_else(|| anyhow!("--effect '{e}': expected ARM:EVENT=MULTIPLIER"))?;
        let mult: f64 = mult
            .parse()
            .map_err(|_| anyhow!("--effect '{e}': '{mult}' is not a number"))?;
        p.effects
            .entry(arm.to_string())
            .or_insert_with(ArmEffect::default)
            .rate_multipliers
            .insert(event.to_string(), mult);
    }
    if let Some(s) = args.spillover {
        p.spillover = s;
    }
    p.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(p)
}

/// Names the simulated communities after the trial's own (its design's
/// list, or the `in` list of its eligibility rule when it has one), so
/// that eligibility and schedules apply; more sizes than names is an
/// error.
fn communities_of(spec: &TrialSpec, mut p: SimParams) -> Result<SimParams> {
    let names: Vec<String> = match &spec.design {
        Design::Cluster { communities } | Design::SteppedWedge { communities, .. } => {
            communities.clone()
        }
        _ => commonlab_sim::power::eligible_communities(spec).unwrap_or_default(),
    };
    if names.is_empty() {
        return Ok(p);
    }
    if p.communities.len() > names.len() {
        bail!(
            "{} community sizes for a trial with {} communities ({})",
            p.communities.len(),
            names.len(),
            names.join(", ")
        );
    }
    for (c, name) in p.communities.iter_mut().zip(names) {
        c.name = name;
    }
    Ok(p)
}

fn target(base: &str, sdk_key: &str, flag: &str, attribute: &str, args: &SimulateArgs) -> Target {
    let extra: Map<String, Value> = args
        .context
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    // The platform's own attributes: a member's role, and `lastActiveAt`
    // (Unix seconds) at the visit, which eligibility rules often read.
    let context: ContextFn = Arc::new(move |_, at| {
        let mut m = extra.clone();
        m.insert("lastActiveAt".into(), json!(at.timestamp()));
        m
    });
    Target {
        base_url: base.to_string(),
        sdk_key: sdk_key.to_string(),
        flag: flag.to_string(),
        community_attribute: attribute.to_string(),
        context: Some(context),
        also_flags: Vec::new(),
        trial_arms_only: false,
        vocabulary: None,
        ordered: false,
    }
}

async fn simulate(
    params: SimParams,
    args: &SimulateArgs,
    target: Target,
    start: DateTime<Utc>,
    clock: ServerClock<'_>,
) -> Result<()> {
    let mut sim = Simulation::new(params, args.seed).map_err(|e| anyhow!("{e}"))?;
    let bar = indicatif::ProgressBar::new(u64::from(args.days));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} day {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let began = std::time::Instant::now();
    let mut sent = 0u64;
    let reports = drive::run(&mut sim, &target, start, args.days, clock, |r, _| {
        sent += r.events_sent;
        let rate = sent as f64 / began.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{sent} events, {rate:.0} events/s"));
        bar.inc(1);
    })
    .await?;
    bar.finish_and_clear();
    let mut arms: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reports {
        for (arm, n) in &r.arms {
            *arms.entry(arm.clone()).or_default() += n;
        }
    }
    let stored: u64 = reports.iter().map(|r| r.events_stored).sum();
    let rejected: u64 = reports.iter().map(|r| r.events_rejected).sum();
    let members = sim.members().len();
    outln!(
        "simulated {} days from {} (seed {}): {members} members, {sent} events sent, {stored} stored, {rejected} rejected",
        args.days,
        start.format("%Y-%m-%d"),
        args.seed
    )?;
    for (arm, visits) in arms {
        outln!("  {arm}: {visits} member-days served")?;
    }
    if rejected > 0 {
        bail!("{rejected} simulated events were rejected by the server");
    }
    Ok(())
}
