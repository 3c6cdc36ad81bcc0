//! Switchback analysis: the enumerated randomisation p-value against brute
//! force (every grid of the whole design, filtered by the scheme, each
//! effect refitted by ordinary least squares with no shortcut), sampling
//! against enumeration within its Monte Carlo error, calibration under a
//! zero effect, and the carry-over check.

use super::*;
use nalgebra::DVector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A panel with community and period effects, noise and `effect` on
/// treated cells, plus `lingering` in the period after an on period.
fn data(
    nc: usize,
    np: usize,
    on: &[Vec<bool>],
    effect: f64,
    lingering: f64,
    rng: &mut ChaCha20Rng,
) -> Vec<Cell> {
    let alpha: Vec<f64> = (0..nc).map(|_| rng.random::<f64>()).collect();
    let gamma: Vec<f64> = (0..np).map(|_| rng.random::<f64>()).collect();
    let mut out = Vec::new();
    for c in 0..nc {
        for k in 0..np {
            let noise: f64 = rng.random::<f64>() - 0.5;
            let carry = if k > 0 && on[c][k - 1] {
                lingering
            } else {
                0.0
            };
            let treated = if on[c][k] { effect } else { 0.0 };
            out.push(Cell {
                community: c,
                period: k,
                value: alpha[c] + gamma[k] + treated + carry + 0.3 * noise,
            });
        }
    }
    out
}

