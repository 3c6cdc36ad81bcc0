//! Exact randomisation (design-based) inference for few-community designs.
//!
//! The randomisation actually used is described by one label per
//! randomisation unit (community) and, optionally, a stratum per unit. The
//! set of assignments the design allowed is every distinct rearrangement of
//! the labels within each stratum:
//!
//! * cluster draw, `k` of `m` treated: labels `0/1` → `C(m, k)` assignments;
//! * stepped wedge: label = the step a community crosses over at → all orders
//!   of communities to steps (`m!` with one community per step, the
//!   multinomial `m!/Π n_s!` otherwise);
//! * blocked / stratified: the product of the per-stratum counts.
//!
//! The p-value is `#{a : T(a) ⪰ T(obs)} / N` over all `N` assignments (Fisher
//! 1935; Rosenbaum 2002 ch. 2), where `⪰` is "at least as extreme" for the
//! chosen alternative. When `N` exceeds the enumeration budget, assignments
//! are drawn uniformly with a seeded ChaCha20 RNG and
//! `p = (1 + #{T* ⪰ T}) / (1 + B)` (Phipson & Smyth 2010).
//!
//! The **smallest attainable p-value** is reported alongside: with exact
//! enumeration it is the share of assignments tying the most extreme value of
//! the statistic (at least `1/N`); when sampling it is `1/(1+B)`. With 4
//! communities in a cluster draw of 2, `N = 6` and no two-sided test can reach
//! 0.05 — the reader must see that.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::{Result, StatsError};

/// Direction of the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// `|T*| ≥ |T|`.
    #[default]
    TwoSided,
    /// `T* ≥ T`.
    Greater,
    /// `T* ≤ T`.
    Less,
}

/// Outcome of a randomisation test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RandomisationResult {
    /// Observed statistic `T(obs)`.
    pub statistic: f64,
    /// Randomisation p-value.
    pub p_value: f64,
    /// Smallest p-value this design (and, when enumerated, these data) can
    /// produce; always `≤ p_value`.
    pub min_attainable_p: f64,
    /// `1/N`: the design's floor when all statistics are distinct.
    pub design_min_p: f64,
    /// Number of assignments the design allows, `N` (saturating at `u64::MAX`).
    pub total_assignments: u64,
    /// Number of assignments evaluated (all of them when `exact`).
    pub evaluated: u64,
    /// True when every allowed assignment was enumerated.
    pub exact: bool,
    /// RNG seed used when sampling.
    pub seed: Option<u64>,
    /// Test direction.
    pub alternative: Alternative,
}

/// Binomial coefficient with saturation at `u128::MAX`.
fn binom(n: u64, k: u64) -> u128 {
    let k = k.min(n - k);
    let mut r: u128 = 1;
    for i in 0..k {
        r = match r.checked_mul((n - i) as u128) {
            Some(v) => v / (i as u128 + 1),
            None => return u128::MAX,
        };
    }
    r
}

fn strata_positions(n: usize, strata: Option<&[usize]>) -> Result<Vec<Vec<usize>>> {
    match strata {
        None => Ok(vec![(0..n).collect()]),
        Some(s) => {
            if s.len() != n {
                return Err(StatsError::InvalidInput(format!(
                    "{} strata for {n} randomisation units",
                    s.len()
                )));
            }
            Ok(crate::cluster::group_indices(s))
        }
    }
}

/// Number of distinct within-stratum rearrangements of `labels`
/// (`Π_s n_s! / Π_{s,ℓ} n_{sℓ}!`), saturating at `u128::MAX`.
pub fn count_assignments(labels: &[usize], strata: Option<&[usize]>) -> Result<u128> {
    let groups = strata_positions(labels.len(), strata)?;
    let mut total: u128 = 1;
    for g in groups {
        let mut counts = std::collections::BTreeMap::<usize, u64>::new();
        for &i in &g {
            *counts.entry(labels[i]).or_default() += 1;
        }
        let mut left = g.len() as u64;
        for (_, c) in counts {
            let b = binom(left, c);
            total = total.saturating_mul(b);
            left -= c;
        }
    }
    Ok(total)
}

