//! Trial lifecycle, shared by the HTTP API and the CLI:
//! `draft → running → stopped → concluded` (and `archived`), every change in
//! the trial's event log with actor and reason.
//!
//! Starting locks the design and analysis plan (the spec's canonical hash is
//! stored), draws the randomisation seed from the operating system, records
//! the cluster allocation or stepped-wedge schedule, and refuses to start
//! (or resume) a trial that would control the same flag for the same units
//! as a running one (unless layers keep them apart), checked in the
//! transaction that starts it. Concluding stores the metric snapshot in the
//! transaction that concludes, and is refused before the trial's data are
//! complete unless forced (then recorded as a deviation). After the start, changes to locked
//! fields need an explicit `amend` with a reason, which the report shows as
//! a deviation.

use super::cache::Allocation;
use crate::audit::ChangeMeta;
use crate::error::Error;
use chrono::{DateTime, Utc};
use commonlab_core::experiments::{parse_trial, SpecError, TrialSpec};
use commonlab_core::flags::{FlagSet, LoadMode};
use commonlab_store::{MetricSnapshot, Store, TrialChange, TrialRecord, TrialStatus};
use rand::RngCore;

/// Parses a trial file and checks it against the flag set.
pub fn check(source: &str, file: &str, flags: &FlagSet) -> Result<TrialSpec, Vec<SpecError>> {
    let spec = parse_trial(source, file)?;
    let errors = spec.check_against_flags(flags);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

async fn flag_set(store: &Store, set: &str) -> Result<FlagSet, Error> {
    let (_, doc) = crate::flag_set::head(store, set).await?;
    let (flags, _) = FlagSet::from_value(&doc, LoadMode::Lenient)
        .map_err(|e| Error::invalid(e.pointer.clone(), e.to_string()))?;
    Ok(flags)
}

fn change<'a>(meta: &'a ChangeMeta<'a>) -> Result<TrialChange<'a>, Error> {
    if meta.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    Ok(TrialChange {
        actor: meta.actor,
        reason: meta.reason.trim(),
        at: meta.at,
    })
}

/// Stores a new trial as a draft.
pub async fn create(
    store: &Store,
    set: &str,
    source: &str,
    file: &str,
    meta: &ChangeMeta<'_>,
) -> Result<TrialRecord, Error> {
    let spec = check(source, file, &flag_set(store, set).await?)?;
    let c = change(meta)?;
    Ok(store
        .create_trial(&commonlab_store::NewTrial {
            key: &spec.key,
            flag_key: &spec.flag,
            spec_source: source,
            spec_canonical: &spec.canonical_json(),
            spec_hash: &spec.canonical_hash(),
            actor: c.actor,
            reason: c.reason,
            at: c.at,
        })
        .await?)
}

/// Replaces a draft's file (optimistic: `expected_hash` is the spec hash the
/// caller read).
pub async fn update_draft(
    store: &Store,
    set: &str,
    key: &str,
    source: &str,
    file: &str,
    expected_hash: &str,
    meta: &ChangeMeta<'_>,
) -> Result<TrialRecord, Error> {
    let spec = check(source, file, &flag_set(store, set).await?)?;
    if spec.key != key {
        return Err(Error::invalid(
            "key",
            format!("the file is for trial '{}', not '{key}'", spec.key),
        ));
    }
    let c = change(meta)?;
    Ok(store
        .update_draft_spec(
            key,
            expected_hash,
            source,
            &spec.canonical_json(),
            &spec.canonical_hash(),
            &spec.flag,
            &c,
        )
        .await?)
}

async fn get(store: &Store, key: &str) -> Result<TrialRecord, Error> {
    store.get_trial(key).await?.ok_or_else(|| {
        Error::Store(commonlab_store::StoreError::NotFound(format!(
            "trial '{key}'"
        )))
    })
}

/// Starts a draft: checks it again against the flags and the running
/// trials, draws the seed and records the allocation.
pub async fn start(
    store: &Store,
    set: &str,
    key: &str,
    meta: &ChangeMeta<'_>,
) -> Result<TrialRecord, Error> {
    start_seeded(store, set, key, meta, None).await
}

/// [`start`] with the trial's seed given instead of drawn from the OS:
/// for rehearsals that must be reproducible (`commonlab demo --seed`),
/// never for a real trial (a seed known in advance lets whoever knows it
/// predict every arm).
pub async fn start_seeded(
    store: &Store,
    set: &str,
    key: &str,
    meta: &ChangeMeta<'_>,
    seed: Option<u64>,
) -> Result<TrialRecord, Error> {
    let c = change(meta)?;
    let record = get(store, key).await?;
    if record.status != TrialStatus::Draft {
        return Err(Error::Store(commonlab_store::StoreError::InvalidState(
            format!(
                "trial '{key}' is {}; only a draft can be started (a stopped trial is resumed)",
                record.status
            ),
        )));
    }
    let file = format!("trial {key}");
    let spec = check(&record.spec_source, &file, &flag_set(store, set).await?)?;
    let seed = match seed {
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 8];
            rand::rng().fill_bytes(&mut bytes);
            u64::from_be_bytes(bytes)
        }
    };
    // Stored as a signed BIGINT; the bit pattern is the u64 seed.
    let seed = seed >> 1;
    let (_, allocation) = Allocation::compute(&spec, seed);
    // The overlap check runs in the transaction that starts the trial, so
    // replicas starting overlapping trials at once cannot both succeed.
    let overlaps = |running: &[TrialRecord]| overlap(key, &spec, running);
    Ok(store
        .start_trial_exclusive(key, seed as i64, allocation.as_deref(), &c, &overlaps)
        .await?)
}

