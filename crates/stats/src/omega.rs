//! McDonald's omega from a one-factor model fitted by maximum likelihood.
//!
//! The model: items `x = μ + λ f + e`, one common factor `f` (variance 1)
//! and unique parts `e` with variances `ψ` (Jöreskog 1967; McDonald 1999,
//! *Test Theory*, ch. 6). The maximum-likelihood fit of `Σ = λλ' + Ψ` to the
//! sample covariance `S` (divisor n − 1) is scale invariant, so it is made
//! on the correlation matrix `R` and carried back (`λ_S = D^{1/2} λ_R`,
//! `ψ_S = D ψ_R`, `D = diag(S)`). For given `Ψ` the best loadings are
//! `λ = Ψ^{1/2} v √(θ − 1)` with `(θ, v)` the largest eigenpair of
//! `Ψ^{-1/2} R Ψ^{-1/2}`; the iteration `ψ ← diag(R − λλ')` is repeated
//! until it is a fixed point, which satisfies both likelihood equations
//! (`Ψ = diag(R − λλ')` and `R Ψ^{-1} λ = λ (1 + λ'Ψ^{-1}λ)`).
//!
//! * `omega` = `(Σλ_S)² / ((Σλ_S)² + Σψ_S)`: the reliability of the
//!   unweighted sum of the items as scored (what a `sum` or `mean` scale
//!   reports);
//! * `omega_standardized`: the same on `R` (the sum of standardised items,
//!   as `psych::omega` reports for one factor).
//!
//! Refused (a typed error, never a number that means nothing): fewer than
//! three items (a one-factor model of two items is not identified), fewer
//! respondents than items + 1, an item without variance, no common factor
//! (largest eigenvalue ≤ 1), a Heywood case (a uniqueness reaching 0: the
//! model does not fit and omega would be inflated), or no convergence.
//!
//! Checked against an independent solution of the likelihood equations on
//! the covariance matrix (`reference/omega.py`, scipy).

// `!(x > 0.0)` is used on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use nalgebra::{DMatrix, SymmetricEigen};
use serde::Serialize;

use crate::{Result, StatsError};

/// A uniqueness below this (on the correlation scale) is a Heywood case.
pub const HEYWOOD: f64 = 1e-6;
const TOLERANCE: f64 = 1e-14;
const MAX_ITERATIONS: usize = 100_000;

/// McDonald's omega with the fitted one-factor model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Omega {
    /// Reliability of the unweighted sum of the items as scored.
    pub omega: f64,
    /// Reliability of the sum of standardised items.
    pub omega_standardized: f64,
    /// Standardised loadings (sign chosen so that their sum is positive).
    pub loadings: Vec<f64>,
    /// Standardised uniquenesses `1 − λ²`.
    pub uniquenesses: Vec<f64>,
    pub iterations: usize,
}

