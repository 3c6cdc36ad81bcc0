//! The schedule of a switchback (crossover) trial: which community is on
//! in which period, drawn once at start as a pure function of the spec and
//! the seed (`docs/experiments.md`, "Switchback"), so every replica and
//! every later analysis recompute the same grid.
//!
//! With `prf` and `scale` as in [`super::assign`] and the communities
//! sorted by byte order (`c` is a community's name, `k` a period index,
//! numbers in decimal):
//!
//! - `independent`: community `c` is on in period `k` when
//!   `prf("switchback:" + seed + ":" + c + ":" + k) < floor(p · 2^64)`.
//! - `balanced`: for each period `k` the sorted communities are shuffled
//!   by Fisher–Yates from the end with `prf("switchback:" + seed + ":" + k
//!   + ":" + j)` (as the cluster draw); the first half are on.
//! - `blocked_pairs`: for each community `c` and pair `q` (periods `2q`
//!   and `2q+1`), `scale(prf("switchback:" + seed + ":" + c + ":pair:" +
//!   q), 2)` is the period of the pair (0: the first, 1: the second) in
//!   which `c` is on; it is off in the other.

use super::assign::{prf_u64, scale};
use super::{Design, Period, SwitchbackScheme, TrialSpec};

/// A switchback's grid: `on[c][k]` says whether community `communities[c]`
/// is on (treated) in period `k` (`periods[k]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchbackSchedule {
    /// Sorted by byte order.
    pub communities: Vec<String>,
    pub periods: Vec<Period>,
    pub on: Vec<Vec<bool>>,
}

impl SwitchbackSchedule {
    /// The period holding `now_unix` (`None` before the first or from the
    /// end of the last).
    pub fn period_at(&self, now_unix: i64) -> Option<usize> {
        self.periods
            .iter()
            .position(|p| p.start <= now_unix && now_unix < p.end)
    }

    /// Whether `community` is on at `now_unix`; `None` for a community not
    /// in the design or a time outside its periods (the trial then serves
    /// nobody).
    pub fn on_at(&self, community: &str, now_unix: i64) -> Option<bool> {
        let c = self.communities.iter().position(|x| x == community)?;
        Some(self.on[c][self.period_at(now_unix)?])
    }

    /// Whether `community` is on in period `k`.
    pub fn on_in(&self, community: &str, k: usize) -> Option<bool> {
        let c = self.communities.iter().position(|x| x == community)?;
        self.on[c].get(k).copied()
    }

    /// The first period edge after `now_unix` (a switch, or the end of the
    /// last period), for bounding how long an answer stays valid.
    pub fn next_switch(&self, now_unix: i64) -> Option<i64> {
        self.periods
            .iter()
            .flat_map(|p| [p.start, p.end])
            .find(|&t| t > now_unix)
    }
}

/// The schedule of a switchback design (see the module docs); `None` for
/// other designs.
pub fn switchback_schedule(spec: &TrialSpec, seed: u64) -> Option<SwitchbackSchedule> {
    let Design::Switchback {
        communities,
        scheme,
        ..
    } = &spec.design
    else {
        return None;
    };
    let mut sorted = communities.clone();
    sorted.sort();
    let periods = spec.periods();
    let n = periods.len();
    let mut on = vec![vec![false; n]; sorted.len()];
    match *scheme {
        SwitchbackScheme::Independent { probability } => {
            // Multiplying by a power of two is exact; floor(p · 2^64).
            let threshold = (probability * 18_446_744_073_709_551_616.0).floor() as u128;
            for (c, name) in sorted.iter().enumerate() {
                for (k, cell) in on[c].iter_mut().enumerate() {
                    let h = prf_u64(format!("switchback:{seed}:{name}:{k}").as_bytes());
                    *cell = u128::from(h) < threshold;
                }
            }
        }
        SwitchbackScheme::Balanced => {
            #[allow(clippy::needless_range_loop)] // k is also the draw's label
            for k in 0..n {
                let mut order: Vec<usize> = (0..sorted.len()).collect();
                for j in (1..order.len()).rev() {
                    let h = prf_u64(format!("switchback:{seed}:{k}:{j}").as_bytes());
                    order.swap(j, scale(h, j as u64 + 1) as usize);
                }
                for &c in &order[..sorted.len() / 2] {
                    on[c][k] = true;
                }
            }
        }
        SwitchbackScheme::BlockedPairs => {
            for (c, name) in sorted.iter().enumerate() {
                for q in 0..n / 2 {
                    let h = prf_u64(format!("switchback:{seed}:{name}:pair:{q}").as_bytes());
                    on[c][2 * q + scale(h, 2) as usize] = true;
                }
            }
        }
    }
    Some(SwitchbackSchedule {
        communities: sorted,
        periods,
        on,
    })
}
