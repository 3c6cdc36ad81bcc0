//! Rate limits of the OFREP routes, per API key and per client address,
//! with `governor` (GCRA: one compare-and-swap per check, no lock).
//!
//! - **Per key**: one direct limiter per key id, in a copy-on-write map
//!   (`ArcSwap`) read without a lock; a key gets its limiter the first time
//!   it evaluates (only authenticated keys reach the check, so the map is
//!   bounded by the keys that exist; it is emptied past
//!   [`MAX_TRACKED_KEYS`], which gives every key a full bucket again).
//! - **Per address**: governor's keyed limiter (a sharded map). Memory is
//!   bounded: at most `max_tracked_ips` addresses are held (about 100 bytes
//!   each); the addresses whose bucket is full again are forgotten every
//!   [`SWEEP_EVERY`] (by the request that finds the time passed, never
//!   more than one at once), and while the map is full every request
//!   shares one overflow bucket of the same quota until the sweep (a flood
//!   from many addresses slows the service, it does not grow the server's
//!   memory). IPv6
//!   addresses are limited per /64, the block one subscriber usually
//!   holds. The address is the TCP peer's: behind a proxy it is the
//!   proxy's (docs/security.md).
//!
//! Each replica limits what it serves. Quotas are per second with a burst
//! of one second's worth; 0 turns a limit off.

use crate::auth::presented_key;
use crate::observability::Metrics;
use crate::problem::Problem;
use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most keys with a limiter of their own before the map is emptied.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// How often addresses whose bucket is full again are forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The quotas (`ofrep_key_per_second`, `ofrep_ip_per_second`,
/// `ofrep_max_tracked_ips` in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfrepLimitSettings {
    /// Evaluations a second with one key (0: no limit).
    pub per_key_per_second: u32,
    /// Evaluations a second from one address or IPv6 /64 (0: no limit).
    pub per_ip_per_second: u32,
    /// Most addresses tracked at once.
    pub max_tracked_ips: usize,
}

impl Default for OfrepLimitSettings {
    /// High enough not to throttle `bench/ofrep-load.sh` (about 80,000
    /// evaluations a second from one key and one address on 2 cores):
    /// lower them for a deployment (docs/security.md).
    fn default() -> Self {
        OfrepLimitSettings {
            per_key_per_second: 200_000,
            per_ip_per_second: 100_000,
            max_tracked_ips: 100_000,
        }
    }
}

/// Which quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Key,
    Ip,
}

/// The OFREP limiters of one replica.
pub struct OfrepLimits {
    settings: OfrepLimitSettings,
    key_quota: Option<Quota>,
    keys: ArcSwap<HashMap<Box<str>, Arc<DefaultDirectRateLimiter>>>,
    ips: Option<(DefaultKeyedRateLimiter<IpAddr>, DefaultDirectRateLimiter)>,
    started: Instant,
    last_sweep: AtomicU64,
}

fn per_second(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_second)
}

impl OfrepLimits {
    pub fn new(settings: OfrepLimitSettings) -> OfrepLimits {
        OfrepLimits {
            settings,
            key_quota: per_second(settings.per_key_per_second),
            keys: ArcSwap::from_pointee(HashMap::new()),
            ips: per_second(settings.per_ip_per_second)
                .map(|q| (RateLimiter::dashmap(q), RateLimiter::direct(q))),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// One evaluation request with key `key_id` from `ip`; `Err` names the
    /// quota exceeded and how long until a request would pass.
    pub fn check(&self, key_id: Option<&str>, ip: Option<IpAddr>) -> Result<(), (Scope, Duration)> {
        let clock = DefaultClock::default();
        if let (Some(quota), Some(id)) = (self.key_quota, key_id) {
            let limiter = match self.keys.load().get(id) {
                Some(l) => Arc::clone(l),
                None => self.add_key(id, quota),
            };
            limiter
                .check()
                .map_err(|n| (Scope::Key, n.wait_time_from(clock.now())))?;
        }
        if let Some((keyed, overflow)) = &self.ips {
            self.maybe_sweep(keyed);
            let ip = per_subscriber(ip);
            let outcome = if keyed.len() >= self.settings.max_tracked_ips.max(1) {
                overflow.check()
            } else {
                keyed.check_key(&ip)
            };
            outcome.map_err(|n| (Scope::Ip, n.wait_time_from(clock.now())))?;
        }
        Ok(())
    }

    fn add_key(&self, id: &str, quota: Quota) -> Arc<DefaultDirectRateLimiter> {
        let mut out = None;
        self.keys.rcu(|map| {
            if let Some(l) = map.get(id) {
                out = Some(Arc::clone(l));
                return Arc::clone(map);
            }
            let mut next = if map.len() >= MAX_TRACKED_KEYS {
                HashMap::new()
            } else {
                HashMap::clone(map)
            };
            let l = Arc::new(RateLimiter::direct(quota));
            out = Some(Arc::clone(&l));
            next.insert(id.into(), l);
            Arc::new(next)
        });
        out.expect("set by the update")
    }

    fn maybe_sweep(&self, keyed: &DefaultKeyedRateLimiter<IpAddr>) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now >= last + SWEEP_EVERY.as_secs()
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
    }

    /// Addresses tracked now.
    pub fn tracked_ips(&self) -> usize {
        self.ips.as_ref().map_or(0, |(k, _)| k.len())
    }
}

/// IPv6 addresses by their /64; IPv4 as they are; unknown as one key.
fn per_subscriber(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
        Some(v4) => v4,
        None => IpAddr::from([0u8; 4]),
    }
}