/// Why `spec` cannot run beside `running`, if it cannot.
fn overlap(key: &str, spec: &TrialSpec, running: &[TrialRecord]) -> Option<String> {
    running.iter().find_map(|other| {
        let other_spec = parse_trial(&other.spec_source, &other.key).ok()?;
        let why = spec.conflicts_with(&other_spec)?;
        Some(format!(
            "trial '{key}' overlaps running trial '{}': {why}",
            other.key
        ))
    })
}

/// Concludes a running or stopped trial with the snapshot of its metrics
/// as of the conclusion, both in one transaction (if the trial is amended
/// between computing the snapshot and concluding, the snapshot is computed
/// again).
///
/// Before the trial's data are complete ([`TrialSpec::completion`]: the
/// longest metric window closed for the last units exposed, or the last
/// period closed) the snapshot would leave units out for good, so the
/// conclusion is refused ([`Error::DataIncomplete`], saying when the data
/// are complete), unless `force`: then a `deviation` event, saying what
/// was cut short and why (the reason), is recorded in the transaction
/// that concludes.
pub async fn conclude(
    store: &Store,
    key: &str,
    meta: &ChangeMeta<'_>,
    force: bool,
) -> Result<TrialRecord, Error> {
    conclude_with(store, key, meta, force, &Conclude).await
}

/// A conclusion ready to write: the statuses it was judged in, the plan
/// its snapshots were computed under, the change and the deviation to
/// record (a forced conclusion).
pub struct Prepared<'a> {
    pub key: &'a str,
    pub checked: &'a [TrialStatus],
    pub spec_hash: &'a str,
    pub version: i64,
    pub snapshots: &'a [MetricSnapshot],
    pub change: &'a TrialChange<'a>,
    pub deviation: Option<&'a str>,
}

/// A future of a conclusion's write.
pub type ConclusionFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<TrialRecord, Error>> + Send + 'a>>;

/// How [`conclude_with`] writes a prepared conclusion, in one transaction
/// (the store's conclusion, or that and a flag change: `super::ship`).
/// A `SpecConflict` or `InvalidState` from the store is judged again.
pub trait WriteConclusion: Sync {
    fn write<'a>(&'a self, store: &'a Store, p: &'a Prepared<'a>) -> ConclusionFuture<'a>;
}

/// The plain conclusion: `Store::conclude_trial[_with_deviation]`.
struct Conclude;

impl WriteConclusion for Conclude {
    fn write<'a>(&'a self, store: &'a Store, p: &'a Prepared<'a>) -> ConclusionFuture<'a> {
        Box::pin(async move {
            let (key, checked, hash, version) = (p.key, p.checked, p.spec_hash, p.version);
            Ok(match p.deviation {
                Some(d) => {
                    store
                        .conclude_trial_with_deviation(
                            key,
                            checked,
                            hash,
                            version,
                            p.snapshots,
                            p.change,
                            d,
                        )
                        .await?
                }
                None => {
                    store
                        .conclude_trial(key, checked, hash, version, p.snapshots, p.change)
                        .await?
                }
            })
        })
    }
}

