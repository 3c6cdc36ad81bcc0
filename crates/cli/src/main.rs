//! `commonlab`: the command line, thin over the libraries.
//!
//! Exit codes: 0 success, 1 a user error (one line on standard error),
//! 2 a usage error (from clap).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use commonlab_core::auth::Role;
use commonlab_server::service::{self, ChangeMeta};
use commonlab_server::{Clock, Config};
use commonlab_store::Store;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod serving;
use serving::{apply_http_limits, bootstrap_admin_key, warn_if_few_descriptors};

const DEFAULT_DB: &str = "sqlite://commonlab.db";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_STUDY_KEY: &str = "commonlab.study-key";
const DEFAULT_ADMIN_KEY: &str = "commonlab.admin-key";

mod audit;
mod study_key;

use audit::actor;

#[derive(Parser)]
#[command(
    name = "commonlab",
    version,
    about = "Experimentation and A/B evaluation harness for commons-based communities"
)]
struct Cli {
    /// Database URL: sqlite://FILE (the file is created if missing, its
    /// directory is not) or postgres://...
    #[arg(long, env = "COMMONLAB_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Optional TOML config file; default ./commonlab.toml if present. Keys:
    /// database_url, listen, flag_set, poll_interval_ms, body_limit_bytes,
    /// study_key_file, admin_key_file, max_batch_events, consent_scope,
    /// allowed_events, allowed_properties, retention_days,
    /// idle_timeout_secs, header_read_timeout_secs, request_timeout_secs,
    /// max_connections, exposure_cache_bytes (README.md, "Using it";
    /// limits in docs/security.md).
    #[arg(long, env = "COMMONLAB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Who makes a change, for the audit logs (recorded as cli:NAME).
    /// Default: the operating system's user running the command.
    #[arg(long, env = "COMMONLAB_ACTOR", global = true)]
    actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (OFREP, management API); applies migrations first.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage flags directly in the database.
    #[command(subcommand)]
    Flags(FlagsCmd),
    /// Trials as code: validate files, manage the lifecycle, export assignments.
    #[command(subcommand)]
    Experiments(ExperimentsCmd),
    /// Run the statistics engine on a stored trial (--trial) or on data
    /// brought from elsewhere (docs/analyze.md).
    Analyze(AnalyzeArgs),
    /// Metric definitions: check the library, show a metric's SQL and plan.
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// A member's data: erase everything stored about them.
    #[command(subcommand)]
    Units(UnitsCmd),
    /// Telemetry events: import historical data, export stored events.
    #[command(subcommand)]
    Events(EventsCmd),
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Import events from NDJSON (.ndjson/.jsonl), a JSON array (.json) or CSV
    /// (.csv: event_id,unit,community,name,timestamp,properties as a JSON
    /// object). Same validation and idempotency as POST /v1/events; invalid
    /// events are listed with their line and the valid ones stored.
    Import {
        file: PathBuf,
        /// The study key file (as for `serve`).
        #[arg(long, env = "COMMONLAB_STUDY_KEY_FILE")]
        study_key_file: Option<PathBuf>,
        /// Events per transaction.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
    /// Export stored events as NDJSON (units are pseudonyms).
    Export {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        community: Option<String>,
        /// Events at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Events before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// Write to a file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MetricsCmd {
    /// Check a metric library (default experiments/metrics.toml).
    Validate { file: Option<PathBuf> },
    /// Print the SQL that computes a stored trial's metric on this database
    /// (and with --explain its query plan).
    Sql {
        trial: String,
        metric: String,
        #[arg(long)]
        explain: bool,
    },
}

#[derive(Subcommand)]
enum UnitsCmd {
    /// Erase a unit's events, exposures, assignments and consent records in
    /// one transaction, and log the erasure (pseudonymous id, time, counts,
    /// who and why). Running servers forget the unit's cached arm within a
    /// poll interval.
    Erase {
        /// The raw id the platform knows (pseudonymised with the study key).
        id: String,
        /// The study key file (as for `serve`).
        #[arg(long, env = "COMMONLAB_STUDY_KEY_FILE")]
        study_key_file: Option<PathBuf>,
        /// Why (recorded in the erasure log with who erased).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Args)]
struct AnalyzeArgs {
    /// JSON per-arm sufficient statistics, or with --design a CSV of rows
    /// (columns cluster, value, and arm or treated; optional period,
    /// covariate, stratum). `-` reads standard input.
    #[arg(long, required_unless_present = "trial", conflicts_with = "trial")]
    input: Option<PathBuf>,
    /// Analyse a stored trial: every metric of its locked plan is computed
    /// in the database (docs/metrics.md), then analysed.
    #[arg(long)]
    trial: Option<String>,
    /// With --trial: the RFC 3339 time to analyse at (default now); units
    /// whose metric window ends later are left out of that metric.
    #[arg(long, requires = "trial")]
    as_of: Option<String>,
    /// With --trial: print only the engine's input (the `--input` format),
    /// with where each metric came from.
    #[arg(long, requires = "trial")]
    input_only: bool,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = ["json", "md"])]
    format: String,
    /// Few-community analysis of CSV rows under this randomisation design.
    #[arg(long, value_parser = ["cluster", "stepped_wedge", "blocked", "blocked_users"], conflicts_with = "trial")]
    design: Option<String>,
    /// With --design: the control arm's name in the `arm` column.
    #[arg(long, default_value = "control")]
    control_arm: String,
    /// With --design: seed for sampled randomisations and the wild bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --design: fit `value ~ period FE + treated` without community
    /// fixed effects. Only on request: the default compares each community
    /// with itself (community and period fixed effects) wherever a community
    /// is observed both untreated and treated; without them the estimate
    /// mixes between-community differences into the effect.
    #[arg(long, requires = "design")]
    without_community_effects: bool,
    /// Accepted for old scripts and ignored: community fixed effects are the
    /// default now (a note says so on standard error).
    #[arg(long, conflicts_with = "without_community_effects")]
    cluster_fixed_effects: bool,
}

#[derive(Subcommand)]
enum ExperimentsCmd {
    /// Check trial files (default: every *.toml under experiments/); lists every error.
    Validate {
        paths: Vec<PathBuf>,
        /// Flag file to check flags and arms against (default: experiments/flags.json,
        /// else the database's flag set).
        #[arg(long)]
        flags: Option<PathBuf>,
    },
    /// Store a trial file as a draft.
    Create {
        file: PathBuf,
        #[arg(long)]
        reason: String,
    },
    /// Start a draft: locks its plan, draws its seed, serves its arms.
    Start {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Stop a running trial (it can be resumed).
    Stop {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Resume a stopped trial.
    Resume {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Conclude a running or stopped trial.
    Conclude {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Archive a draft, stopped or concluded trial.
    Archive {
        key: String,
        #[arg(long)]
        reason: String,
    },
    /// Amend a running or stopped trial with a new file (a recorded deviation).
    Amend {
        file: PathBuf,
        #[arg(long)]
        reason: String,
    },
    /// List trials.
    List,
    /// Show a trial: status, lock, events, arm counts.
    Show { key: String },
    /// Export a trial's assignments and exposures as CSV.
    Assignments {
        key: String,
        /// Write to a file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "COMMONLAB_LISTEN")]
    listen: Option<String>,
    /// File holding the study key that pseudonymises units (never stored in
    /// the database, only its fingerprint). Created with a fresh random key
    /// if missing, unless the database already holds pseudonymised data or
    /// another key's fingerprint; every replica needs the same key file.
    #[arg(long, env = "COMMONLAB_STUDY_KEY_FILE")]
    study_key_file: Option<PathBuf>,
    /// Where the first start writes the admin key it creates when standard
    /// output is not a terminal (0600; default ./commonlab.admin-key). On a
    /// terminal the key is shown there instead; it never goes to the log.
    #[arg(long, env = "COMMONLAB_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; the key itself is printed alone on the last line.
    Create {
        #[arg(long, value_parser = ["admin", "researcher", "developer", "sdk"])]
        role: String,
        #[arg(long)]
        name: String,
        /// Why (recorded with the key and who made it).
        #[arg(long)]
        reason: String,
    },
    /// List keys (never their secrets).
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a key by id or name.
    Revoke {
        id_or_name: String,
        /// Why (recorded with the key and who revoked it).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum FlagsCmd {
    /// Replace the flag set with a flagd JSON file.
    Import {
        file: PathBuf,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// Refuse the file on any schema warning.
        #[arg(long)]
        strict: bool,
        /// Take the file's cohort overrides only: drop the stored ones
        /// (by default, overrides of flags still in the file are kept).
        #[arg(long)]
        replace_overrides: bool,
    },
    /// Print the flag set as JSON.
    Export {
        /// `commonlab` (with cohort overrides) or `flagd` (overrides inlined).
        #[arg(long, default_value = "commonlab")]
        format: String,
        /// Write to a file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List flags: key, state, type, default variant.
    List,
    /// Print one flag's definition.
    Get { key: String },
    /// Enable or disable a flag.
    SetState {
        key: String,
        /// enabled or disabled
        state: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    flag_set: Option<String>,
    poll_interval_ms: Option<u64>,
    body_limit_bytes: Option<usize>,
    study_key_file: Option<PathBuf>,
    /// Store events only for units that granted consent for this scope.
    consent_scope: Option<String>,
    /// Event names that may be stored (others are dropped and counted).
    allowed_events: Option<Vec<String>>,
    /// Property keys that may be stored (others are removed and counted).
    allowed_properties: Option<Vec<String>>,
    max_batch_events: Option<usize>,
    /// Delete raw events older than this many days (default: keep them).
    retention_days: Option<u64>,
    admin_key_file: Option<PathBuf>,
    /// Connection limits (docs/security.md).
    idle_timeout_secs: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    exposure_cache_bytes: Option<usize>,
}

fn load_config(path: Option<&Path>) -> Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("commonlab.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default())
        }
        Err(e) => return Err(anyhow!("cannot read config file {}: {e}", path.display())),
    };
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(":{line}")
            })
            .unwrap_or_default();
        anyhow!("{}{at}: {msg}", path.display())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
    }
}

async fn open_store(url: &str) -> Result<Store> {
    Store::connect_and_migrate(url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            commonlab_store::redact_url(url)
        )
    })
}

async fn run(cli: Cli) -> Result<()> {
    let file = load_config(cli.config.as_deref())?;
    let db_url = cli
        .database_url
        .or(file.database_url.clone())
        .unwrap_or_else(|| DEFAULT_DB.into());
    let mut config = Config::default();
    if let Some(s) = &file.flag_set {
        config.flag_set = s.clone();
    }
    if let Some(ms) = file.poll_interval_ms {
        config.poll_interval = std::time::Duration::from_millis(ms.max(10));
    }
    if let Some(b) = file.body_limit_bytes {
        config.body_limit = b;
    }
    if let Some(n) = file.max_batch_events {
        config.max_batch_events = n;
    }
    apply_http_limits(&file, &mut config)?;
    config.consent_scope = file.consent_scope.clone();
    config.retention = file
        .retention_days
        .map(|d| std::time::Duration::from_secs(d * 86_400));
    config.allowed_events = file
        .allowed_events
        .clone()
        .map(|v| std::sync::Arc::new(v.into_iter().collect()));
    config.allowed_properties = file
        .allowed_properties
        .clone()
        .map(|v| std::sync::Arc::new(v.into_iter().collect()));
    match cli.command {
        Command::Serve(args) => {
            let listen = args
                .listen
                .or(file.listen.clone())
                .unwrap_or_else(|| DEFAULT_LISTEN.into());
            let key_file = args
                .study_key_file
                .or(file.study_key_file.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STUDY_KEY));
            let admin_key_file = args
                .admin_key_file
                .or(file.admin_key_file.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ADMIN_KEY));
            serve(&db_url, &listen, &key_file, config, &admin_key_file).await
        }
        Command::Experiments(cmd) => {
            experiments(&db_url, &config.flag_set, cli.actor.as_deref(), cmd).await
        }
        Command::Analyze(args) => match args.trial.clone() {
            Some(key) => analyze_trial(&db_url, &key, &args).await,
            None => analyze(args),
        },
        Command::Metrics(cmd) => metrics_cmd(&db_url, cmd).await,
        Command::Events(cmd) => events(&db_url, file.study_key_file.clone(), config, cmd).await,
        Command::Units(UnitsCmd::Erase {
            id,
            study_key_file,
            reason,
        }) => {
            let key_file = study_key_file
                .or(file.study_key_file.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STUDY_KEY));
            let actor = actor(cli.actor.as_deref())?;
            let store = open_store(&db_url).await?;
            let key = study_key::existing(&key_file, &store).await?;
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: chrono::Utc::now(),
            };
            let erased = commonlab_server::units::erase_unit(&store, &key, &id, &meta).await;
            store.close().await;
            let (unit, counts) = erased?;
            println!(
                "erased unit {unit}: {} events, {} exposures, {} assignments, {} consent records (logged)",
                counts.events, counts.exposures, counts.assignments, counts.consents
            );
            Ok(())
        }
        Command::Migrate => {
            open_store(&db_url).await?;
            println!(
                "migrations applied to {}",
                commonlab_store::redact_url(&db_url)
            );
            Ok(())
        }
        Command::Keys(cmd) => keys(&db_url, cli.actor.as_deref(), cmd).await,
        Command::Flags(cmd) => flags(&db_url, &config.flag_set, cli.actor.as_deref(), cmd).await,
    }
}