/// A grid drawn from the scheme (for the tests' own data).
fn draw(scheme: Scheme, nc: usize, np: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<bool>> {
    let mut on = vec![vec![false; np]; nc];
    match scheme {
        Scheme::Independent { probability } => {
            for row in &mut on {
                for x in row.iter_mut() {
                    *x = rng.random::<f64>() < probability;
                }
            }
        }
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

/// OLS of y on [1, period dummies, community dummies, d] by the normal
/// equations; `None` when singular.
fn ols_theta(cells: &[Cell], nc: usize, np: usize, on: &[Vec<bool>]) -> Option<f64> {
    let p = 1 + (np - 1) + (nc - 1) + 1;
    let x = DMatrix::from_fn(cells.len(), p, |i, j| {
        let c = &cells[i];
        let v = if j == 0 {
            true
        } else if j < np {
            c.period == j
        } else if j < np + nc - 1 {
            c.community == j - np + 1
        } else {
            on[c.community][c.period]
        };
        f64::from(u8::from(v))
    });
    let y = DVector::from_iterator(cells.len(), cells.iter().map(|c| c.value));
    let xtx = x.transpose() * &x;
    if xtx.determinant().abs() < 1e-9 {
        return None;
    }
    let beta = xtx.lu().solve(&(x.transpose() * y))?;
    Some(beta[p - 1])
}

/// Every grid of the design with its probability, by brute force over all
/// 2^(C·P) grids.
fn brute_force_p(cells: &[Cell], nc: usize, np: usize, on: &[Vec<bool>], scheme: Scheme) -> f64 {
    let obs = ols_theta(cells, nc, np, on).unwrap();
    let (mut hit, mut total) = (0.0, 0.0);
    for bits in 0u64..(1 << (nc * np)) {
        let g: Vec<Vec<bool>> = (0..nc)
            .map(|c| (0..np).map(|k| bits >> (c * np + k) & 1 == 1).collect())
            .collect();
        let w = match scheme {
            Scheme::Independent { probability } => g
                .iter()
                .flatten()
                .map(|&x| if x { probability } else { 1.0 - probability })
                .product(),
            Scheme::Balanced => {
                let ok = (0..np).all(|k| g.iter().filter(|r| r[k]).count() * 2 == nc);
                f64::from(u8::from(ok))
            }
            Scheme::BlockedPairs => {
                let ok = g
                    .iter()
                    .all(|r| (0..np / 2).all(|q| r[2 * q] != r[2 * q + 1]));
                f64::from(u8::from(ok))
            }
        };
        if w == 0.0 {
            continue;
        }
        let Some(t) = ols_theta(cells, nc, np, &g) else {
            continue;
        };
        total += w;
        if t.abs() >= obs.abs() - 1e-10 * obs.abs() {
            hit += w;
        }
    }
    hit / total
}

fn input(
    nc: usize,
    np: usize,
    cells: Vec<Cell>,
    on: Vec<Vec<bool>>,
    scheme: Scheme,
) -> SwitchbackInput {
    SwitchbackInput {
        communities: nc,
        periods: np,
        cells,
        on,
        scheme,
        max_enumerate: 100_000,
        draws: 2_000,
        seed: 7,
    }
}

#[test]
fn enumerated_p_matches_brute_force_for_every_scheme() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut checked = 0;
    for (scheme, nc, np) in [
        (Scheme::Balanced, 2, 4),
        (Scheme::Balanced, 4, 3),
        (Scheme::BlockedPairs, 2, 4),
        (Scheme::BlockedPairs, 3, 4),
        (Scheme::Independent { probability: 0.3 }, 2, 4),
        (Scheme::Independent { probability: 0.5 }, 3, 3),
    ] {
        for effect in [0.0, 0.4] {
            let on = draw(scheme, nc, np, &mut rng);
            let mut cells = data(nc, np, &on, effect, 0.0, &mut rng);
            // A missing cell: the estimate uses the observed ones.
            if nc * np > 8 {
                cells.remove(5);
            }
            // A drawn grid under which the effect is not estimable (a
            // community on throughout) has no test: draw again.
            let Some(theta) = ols_theta(&cells, nc, np, &on) else {
                assert!(analyze_switchback(&input(nc, np, cells, on, scheme)).is_err());
                continue;
            };
            checked += 1;
            let want = brute_force_p(&cells, nc, np, &on, scheme);
            let r = analyze_switchback(&input(nc, np, cells, on, scheme)).unwrap();
            assert!((r.estimate - theta).abs() < 1e-9, "{scheme:?}");
            assert!(r.randomisation.exact);
            assert!(
                (r.randomisation.p_value - want).abs() < 1e-12,
                "{scheme:?} {nc}x{np}: {} vs {want}",
                r.randomisation.p_value
            );
            assert!(r.randomisation.min_attainable_p <= r.randomisation.p_value);
            assert!(r.randomisation.min_attainable_p > 0.0);
        }
    }
    assert!(checked >= 9, "{checked}");
}

#[test]
fn allocations_counted_per_scheme() {
    assert_eq!(
        total_allocations(Scheme::Balanced, 4, 8),
        Some(6u128.pow(8))
    );
    assert_eq!(total_allocations(Scheme::BlockedPairs, 4, 8), Some(1 << 16));
    assert_eq!(
        total_allocations(Scheme::Independent { probability: 0.5 }, 4, 8),
        Some(1 << 32)
    );
    assert_eq!(
        total_allocations(Scheme::Independent { probability: 0.5 }, 40, 40),
        None
    );
}

#[test]
fn sampling_agrees_with_enumeration_within_its_monte_carlo_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (nc, np) = (4, 4);
    let scheme = Scheme::Balanced; // 6^4 = 1296 allocations
    let on = draw(scheme, nc, np, &mut rng);
    let cells = data(nc, np, &on, 0.15, 0.0, &mut rng);
    let exact = analyze_switchback(&input(nc, np, cells.clone(), on.clone(), scheme)).unwrap();
    assert!(exact.randomisation.exact);
    assert_eq!(exact.randomisation.evaluated, 1296);
    let mut x = input(nc, np, cells, on, scheme);
    x.max_enumerate = 100;
    x.draws = 4_000;
    let sampled = analyze_switchback(&x).unwrap();
    let ri = &sampled.randomisation;
    assert!(!ri.exact);
    assert_eq!(ri.seed, Some(7));
    let se = ri.mc_se.unwrap();
    assert!(se > 0.0);
    assert!(
        (ri.p_value - exact.randomisation.p_value).abs() < 4.0 * se + 1.0 / 4001.0,
        "{} vs {} (se {se})",
        ri.p_value,
        exact.randomisation.p_value
    );
    assert!((ri.min_attainable_p - 1.0 / (1.0 + (4_000 - ri.not_estimable) as f64)).abs() < 1e-15);
    // Reproducible from the seed.
    assert_eq!(analyze_switchback(&x).unwrap(), sampled);
}

/// Under a zero effect the randomisation test rejects at most its nominal
/// share: 400 seeded trials of 4 communities × 8 weeks (balanced, 500
/// draws each), rejections at α = 0.05 within 3 binomial standard
/// deviations of 20.
#[test]
fn calibrated_under_zero_effect() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (nc, np, reps) = (4, 8, 400u32);
    let mut rejected = 0;
    for i in 0..reps {
        let on = draw(Scheme::Balanced, nc, np, &mut rng);
        let cells = data(nc, np, &on, 0.0, 0.0, &mut rng);
        let mut x = input(nc, np, cells, on, Scheme::Balanced);
        x.draws = 500;
        x.seed = u64::from(i);
        let (_, ri) = switchback_ri(&x).unwrap();
        if ri.p_value <= 0.05 {
            rejected += 1;
        }
    }
    let sd = (f64::from(reps) * 0.05 * 0.95).sqrt();
    assert!(
        (f64::from(rejected) - 20.0).abs() <= 3.0 * sd,
        "{rejected} of {reps} rejected"
    );
}

