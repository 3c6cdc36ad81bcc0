//! A trial's analysis from its stored data, as its design requires: the
//! store computes the rows the design needs (no event leaves the
//! database), `commonlab_report::analysis` analyses them (on a blocking
//! thread: it is CPU work). Shared by `GET /api/v1/trials/{key}/analysis`
//! and `commonlab analyze --trial`. The snapshot a trial concludes with is
//! computed here too.

use crate::error::Error;
use crate::surveys;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, Metric, TrialSpec};
use commonlab_report::analysis::{self as report, StoredTrial, TrialAnalysis};
use commonlab_report::document::Report;
use commonlab_report::surveys::{LikertInput, ScaleReliability, SurveyInput, WaveInput};
use commonlab_report::{Options, ReportError};
use commonlab_store::{MetricSnapshot, Store, StoreError, TrialRecord};

impl From<ReportError> for Error {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Store(e) => Error::Store(e),
            ReportError::Spec(errors) => errors.into(),
            ReportError::Refused(why) => Error::invalid("/per_user", why),
            // Templates are embedded and every one is rendered by the
            // report crate's tests; not the client's doing.
            ReportError::Render(why) => Error::Store(StoreError::Unavailable(format!(
                "cannot render the report: {why}"
            ))),
        }
    }
}

/// The rows `key`'s design needs as of `as_of`, read from the store.
pub async fn stored(store: &Store, key: &str, as_of: DateTime<Utc>) -> Result<StoredTrial, Error> {
    Ok(report::fetch(store, key, as_of).await?)
}

/// [`stored`], then the analysis (on a blocking thread), with the trial's
/// survey waves ([`add_surveys`]); `min_cell` is the smallest breakdown
/// the survey response shows.
pub async fn analyse(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
    min_cell: usize,
) -> Result<TrialAnalysis, Error> {
    let trial = stored(store, key, as_of).await?;
    let spec = trial.spec.clone();
    let mut analysis = blocking(move || report::analyse(&trial)).await?;
    add_surveys(store, &spec, &mut analysis, min_cell).await?;
    Ok(analysis)
}

/// Runs CPU work of the report pipeline on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => Ok(done),
        // The pipeline does not panic on any stored data; if it did, that is
        // our bug, not the client's: let it surface as one.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => Err(StoreError::Unavailable("the server is shutting down".into()).into()),
    }
}

/// The validation report of `key` (`commonlab report`, `GET
/// /api/v1/trials/{key}/report`): the design's analysis with the trial's
/// survey waves ([`add_surveys`], [`survey_input`]), every breakdown
/// smaller than `min_cell` withheld. Refuses a per-user test of a
/// community design ([`commonlab_report::check_per_user`]).
pub async fn report(
    store: &Store,
    key: &str,
    opts: &Options,
    min_cell: usize,
) -> Result<Report, Error> {
    report_with_progress(store, key, opts, min_cell, &|_, _| {}).await
}

/// [`report`], calling `progress(done, total)` as the plan's metrics are
/// computed in the database ([`report::fetch_with_progress`]; the
/// `commonlab report` progress bar).
pub async fn report_with_progress(
    store: &Store,
    key: &str,
    opts: &Options,
    min_cell: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report, Error> {
    let record = store
        .get_trial(key)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("trial '{key}'")))?;
    let spec = parse_trial(&record.spec_source, &format!("trial {key}"))?;
    commonlab_report::check_per_user(&spec, opts.per_user)?;
    let as_of = opts
        .as_of
        .unwrap_or_else(|| commonlab_report::default_as_of(&record, opts.now));
    let trial = report::fetch_with_progress(store, key, as_of, progress).await?;
    let hist = commonlab_report::history(store, key).await?;
    let (trial, mut analysis) = blocking(move || {
        let a = report::analyse(&trial);
        (trial, a)
    })
    .await?;
    add_surveys(store, &spec, &mut analysis, min_cell).await?;
    let input = survey_input(store, key, min_cell).await?;
    // A sequential hash plan: the primary metric at each look already
    // past (the cumulative effect with its always-valid interval).
    let mut looks = Vec::new();
    if matches!(
        spec.design,
        commonlab_core::experiments::Design::Hash { .. }
    ) {
        for at in commonlab_report::past_looks(&spec, as_of) {
            let cells = store
                .metric_cells(record.id, &spec.metrics.primary, at)
                .await?;
            looks.push(commonlab_report::series::Look { at, cells });
        }
    }
    let provenance = opts.provenance.clone();
    blocking(move || {
        commonlab_report::from_analysis(&trial, &analysis, &input, &looks, &hist, &provenance)
    })
    .await
}

