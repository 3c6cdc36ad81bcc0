#!/usr/bin/env python3
"""CUPED within strata (blocked designs, issue #12) on unit-level data.

Pinned environment (checked at run time):
    numpy 2.1.3, scipy 1.14.1, statsmodels 0.14.4, pandas 2.2.3

Run:
    python -m venv /tmp/pyref
    /tmp/pyref/bin/pip install numpy==2.1.3 scipy==1.14.1 statsmodels==0.14.4 pandas==2.2.3
    /tmp/pyref/bin/python crates/stats/reference/cuped_strata.py

Writes crates/stats/reference/cuped_strata.json (read by
crates/stats/src/cuped_strata_reference_tests.rs). Seeded: re-running
reproduces the JSON byte for byte.

Each case holds unit rows (stratum, treated, y, x) and what the engine must
give (`commonlab_stats::cuped_strata::within_strata`):

* `theta`: statsmodels OLS `y ~ C(cell) + x` (cell = stratum x arm) over
  the strata with two or more units in each arm: the coefficient on x, the
  pooled within-cell slope;
* per used stratum, the adjusted difference of means
  (ybar_B - theta*xbar_B) - (ybar_A - theta*xbar_A) and its variance
  var(y - theta*x)_B / n_B + var(y - theta*x)_A / n_A with numpy's variance
  (ddof = 1 for means, ddof = 0 for proportions, as the hash CUPED);
* `estimate` = sum_s w_s diff_s with w_s = n_s / N, `se` = sqrt(sum_s
  w_s^2 var_s), `df` the Welch-Satterthwaite df of that stratified variance
  (sum k)^2 / sum k^2/(n_ca - 1) with k_ca = w_s^2 var_ca / n_ca, `p`
  two-sided from scipy.stats.t, `ci95` with scipy.stats.t.ppf(0.975, df);
  `left_out` the strata without two units in an arm. As a cross-check, a case without covariate effect has theta near
  0 and with one stratum the estimate equals the two-arm CUPED lift.
"""

import json
import math
import sys

import numpy as np
import pandas as pd
import scipy
import scipy.stats
import statsmodels
import statsmodels.formula.api as smf

PINS = {"numpy": "2.1.3", "scipy": "1.14.1", "statsmodels": "0.14.4", "pandas": "2.2.3"}
for mod in (np, scipy, statsmodels, pd):
    want = PINS[mod.__name__]
    if mod.__version__ != want:
        sys.exit(f"{mod.__name__} {mod.__version__} != pinned {want}")

OUT = "crates/stats/reference/cuped_strata.json"


def expected(kind, rows):
    df = pd.DataFrame(rows, columns=["stratum", "treated", "y", "x"])
    counts = df.groupby(["stratum", "treated"]).size().unstack(fill_value=0)
    for t in (False, True):
        if t not in counts.columns:
            counts[t] = 0
    used = sorted(s for s in counts.index if counts.loc[s, False] >= 2 and counts.loc[s, True] >= 2)
    left = sorted(s for s in counts.index if s not in used)
    d = df[df["stratum"].isin(used)].copy()
    d["cell"] = d["stratum"] + "|" + d["treated"].astype(str)
    if d.groupby("cell")["x"].apply(lambda v: float(np.var(v))).sum() > 0:
        fit = smf.ols("y ~ C(cell) + x", data=d).fit()
        theta = float(fit.params["x"])
    else:
        theta = 0.0
    ddof = 0 if kind == "proportion" else 1
    total = float(len(d))
    est, var, df_den = 0.0, 0.0, 0.0
    for s in used:
        parts = []
        for t in (False, True):
            c = d[(d["stratum"] == s) & (d["treated"] == t)]
            adj = c["y"].to_numpy() - theta * c["x"].to_numpy()
            parts.append((adj.mean(), np.var(adj, ddof=ddof) / len(adj), len(adj)))
        w = len(d[d["stratum"] == s]) / total
        est += w * (parts[1][0] - parts[0][0])
        for _, v, n in parts:
            k = w * w * v
            var += k
            df_den += k * k / (n - 1)
    se = math.sqrt(var)
    df = var * var / df_den
    t = scipy.stats.t.ppf(0.975, df)
    return {
        "theta": theta,
        "estimate": est,
        "se": se,
        "df": df,
        "p": float(2 * scipy.stats.t.sf(abs(est / se), df)),
        "ci95": [est - t * se, est + t * se],
        "strata": len(used),
        "left_out": left,
    }


def case(rng, cid, kind, strata, n_range, effect, slope, binary_x=False):
    rows = []
    for si, s in enumerate(strata):
        level = 0.3 * si
        for treated in (False, True):
            n = int(rng.integers(n_range[0], n_range[1] + 1))
            for _ in range(n):
                x = float(rng.integers(0, 2)) if binary_x else float(rng.normal(1.0 + level, 1.0))
                if kind == "proportion":
                    p = min(0.95, max(0.05, 0.3 + 0.1 * si + (effect if treated else 0.0) + slope * (x - 0.5)))
                    y = float(rng.random() < p)
                else:
                    y = float(level + slope * x + (effect if treated else 0.0) + rng.normal(0.0, 1.0))
                rows.append([s, treated, y, x])
    return {"id": cid, "kind": kind, "rows": rows, "expect": expected(kind, rows)}


def main():
    rng = np.random.default_rng(20261204)
    cases = [
        case(rng, "mean-3-strata", "mean", ["a", "b", "c"], (8, 15), 0.5, 0.8),
        case(rng, "mean-5-strata-large", "mean", ["s1", "s2", "s3", "s4", "s5"], (40, 120), 0.2, 1.5),
        case(rng, "mean-one-stratum", "mean", ["only"], (20, 30), 0.4, 0.6),
        case(rng, "mean-no-slope", "mean", ["a", "b"], (10, 20), 0.3, 0.0),
        case(rng, "proportion-3-strata", "proportion", ["wiki-a", "coop-b", "social-c"], (15, 40), 0.15, 0.2, binary_x=True),
        case(rng, "proportion-small", "proportion", ["a", "b"], (3, 6), 0.2, 0.3, binary_x=True),
    ]
    # A stratum with one unit in an arm: left out.
    c = case(rng, "mean-with-a-thin-stratum", "mean", ["a", "b", "c"], (6, 10), 0.5, 1.0)
    c["rows"].append(["thin", True, 1.0, 2.0])
    c["rows"].append(["thin", False, 0.5, 1.0])
    c["rows"].append(["thin", False, 0.7, 1.5])
    c["expect"] = expected("mean", c["rows"])
    cases.append(c)
    with open(OUT, "w") as f:
        json.dump({"generator": "crates/stats/reference/cuped_strata.py", "pins": PINS, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
