//! `demo`: the end-to-end demo on a fresh checkout. A new SQLite database
//! with its own study key in a temporary (or named) folder; the flags, the
//! trial files and the survey instruments loaded; both example trials
//! started at their schedule with a simulated clock and simulated through
//! an in-process server (one population takes part in both: each visitor
//! evaluates both flags over OFREP, events go through `POST /v1/events`;
//! survey waves are answered through the store's response API); both
//! trials concluded (forced, as a recorded deviation, when fewer days than
//! their data need were simulated); both reports written by the report
//! crate; then everything served until Ctrl-C.

mod serve;
mod surveys;
mod world;

use super::experiments::files::trial_source;
use crate::args::DemoArgs;
use crate::audit::actor;
use crate::output::outln;
use crate::study_key;
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, Utc};
use commonlab_core::auth::Role;
use commonlab_core::experiments::{parse_trial, Completion, TrialSpec};
use commonlab_server::service::{self as flag_service, ChangeMeta};
use commonlab_server::settings::Settings;
use commonlab_server::{trial_service, Clock};
use commonlab_sim::drive::{self, ContextFn, ServerClock, Target};
use commonlab_sim::Simulation;
use commonlab_store::Store;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The example trials, in the order their flags are evaluated.
const TRIALS: [&str; 2] = ["thanks-button", "value-dashboard"];
const MAX_DAYS: u32 = 400;

pub async fn run(settings: &Settings, given_actor: Option<&str>, args: DemoArgs) -> Result<()> {
    let actor = actor(given_actor)?;
    if args.days == Some(0) || args.days.is_some_and(|d| d > MAX_DAYS) {
        bail!("--days: 1 to {MAX_DAYS}");
    }
    let listen: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        anyhow!(
            "--listen: '{}' is not an address like 127.0.0.1:8080",
            args.listen
        )
    })?;
    let (dir, temp) = folder(args.dir.as_deref())?;
    let db = dir.join("commonlab.db");
    if db.exists() {
        bail!(
            "{} exists: the demo starts from an empty database (remove it, or give another --dir)",
            db.display()
        );
    }
    let url = format!("sqlite://{}", db.display());
    let store = Store::connect_and_migrate(&url)
        .await
        .with_context(|| format!("cannot create the database {}", db.display()))?;
    let result = demo(settings, &actor, &args, &dir, &store, listen).await;
    store.close().await;
    if let Some(t) = temp {
        let path = t.path().display().to_string();
        t.close().with_context(|| format!("cannot remove {path}"))?;
    }
    result
}

/// The named folder (created), or a new temporary one removed on drop.
fn folder(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("commonlab-demo-")
                .tempdir()
                .context("cannot create a temporary folder")?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

fn at<'a>(actor: &'a str, reason: &'a str, t: DateTime<Utc>) -> ChangeMeta<'a> {
    ChangeMeta {
        actor,
        reason,
        at: t,
    }
}

fn time(secs: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0).ok_or_else(|| anyhow!("a schedule time is out of range"))
}

/// When a trial started at `started` has all its data (its last period
/// closed, or its longest metric window for the last units exposed).
fn complete_at(spec: &TrialSpec, started: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match spec.completion(started.timestamp(), None) {
        Completion::Windows { at, .. } | Completion::LastPeriod { at } => time(at),
        Completion::Never { .. } => bail!("trial '{}' can expose nobody", spec.key),
    }
}

