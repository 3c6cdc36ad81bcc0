//! A trial's analysis from its stored data, as its design requires: the
//! store computes the rows the design needs (no event leaves the
//! database), `commonlab_report::analysis` analyses them (on a blocking
//! thread: it is CPU work). Shared by `GET /api/v1/trials/{key}/analysis`
//! and `commonlab analyze --trial`. The snapshot a trial concludes with is
//! computed here too.

use crate::error::Error;
use crate::surveys;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, TrialSpec};
use commonlab_report::analysis::{self as report, StoredTrial, TrialAnalysis};
use commonlab_report::ReportError;
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
    let mut analysis = match tokio::task::spawn_blocking(move || report::analyse(&trial)).await {
        Ok(analysis) => analysis,
        // The pipeline does not panic on any stored data; if it did, that is
        // our bug, not the client's: let it surface as one.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => return Err(StoreError::Unavailable("the server is shutting down".into()).into()),
    };
    add_surveys(store, &spec, &mut analysis, min_cell).await?;
    Ok(analysis)
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
    let mut campaigns: Vec<_> = store
        .list_campaigns()
        .await?
        .into_iter()
        .filter(|c| c.trial_key.as_deref() == Some(analysis.trial.as_str()))
        .collect();
    if campaigns.is_empty() {
        return Ok(());
    }
    campaigns.sort_by(|a, b| (a.opens_at, &a.key).cmp(&(b.opens_at, &b.key)));
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
    let mut out = Vec::new();
    for metric in std::iter::once(&spec.metrics.primary)
        .chain(&spec.metrics.secondary)
        .chain(&spec.metrics.guardrails)
    {
        let (cells, rows) = match communities {
            Some(list) => {
                let (closed, _) = report::period_spans(&spec, metric, at);
                let rows = store.community_period_cells(metric, list, &closed).await?;
                (Vec::new(), Some(rows))
            }
            None => (store.metric_cells(record.id, metric, at).await?, None),
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
