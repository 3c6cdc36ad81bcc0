//! Few-community performance figures (hand-rolled harness):
//! `cargo bench -p commonlab-stats --bench few`.
//!
//! Targets: exact randomisation over the 24 orders of a 4-community stepped
//! wedge with 10,000 users < 50 ms; 10,000-draw wild cluster bootstrap < 200 ms.

use std::hint::black_box;
use std::time::Instant;

use commonlab_stats::cluster::ClusteredOls;
use commonlab_stats::randomization::{randomisation_test, Alternative};
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsDesign, RowsInput};
use commonlab_stats::stepped_wedge::{CellFwl, ModelSpec, Panel};

fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 11) as f64) / ((1u64 << 53) as f64)
}

/// `g` communities, `g+1` periods, `users` rows in total; community c crosses at period c+1.
fn panel(g: usize, users: usize) -> Panel {
    let t = g + 1;
    let per_cell = users / (g * t);
    let mut s = 42u64;
    let mut p = Panel {
        cluster: vec![],
        period: vec![],
        treated: vec![],
        y: vec![],
        covariate: None,
        stratum: None,
        n_clusters: g,
        n_periods: t,
    };
    for c in 0..g {
        let a = lcg(&mut s) - 0.5;
        for per in 0..t {
            for _ in 0..per_cell {
                p.cluster.push(c);
                p.period.push(per);
                p.treated.push(per > c);
                p.y.push(a + 0.1 * per as f64 + lcg(&mut s) + lcg(&mut s) - 1.0);
            }
        }
    }
    p
}

fn time<F: FnMut() -> R, R>(name: &str, reps: usize, mut f: F) -> f64 {
    black_box(f()); // warm-up
    let mut best = f64::INFINITY;
    let mut total = 0.0;
    for _ in 0..reps {
        let t0 = Instant::now();
        black_box(f());
        let e = t0.elapsed().as_secs_f64() * 1e3;
        best = best.min(e);
        total += e;
    }
    println!(
        "{name:<72} best {best:8.2} ms   mean {:8.2} ms",
        total / reps as f64
    );
    best
}

fn main() {
    let p4 = panel(4, 10_000);
    let n = p4.y.len();
    let spec = ModelSpec {
        period_fe: true,
        cluster_fe: false,
        stratum_fe: false,
    };
    let ri = time(
        &format!("exact randomisation, 4-community SW, 24 orders, {n} users"),
        20,
        || {
            let z = p4.nuisance_matrix(spec);
            let fwl = CellFwl::new(&z, &p4.y, &p4.cell_of_row(), 4 * 5).unwrap();
            let starts = [1usize, 2, 3, 4];
            let mut d = vec![0.0; 20];
            randomisation_test(
                &[0, 1, 2, 3],
                None,
                |a| {
                    for c in 0..4 {
                        for t in 0..5 {
                            d[c * 5 + t] = f64::from(u8::from(t >= starts[a[c]]));
                        }
                    }
                    fwl.theta(&d)
                },
                Alternative::TwoSided,
                100_000,
                0,
                0,
            )
            .unwrap()
        },
    );
    let x4 = p4.design_matrix(spec);
    let k4 = x4.ncols() - 1;
    let fit4 = ClusteredOls::new(x4, &p4.y, &p4.cluster).unwrap();
    time(
        &format!("wild cluster bootstrap, 4 communities (all 6^4 = 1296 Webb vectors), {n} users"),
        20,
        || fit4.wild_bootstrap(k4, 10_000, 1).unwrap(),
    );
    let p12 = panel(12, 10_000);
    let n12 = p12.y.len();
    let x12 = p12.design_matrix(spec);
    let k12 = x12.ncols() - 1;
    let fit12 = ClusteredOls::new(x12, &p12.y, &p12.cluster).unwrap();
    let wb = time(
        &format!("wild cluster bootstrap, 12 communities, 10,000 sampled draws, {n12} users"),
        10,
        || fit12.wild_bootstrap(k12, 10_000, 1).unwrap(),
    );
    time(
        &format!("CR2 + Bell–McCaffrey df, 12 communities, {n12} users"),
        10,
        || fit12.cr2(k12).unwrap(),
    );
    let rows: Vec<Row> = (0..n)
        .map(|i| Row {
            cluster: format!("c{}", p4.cluster[i]),
            period: Some(p4.period[i] as i64),
            arm: None,
            treated: Some(p4.treated[i]),
            value: p4.y[i],
            covariate: None,
            stratum: None,
        })
        .collect();
    let input = RowsInput {
        rows,
        design: RowsDesign {
            kind: DesignKind::SteppedWedge,
            control_arm: "control".into(),
            community_effects: None,
            alternative: Alternative::TwoSided,
            max_enumerate: 100_000,
            randomisation_draws: 9_999,
            wild_bootstrap_draws: 9_999,
            seed: 0,
        },
    };
    time(
        &format!("analyze_rows end to end (RI + CR2 + CR1 + WCR + IM), 4-community SW, {n} users"),
        10,
        || analyze_rows(&input).unwrap(),
    );
    println!(
        "targets: randomisation {} (< 50 ms), wild bootstrap 10k draws {} (< 200 ms)",
        if ri < 50.0 { "MET" } else { "MISSED" },
        if wb < 200.0 { "MET" } else { "MISSED" }
    );
}
