#!/usr/bin/env python3
"""Independent reference values for McDonald's omega (commonlab-stats `omega`).

Pinned: numpy 2.4.6, scipy 1.17.1 (any recent numpy/scipy gives the same
values to 1e-12).
Run:    python3 crates/stats/reference/omega.py
Writes: crates/stats/reference/omega.json (read by the Rust unit test).

Independent of the Rust algorithm (a fixed-point iteration on the
correlation matrix with an eigendecomposition): here the maximum-likelihood
one-factor model is fitted on the *covariance* matrix S (divisor n - 1) by
minimising the discrepancy F = log|Sigma| + tr(S Sigma^-1) - log|S| - p over
the loadings and unique variances jointly (L-BFGS-B with the analytic
gradient), and the solution is then polished by solving the likelihood
equations grad F = 0 with MINPACK's hybrid method (scipy.optimize.fsolve)
to machine precision.

omega              = (sum lambda_S)^2 / ((sum lambda_S)^2 + sum psi_S)
omega_standardized = the same with lambda_R = lambda_S / sd, psi_R = psi_S / var
A case is a Heywood case when a standardised uniqueness is below 1e-5 at the
bounded optimum (the Rust code refuses those).
"""
import json
import os

import numpy as np
from scipy import optimize


def fit(S):
    p = S.shape[0]
    logdet_s = np.linalg.slogdet(S)[1]

    def unpack(x):
        return x[:p], np.exp(x[p:])

    def f(x):
        lam, psi = unpack(x)
        sigma = np.outer(lam, lam) + np.diag(psi)
        sign, logdet = np.linalg.slogdet(sigma)
        inv = np.linalg.inv(sigma)
        val = logdet + np.trace(S @ inv) - logdet_s - p
        g = inv - inv @ S @ inv
        grad = np.concatenate([2 * g @ lam, np.diag(g) * psi])
        return val, grad

    d = np.diag(S)
    x0 = np.concatenate([np.sqrt(d) * 0.7, np.log(d * 0.5)])
    res = optimize.minimize(f, x0, jac=True, method="L-BFGS-B",
                            bounds=[(None, None)] * p + [(np.log(d[i] * 1e-9), None) for i in range(p)],
                            options={"ftol": 0, "gtol": 1e-13, "maxiter": 100000, "maxcor": 50})
    lam, psi = unpack(res.x)
    if np.min(psi / d) < 1e-5:
        return None

    def eqs(z):
        lam, psi = z[:p], z[p:]
        sigma = np.outer(lam, lam) + np.diag(psi)
        inv = np.linalg.inv(sigma)
        g = inv - inv @ S @ inv
        return np.concatenate([2 * g @ lam, np.diag(g)])

    z = optimize.fsolve(eqs, np.concatenate([lam, psi]), xtol=1e-15)
    lam, psi = z[:p], z[p:]
    assert np.max(np.abs(eqs(z))) < 1e-12, np.max(np.abs(eqs(z)))
    if lam.sum() < 0:
        lam = -lam
    return lam, psi


def main():
    rng = np.random.default_rng(20261204)
    cases = []
    for c in range(60):
        p = int(rng.integers(3, 11))
        n = int(rng.integers(p + 15, 300))
        loadings = rng.uniform(0.3, 0.85, p)
        if c % 7 == 3:
            loadings[0] = -loadings[0]  # a reverse-worded item left unreversed
        f = rng.standard_normal(n)
        e = rng.standard_normal((n, p)) * np.sqrt(1 - loadings ** 2)
        x = f[:, None] * loadings + e
        if c % 2 == 0:  # Likert 1..5
            x = np.clip(np.round(x * 1.1 + 3), 1, 5)
        else:
            x = np.round(x * rng.uniform(0.5, 3, p) + 10, 3)
        cases.append((f"case{c}", x))
    # Heywood cases: an item that is almost a copy of another.
    for c in range(4):
        n = 40 + 10 * c
        a = rng.standard_normal(n)
        b = a + rng.standard_normal(n) * 1e-3
        others = rng.standard_normal((n, 2)) * 0.2 + (a * 0.1)[:, None]
        cases.append((f"heywood{c}", np.column_stack([a, b, others])))

    out = []
    for name, x in cases:
        S = np.cov(x, rowvar=False, ddof=1)
        fitted = fit(S)
        case = {"name": name, "responses": x.tolist(), "heywood": fitted is None}
        if fitted is not None:
            lam, psi = fitted
            d = np.diag(S)
            omega = lam.sum() ** 2 / (lam.sum() ** 2 + psi.sum())
            lr, pr = lam / np.sqrt(d), psi / d
            omega_std = lr.sum() ** 2 / (lr.sum() ** 2 + pr.sum())
            case.update({"omega": omega, "omega_standardized": omega_std, "loadings": lr.tolist()})
        out.append(case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "omega.json")
    with open(path, "w") as fh:
        json.dump({"cases": out}, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"{len(out)} cases, {sum(c['heywood'] for c in out)} Heywood -> {path}")


if __name__ == "__main__":
    main()