#[test]
fn a_real_effect_reaches_a_small_p_on_four_communities() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let on = draw(Scheme::Balanced, 4, 8, &mut rng);
    let cells = data(4, 8, &on, 0.5, 0.0, &mut rng);
    let r = analyze_switchback(&input(4, 8, cells, on, Scheme::Balanced)).unwrap();
    // Below the 1/24 floor of a 4-community stepped wedge.
    assert!(
        r.randomisation.p_value < 1.0 / 24.0,
        "{:?}",
        r.randomisation
    );
    assert!((r.estimate - 0.5).abs() < 0.2, "{}", r.estimate);
    assert!(r.cr2.se > 0.0);
}

#[test]
fn carry_over_is_reported_and_warned_when_material() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (nc, np) = (6, 12);
    let on = draw(Scheme::Independent { probability: 0.5 }, nc, np, &mut rng);
    let with = data(nc, np, &on, 1.0, 0.8, &mut rng);
    let r = analyze_switchback(&input(
        nc,
        np,
        with,
        on.clone(),
        Scheme::Independent { probability: 0.5 },
    ))
    .unwrap();
    let c = r.carryover.as_ref().unwrap();
    assert!(c.material, "{c:?}");
    assert!(c
        .warning
        .as_deref()
        .unwrap()
        .contains("material carry-over"));
    assert!(c.lingering.ci95.0 > 0.0, "{:?}", c.lingering);
    // Without carry-over the lingering interval covers zero here.
    let without = data(nc, np, &on, 1.0, 0.0, &mut rng);
    let r = analyze_switchback(&input(
        nc,
        np,
        without,
        on,
        Scheme::Independent { probability: 0.5 },
    ))
    .unwrap();
    let c = r.carryover.as_ref().unwrap();
    assert!(
        c.lingering.ci95.0 < 0.0 && c.lingering.ci95.1 > 0.0,
        "{:?}",
        c.lingering
    );
    // after_on − after_off is the difference, fitted separately.
    assert!((c.after_on.estimate - c.after_off.estimate - c.difference.estimate).abs() < 1e-9);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let on = vec![vec![true, false]; 2];
    let cell = |c, k, v| Cell {
        community: c,
        period: k,
        value: v,
    };
    let x = input(
        2,
        2,
        vec![cell(0, 0, 1.0), cell(0, 0, 2.0)],
        on.clone(),
        Scheme::Balanced,
    );
    assert!(analyze_switchback(&x).is_err());
    let x = input(2, 2, vec![cell(3, 0, 1.0)], on.clone(), Scheme::Balanced);
    assert!(analyze_switchback(&x).is_err());
    let x = input(
        1,
        2,
        vec![cell(0, 0, 1.0)],
        vec![vec![true, false]],
        Scheme::Balanced,
    );
    assert!(analyze_switchback(&x).is_err());
    let x = input(2, 2, vec![cell(0, 0, f64::NAN)], on, Scheme::Balanced);
    assert!(analyze_switchback(&x).is_err());
}