/// [`conclude`], the prepared conclusion written by `writer`.
pub async fn conclude_with(
    store: &Store,
    key: &str,
    meta: &ChangeMeta<'_>,
    force: bool,
    writer: &dyn WriteConclusion,
) -> Result<TrialRecord, Error> {
    use commonlab_store::StoreError::{InvalidState, SpecConflict};
    use TrialStatus::*;
    let c = change(meta)?;
    let from = &[Running, Stopped];
    for _ in 0..3 {
        let record = get(store, key).await?;
        let mut deviation = None;
        // Keep the aggregates: the analysis of a concluded trial must
        // survive the retention job deleting raw events.
        let snapshots = if from.contains(&record.status) {
            if let Some((why, ever)) = incomplete(&record, meta.at)? {
                if !force {
                    let force =
                        "with --force (API: \"force\": true) and a reason, recorded as a deviation";
                    return Err(Error::DataIncomplete(if ever {
                        format!(
                            "trial '{key}' cannot be concluded yet: {why}; its snapshot would leave \
                             out units whose data are still coming. Wait until then, or conclude \
                             anyway {force}"
                        )
                    } else {
                        format!(
                            "trial '{key}' cannot be concluded without --force: {why}, so its data \
                             will never be complete. Conclude it {force}"
                        )
                    }));
                }
                deviation = Some(format!(
                    "concluded before the data were complete ({why}): {}",
                    c.reason
                ));
            }
            super::analysis::snapshot(store, &record, meta.at).await?
        } else {
            Vec::new()
        };
        // Only from the status the completion was judged in: a trial
        // stopped or resumed meanwhile is judged again.
        let checked = if from.contains(&record.status) {
            std::slice::from_ref(&record.status)
        } else {
            from
        };
        let prepared = Prepared {
            key,
            checked,
            spec_hash: &record.spec_hash,
            version: record.version,
            snapshots: &snapshots,
            change: &c,
            deviation: deviation.as_deref(),
        };
        match writer.write(store, &prepared).await {
            Err(Error::Store(SpecConflict { .. })) => continue,
            Err(Error::Store(InvalidState(_)))
                if checked.len() == 1
                    && get(store, key).await.is_ok_and(|now| {
                        now.status != record.status && from.contains(&now.status)
                    }) =>
            {
                continue
            }
            done => return done,
        }
    }
    Err(Error::Store(commonlab_store::StoreError::Unavailable(
        format!("trial '{key}' keeps changing (amended, stopped or resumed); try concluding again"),
    )))
}

/// Why a started trial's data are not complete at `now`, if they are not,
/// and whether they ever will be.
fn incomplete(record: &TrialRecord, now: DateTime<Utc>) -> Result<Option<(String, bool)>, Error> {
    let Some(started) = record.started_at else {
        return Ok(None);
    };
    let spec = parse_trial(&record.spec_source, &format!("trial {}", record.key))?;
    let stopped = (record.status == TrialStatus::Stopped)
        .then_some(record.stopped_at)
        .flatten()
        .map(|t| t.timestamp());
    let completion = spec.completion(started.timestamp(), stopped);
    Ok((!completion.is_complete(now.timestamp()))
        .then(|| (completion.describe(), completion.at().is_some())))
}

/// The actions of `POST /api/v1/trials/{key}/{action}`: `start`, then
/// each [`Move`].
pub const ACTIONS: [&str; 5] = ["start", "stop", "resume", "conclude", "archive"];

/// The lifecycle moves after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Stop,
    Resume,
    Conclude,
    Archive,
}

impl Move {
    pub fn parse(s: &str) -> Option<Move> {
        Some(match s {
            "stop" => Move::Stop,
            "resume" => Move::Resume,
            "conclude" => Move::Conclude,
            "archive" => Move::Archive,
            _ => return None,
        })
    }
}

/// A lifecycle move after the start. A conclusion is [`conclude`] without
/// `force`: refused before the data are complete.
pub async fn transition(
    store: &Store,
    key: &str,
    mv: Move,
    meta: &ChangeMeta<'_>,
) -> Result<TrialRecord, Error> {
    use TrialStatus::*;
    let (from, to): (&[TrialStatus], TrialStatus) = match mv {
        Move::Conclude => return conclude(store, key, meta, false).await,
        Move::Resume => {
            let c = change(meta)?;
            // Another trial may have started on the same units meanwhile:
            // checked in the transaction that resumes, as at the start.
            let record = get(store, key).await?;
            let spec = parse_trial(&record.spec_source, &format!("trial {key}"))?;
            let overlaps = |running: &[TrialRecord]| overlap(key, &spec, running);
            return Ok(store.resume_trial_exclusive(key, &c, &overlaps).await?);
        }
        Move::Stop => (&[Running], Stopped),
        Move::Archive => (&[Draft, Stopped, Concluded], Archived),
    };
    let c = change(meta)?;
    Ok(store.set_trial_status(key, from, to, &c).await?)
}