/// Next lexicographic permutation in place; false when `v` was the last one.
fn next_permutation(v: &mut [usize]) -> bool {
    if v.len() < 2 {
        return false;
    }
    let mut i = v.len() - 1;
    while i > 0 && v[i - 1] >= v[i] {
        i -= 1;
    }
    if i == 0 {
        return false;
    }
    let mut j = v.len() - 1;
    while v[j] <= v[i - 1] {
        j -= 1;
    }
    v.swap(i - 1, j);
    v[i..].reverse();
    true
}

/// All distinct within-stratum rearrangements of `labels`, or an error when
/// there are more than `limit`.
pub fn enumerate_assignments(
    labels: &[usize],
    strata: Option<&[usize]>,
    limit: usize,
) -> Result<Vec<Vec<usize>>> {
    let total = count_assignments(labels, strata)?;
    if total > limit as u128 {
        return Err(StatsError::InvalidInput(format!(
            "{total} assignments exceed the enumeration limit {limit}"
        )));
    }
    let groups = strata_positions(labels.len(), strata)?;
    let per: Vec<Vec<Vec<usize>>> = groups
        .iter()
        .map(|g| {
            let mut v: Vec<usize> = g.iter().map(|&i| labels[i]).collect();
            v.sort_unstable();
            let mut all = vec![v.clone()];
            while next_permutation(&mut v) {
                all.push(v.clone());
            }
            all
        })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    let mut idx = vec![0usize; per.len()];
    loop {
        let mut a = vec![0usize; labels.len()];
        for (s, g) in groups.iter().enumerate() {
            for (pos, &unit) in g.iter().enumerate() {
                a[unit] = per[s][idx[s]][pos];
            }
        }
        out.push(a);
        let mut s = 0;
        loop {
            if s == per.len() {
                return Ok(out);
            }
            idx[s] += 1;
            if idx[s] < per[s].len() {
                break;
            }
            idx[s] = 0;
            s += 1;
        }
    }
}

/// Randomisation test of a statistic over the design's assignments.
///
/// * `labels[u]`: the observed label of randomisation unit `u` (0/1 for
///   treated, or a step index for stepped-wedge designs);
/// * `strata`: optional stratum per unit; labels are only rearranged within
///   strata;
/// * `statistic(assignment)`: the test statistic for a labelling (it must
///   return the observed statistic for `labels`);
/// * enumerates when `N ≤ max_enumerate`, else draws `draws` assignments
///   with `seed`.
///
/// Ties are judged with a relative tolerance of `1e-9` of the largest
/// `|T|` so that floating-point noise never moves a p-value.
pub fn randomisation_test<F>(
    labels: &[usize],
    strata: Option<&[usize]>,
    mut statistic: F,
    alternative: Alternative,
    max_enumerate: usize,
    draws: usize,
    seed: u64,
) -> Result<RandomisationResult>
where
    F: FnMut(&[usize]) -> Result<f64>,
{
    if labels.is_empty() {
        return Err(StatsError::InvalidInput("no randomisation units".into()));
    }
    let total = count_assignments(labels, strata)?;
    if total < 2 {
        return Err(StatsError::Degenerate(
            "the design allows only one assignment; randomisation inference is impossible".into(),
        ));
    }
    let observed = statistic(labels)?;
    if !observed.is_finite() {
        return Err(StatsError::Degenerate(
            "observed statistic is not finite".into(),
        ));
    }
    let total_u64 = u64::try_from(total).unwrap_or(u64::MAX);
    let extreme = |t: f64, obs: f64, tol: f64| match alternative {
        Alternative::TwoSided => t.abs() >= obs.abs() - tol,
        Alternative::Greater => t >= obs - tol,
        Alternative::Less => t <= obs + tol,
    };
    if total <= max_enumerate as u128 {
        let all = enumerate_assignments(labels, strata, max_enumerate)?;
        let mut stats = Vec::with_capacity(all.len());
        for a in &all {
            let t = statistic(a)?;
            if !t.is_finite() {
                return Err(StatsError::Degenerate(
                    "statistic undefined for an allowed assignment".into(),
                ));
            }
            stats.push(t);
        }
        let scale = stats.iter().fold(observed.abs(), |m, t| m.max(t.abs()));
        let tol = 1e-9 * scale.max(1e-300);
        let n = stats.len() as f64;
        let count = stats.iter().filter(|&&t| extreme(t, observed, tol)).count();
        let most = match alternative {
            Alternative::TwoSided => stats.iter().fold(0.0f64, |m, t| m.max(t.abs())),
            Alternative::Greater => stats.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            Alternative::Less => stats.iter().cloned().fold(f64::INFINITY, f64::min),
        };
        let ties = stats.iter().filter(|&&t| extreme(t, most, tol)).count();
        Ok(RandomisationResult {
            statistic: observed,
            p_value: count as f64 / n,
            min_attainable_p: ties as f64 / n,
            design_min_p: 1.0 / n,
            total_assignments: total_u64,
            evaluated: stats.len() as u64,
            exact: true,
            seed: None,
            alternative,
        })
    } else {
        if draws == 0 {
            return Err(StatsError::InvalidInput(
                "too many assignments to enumerate and draws = 0".into(),
            ));
        }
        let groups = strata_positions(labels.len(), strata)?;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut a = labels.to_vec();
        let mut stats = Vec::with_capacity(draws);
        for _ in 0..draws {
            for g in &groups {
                // Fisher–Yates within the stratum
                for i in (1..g.len()).rev() {
                    let j = rng.random_range(0..=i);
                    a.swap(g[i], g[j]);
                }
            }
            let t = statistic(&a)?;
            if !t.is_finite() {
                return Err(StatsError::Degenerate(
                    "statistic undefined for an allowed assignment".into(),
                ));
            }
            stats.push(t);
        }
        let scale = stats.iter().fold(observed.abs(), |m, t| m.max(t.abs()));
        let tol = 1e-9 * scale.max(1e-300);
        let count = stats.iter().filter(|&&t| extreme(t, observed, tol)).count();
        let b = draws as f64;
        Ok(RandomisationResult {
            statistic: observed,
            p_value: (1.0 + count as f64) / (1.0 + b),
            min_attainable_p: 1.0 / (1.0 + b),
            design_min_p: 1.0 / total as f64,
            total_assignments: total_u64,
            evaluated: draws as u64,
            exact: false,
            seed: Some(seed),
            alternative,
        })
    }
}

