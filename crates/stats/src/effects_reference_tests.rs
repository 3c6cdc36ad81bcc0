//! Reference tests against `reference/effects_cases.json`, produced by
//! `reference/effects.py` (numpy 2.1.3 / scipy 1.14.1 / statsmodels 0.14.4).
//! Closed-form quantities must agree to 1e-9 relative.

use crate::bayes::{self, Prior};
use crate::effects::{self, Alternative, ArmStats, Estimate, MetricKind, Scale};
use crate::{cuped, dist, multiple, poststrat, sequential, srm};
use serde_json::Value;

const CASES: &str = include_str!("../reference/effects_cases.json");

fn cases() -> Value {
    serde_json::from_str(CASES).unwrap()
}

/// |a − e| ≤ 1e-9·max(|e|, scale) (+ a tiny absolute floor for p-values ~0).
fn close(id: &str, what: &str, actual: f64, expected: &Value, scale: f64) {
    match expected.as_f64() {
        None => assert!(
            actual.is_infinite(),
            "{id} {what}: expected unbounded, got {actual}"
        ),
        Some(e) => {
            let tol = 1e-9 * e.abs().max(scale) + 1e-300;
            assert!(
                (actual - e).abs() <= tol,
                "{id} {what}: got {actual:e}, expected {e:e} (diff {:e}, tol {tol:e})",
                (actual - e).abs()
            );
        }
    }
}

