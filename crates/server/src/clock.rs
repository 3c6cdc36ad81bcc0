//! The time source: the system clock, or a settable one for tests.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The time source: the system clock, or a settable one for tests.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(Arc<AtomicI64>),
}

impl Clock {
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock::Fixed(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Fixed(ms) = self {
            ms.store(at.timestamp_millis(), Ordering::Relaxed);
        }
    }
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(ms) => {
                DateTime::from_timestamp_millis(ms.load(Ordering::Relaxed)).unwrap_or_default()
            }
        }
    }
}
