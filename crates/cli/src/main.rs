//! `commonlab`: the command line, thin over the libraries.
//!
//! Exit codes: 0 success, 1 a user error (one line on standard error),
//! 2 a usage error (from clap). A standard output closed by its reader
//! (`| head`) is not an error: the command exits as it would have
//! (`output`).
//!
//! Layout: `args` (every command and flag), `config` (the settings, in
//! layers), `commands/` (one module per command group), `input` (readers
//! of CSV, NDJSON and JSON), `output` (everything printed), `study_key`,
//! `audit` (who makes a change).

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;
use commands::{
    analyze, demo, events, experiments, flags, keys, loadtest, metrics, power, report, serve,
    simulate, surveys, units,
};
use output::errln;
use std::process::ExitCode;

mod args;
mod audit;
mod commands;
mod config;
mod input;
mod output;
mod study_key;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            errln!("error: {line}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let settings = config::load(&cli)?;
    let actor = cli.actor.as_deref();
    match cli.command {
        Command::Serve(_) => serve::serve(&settings).await,
        Command::Migrate => serve::migrate(&settings).await,
        Command::Keys(cmd) => keys::run(&settings, actor, cmd).await,
        Command::Flags(cmd) => flags::run(&settings, actor, cmd).await,
        Command::Experiments(cmd) => experiments::run(&settings, actor, cmd).await,
        Command::Analyze(args) => analyze::run(&settings, args).await,
        Command::Metrics(cmd) => metrics::run(&settings, cmd).await,
        Command::Units(cmd) => units::run(&settings, actor, cmd).await,
        Command::Events(cmd) => events::run(&settings, cmd).await,
        Command::Demo(args) => demo::run(&settings, actor, args).await,
        Command::Simulate(args) => simulate::run(&settings, actor, args).await,
        Command::Surveys(cmd) => surveys::run(&settings, actor, cmd).await,
        Command::Power(args) => power::run(args).await,
        Command::Loadtest(args) => loadtest::run(args).await,
        Command::Report(args) => report::run(&settings, args).await,
    }
}