async fn demo(
    settings: &Settings,
    actor: &str,
    args: &DemoArgs,
    dir: &Path,
    store: &Store,
    listen: std::net::SocketAddr,
) -> Result<()> {
    let began = std::time::Instant::now();
    let set = settings.flag_set.as_str();
    let key_file = dir.join("commonlab.study-key");
    let key = study_key::for_serve(&key_file, store).await?;
    outln!("database   {}", dir.join("commonlab.db").display())?;
    outln!("study key  {} (this demo's own)", key_file.display())?;

    // Load experiments/ and surveys/ as a researcher would.
    let now = Utc::now();
    let flags_file = args.experiments.join("flags.json");
    let flags = std::fs::read_to_string(&flags_file)
        .with_context(|| format!("cannot read {}", flags_file.display()))?;
    flag_service::import(
        store,
        set,
        &flags,
        &at(actor, "demo: the example flags", now),
        None,
        false,
        false,
    )
    .await
    .map_err(|e| anyhow!("{}: {e}", flags_file.display()))?;
    let mut specs = Vec::new();
    for key in TRIALS {
        let file = args.experiments.join(format!("{key}.toml"));
        let source = trial_source(&file)?;
        let t = trial_service::create(
            store,
            set,
            &source,
            &file.display().to_string(),
            &at(actor, "demo: the example trial", now),
        )
        .await
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        specs.push(parse_trial(&t.spec_source, key).map_err(|e| anyhow!("{}", e[0]))?);
    }
    let mut published = 0;
    for path in toml_files(&args.surveys)? {
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        commonlab_server::surveys::service::publish(
            store,
            &source,
            &path.display().to_string(),
            &at(actor, "demo: the example instruments", now),
        )
        .await
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        published += 1;
    }
    outln!(
        "loaded     {} (flags), {} trials, {published} survey instruments",
        flags_file.display(),
        specs.len()
    )?;

    // Start both trials at the first schedule start: simulated time.
    let t0 = time(
        specs
            .iter()
            .map(|s| s.schedule.start)
            .min()
            .unwrap_or_default(),
    )?;
    // Seeds from --seed, so that a run is reproducible (a real trial's
    // seed is drawn from the OS when it starts).
    for (i, key) in TRIALS.iter().enumerate() {
        let seed = splitmix64(args.seed.wrapping_add(i as u64 + 1));
        trial_service::start_seeded(
            store,
            set,
            key,
            &at(actor, "demo: simulated communities", t0),
            Some(seed),
        )
        .await?;
    }
    let complete = specs
        .iter()
        .map(|s| complete_at(s, t0))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(t0);
    let full_days =
        u32::try_from(((complete - t0).num_seconds() + 86_399) / 86_400).unwrap_or(MAX_DAYS);
    let days = args.days.unwrap_or(full_days).min(MAX_DAYS);
    let t_end = t0 + Duration::days(i64::from(days));
    outln!(
        "simulating {days} days from {} (seed {}): both trials run on a simulated clock",
        t0.format("%Y-%m-%d %H:%M UTC"),
        args.seed
    )?;

    let sdk = commonlab_server::keys::create_key_because(
        store,
        "demo-sdk",
        Role::Sdk,
        &at(actor, "demo: the simulated platform", now),
    )
    .await?;
    let researcher = commonlab_server::keys::create_key_because(
        store,
        "demo-researcher",
        Role::Researcher,
        &at(actor, "demo: for trying the API", now),
    )
    .await?;
    let arms: [Vec<String>; 2] = [
        specs[0].arms.iter().map(|a| a.variant.clone()).collect(),
        specs[1].arms.iter().map(|a| a.variant.clone()).collect(),
    ];
    let params = world::params(&args.members, &args.effect, args.spillover, &arms)?;
    let mut sim = Simulation::new(params, args.seed).map_err(|e| anyhow!("{e}"))?;
    let config = settings.to_config(key.clone());
    let survey_keys = config.survey_keys.clone();

    // Baseline waves before any arm is served.
    let mut waves = Vec::new();
    for trial in TRIALS {
        waves.push(
            surveys::run_wave(
                store,
                &key,
                &survey_keys,
                &mut sim,
                trial,
                "baseline",
                "cbpp-community",
                (t0 - Duration::days(7), t0 + Duration::days(14)),
                t0,
                actor,
            )
            .await?,
        );
    }

    // The simulation, through an in-process server on the simulated clock.
    let clock = Clock::fixed(t0);
    let state = commonlab_server::build_state(store.clone(), config.clone(), clock.clone()).await?;
    let server = commonlab_server::start("127.0.0.1:0".parse()?, state)
        .await
        .context("cannot start the in-process server")?;
    let context: ContextFn = Arc::new(|_, at| {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), json!("member"));
        m.insert("lastActiveAt".into(), json!(at.timestamp()));
        m
    });
    let target = Target {
        base_url: format!("http://{}", server.addr),
        sdk_key: sdk.key.clone(),
        flag: specs[0].flag.clone(),
        community_attribute: "community".into(),
        context: Some(context),
        also_flags: vec![specs[1].flag.clone()],
        trial_arms_only: true,
        vocabulary: Some(Arc::new(world::vocabulary)),
        ordered: true,
    };
    let bar = indicatif::ProgressBar::new(u64::from(days));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} day {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let sim_began = std::time::Instant::now();
    let mut sent = 0u64;
    let set_clock = move |t: DateTime<Utc>| clock.set(t);
    let driven = drive::run(
        &mut sim,
        &target,
        t0,
        days,
        ServerClock::Settable(&set_clock),
        |r, _| {
            sent += r.events_sent;
            let rate = sent as f64 / sim_began.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{sent} events, {rate:.0} events/s"));
            bar.inc(1);
        },
    )
    .await;
    bar.finish_and_clear();
    // Every exposure and event written before the trials are concluded.
    let stopped = server.stop().await;
    let reports = driven?;
    stopped?;
    let stored: u64 = reports.iter().map(|r| r.events_stored).sum();
    let rejected: u64 = reports.iter().map(|r| r.events_rejected).sum();
    let visits: u64 = reports.iter().map(|r| r.visitors).sum();
    outln!(
        "simulated  {} members, {visits} member-days, {sent} events sent, {stored} stored, {rejected} rejected ({:.1} s)",
        sim.members().len(),
        sim_began.elapsed().as_secs_f64()
    )?;
    if rejected > 0 {
        bail!("{rejected} simulated events were rejected by the server");
    }

    // Endline waves of the stepped wedge at the end of the simulation.
    for instrument in ["cbpp-community", "sus"] {
        waves.push(
            surveys::run_wave(
                store,
                &key,
                &survey_keys,
                &mut sim,
                TRIALS[1],
                "endline",
                instrument,
                (t_end - Duration::days(7), t_end + Duration::days(30)),
                t_end,
                actor,
            )
            .await?,
        );
    }
    for w in &waves {
        outln!(
            "survey     {}: {} invited, {} answered",
            w.campaign,
            w.invited,
            w.completed
        )?;
    }

    // Conclude (forced when the data are not complete) and report.
    for key in TRIALS {
        let done = trial_service::conclude(
            store,
            key,
            &at(actor, "demo: the simulation ended", t_end),
            false,
        )
        .await;
        match done {
            Ok(_) => outln!("concluded  {key}: its data are complete")?,
            Err(commonlab_server::Error::DataIncomplete(_)) => {
                trial_service::conclude(
                    store,
                    key,
                    &at(
                        actor,
                        "demo: --days ended the simulation before the trial's data were complete",
                        t_end,
                    ),
                    true,
                )
                .await?;
                outln!("concluded  {key} early (--days {days}): recorded as a deviation in its log and its report")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let written =
        serve::write_reports(store, &args.out, &TRIALS, t_end, &command_line(args)).await?;
    for (trial, files) in &written.paths {
        outln!("report     {trial}: {}", files.display())?;
    }
    outln!("done in {:.1} s", began.elapsed().as_secs_f64())?;
    if args.no_serve {
        return Ok(());
    }
    let link = waves.iter().rev().find_map(|w| w.unanswered_link.clone());
    serve::serve(
        store,
        config,
        t_end,
        listen,
        written,
        link,
        &sdk.key,
        &researcher.key,
    )
    .await
}

/// A trial's seed from the demo's (splitmix64: nearby seeds give unrelated
/// trial seeds).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `.toml` files of `dir`, sorted.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    Ok(out)
}

/// The command as given, for the reports' provenance.
fn command_line(args: &DemoArgs) -> String {
    let mut c = String::from("commonlab demo");
    if let Some(d) = args.days {
        c.push_str(&format!(" --days {d}"));
    }
    c.push_str(&format!(" --seed {}", args.seed));
    let members: Vec<String> = args.members.iter().map(u32::to_string).collect();
    c.push_str(&format!(" --members {}", members.join(",")));
    for e in &args.effect {
        c.push_str(&format!(" --effect {e}"));
    }
    if args.spillover > 0.0 {
        c.push_str(&format!(" --spillover {}", args.spillover));
    }
    c
}