async fn serve(
    db_url: &str,
    listen: &str,
    key_file: &Path,
    mut config: Config,
    admin_key_file: &Path,
) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COMMONLAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow!("--listen: '{listen}' is not an address like 127.0.0.1:8080"))?;
    warn_if_few_descriptors(config.max_connections);
    let store = open_store(db_url).await?;
    config.study_key = std::sync::Arc::new(study_key::for_serve(key_file, &store).await?);
    if store.active_api_keys().await?.is_empty() {
        bootstrap_admin_key(&store, admin_key_file).await;
    }
    let state = commonlab_server::build_state(store.clone(), config, Clock::System).await?;
    let running = commonlab_server::start(addr, state)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        addr = %running.addr,
        database = %commonlab_store::redact_url(db_url),
        "commonlab serving"
    );
    let stop = running.shutdown_handle();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop.send(true);
    });
    let served = running.wait().await;
    signals.abort();
    let _ = signals.await;
    served?;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn keys(db_url: &str, given_actor: Option<&str>, cmd: KeysCmd) -> Result<()> {
    let store = open_store(db_url).await?;
    match cmd {
        KeysCmd::Create { role, name, reason } => {
            let role: Role = role.parse()?;
            let actor = actor(given_actor)?;
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: chrono::Utc::now(),
            };
            let k = commonlab_server::keys::create_key_because(&store, &name, role, &meta).await?;
            println!(
                "Created {} key '{}' (id {}). It is shown only now:",
                k.role, k.name, k.id
            );
            println!("{}", k.key);
        }
        KeysCmd::List { all } => {
            let list = store.list_api_keys(all).await?;
            println!(
                "{:<14} {:<11} {:<26} {:<10} NAME",
                "ID", "ROLE", "CREATED", "STATUS"
            );
            for k in list {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<14} {:<11} {:<26} {:<10} {}",
                    k.id,
                    k.role,
                    k.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    status,
                    k.name
                );
            }
        }
        KeysCmd::Revoke { id_or_name, reason } => {
            if reason.trim().is_empty() {
                return Err(commonlab_server::Error::ReasonRequired.into());
            }
            let actor = actor(given_actor)?;
            let k = store
                .revoke_api_key_by(&id_or_name, Some(&actor), Some(&reason), chrono::Utc::now())
                .await?;
            println!("revoked key '{}' ({})", k.name, k.id);
        }
    }
    store.close().await;
    Ok(())
}

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

