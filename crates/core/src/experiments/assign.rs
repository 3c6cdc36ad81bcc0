//! Assignment of units to arms. Everything that must be reproducible uses
//! one pseudorandom function, defined so that another language can
//! recompute it:
//!
//! ```text
//! prf(msg)     = the first 8 bytes of SHA-256(utf8(msg)), as a big-endian u64
//! scale(h, n)  = floor(h * n / 2^64)            (an integer in [0, n))
//! ```
//!
//! The hot path (every evaluation under a running trial) uses flagd's
//! bucketing instead of SHA-256, for speed: `m(msg) = murmur3_x86_32(msg,
//! seed 0)` and `bucket(m, n) = floor(m * n / 2^32)`:
//!
//! - hash design: `p = bucket(m(salt + ":" + unit_id), W)` with `W` the sum
//!   of the weights; the arm is the first (in file order) whose cumulative
//!   weight exceeds `p` (flagd's `fractional` with bucketing value
//!   `salt:unit_id`).
//! - layer position: `bucket(m("layer:" + layer_name + ":" + unit_id), 10000)`.
//! - ramp position: `bucket(m("ramp:" + trial_key + ":" + unit_id), 100)`.
//!
//! The draws made once per trial or per block use SHA-256:
//! - blocked: block `k = position div B`, index `position mod B`; the block
//!   starts as arm 0 repeated `B * w0 / W` times, then arm 1, ... (file
//!   order) and is shuffled by Fisher–Yates from the end: for `j = B-1`
//!   down to 1, `r = scale(prf("block:" + seed + ":" + stratum + ":" + k +
//!   ":" + j), j + 1)`, swap elements `j` and `r`. Numbers are written in
//!   decimal.
//! - cluster: the communities sorted by byte order, shuffled the same way
//!   with `prf("cluster:" + seed + ":" + j)`; the first `c0` get arm 0, the
//!   next `c1` arm 1, ... where the counts `ci` are the largest-remainder
//!   apportionment of the communities by weight (ties to the earlier arm).
//! - stepped wedge: the communities sorted, shuffled with
//!   `prf("wedge:" + seed + ":" + j)`; the community at position `p` (of `C`)
//!   crosses over at step `floor(p * S / C)` (of `S`).

use super::{Arm, Design, TrialSpec};
use crate::flags::murmur3::Murmur3;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Size of the layer hash space: positions are `0..LAYER_SPACE`.
pub const LAYER_SPACE: u32 = 10_000;

/// The seed of a trial's randomisation, drawn by the caller when the trial
/// starts (from a cryptographic RNG) and recorded with the trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Randomisation {
    pub seed: u64,
}

impl Randomisation {
    pub fn new(seed: u64) -> Self {
        Randomisation { seed }
    }

    /// From 8 random bytes (big-endian).
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Randomisation {
            seed: u64::from_be_bytes(bytes),
        }
    }
}

/// The first 8 bytes of SHA-256(msg), big-endian.
pub fn prf_u64(msg: &[u8]) -> u64 {
    let d = Sha256::digest(msg);
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// `floor(h * n / 2^64)`: maps a uniform u64 to `[0, n)`.
pub fn scale(h: u64, n: u64) -> u64 {
    ((u128::from(h) * u128::from(n)) >> 64) as u64
}

/// The point of a unit on the hot path (hash design, layers, ramp):
/// `murmur3_x86_32(parts joined, seed 0)` in the upper 32 bits of a u64, so
/// that `scale(point, n) = (murmur3 * n) >> 32` is exactly flagd's
/// `fractional` bucketing. Streaming: no string is built.
fn murmur_point(parts: &[&str]) -> u64 {
    let mut h = Murmur3::new(0);
    for p in parts {
        h.write_str(p);
    }
    u64::from(h.finish()) << 32
}

/// `murmur3(salt ":" unit_id)` as a point for [`scale`] (see the module docs).
pub fn hash_point(salt: &str, unit_id: &str) -> u64 {
    murmur_point(&[salt, ":", unit_id])
}

/// The arm at point `p` in `[0, total weight)`.
fn arm_for_point(arms: &[Arm], p: u64) -> usize {
    let mut acc = 0u64;
    for (i, a) in arms.iter().enumerate() {
        acc += u64::from(a.weight);
        if p < acc {
            return i;
        }
    }
    arms.len() - 1
}

/// Stateless salted hash assignment (see the module docs). Uses
/// [`TrialSpec::salt`]; the layer does not affect the arm (check
/// [`TrialSpec::in_layer`] first).
pub fn hash_arm<'a>(spec: &'a TrialSpec, unit_id: &str) -> &'a Arm {
    let p = scale(hash_point(spec.salt(), unit_id), spec.total_weight());
    &spec.arms[arm_for_point(&spec.arms, p)]
}

