#!/usr/bin/env python3
"""CUPED reference cases on unit-level data (issue #10, items 25 and 26).

Pinned environment (checked at run time):
    numpy 2.1.3, scipy 1.14.1, statsmodels 0.14.4, pandas 2.2.3

Run:
    python -m venv /tmp/pyref
    /tmp/pyref/bin/pip install numpy==2.1.3 scipy==1.14.1 statsmodels==0.14.4 pandas==2.2.3
    /tmp/pyref/bin/python crates/stats/reference/cuped.py

Writes crates/stats/reference/cuped_ols.json (read by
crates/stats/src/cuped_reference_tests.rs). Seeded: re-running reproduces the
JSON byte for byte.

What each case holds, from unit-level arrays y (outcome) and x (pre-exposure
covariate) in a control arm A and a treatment arm B:

* the sufficient statistics the engine reads (n, sum, sum_squares, x_sum,
  x_sum_squares, xy_sum), summed with math.fsum;
* `theta` and the absolute lift: statsmodels OLS `y ~ arm + x` on the stacked
  units (`arm` = 1 in B). The coefficient on x is the pooled within-arm slope
  (ANCOVA); the coefficient on arm is the CUPED absolute lift
  (ybar_B - theta*xbar_B) - (ybar_A - theta*xbar_A). The relative lift is
  that coefficient over |ybar_A|;
* `se`, `df`, `p`: the documented CUPED formula, written here in matrix form
  with numpy's per-arm covariance of (y, x) (ddof = 1 for means; ddof = 0 for
  proportions, whose Var(y) is p(1 - p)), theta held fixed:
  Var(f_i) = (1, -theta) C_i (1, -theta)' / n_i, absolute se^2 = Var(f_A) +
  Var(f_B); relative: delta method on (ybar_A, xbar_A, ybar_B, xbar_B) with the
  exact gradient of (f_B - f_A)/|ybar_A|. Welch-Satterthwaite df on Var(f_i);
  two-sided p from scipy.stats.t. These are not statsmodels' OLS standard
  errors (which assume one residual variance for both arms and account for
  theta being estimated); they are the engine's documented formula;
* `error`: when the adjusted variance of an arm is zero (y an exact linear
  function of x in that arm), the engine must answer with that typed error.

Families: the issue's minimal input (n = 20 per arm, typed proportion and
mean); small-n proportions (n = 2..30, 0/1 and continuous covariates, arms
where y = x); means with n = 3..2000.
"""
import json
import math
import os
import sys

import numpy as np
import pandas as pd
import scipy
import statsmodels
import statsmodels.formula.api as smf
from scipy import stats

PINS = {"numpy": "2.1.3", "scipy": "1.14.1", "statsmodels": "0.14.4", "pandas": "2.2.3"}
for name, mod in (("numpy", np), ("scipy", scipy), ("statsmodels", statsmodels), ("pandas", pd)):
    if mod.__version__ != PINS[name]:
        sys.exit(f"{name} {mod.__version__} != pinned {PINS[name]}")

rng = np.random.default_rng(20260510)


def suff(y, x):
    return {
        "n": float(len(y)),
        "sum": math.fsum(y),
        "sum_squares": math.fsum(y * y),
        "x_sum": math.fsum(x),
        "x_sum_squares": math.fsum(x * x),
        "xy_sum": math.fsum(x * y),
    }


