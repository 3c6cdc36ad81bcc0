//! A trial's analysis from its stored data, as its design requires: the
//! store computes the rows the design needs (no event leaves the
//! database), `commonlab_report::analysis` analyses them (on a blocking
//! thread: it is CPU work). Shared by `GET /api/v1/trials/{key}/analysis`
//! and `commonlab analyze --trial`. The snapshot a trial concludes with is
//! computed here too.

use crate::error::Error;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::parse_trial;
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

/// [`stored`], then the analysis (on a blocking thread).
pub async fn analyse(
    store: &Store,
    key: &str,
    as_of: DateTime<Utc>,
) -> Result<TrialAnalysis, Error> {
    let trial = stored(store, key, as_of).await?;
    match tokio::task::spawn_blocking(move || report::analyse(&trial)).await {
        Ok(analysis) => Ok(analysis),
        // The pipeline does not panic on any stored data; if it did, that is
        // our bug, not the client's: let it surface as one.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(_) => Err(StoreError::Unavailable("the server is shutting down".into()).into()),
    }
}

/// Computes every metric of the trial as of `at` (the aggregates a trial
/// concludes with; `trial_service` stores them with the conclusion).
pub async fn snapshot(
    store: &Store,
    record: &TrialRecord,
    at: DateTime<Utc>,
) -> Result<Vec<MetricSnapshot>, Error> {
    let spec = parse_trial(&record.spec_source, &format!("trial {}", record.key))?;
    let mut out = Vec::new();
    for metric in std::iter::once(&spec.metrics.primary)
        .chain(&spec.metrics.secondary)
        .chain(&spec.metrics.guardrails)
    {
        out.push(MetricSnapshot {
            metric: metric.name.clone(),
            spec_hash: record.spec_hash.clone(),
            as_of: at,
            computed_at: at,
            cells: store.metric_cells(record.id, metric, at).await?,
        });
    }
    Ok(out)
}
