//! Tests of [`ClusteredOls`]: CR1, CR2, CR2-IK and the wild cluster bootstrap
//! against `reference/few_cluster.json`, and the typed errors.

use super::*;
use serde_json::Value;

const REF: &str = include_str!("../reference/few_cluster.json");

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn case_fit(c: &Value) -> (ClusteredOls, usize) {
    let xs: Vec<Vec<f64>> = serde_json::from_value(c["X"].clone()).unwrap();
    let y: Vec<f64> = serde_json::from_value(c["y"].clone()).unwrap();
    let cl: Vec<usize> = serde_json::from_value(c["cluster"].clone()).unwrap();
    let n = xs.len();
    let p = xs[0].len();
    let x = DMatrix::from_fn(n, p, |i, j| xs[i][j]);
    let k = c["coef"].as_u64().unwrap() as usize;
    (ClusteredOls::new(x, &y, &cl).unwrap(), k)
}

#[test]
fn cr1_cr2_match_reference() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for c in cases {
        let (fit, k) = case_fit(c);
        let name = c["name"].as_str().unwrap();
        let cr1 = fit.cr1(k).unwrap();
        assert!(
            rel(cr1.estimate, c["beta"].as_f64().unwrap()) < 1e-9,
            "{name}"
        );
        assert!(
            rel(cr1.se, c["cr1_se"].as_f64().unwrap()) < 1e-9,
            "{name} cr1 se"
        );
        assert!(
            rel(cr1.p_value, c["cr1_p"].as_f64().unwrap()) < 1e-8,
            "{name} cr1 p"
        );
        let cr2 = fit.cr2(k).unwrap();
        assert!(
            rel(cr2.se, c["cr2_se"].as_f64().unwrap()) < 1e-9,
            "{name} cr2 se {} vs {}",
            cr2.se,
            c["cr2_se"]
        );
        assert!(
            rel(cr2.df, c["cr2_df"].as_f64().unwrap()) < 1e-9,
            "{name} cr2 df {} vs {}",
            cr2.df,
            c["cr2_df"]
        );
        assert!(
            rel(cr2.p_value, c["cr2_p"].as_f64().unwrap()) < 1e-8,
            "{name} cr2 p"
        );
        let rho = fit.residual_icc();
        assert!(
            (rho - c["residual_icc"].as_f64().unwrap()).abs() < 1e-9,
            "{name} rho"
        );
        let ik = fit.cr2_ik(k).unwrap();
        assert!(rel(ik.se, cr2.se) < 1e-12);
        assert!(
            rel(ik.df, c["cr2_ik_df"].as_f64().unwrap()) < 1e-8,
            "{name} ik df {} vs {}",
            ik.df,
            c["cr2_ik_df"]
        );
        assert!(
            rel(ik.p_value, c["cr2_ik_p"].as_f64().unwrap()) < 1e-8,
            "{name} ik p"
        );
    }
}

#[test]
fn wild_bootstrap_matches_enumeration_reference() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let mut checked = 0;
    for c in v["cases"].as_array().unwrap() {
        if let Some(p) = c.get("wcr_p_enumerated").and_then(|x| x.as_f64()) {
            let (fit, k) = case_fit(c);
            let wb = fit.wild_bootstrap(k, 2_000_000, 1).unwrap();
            assert!(wb.enumerated);
            assert!(
                rel(wb.p_value, p) < 1e-12,
                "{} {} vs {p}",
                c["name"],
                wb.p_value
            );
            assert!(wb.min_attainable_p <= wb.p_value);
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn wild_bootstrap_sampled_close_to_enumerated() {
    let v: Value = serde_json::from_str(REF).unwrap();
    let c = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c.get("wcr_p_enumerated").is_some())
        .unwrap();
    let (fit, k) = case_fit(c);
    let exact = fit.wild_bootstrap(k, 2_000_000, 1).unwrap().p_value;
    let b = 200; // < 6^G so sampling is used when G >= 3
    let s = fit.wild_bootstrap(k, b, 7).unwrap();
    if !s.enumerated {
        let sd = (exact * (1.0 - exact) / b as f64).sqrt();
        assert!((s.p_value - exact).abs() < 4.0 * sd + 1e-9);
    }
    // seeded: same seed, same answer
    assert_eq!(s, fit.wild_bootstrap(k, b, 7).unwrap());
}

#[test]
fn degenerate_inputs_are_typed_errors() {
    let x = DMatrix::from_fn(4, 2, |i, j| if j == 0 { 1.0 } else { (i % 2) as f64 });
    // one cluster
    assert!(matches!(
        ClusteredOls::new(x.clone(), &[1.0, 2.0, 3.0, 4.0], &[0, 0, 0, 0]),
        Err(StatsError::Degenerate(_))
    ));
    // collinear
    let xc = DMatrix::from_fn(4, 2, |_, _| 1.0);
    assert!(matches!(
        ClusteredOls::new(xc, &[1.0, 2.0, 3.0, 4.0], &[0, 0, 1, 1]),
        Err(StatsError::Degenerate(_))
    ));
    // perfect fit → zero variance
    let fit = ClusteredOls::new(x.clone(), &[1.0, 2.0, 1.0, 2.0], &[0, 0, 1, 1]).unwrap();
    assert!(matches!(fit.cr1(1), Err(StatsError::Degenerate(_))));
    assert!(matches!(fit.cr2(1), Err(StatsError::Degenerate(_))));
    // mismatched lengths
    assert!(matches!(
        ClusteredOls::new(x, &[1.0], &[0]),
        Err(StatsError::InvalidInput(_))
    ));
}
