use super::chi2::{goodness_of_fit, independence};
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn arm_index(spec: &TrialSpec, arm: &Arm) -> usize {
    spec.arms.iter().position(|a| a == arm).unwrap()
}

/// Values computed by independent Python implementations of the
/// definitions in `docs/experiments.md` (the hot-path ones by
/// `src/experiments/reference/vectors.py`).
#[test]
fn known_vectors() {
    assert_eq!(
        prf_u64(b"thanks-button:user-42"),
        18_077_191_755_200_951_268
    );
    // murmur3("thanks-button:user-42") = 0xa8ddddba, in the upper 32 bits.
    assert_eq!(
        hash_point("thanks-button", "user-42"),
        12_168_125_559_158_603_776
    );
    assert_eq!(scale(12_168_125_559_158_603_776, 4), 2);
    let thanks = spec(THANKS, "t");
    assert_eq!(hash_arm(&thanks, "user-42").variant, "heart");

    let h = spec(VALID_HASH, "h");
    let arms: Vec<&str> = ["user-1", "user-2", "user-3", "alice", "bob"]
        .iter()
        .map(|u| hash_arm(&h, u).variant.as_str())
        .collect();
    assert_eq!(arms, ["short", "long", "short", "short", "long"]);
    let positions: Vec<u32> = ["user-1", "user-2", "user-3", "alice", "bob"]
        .iter()
        .map(|u| layer_position("onboarding", u))
        .collect();
    assert_eq!(positions, [326, 42, 4194, 1879, 1015]);
    assert!(h.in_layer("user-1") && h.in_layer("user-2") && h.in_layer("user-3"));
    let ramp: Vec<u64> = ["user-1", "user-2", "user-3", "alice", "bob"]
        .iter()
        .map(|u| ramp_position("thanks-button", u))
        .collect();
    assert_eq!(ramp, [32, 85, 22, 18, 99]);

    assert_eq!(
        blocked_block(&thanks, 42, r#"["wiki-a"]"#, 0),
        [1, 0, 1, 2, 0, 0, 2, 0]
    );
    assert_eq!(
        blocked_block(&thanks, 42, r#"["wiki-a"]"#, 1),
        [0, 1, 0, 0, 1, 2, 2, 0]
    );
    assert_eq!(
        blocked_block(&thanks, 42, r#"["wiki-a"]"#, 2),
        [2, 2, 1, 1, 0, 0, 0, 0]
    );
    assert_eq!(
        blocked_arm(&thanks, 42, r#"["wiki-a"]"#, 11).variant,
        "control"
    );
    assert_eq!(
        blocked_arm(&thanks, 42, r#"["wiki-a"]"#, 13).variant,
        "banner"
    );

    let c = spec(VALID_CLUSTER, "c");
    let alloc: Vec<(String, usize)> = cluster_allocation(&c, 7)
        .into_iter()
        .map(|(k, a)| (k, arm_index(&c, a)))
        .collect();
    let expected: Vec<(String, usize)> = [
        ("c1", 0),
        ("c2", 1),
        ("c3", 2),
        ("c4", 1),
        ("c5", 0),
        ("c6", 0),
        ("c7", 2),
    ]
    .iter()
    .map(|&(k, a)| (k.to_string(), a))
    .collect();
    assert_eq!(alloc, expected);

    let d = spec(DASHBOARD, "d");
    let s = stepped_wedge_schedule(&d, 2027);
    let month = |m: &str| parse_rfc3339(&format!("2027-{m}-01T00:00:00Z")).unwrap();
    assert_eq!(
        s,
        [
            ("social-c".to_string(), month("03")),
            ("hackerspace-d".to_string(), month("04")),
            ("wiki-a".to_string(), month("05")),
            ("coop-b".to_string(), month("06")),
        ]
    );
    assert_eq!(
        arm_at(&d, &s, "wiki-a", month("05") - 1).unwrap().variant,
        "off"
    );
    assert_eq!(arm_at(&d, &s, "wiki-a", month("05")).unwrap().variant, "on");
    assert_eq!(
        arm_at(&d, &s, "social-c", month("06")).unwrap().variant,
        "on"
    );
    assert_eq!(arm_at(&d, &s, "elsewhere", month("06")), None);
    assert!(stepped_wedge_schedule(&thanks, 1).is_empty());
    assert!(cluster_allocation(&thanks, 1).is_empty());
    assert_eq!(
        Randomisation::from_bytes([0, 0, 0, 0, 0, 0, 1, 0]),
        Randomisation::new(256)
    );
}

/// A trial with the given weights (arm 0 is control) on a hash design.
fn weighted(weights: &[u32], salt: &str) -> TrialSpec {
    let mut s = spec(VALID_HASH, "w");
    s.arms = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Arm {
            variant: format!("v{i}"),
            weight: w,
            control: i == 0,
        })
        .collect();
    s.design = Design::Hash { salt: salt.into() };
    s
}

#[test]
fn hash_assignment_is_uniform_over_the_weights() {
    for weights in [
        &[1u32, 1][..],
        &[2, 1, 1],
        &[1, 3],
        &[5, 3, 1, 1],
        &[1, 1, 1, 1, 1, 1, 1],
    ] {
        let s = weighted(weights, "uniformity");
        let mut counts = vec![0u64; weights.len()];
        for i in 0..100_000 {
            counts[arm_index(&s, hash_arm(&s, &format!("user-{i}")))] += 1;
        }
        let p = goodness_of_fit(&counts, weights);
        assert!(p > 0.001, "{weights:?}: {counts:?}, p = {p}");
    }
    // Layer positions are uniform over 10 equal bins.
    let mut bins = vec![0u64; 10];
    for i in 0..100_000 {
        bins[(layer_position("l", &format!("user-{i}")) / 1000) as usize] += 1;
    }
    assert!(goodness_of_fit(&bins, &[1; 10]) > 0.001, "{bins:?}");
}

#[test]
fn hash_assignments_of_different_trials_are_independent() {
    for (a, b) in [
        ("trial-a", "trial-b"),
        ("x", "y"),
        ("thanks-button", "value-dashboard"),
    ] {
        let s = weighted(&[2, 1, 1], a);
        let t = weighted(&[1, 1], b);
        let mut table = vec![vec![0u64; 2]; 3];
        for i in 0..50_000 {
            let u = format!("member-{i}");
            table[arm_index(&s, hash_arm(&s, &u))][arm_index(&t, hash_arm(&t, &u))] += 1;
        }
        let p = independence(&table);
        assert!(p > 0.001, "{a}/{b}: {table:?}, p = {p}");
        // And of the layer position.
        let mut table = vec![vec![0u64; 2]; 3];
        for i in 0..50_000 {
            let u = format!("member-{i}");
            let in_first_half = usize::from(layer_position(b, &u) < 5000);
            table[arm_index(&s, hash_arm(&s, &u))][in_first_half] += 1;
        }
        assert!(independence(&table) > 0.001, "{a}/{b} layer: {table:?}");
    }
}

#[test]
fn sample_ratio_on_a_simulated_population_matches_the_allocation() {
    // 60,000 simulated users in five communities; the fixture trial takes
    // eligible members (wiki-a and coop-b) in the first half of its layer.
    let s = spec(VALID_HASH, "h");
    let communities = ["wiki-a", "coop-b", "social-c", "hackerspace-d", "garden-e"];
    let (mut eligible, mut in_layer) = (0u64, 0u64);
    let mut counts = [0u64; 2];
    for i in 0..60_000u64 {
        let id = format!("u{i:05}");
        let community = communities[scale(prf_u64(format!("sim:{i}").as_bytes()), 5) as usize];
        let ctx = serde_json::json!({"targetingKey": id, "community": community});
        let ctx = EvalContext::new(&ctx, 0);
        if !s.is_eligible(&ctx) {
            continue;
        }
        eligible += 1;
        let unit = s.unit.unit_id(&ctx).unwrap();
        if !s.in_layer(&unit) {
            continue;
        }
        in_layer += 1;
        counts[arm_index(&s, hash_arm(&s, &unit))] += 1;
    }
    // About 2/5 eligible, half of those in the layer (within 5 sd).
    let within = |x: u64, n: u64, p: f64| {
        let (m, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
        (x as f64 - m).abs() < 5.0 * sd
    };
    assert!(within(eligible, 60_000, 0.4), "{eligible}");
    assert!(within(in_layer, eligible, 0.5), "{in_layer} of {eligible}");
    let p = goodness_of_fit(&counts, &[1, 3]);
    assert!(p > 0.001, "{counts:?}, p = {p}");
}

#[test]
fn every_order_of_four_communities_appears() {
    let d = spec(DASHBOARD, "d");
    let mut orders: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    for seed in 0..24_000 {
        let order = stepped_wedge_schedule(&d, seed)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        *orders.entry(order).or_default() += 1;
    }
    assert_eq!(orders.len(), 24);
    let counts: Vec<u64> = orders.values().copied().collect();
    assert!(goodness_of_fit(&counts, &[1; 24]) > 0.001, "{counts:?}");

    // A four-arm cluster design over four communities: every allocation.
    let mut c = spec(VALID_CLUSTER, "c");
    c.arms = (0..4)
        .map(|i| Arm {
            variant: format!("v{i}"),
            weight: 1,
            control: i == 0,
        })
        .collect();
    c.design = Design::Cluster {
        communities: ["a", "b", "c", "d"].map(String::from).to_vec(),
    };
    let mut seen = BTreeSet::new();
    for seed in 0..2_000 {
        let alloc: Vec<String> = cluster_allocation(&c, seed)
            .values()
            .map(|a| a.variant.clone())
            .collect();
        seen.insert(alloc);
    }
    assert_eq!(seen.len(), 24);
}

fn blocked_spec(weights: &[u32], multiple: u64) -> TrialSpec {
    let mut s = weighted(weights, "unused");
    let b = s.minimal_block() * multiple;
    s.design = Design::Blocked {
        strata: vec!["community".into()],
        block_size: b,
    };
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hash_assignment_is_deterministic(salt in "[a-z0-9-]{1,12}", unit in "\\PC{0,20}") {
        let s = weighted(&[2, 1, 1], &salt);
        let a = hash_arm(&s, &unit).clone();
        prop_assert_eq!(&a, hash_arm(&s, &unit));
        let expected = scale(hash_point(&salt, &unit), 4);
        let index = if expected < 2 { 0 } else { expected as usize - 1 };
        prop_assert_eq!(&a, &s.arms[index]);
        prop_assert!(layer_position(&salt, &unit) < LAYER_SPACE);
    }

    #[test]
    fn blocked_assignment_stays_within_one_block_of_balance(
        weights in prop::collection::vec(1u32..5, 2..5),
        multiple in 1u64..4,
        seed in any::<u64>(),
        stratum in "[a-z\\[\\]\",]{0,12}",
        n in 1u64..200,
    ) {
        let s = blocked_spec(&weights, multiple);
        let b = match s.design { Design::Blocked { block_size, .. } => block_size, _ => unreachable!() };
        let total = s.total_weight();
        let mut counts = vec![0u64; weights.len()];
        for position in 0..n {
            counts[arm_index(&s, blocked_arm(&s, seed, &stratum, position))] += 1;
            let seen = position + 1;
            for (i, &c) in counts.iter().enumerate() {
                let expected = seen as f64 * f64::from(weights[i]) / total as f64;
                prop_assert!((c as f64 - expected).abs() <= b as f64,
                    "arm {} has {} after {} (expected {})", i, c, seen, expected);
            }
            if seen % b == 0 {
                // Every complete block is exactly balanced.
                for (i, &c) in counts.iter().enumerate() {
                    prop_assert_eq!(c * total, seen * u64::from(weights[i]));
                }
            }
        }
    }

    #[test]
    fn cluster_and_wedge_draws_are_reproducible(seed in any::<u64>()) {
        let c = spec(VALID_CLUSTER, "c");
        let a = cluster_allocation(&c, seed);
        prop_assert_eq!(&a, &cluster_allocation(&c, seed));
        // Balanced per weights 2:1:1 over 7 communities: 3, 2, 2.
        let mut per_arm = [0; 3];
        for arm in a.values() {
            per_arm[arm_index(&c, arm)] += 1;
        }
        prop_assert_eq!(per_arm, [3, 2, 2]);
        let d = spec(DASHBOARD, "d");
        let s = stepped_wedge_schedule(&d, seed);
        prop_assert_eq!(&s, &stepped_wedge_schedule(&d, seed));
        // One community per monthly step, every community exactly once.
        let steps: Vec<i64> = s.iter().map(|(_, t)| *t).collect();
        prop_assert!(steps.windows(2).all(|w| w[0] < w[1]));
        let names: BTreeSet<&str> = s.iter().map(|(c, _)| c.as_str()).collect();
        prop_assert_eq!(names.len(), 4);
        // Before the first step everyone is in control, after the last all treated.
        for (community, _) in &s {
            prop_assert_eq!(&arm_at(&d, &s, community, d.schedule.start).unwrap().variant, "off");
            prop_assert_eq!(&arm_at(&d, &s, community, steps[3]).unwrap().variant, "on");
        }
    }
}
