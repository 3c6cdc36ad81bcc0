//! Calibration of few-community inference (seeded):
//! `cargo run --release -p commonlab-stats --example calibrate_few [sims]`.
//!
//! Simulates stepped-wedge trials under the null (no treatment effect, a
//! secular trend, cluster random intercepts) and reports the share of
//! p-values ≤ 0.05 per method. Randomisation inference and the lead CR2
//! variant (CR2 with Imbens–Kolesár df, `rows::cr2_lead`) should stay at or
//! under 5%; CR2 with Bell–McCaffrey df runs slightly above; CR1 over-rejects
//! with few clusters. Results are recorded in `docs/analyze-few.md`.

use commonlab_stats::power::{simulate_stepped_wedge_power, SteppedWedgeSim};

fn main() {
    let sims: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("stepped wedge under H0, alpha = 0.05, {sims} simulated trials per row (seeded)");
    println!(
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "scenario", "RI", "CR2-BM", "CR2-IK", "CR1", "WCR", "IM", "MC se"
    );
    let scenarios = [
        (
            "4 communities x 5 periods, 25/cell, ICC .05",
            4,
            25,
            0.05,
            0.0,
        ),
        (
            "4 communities, 25/cell, ICC .10, CxP sd .1",
            4,
            25,
            0.10,
            0.1,
        ),
        ("4 communities, 250/cell, ICC .02", 4, 250, 0.02, 0.0),
        (
            "6 communities x 7 periods, 25/cell, ICC .05",
            6,
            25,
            0.05,
            0.0,
        ),
    ];
    for (i, (name, g, m, icc, cp)) in scenarios.iter().enumerate() {
        let cfg = SteppedWedgeSim {
            communities: *g,
            users_per_cell: *m,
            icc: *icc,
            cluster_period_sd: *cp,
            effect: 0.0,
            trend: 0.1,
            sims,
            alpha: 0.05,
            seed: 2026 + i as u64,
        };
        match simulate_stepped_wedge_power(&cfg) {
            Ok(r) => println!(
                "{:<44} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>7.4}",
                name,
                r.randomisation,
                r.cr2,
                r.cr2_ik,
                r.cr1,
                r.wild_bootstrap,
                r.ibragimov_muller,
                r.mc_se
            ),
            Err(e) => println!("{name:<44} error: {e}"),
        }
    }
    let power = SteppedWedgeSim {
        communities: 4,
        users_per_cell: 25,
        icc: 0.05,
        cluster_period_sd: 0.0,
        effect: 0.3,
        trend: 0.1,
        sims: sims / 4,
        alpha: 0.05,
        seed: 99,
    };
    if let Ok(r) = simulate_stepped_wedge_power(&power) {
        println!(
            "{:<44} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>7.4}",
            "power, effect 0.3 SD, 4 communities, 25/cell",
            r.randomisation,
            r.cr2,
            r.cr2_ik,
            r.cr1,
            r.wild_bootstrap,
            r.ibragimov_muller,
            r.mc_se
        );
    }
}