/// The OFREP routes' rate-limit check, as an extractor placed after the
/// role guard (so only valid keys are counted): 429 problem+json with
/// `Retry-After` when over a quota. Holds the metrics the handler counts
/// its evaluations in.
pub struct OfrepQuota(pub Arc<Metrics>);

impl<S> FromRequestParts<S> for OfrepQuota
where
    S: Send + Sync,
    Arc<OfrepLimits>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let limits = Arc::<OfrepLimits>::from_ref(state);
        let key_id = presented_key(&parts.headers).and_then(commonlab_core::auth::key_id);
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let metrics = Arc::<Metrics>::from_ref(state);
        match limits.check(key_id, ip) {
            Ok(()) => Ok(OfrepQuota(metrics)),
            Err((scope, wait)) => {
                metrics.count_rate_limited(scope == Scope::Key);
                let (what, setting) = match scope {
                    Scope::Key => ("this API key", "ofrep_key_per_second"),
                    Scope::Ip => ("this address", "ofrep_ip_per_second"),
                };
                let secs = wait.as_secs_f64().ceil() as u32;
                Err(Problem::too_many_requests(
                    format!(
                        "too many evaluations from {what} ({setting}); retry after {} s",
                        secs.max(1)
                    ),
                    secs,
                )
                .into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(key: u32, ip: u32, max_tracked_ips: usize) -> OfrepLimits {
        OfrepLimits::new(OfrepLimitSettings {
            per_key_per_second: key,
            per_ip_per_second: ip,
            max_tracked_ips,
        })
    }

    #[test]
    fn a_key_has_its_own_quota() {
        let l = limits(2, 0, 10);
        assert!(l.check(Some("a"), None).is_ok());
        assert!(l.check(Some("a"), None).is_ok());
        let (scope, wait) = l.check(Some("a"), None).unwrap_err();
        assert_eq!(scope, Scope::Key);
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check(Some("b"), None).is_ok(), "another key");
    }

    #[test]
    fn an_address_has_its_own_quota_and_ipv6_counts_per_64() {
        let l = limits(0, 1, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(None, Some(a)).is_ok());
        assert_eq!(l.check(None, Some(a)).unwrap_err().0, Scope::Ip);
        assert!(l.check(None, Some("10.0.0.2".parse().unwrap())).is_ok());
        assert!(l.check(None, Some("2001:db8::1".parse().unwrap())).is_ok());
        assert!(l.check(None, Some("2001:db8::2".parse().unwrap())).is_err());
        assert!(l
            .check(None, Some("::ffff:10.0.0.1".parse().unwrap()))
            .is_err());
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let l = limits(0, 1, 2);
        for i in 0..2u8 {
            assert!(l.check(None, Some(IpAddr::from([1, 1, 1, i]))).is_ok());
        }
        // The map is full: newcomers share one overflow bucket.
        assert!(l.check(None, Some(IpAddr::from([2, 2, 2, 2]))).is_ok());
        assert!(l.check(None, Some(IpAddr::from([3, 3, 3, 3]))).is_err());
        assert_eq!(l.tracked_ips(), 2);
    }

    #[test]
    fn zero_turns_limits_off() {
        let l = limits(0, 0, 1);
        for _ in 0..1000 {
            assert!(l.check(Some("a"), Some(IpAddr::from([1, 1, 1, 1]))).is_ok());
        }
    }

    #[test]
    fn the_key_map_is_bounded() {
        let l = limits(1, 0, 1);
        for i in 0..(MAX_TRACKED_KEYS + 5) {
            assert!(l.check(Some(&format!("k{i}")), None).is_ok());
        }
        assert!(l.keys.load().len() <= MAX_TRACKED_KEYS);
    }
}