/// A unit's position in a layer, in `0..10000`:
/// `scale(murmur3("layer:" + layer + ":" + unit_id), 10000)`.
pub fn layer_position(layer: &str, unit_id: &str) -> u32 {
    scale(
        murmur_point(&["layer:", layer, ":", unit_id]),
        u64::from(LAYER_SPACE),
    ) as u32
}

/// A unit's ramp position, in `0..100`:
/// `scale(murmur3("ramp:" + trial_key + ":" + unit_id), 100)`.
pub fn ramp_position(trial_key: &str, unit_id: &str) -> u64 {
    scale(murmur_point(&["ramp:", trial_key, ":", unit_id]), 100)
}

fn shuffle<T>(items: &mut [T], mut draw: impl FnMut(usize) -> u64) {
    for j in (1..items.len()).rev() {
        let r = scale(draw(j), j as u64 + 1) as usize;
        items.swap(j, r);
    }
}

fn block_size(spec: &TrialSpec) -> u64 {
    match &spec.design {
        Design::Blocked { block_size, .. } => *block_size,
        _ => spec.minimal_block(),
    }
}

/// Block `k` of `stratum`: arm indices (into `spec.arms`), length = the
/// design's block size (the minimal block for other designs).
pub fn blocked_block(spec: &TrialSpec, seed: u64, stratum: &str, k: u64) -> Vec<usize> {
    let b = block_size(spec);
    let total = spec.total_weight();
    let mut block: Vec<usize> = Vec::with_capacity(b as usize);
    for (i, a) in spec.arms.iter().enumerate() {
        // b is a multiple of total / gcd, so this is exact.
        let n = b * u64::from(a.weight) / total;
        block.extend(std::iter::repeat_n(i, n as usize));
    }
    shuffle(&mut block, |j| {
        prf_u64(format!("block:{seed}:{stratum}:{k}:{j}").as_bytes())
    });
    block
}

/// The arm of the `position`-th unit (0-based) to enter `stratum`, by
/// random permuted blocks (see the module docs and [`TrialSpec::stratum`]).
pub fn blocked_arm<'a>(spec: &'a TrialSpec, seed: u64, stratum: &str, position: u64) -> &'a Arm {
    let b = block_size(spec);
    let block = blocked_block(spec, seed, stratum, position / b);
    &spec.arms[block[(position % b) as usize]]
}

/// Largest-remainder apportionment of `n` clusters by the arm weights
/// (ties to the earlier arm).
pub(crate) fn cluster_counts(arms: &[Arm], n: usize) -> Vec<usize> {
    let total: u64 = arms.iter().map(|a| u64::from(a.weight)).sum();
    let n64 = n as u64;
    let mut counts: Vec<usize> = arms
        .iter()
        .map(|a| (n64 * u64::from(a.weight) / total) as usize)
        .collect();
    let mut left = n - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..arms.len()).collect();
    // Stable sort: equal remainders keep file order.
    order.sort_by_key(|&i| std::cmp::Reverse(n64 * u64::from(arms[i].weight) % total));
    for i in order {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

fn sorted_communities(spec: &TrialSpec) -> Vec<String> {
    let mut c = spec.design.communities().unwrap_or(&[]).to_vec();
    c.sort();
    c
}

/// Whole communities to arms, balanced by weight (see the module docs).
/// Empty unless the design lists communities.
pub fn cluster_allocation(spec: &TrialSpec, seed: u64) -> BTreeMap<String, &Arm> {
    let mut communities = sorted_communities(spec);
    shuffle(&mut communities, |j| {
        prf_u64(format!("cluster:{seed}:{j}").as_bytes())
    });
    let counts = cluster_counts(&spec.arms, communities.len());
    let slots = counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| std::iter::repeat_n(i, c));
    communities
        .into_iter()
        .zip(slots)
        .map(|(c, i)| (c, &spec.arms[i]))
        .collect()
}

/// The communities of a stepped-wedge design with their crossover times
/// (Unix seconds), in crossover order (see the module docs). Empty for
/// other designs.
pub fn stepped_wedge_schedule(spec: &TrialSpec, seed: u64) -> Vec<(String, i64)> {
    let Design::SteppedWedge { steps, .. } = &spec.design else {
        return Vec::new();
    };
    let mut communities = sorted_communities(spec);
    shuffle(&mut communities, |j| {
        prf_u64(format!("wedge:{seed}:{j}").as_bytes())
    });
    let c = communities.len();
    communities
        .into_iter()
        .enumerate()
        .map(|(p, name)| (name, steps[p * steps.len() / c]))
        .collect()
}

/// The arm of `community` at `now_unix` under a stepped-wedge schedule:
/// control before its crossover time, the treatment from it on. `None`
/// for a community that is not in the schedule.
pub fn arm_at<'a>(
    spec: &'a TrialSpec,
    schedule: &[(String, i64)],
    community: &str,
    now_unix: i64,
) -> Option<&'a Arm> {
    let (_, crossover) = schedule.iter().find(|(c, _)| c == community)?;
    Some(if now_unix < *crossover {
        spec.control()
    } else {
        spec.treatment()
    })
}
