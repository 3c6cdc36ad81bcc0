//! Hand-rolled timing of `analyze::analyze` on 20 metrics × 3 arms from
//! sufficient statistics (target: < 1 ms per call).
//!
//! `cargo bench -p commonlab-stats --bench analyze`

use commonlab_stats::analyze::{analyze, AnalyzeInput, MetricInput, StratumInput};
use commonlab_stats::effects::{ArmStats, MetricKind};
use std::hint::black_box;
use std::time::Instant;

fn arm(i: usize, j: usize, kind: MetricKind, cov: bool) -> ArmStats {
    let n = 10_000.0 + 37.0 * (i + j) as f64;
    let mean = 3.0 + 0.1 * i as f64 + 0.02 * j as f64;
    let var = 4.0 + 0.05 * j as f64;
    let mut s = match kind {
        MetricKind::Proportion => {
            let c = (n * 0.1 * (1.0 + 0.01 * j as f64)).round();
            ArmStats::new(n, c, c)
        }
        MetricKind::Mean => ArmStats::new(n, n * mean, (n - 1.0) * var + n * mean * mean),
        MetricKind::Ratio => ArmStats::ratio(
            n,
            n * mean * 2.0,
            n * (4.0 * var + 4.0 * mean * mean),
            n * 2.0,
            n * 5.0,
            n * (mean * 4.0 + 0.5),
        ),
    };
    if cov && kind != MetricKind::Ratio {
        let xm = mean * 0.95;
        s = s.with_covariate(
            n * xm,
            (n - 1.0) * var + n * xm * xm,
            (n - 1.0) * 0.6 * var + n * xm * mean,
        );
    }
    s
}

fn input() -> AnalyzeInput {
    let kinds = [MetricKind::Mean, MetricKind::Proportion, MetricKind::Ratio];
    let metrics = (0..20)
        .map(|i| {
            let kind = kinds[i % 3];
            let name = format!("metric_{i}");
            if i % 5 == 4 {
                MetricInput {
                    name,
                    kind,
                    stats: None,
                    strata: Some(
                        (0..4)
                            .map(|k| StratumInput {
                                name: format!("community_{k}"),
                                stats: (0..3).map(|j| arm(i + k, j, kind, false)).collect(),
                            })
                            .collect(),
                    ),
                }
            } else {
                MetricInput {
                    name,
                    kind,
                    stats: Some((0..3).map(|j| arm(i, j, kind, i % 2 == 0)).collect()),
                    strata: None,
                }
            }
        })
        .collect();
    AnalyzeInput {
        alpha: 0.05,
        sequential_tuning_parameter: 5000.0,
        prior: None,
        weights: Some(vec![1.0, 1.0, 1.0]),
        users: Some(vec![10_000.0, 10_037.0, 10_074.0]),
        arms: vec!["control".into(), "t1".into(), "t2".into()],
        metrics,
        survey_response: None,
    }
}

fn main() {
    let inp = input();
    // warm-up
    for _ in 0..200 {
        black_box(analyze(black_box(&inp)));
    }
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        black_box(analyze(black_box(&inp)));
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let med = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!("analyze: 20 metrics x 3 arms (CUPED on 8, strata on 4): mean {mean:.1} µs, median {med:.1} µs, p99 {p99:.1} µs");
    let t = Instant::now();
    for _ in 0..500 {
        black_box(serde_json::to_string(&analyze(black_box(&inp))).unwrap());
    }
    println!(
        "analyze + JSON serialisation: {:.1} µs per call",
        t.elapsed().as_secs_f64() * 1e6 / 500.0
    );
}