/// Every allocation's `θ̂` computed afresh through `CellFwl`, in plain
/// mixed-radix order: the p-value, the tail and the not-estimable count
/// the Gray-code enumeration must reproduce.
fn direct_enumeration(x: &SwitchbackInput) -> (f64, f64, u64) {
    let (panel, _, fwl) = setup(x).unwrap();
    let obs = fwl
        .theta(
            &panel
                .treated
                .iter()
                .map(|&t| f64::from(u8::from(t)))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let blocks = blocks(x, &index_of(x)).unwrap();
    let count: usize = blocks.iter().map(|b| b.options.len()).product();
    let mut choice = vec![0usize; blocks.len()];
    let (mut extreme, mut defined, mut undefined) = (0.0, 0.0, 0u64);
    let mut thetas = Vec::new();
    for _ in 0..count {
        let mut d = vec![0.0; x.cells.len()];
        for (b, &o) in blocks.iter().zip(&choice) {
            for &i in &b.options[o] {
                d[i] = 1.0;
            }
        }
        let w: f64 = blocks
            .iter()
            .zip(&choice)
            .map(|(b, &o)| b.weights[o])
            .product();
        match fwl.theta(&d) {
            Ok(t) => {
                defined += w;
                if same_or_more(t, obs) {
                    extreme += w;
                }
                thetas.push((t, w));
            }
            Err(_) => undefined += 1,
        }
        for (b, c) in blocks.iter().zip(choice.iter_mut()) {
            *c += 1;
            if *c < b.options.len() {
                break;
            }
            *c = 0;
        }
    }
    let max = thetas.iter().map(|(t, _)| t.abs()).fold(0.0, f64::max);
    let top: f64 = thetas
        .iter()
        .filter(|(t, _)| same_or_more(*t, max))
        .map(|(_, w)| w)
        .sum();
    (extreme / defined, top / defined, undefined)
}

/// The Gray-code enumeration updates its sums cell by cell; over the
/// 65,536 allocations of blocked pairs on 4 × 8 (and the 46,656 of a
/// balanced 4 × 6, whose options overlap, and the 65,536 of an
/// independent 4 × 4 with one cell missing) it gives what computing each
/// allocation afresh gives, to 1e-12.
#[test]
fn gray_code_enumeration_matches_computing_each_allocation_afresh() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    for (scheme, nc, np, effect) in [
        (Scheme::BlockedPairs, 4, 8, 0.0),
        (Scheme::BlockedPairs, 4, 8, 0.1),
        (Scheme::Balanced, 4, 6, 0.05),
        (Scheme::Independent { probability: 0.3 }, 4, 4, 0.05),
    ] {
        let on = draw(scheme, nc, np, &mut rng);
        let mut cells = data(nc, np, &on, effect, 0.0, &mut rng);
        if matches!(scheme, Scheme::Independent { .. }) {
            cells.remove(3);
        }
        let x = input(nc, np, cells, on, scheme);
        let Ok(r) = analyze_switchback(&x) else {
            continue;
        };
        let ri = &r.randomisation;
        assert!(ri.exact, "{scheme:?}");
        let (p, min_p, undefined) = direct_enumeration(&x);
        assert!(
            (ri.p_value - p).abs() < 1e-12,
            "{scheme:?}: {} vs {p}",
            ri.p_value
        );
        assert!((ri.min_attainable_p - min_p).abs() < 1e-12, "{scheme:?}");
        assert_eq!(ri.not_estimable, undefined, "{scheme:?}");
    }
}