async fn flags(db_url: &str, set: &str, given_actor: Option<&str>, cmd: FlagsCmd) -> Result<()> {
    let store = open_store(db_url).await?;
    let who = || actor(given_actor);
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
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: chrono::Utc::now(),
            };
            let out = service::import(&store, set, &source, &meta, None, strict, replace_overrides)
                .await
                .map_err(|e| service_error(e, Some(&file)))?;
            for w in &out.warnings {
                eprintln!("warning: {}: {}: {}", file.display(), w.pointer, w.message);
            }
            for k in &out.overrides.kept {
                println!("kept cohort override '{}' of flag '{}'", k.cohort, k.flag);
            }
            for d in &out.overrides.dropped {
                println!(
                    "dropped cohort override '{}' of flag '{}': {}",
                    d.cohort, d.flag, d.reason
                );
            }
            for t in &out.deviations {
                println!("recorded as a deviation in running trial '{t}' (its flag changed)");
            }
            println!(
                "imported {} flags from {} as revision {} ({} warnings)",
                out.flags,
                file.display(),
                out.revision,
                out.warnings.len()
            );
        }
        FlagsCmd::Export { format, output } => {
            let (_, doc) = service::head(&store, set).await?;
            let doc = match format.as_str() {
                "commonlab" => doc,
                "flagd" => {
                    let (fs, _) = commonlab_core::flags::FlagSet::from_value(
                        &doc,
                        commonlab_core::flags::LoadMode::Lenient,
                    )?;
                    fs.to_flagd_document()
                }
                other => bail!("--format: unknown format '{other}' (use commonlab or flagd)"),
            };
            let text = serde_json::to_string_pretty(&doc)?;
            match output {
                Some(path) => std::fs::write(&path, text + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{text}"),
            }
        }
        FlagsCmd::List => {
            let (rev, doc) = service::head(&store, set).await?;
            let (fs, _) = commonlab_core::flags::FlagSet::from_value(
                &doc,
                commonlab_core::flags::LoadMode::Lenient,
            )?;
            println!("flag set '{set}' at revision {rev}: {} flags", fs.len());
            for key in fs.keys() {
                if let Some(f) = fs.get(key) {
                    println!(
                        "{:<40} {:<9} {:<8} {}",
                        key,
                        format!("{:?}", f.state()).to_uppercase(),
                        format!("{:?}", f.value_type()).to_lowercase(),
                        f.default_variant().unwrap_or("-")
                    );
                }
            }
        }
        FlagsCmd::Get { key } => {
            let (_, doc) = service::head(&store, set).await?;
            let flag = doc
                .get("flags")
                .and_then(|f| f.get(&key))
                .ok_or_else(|| anyhow!("flag '{key}' not found"))?;
            println!("{}", serde_json::to_string_pretty(flag)?);
        }
        FlagsCmd::SetState { key, state, reason } => {
            let enabled = match state.to_ascii_lowercase().as_str() {
                "enabled" | "enable" | "on" => true,
                "disabled" | "disable" | "off" => false,
                other => bail!("state must be 'enabled' or 'disabled', not '{other}'"),
            };
            let actor = who()?;
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: chrono::Utc::now(),
            };
            let change = service::set_state(&store, set, &key, enabled, &meta, None).await?;
            println!(
                "flag '{key}' is now {} (revision {})",
                if enabled { "enabled" } else { "disabled" },
                change.revision
            );
            for t in &change.deviations {
                println!(
                    "recorded as a deviation in running trial '{t}', which controls this flag"
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

fn toml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from("experiments")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
                .with_context(|| format!("cannot read {}", root.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if root.exists() {
            files.push(root);
        } else {
            bail!("{}: no such file or directory", root.display());
        }
    }
    Ok(files)
}

async fn experiments(
    db_url: &str,
    set: &str,
    given_actor: Option<&str>,
    cmd: ExperimentsCmd,
) -> Result<()> {
    use commonlab_server::trial_service::{self, Move};
    if let ExperimentsCmd::Validate { paths, flags } = &cmd {
        return validate_trials(db_url, set, paths, flags.as_deref()).await;
    }
    let store = open_store(db_url).await?;
    let actor = match &cmd {
        ExperimentsCmd::List | ExperimentsCmd::Show { .. } | ExperimentsCmd::Assignments { .. } => {
            String::new()
        }
        _ => actor(given_actor)?,
    };
    let now = chrono::Utc::now();
    let file_error = |e: commonlab_server::Error| match e {
        commonlab_server::Error::Invalid { message, .. } => anyhow!(message),
        other => anyhow!(other),
    };
    match cmd {
        ExperimentsCmd::Validate { .. } => unreachable!("handled above"),
        ExperimentsCmd::Create { file, reason } => {
            let source = trial_source(&file)?;
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: now,
            };
            let t = trial_service::create(&store, set, &source, &file.display().to_string(), &meta)
                .await
                .map_err(file_error)?;
            println!(
                "created trial '{}' as a draft (spec {})",
                t.key,
                &t.spec_hash[..12]
            );
        }
        ExperimentsCmd::Start { key, reason } => {
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: now,
            };
            let t = trial_service::start(&store, set, &key, &meta).await?;
            println!(
                "started trial '{}': plan locked (spec {}), seed {}",
                t.key,
                &t.spec_hash[..12],
                t.seed.unwrap_or_default()
            );
            if let Some(a) = &t.allocation {
                println!("allocation: {a}");
            }
        }
        ExperimentsCmd::Stop { key, reason } => {
            move_trial(&store, &key, Move::Stop, &actor, &reason).await?
        }
        ExperimentsCmd::Resume { key, reason } => {
            move_trial(&store, &key, Move::Resume, &actor, &reason).await?
        }
        ExperimentsCmd::Conclude { key, reason } => {
            move_trial(&store, &key, Move::Conclude, &actor, &reason).await?
        }
        ExperimentsCmd::Archive { key, reason } => {
            move_trial(&store, &key, Move::Archive, &actor, &reason).await?
        }
        ExperimentsCmd::Amend { file, reason } => {
            let source = trial_source(&file)?;
            let spec =
                commonlab_core::experiments::parse_trial(&source, &file.display().to_string())
                    .map_err(|errs| {
                        anyhow!(errs
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; "))
                    })?;
            let meta = ChangeMeta {
                actor: &actor,
                reason: &reason,
                at: now,
            };
            let (t, changed) = trial_service::amend(
                &store,
                set,
                &spec.key,
                &source,
                &file.display().to_string(),
                &meta,
            )
            .await
            .map_err(file_error)?;
            println!("amended trial '{}' to version {}", t.key, t.version);
            if !changed.is_empty() {
                println!(
                    "locked fields changed (reported as a deviation): {}",
                    changed.join(", ")
                );
            }
        }
        ExperimentsCmd::List => {
            println!(
                "{:<32} {:<10} {:<8} {:<24} FLAG",
                "KEY", "STATUS", "VERSION", "STARTED"
            );
            for t in store.list_trials(None).await? {
                println!(
                    "{:<32} {:<10} {:<8} {:<24} {}",
                    t.key,
                    t.status.as_str(),
                    t.version,
                    t.started_at
                        .map(|s| s.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.flag_key
                );
            }
        }
        ExperimentsCmd::Show { key } => {
            let t = store
                .get_trial(&key)
                .await?
                .ok_or_else(|| anyhow!("trial '{key}' not found"))?;
            println!(
                "trial {} ({}), version {}, flag {}",
                t.key,
                t.status.as_str(),
                t.version,
                t.flag_key
            );
            println!("spec hash {}", t.spec_hash);
            if let Some(seed) = t.seed {
                println!("seed {seed}");
            }
            if let Some(a) = &t.allocation {
                println!("allocation {a}");
            }
            for (arm, assigned, exposed) in store.arm_counts(t.id).await? {
                println!("arm {arm}: {assigned} assigned, {exposed} exposed");
            }
            let events = store.trial_events(&key).await?;
            let deviations = events
                .iter()
                .filter(|e| e.action == "deviation" || e.action == "amend")
                .count();
            if deviations > 0 {
                println!(
                    "deviations from the plan: {deviations} (amendments, and changes to the flag while running; listed below)"
                );
            }
            for e in events {
                println!(
                    "{} {} by {}: {}",
                    e.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    e.action,
                    e.actor,
                    e.reason
                );
            }
        }
        ExperimentsCmd::Assignments { key, output } => {
            let n = match output {
                Some(path) => {
                    let f = std::fs::File::create(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    trial_service::export_csv(&store, &key, std::io::BufWriter::new(f)).await?
                }
                None => trial_service::export_csv(&store, &key, std::io::stdout().lock()).await?,
            };
            eprintln!("{n} assignments exported");
        }
    }
    store.close().await;
    Ok(())
}

async fn move_trial(
    store: &Store,
    key: &str,
    mv: commonlab_server::trial_service::Move,
    actor: &str,
    reason: &str,
) -> Result<()> {
    let meta = ChangeMeta {
        actor,
        reason,
        at: chrono::Utc::now(),
    };
    let t = commonlab_server::trial_service::transition(store, key, mv, &meta).await?;
    println!("trial '{}' is now {}", t.key, t.status.as_str());
    Ok(())
}

/// Validates trial files offline: every error of every file, then exit 1
/// if there was any.
async fn validate_trials(
    db_url: &str,
    set: &str,
    paths: &[PathBuf],
    flags: Option<&Path>,
) -> Result<()> {
    use commonlab_core::flags::{FlagSet, LoadMode};
    let default_flags = PathBuf::from("experiments/flags.json");
    let flag_file = flags
        .map(Path::to_path_buf)
        .or_else(|| default_flags.exists().then_some(default_flags));
    let (flag_set, against) = match &flag_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (fs, _) = FlagSet::from_json_str(&text, LoadMode::Lenient)
                .map_err(|e| anyhow!("{}:{e}", path.display()))?;
            (fs, path.display().to_string())
        }
        None => {
            let store = open_store(db_url).await?;
            let (_, doc) = service::head(&store, set).await?;
            store.close().await;
            let (fs, _) = FlagSet::from_value(&doc, LoadMode::Lenient)?;
            (fs, format!("the flag set in {db_url}"))
        }
    };
    let files = toml_files(paths)?;
    if files.is_empty() {
        bail!("no trial files (*.toml) found");
    }
    let mut errors = 0usize;
    let (libraries, files): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.file_name().is_some_and(|n| n == "metrics.toml"));
    for lib in &libraries {
        match load_library(lib) {
            Ok(l) => println!(
                "ok  {} (metric library, {} metrics)",
                lib.display(),
                l.metrics.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                errors += e.to_string().lines().count();
            }
        }
    }
    for file in &files {
        let source = match trial_source(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                errors += e.to_string().lines().count();
                continue;
            }
        };
        match commonlab_server::trial_service::check(
            &source,
            &file.display().to_string(),
            &flag_set,
        ) {
            Ok(spec) => println!(
                "ok  {} (trial {}, {} design)",
                file.display(),
                spec.key,
                spec.design.kind()
            ),
            Err(errs) => {
                for e in &errs {
                    eprintln!("{e}");
                }
                errors += errs.len();
            }
        }
    }
    if errors > 0 {
        bail!(
            "{errors} error(s) in {} file(s) (flags checked against {against})",
            files.len()
        );
    }
    println!(
        "{} trial file(s) valid (flags checked against {against})",
        files.len()
    );
    Ok(())
}

