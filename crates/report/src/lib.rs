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
mod charts_series;
pub mod document;
pub mod feedback;
pub mod render;
pub mod series;
pub mod surveys;
pub mod verify;
pub mod wp2;

use chrono::{DateTime, Utc};
use commonlab_core::experiments::{format_rfc3339, SpecError};
use commonlab_store::{Store, StoreError, TrialStatus};
use document::{Dates, Deviation, Provenance, Report, TrialHistory};

/// The git commit this crate was built from (`build.rs`): `git rev-parse
/// HEAD` (with `-dirty` when a tracked file was modified) in a checkout,
/// else the `COMMONLAB_GIT_COMMIT` variable at build time, else `unknown`.
pub const GIT_COMMIT: &str = env!("COMMONLAB_GIT_COMMIT");

/// The smallest breakdown a report shows when its caller gives none: a
/// histogram bin, a community × period cell or a survey arm with fewer
/// units than this is withheld (the server passes `survey_min_cell`).
pub const DEFAULT_MIN_CELL: usize = 5;

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

/// The report of a stored trial from its analysis (to which the caller
/// that reads the surveys has added the survey scales and response), the
/// survey input and a sequential `hash` plan's looks (pure, CPU work).
pub fn from_analysis(
    stored: &analysis::StoredTrial,
    a: &analysis::TrialAnalysis,
    surveys: &surveys::SurveyInput,
    looks: &[series::Look],
    hist: &TrialHistory,
    provenance: &Provenance,
) -> Report {
    document::build_with(stored, a, surveys, looks, hist, provenance)
}

/// The times of a sequential plan's looks already past at `as_of`: the
/// planned window split into `looks` equal parts, every boundary but the
/// last (the report's own data are the last point). Empty for a fixed
/// plan.
pub fn past_looks(
    spec: &commonlab_core::experiments::TrialSpec,
    as_of: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let commonlab_core::experiments::Horizon::Sequential { looks } = spec.analysis.horizon else {
        return Vec::new();
    };
    let (start, end) = (spec.schedule.start, spec.schedule.end);
    let looks = i64::from(looks).max(1);
    (1..looks)
        .filter_map(|i| DateTime::from_timestamp(start + (end - start) * i / looks, 0))
        .filter(|at| *at < as_of)
        .collect()
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

/// What `wp2-parameters.json` reads the activity of: the trial's
/// communities (its design's, else those of its exposures), from its
/// planned start to the report's as-of time (or the planned end, if
/// earlier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityScope {
    pub communities: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl ActivityScope {
    /// The scope of a built report.
    pub fn of_report(r: &Report) -> ActivityScope {
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
        ActivityScope {
            communities,
            from,
            to,
        }
    }

    /// The scope the report of `spec` as of `as_of` will have, known
    /// before its analysis (so that the activity can be read beside the
    /// metrics): `exposed` are the communities of the trial's exposures
    /// (`Store::exposure_counts`). A caller checks it against
    /// [`ActivityScope::of_report`] before using what it read.
    pub fn predict(
        spec: &commonlab_core::experiments::TrialSpec,
        exposed: impl IntoIterator<Item = String>,
        as_of: DateTime<Utc>,
    ) -> ActivityScope {
        use commonlab_core::experiments::Design;
        let mut communities = match &spec.design {
            Design::Cluster { communities }
            | Design::SteppedWedge { communities, .. }
            | Design::Switchback { communities, .. } => communities.clone(),
            Design::Hash { .. } | Design::Blocked { .. } => Vec::new(),
        };
        if communities.is_empty() {
            communities = exposed.into_iter().collect();
            communities.sort();
            communities.dedup();
        }
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(as_of);
        let from = at(spec.schedule.start);
        let to = at(spec.schedule.end).min(as_of).max(from);
        ActivityScope {
            communities,
            from,
            to,
        }
    }
}

/// The activity of `scope`'s communities, one after another.
pub async fn community_activities(
    store: &Store,
    scope: &ActivityScope,
) -> Result<Vec<commonlab_store::CommunityActivity>, ReportError> {
    let mut activity = Vec::with_capacity(scope.communities.len());
    for c in &scope.communities {
        activity.push(store.community_activity(c, scope.from, scope.to).await?);
    }
    Ok(activity)
}

/// `wp2-parameters.json` of a report (see [`wp2`]) from the activity of
/// its [`ActivityScope`].
pub fn wp2_document(
    r: &Report,
    activity: &[commonlab_store::CommunityActivity],
) -> Result<String, ReportError> {
    let doc = wp2::build(r, activity, r.footer.seed.unwrap_or(0));
    canonical::to_json(&doc).map_err(|e| ReportError::Render(e.to_string()))
}

/// `wp2-parameters.json` of a report (see [`wp2`]): the activity of
/// [`ActivityScope::of_report`], read from the store.
pub async fn wp2_parameters(store: &Store, r: &Report) -> Result<String, ReportError> {
    let activity = community_activities(store, &ActivityScope::of_report(r)).await?;
    wp2_document(r, &activity)
}
