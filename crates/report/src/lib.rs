//! Commonlab's reports: a stored trial analysed as its design requires
//! ([`analysis`]), turned into a report document ([`document`]) and
//! rendered ([`render`]: HTML, Markdown, `results.json`), with the
//! feedback outputs for the platform team ([`feedback`]) and the check
//! that a report still matches its data ([`verify`]).
//!
//! Reads the store (through its methods: no SQL here) and runs the
//! statistics engine; never HTTP, never the server or the CLI.

pub mod analysis;
pub mod breakdown;
pub mod canonical;
pub mod charts;
pub mod document;
pub mod feedback;
pub mod render;
pub mod verify;
pub mod wp2;

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{format_rfc3339, SpecError};
use commonlab_store::{Store, StoreError, TrialStatus};
use document::{Dates, Deviation, Provenance, Report, TrialHistory};

/// What can go wrong while analysing or rendering a stored trial.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored plan no longer parses (a newer Commonlab's file, or a
    /// damaged row).
    #[error("the stored trial does not parse: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Spec(Vec<SpecError>),
    /// A template failed to render (a bug in a template: the crate's tests
    /// render every one).
    #[error("cannot render the report: {0}")]
    Render(String),
    /// Asked for something the design forbids (a per-user p-value of a
    /// trial that randomised communities).
    #[error("{0}")]
    Refused(String),
}

impl From<Vec<SpecError>> for ReportError {
    fn from(e: Vec<SpecError>) -> Self {
        ReportError::Spec(e)
    }
}

/// How to make a report.
#[derive(Debug, Clone)]
pub struct Options {
    /// Analyse as of this time; default: the conclusion (concluded or
    /// archived trials), else the stop (stopped trials), else `now`.
    pub as_of: Option<DateTime<Utc>>,
    /// The caller's clock (injected, so tests are deterministic).
    pub now: DateTime<Utc>,
    /// Also compute a per-user p-value: refused for community designs
    /// (their members are not independent units); member designs already
    /// analyse members, so it adds nothing there.
    pub per_user: bool,
    pub provenance: Provenance,
}

/// The time a report is made as of (see [`Options::as_of`]).
pub fn default_as_of(record: &commonlab_store::TrialRecord, now: DateTime<Utc>) -> DateTime<Utc> {
    match record.status {
        TrialStatus::Concluded | TrialStatus::Archived => record.concluded_at.unwrap_or(now),
        TrialStatus::Stopped => record.stopped_at.unwrap_or(now),
        _ => now,
    }
}

/// The trial's lifecycle dates and its amendments and deviations.
pub async fn history(store: &Store, key: &str) -> Result<TrialHistory, ReportError> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec =
        commonlab_core::experiments::parse_trial(&record.spec_source, &format!("trial {key}"))?;
    let deviations = store
        .trial_events(key)
        .await?
        .into_iter()
        .filter(|e| e.action == "amend" || e.action == "deviation")
        .map(|e| Deviation {
            action: e.action,
            actor: e.actor,
            reason: e.reason,
            at: e.created_at,
            spec_hash: e.spec_hash,
        })
        .collect();
    Ok(TrialHistory {
        dates: Dates {
            planned_start: format_rfc3339(spec.schedule.start),
            planned_end: format_rfc3339(spec.schedule.end),
            started: record.started_at,
            stopped: record.stopped_at,
            concluded: record.concluded_at,
        },
        deviations,
    })
}

/// Refuses a per-user test of a trial that randomised communities (see
/// [`Options::per_user`]).
pub fn check_per_user(
    spec: &commonlab_core::experiments::TrialSpec,
    per_user: bool,
) -> Result<(), ReportError> {
    match per_user.then(|| document::per_user_refusal(spec)).flatten() {
        Some(why) => Err(ReportError::Refused(why)),
        None => Ok(()),
    }
}

/// The report of a stored trial already read (pure, CPU work).
pub fn from_stored(
    stored: &analysis::StoredTrial,
    hist: &TrialHistory,
    provenance: &Provenance,
) -> Report {
    let a = analysis::analyse(stored);
    document::build(stored, &a, hist, provenance)
}

/// Reads `key` from the store, analyses it as its design requires and
/// builds the report document. The analysis runs on the calling thread
/// (CPU work: call it from a blocking context in a server).
pub async fn report(store: &Store, key: &str, opts: &Options) -> Result<Report, ReportError> {
    report_with_progress(store, key, opts, &|_, _| {}).await
}

/// [`report`], calling `progress(done, total)` as the plan's metrics are
/// computed (see [`analysis::fetch_with_progress`]).
pub async fn report_with_progress(
    store: &Store,
    key: &str,
    opts: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report, ReportError> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec =
        commonlab_core::experiments::parse_trial(&record.spec_source, &format!("trial {key}"))?;
    check_per_user(&spec, opts.per_user)?;
    let as_of = opts
        .as_of
        .unwrap_or_else(|| default_as_of(&record, opts.now));
    let stored = analysis::fetch_with_progress(store, key, as_of, progress).await?;
    let hist = history(store, key).await?;
    Ok(from_stored(&stored, &hist, &opts.provenance))
}

/// Every file of a report directory, by name, in the order written.
pub fn files(r: &Report, formats: &[&str]) -> Result<Vec<(&'static str, String)>, ReportError> {
    let mut out = Vec::new();
    let all = formats.contains(&"all");
    if all || formats.contains(&"json") {
        out.push(("results.json", render::results_json(r)?));
    }
    if all || formats.contains(&"md") {
        out.push(("report.md", render::markdown(r)?));
    }
    if all || formats.contains(&"html") {
        out.push(("report.html", render::html(r)?));
    }
    if all {
        let d = feedback::decision(r);
        out.push((
            "decision.json",
            canonical::to_json(&d).map_err(|e| ReportError::Render(e.to_string()))?,
        ));
        out.push(("decision.md", render::decision_markdown(&d)?));
    }
    Ok(out)
}

/// `wp2-parameters.json` of a report (see [`wp2`]): the activity of the
/// trial's communities from its planned start to the report's as-of time
/// (or the planned end, if earlier), read from the store.
pub async fn wp2_parameters(store: &Store, r: &Report) -> Result<String, ReportError> {
    let mut communities: Vec<String> = r.design.communities.clone();
    if communities.is_empty() {
        communities = r
            .quality
            .exposures
            .iter()
            .filter_map(|e| e.community.clone())
            .collect();
        communities.sort();
        communities.dedup();
    }
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(r.footer.as_of)
    };
    let from = parse(&r.design.dates.planned_start);
    let to = parse(&r.design.dates.planned_end)
        .min(r.footer.as_of)
        .max(from);
    let mut activity = Vec::new();
    for c in &communities {
        activity.push(store.community_activity(c, from, to).await?);
    }
    let doc = wp2::build(r, &activity, r.footer.seed.unwrap_or(0));
    canonical::to_json(&doc).map_err(|e| ReportError::Render(e.to_string()))
}