fn parse_time(s: &str, what: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| anyhow!("{what}: {s:?} is not an RFC 3339 date-time ({e})"))
}

async fn analyze_trial(db_url: &str, key: &str, args: &AnalyzeArgs) -> Result<()> {
    use commonlab_server::analysis;
    let as_of = match &args.as_of {
        Some(s) => parse_time(s, "--as-of")?,
        None => chrono::Utc::now(),
    };
    let store = open_store(db_url).await?;
    let result = if args.input_only {
        let input = analysis::analysis_input(&store, key, as_of).await;
        store.close().await;
        let input = input?;
        println!("{}", serde_json::to_string_pretty(&input)?);
        return Ok(());
    } else {
        analysis::analyse(&store, key, as_of).await
    };
    store.close().await;
    let result = result?;
    match args.format.as_str() {
        "md" => {
            println!(
                "# Trial {} (plan {}), as of {}\n",
                result.input.trial,
                &result.input.spec_hash[..12],
                result.input.as_of.to_rfc3339()
            );
            for m in &result.input.metrics {
                let units: Vec<String> = m.units.iter().map(|(a, n)| format!("{a} {n}")).collect();
                println!(
                    "- {} ({}, {}, {}): units {}{}",
                    m.name,
                    m.role,
                    m.kind,
                    m.direction,
                    units.join(", "),
                    if m.stratified {
                        "; post-stratified by community"
                    } else {
                        ""
                    }
                );
            }
            println!();
            print!("{}", commonlab_stats::analyze::to_markdown(&result.output));
        }
        _ => println!("{}", serde_json::to_string_pretty(&result)?),
    }
    Ok(())
}

