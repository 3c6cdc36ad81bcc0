//! Stratified permutation tests for per-user randomisation within
//! communities (blocks).
//!
//! Statistic: the block-size-weighted difference in means
//! `τ̂ = Σ_s (n_s/n) (ȳ_{1s} − ȳ_{0s})` over strata containing both arms
//! (Imbens & Rubin 2015, §9.5). The reference distribution re-randomises
//! users within each stratum, keeping the number treated per stratum fixed
//! ([`crate::randomization::randomisation_test`]): exact enumeration of
//! `Π_s C(n_s, k_s)` assignments when small, seeded sampling otherwise.

use crate::randomization::{randomisation_test, Alternative, RandomisationResult};
use crate::{Result, StatsError};

/// Weighted within-stratum difference in means for 0/1 `labels`.
/// Strata with only one arm are skipped; errors when none has both arms.
pub fn stratified_difference(values: &[f64], labels: &[usize], strata: &[usize]) -> Result<f64> {
    let ns = strata.iter().max().map_or(0, |m| m + 1);
    let mut acc = vec![(0.0, 0.0, 0.0, 0.0); ns];
    for ((v, &l), &s) in values.iter().zip(labels).zip(strata) {
        let a = &mut acc[s];
        if l == 1 {
            a.0 += v;
            a.1 += 1.0;
        } else {
            a.2 += v;
            a.3 += 1.0;
        }
    }
    let (mut num, mut w) = (0.0, 0.0);
    for a in &acc {
        if a.1 > 0.0 && a.3 > 0.0 {
            let n = a.1 + a.3;
            num += n * (a.0 / a.1 - a.2 / a.3);
            w += n;
        }
    }
    if w == 0.0 {
        return Err(StatsError::Degenerate(
            "no stratum contains both arms".into(),
        ));
    }
    Ok(num / w)
}

/// Stratified permutation test of `values` by `treated` within `strata`
/// (dense or sparse stratum ids). Returns the randomisation result whose
/// `statistic` is [`stratified_difference`].
pub fn stratified_permutation_test(
    values: &[f64],
    treated: &[bool],
    strata: &[usize],
    alternative: Alternative,
    max_enumerate: usize,
    draws: usize,
    seed: u64,
) -> Result<RandomisationResult> {
    let n = values.len();
    if treated.len() != n || strata.len() != n {
        return Err(StatsError::InvalidInput(
            "values, treated and strata lengths differ".into(),
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::InvalidInput("non-finite value".into()));
    }
    // densify strata
    let mut map = std::collections::BTreeMap::new();
    for &s in strata {
        let k = map.len();
        map.entry(s).or_insert(k);
    }
    let dense: Vec<usize> = strata.iter().map(|s| map[s]).collect();
    let labels: Vec<usize> = treated.iter().map(|&t| usize::from(t)).collect();
    randomisation_test(
        &labels,
        Some(&dense),
        |a| stratified_difference(values, a, &dense),
        alternative,
        max_enumerate,
        draws,
        seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/few_randomization.json");

    #[test]
    fn matches_python_enumeration() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["stratified_cases"].as_array().unwrap();
        assert!(cases.len() >= 2);
        for c in cases {
            let values: Vec<f64> = serde_json::from_value(c["values"].clone()).unwrap();
            let treated: Vec<bool> = serde_json::from_value(c["treated"].clone()).unwrap();
            let strata: Vec<usize> = serde_json::from_value(c["strata"].clone()).unwrap();
            let r = stratified_permutation_test(
                &values,
                &treated,
                &strata,
                Alternative::TwoSided,
                1_000_000,
                0,
                0,
            )
            .unwrap();
            assert!(r.exact);
            assert_eq!(r.total_assignments, c["n_assignments"].as_u64().unwrap());
            assert!((r.statistic - c["statistic"].as_f64().unwrap()).abs() < 1e-12);
            assert!(
                (r.p_value - c["p"].as_f64().unwrap()).abs() < 1e-12,
                "{}",
                c["name"]
            );
            assert!((r.min_attainable_p - c["min_p"].as_f64().unwrap()).abs() < 1e-12);
            // sampled version within Monte Carlo error of the exact p
            let s = stratified_permutation_test(
                &values,
                &treated,
                &strata,
                Alternative::TwoSided,
                10,
                5000,
                9,
            )
            .unwrap();
            assert!(!s.exact);
            let sd = (r.p_value * (1.0 - r.p_value) / 5000.0).sqrt();
            assert!(
                (s.p_value - r.p_value).abs() < 4.0 * sd + 2e-4,
                "{} sampled {}",
                c["name"],
                s.p_value
            );
        }
    }

    #[test]
    fn no_stratum_with_both_arms_is_degenerate() {
        let r = stratified_permutation_test(
            &[1.0, 2.0, 3.0, 4.0],
            &[true, true, false, false],
            &[0, 0, 1, 1],
            Alternative::TwoSided,
            100,
            10,
            1,
        );
        assert!(matches!(r, Err(StatsError::Degenerate(_))));
    }

    proptest! {
        #[test]
        fn p_bounds_and_stratum_relabelling(
            vals in proptest::collection::vec(-5.0f64..5.0, 8..12),
            offset in 0usize..50,
        ) {
            let n = vals.len();
            let treated: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
            let strata: Vec<usize> = (0..n).map(|i| i / 4).collect();
            let r = stratified_permutation_test(&vals, &treated, &strata, Alternative::TwoSided, 100_000, 0, 0).unwrap();
            prop_assert!(r.p_value > 0.0 && r.p_value <= 1.0);
            prop_assert!(r.min_attainable_p <= r.p_value + 1e-15);
            let relabelled: Vec<usize> = strata.iter().map(|s| 1000 - s * 7 + offset).collect();
            let r2 = stratified_permutation_test(&vals, &treated, &relabelled, Alternative::TwoSided, 100_000, 0, 0).unwrap();
            prop_assert!((r.p_value - r2.p_value).abs() < 1e-12);
        }
    }
}