/// Fields that decide who is in a trial and in which arm.
const ASSIGNMENT_FIELDS: &[&str] = &["flag", "unit", "design", "arms", "eligibility", "layer"];

/// Amends a running or stopped trial: the new file is validated, the
/// changed locked fields are listed in the reason recorded with the event.
pub async fn amend(
    store: &Store,
    set: &str,
    key: &str,
    source: &str,
    file: &str,
    meta: &ChangeMeta<'_>,
) -> Result<(TrialRecord, Vec<String>), Error> {
    let record = get(store, key).await?;
    let new = check(source, file, &flag_set(store, set).await?)?;
    if new.key != key {
        return Err(Error::invalid(
            "key",
            format!("the file is for trial '{}', not '{key}'", new.key),
        ));
    }
    let old = parse_trial(&record.spec_source, &format!("trial {key}"))?;
    if new.flag != old.flag || new.unit != old.unit || new.design.kind() != old.design.kind() {
        return Err(Error::invalid(
            "design",
            "an amendment cannot change the flag, the unit or the kind of design: start a new trial with a new key",
        ));
    }
    let changed = old.locked_changes(&new);
    // Who is in the trial and which arm they get cannot change while units
    // hold assignments: that would break stickiness.
    let fixed: Vec<&String> = changed
        .iter()
        .filter(|f| ASSIGNMENT_FIELDS.iter().any(|p| f.starts_with(p)))
        .collect();
    if !fixed.is_empty() {
        let list = fixed
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::invalid(
            fixed[0].as_str(),
            format!("an amendment cannot change {list}: units already hold their assignments; start a new trial with a new key"),
        ));
    }
    let reason = if changed.is_empty() {
        meta.reason.trim().to_string()
    } else {
        format!(
            "{} [locked fields changed: {}]",
            meta.reason.trim(),
            changed.join(", ")
        )
    };
    let meta2 = ChangeMeta {
        actor: meta.actor,
        reason: &reason,
        at: meta.at,
    };
    let c = change(&meta2)?;
    if meta.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    let record = store
        .amend_trial(
            key,
            source,
            &new.canonical_json(),
            &new.canonical_hash(),
            &c,
        )
        .await?;
    Ok((record, changed))
}

/// Writes a trial's assignments and first exposures as CSV (cells that a
/// spreadsheet would run as formulas are neutralised: [`crate::csv_out`]).
pub async fn export_csv<W: std::io::Write>(store: &Store, key: &str, out: W) -> Result<u64, Error> {
    let trial = get(store, key).await?;
    let mut w = crate::csv_out::Writer::from_writer(out);
    let io = |e: csv::Error| Error::invalid("", format!("could not write CSV: {e}"));
    w.write_record([
        "trial",
        "unit",
        "arm",
        "stratum",
        "community",
        "position",
        "trial_version",
        "assigned_at",
        "exposed_at",
        "exposure_source",
        "excluded",
        "excluded_reason",
    ])
    .map_err(io)?;
    let mut after: Option<String> = None;
    let mut n = 0u64;
    loop {
        let page = store
            .export_assignments(trial.id, after.as_deref(), 5_000)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.unit.clone());
        for a in &page {
            w.write_record([
                trial.key.as_str(),
                &a.unit,
                &a.arm,
                a.stratum.as_deref().unwrap_or(""),
                a.community.as_deref().unwrap_or(""),
                &a.position.map(|p| p.to_string()).unwrap_or_default(),
                &a.trial_version.to_string(),
                &a.assigned_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                &a.exposed_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_default(),
                a.exposure_source.map(|s| s.as_str()).unwrap_or(""),
                if a.excluded { "true" } else { "false" },
                a.excluded_reason.as_deref().unwrap_or(""),
            ])
            .map_err(io)?;
            n += 1;
        }
    }
    w.flush()
        .map_err(|e| Error::invalid("", format!("could not write CSV: {e}")))?;
    Ok(n)
}
