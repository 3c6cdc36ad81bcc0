//! Group commit for ingestion: concurrent requests hand their validated
//! batches to one committer task, which writes whatever has queued up (up to
//! `MAX_GROUP` events) in a single transaction, so many requests share one
//! fsync. Each request gets its own part of the outcome back, and answers
//! only after the transaction committed and is on disk. Commits are
//! pipelined (see [`run`]).
//!
//! The queue is bounded: a request that cannot enqueue within a second gets
//! 503 with `Retry-After` (backpressure instead of unbounded memory).
//!
//! An event the database refuses does not fail its group: the store leaves
//! it out, commits the rest ([`Store::insert_events_unsynced`]), and the
//! request it came from rejects it by index (a retry would be refused
//! again, so it is never answered 503).

use commonlab_store::{InsertOutcome, NewEvent, RefusedEvent, Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

const MAX_GROUP: usize = 10_000;
const QUEUE: usize = 64;
/// Groups committed and waiting for the disk, at most: bounds the memory
/// held by answers not yet given when the disk is slow.
const MAX_TASKS: usize = 16;

pub struct Job {
    events: Vec<NewEvent>,
    received_at: chrono::DateTime<chrono::Utc>,
    reply: oneshot::Sender<Result<InsertOutcome, StoreError>>,
}

#[derive(Debug)]
pub enum SubmitError {
    /// The queue stayed full: the store cannot keep up.
    Saturated,
    /// The committer has stopped (shutdown).
    Closed,
    Store(StoreError),
}

#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Job>,
    rx: Arc<Mutex<Option<mpsc::Receiver<Job>>>>,
}

impl Default for GroupCommitter {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        GroupCommitter {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
}

impl GroupCommitter {
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Job>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Batches waiting for the committer now (`/metrics`).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a batch and waits until it is committed.
    pub async fn submit(
        &self,
        events: Vec<NewEvent>,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<InsertOutcome, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events,
            received_at,
            reply,
        };
        match tokio::time::timeout(Duration::from_secs(1), self.tx.send(job)).await {
            Err(_) => return Err(SubmitError::Saturated),
            Ok(Err(_)) => return Err(SubmitError::Closed),
            Ok(Ok(())) => {}
        }
        match answer.await {
            Ok(r) => r.map_err(SubmitError::Store),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

/// Commits queued batches until shutdown, then drains the queue.
///
/// Pipelined: a group's transaction holds one of the store's
/// [`Store::event_writers`] slots only while it commits; waiting for the
/// disk ([`Store::sync_events`]) and answering happen in a task of their
/// own, so the next group is written meanwhile (SQLite's one writer never
/// waits on `fsync`; PostgreSQL overlaps a few transactions). Every such
/// task is owned here and joined before this returns.
pub async fn run(store: Store, mut rx: mpsc::Receiver<Job>, mut shutdown: watch::Receiver<bool>) {
    let writers = Arc::new(Semaphore::new(store.event_writers()));
    let mut tasks = JoinSet::new();
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = shutdown.changed() => {
                if *shutdown.borrow() { None } else { continue }
            }
        };
        let Some(first) = first else { break };
        start_group(&store, &writers, &mut tasks, &mut rx, first).await;
    }
    rx.close();
    while let Some(job) = rx.recv().await {
        start_group(&store, &writers, &mut tasks, &mut rx, job).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits for a writer slot (more jobs queue up meanwhile), takes what has
/// queued (up to `MAX_GROUP` events) and commits it in a task.
async fn start_group(
    store: &Store,
    writers: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    rx: &mut mpsc::Receiver<Job>,
    first: Job,
) {
    while let Some(done) = tasks.try_join_next() {
        log_panic(done);
    }
    while tasks.len() >= MAX_TASKS {
        if let Some(done) = tasks.join_next().await {
            log_panic(done);
        }
    }
    let Ok(slot) = writers.clone().acquire_owned().await else {
        return;
    };
    let mut jobs = vec![first];
    let mut size = jobs[0].events.len();
    while size < MAX_GROUP {
        match rx.try_recv() {
            Ok(job) => {
                size += job.events.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    let store = store.clone();
    tasks.spawn(async move { commit(&store, jobs, slot).await });
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "an event commit task failed");
    }
}

async fn commit(store: &Store, jobs: Vec<Job>, slot: OwnedSemaphorePermit) {
    let received_at = jobs.iter().map(|j| j.received_at).max().unwrap_or_default();
    let mut all = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    let mut bounds = Vec::with_capacity(jobs.len());
    let mut jobs = jobs;
    for job in &mut jobs {
        let start = all.len();
        all.append(&mut job.events);
        bounds.push((start, all.len()));
    }
    let committed = store.insert_events_unsynced(&all, received_at).await;
    drop(slot);
    drop(all);
    let result = match committed {
        Ok((outcome, point)) => store.sync_events(point).await.map(|()| outcome),
        Err(e) => Err(e),
    };
    for (job, (start, end)) in jobs.into_iter().zip(bounds) {
        let part = match &result {
            Ok(outcome) => {
                let duplicates: Vec<usize> = outcome
                    .duplicates
                    .iter()
                    .filter(|&&i| i >= start && i < end)
                    .map(|i| i - start)
                    .collect();
                // Refused rows were left out of the group's transaction;
                // each request rejects its own.
                let refused: Vec<RefusedEvent> = outcome
                    .refused
                    .iter()
                    .filter(|r| r.index >= start && r.index < end)
                    .map(|r| RefusedEvent {
                        index: r.index - start,
                        reason: r.reason.clone(),
                    })
                    .collect();
                Ok(InsertOutcome {
                    inserted: (end - start - duplicates.len() - refused.len()) as u64,
                    duplicates,
                    refused,
                })
            }
            Err(e) => Err(clone_error(e)),
        };
        let _ = job.reply.send(part);
    }
}

/// StoreError is not Clone (it wraps sqlx errors): every job of a failed
/// group gets an equivalent error.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        other => StoreError::Unavailable(format!("the batch could not be stored: {other}")),
    }
}
