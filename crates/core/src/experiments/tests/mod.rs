//! Tests of experiments: validation fixtures (files under `testdata/`,
//! compiled in with `include_str!`), the shipped examples, locking and
//! overlap, and assignment (known vectors computed by an independent
//! implementation, and property tests).

mod assignment;
mod chi2;
mod completion;
mod locking;
mod metrics;
mod surveys;
mod switchback;
mod validation;

use super::*;
use crate::flags::{FlagSet, LoadMode};

const THANKS: &str = include_str!("../../../../../experiments/thanks-button.toml");
const DASHBOARD: &str = include_str!("../../../../../experiments/value-dashboard.toml");
const FLAGS: &str = include_str!("../../../../../experiments/flags.json");
const VALID_HASH: &str = include_str!("../testdata/valid_hash.toml");
const VALID_CLUSTER: &str = include_str!("../testdata/valid_cluster.toml");
const VALID_WEDGE: &str = include_str!("../testdata/valid_wedge.toml");

fn spec(src: &str, file: &str) -> TrialSpec {
    match parse_trial(src, file) {
        Ok(s) => s,
        Err(errors) => panic!(
            "{file} does not validate:\n{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn flags() -> FlagSet {
    FlagSet::from_json_str(FLAGS, LoadMode::Strict).unwrap().0
}

/// The error lines for a source (or the empty list when it validates).
fn error_lines(src: &str, file: &str) -> Vec<String> {
    match parse_trial(src, file) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}