/// What the report shows of a trial's survey waves beyond its analysis:
/// each scale's reliability (alpha with its Feldt interval, omega, as the
/// campaign's results compute them) and each Likert item's completed
/// answers with the arm of the unit's first exposure (the report counts
/// them, withholding arms below `min_cell`). Waves in opening order.
pub async fn survey_input(
    store: &Store,
    trial: &str,
    min_cell: usize,
) -> Result<SurveyInput, Error> {
    let campaigns = trial_campaigns(store, trial).await?;
    let mut waves = Vec::with_capacity(campaigns.len());
    for c in &campaigns {
        let (_, instrument, results) =
            surveys::service::results(store, &c.key, min_cell, false).await?;
        let reliability = results
            .scales
            .iter()
            .map(|s| reliability(&s.key, &s.reliability))
            .collect();
        let arms: std::collections::BTreeMap<String, Option<String>> = store
            .campaign_units(c.id)
            .await?
            .into_iter()
            .map(|u| (u.unit, u.arm))
            .collect();
        let completed: Vec<_> = store
            .responses(c.id)
            .await?
            .into_iter()
            .filter(|r| r.status == commonlab_store::ResponseStatus::Completed)
            .filter_map(|r| {
                let arm = arms.get(&r.unit).cloned().flatten()?;
                Some((arm, surveys::results::answers_of(&r)))
            })
            .collect();
        let language = instrument.default_language().to_string();
        let likert = instrument
            .items()
            .filter_map(|(_, item)| {
                let commonlab_core::surveys::ItemKind::Likert { points, labels } = &item.kind
                else {
                    return None;
                };
                let labels = labels
                    .get(&language)
                    .cloned()
                    .unwrap_or_else(|| (1..=*points).map(|p| p.to_string()).collect());
                let answers = completed
                    .iter()
                    .filter_map(|(arm, answers)| match answers.get(&item.key) {
                        Some(commonlab_core::surveys::Answer::Number(v))
                            if *v >= 1.0 && *v <= f64::from(*points) =>
                        {
                            Some((arm.clone(), *v as u8))
                        }
                        _ => None,
                    })
                    .collect();
                Some(LikertInput {
                    item: item.key.clone(),
                    labels,
                    answers,
                })
            })
            .collect();
        waves.push(WaveInput {
            wave: c.wave.clone(),
            campaign: c.key.clone(),
            reliability,
            likert,
        });
    }
    Ok(SurveyInput { min_cell, waves })
}

fn reliability(
    scale: &str,
    r: &surveys::results::Computed<surveys::results::Reliability>,
) -> ScaleReliability {
    match r {
        surveys::results::Computed::Value(r) => {
            let omega = r.omega.value().map(|o| o.omega);
            let notes: Vec<String> = r
                .warning
                .iter()
                .cloned()
                .chain(match &r.omega {
                    surveys::results::Computed::Error { error } => Some(format!("omega: {error}")),
                    surveys::results::Computed::Value(_) => None,
                })
                .collect();
            ScaleReliability {
                scale: scale.to_string(),
                n: Some(r.n as u64),
                alpha: Some(r.alpha),
                alpha_ci_low: Some(r.alpha_ci95.0),
                alpha_ci_high: Some(r.alpha_ci95.1),
                omega,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            }
        }
        surveys::results::Computed::Error { error } => ScaleReliability {
            scale: scale.to_string(),
            note: Some(error.clone()),
            ..Default::default()
        },
    }
}

