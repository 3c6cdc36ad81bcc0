//! A client for Commonlab's telemetry ingestion (`POST /v1/events`), for the
//! platform's Rust services and the simulator.
//!
//! - Every event gets a time-ordered UUIDv7 id when it is tracked, so a
//!   retried batch is idempotent on the server (and v7 ids keep the
//!   server's unique index fast).
//! - Events are buffered and sent in batches of `batch_size`.
//! - A batch that fails with a network error, 429 or 5xx is retried with
//!   exponential backoff (honouring `Retry-After`), up to `max_attempts`;
//!   a 4xx other than 429 is not retried: the batch is wrong, and the error
//!   says why.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server refused the batch ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// One event, as the server takes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub event_id: uuid::Uuid,
    /// The raw unit id (the OFREP targetingKey); the server pseudonymises it.
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

impl Event {
    /// An event happening now, with a fresh UUIDv7 id.
    pub fn new(unit: impl Into<String>, name: impl Into<String>) -> Self {
        Event {
            event_id: uuid::Uuid::now_v7(),
            unit: unit.into(),
            community: None,
            name: name.into(),
            timestamp: Utc::now(),
            properties: Map::new(),
        }
    }

    pub fn community(mut self, c: impl Into<String>) -> Self {
        self.community = Some(c.into());
        self
    }

    pub fn at(mut self, t: DateTime<Utc>) -> Self {
        self.timestamp = t;
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }
}

/// What the server said about a batch.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct BatchReport {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
    #[serde(default)]
    pub rejected: Vec<Value>,
}

/// Settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub batch_size: usize,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_size: 500,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The delay before attempt `attempt` (1-based, after a failure): the
/// server's `Retry-After` when given, else `initial * 2^(attempt-1)` capped.
pub fn backoff(options: &Options, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(options.max_backoff);
    }
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    options
        .initial_backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}

/// Whether a status is worth retrying.
pub fn retryable(status: u16) -> bool {
    status == 429 || status >= 500
}

pub struct EventClient {
    http: reqwest::Client,
    url: String,
    key: String,
    options: Options,
    buffer: Vec<Event>,
}

impl EventClient {
    pub fn new(base_url: &str, api_key: &str, options: Options) -> Self {
        EventClient {
            http: reqwest::Client::builder()
                .timeout(options.timeout)
                .build()
                .unwrap_or_default(),
            url: format!("{}/v1/events", base_url.trim_end_matches('/')),
            key: api_key.to_string(),
            options,
            buffer: Vec::new(),
        }
    }

    /// Buffers an event; sends a batch when the buffer is full.
    pub async fn track(&mut self, event: Event) -> Result<Option<BatchReport>, ClientError> {
        self.buffer.push(event);
        if self.buffer.len() >= self.options.batch_size {
            return self.flush().await.map(Some);
        }
        Ok(None)
    }

    /// Sends what is buffered (in batches of `batch_size`).
    pub async fn flush(&mut self) -> Result<BatchReport, ClientError> {
        let mut total = BatchReport::default();
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(self.options.batch_size);
            let report = self.send(&self.buffer[..n]).await?;
            self.buffer.drain(..n);
            total.received += report.received;
            total.stored += report.stored;
            total.duplicates += report.duplicates;
            total.rejected.extend(report.rejected);
        }
        Ok(total)
    }

    /// Sends one batch, retrying as described in the crate docs.
    pub async fn send(&self, batch: &[Event]) -> Result<BatchReport, ClientError> {
        let mut last = String::new();
        for attempt in 1..=self.options.max_attempts {
            let result = self
                .http
                .post(&self.url)
                .bearer_auth(&self.key)
                .json(batch)
                .send()
                .await;
            let retry_after = match result {
                Ok(resp) if resp.status().is_success() => {
                    return resp.json().await.map_err(|e| ClientError::GaveUp {
                        attempts: attempt,
                        last: format!("unreadable answer: {e}"),
                    });
                }
                Ok(resp) if !retryable(resp.status().as_u16()) => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    return Err(ClientError::Refused { status, body });
                }
                Ok(resp) => {
                    let after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    last = format!("status {}", resp.status());
                    after
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            };
            if attempt < self.options.max_attempts {
                tokio::time::sleep(backoff(&self.options, attempt, retry_after)).await;
            }
        }
        Err(ClientError::GaveUp {
            attempts: self.options.max_attempts,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let o = Options {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Options::default()
        };
        let got: Vec<u128> = (1..=6).map(|a| backoff(&o, a, None).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            backoff(&o, 1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            backoff(&o, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
        assert!(retryable(503) && retryable(429) && retryable(500));
        assert!(!retryable(400) && !retryable(413) && !retryable(422));
    }

    #[test]
    fn ids_are_time_ordered_v7() {
        let a = Event::new("u", "x");
        let b = Event::new("u", "x");
        assert_eq!(a.event_id.get_version_num(), 7);
        assert!(a.event_id < b.event_id);
    }
}
