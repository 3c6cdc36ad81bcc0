//! The command line: every command, argument and flag (clap).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "commonlab",
    version,
    about = "Experimentation and A/B evaluation harness for commons-based communities"
)]
pub struct Cli {
    /// Database URL: sqlite://FILE (the file is created if missing, its
    /// directory is not) or postgres://...
    #[arg(
        long,
        env = "COMMONLAB_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Optional TOML config file; default ./commonlab.toml if present. Keys:
    /// database_url, listen, flag_set, poll_interval_ms, body_limit_bytes,
    /// max_batch_events, study_key_file, admin_key_file, consent_scope,
    /// allowed_events, allowed_properties, retention_days,
    /// idle_timeout_secs, header_read_timeout_secs, request_timeout_secs,
    /// max_connections, exposure_cache_bytes, log_format, access_log,
    /// hsts_max_age_secs, ofrep_key_per_second, ofrep_ip_per_second,
    /// ofrep_max_tracked_ips; each also as an environment
    /// variable COMMONLAB_KEY (docs/configuration.md: defaults, order).
    #[arg(long, env = "COMMONLAB_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Who makes a change, for the audit logs (recorded as cli:NAME).
    /// Default: the operating system's user running the command.
    #[arg(long, env = "COMMONLAB_ACTOR", global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Rehearse a running trial with simulated communities, through the
    /// real server (OFREP evaluations and POST /v1/events).
    Simulate(SimulateArgs),
}

#[derive(Args)]
pub struct SimulateArgs {
    /// The trial to rehearse (stored and running; with --server, used only
    /// in the summary).
    #[arg(long)]
    pub experiment: String,
    /// Members per community at day 0, e.g. 50,120,300,800; the communities
    /// take the trial's names (its design's or its eligibility rule's list).
    #[arg(long, value_delimiter = ',', default_values_t = vec![50u32, 120, 300, 800])]
    pub members: Vec<u32>,
    /// Simulated days.
    #[arg(long, default_value_t = 42)]
    pub days: u32,
    /// Seed of the simulation (same seed, same members and events).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A parameter file in the WP2 format (docs/simulator.md) instead of
    /// --members.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// An arm's effect, ARM:EVENT=MULTIPLIER (EVENT `*` for every
    /// contribution event); repeatable.
    #[arg(long)]
    pub effect: Vec<String>,
    /// Share of a treated member's effect that reaches untreated members of
    /// the same community (0 to 1).
    #[arg(long)]
    pub spillover: Option<f64>,
    /// An extra evaluation-context attribute, KEY=VALUE (e.g. role=member);
    /// repeatable. `lastActiveAt` is always sent (the visit's time).
    #[arg(long)]
    pub context: Vec<String>,
    /// Drive this running server instead of starting one in this process
    /// (its clock is not moved: the simulated days end now).
    #[arg(long)]
    pub server: Option<String>,
    /// An sdk key of --server.
    #[arg(long, env = "COMMONLAB_SDK_KEY", hide_env_values = true)]
    pub sdk_key: Option<String>,
    /// The trial's flag on --server.
    #[arg(long)]
    pub flag: Option<String>,
}

#[derive(Subcommand)]
pub enum EventsCmd {
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
pub enum MetricsCmd {
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
pub enum UnitsCmd {
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
pub struct AnalyzeArgs {
    /// JSON per-arm sufficient statistics, or with --design a CSV of rows
    /// (columns cluster, value, and arm or treated; optional period,
    /// covariate, stratum). `-` reads standard input.
    #[arg(long, required_unless_present = "trial", conflicts_with = "trial")]
    pub input: Option<PathBuf>,
    /// Analyse a stored trial: every metric of its locked plan is computed
    /// in the database (docs/metrics.md), then analysed.
    #[arg(long)]
    pub trial: Option<String>,
    /// With --trial: the RFC 3339 time to analyse at (default now); units
    /// whose metric window ends later are left out of that metric.
    #[arg(long, requires = "trial")]
    pub as_of: Option<String>,
    /// With --trial: print only the engine's input (the `--input` format),
    /// with where each metric came from.
    #[arg(long, requires = "trial")]
    pub input_only: bool,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = ["json", "md"])]
    pub format: String,
    /// Few-community analysis of CSV rows under this randomisation design.
    #[arg(long, value_parser = ["cluster", "stepped_wedge", "blocked", "blocked_users"], conflicts_with = "trial")]
    pub design: Option<String>,
    /// With --design: the control arm's name in the `arm` column.
    #[arg(long, default_value = "control")]
    pub control_arm: String,
    /// With --design: seed for sampled randomisations and the wild bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// With --design: fit `value ~ period FE + treated` without community
    /// fixed effects. Only on request: the default compares each community
    /// with itself (community and period fixed effects) wherever a community
    /// is observed both untreated and treated; without them the estimate
    /// mixes between-community differences into the effect.
    #[arg(long, requires = "design")]
    pub without_community_effects: bool,
    /// Accepted for old scripts and ignored: community fixed effects are the
    /// default now (a note says so on standard error).
    #[arg(long, conflicts_with = "without_community_effects")]
    pub cluster_fixed_effects: bool,
}

#[derive(Subcommand)]
pub enum ExperimentsCmd {
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
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "COMMONLAB_LISTEN")]
    pub listen: Option<String>,
    /// File holding the study key that pseudonymises units (never stored in
    /// the database, only its fingerprint). Created with a fresh random key
    /// if missing, unless the database already holds pseudonymised data or
    /// another key's fingerprint; every replica needs the same key file.
    #[arg(long, env = "COMMONLAB_STUDY_KEY_FILE")]
    pub study_key_file: Option<PathBuf>,
    /// Where the first start writes the admin key it creates when standard
    /// output is not a terminal (0600; default ./commonlab.admin-key). On a
    /// terminal the key is shown there instead; it never goes to the log.
    #[arg(long, env = "COMMONLAB_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum KeysCmd {
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
pub enum FlagsCmd {
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