fn kind(v: &Value) -> MetricKind {
    serde_json::from_value(v.clone()).unwrap()
}
fn scale(v: &Value) -> Scale {
    serde_json::from_value(v.clone()).unwrap()
}
fn arm(v: &Value) -> ArmStats {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn welch_matches_scipy_ttest_ind() {
    let all = cases();
    let list = all["welch_scipy"].as_array().unwrap();
    assert!(list.len() >= 50);
    for c in list {
        let id = c["id"].as_str().unwrap();
        let alpha = c["alpha"].as_f64().unwrap();
        let est = effects::estimate(
            MetricKind::Mean,
            &arm(&c["a"]),
            &arm(&c["b"]),
            Scale::Absolute,
        )
        .unwrap();
        let x = &c["expect"];
        close(id, "effect", est.effect, &x["effect"], est.se);
        close(id, "df", est.df, &x["df"], 0.0);
        close(id, "t", est.effect / est.se, &x["t"], 1.0);
        for (alt, key) in [
            (Alternative::TwoSided, "two_sided"),
            (Alternative::Greater, "greater"),
            (Alternative::Lesser, "lesser"),
        ] {
            let r = effects::t_test(&est, alpha, alt).unwrap();
            close(id, key, r.p_value, &x[key]["p"], 0.0);
            close(id, key, r.ci_lower, &x[key]["lo"], est.se);
            close(id, key, r.ci_upper, &x[key]["hi"], est.se);
        }
    }
}

fn check_full(id: &str, est: &Estimate, sc: Scale, c: &Value, x: &Value) {
    let alpha = c["alpha"].as_f64().unwrap();
    let se = est.se;
    close(id, "effect", est.effect, &x["effect"], se);
    close(id, "se", est.se, &x["se"], 0.0);
    close(id, "df", est.df, &x["df"], 0.0);
    for (alt, key) in [
        (Alternative::TwoSided, "two_sided"),
        (Alternative::Greater, "greater"),
        (Alternative::Lesser, "lesser"),
    ] {
        let r = effects::t_test(est, alpha, alt).unwrap();
        let all = effects::t_tests_all(est, alpha).unwrap();
        let r2 = all[alt as usize];
        assert!(
            (r2.p_value - r.p_value).abs() <= 1e-15 * r.p_value.max(1e-300),
            "{id}"
        );
        close(id, key, r2.p_value, &x["tests"][key]["p"], 0.0);
        close(id, key, r2.ci_lower, &x["tests"][key]["lo"], se);
        close(id, key, r2.ci_upper, &x["tests"][key]["hi"], se);
        close(id, key, r.p_value, &x["tests"][key]["p"], 0.0);
        close(id, key, r.ci_lower, &x["tests"][key]["lo"], se);
        close(id, key, r.ci_upper, &x["tests"][key]["hi"], se);
    }
    let tuning = c["tuning"].as_f64().unwrap();
    let s = sequential::two_sided(est, alpha, tuning).unwrap();
    let xs = &x["tests"]["sequential"];
    close(id, "seq p", s.p_value, &xs["p"], 0.0);
    close(id, "seq lo", s.ci_lower, &xs["lo"], se);
    close(id, "seq hi", s.ci_upper, &xs["hi"], se);
    let pr = Prior {
        mean: c["prior"][0].as_f64().unwrap(),
        stddev: c["prior"][1].as_f64().unwrap(),
    };
    for (p, key) in [(None, "bayes_flat"), (Some(&pr), "bayes_proper")] {
        let b = bayes::posterior(est, p, sc, alpha).unwrap();
        let xb = &x[key];
        close(id, key, b.effect, &xb["effect"], b.se);
        close(id, key, b.se, &xb["se"], 0.0);
        close(id, key, b.ci_lower, &xb["lo"], b.se);
        close(id, key, b.ci_upper, &xb["hi"], b.se);
        close(id, key, b.chance_to_win, &xb["ctw"], 0.0);
        // risk: reference by quadrature (epsrel 1e-13), so the tiny absolute
        // floor only matters when the risk underflows towards 0
        close(id, key, b.risk_control, &xb["risk_control"], 1e-290);
        close(id, key, b.risk_treatment, &xb["risk_treatment"], 1e-290);
    }
}

#[test]
fn grid_matches_reference() {
    let all = cases();
    let list = all["grid"].as_array().unwrap();
    let mut n_ok = 0;
    let mut n_err = 0;
    for c in list {
        let id = c["id"].as_str().unwrap();
        let k = kind(&c["kind"]);
        let sc = scale(&c["scale"]);
        let r = effects::estimate(k, &arm(&c["a"]), &arm(&c["b"]), sc);
        if let Some(err) = c.get("error") {
            let e = r.expect_err(id).to_string();
            assert!(e.contains(err.as_str().unwrap()), "{id}: {e}");
            n_err += 1;
            continue;
        }
        let est = r.unwrap_or_else(|e| panic!("{id}: {e}"));
        check_full(id, &est, sc, c, &c["expect"]);
        n_ok += 1;
    }
    assert!(n_ok >= 150 && n_err >= 20, "{n_ok} {n_err}");
}

#[test]
fn cuped_matches_reference() {
    let all = cases();
    for c in all["cuped"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let k = kind(&c["kind"]);
        let sc = scale(&c["scale"]);
        let r = cuped::estimate(k, &arm(&c["a"]), &arm(&c["b"]), sc)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        close(id, "theta", r.theta, &c["expect"]["theta"], 0.0);
        check_full(id, &r.estimate, sc, c, &c["expect"]);
    }
    for c in all["cuped_scipy"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let r = cuped::estimate(
            MetricKind::Mean,
            &arm(&c["a"]),
            &arm(&c["b"]),
            Scale::Absolute,
        )
        .unwrap();
        let x = &c["expect"];
        // sums vs per-unit data: allow 1e-9 relative on well-conditioned data
        close(id, "theta", r.theta, &c["theta"], 0.0);
        close(id, "effect", r.estimate.effect, &x["effect"], r.estimate.se);
        close(id, "df", r.estimate.df, &x["df"], 0.0);
        let t = effects::t_test(&r.estimate, 0.05, Alternative::TwoSided).unwrap();
        close(id, "p", t.p_value, &x["p"], 0.0);
        close(id, "lo", t.ci_lower, &x["lo"], r.estimate.se);
        close(id, "hi", t.ci_upper, &x["hi"], r.estimate.se);
    }
}

#[test]
fn poststrat_matches_reference() {
    let all = cases();
    let list = all["poststrat"].as_array().unwrap();
    assert!(list.len() >= 50);
    for c in list {
        let id = c["id"].as_str().unwrap();
        let k = kind(&c["kind"]);
        let sc = scale(&c["scale"]);
        let stats: Vec<(String, ArmStats, ArmStats)> = c["strata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    arm(&s["a"]),
                    arm(&s["b"]),
                )
            })
            .collect();
        let strata: Vec<poststrat::Stratum<'_>> = stats
            .iter()
            .map(|(n, a, b)| poststrat::Stratum {
                name: n,
                control: a,
                treatment: b,
            })
            .collect();
        let est = poststrat::estimate(k, &strata, sc).unwrap_or_else(|e| panic!("{id}: {e}"));
        let x = &c["expect"];
        close(id, "effect", est.effect, &x["effect"], est.se);
        close(id, "se", est.se, &x["se"], 0.0);
        let t = effects::t_test(&est, 0.05, Alternative::TwoSided).unwrap();
        close(id, "p", t.p_value, &x["two_sided"]["p"], 0.0);
        close(id, "lo", t.ci_lower, &x["two_sided"]["lo"], est.se);
        close(id, "hi", t.ci_upper, &x["two_sided"]["hi"], est.se);
        let s = sequential::two_sided(&est, 0.05, 5000.0).unwrap();
        close(id, "seq p", s.p_value, &x["sequential"]["p"], 0.0);
        close(id, "seq lo", s.ci_lower, &x["sequential"]["lo"], est.se);
    }
}

