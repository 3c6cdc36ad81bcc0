#!/usr/bin/env python3
"""Reference cases for the few-community model choice (issue #10, item 27).

Pinned environment (checked at run time):
    numpy 2.1.3, scipy 1.14.1, statsmodels 0.14.4, pandas 2.2.3

Run:
    python -m venv /tmp/pyref
    /tmp/pyref/bin/pip install numpy==2.1.3 scipy==1.14.1 statsmodels==0.14.4 pandas==2.2.3
    /tmp/pyref/bin/python crates/stats/reference/rows_model.py

Writes crates/stats/reference/rows_model.json (read by the tests in
crates/stats/src/rows_model_tests.rs). Seeded: re-running reproduces the JSON
byte for byte.

Each case is a set of rows (the `analyze_rows` input format) and the design,
and the expected result under the engine's default model:

* stepped wedges (3-5 communities, per-user and per-cell rows, with and
  without a covariate varying within communities) and cluster designs with
  baseline periods (communities treated from a common period on): community
  and period fixed effects, `value ~ C(period) + C(cluster) [+ covariate] +
  treated`;
* pure parallel cluster designs (every community in one arm throughout) with
  1-3 periods: community effects would absorb the treatment, so the model is
  `value ~ [C(period)] [+ covariate] + treated`.

The estimate is the statsmodels OLS coefficient on `treated`. The
randomisation p-value enumerates every assignment the design allowed
(all orders of communities to the crossover steps for a stepped wedge, every
choice of k treated communities otherwise) with itertools, refits the same
OLS (numpy lstsq) for each, and counts |theta*| >= |theta| (two-sided, with
the engine's relative tie tolerance 1e-9); `min_p` is the share of
assignments tying the most extreme |theta*|. Each case also stores the result
without community effects (`community_effects = "none"`) for the designs
where they apply, so the tests show that the default changed the model.
"""
import itertools
import json
import os
import sys

import numpy as np
import pandas as pd
import scipy
import statsmodels
import statsmodels.formula.api as smf

PINS = {"numpy": "2.1.3", "scipy": "1.14.1", "statsmodels": "0.14.4", "pandas": "2.2.3"}
for name, mod in (("numpy", np), ("scipy", scipy), ("statsmodels", statsmodels), ("pandas", pd)):
    if mod.__version__ != PINS[name]:
        sys.exit(f"{name} {mod.__version__} != pinned {PINS[name]}")

rng = np.random.default_rng(20260511)


def design_matrix(df, treated, cluster_fe):
    cols = [np.ones(len(df))]
    for p in sorted(df.period.unique())[1:]:
        cols.append((df.period == p).astype(float).to_numpy())
    if cluster_fe:
        for c in sorted(df.cluster.unique())[1:]:
            cols.append((df.cluster == c).astype(float).to_numpy())
    if "covariate" in df:
        cols.append(df.covariate.to_numpy())
    cols.append(treated)
    return np.column_stack(cols)


def theta(df, treated, cluster_fe):
    X = design_matrix(df, treated, cluster_fe)
    b, *_ = np.linalg.lstsq(X, df.value.to_numpy(), rcond=None)
    return b[-1]


def analyse(df, assignments, cluster_fe):
    """OLS estimate (statsmodels) and exact randomisation p over `assignments`,
    each a function cluster, period -> treated."""
    formula = "value ~ " + " + ".join(
        (["C(period)"] if df.period.nunique() > 1 else [])
        + (["C(cluster)"] if cluster_fe else [])
        + (["covariate"] if "covariate" in df else [])
        + ["treated"])
    fit = smf.ols(formula, data=df.assign(treated=df.treated.astype(float))).fit()
    est = float(fit.params["treated"])
    stats_ = []
    for a in assignments:
        d = np.array([float(a(c, p)) for c, p in zip(df.cluster, df.period)])
        stats_.append(abs(theta(df, d, cluster_fe)))
    stats_ = np.array(stats_)
    tol = 1e-9 * max(abs(est), 1e-300)
    p = float(np.mean(stats_ >= abs(est) - tol))
    top = stats_.max()
    min_p = float(np.mean(stats_ >= top - 1e-9 * max(top, 1e-300)))
    return {"estimate": est, "p": p, "min_p": min_p, "n_assignments": len(assignments)}


