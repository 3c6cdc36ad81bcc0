//! Simulation-based power (`commonlab_sim::power`): reproducible whatever
//! the threads, honest under no effect, the stepped wedge's randomisation
//! floor, and what members randomised within communities reach.

use std::collections::BTreeMap;

use commonlab_core::experiments::parse_trial;
use commonlab_sim::power::{self, PlanDesign, PowerConfig, PowerReport};
use commonlab_sim::{SimError, SimParams};

/// A trial file with the given design, arms and metric sections.
fn trial(design: &str, alpha: f64, metric: &str, arms: &str) -> String {
    format!(
        r#"
key = "power-test"
title = "Power"
hypothesis = "More edits."
owner = "power@commonlab.example"
flag = "power-flag"
{eligibility}

[links]
wp2_parameter = "edit_rate"
wp3_feature = "power"

{arms}

{design}

[metrics.primary]
{metric}

[analysis]
alpha = {alpha}
mde = 0.1
sidedness = "two-sided"
horizon = "fixed"
correction = "holm"

[analysis.decision]
ship = "up"
iterate = "unclear"
roll_back = "down"

[schedule]
start = 2027-01-04T00:00:00Z
end = 2027-02-08T00:00:00Z
"#,
        eligibility = if design.contains("communities") {
            String::new()
        } else {
            r#"eligibility = { "in" = [{ var = "community" }, ["a", "b", "c", "d"]] }"#.to_string()
        },
    )
}

const TWO_ARMS: &str = r#"
[[arms]]
variant = "off"
weight = 1
control = true

[[arms]]
variant = "on"
weight = 1
"#;

const COUNT: &str = r#"name = "edits"
kind = "count"
events = ["edit"]
direction = "increase"
window = ["0d", "7d"]"#;

/// Four communities crossing over weekly: 5 periods of 7 days.
const WEDGE: &str = r#"
[unit]
kind = "community"
attribute = "community"

[design]
kind = "stepped_wedge"
communities = ["a", "b", "c", "d"]
steps = [2027-01-11T00:00:00Z, 2027-01-18T00:00:00Z, 2027-01-25T00:00:00Z, 2027-02-01T00:00:00Z]
"#;

const HASH: &str = r#"
[unit]
kind = "user"

[design]
kind = "hash"
"#;

fn config(source: &str, sizes: &[u32], effects: &[&str], sims: usize) -> PowerConfig {
    let spec = parse_trial(source, "power-test.toml").unwrap();
    let params = power::name_communities(&spec, SimParams::with_sizes(sizes)).unwrap();
    let mut map = BTreeMap::new();
    for e in effects {
        power::parse_effect(e, &mut map).unwrap();
    }
    PowerConfig {
        spec,
        params,
        effects: map,
        simulations: sims,
        seed: 7,
        days: None,
        compare_blocked_users: true,
        randomisation_draws: 199,
        metric: None,
    }
}

fn design(r: &PowerReport, d: PlanDesign) -> &power::DesignPower {
    r.designs.iter().find(|x| x.design == d).unwrap()
}

