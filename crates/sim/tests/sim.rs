//! The simulator's defaults reproduce their own targets, its effects do
//! what their parameters say, and it is reproducible.

use std::collections::BTreeMap;

use commonlab_sim::summary::{summarise, CommunitySummary};
use commonlab_sim::{ArmEffect, Item, Member, Role, SimError, SimParams, Simulation};

const SIZES: [u32; 4] = [50, 120, 300, 800];

/// Runs `days` days, serving `arm(member)` to each visitor.
fn run(
    params: SimParams,
    seed: u64,
    days: u32,
    mut arm: impl FnMut(&Member) -> Option<String>,
) -> (Simulation, Vec<commonlab_sim::Day>) {
    let mut sim = Simulation::new(params, seed).unwrap();
    let out = (0..days).map(|_| sim.step(&mut arm)).collect();
    (sim, out)
}

/// Half the members by the parity of their number (a stand-in for a hash).
fn per_member(m: &Member) -> Option<String> {
    let n: u32 = m.id.rsplit('m').next().unwrap().parse().unwrap();
    Some(if n.is_multiple_of(2) { "on" } else { "off" }.to_string())
}

fn summaries(sim: &Simulation) -> Vec<CommunitySummary> {
    (0..SIZES.len())
        .map(|c| summarise(sim.members(), c))
        .collect()
}

#[test]
fn defaults_reproduce_cbpp_regularities() {
    // Averaged over seeds so that the check is about the model, not luck.
    let seeds = 0..5u64;
    let mut gini = [0.0; 4];
    let mut top1 = [0.0; 4];
    let mut lurkers = [0.0; 4];
    let mut contributors = [0.0; 4];
    for seed in seeds.clone() {
        let (sim, _) = run(SimParams::with_sizes(&SIZES), seed, 90, |_| None);
        for (c, s) in summaries(&sim).iter().enumerate() {
            gini[c] += s.gini / 5.0;
            top1[c] += s.top1_share / 5.0;
            lurkers[c] += s.lurker_share / 5.0;
            let share = |r: Role| s.role_shares.iter().find(|(x, _)| *x == r).unwrap().1;
            contributors[c] += (share(Role::Contributor) + share(Role::Core)) / 5.0;
        }
    }
    eprintln!(
        "gini {gini:?}\ntop1 {top1:?}\nlurkers {lurkers:?}\ncore+contributors {contributors:?}"
    );
    // Large community: 90-9-1 and Gini above 0.8.
    assert!(gini[3] > 0.8, "Gini at 800 members: {}", gini[3]);
    assert!((0.82..0.95).contains(&lurkers[3]), "{}", lurkers[3]);
    assert!(
        (0.07..0.13).contains(&contributors[3]),
        "{}",
        contributors[3]
    );
    assert!(top1[3] > 0.2, "the top 1% make a large share: {}", top1[3]);
    // Less extreme in small communities, and ordered by size.
    assert!(gini[0] < 0.8, "Gini at 50 members: {}", gini[0]);
    for c in 1..4 {
        assert!(gini[c] > gini[c - 1], "Gini grows with size: {gini:?}");
    }
}

#[test]
fn same_seed_same_days_other_seed_other_days() {
    let a = run(SimParams::with_sizes(&[60, 80]), 7, 10, per_member).1;
    let b = run(SimParams::with_sizes(&[60, 80]), 7, 10, per_member).1;
    let c = run(SimParams::with_sizes(&[60, 80]), 8, 10, per_member).1;
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Events are in time order, within the day, and visitors only.
    for day in &a {
        assert!(day.events.windows(2).all(|w| w[0].second <= w[1].second));
        assert!(day.events.iter().all(|e| e.second < 86_400));
        for e in &day.events {
            if e.name != "thanks_received" {
                assert!(day.visitors.contains(&e.member), "{e:?}");
            }
        }
    }
}

/// Contribution events per member-day by arm, over members present throughout.
fn edits_per_member_day(
    sim: &Simulation,
    days: &[commonlab_sim::Day],
    name: &str,
) -> BTreeMap<String, f64> {
    let mut events: BTreeMap<String, f64> = BTreeMap::new();
    let mut members: BTreeMap<String, f64> = BTreeMap::new();
    let stayed: Vec<bool> = sim
        .members()
        .iter()
        .map(|m| m.present() && m.joined == 0 && m.role != Role::Lurker)
        .collect();
    for (i, m) in sim.members().iter().enumerate() {
        if stayed[i] {
            *members.entry(per_member(m).unwrap()).or_default() += days.len() as f64;
        }
    }
    for day in days {
        for e in &day.events {
            if e.name == name && stayed[e.member] {
                *events
                    .entry(per_member(&sim.members()[e.member]).unwrap())
                    .or_default() += 1.0;
            }
        }
    }
    events
        .iter()
        .map(|(arm, n)| (arm.clone(), n / members[arm]))
        .collect()
}

fn with_effect(multiplier: f64, spillover: f64) -> SimParams {
    let mut p = SimParams::with_sizes(&[400, 400]);
    p.effects.insert(
        "on".into(),
        ArmEffect {
            rate_multipliers: [("edit".to_string(), multiplier)].into(),
            ..ArmEffect::default()
        },
    );
    p.spillover = spillover;
    p
}