/// The metric library beside a trial file: `metrics.toml` in its directory.
fn library_beside(file: &Path) -> Result<Option<commonlab_core::experiments::MetricLibrary>> {
    let path = file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("metrics.toml");
    if !path.exists() {
        return Ok(None);
    }
    load_library(&path).map(Some)
}

fn load_library(path: &Path) -> Result<commonlab_core::experiments::MetricLibrary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    commonlab_core::experiments::parse_metric_library(&text, &path.display().to_string())
        .map_err(|errs| anyhow!(join_errors(&errs)))
}

fn join_errors(errs: &[commonlab_core::experiments::SpecError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A trial file's text with its metric references inlined from the
/// library beside it (unchanged when it has none).
fn trial_source(file: &Path) -> Result<String> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match library_beside(file)? {
        Some(lib) => commonlab_core::experiments::inline_metric_refs(
            &source,
            &file.display().to_string(),
            &lib,
        )
        .map_err(|errs| anyhow!(join_errors(&errs))),
        None => Ok(source),
    }
}

async fn metrics_cmd(db_url: &str, cmd: MetricsCmd) -> Result<()> {
    match cmd {
        MetricsCmd::Validate { file } => {
            let path = file.unwrap_or_else(|| PathBuf::from("experiments/metrics.toml"));
            let lib = load_library(&path)?;
            println!(
                "ok  {} ({} metrics: {})",
                path.display(),
                lib.metrics.len(),
                lib.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        MetricsCmd::Sql {
            trial,
            metric,
            explain,
        } => {
            let store = open_store(db_url).await?;
            let record = store
                .get_trial(&trial)
                .await?
                .ok_or_else(|| anyhow!("trial '{trial}' not found"))?;
            let spec = commonlab_core::experiments::parse_trial(
                &record.spec_source,
                &format!("trial {trial}"),
            )
            .map_err(|errs| anyhow!(join_errors(&errs)))?;
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
            println!("-- ?1/$1 = trial id {}, ?2/$2 = as-of time", record.id);
            println!("{};", store.metric_sql(m));
            if explain {
                for line in store.metric_plan(record.id, m, chrono::Utc::now()).await? {
                    println!("-- {line}");
                }
            }
            store.close().await;
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn analyze(args: AnalyzeArgs) -> Result<()> {
    use commonlab_stats::{analyze as sufficient, rows};
    let path = args
        .input
        .as_deref()
        .ok_or_else(|| anyhow!("--input or --trial is required"))?;
    let text = read_input(path)?;
    let name = path.display().to_string();
    match &args.design {
        None => {
            let input = sufficient::parse_input(&text).map_err(|e| anyhow!("{name}: {e}"))?;
            let out = sufficient::analyze(&input);
            match args.format.as_str() {
                "md" => print!("{}", sufficient::to_markdown(&out)),
                _ => println!("{}", serde_json::to_string_pretty(&out)?),
            }
        }
        Some(design) => {
            if args.cluster_fixed_effects {
                eprintln!(
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
                    control_arm: args.control_arm.clone(),
                    community_effects: args
                        .without_community_effects
                        .then_some(rows::CommunityEffects::None),
                    seed: args.seed,
                    ..serde_json::from_value(serde_json::json!({"kind": design}))?
                },
            };
            let out = rows::analyze_rows(&input).map_err(|e| anyhow!("{name}: {e}"))?;
            match args.format.as_str() {
                "md" => print!("{}", rows_markdown(&out)?),
                _ => println!("{}", serde_json::to_string_pretty(&out)?),
            }
        }
    }
    Ok(())
}

/// A plain Markdown rendering of the few-community result: its JSON, fenced.
fn rows_markdown(out: &commonlab_stats::rows::RowsOutput) -> Result<String> {
    Ok(format!(
        "# Few-community analysis\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(out)?
    ))
}

/// Reads CSV rows with a header; errors name the file, line and column.
fn read_rows(text: &str, file: &str) -> Result<Vec<commonlab_stats::rows::Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: cannot read the header line"))?
        .clone();
    let known = [
        "cluster",
        "period",
        "arm",
        "treated",
        "value",
        "covariate",
        "stratum",
    ];
    for h in headers.iter() {
        if !known.contains(&h) {
            bail!(
                "{file}:1: unknown column '{h}' (expected {})",
                known.join(", ")
            );
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(cluster) = col("cluster").filter(|_| col("value").is_some()) else {
        bail!("{file}:1: the columns 'cluster' and 'value' are required");
    };
    if col("arm").is_none() && col("treated").is_none() {
        bail!("{file}:1: one of the columns 'arm' or 'treated' is required");
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{file}:{line}: not a valid CSV record"))?;
        let get = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|s| !s.is_empty());
        let num = |name: &str| -> Result<Option<f64>> {
            match get(col(name)) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(Some)
                    .ok_or_else(|| {
                        anyhow!("{file}:{line}: column '{name}': '{s}' is not a finite number")
                    }),
            }
        };
        let value =
            num("value")?.ok_or_else(|| anyhow!("{file}:{line}: column 'value' is empty"))?;
        let period =
            match get(col("period")) {
                None => None,
                Some(s) => Some(s.parse::<i64>().map_err(|_| {
                    anyhow!("{file}:{line}: column 'period': '{s}' is not an integer")
                })?),
            };
        let treated = match get(col("treated")) {
            None => None,
            Some("1" | "true" | "TRUE" | "True") => Some(true),
            Some("0" | "false" | "FALSE" | "False") => Some(false),
            Some(s) => bail!("{file}:{line}: column 'treated': '{s}' is not 0/1 or true/false"),
        };
        let cluster_name = get(Some(cluster))
            .ok_or_else(|| anyhow!("{file}:{line}: column 'cluster' is empty"))?;
        rows.push(commonlab_stats::rows::Row {
            cluster: cluster_name.to_string(),
            period,
            arm: get(col("arm")).map(str::to_string),
            treated,
            value,
            covariate: num("covariate")?,
            stratum: get(col("stratum")).map(str::to_string),
        });
    }
    if rows.is_empty() {
        bail!("{file}: no data rows");
    }
    Ok(rows)
}

/// Reads the events of a file as (line, JSON value) pairs.
fn read_events(path: &Path, text: &str) -> Result<Vec<(usize, serde_json::Value)>> {
    let name = path.display();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .with_context(|| format!("{name}: cannot read the header line"))?
                .clone();
            let mut out = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let line = i + 2;
                let record =
                    record.with_context(|| format!("{name}:{line}: not a valid CSV record"))?;
                let mut obj = serde_json::Map::new();
                for (h, v) in headers.iter().zip(record.iter()) {
                    if v.is_empty() {
                        continue;
                    }
                    let value = if h == "properties" {
                        serde_json::from_str(v).map_err(|e| {
                            anyhow!("{name}:{line}: column 'properties': not a JSON object ({e})")
                        })?
                    } else {
                        serde_json::Value::String(v.to_string())
                    };
                    obj.insert(h.to_string(), value);
                }
                out.push((line, serde_json::Value::Object(obj)));
            }
            Ok(out)
        }
        "json" => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| anyhow!("{name}:{}:{}: not JSON: {e}", e.line(), e.column()))?;
            match v {
                serde_json::Value::Array(items) => Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, v))
                    .collect()),
                _ => bail!("{name}: expected a JSON array of events"),
            }
        }
        _ => {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v = serde_json::from_str(line)
                    .map_err(|e| anyhow!("{name}:{}: not JSON: {e}", i + 1))?;
                out.push((i + 1, v));
            }
            Ok(out)
        }
    }
}