#[test]
fn same_seed_same_result_with_one_or_two_threads() {
    let cfg = config(
        &trial(WEDGE, 0.05, COUNT, TWO_ARMS),
        &[30, 40, 50, 60],
        &["on=1.5"],
        6,
    );
    let one = power::run(&cfg, 1, &|| {}).unwrap();
    let two = power::run(&cfg, 2, &|| {}).unwrap();
    assert_eq!(
        serde_json::to_string(&one).unwrap(),
        serde_json::to_string(&two).unwrap()
    );
    let again = power::run(&cfg, 2, &|| {}).unwrap();
    assert_eq!(one, again);
    let other = power::run(&PowerConfig { seed: 8, ..cfg }, 2, &|| {}).unwrap();
    assert_ne!(
        one.designs[0].comparisons[0].methods[0].mean_estimate,
        other.designs[0].comparisons[0].methods[0].mean_estimate
    );
    // Progress is reported once per simulated trial.
    let ticks = std::sync::atomic::AtomicUsize::new(0);
    let cfg = config(
        &trial(HASH, 0.05, COUNT, TWO_ARMS),
        &[20, 20],
        &["on=1.2"],
        5,
    );
    power::run(&cfg, 2, &|| {
        ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(ticks.into_inner(), 5);
}

#[test]
fn four_community_stepped_wedge_cannot_go_below_one_in_24() {
    let cfg = config(
        &trial(WEDGE, 0.05, COUNT, TWO_ARMS),
        &[30, 40, 50, 60],
        &["on=4"],
        8,
    );
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let sw = design(&r, PlanDesign::SteppedWedge);
    assert_eq!(sw.role, "planned");
    let ri = &sw.comparisons[0].methods[0];
    assert_eq!(ri.method, "randomisation");
    assert!(ri.lead);
    assert_eq!(ri.min_attainable_p, Some(1.0 / 24.0));
    assert_eq!(ri.failed, 0, "{:?}", ri.first_error);
    // Below 1/24 no effect, however large, is significant; the note says so.
    let cfg = config(
        &trial(WEDGE, 0.01, COUNT, TWO_ARMS),
        &[30, 40, 50, 60],
        &["on=4"],
        8,
    );
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let ri = &design(&r, PlanDesign::SteppedWedge).comparisons[0].methods[0];
    assert_eq!(ri.power.as_ref().unwrap().rate, 0.0);
    assert_eq!(ri.power.as_ref().unwrap().completed, 8);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("no effect, however large")),
        "{:?}",
        r.notes
    );
    // Members randomised within the same communities detect it.
    let bu = &design(&r, PlanDesign::BlockedUsers).comparisons[0].methods[0];
    assert_eq!(bu.power.as_ref().unwrap().rate, 1.0);
}

#[test]
fn blocked_users_detects_a_large_effect_and_not_a_null_one() {
    let cfg = config(
        &trial(WEDGE, 0.05, COUNT, TWO_ARMS),
        &[40, 60, 80, 100],
        &["on=3"],
        20,
    );
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let bu = design(&r, PlanDesign::BlockedUsers);
    assert_eq!(bu.role, "comparison");
    for m in &bu.comparisons[0].methods {
        let power = m.power.as_ref().unwrap();
        assert!(power.rate >= 0.9, "{}: {power:?}", m.method);
        let fp = m.false_positive_rate.as_ref().unwrap();
        assert!(fp.rejected <= 4, "{}: {fp:?}", m.method);
        assert!(m.mean_estimate.unwrap() > 0.5, "{m:?}");
    }
    // The permutation test samples 199 assignments: its floor is 1/200.
    let perm = &bu.comparisons[0].methods[0];
    assert_eq!(perm.min_attainable_p, Some(1.0 / 200.0));
}

/// With no effect the Welch test of a hash design rejects about alpha of
/// the trials: within three binomial standard errors.
#[test]
fn zero_effect_rejects_within_a_binomial_bound_of_alpha() {
    let n = 300;
    let cfg = config(&trial(HASH, 0.05, COUNT, TWO_ARMS), &[60, 80], &["on=1"], n);
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let welch = &r.designs[0].comparisons[0].methods[0];
    let bound = 3.0 * (0.05f64 * 0.95 / n as f64).sqrt();
    for rate in [&welch.power, &welch.false_positive_rate] {
        let rate = rate.as_ref().unwrap();
        assert_eq!(rate.completed, n);
        assert!(
            (rate.rate - 0.05).abs() <= bound,
            "{rate:?} outside 0.05 ± {bound}"
        );
        let se = (rate.rate * (1.0 - rate.rate) / n as f64).sqrt();
        assert!((rate.mc_se - se).abs() < 1e-15);
    }
    // A user design is analysed alone.
    assert_eq!(r.designs.len(), 1);
    assert_eq!(r.designs[0].design, PlanDesign::Hash);
}

