//! Speed of the switchback analysis (issue 17's target: randomisation
//! inference with 100,000 sampled allocations on 4 communities × 12
//! periods with 200,000 members' rows, under 2 s; figures in
//! docs/benchmarks.md, "Switchback randomisation inference").
//!
//! Each repetition does what a report does for one metric: 200,000
//! members' rows (community, period, value) become the 48 community ×
//! period cells (each cell the mean of its members' values: what
//! `Store::community_period_cells` returns and `report::analysis` turns
//! into cells), then `analyze_switchback` runs in full (the estimate,
//! randomisation inference over 100,000 allocations drawn from the
//! scheme, CR2, the carry-over check), with the report's own
//! `max_enumerate` of 100,000 (so every scheme here is sampled: 2^48,
//! 6^12 and 2^24 allocations). The rows are made once, outside the timing.
//!
//! `cargo run --release -p commonlab-stats --example bench_switchback [REPS]`
//! (default 7 repetitions per scheme after one warm-up; prints min, median
//! and max wall time, the median CPU time of this process (from
//! `/proc/self/stat`, 10 ms ticks: on a shared machine the wall time
//! includes waiting for a core), and the time of the cells apart).

use std::hint::black_box;
use std::time::Instant;

use commonlab_stats::switchback::{analyze_switchback, Cell, Scheme, SwitchbackInput};

const COMMUNITIES: usize = 4;
const PERIODS: usize = 12;
const MEMBERS: usize = 200_000;
const DRAWS: usize = 100_000;
const MAX_ENUMERATE: u64 = 100_000;

fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 11) as f64) / ((1u64 << 53) as f64)
}

/// One member's row: community, period, value.
struct MemberRow {
    community: usize,
    period: usize,
    value: f64,
}

/// The allocation the scheme drew (fixed, so every repetition analyses
/// the same data).
fn allocation(scheme: Scheme) -> Vec<Vec<bool>> {
    (0..COMMUNITIES)
        .map(|c| {
            (0..PERIODS)
                .map(|k| match scheme {
                    // Two of four on in each period, rotating.
                    Scheme::Balanced => (c + k / 2) % 4 < 2,
                    // One period of each pair.
                    Scheme::BlockedPairs => (k % 2 == 0) == ((c + k / 2) % 2 == 0),
                    Scheme::Independent { .. } => (c * 7 + k * 3) % 5 < 2,
                })
                .collect()
        })
        .collect()
}

fn members(on: &[Vec<bool>]) -> Vec<MemberRow> {
    let mut s = 17u64;
    let base: Vec<f64> = (0..COMMUNITIES).map(|_| lcg(&mut s)).collect();
    (0..MEMBERS)
        .map(|i| {
            let community = i % COMMUNITIES;
            let period = (i / COMMUNITIES) % PERIODS;
            let effect = if on[community][period] { 0.01 } else { 0.0 };
            let value = base[community] + 0.01 * period as f64 + effect + 2.0 * lcg(&mut s);
            MemberRow {
                community,
                period,
                value,
            }
        })
        .collect()
}

/// The cells, as the analysis reads them: the mean of each cell's members.
fn cells(rows: &[MemberRow]) -> Vec<Cell> {
    let mut sum = [[0.0f64; PERIODS]; COMMUNITIES];
    let mut n = [[0u64; PERIODS]; COMMUNITIES];
    for r in rows {
        sum[r.community][r.period] += r.value;
        n[r.community][r.period] += 1;
    }
    let mut out = Vec::with_capacity(COMMUNITIES * PERIODS);
    for c in 0..COMMUNITIES {
        for k in 0..PERIODS {
            if n[c][k] > 0 {
                out.push(Cell {
                    community: c,
                    period: k,
                    value: sum[c][k] / n[c][k] as f64,
                });
            }
        }
    }
    out
}

/// CPU time of this process so far, in seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field, stime the 15th; the clock ticks 100 times a second.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    println!(
        "{COMMUNITIES} communities x {PERIODS} periods, {MEMBERS} members' rows, {DRAWS} sampled allocations; {reps} repetitions after a warm-up"
    );
    println!("| scheme | min | median | max | CPU (median) | of which the cells (median) | RI p |");
    println!("|---|---|---|---|---|---|---|");
    for (name, scheme) in [
        ("independent(0.5)", Scheme::Independent { probability: 0.5 }),
        ("balanced", Scheme::Balanced),
        ("blocked_pairs", Scheme::BlockedPairs),
    ] {
        let on = allocation(scheme);
        let rows = members(&on);
        let run = || {
            let cpu0 = cpu_seconds();
            let t0 = Instant::now();
            let cells = cells(black_box(&rows));
            let t_cells = t0.elapsed().as_secs_f64();
            let x = SwitchbackInput {
                communities: COMMUNITIES,
                periods: PERIODS,
                cells,
                on: on.clone(),
                scheme,
                max_enumerate: MAX_ENUMERATE,
                draws: DRAWS,
                seed: 2026,
            };
            let r = analyze_switchback(&x).expect("analysable");
            assert!(!r.randomisation.exact);
            assert_eq!(r.randomisation.evaluated, DRAWS as u64);
            (t0.elapsed().as_secs_f64(), t_cells, cpu_seconds() - cpu0, r)
        };
        black_box(run());
        let mut times = Vec::new();
        let mut cell_times = Vec::new();
        let mut cpu_times = Vec::new();
        let mut last = None;
        for _ in 0..reps.max(1) {
            let (t, tc, cpu, r) = run();
            times.push(t);
            cell_times.push(tc);
            cpu_times.push(cpu);
            last = Some(r);
        }
        times.sort_by(f64::total_cmp);
        cell_times.sort_by(f64::total_cmp);
        cpu_times.sort_by(f64::total_cmp);
        let r = last.expect("one repetition");
        let ms = |s: f64| format!("{:.0} ms", s * 1e3);
        println!(
            "| {name} | {} | {} | {} | {} | {:.1} ms | {:.4} |",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            ms(cpu_times[cpu_times.len() / 2]),
            cell_times[cell_times.len() / 2] * 1e3,
            r.randomisation.p_value,
        );
    }
}