async fn events(
    db_url: &str,
    config_key: Option<PathBuf>,
    mut config: Config,
    cmd: EventsCmd,
) -> Result<()> {
    let store = open_store(db_url).await?;
    match cmd {
        EventsCmd::Import {
            file,
            study_key_file,
            batch,
        } => {
            let key_file = study_key_file
                .or(config_key)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STUDY_KEY));
            config.study_key = std::sync::Arc::new(study_key::existing(&key_file, &store).await?);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let items = read_events(&file, &text)?;
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
                    &store,
                    &config,
                    chunk.iter().map(|(line, v)| (*line, v)),
                    now,
                )
                .await?;
                for r in &admitted.rejected {
                    rejected += 1;
                    bar.suspend(|| {
                        eprintln!("{}:{}: {}: {}", file.display(), r.index, r.field, r.reason)
                    });
                }
                dropped.not_allowed += admitted.dropped.not_allowed;
                dropped.no_consent += admitted.dropped.no_consent;
                dropped.properties_removed += admitted.dropped.properties_removed;
                if !admitted.events.is_empty() {
                    let out = store.insert_events(&admitted.events, now).await?;
                    stored += out.inserted;
                    duplicates += out.duplicates.len();
                    // Refused by the database (a constraint): named like
                    // invalid events, by their line.
                    for r in &out.refused {
                        rejected += 1;
                        let line = admitted.origin[r.index];
                        bar.suspend(|| {
                            eprintln!(
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
            println!(
                "{} events read: {stored} stored, {duplicates} already stored, {rejected} rejected, {} not on the allow-list, {} without consent ({} properties removed)",
                items.len(),
                dropped.not_allowed,
                dropped.no_consent,
                dropped.properties_removed
            );
            if rejected > 0 {
                bail!("{rejected} event(s) rejected (listed above); the valid ones were stored");
            }
        }
        EventsCmd::Export {
            name,
            community,
            from,
            to,
            output,
        } => {
            let time =
                |s: Option<String>, flag: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
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
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot write {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut after = None;
            let mut n = 0u64;
            loop {
                let page = store.export_events(&filter, after.as_ref(), 5000).await?;
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
            out.flush()?;
            eprintln!("{n} events exported");
        }
    }
    store.close().await;
    Ok(())
}
