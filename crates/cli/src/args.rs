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
    /// max_connections, exposure_cache_bytes, survey_rate_per_ip_per_minute,
    /// survey_rate_per_link_per_minute, survey_rate_max_tracked,
    /// survey_min_cell, public_url, log_format, access_log, hsts_max_age_secs,
    /// ofrep_key_per_second, ofrep_ip_per_second, ofrep_max_tracked_ips,
    /// console_session_secs, console_secure_cookie,
    /// console_sessions_per_key, console_sign_in_per_ip_per_minute; each
    /// also as an environment
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
    /// The end-to-end demo on a fresh checkout: a new SQLite database with
    /// experiments/ and surveys/ loaded, both example trials simulated
    /// through the real server, concluded and reported (reports/out/),
    /// then served until Ctrl-C (README, "The demo").
    Demo(DemoArgs),
    /// Rehearse a running trial with simulated communities, through the
    /// real server (OFREP evaluations and POST /v1/events).
    Simulate(SimulateArgs),
    /// A stored trial's validation report (HTML, Markdown, results.json,
    /// decision.json/md), every concluded trial's (--all), or a check
    /// that a report still matches its data (`report verify DIR`);
    /// docs/reports.md.
    Report(ReportArgs),
    /// Simulation-based power of a trial file's design, in memory
    /// (docs/power.md).
    Power(PowerArgs),
    /// Drive a running server open-loop at a target rate with a mix of
    /// OFREP evaluations, event batches and survey page views; report
    /// throughput and latency (docs/benchmarks.md).
    Loadtest(LoadtestArgs),
    /// Survey instruments, campaigns, personal links, results and exports
    /// (docs/surveys.md).
    #[command(subcommand)]
    Surveys(SurveysCmd),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub cmd: Option<ReportCmd>,
    /// The trial's key.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub key: Option<String>,
    /// Every concluded (or archived) trial, each into OUT/KEY/, with an
    /// index page OUT/index.html.
    #[arg(long)]
    pub all: bool,
    /// What to write: html, md, json (results.json), or all (these three
    /// and decision.json, decision.md).
    #[arg(long, default_value = "all", value_parser = ["html", "md", "json", "all"])]
    pub format: String,
    /// Directory to write into (created if missing). Default
    /// reports/out/KEY (reports/out with --all).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// RFC 3339 time to analyse at. Default: the conclusion of a concluded
    /// trial, the stop of a stopped one, else now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Also compute a per-user p-value. Refused for trials that randomise
    /// communities (their members are not independent units).
    #[arg(long)]
    pub per_user: bool,
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Recompute a report from the database (or the concluded snapshot) as
    /// of the time it names, and say whether every number still matches,
    /// naming the first that does not (exit 1 then).
    Verify {
        /// A report directory holding results.json.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum SurveysCmd {
    /// Check instrument files (default: every *.toml under surveys/); every
    /// error with file, line, column and field.
    Validate {
        paths: Vec<PathBuf>,
        /// Also check that every [[surveys]] of these trial files (a file
        /// or a directory, e.g. experiments/) names an instrument among the
        /// files checked.
        #[arg(long)]
        trials: Option<PathBuf>,
    },
    /// Publish an instrument file's version (the same content again is a
    /// no-op; other content under a published version is refused).
    Publish {
        file: PathBuf,
        /// Why (recorded with the version and who published it).
        #[arg(long)]
        reason: String,
    },
    /// List the published instrument versions.
    Instruments,
    /// Create or list campaigns (an instrument version given in a wave).
    #[command(subcommand)]
    Campaign(CampaignCmd),
    /// Invite units to a campaign and print their personal links as CSV
    /// (unit,pseudonym,link); links expire when the campaign closes.
    Links {
        campaign: String,
        /// A file of units: one raw id per line, or CSV lines id,community
        /// (a first line "id" or "id,community" is a header); `-` reads
        /// standard input.
        #[arg(long)]
        units: PathBuf,
        /// Prefix of the links (e.g. https://lab.example.org); without it
        /// the links are paths (/s/TOKEN).
        #[arg(long)]
        base_url: Option<String>,
        /// The study key file (as for `serve`).
        #[arg(long, env = "COMMONLAB_STUDY_KEY_FILE")]
        study_key_file: Option<PathBuf>,
        /// Why (recorded with the invitations).
        #[arg(long)]
        reason: String,
        /// Write to a file instead of standard output (the links are
        /// credentials: the file is made readable by its owner only).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// A campaign's results: response rates by arm and community, the
    /// differential-response test, scale reliability.
    Results {
        campaign: String,
        /// `md` (a summary) or `json` (everything, per respondent too).
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
        /// Include free-text answers (json).
        #[arg(long)]
        include_text: bool,
    },
    /// A trial's survey response across its waves: per wave and arm, each
    /// wave's and the pooled differential-response test.
    Response {
        trial: String,
        /// `md` (a summary) or `json`.
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
    /// Export a campaign's answers (wide or long CSV) or its codebook.
    Export {
        campaign: String,
        #[arg(long, default_value = "wide", value_parser = ["wide", "long", "codebook-json", "codebook-csv"])]
        format: String,
        /// Include free-text answers.
        #[arg(long)]
        include_text: bool,
        /// Write to a file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum CampaignCmd {
    /// Create a campaign of a published instrument version for a wave.
    Create {
        key: String,
        #[arg(long)]
        instrument: String,
        #[arg(long)]
        version: i64,
        /// The trial whose wave this is (its file must name the wave and
        /// give the instrument in it).
        #[arg(long)]
        trial: Option<String>,
        #[arg(long)]
        wave: String,
        /// When it opens (RFC 3339).
        #[arg(long)]
        opens: String,
        /// When it closes and its links expire (RFC 3339).
        #[arg(long)]
        closes: String,
        /// A survey-trigger flag: a flag key (defined in no flag set) that
        /// OFREP answers with invited units' personal links (default: the
        /// trial wave's trigger_flag, if any).
        #[arg(long)]
        trigger_flag: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// List campaigns with their counts.
    List,
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

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's database and study key (created if missing;
    /// must not hold a database already). Default: a temporary folder,
    /// removed when the demo ends.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Simulated days from the first trial's start, 1 to 400. Default: until
    /// both trials' data are complete (171 days); fewer days conclude them
    /// early with --force, recorded as a deviation.
    #[arg(long)]
    pub days: Option<u32>,
    /// Where to serve once the reports are written.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Stop after writing the reports instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// Seed of the simulated communities (same seed, same members and
    /// events; the trials' own seeds are drawn at start as always).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Members per community at day 0 (wiki-a, coop-b, social-c,
    /// hackerspace-d).
    #[arg(long, value_delimiter = ',', default_values_t = vec![50u32, 120, 300, 800])]
    pub members: Vec<u32>,
    /// An arm's effect, ARM:EVENT=MULTIPLIER (EVENT `*` for every
    /// contribution event; ARM an arm of either trial); repeatable. Without
    /// any: heart:*=1.3, banner:*=1.6, on:*=1.3.
    #[arg(long)]
    pub effect: Vec<String>,
    /// Share of a treated member's effect that reaches untreated members of
    /// the same community (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub spillover: f64,
    /// Where the reports are written (one folder per trial).
    #[arg(long, default_value = "reports/out")]
    pub out: PathBuf,
    /// The trial files, flags.json and metrics.toml.
    #[arg(long, default_value = "experiments")]
    pub experiments: PathBuf,
    /// The survey instruments.
    #[arg(long, default_value = "surveys")]
    pub surveys: PathBuf,
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
    /// JSON per-arm sufficient statistics (docs/analyze.md), a JSON rows
    /// document with its design (`{"rows": [...], "design": {...}}`,
    /// docs/analyze-few.md), or with --design a CSV of rows (columns
    /// cluster, value, and arm or treated; optional period, covariate,
    /// stratum). `-` reads standard input.
    #[arg(long, required_unless_present = "trial", conflicts_with = "trial")]
    pub input: Option<PathBuf>,
    /// How to read --input: `json` or `csv`. Default: by the file's
    /// extension (.json, .csv); otherwise CSV with --design, JSON without.
    #[arg(long, requires = "input", value_parser = ["json", "csv"])]
    pub input_format: Option<String>,
    /// Analyse a stored trial: every metric of its locked plan is computed
    /// in the database (docs/metrics.md), then analysed.
    #[arg(long)]
    pub trial: Option<String>,
    /// With --trial: the RFC 3339 time to analyse at (default now); units
    /// whose metric window ends later are left out of that metric.
    #[arg(long, requires = "trial")]
    pub as_of: Option<String>,
    /// With --trial: print the rows the trial's design produced, as CSV
    /// (hash: per-(arm, community) sufficient statistics; blocked: one row
    /// per member; cluster and stepped wedge: one row per community and
    /// period), to re-run them through any other tool.
    #[arg(long, requires = "trial")]
    pub rows: bool,
    /// Output format.
    #[arg(long, default_value = "json", value_parser = ["json", "md"])]
    pub format: String,
    /// Few-community analysis of CSV rows under this randomisation design.
    #[arg(long, value_parser = ["cluster", "stepped_wedge", "blocked", "blocked_users"], conflicts_with = "trial")]
    pub design: Option<String>,
    /// With --design: the control arm's name in the `arm` column (default
    /// `control`; a JSON rows document sets it in its design).
    #[arg(long)]
    pub control_arm: Option<String>,
    /// With --design: seed for sampled randomisations and the wild
    /// bootstrap (default 0; a JSON rows document sets it in its design).
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// Conclude a running or stopped trial (refused before its data are
    /// complete: see `experiments show`).
    Conclude {
        key: String,
        #[arg(long)]
        reason: String,
        /// Conclude before the data are complete; recorded as a deviation
        /// with the reason.
        #[arg(long)]
        force: bool,
        /// Apply the decision: serve this arm's variant to everyone (the
        /// flag's default variant, targeting removed, enabled): a roll-out,
        /// or a roll-back when it is the control. Recorded in the flag
        /// set's log with a link to the report (docs/reports.md). On a
        /// trial already concluded, applies the flag change only.
        #[arg(long, value_name = "ARM")]
        ship: Option<String>,
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
    /// Show a trial: status, lock, schedule, events, arm counts.
    Show {
        key: String,
        /// Print the JSON of GET /api/v1/trials/KEY instead.
        #[arg(long)]
        json: bool,
    },
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

#[derive(Args)]
pub struct PowerArgs {
    /// The trial: a file, or KEY for experiments/KEY.toml (read from disk;
    /// no database is used).
    pub trial: String,
    /// Simulated trials with the effects (and as many without), 1 to 100,000.
    #[arg(long, value_name = "N")]
    pub simulate: usize,
    /// A true effect, ARM=MULTIPLIER (every contribution event) or
    /// ARM:EVENT=MULTIPLIER; repeatable. Default: every treatment arm 1.5.
    #[arg(long)]
    pub effect: Vec<String>,
    /// Seed (same seed, same result, whatever the number of threads).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Members per community at day 0 (a community design needs one size
    /// per community, in the design's order).
    #[arg(long, value_delimiter = ',', default_values_t = vec![50u32, 120, 300, 800])]
    pub members: Vec<u32>,
    /// A parameter file in the WP2 format (docs/simulator.md) instead of
    /// --members (its effects are replaced by --effect).
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Share of a treated member's effect reaching untreated members of the
    /// same community (0 to 1; default the parameter file's, else 0).
    #[arg(long)]
    pub spillover: Option<f64>,
    /// Simulated days (default: the trial's schedule, start to end).
    #[arg(long)]
    pub days: Option<u32>,
    /// For a community design, also simulate members randomised within
    /// communities (`blocked_users`, the default) or not (`none`).
    #[arg(long, default_value = "blocked_users", value_parser = ["blocked_users", "none"])]
    pub compare: String,
    /// Significance level instead of the plan's `analysis.alpha` (0 to 1).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// The metric to simulate, by name (default the trial's primary).
    #[arg(long)]
    pub metric: Option<String>,
    /// Sampled assignments when randomisation inference cannot enumerate
    /// every one (more than 100,000).
    #[arg(long, default_value_t = 999)]
    pub randomisation_draws: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LoadtestArgs {
    /// The server, e.g. http://127.0.0.1:8080 (loopback only unless
    /// --allow-remote).
    #[arg(long)]
    pub url: String,
    /// An sdk key of that server.
    #[arg(long, env = "COMMONLAB_SDK_KEY", hide_env_values = true)]
    pub key: String,
    /// Target requests per second, every kind together (open loop).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to send: 30s, 2m, or seconds (at most 10 minutes).
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Relative weights of the request kinds: single (OFREP single-flag
    /// evaluation), bulk (OFREP bulk), events (POST /v1/events batch),
    /// survey (survey page view, with --survey-links or --research-key),
    /// answer (one step of a respondent answering a survey: open the link,
    /// consent, each page posted, the thanks page; with --research-key).
    #[arg(
        long,
        default_value = "single=60,bulk=15,events=25,survey=10,answer=10"
    )]
    pub mix: String,
    /// A flag for single evaluations; repeatable (default: every flag a
    /// bulk evaluation lists).
    #[arg(long)]
    pub flag: Vec<String>,
    /// Communities the targeting keys belong to.
    #[arg(long, value_delimiter = ',', default_values_t = ["community-1".to_string(), "community-2".into(), "community-3".into(), "community-4".into()])]
    pub communities: Vec<String>,
    /// Distinct targeting keys (load-0, load-1, ...).
    #[arg(long, default_value_t = 10_000)]
    pub users: u64,
    /// Events per POST /v1/events batch (1 to 1,000).
    #[arg(long, default_value_t = 20)]
    pub batch: usize,
    /// A file of survey page links, one a line (absolute, or /s/TOKEN on
    /// --url); without it survey views use the campaign set up with
    /// --research-key, or are left out of the mix.
    #[arg(long)]
    pub survey_links: Option<PathBuf>,
    /// A researcher key of that server: the run publishes its own survey
    /// instrument, creates a campaign (loadtest-SEED-UNIXTIME) and makes
    /// personal links for synthetic units through the management API, for
    /// the answer steps (and the page views, without --survey-links).
    /// Without it survey answers are left out of the mix.
    #[arg(long, env = "COMMONLAB_RESEARCH_KEY", hide_env_values = true)]
    pub research_key: Option<String>,
    /// Survey respondents answering at once, each with one request in
    /// flight at most (more start when all of them are waiting).
    #[arg(long, default_value_t = 50)]
    pub respondents_at_once: usize,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Most requests outstanding; a request due beyond it is counted as not sent.
    #[arg(long, default_value_t = 1_000)]
    pub max_in_flight: usize,
    /// Allow a server that is not on a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
