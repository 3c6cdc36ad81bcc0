//! Calibration of the switchback analysis (`docs/analyze-few.md`,
//! "Switchback"): seeded simulated trials of 4 communities × 8 weekly
//! periods under each scheme, with community and period effects and
//! noise; the share of p ≤ 0.05 by randomisation inference and by CR2
//! under no effect, the power under an effect of 0.3 noise SD, and the
//! mean estimate (its bias) when half the effect carries over into the
//! next period.
//!
//! `cargo run --release -p commonlab-stats --example calibrate_switchback [TRIALS] [DRAWS] [SCHEME]`
//! (default 2,000 trials, 999 draws, every scheme; `SCHEME` is `balanced`,
//! `blocked_pairs` or `independent`, to run one scheme's rows alone). Each
//! row's trials start from the same seed whatever else runs.

use commonlab_stats::switchback::{analyze_switchback, Cell, Scheme, SwitchbackInput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};

fn draw(scheme: Scheme, nc: usize, np: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<bool>> {
    let mut on = vec![vec![false; np]; nc];
    match scheme {
        Scheme::Independent { probability } => on
            .iter_mut()
            .flatten()
            .for_each(|x| *x = rng.random::<f64>() < probability),
        Scheme::Balanced => {
            #[allow(clippy::needless_range_loop)] // one draw per period
            for k in 0..np {
                let mut order: Vec<usize> = (0..nc).collect();
                for j in (1..nc).rev() {
                    order.swap(j, rng.random_range(0..=j));
                }
                for &c in &order[..nc / 2] {
                    on[c][k] = true;
                }
            }
        }
        Scheme::BlockedPairs => {
            for row in &mut on {
                for q in 0..np / 2 {
                    row[2 * q + usize::from(rng.random::<bool>())] = true;
                }
            }
        }
    }
    on
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let draws: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(999);
    let only = args.get(3).map(String::as_str);
    let (nc, np) = (4, 8);
    let normal = Normal::new(0.0, 1.0).unwrap();
    println!(
        "| scheme | scenario | RI p ≤ 0.05 | CR2 p ≤ 0.05 | mean estimate | carry-over warned |"
    );
    println!("|---|---|---|---|---|---|");
    for scheme in [
        Scheme::Balanced,
        Scheme::BlockedPairs,
        Scheme::Independent { probability: 0.5 },
    ] {
        let name = match scheme {
            Scheme::Balanced => "balanced",
            Scheme::BlockedPairs => "blocked_pairs",
            Scheme::Independent { .. } => "independent",
        };
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let started = std::time::Instant::now();
        for (label, effect, carry) in [
            ("no effect", 0.0, 0.0),
            ("effect 0.3 SD", 0.06, 0.0),
            ("effect 0.3 SD, half carries over", 0.06, 0.03),
        ] {
            let mut rng = ChaCha20Rng::seed_from_u64(20_270_315);
            let (mut ri, mut cr2, mut warned, mut n, mut sum) = (0, 0, 0, 0usize, 0.0);
            for i in 0..trials {
                let on = draw(scheme, nc, np, &mut rng);
                let alpha: Vec<f64> = (0..nc).map(|_| 0.5 * normal.sample(&mut rng)).collect();
                let gamma: Vec<f64> = (0..np).map(|k| 0.1 * k as f64).collect();
                let mut cells = Vec::new();
                for c in 0..nc {
                    for k in 0..np {
                        let lag = if k > 0 && on[c][k - 1] { carry } else { 0.0 };
                        let d = if on[c][k] { effect } else { 0.0 };
                        cells.push(Cell {
                            community: c,
                            period: k,
                            value: alpha[c] + gamma[k] + d + lag + 0.2 * normal.sample(&mut rng),
                        });
                    }
                }
                let x = SwitchbackInput {
                    communities: nc,
                    periods: np,
                    cells,
                    on,
                    scheme,
                    max_enumerate: 100_000,
                    draws,
                    seed: i as u64,
                };
                let Ok(r) = analyze_switchback(&x) else {
                    continue;
                };
                n += 1;
                sum += r.estimate;
                ri += usize::from(r.randomisation.p_value <= 0.05);
                cr2 += usize::from(r.cr2.p_value <= 0.05);
                warned += usize::from(r.carryover.as_ref().is_some_and(|c| c.material));
            }
            let share = |k: usize| k as f64 / n.max(1) as f64;
            println!(
                "| {name} | {label} | {:.4} | {:.4} | {:.4} | {:.4} |",
                share(ri),
                share(cr2),
                sum / n.max(1) as f64,
                share(warned)
            );
        }
        eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
    }
    println!("\n{trials} trials per row ({draws} draws when the allocations cannot be enumerated); noise SD 0.2 per cell, so 0.3 SD = 0.06");
}