#[test]
fn srm_matches_scipy_chisquare() {
    let all = cases();
    let list = all["srm"].as_array().unwrap();
    assert!(list.len() >= 50);
    for c in list {
        let id = c["id"].as_str().unwrap();
        let users: Vec<f64> = serde_json::from_value(c["users"].clone()).unwrap();
        let w: Vec<f64> = serde_json::from_value(c["weights"].clone()).unwrap();
        let r = srm::check(&users, &w).unwrap();
        close(id, "stat", r.statistic, &c["statistic"], 1e-6);
        // p from a statistic that itself carries ~1e-12 relative rounding
        close(id, "p", r.p_value, &c["p"], 0.0);
        assert_eq!(r.mismatch, c["mismatch"].as_bool().unwrap(), "{id}");
    }
}

#[test]
fn multiple_testing_matches_statsmodels() {
    let all = cases();
    let list = all["multiple"].as_array().unwrap();
    assert!(list.len() >= 50);
    for c in list {
        let id = c["id"].as_str().unwrap();
        let p: Vec<f64> = serde_json::from_value(c["p"].clone()).unwrap();
        let h = multiple::holm(&p).unwrap();
        let b = multiple::benjamini_hochberg(&p).unwrap();
        for i in 0..p.len() {
            close(id, "holm", h[i], &c["holm"][i], 0.0);
            close(id, "bh", b[i], &c["bh"][i], 0.0);
        }
    }
}

#[test]
fn distributions_match_scipy() {
    let all = cases();
    for c in all["dist"].as_array().unwrap() {
        let id = format!("{c}");
        match c["kind"].as_str().unwrap() {
            "t" => {
                let (df, x) = (c["df"].as_f64().unwrap(), c["x"].as_f64().unwrap());
                close(&id, "cdf", dist::t_cdf(x, df), &c["cdf"], 0.0);
                close(&id, "sf", dist::t_sf(x, df), &c["sf"], 0.0);
            }
            "t_ppf" => {
                let (df, p) = (c["df"].as_f64().unwrap(), c["p"].as_f64().unwrap());
                close(&id, "ppf", dist::t_ppf(p, df), &c["x"], 1e-6);
            }
            "norm" => {
                let x = c["x"].as_f64().unwrap();
                close(&id, "cdf", dist::norm_cdf(x), &c["cdf"], 0.0);
                close(&id, "sf", dist::norm_sf(x), &c["sf"], 0.0);
            }
            "norm_ppf" => {
                let p = c["p"].as_f64().unwrap();
                close(&id, "ppf", dist::norm_ppf(p), &c["x"], 1e-6);
            }
            "chi2" => {
                let (k, x) = (c["df"].as_f64().unwrap(), c["x"].as_f64().unwrap());
                close(&id, "sf", dist::chi2_sf(x, k), &c["sf"], 0.0);
            }
            other => panic!("unknown {other}"),
        }
    }
}