/// The campaigns of `trial` (its survey waves), in opening order.
async fn trial_campaigns(
    store: &Store,
    trial: &str,
) -> Result<Vec<commonlab_store::CampaignRecord>, Error> {
    let mut campaigns: Vec<_> = store
        .list_campaigns()
        .await?
        .into_iter()
        .filter(|c| c.trial_key.as_deref() == Some(trial))
        .collect();
    campaigns.sort_by(|a, b| (a.opens_at, &a.key).cmp(&(b.opens_at, &b.key)));
    Ok(campaigns)
}

/// Adds the trial's survey waves (its campaigns) to its analysis: each
/// scale of each wave becomes a secondary metric `survey:WAVE:SCALE`
/// (`report::analysis::analyse_scales`: per-member designs get Welch per
/// treatment arm, community designs no per-member test), and the response
/// per arm and community with the differential-response test becomes
/// `survey_response`, with a data-quality warning when the arms answered
/// at different rates. Nothing changes for a trial without a campaign.
pub async fn add_surveys(
    store: &Store,
    spec: &TrialSpec,
    analysis: &mut TrialAnalysis,
    min_cell: usize,
) -> Result<(), Error> {
    let campaigns = trial_campaigns(store, &analysis.trial).await?;
    if campaigns.is_empty() {
        return Ok(());
    }
    let mut waves = Vec::with_capacity(campaigns.len());
    for c in &campaigns {
        let instrument = surveys::service::instrument(store, &c.instrument, c.version).await?;
        let (_, scores) = surveys::service::campaign_scale_scores(store, &c.key).await?;
        waves.push(report::WaveScores {
            wave: c.wave.clone(),
            campaign: c.key.clone(),
            scales: instrument.scales.iter().map(|s| s.key.clone()).collect(),
            scores: scores
                .into_iter()
                .map(|s| report::ScaleScore {
                    unit: s.unit,
                    arm: s.arm,
                    scale: s.scale,
                    score: s.score,
                })
                .collect(),
        });
    }
    analysis
        .metrics
        .extend(report::analyse_scales(spec, &waves, analysis.as_of));
    let response = surveys::service::trial_response(store, &analysis.trial, min_cell).await?;
    if let surveys::results::Computed::Value(d) = &response.differential {
        if d.flagged {
            analysis.quality.warnings.push(
                "survey response differs by arm (differential-response test): respondents may not be comparable across arms, so the survey metrics can be biased".into(),
            );
        }
    }
    analysis.survey_response = Some(serde_json::to_value(&response).unwrap_or_default());
    Ok(())
}

/// Computes every metric of the trial as of `at` (the aggregates a trial
/// concludes with; `trial_service` stores them with the conclusion): per
/// (arm, community) cells for member designs, the community × period cells
/// of the windows closed at `at` for community designs (no per-member row
/// is kept: the analysis of a community design uses the cells only).
pub async fn snapshot(
    store: &Store,
    record: &TrialRecord,
    at: DateTime<Utc>,
) -> Result<Vec<MetricSnapshot>, Error> {
    let spec = parse_trial(&record.spec_source, &format!("trial {}", record.key))?;
    let communities = spec.design.communities();
    let plan: Vec<&Metric> = std::iter::once(&spec.metrics.primary)
        .chain(&spec.metrics.secondary)
        .chain(&spec.metrics.guardrails)
        .collect();
    // Member designs: the metrics that can share a statement do.
    let mut member_cells = match communities {
        Some(_) => Vec::new(),
        None => store.metrics_cells(record.id, &plan, at).await?,
    }
    .into_iter();
    let mut out = Vec::new();
    for metric in plan {
        let (cells, rows) = match communities {
            Some(list) => {
                let (closed, _) = report::period_spans(&spec, metric, at);
                let rows = store.community_period_cells(metric, list, &closed).await?;
                (Vec::new(), Some(rows))
            }
            None => (member_cells.next().unwrap_or_default(), None),
        };
        out.push(MetricSnapshot {
            metric: metric.name.clone(),
            spec_hash: record.spec_hash.clone(),
            as_of: at,
            computed_at: at,
            cells,
            communities: rows,
        });
    }
    Ok(out)
}
