//! Rate limits of the public survey routes, per client address and per
//! link (campaign and unit), with `governor` (GCRA, keyed, lock-free).
//!
//! Memory is bounded: keys whose bucket is full again are forgotten every
//! [`SWEEP_EVERY`] checks (`retain_recent`), and while more than
//! `max_tracked` keys are held, requests of keys beyond them share one
//! overflow bucket of the same quota rather than adding keys (under a flood
//! from many addresses, the survey slows for everyone instead of the
//! server's memory growing). IPv6 addresses are limited per /64, the
//! block one subscriber usually holds.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many checks between sweeps of the keys whose bucket is full again.
pub const SWEEP_EVERY: u64 = 1024;

/// The per-minute quotas and the bound on tracked keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests a minute from one address (bursts up to the same number).
    pub per_ip_per_minute: u32,
    /// Requests a minute with one link.
    pub per_link_per_minute: u32,
    /// Most addresses (and, apart, links) tracked at once.
    pub max_tracked: usize,
}

/// A per-minute quota per key, with the memory bound described above
/// (also the console's sign-in limit, `console::sign_in`).
pub struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    overflow: DefaultDirectRateLimiter,
    max_tracked: usize,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    /// `per_minute` requests a minute per key (bursts up to the same
    /// number), at most `max_tracked` keys held.
    pub fn new(per_minute: u32, max_tracked: usize) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("at least 1"));
        Keyed {
            limiter: RateLimiter::dashmap(quota),
            overflow: RateLimiter::direct(quota),
            max_tracked: max_tracked.max(1),
            checks: AtomicU64::new(0),
        }
    }

    /// A request of `key`; `Err(wait)` when over its quota.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let clock = DefaultClock::default();
        let outcome = if self.limiter.len() >= self.max_tracked {
            self.overflow.check()
        } else {
            self.limiter.check_key(key)
        };
        outcome.map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

/// The key an address is limited under: IPv6 addresses by their /64, an
/// unknown address (no peer known) as `0.0.0.0`, shared by all such.
pub fn ip_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        Some(v4) => v4,
        None => IpAddr::from([0u8; 4]),
    }
}

/// The limiters of one replica (each replica limits what it serves).
pub struct Limits {
    ips: Keyed<IpAddr>,
    links: Keyed<String>,
}

impl Limits {
    pub fn new(s: LimitSettings) -> Limits {
        Limits {
            ips: Keyed::new(s.per_ip_per_minute, s.max_tracked),
            links: Keyed::new(s.per_link_per_minute, s.max_tracked),
        }
    }

    /// A request from `ip` (unknown: all such requests share one key);
    /// `Err(wait)` when over its quota.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.ips.check(&ip_key(ip))
    }

    /// A request with the link of `unit` in `campaign` (a verified one).
    pub fn check_link(&self, campaign: &str, unit: &str) -> Result<(), Duration> {
        self.links.check(&format!("{campaign}/{unit}"))
    }

    /// Keys tracked now (addresses, links).
    pub fn tracked(&self) -> (usize, usize) {
        (self.ips.limiter.len(), self.links.limiter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_is_per_address_and_per_link() {
        let l = Limits::new(LimitSettings {
            per_ip_per_minute: 3,
            per_link_per_minute: 2,
            max_tracked: 100,
        });
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(l.check_ip(a).is_ok());
        }
        let wait = l.check_ip(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.check_ip(b).is_ok(), "another address has its own quota");
        assert!(l.check_link("c", "u1").is_ok());
        assert!(l.check_link("c", "u1").is_ok());
        assert!(l.check_link("c", "u1").is_err());
        assert!(l.check_link("c", "u2").is_ok());
    }

    #[test]
    fn ipv6_is_limited_per_64_and_keys_are_bounded() {
        let l = Limits::new(LimitSettings {
            per_ip_per_minute: 1,
            per_link_per_minute: 1,
            max_tracked: 2,
        });
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same64: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(l.check_ip(Some(one)).is_ok());
        assert!(l.check_ip(Some(same64)).is_err());
        assert!(l.check_ip(Some(IpAddr::from([1, 1, 1, 1]))).is_ok());
        // Two keys tracked: a third address shares the overflow bucket.
        assert!(l.check_ip(Some(IpAddr::from([2, 2, 2, 2]))).is_ok());
        assert!(l.check_ip(Some(IpAddr::from([3, 3, 3, 3]))).is_err());
        assert_eq!(l.tracked().0, 2);
    }
}
