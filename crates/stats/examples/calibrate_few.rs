//! Calibration of few-community inference (seeded):
//! `cargo run --release -p commonlab-stats --example calibrate_few [sims] [filter...]`.
//!
//! Simulates stepped-wedge trials under the null (no treatment effect, a
//! secular trend, cluster random intercepts) and reports the share of
//! p-values ≤ 0.05 per method, under the default model of
//! `rows::analyze_rows` (community and period fixed effects) and, for the
//! rows tagged `none`, the model without community effects. `filter` keeps
//! the rows whose tag contains one of the words (e.g. `sw4`, `sw6`, `sw10`,
//! `power`, `none`); without a filter every row runs. Each row prints its
//! run time. Results are recorded in `docs/analyze-few.md`; the row
//! `sw4-test` (the scenario of the seeded test `crates/stats/tests/
//! calibration`) in `docs/calibration.md`.

use std::time::Instant;

use commonlab_stats::power::{simulate_stepped_wedge_power, SteppedWedgeSim};
use commonlab_stats::rows::CommunityEffects;

struct Scenario {
    tag: &'static str,
    name: &'static str,
    communities: usize,
    users_per_cell: usize,
    icc: f64,
    cluster_period_sd: f64,
    effect: f64,
    /// Share of `sims` to run (power rows run a quarter).
    share: usize,
    seed: u64,
    model: Option<CommunityEffects>,
}

const fn sc(
    tag: &'static str,
    name: &'static str,
    communities: usize,
    users_per_cell: usize,
    icc: f64,
    cluster_period_sd: f64,
    seed: u64,
) -> Scenario {
    Scenario {
        tag,
        name,
        communities,
        users_per_cell,
        icc,
        cluster_period_sd,
        effect: 0.0,
        share: 1,
        seed,
        model: None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sims: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let filter: Vec<String> = args.collect();
    let null = [
        sc(
            "sw4-a",
            "4 communities x 5 periods, 25/cell, ICC .05",
            4,
            25,
            0.05,
            0.0,
            2026,
        ),
        sc(
            "sw4-b",
            "4 communities, 25/cell, ICC .10, CxP sd .1",
            4,
            25,
            0.10,
            0.1,
            2027,
        ),
        sc(
            "sw4-c",
            "4 communities, 250/cell, ICC .02",
            4,
            250,
            0.02,
            0.0,
            2028,
        ),
        sc(
            "sw6",
            "6 communities x 7 periods, 25/cell, ICC .05",
            6,
            25,
            0.05,
            0.0,
            2029,
        ),
        sc(
            "sw6-cp",
            "6 communities, 25/cell, ICC .05, CxP sd .1",
            6,
            25,
            0.05,
            0.1,
            2030,
        ),
        sc(
            "sw10",
            "10 communities x 11 periods, 10/cell, ICC .05",
            10,
            10,
            0.05,
            0.0,
            2031,
        ),
        sc(
            "sw10-cp",
            "10 communities, 10/cell, ICC .05, CxP sd .1",
            10,
            10,
            0.05,
            0.1,
            2032,
        ),
    ];
    let mut rows: Vec<Scenario> = null.into_iter().collect();
    // The scenario of the seeded test in `crates/stats/tests/calibration`
    // (same generator and seed: its 400 trials are the first 400 here).
    rows.push(sc(
        "sw4-test",
        "[test scenario] 4 communities x 5 periods, 10/cell, ICC .05",
        4,
        10,
        0.05,
        0.0,
        12,
    ));
    let power = |tag, name, communities, model| Scenario {
        effect: 0.3,
        share: 4,
        model,
        ..sc(tag, name, communities, 25, 0.05, 0.0, 99)
    };
    rows.push(power(
        "power-sw4",
        "power, effect 0.3 SD, 4 communities, 25/cell",
        4,
        None,
    ));
    rows.push(power(
        "power-sw6",
        "power, effect 0.3 SD, 6 communities, 25/cell",
        6,
        None,
    ));
    rows.push(Scenario {
        model: Some(CommunityEffects::None),
        ..sc(
            "none4-a",
            "[no community effects] 4 communities x 5 periods, 25/cell, ICC .05",
            4,
            25,
            0.05,
            0.0,
            2026,
        )
    });
    rows.push(power(
        "none-power4",
        "[no community effects] power, effect 0.3 SD, 4 communities",
        4,
        Some(CommunityEffects::None),
    ));
    println!("stepped wedge, alpha = 0.05, {sims} simulated trials per row (power rows: a quarter), seeded");
    println!(
        "{:<66} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "scenario", "trials", "RI", "CR2-BM", "CR2-IK", "CR1", "WCR", "IM", "MC se", "seconds"
    );
    let all = Instant::now();
    for r in rows {
        if !filter.is_empty() && !filter.iter().any(|f| r.tag.contains(f.as_str())) {
            continue;
        }
        let t0 = Instant::now();
        let cfg = SteppedWedgeSim {
            communities: r.communities,
            users_per_cell: r.users_per_cell,
            icc: r.icc,
            cluster_period_sd: r.cluster_period_sd,
            effect: r.effect,
            trend: 0.1,
            sims: sims / r.share,
            alpha: 0.05,
            seed: r.seed,
            community_effects: r.model,
        };
        match simulate_stepped_wedge_power(&cfg) {
            Ok(p) => println!(
                "{:<66} {:>6} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.1}",
                r.name,
                p.completed,
                p.randomisation,
                p.cr2,
                p.cr2_ik,
                p.cr1,
                p.wild_bootstrap,
                p.ibragimov_muller,
                p.mc_se,
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => println!("{:<66} error: {e}", r.name),
        }
    }
    println!("total {:.1} s", all.elapsed().as_secs_f64());
}
