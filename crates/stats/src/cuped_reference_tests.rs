//! CUPED against unit-level references in `reference/cuped_ols.json`,
//! produced by `reference/cuped.py` (numpy 2.1.3, scipy 1.14.1, statsmodels
//! 0.14.4, pandas 2.2.3): θ and the absolute lift against statsmodels OLS
//! `y ~ arm + x` (the relative lift is that coefficient over |ȳ_A|), the
//! standard error, Welch df and p-value against the documented formula
//! evaluated with numpy's per-arm covariance of (y, x). Everything to 1e-9
//! relative. Includes the minimal input (#10 item 25) and small-n
//! proportions.

use crate::cuped;
use crate::effects::{self, Alternative, ArmStats, MetricKind, Scale};
use serde_json::Value;

const CASES: &str = include_str!("../reference/cuped_ols.json");

fn close(id: &str, what: &str, actual: f64, expected: f64, scale: f64) {
    let tol = 1e-9 * expected.abs().max(scale) + 1e-300;
    assert!(
        (actual - expected).abs() <= tol,
        "{id} {what}: got {actual:e}, expected {expected:e} (diff {:e}, tol {tol:e})",
        (actual - expected).abs()
    );
}

#[test]
fn cuped_matches_statsmodels_ols_and_the_documented_se() {
    let all: Value = serde_json::from_str(CASES).unwrap();
    let list = all["cases"].as_array().unwrap();
    let (mut ok, mut err, mut small_prop) = (0, 0, 0);
    for c in list {
        let id = &format!("{} {}", c["id"].as_str().unwrap(), c["scale"]);
        let kind: MetricKind = serde_json::from_value(c["kind"].clone()).unwrap();
        let scale: Scale = serde_json::from_value(c["scale"].clone()).unwrap();
        let a: ArmStats = serde_json::from_value(c["a"].clone()).unwrap();
        let b: ArmStats = serde_json::from_value(c["b"].clone()).unwrap();
        let r = cuped::estimate(kind, &a, &b, scale);
        if let Some(e) = c.get("error") {
            let got = r.expect_err(id).to_string();
            assert_eq!(got, e.as_str().unwrap(), "{id}");
            err += 1;
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("{id}: {e}"));
        let x = &c["expect"];
        let f = |k: &str| x[k].as_f64().unwrap();
        let se = r.estimate.se;
        close(id, "theta (OLS coefficient on x)", r.theta, f("theta"), 0.0);
        close(
            id,
            "effect (OLS coefficient on arm)",
            r.estimate.effect,
            f("effect"),
            se,
        );
        close(id, "se", se, f("se"), 0.0);
        close(id, "df", r.estimate.df, f("df"), 0.0);
        let t = effects::t_test(&r.estimate, 0.05, Alternative::TwoSided).unwrap();
        close(id, "p", t.p_value, f("p"), 0.0);
        if kind == MetricKind::Proportion && a.n <= 30.0 {
            small_prop += 1;
        }
        ok += 1;
    }
    assert!(
        ok >= 100 && err >= 2 && small_prop >= 60,
        "{ok} {err} {small_prop}"
    );
}