#[test]
fn a_rate_multiplier_changes_the_treated_arm_only_without_spillover() {
    let mut ratios = Vec::new();
    for seed in 0..6 {
        let (sim, days) = run(with_effect(1.5, 0.0), seed, 60, per_member);
        let rates = edits_per_member_day(&sim, &days, "edit");
        ratios.push(rates["on"] / rates["off"]);
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    // Heavy-tailed activity makes single runs noisy; the mean is close.
    assert!(
        (1.3..1.75).contains(&mean),
        "on/off edit rate ratio {mean} ({ratios:?})"
    );
    let mut none = Vec::new();
    for seed in 0..6 {
        let (sim, days) = run(with_effect(1.0, 0.0), seed, 60, per_member);
        let rates = edits_per_member_day(&sim, &days, "edit");
        none.push(rates["on"] / rates["off"]);
    }
    let mean_none = none.iter().sum::<f64>() / none.len() as f64;
    assert!(
        (0.85..1.18).contains(&mean_none),
        "no effect: {mean_none} ({none:?})"
    );
}

#[test]
fn spillover_raises_the_untreated_and_shrinks_the_difference() {
    // Same seed, same draws until the effect applies: compare the control
    // arm's edit rate with and without spillover.
    let mut lifted = 0;
    let mut diffs = (0.0, 0.0);
    for seed in 0..6 {
        let (s0, d0) = run(with_effect(2.0, 0.0), seed, 40, per_member);
        let (s1, d1) = run(with_effect(2.0, 1.0), seed, 40, per_member);
        let r0 = edits_per_member_day(&s0, &d0, "edit");
        let r1 = edits_per_member_day(&s1, &d1, "edit");
        if r1["off"] > r0["off"] {
            lifted += 1;
        }
        diffs.0 += r0["on"] - r0["off"];
        diffs.1 += r1["on"] - r1["off"];
    }
    assert!(
        lifted >= 5,
        "control lifted by spillover in {lifted} of 6 runs"
    );
    assert!(diffs.1 < diffs.0, "the naive difference shrinks: {diffs:?}");
}

#[test]
fn being_thanked_keeps_contributors() {
    let stayed = |retention: f64| {
        let mut total = 0.0;
        for seed in 0..4 {
            let mut p = SimParams::with_sizes(&[500]);
            p.communities[0].leave_hazard = 0.02;
            p.communities[0].thanks_probability = 0.5;
            p.communities[0].thanked_retention = retention;
            let (sim, _) = run(p, seed, 60, |_| None);
            let contributors: Vec<&Member> = sim
                .members()
                .iter()
                .filter(|m| m.joined == 0 && m.role != Role::Lurker)
                .collect();
            total += contributors.iter().filter(|m| m.present()).count() as f64
                / contributors.len() as f64;
        }
        total / 4.0
    };
    let (rewarded, not) = (stayed(0.2), stayed(1.0));
    assert!(
        rewarded > not + 0.05,
        "stayed: {rewarded} with the reward, {not} without"
    );
}

#[test]
fn survey_answers_are_reliable_and_lurkers_answer_less() {
    let (mut sim, _) = run(SimParams::with_sizes(&[1500]), 3, 1, |_| None);
    let items = [
        Item {
            min: 1,
            max: 5,
            reverse: false,
        },
        Item {
            min: 1,
            max: 5,
            reverse: true,
        },
        Item {
            min: 1,
            max: 5,
            reverse: false,
        },
        Item {
            min: 1,
            max: 5,
            reverse: false,
        },
    ];
    let mut rows = Vec::new();
    let mut asked: BTreeMap<Role, (f64, f64)> = BTreeMap::new();
    for i in 0..sim.members().len() {
        let role = sim.members()[i].role;
        let answer = sim.answer(i, &items);
        let e = asked.entry(role).or_default();
        e.0 += 1.0;
        if let Some(a) = answer {
            e.1 += 1.0;
            assert!(a.iter().all(|x| (1..=5).contains(x)));
            // Score with the reverse-coded item turned back.
            rows.push(
                a.iter()
                    .zip(&items)
                    .map(|(x, it)| {
                        if it.reverse {
                            6.0 - *x as f64
                        } else {
                            *x as f64
                        }
                    })
                    .collect::<Vec<f64>>(),
            );
        }
    }
    let rate = |r: Role| asked[&r].1 / asked[&r].0;
    assert!(
        rate(Role::Lurker) < 0.2 && rate(Role::Contributor) > 0.3,
        "{asked:?}"
    );
    let alpha = commonlab_stats::survey::cronbach_alpha(&rows, 0.95).unwrap();
    assert!((0.65..0.9).contains(&alpha.alpha), "alpha {}", alpha.alpha);
}

#[test]
fn parameter_files_round_trip_and_errors_name_the_field() {
    let mut p = SimParams::with_sizes(&[10, 20]);
    p.effects.insert("on".into(), ArmEffect::default());
    let text = serde_json::to_string_pretty(&p).unwrap();
    assert_eq!(SimParams::from_json(&text).unwrap(), p);
    let bad = text.replace("\"leave_hazard\": 0.004", "\"leave_hazard\": 1.5");
    assert_eq!(
        SimParams::from_json(&bad).unwrap_err(),
        SimError::Invalid {
            field: "communities[0].leave_hazard".into(),
            why: "must be a probability".into()
        }
    );
    let typo = text.replacen("\"join_rate\"", "\"join_rat\"", 1);
    match SimParams::from_json(&typo).unwrap_err() {
        SimError::Parse {
            path,
            line,
            message,
        } => {
            assert!(path.starts_with("communities[0]"), "{path}");
            assert!(line > 1);
            assert!(message.contains("join_rat"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[path = "drive/mod.rs"]
mod drive;

#[path = "power/mod.rs"]
mod power;
