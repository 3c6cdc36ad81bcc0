//! Group commit for ingestion: concurrent requests hand their validated
//! batches to one committer task, which writes whatever has queued up (up to
//! `MAX_GROUP` events) in a single transaction, so many requests share one
//! fsync. Each request gets its own part of the outcome back, and answers
//! only after the transaction committed.
//!
//! The queue is bounded: a request that cannot enqueue within a second gets
//! 503 with `Retry-After` (backpressure instead of unbounded memory).

use commonlab_store::{InsertOutcome, NewEvent, Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

const MAX_GROUP: usize = 10_000;
const QUEUE: usize = 64;

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
pub async fn run(store: Store, mut rx: mpsc::Receiver<Job>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = shutdown.changed() => {
                if *shutdown.borrow() { None } else { continue }
            }
        };
        let Some(first) = first else { break };
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
        commit(&store, jobs).await;
    }
    rx.close();
    while let Some(job) = rx.recv().await {
        commit(&store, vec![job]).await;
    }
}

async fn commit(store: &Store, jobs: Vec<Job>) {
    let received_at = jobs.iter().map(|j| j.received_at).max().unwrap_or_default();
    let mut all = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
    let mut bounds = Vec::with_capacity(jobs.len());
    let mut jobs = jobs;
    for job in &mut jobs {
        let start = all.len();
        all.append(&mut job.events);
        bounds.push((start, all.len()));
    }
    let result = store.insert_events(&all, received_at).await;
    for (job, (start, end)) in jobs.into_iter().zip(bounds) {
        let part = match &result {
            Ok(outcome) => {
                let duplicates: Vec<usize> = outcome
                    .duplicates
                    .iter()
                    .filter(|&&i| i >= start && i < end)
                    .map(|i| i - start)
                    .collect();
                Ok(InsertOutcome {
                    inserted: (end - start - duplicates.len()) as u64,
                    duplicates,
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