#[test]
fn three_arms_give_two_comparisons_and_a_corrected_power() {
    let arms = format!("{TWO_ARMS}\n[[arms]]\nvariant = \"more\"\nweight = 1\n");
    let cfg = config(
        &trial(HASH, 0.05, COUNT, &arms),
        &[60, 80],
        &["on=1.5", "more=2"],
        10,
    );
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let arms: Vec<&str> = r.designs[0]
        .comparisons
        .iter()
        .map(|c| c.arm.as_str())
        .collect();
    assert_eq!(arms, ["on", "more"]);
    for c in &r.designs[0].comparisons {
        let lead = &c.methods[0];
        let raw = lead.power.as_ref().unwrap();
        let holm = lead.corrected_power.as_ref().unwrap();
        assert!(holm.rejected <= raw.rejected, "{c:?}");
    }
}

#[test]
fn mistakes_are_refused_with_the_field_named() {
    let source = trial(WEDGE, 0.05, COUNT, TWO_ARMS);
    let mut effects = BTreeMap::new();
    for bad in ["on", "on=x", "=2", "on:=2"] {
        let e = power::parse_effect(bad, &mut effects).unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
    let spec = parse_trial(&source, "t.toml").unwrap();
    let e = power::name_communities(&spec, SimParams::with_sizes(&[10, 20])).unwrap_err();
    assert!(e.to_string().contains("one size per community"), "{e}");
    let check = |cfg: PowerConfig, field: &str| match power::run(&cfg, 1, &|| {}) {
        Err(SimError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("{field}: {other:?}"),
    };
    check(
        config(&source, &[10, 10, 10, 10], &["nope=2"], 1),
        "effects.nope",
    );
    check(
        config(&source, &[10, 10, 10, 10], &["off=2"], 1),
        "effects.off",
    );
    check(
        config(&source, &[10, 10, 10, 10], &["on=1000"], 1),
        "effects.on.rate_multipliers.*",
    );
    check(
        config(&source, &[10, 10, 10, 10], &["on=2"], 0),
        "simulations",
    );
    let mut cfg = config(&source, &[10, 10, 10, 10], &["on=2"], 1);
    cfg.metric = Some("missing".into());
    check(cfg, "metric");
    let mut cfg = config(&source, &[10, 10, 10, 10], &["on=2"], 1);
    cfg.days = Some(power::MAX_DAYS + 1);
    check(cfg, "days");
}

/// The same four communities over the same five weeks, switched weekly
/// (balanced: two on each week): 6^5 = 7,776 allocations, so the
/// randomisation floor is far below the stepped wedge's 1/24 and a large
/// effect is significant at alpha = 0.01, where the wedge can never be.
const SWITCHBACK: &str = r#"
[unit]
kind = "community"
attribute = "community"

[design]
kind = "switchback"
communities = ["a", "b", "c", "d"]
period = "7d"
scheme = "balanced"
"#;

#[test]
fn four_community_switchback_reaches_below_one_in_24() {
    let cfg = config(
        &trial(SWITCHBACK, 0.01, COUNT, TWO_ARMS),
        &[30, 40, 50, 60],
        &["on=4"],
        8,
    );
    let r = power::run(&cfg, 2, &|| {}).unwrap();
    let sb = design(&r, PlanDesign::Switchback);
    assert_eq!(sb.role, "planned");
    let ri = &sb.comparisons[0].methods[0];
    assert_eq!(ri.method, "randomisation");
    assert_eq!(ri.failed, 0, "{:?}", ri.first_error);
    // 7,776 allocations > the 100,000 enumeration budget? No: enumerated,
    // so the floor is the share of the most extreme allocations.
    let floor = ri.min_attainable_p.unwrap();
    assert!(floor < 1.0 / 24.0 / 10.0, "{floor}");
    let power = ri.power.as_ref().unwrap();
    assert_eq!(power.completed, 8);
    assert!(power.rate >= 0.75, "{power:?}");
    let fp = ri.false_positive_rate.as_ref().unwrap();
    assert!(fp.rejected <= 2, "{fp:?}");
    // Members randomised within the communities are simulated beside it.
    assert!(r
        .designs
        .iter()
        .any(|d| d.design == PlanDesign::BlockedUsers));
}