/// Difference in means of unit values between label 1 and label 0, the
/// usual statistic for a cluster draw on cluster-level summaries.
pub fn diff_in_means(values: &[f64], labels: &[usize]) -> Result<f64> {
    let (mut s1, mut n1, mut s0, mut n0) = (0.0, 0.0, 0.0, 0.0);
    for (v, &l) in values.iter().zip(labels) {
        if l == 1 {
            s1 += v;
            n1 += 1.0;
        } else {
            s0 += v;
            n0 += 1.0;
        }
    }
    if n1 == 0.0 || n0 == 0.0 {
        return Err(StatsError::Degenerate("an arm is empty".into()));
    }
    Ok(s1 / n1 - s0 / n0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_randomization.json");

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1e-300)
    }

    #[test]
    fn counts_and_enumeration() {
        assert_eq!(
            count_assignments(&[1, 1, 0, 0, 0, 0, 0, 0], None).unwrap(),
            28
        );
        assert_eq!(count_assignments(&[0, 1, 2, 3], None).unwrap(), 24);
        assert_eq!(
            count_assignments(&[0, 1, 0, 1, 0, 1], Some(&[0, 0, 1, 1, 2, 2])).unwrap(),
            8
        );
        let all = enumerate_assignments(&[0, 1, 2, 3], None, 100).unwrap();
        assert_eq!(all.len(), 24);
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 24);
    }

    #[test]
    fn matches_python_enumeration() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["unit_cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        for c in cases {
            let values: Vec<f64> = serde_json::from_value(c["values"].clone()).unwrap();
            let labels: Vec<usize> = serde_json::from_value(c["labels"].clone()).unwrap();
            let strata: Option<Vec<usize>> = serde_json::from_value(c["strata"].clone()).unwrap();
            for (alt, key) in [
                (Alternative::TwoSided, "two_sided"),
                (Alternative::Greater, "greater"),
                (Alternative::Less, "less"),
            ] {
                let r = randomisation_test(
                    &labels,
                    strata.as_deref(),
                    |a| diff_in_means(&values, a),
                    alt,
                    1_000_000,
                    0,
                    0,
                )
                .unwrap();
                let e = &c[key];
                assert!(r.exact);
                assert_eq!(r.total_assignments, c["n_assignments"].as_u64().unwrap());
                assert!(rel(r.statistic, c["statistic"].as_f64().unwrap()) < 1e-12);
                assert!(
                    rel(r.p_value, e["p"].as_f64().unwrap()) < 1e-12,
                    "{} {key}",
                    c["name"]
                );
                assert!(
                    rel(r.min_attainable_p, e["min_p"].as_f64().unwrap()) < 1e-12,
                    "{} {key} min p",
                    c["name"]
                );
            }
        }
    }

    #[test]
    fn sampling_is_seeded_and_close() {
        let values: Vec<f64> = (0..14)
            .map(|i| (i as f64 * 0.37).sin() + (i % 3) as f64)
            .collect();
        let labels: Vec<usize> = (0..14).map(|i| usize::from(i < 7)).collect();
        let exact = randomisation_test(
            &labels,
            None,
            |a| diff_in_means(&values, a),
            Alternative::TwoSided,
            10_000,
            0,
            0,
        )
        .unwrap();
        assert!(exact.exact);
        let s = |seed| {
            randomisation_test(
                &labels,
                None,
                |a| diff_in_means(&values, a),
                Alternative::TwoSided,
                10,
                4000,
                seed,
            )
            .unwrap()
        };
        let a = s(3);
        assert_eq!(a, s(3));
        assert!(!a.exact);
        let sd = (exact.p_value * (1.0 - exact.p_value) / 4000.0).sqrt();
        assert!((a.p_value - exact.p_value).abs() < 4.0 * sd + 1e-3);
    }

    #[test]
    fn degenerate_designs() {
        // all units share one label: a single assignment
        assert!(matches!(
            randomisation_test(&[1, 1], None, |_| Ok(0.0), Alternative::TwoSided, 10, 10, 1),
            Err(StatsError::Degenerate(_))
        ));
        assert!(matches!(
            diff_in_means(&[1.0, 2.0], &[1, 1]),
            Err(StatsError::Degenerate(_))
        ));
    }

    proptest! {
        #[test]
        fn p_in_unit_interval_and_floor_below(
            vals in proptest::collection::vec(-10.0f64..10.0, 4..9),
            k in 1usize..3,
            shift in 0usize..8,
        ) {
            let m = vals.len();
            let labels: Vec<usize> = (0..m).map(|i| usize::from((i + shift) % m < k)).collect();
            for alt in [Alternative::TwoSided, Alternative::Greater, Alternative::Less] {
                let r = randomisation_test(&labels, None, |a| diff_in_means(&vals, a), alt, 1000, 0, 0).unwrap();
                prop_assert!(r.p_value > 0.0 && r.p_value <= 1.0);
                prop_assert!(r.min_attainable_p <= r.p_value + 1e-15);
                prop_assert!(r.design_min_p <= r.min_attainable_p + 1e-15);
            }
        }

        #[test]
        fn invariant_to_relabelling_units(
            vals in proptest::collection::vec(-10.0f64..10.0, 5..8),
            rot in 0usize..7,
        ) {
            let m = vals.len();
            let labels: Vec<usize> = (0..m).map(|i| usize::from(i < 2)).collect();
            let r1 = randomisation_test(&labels, None, |a| diff_in_means(&vals, a), Alternative::TwoSided, 1000, 0, 0).unwrap();
            // rotate the order of units (values and labels together)
            let perm: Vec<usize> = (0..m).map(|i| (i + rot) % m).collect();
            let v2: Vec<f64> = perm.iter().map(|&i| vals[i]).collect();
            let l2: Vec<usize> = perm.iter().map(|&i| labels[i]).collect();
            let r2 = randomisation_test(&l2, None, |a| diff_in_means(&v2, a), Alternative::TwoSided, 1000, 0, 0).unwrap();
            prop_assert!((r1.p_value - r2.p_value).abs() < 1e-12);
            prop_assert!((r1.min_attainable_p - r2.min_attainable_p).abs() < 1e-12);
            // swapping which arm is called "treated" leaves a two-sided p unchanged
            let l3: Vec<usize> = labels.iter().map(|&l| 1 - l).collect();
            let r3 = randomisation_test(&l3, None, |a| diff_in_means(&vals, a), Alternative::TwoSided, 1000, 0, 0).unwrap();
            prop_assert!((r1.p_value - r3.p_value).abs() < 1e-12);
        }
    }
}