def case(id_, kind, ya, xa, yb, xb):
    ya, xa, yb, xb = (np.asarray(v, dtype=float) for v in (ya, xa, yb, xb))
    df = pd.DataFrame({
        "y": np.concatenate([ya, yb]),
        "x": np.concatenate([xa, xb]),
        "arm": np.concatenate([np.zeros(len(ya)), np.ones(len(yb))]),
    })
    fit = smf.ols("y ~ arm + x", data=df).fit()
    theta = float(fit.params["x"])
    lift = float(fit.params["arm"])
    ddof = 0 if kind == "proportion" else 1
    g = np.array([1.0, -theta])
    var_f, covs = [], []
    for y, x in ((ya, xa), (yb, xb)):
        C = np.cov(np.vstack([y, x]), ddof=ddof)
        covs.append(C / len(y))
        var_f.append(float(g @ C @ g) / len(y))
    out = {"id": id_, "kind": kind, "a": suff(ya, xa), "b": suff(yb, xb),
           "ols": {"theta": theta, "arm": lift, "nobs": float(fit.nobs)}}
    scale_var = [float(np.abs(g) @ np.abs(C) @ np.abs(g)) for C in covs]
    if min(v / s for v, s in zip(var_f, scale_var)) < 1e-12:
        arm = "control" if var_f[0] / scale_var[0] < 1e-12 else "treatment"
        out["error"] = f"{arm} arm has zero variance"
        return [dict(out, scale=s) for s in ("absolute", "relative")]
    sa, sb = var_f
    welch = (sa + sb) ** 2 / (sa**2 / (len(ya) - 1) + sb**2 / (len(yb) - 1))
    sigma = np.zeros((4, 4))
    sigma[:2, :2], sigma[2:, 2:] = covs
    ua = ya.mean()
    res = []
    for scale in ("absolute", "relative"):
        if scale == "absolute":
            effect = lift
            grad = np.array([-1.0, theta, 1.0, -theta])
        else:
            if ua == 0:
                continue
            effect = lift / abs(ua)
            # d/d ybar_A of (f_B - f_A)/|ybar_A| = -1/|ua| - lift*sign(ua)/ua^2
            grad = np.array([-1.0 / abs(ua) - lift * np.sign(ua) / ua**2, theta / abs(ua),
                             1.0 / abs(ua), -theta / abs(ua)])
        se = math.sqrt(float(grad @ sigma @ grad))
        t = effect / se
        res.append(dict(out, scale=scale, expect={
            "theta": theta, "effect": effect, "se": se, "df": welch,
            "p": float(min(1.0, 2 * stats.t.sf(abs(t), welch)))}))
    return res


CASES = []

# The minimal input: n = 20 per arm, sum 4, x_sum 4, x_sum_squares 4,
# xy_sum 3 (control) and 4 (treatment: y = x).
ya = np.array([1] * 4 + [0] * 16)
xa = np.array([1, 1, 1, 0, 1] + [0] * 15)
yb = np.array([1] * 4 + [0] * 16)
xb = yb.copy()
for kind in ("proportion", "mean"):
    CASES += case(f"issue_minimal_{kind}", kind, ya, xa, yb, xb)

# Small-n proportions.
for i in range(40):
    na, nb = (int(v) for v in rng.integers(2, 31, 2))
    binary_x = i % 2 == 0

    def arm(n, shift):
        while True:
            x = (rng.uniform(size=n) < rng.uniform(0.2, 0.8)).astype(float) if binary_x \
                else np.round(rng.normal(3, 1.5, n), 2)
            if np.ptp(x) > 0:
                break
        lin = 1.5 * (x - x.mean()) + shift
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-lin))).astype(float)
        if i % 7 == 3 and binary_x and shift != 0.0:
            y = x.copy()  # y = x in the treatment arm: perfectly correlated
        return y, x

    (ya, xa), (yb, xb) = arm(na, 0.0), arm(nb, rng.normal(0, 0.5))
    if np.ptp(np.concatenate([xa, xb])) == 0 or ya.sum() in (0, na) or yb.sum() in (0, nb):
        continue
    CASES += case(f"prop_small{i}", "proportion", ya, xa, yb, xb)

# y = x in both arms: the adjusted outcome is constant, no variance.
x = np.array([1.0, 0, 0, 1, 0, 1, 0, 0])
CASES += case("prop_exact_fit", "proportion", x, x, x[::-1].copy(), x[::-1].copy())

# Means, small and moderate n.
for i in range(24):
    na, nb = (int(v) for v in rng.integers(3, 2000 if i % 3 == 0 else 40, 2))
    rho = rng.uniform(-0.9, 0.95)
    xa, xb = rng.normal(10, 3, na), rng.normal(10, 3, nb)
    ya = 5 + rho * (xa - 10) + rng.normal(0, 2, na)
    yb = 5 + rho * (xb - 10) + rng.normal(rng.normal(0, 0.3), 2.5, nb)
    if i % 8 == 5:
        ya = -ya  # negative baseline: relative lift divides by |ybar_A|
        yb = -yb
    CASES += case(f"mean{i}", "mean", ya, xa, yb, xb)

out = {"meta": {"pins": PINS, "generator": "crates/stats/reference/cuped.py", "seed": 20260510},
       "cases": CASES}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuped_ols.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"), allow_nan=False)
print(len(CASES), "cases,", sum("error" in c for c in CASES), "errors ->", path)