/// Omega of `responses` (one row per respondent, one column per item; rows
/// complete). See the module docs for what is refused.
pub fn mcdonald_omega(responses: &[Vec<f64>]) -> Result<Omega> {
    let n = responses.len();
    let p = responses.first().map_or(0, Vec::len);
    if p < 3 {
        return Err(StatsError::Degenerate(
            "omega needs at least three items (a one-factor model of two is not identified)".into(),
        ));
    }
    if n < p + 1 {
        return Err(StatsError::Degenerate(format!(
            "omega needs more respondents than items ({n} for {p} items)"
        )));
    }
    if responses
        .iter()
        .any(|r| r.len() != p || r.iter().any(|v| !v.is_finite()))
    {
        return Err(StatsError::InvalidInput(
            "ragged or non-finite responses".into(),
        ));
    }
    let nf = n as f64;
    let means: Vec<f64> = (0..p)
        .map(|j| responses.iter().map(|r| r[j]).sum::<f64>() / nf)
        .collect();
    let s = DMatrix::from_fn(p, p, |i, j| {
        responses
            .iter()
            .map(|r| (r[i] - means[i]) * (r[j] - means[j]))
            .sum::<f64>()
            / (nf - 1.0)
    });
    let d: Vec<f64> = (0..p).map(|i| s[(i, i)]).collect();
    if d.iter().any(|v| !(*v > 0.0)) {
        return Err(StatsError::Degenerate("an item has no variance".into()));
    }
    let r = DMatrix::from_fn(p, p, |i, j| s[(i, j)] / (d[i] * d[j]).sqrt());
    // Start from the squared multiple correlations: ψ = 1 / (R⁻¹)_ii.
    let mut psi: Vec<f64> = match r.clone().try_inverse() {
        Some(inv) => (0..p)
            .map(|i| (1.0 / inv[(i, i)]).clamp(0.05, 0.95))
            .collect(),
        None => {
            return Err(StatsError::Degenerate(
                "the items' correlation matrix is singular".into(),
            ))
        }
    };
    let mut lambda = vec![0.0; p];
    for iteration in 1..=MAX_ITERATIONS {
        let root: Vec<f64> = psi.iter().map(|v| v.sqrt()).collect();
        let a = DMatrix::from_fn(p, p, |i, j| r[(i, j)] / (root[i] * root[j]));
        let eig = SymmetricEigen::new(a);
        let (top, theta) = eig.eigenvalues.iter().copied().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |b, (i, v)| if v > b.1 { (i, v) } else { b },
        );
        if !(theta > 1.0) {
            return Err(StatsError::Degenerate(
                "the items share no common factor".into(),
            ));
        }
        let v = eig.eigenvectors.column(top);
        let scale = (theta - 1.0).sqrt();
        for i in 0..p {
            lambda[i] = root[i] * v[i] * scale;
        }
        let next: Vec<f64> = lambda.iter().map(|l| 1.0 - l * l).collect();
        if next.iter().any(|u| *u < HEYWOOD) {
            return Err(StatsError::Degenerate(
                "Heywood case: an item's unique variance reached zero, so the one-factor model does not fit and omega is not reported".into(),
            ));
        }
        let change = next
            .iter()
            .zip(&psi)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        psi = next;
        if change < TOLERANCE {
            if lambda.iter().sum::<f64>() < 0.0 {
                lambda.iter_mut().for_each(|l| *l = -*l);
            }
            let std_sum: f64 = lambda.iter().sum();
            let omega_standardized =
                std_sum * std_sum / (std_sum * std_sum + psi.iter().sum::<f64>());
            let raw_sum: f64 = lambda.iter().zip(&d).map(|(l, v)| l * v.sqrt()).sum();
            let raw_unique: f64 = psi.iter().zip(&d).map(|(u, v)| u * v).sum();
            let omega = raw_sum * raw_sum / (raw_sum * raw_sum + raw_unique);
            return Ok(Omega {
                omega,
                omega_standardized,
                loadings: lambda,
                uniquenesses: psi,
                iterations: iteration,
            });
        }
    }
    Err(StatsError::Degenerate(
        "the one-factor model did not converge".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REF: &str = include_str!("../reference/omega.json");

    #[test]
    fn omega_matches_the_independent_likelihood_solution() {
        let v: Value = serde_json::from_str(REF).unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let mut refused = 0;
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let x: Vec<Vec<f64>> = serde_json::from_value(c["responses"].clone()).unwrap();
            let got = mcdonald_omega(&x);
            if c["heywood"].as_bool().unwrap() {
                assert!(got.is_err(), "{name}: {got:?}");
                refused += 1;
                continue;
            }
            let o = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-9;
            assert!(
                close(o.omega, &c["omega"]),
                "{name}: {} {}",
                o.omega,
                c["omega"]
            );
            assert!(
                close(o.omega_standardized, &c["omega_standardized"]),
                "{name}"
            );
            for (j, l) in o.loadings.iter().enumerate() {
                assert!(
                    close(*l, &c["loadings"][j]),
                    "{name} loading {j}: {l} {}",
                    c["loadings"][j]
                );
            }
        }
        assert!(refused >= 1, "the reference has Heywood cases");
    }

    #[test]
    fn refused_where_omega_means_nothing() {
        let two = vec![
            vec![1.0, 2.0],
            vec![2.0, 3.0],
            vec![3.0, 5.0],
            vec![4.0, 4.0],
        ];
        assert!(mcdonald_omega(&two).is_err());
        let flat = vec![vec![1.0, 2.0, 3.0]; 10];
        assert!(mcdonald_omega(&flat).is_err());
        let few = vec![
            vec![1.0, 2.0, 3.0],
            vec![2.0, 3.0, 1.0],
            vec![3.0, 1.0, 2.0],
        ];
        assert!(mcdonald_omega(&few).is_err());
    }
}
