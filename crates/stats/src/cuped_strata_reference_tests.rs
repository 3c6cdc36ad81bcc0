//! CUPED within strata against `reference/cuped_strata.json`, produced by
//! `reference/cuped_strata.py` (numpy 2.1.3, scipy 1.14.1, statsmodels
//! 0.14.4, pandas 2.2.3): θ against the statsmodels OLS coefficient on x
//! of `y ~ C(stratum × arm) + x`; the estimate, standard error, df,
//! p-value and interval against the documented formula evaluated with
//! numpy and scipy. To 1e-9 relative.

use super::{within_strata, StratumRow};
use crate::effects::MetricKind;
use serde_json::Value;

const CASES: &str = include_str!("../reference/cuped_strata.json");

fn close(id: &str, what: &str, actual: f64, expected: f64, scale: f64) {
    let tol = 1e-9 * expected.abs().max(scale) + 1e-300;
    assert!(
        (actual - expected).abs() <= tol,
        "{id} {what}: got {actual:e}, expected {expected:e}"
    );
}

#[test]
fn cuped_within_strata_matches_statsmodels_and_the_documented_formula() {
    let all: Value = serde_json::from_str(CASES).unwrap();
    let cases = all["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let id = c["id"].as_str().unwrap();
        let kind: MetricKind = serde_json::from_value(c["kind"].clone()).unwrap();
        let rows: Vec<StratumRow<'_>> = c["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| StratumRow {
                stratum: r[0].as_str().unwrap(),
                treated: r[1].as_bool().unwrap(),
                y: r[2].as_f64().unwrap(),
                x: r[3].as_f64().unwrap(),
            })
            .collect();
        let got = within_strata(kind, &rows).unwrap_or_else(|e| panic!("{id}: {e}"));
        let x = &c["expect"];
        let f = |k: &str| x[k].as_f64().unwrap();
        close(id, "theta", got.theta, f("theta"), 1e-12);
        close(id, "estimate", got.estimate, f("estimate"), got.se);
        close(id, "se", got.se, f("se"), 0.0);
        close(id, "df", got.df, f("df"), 0.0);
        close(id, "p", got.p_value, f("p"), 0.0);
        close(
            id,
            "ci low",
            got.ci95[0],
            x["ci95"][0].as_f64().unwrap(),
            got.se,
        );
        close(
            id,
            "ci high",
            got.ci95[1],
            x["ci95"][1].as_f64().unwrap(),
            got.se,
        );
        assert_eq!(got.strata as u64, x["strata"].as_u64().unwrap(), "{id}");
        let left: Vec<&str> = x["left_out"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(got.left_out, left, "{id}");
    }
}

#[test]
fn refused_without_a_usable_stratum_or_for_ratios() {
    let rows = [
        StratumRow {
            stratum: "a",
            treated: true,
            y: 1.0,
            x: 0.0,
        },
        StratumRow {
            stratum: "a",
            treated: false,
            y: 0.0,
            x: 1.0,
        },
    ];
    assert!(within_strata(MetricKind::Mean, &rows).is_err());
    assert!(within_strata(MetricKind::Ratio, &rows).is_err());
}

/// With one stratum, the estimate and its standard error are the two-arm
/// CUPED's (`cuped::estimate`, same θ and divisors).
#[test]
fn one_stratum_is_the_two_arm_cuped() {
    let all: Value = serde_json::from_str(CASES).unwrap();
    let c = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "mean-one-stratum")
        .unwrap();
    let rows: Vec<(bool, f64, f64)> = c["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[1].as_bool().unwrap(),
                r[2].as_f64().unwrap(),
                r[3].as_f64().unwrap(),
            )
        })
        .collect();
    let arm = |treated: bool| {
        let v: Vec<&(bool, f64, f64)> = rows.iter().filter(|r| r.0 == treated).collect();
        crate::effects::ArmStats {
            n: v.len() as f64,
            sum: v.iter().map(|r| r.1).sum(),
            sum_squares: Some(v.iter().map(|r| r.1 * r.1).sum()),
            x_sum: Some(v.iter().map(|r| r.2).sum()),
            x_sum_squares: Some(v.iter().map(|r| r.2 * r.2).sum()),
            xy_sum: Some(v.iter().map(|r| r.1 * r.2).sum()),
            ..Default::default()
        }
    };
    let two = crate::cuped::estimate(
        MetricKind::Mean,
        &arm(false),
        &arm(true),
        crate::effects::Scale::Absolute,
    )
    .unwrap();
    let strata: Vec<StratumRow<'_>> = rows
        .iter()
        .map(|r| StratumRow {
            stratum: "only",
            treated: r.0,
            y: r.1,
            x: r.2,
        })
        .collect();
    let one = within_strata(MetricKind::Mean, &strata).unwrap();
    close("one stratum", "theta", one.theta, two.theta, 1e-12);
    close(
        "one stratum",
        "estimate",
        one.estimate,
        two.estimate.effect,
        one.se,
    );
    close("one stratum", "se", one.se, two.estimate.se, 0.0);
}