def rows_of(df):
    out = []
    for r in df.itertuples():
        row = {"cluster": r.cluster, "period": int(r.period), "treated": bool(r.treated), "value": float(r.value)}
        if "covariate" in df:
            row["covariate"] = float(r.covariate)
        out.append(row)
    return out


def simulate(g, periods, start_of, per_cell, effect, covariate):
    recs = []
    level = rng.normal(0, 3, g)  # large between-community differences
    for c in range(g):
        for p in range(periods):
            for _ in range(per_cell):
                x = rng.normal(0, 1)
                y = level[c] + 0.2 * p + effect * (p >= start_of[c]) + rng.normal(0, 1)
                if covariate:
                    y += 0.7 * x
                recs.append(dict(cluster=f"c{c}", period=2020 + p, treated=p >= start_of[c], value=y,
                                 **({"covariate": x} if covariate else {})))
    return pd.DataFrame(recs)


CASES = []

# Stepped wedges: community c crosses over at step order[c] (periods 0..g).
for i, (g, per_cell, cov) in enumerate([(3, 1, False), (4, 1, False), (4, 5, False), (4, 3, True),
                                        (5, 1, False), (5, 2, True), (4, 1, False), (3, 4, False)]):
    periods = g + 1
    order = rng.permutation(g) + 1
    df = simulate(g, periods, order, per_cell, rng.normal(0, 0.5), cov)
    steps = sorted(order)
    names = [f"c{c}" for c in range(g)]
    assigns = []
    for perm in set(itertools.permutations(steps)):
        m = dict(zip(names, perm))
        assigns.append(lambda c, p, m=m: p - 2020 >= m[c])
    assigns.sort(key=lambda a: tuple(a(c, 2020 + k) for c in names for k in range(periods)))
    case = {"name": f"sw{i}_{g}x{periods}_{per_cell}{'_cov' if cov else ''}", "kind": "stepped_wedge",
            "rows": rows_of(df), "default": dict(analyse(df, assigns, True), cluster_fe=True),
            "none": dict(analyse(df, assigns, False), cluster_fe=False)}
    CASES.append(case)

# Cluster designs with baseline periods: k of g communities treated from period s0 on.
for i, (g, k, periods, s0, per_cell, cov) in enumerate([(4, 2, 2, 1, 3, False), (5, 2, 3, 1, 2, False),
                                                       (6, 3, 3, 2, 1, False), (5, 3, 4, 2, 2, True),
                                                       (4, 2, 3, 1, 1, False)]):
    treated = set(rng.choice(g, k, replace=False).tolist())
    start_of = [s0 if c in treated else periods for c in range(g)]
    df = simulate(g, periods, start_of, per_cell, rng.normal(0, 0.5), cov)
    names = [f"c{c}" for c in range(g)]
    assigns = []
    for tset in itertools.combinations(names, k):
        assigns.append(lambda c, p, t=set(tset): c in t and p - 2020 >= s0)
    case = {"name": f"baseline{i}_{g}c_{k}t_{periods}p", "kind": "cluster", "rows": rows_of(df),
            "default": dict(analyse(df, assigns, True), cluster_fe=True),
            "none": dict(analyse(df, assigns, False), cluster_fe=False)}
    CASES.append(case)

# Pure parallel cluster designs: community effects would absorb the treatment.
for i, (g, k, periods, per_cell, cov) in enumerate([(4, 2, 1, 5, False), (6, 3, 2, 3, False),
                                                   (5, 2, 3, 2, True), (6, 2, 1, 4, False)]):
    treated = set(rng.choice(g, k, replace=False).tolist())
    start_of = [0 if c in treated else periods for c in range(g)]
    df = simulate(g, periods, start_of, per_cell, rng.normal(0, 0.5), cov)
    names = [f"c{c}" for c in range(g)]
    assigns = [lambda c, p, t=set(tset): c in t for tset in itertools.combinations(names, k)]
    case = {"name": f"parallel{i}_{g}c_{k}t_{periods}p", "kind": "cluster", "rows": rows_of(df),
            "default": dict(analyse(df, assigns, False), cluster_fe=False)}
    CASES.append(case)

out = {"meta": {"pins": PINS, "generator": "crates/stats/reference/rows_model.py", "seed": 20260511},
       "cases": CASES}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rows_model.json")
with open(path, "w") as f:
    json.dump(out, f, indent=None, separators=(",", ":"), allow_nan=False)
print(len(CASES), "cases ->", path)
