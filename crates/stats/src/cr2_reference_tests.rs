//! CR1 / CR2 / Bell–McCaffrey df against clubSandwich 0.5.8 (R 4.2.2):
//! `reference/cr2.R` writes `reference/cr2_clubsandwich.json`.
//!
//! Every case is checked twice: through [`ClusteredOls`] on the design matrix
//! of the model (`value ~ 1 + period FE [+ cluster FE | stratum FE]
//! [+ covariate] + treated`, built here from the rows), and through
//! [`analyze_rows`] on the rows themselves when the design supports
//! between-cluster inference (≥ 2 treated and ≥ 2 control communities),
//! otherwise `analyze_rows` must refuse with `Degenerate`.
//!
//! Tolerances: 1e-9 relative for the estimate, the CR2 and CR1 standard
//! errors, the Bell–McCaffrey df and the p-values. The Imbens–Kolesár df is
//! compared with the dense-matrix formula in the same script (clubSandwich
//! has no IK df) to 1e-9.

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use serde_json::Value;

use crate::cluster::{ClusterTest, ClusteredOls};
use crate::rows::{analyze_rows, RowsInput};
use crate::StatsError;

const REF: &str = include_str!("../reference/cr2_clubsandwich.json");

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn f(c: &Value, key: &str) -> f64 {
    c[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{} lacks {key}", c["name"]))
}

/// Design matrix of the rows' model, the treatment column last, and the
/// cluster index per row.
fn design(c: &Value) -> (DMatrix<f64>, Vec<f64>, Vec<usize>) {
    let rows = c["rows"].as_array().unwrap();
    let kind = c["design"]["kind"].as_str().unwrap();
    let cluster_fe = c["design"]["cluster_fixed_effects"].as_bool().unwrap();
    let dense = |key: &str| -> Vec<usize> {
        let labels: Vec<String> = rows.iter().map(|r| r[key].to_string()).collect();
        let map: BTreeMap<&String, usize> = labels
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, l)| (l, i))
            .collect();
        labels.iter().map(|l| map[l]).collect()
    };
    let cl = dense("cluster");
    let per = dense("period");
    let dummies = |ids: &[usize], cols: &mut Vec<Vec<f64>>| {
        let levels = ids.iter().max().map_or(0, |m| m + 1);
        for l in 1..levels {
            cols.push(ids.iter().map(|&v| f64::from(u8::from(v == l))).collect());
        }
    };
    let n = rows.len();
    let mut cols = vec![vec![1.0; n]];
    dummies(&per, &mut cols);
    if cluster_fe {
        dummies(&cl, &mut cols);
    }
    if kind == "blocked" {
        dummies(&dense("stratum"), &mut cols);
    }
    if rows[0].get("covariate").is_some() {
        cols.push(
            rows.iter()
                .map(|r| r["covariate"].as_f64().unwrap())
                .collect(),
        );
    }
    cols.push(
        rows.iter()
            .map(|r| f64::from(u8::from(r["treated"].as_bool().unwrap())))
            .collect(),
    );
    let x = DMatrix::from_fn(n, cols.len(), |i, j| cols[j][i]);
    let y = rows.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    (x, y, cl)
}

fn check(name: &str, c: &Value, cr2: &ClusterTest, ik: &ClusterTest, cr1: &ClusterTest) {
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            rel(got, want) < 1e-9,
            "{name} {what}: {got:e} vs clubSandwich {want:e} (rel {:e})",
            rel(got, want)
        );
    };
    close("estimate", cr2.estimate, f(c, "beta"));
    close("CR2 se", cr2.se, f(c, "cr2_se"));
    close("BM df", cr2.df, f(c, "cr2_df"));
    close("CR2 p", cr2.p_value, f(c, "cr2_p"));
    close("CR1 se (clubSandwich CR1S)", cr1.se, f(c, "cr1s_se"));
    assert_eq!(cr1.df, f(c, "cr1s_df"), "{name} CR1 df");
    close("CR1 p", cr1.p_value, f(c, "cr1s_p"));
    close("IK se", ik.se, f(c, "cr2_se"));
    close("IK df", ik.df, f(c, "ik_df_dense"));
    close("IK p", ik.p_value, f(c, "ik_p_dense"));
}

#[test]
fn cr1_cr2_and_bell_mccaffrey_df_match_clubsandwich() {
    let v: Value = serde_json::from_str(REF).unwrap();
    assert_eq!(v["versions"]["clubSandwich"], "0.5.8");
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let (mut via_rows, mut refused, mut sw_small) = (0, 0, 0);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (x, y, cl) = design(c);
        assert_eq!(x.ncols() as u64, c["p"].as_u64().unwrap(), "{name} p");
        assert_eq!(x.nrows() as u64, c["n"].as_u64().unwrap(), "{name} n");
        let fit = ClusteredOls::new(x.clone(), &y, &cl).unwrap();
        let k = x.ncols() - 1;
        let (cr2, ik, cr1) = (
            fit.cr2(k).unwrap(),
            fit.cr2_ik(k).unwrap(),
            fit.cr1(k).unwrap(),
        );
        check(name, c, &cr2, &ik, &cr1);
        assert!((fit.residual_icc() - f(c, "residual_icc")).abs() < 1e-9);
        // clubSandwich's "CR1" is G/(G−1) only; ours is its "CR1S":
        // CR1S = CR1·(N−1)/(N−p).
        let (n, p) = (x.nrows() as f64, x.ncols() as f64);
        assert!(rel(cr1.se, f(c, "cr1_se") * ((n - 1.0) / (n - p)).sqrt()) < 1e-9);

        let kind = c["design"]["kind"].as_str().unwrap();
        let g = c["clusters"].as_u64().unwrap();
        let treated = c["treated_clusters"].as_u64().unwrap();
        if kind == "stepped_wedge" && g <= 4 {
            sw_small += 1;
        }
        let input: RowsInput = crate::rows_model::legacy_input(&serde_json::json!({
            "rows": c["rows"], "design": c["design"]
        }));
        let out = analyze_rows(&input);
        if kind != "stepped_wedge" && (treated < 2 || g - treated < 2) {
            assert!(matches!(out, Err(StatsError::Degenerate(_))), "{name}");
            refused += 1;
            continue;
        }
        let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
        check(
            name,
            c,
            out.cr2.as_ref().unwrap().result.as_ref().unwrap(),
            out.cr2_ik.as_ref().unwrap().result.as_ref().unwrap(),
            out.cr1.as_ref().unwrap().result.as_ref().unwrap(),
        );
        via_rows += 1;
    }
    assert!(via_rows >= 45, "{via_rows} cases through analyze_rows");
    assert!(refused >= 1 && sw_small >= 8);
}
