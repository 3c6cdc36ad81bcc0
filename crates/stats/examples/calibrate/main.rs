//! Calibration of every test and interval of the statistics engine under the
//! null (and, for intervals, at a known true value).
//!
//! `cargo run -p commonlab-stats --release --example calibrate [SECTION ...]`
//!
//! Sections: `core`, `ratio`, `cuped`, `poststrat`, `bayes`, `mw`,
//! `bootstrap`, `permutation`, `multiple`, `checks` (default: all). Results
//! and their discussion: `docs/calibration.md`.
//!
//! Seeded and reproducible: every section draws from its own stream of
//! ChaCha8 seeded with 2026 (`core` is stream 0, the original calibration, so
//! its rows do not move when sections are added), so a section's figures do
//! not depend on which other sections run. Methods that take a seed
//! themselves (bootstrap, permutation) get the trial index.
//!
//! `core`: 10,000 A/A trials of 1,000 units per arm with a pre-exposure
//! covariate X ~ N(0, 1) and a skewed outcome Y = 2 + 0.7·X + (E − 1),
//! E ~ Exp(1), plus a 0/1 outcome with p = 0.1. The sequential test is also
//! monitored at 10 equally spaced looks ("peeking"), where its guarantee
//! applies; the naive Welch test under the same peeking is shown for
//! contrast. The other sections are described where they are defined.
//!
//! A row's false-positive rate is the share of trials with p < α = 0.05
//! (for Bayesian and bootstrap intervals: the interval excludes the null
//! value); coverage is the share of trials whose 95% interval contains the
//! true value. Trials where a method returns an error (e.g. zero variance)
//! are left out of that row and counted in its "trials" column.

mod checks;
mod common;
mod distribution_free;
mod estimates;

use std::time::Instant;

use checks::{checks, multiple_section};
use common::{pct, Row, ALPHA, SEED, TRIALS};
use distribution_free::{bootstrap, mw, permutation_section};
use estimates::{bayes_section, core, cuped_prop, poststrat_section, ratio};

type Section = (&'static str, fn(&mut Vec<Row>));

fn main() {
    let sections: [Section; 10] = [
        ("core", core),
        ("ratio", ratio),
        ("cuped", cuped_prop),
        ("poststrat", poststrat_section),
        ("bayes", bayes_section),
        ("mw", mw),
        ("bootstrap", bootstrap),
        ("permutation", permutation_section),
        ("multiple", multiple_section),
        ("checks", checks),
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    if let Some(w) = wanted
        .iter()
        .find(|w| !sections.iter().any(|(name, _)| name == w))
    {
        eprintln!(
            "unknown section {w:?}; sections: {}",
            sections.map(|s| s.0).join(", ")
        );
        std::process::exit(2);
    }
    println!(
        "Null calibration, alpha = {ALPHA}, seed {SEED} (ChaCha8, one stream per section); \
         {TRIALS} trials per row unless the trials column says otherwise"
    );
    println!();
    println!(
        "| Section | Method | Trials | False-positive rate | 95% CI coverage | Target | Verdict |"
    );
    println!("|---|---|---|---|---|---|---|");
    let start = Instant::now();
    for (name, f) in sections {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let t0 = Instant::now();
        let mut rows = Vec::new();
        f(&mut rows);
        for r in &rows {
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} |",
                r.name,
                r.trials,
                pct(r.fpr),
                pct(r.cov),
                r.target_text(),
                r.verdict()
            );
        }
        eprintln!("section {name}: {:.1} s", t0.elapsed().as_secs_f64());
    }
    eprintln!("total: {:.1} s", start.elapsed().as_secs_f64());
}
