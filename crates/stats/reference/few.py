#!/usr/bin/env python3
"""Independent reference values for commonlab-stats few-community methods.

Pinned: numpy 2.1.3, scipy 1.14.1, statsmodels 0.14.4, pandas 2.2.3
Run:    /work/pyref/bin/python crates/stats/reference/few.py
Writes: crates/stats/reference/few_*.json (consumed by Rust unit tests via include_str!).

CR2 / Bell-McCaffrey df are written from the formulas with dense matrices
(Bell & McCaffrey 2002; Pustejovsky & Tipton 2018, as clubSandwich computes
for an lm with identity working model), independent of the Rust code's
per-cluster low-rank algebra.

Families (each >= 50 cases): cluster (CR1/CR2), randomization,
nonparametric (Mann-Whitney, BCa pieces), survey (Cronbach alpha), power (incl.
the confidence-sequence design, "sequential"), response (differential survey
response: chi2_contingency / fisher_exact), response_waves (the `survey_response`
block of `analyze`), blocked_users (users randomised within communities).
Run one family: few.py response
"""
import itertools
import json
import math
import os
import sys

import numpy as np
import pandas as pd
import scipy
import statsmodels
from scipy import stats

PINS = {"numpy": "2.1.3", "scipy": "1.14.1", "statsmodels": "0.14.4", "pandas": "2.2.3"}
for mod, want in [(np, PINS["numpy"]), (scipy, PINS["scipy"]), (statsmodels, PINS["statsmodels"]), (pd, PINS["pandas"])]:
    if mod.__version__ != want:
        sys.exit(f"{mod.__name__} {mod.__version__} != pinned {want}")

import statsmodels.api as sm  # noqa: E402
from statsmodels.stats.power import NormalIndPower, TTestIndPower  # noqa: E402
from statsmodels.stats.proportion import proportion_effectsize  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261126)


def dump(name, obj):
    obj = {"generator": "reference/few.py", "versions": PINS, **obj}
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    print("wrote", name)


# ---------------------------------------------------------------- cluster
def cr1_dense(X, y, cl, k):
    n, p = X.shape
    M = np.linalg.inv(X.T @ X)
    b = M @ X.T @ y
    e = y - X @ b
    G = len(np.unique(cl))
    meat = np.zeros((p, p))
    for g in np.unique(cl):
        s = X[cl == g].T @ e[cl == g]
        meat += np.outer(s, s)
    V = G / (G - 1) * (n - 1) / (n - p) * M @ meat @ M
    return b[k], math.sqrt(V[k, k])


def inv_sqrt_pinv(S):
    w, V = np.linalg.eigh(S)
    d = np.array([1 / math.sqrt(x) if x > 1e-10 else 0.0 for x in w])
    return V @ np.diag(d) @ V.T


def residual_icc(e, cl):
    s2 = np.sum(e ** 2) / len(e)
    cross = pairs = 0.0
    for g in np.unique(cl):
        eg = e[cl == g]
        cross += eg.sum() ** 2 - np.sum(eg ** 2)
        pairs += len(eg) * (len(eg) - 1)
    return float(np.clip(cross / pairs / s2, 0.0, 0.99))


def cr2_ik_df(X, y, cl, k):
    """Imbens-Kolesar df: BM df under Omega = (1-rho) I + rho blockdiag(11')."""
    n, p = X.shape
    M = np.linalg.inv(X.T @ X)
    e = y - X @ (M @ X.T @ y)
    rho = residual_icc(e, cl)
    IH = np.eye(n) - X @ M @ X.T
    c = np.zeros(p)
    c[k] = 1.0
    Om = (1 - rho) * np.eye(n) + rho * (cl[:, None] == cl[None, :]).astype(float)
    P = []
    for g in np.unique(cl):
        ix = np.where(cl == g)[0]
        A = inv_sqrt_pinv(IH[np.ix_(ix, ix)])
        P.append(IH[:, ix] @ A @ X[ix] @ M @ c)
    P = np.column_stack(P)
    Gm = P.T @ Om @ P
    return rho, float(np.trace(Gm) ** 2 / np.sum(Gm ** 2))


def cr2_dense(X, y, cl, k):
    n, p = X.shape
    M = np.linalg.inv(X.T @ X)
    b = M @ X.T @ y
    e = y - X @ b
    H = X @ M @ X.T
    IH = np.eye(n) - H
    c = np.zeros(p)
    c[k] = 1.0
    meat = np.zeros((p, p))
    P = []
    for g in np.unique(cl):
        ix = np.where(cl == g)[0]
        A = inv_sqrt_pinv(IH[np.ix_(ix, ix)])
        u = X[ix].T @ A @ e[ix]
        meat += np.outer(u, u)
        P.append(IH[:, ix] @ A @ X[ix] @ M @ c)
    V = M @ meat @ M
    Gm = np.array([[pg @ ph for ph in P] for pg in P])
    df = np.trace(Gm) ** 2 / np.sum(Gm ** 2)
    return b[k], math.sqrt(V[k, k]), df


def wcr_enumerate(X, y, cl, k):
    n, p = X.shape
    Xr = np.delete(X, k, axis=1)
    br = np.linalg.lstsq(Xr, y, rcond=None)[0]
    fitted = Xr @ br
    ut = y - fitted
    b, se = cr1_dense(X, y, cl, k)
    t = abs(b / se)
    groups = np.unique(cl)
    webb = [-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)]
    count = 0
    total = 0
    for ws in itertools.product(webb, repeat=len(groups)):
        wmap = dict(zip(groups, ws))
        w = np.array([wmap[g] for g in cl])
        ys = fitted + w * ut
        bs, ses = cr1_dense(X, ys, cl, k)
        ts = abs(bs / ses) if ses > 0 else 0.0
        if ts >= t - 1e-10 * max(t, 1):
            count += 1
        total += 1
    return count / total


def sw_design(n_clusters, n_periods, per_cell, cluster_fe=False, cell_rows=False):
    steps = list(range(1, n_clusters + 1))  # cluster c starts treatment at period steps[c]
    rows = []
    alpha = rng.normal(0, 1, n_clusters)
    for c in range(n_clusters):
        start = 1 + c * (n_periods - 1) // n_clusters
        for t in range(n_periods):
            m = 1 if cell_rows else int(rng.integers(1, per_cell + 1))
            for _ in range(m):
                d = 1.0 if t >= start else 0.0
                yv = alpha[c] + 0.3 * t + 0.5 * d + rng.normal(0, 1)
                rows.append((c, t, d, yv))
    cl = np.array([r[0] for r in rows])
    per = np.array([r[1] for r in rows])
    d = np.array([r[2] for r in rows])
    y = np.array([r[3] for r in rows])
    cols = [np.ones(len(rows))]
    for t in range(1, n_periods):
        cols.append((per == t).astype(float))
    if cluster_fe:
        for c in range(1, n_clusters):
            cols.append((cl == c).astype(float))
    cols.append(d)
    X = np.column_stack(cols)
    return X, y, cl, X.shape[1] - 1


def parallel_design(n_clusters, treated, lo, hi, covariate=True):
    tr = np.zeros(n_clusters)
    tr[rng.choice(n_clusters, treated, replace=False)] = 1
    rows = []
    for c in range(n_clusters):
        a = rng.normal(0, 0.7)
        for _ in range(int(rng.integers(lo, hi + 1))):
            x = rng.normal()
            rows.append((c, tr[c], x, 1 + 0.4 * tr[c] + 0.8 * x + a + rng.standard_t(4)))
    cl = np.array([r[0] for r in rows])
    cols = [np.ones(len(rows)), np.array([r[1] for r in rows])]
    if covariate:
        cols.append(np.array([r[2] for r in rows]))
    X = np.column_stack(cols)
    y = np.array([r[3] for r in rows])
    return X, y, cl, 1


def cluster_cases():
    cases = []
    specs = [
        ("parallel_8_clusters_covariate", parallel_design(8, 4, 3, 7), True),
        ("parallel_6_clusters_unbalanced", parallel_design(6, 2, 2, 9, covariate=False), False),
        ("parallel_4_clusters_2_treated", parallel_design(4, 2, 3, 6), True),
        ("stepped_wedge_4x5_period_fe", sw_design(4, 5, 4), True),
        ("stepped_wedge_4x5_cluster_fe", sw_design(4, 5, 4, cluster_fe=True), True),
        ("stepped_wedge_5x6_cell_rows", sw_design(5, 6, 1, cell_rows=True), True),
        ("stepped_wedge_12x13_large", sw_design(12, 13, 6), False),
    ]
    r2 = np.random.default_rng(202611261)
    for i in range(45):
        G = int(r2.integers(4, 13))
        treated = int(r2.integers(1, G))
        lo = int(r2.integers(1, 4))
        hi = lo + int(r2.integers(0, 8))
        if lo == 1 and hi == 1:
            hi = 2
        shape = ["parallel", "parallel_nocov", "stepped_wedge", "stepped_wedge_cfe"][i % 4]
        if shape.startswith("parallel"):
            spec = parallel_design(G, treated, lo, hi, covariate=(shape == "parallel"))
        else:
            spec = sw_design(int(r2.integers(3, 7)), int(r2.integers(3, 7)), int(r2.integers(1, 5)) + 1,
                             cluster_fe=(shape == "stepped_wedge_cfe"))
        specs.append((f"generated_{i:02d}_{shape}_G{len(np.unique(spec[2]))}", spec, False))
    for name, (X, y, cl, k), enum in specs:
        g = pd.Series(cl)
        res = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": g}, use_t=True)
        b1, se1 = cr1_dense(X, y, cl, k)
        assert abs(res.bse[k] - se1) < 1e-10 * se1, (res.bse[k], se1)
        G = len(np.unique(cl))
        p1 = 2 * stats.t.sf(abs(b1 / se1), G - 1)
        assert abs(res.pvalues[k] - p1) < 1e-10, (res.pvalues[k], p1)
        b2, se2, df2 = cr2_dense(X, y, cl, k)
        p2 = 2 * stats.t.sf(abs(b2 / se2), df2)
        case = {
            "name": name, "X": X.tolist(), "y": y.tolist(), "cluster": cl.tolist(), "coef": int(k),
            "beta": float(res.params[k]), "cr1_se": float(res.bse[k]), "cr1_p": float(res.pvalues[k]),
            "cr1_df": G - 1, "cr2_se": se2, "cr2_df": df2, "cr2_p": p2,
        }
        rho, dfik = cr2_ik_df(X, y, cl, k)
        case["residual_icc"] = rho
        case["cr2_ik_df"] = dfik
        case["cr2_ik_p"] = float(2 * stats.t.sf(abs(b2 / se2), dfik))
        if enum:
            case["wcr_p_enumerated"] = wcr_enumerate(X, y, cl, k)
        cases.append(case)
    dump("few_cluster.json", {"source": "statsmodels OLS cov_type=cluster (CR1); dense numpy CR2+BM df; brute-force WCR enumeration", "cases": cases})


# ---------------------------------------------------------- randomization
def rand_unit_case(name, values, labels, strata=None):
    values = np.asarray(values, float)
    labels = list(labels)
    n = len(labels)
    groups = {}
    for i in range(n):
        groups.setdefault(0 if strata is None else strata[i], []).append(i)
    per = []
    for g, ix in sorted(groups.items()):
        per.append((ix, sorted(set(itertools.permutations([labels[i] for i in ix])))))
    stats_ = []
    for combo in itertools.product(*[p for _, p in per]):
        a = [0] * n
        for (ix, _), lab in zip(per, combo):
            for i, l in zip(ix, lab):
                a[i] = l
        a = np.array(a)
        stats_.append(values[a == 1].mean() - values[a == 0].mean())
    stats_ = np.array(stats_)
    obs = values[np.array(labels) == 1].mean() - values[np.array(labels) == 0].mean()
    tol = 1e-9 * max(np.abs(stats_).max(), abs(obs))
    N = len(stats_)
    out = {"name": name, "values": values.tolist(), "labels": labels, "strata": strata,
           "n_assignments": N, "statistic": obs}
    out["two_sided"] = {"p": float(np.sum(np.abs(stats_) >= abs(obs) - tol) / N),
                        "min_p": float(np.sum(np.abs(stats_) >= np.abs(stats_).max() - tol) / N)}
    out["greater"] = {"p": float(np.sum(stats_ >= obs - tol) / N),
                      "min_p": float(np.sum(stats_ >= stats_.max() - tol) / N)}
    out["less"] = {"p": float(np.sum(stats_ <= obs + tol) / N),
                   "min_p": float(np.sum(stats_ <= stats_.min() + tol) / N)}
    return out


def ols_theta(X, y):
    return np.linalg.lstsq(X, y, rcond=None)[0][-1]


def panel_X(cl, per, d, cov=None, cluster_fe=False, strata=None, period_fe=True):
    n = len(cl)
    cols = [np.ones(n)]
    if period_fe:
        for t in range(1, per.max() + 1):
            cols.append((per == t).astype(float))
    if cluster_fe:
        for c in range(1, cl.max() + 1):
            cols.append((cl == c).astype(float))
    elif strata is not None:
        for s in range(1, strata.max() + 1):
            cols.append((strata == s).astype(float))
    if cov is not None:
        cols.append(cov)
    cols.append(d.astype(float))
    return np.column_stack(cols)


def panel_case(name, kind, cl, per, d, y, cov=None, strata=None, cluster_fe=False, wcr=False):
    G = cl.max() + 1
    T = per.max() + 1
    period_fe = T > 1
    X = panel_X(cl, per, d, cov, cluster_fe, strata, period_fe)
    k = X.shape[1] - 1
    theta = ols_theta(X, y)
    res = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": pd.Series(cl)}, use_t=True)
    _, se2, df2 = cr2_dense(X, y, cl, k)
    # randomisation: permute cluster-level labels (starts for SW, arms otherwise) within strata
    if kind == "stepped_wedge":
        starts = np.array([min([t for t in range(T) if np.any((cl == c) & (per == t) & (d == 1))], default=T) for c in range(G)])
        unit_labels = list(starts)
    else:
        unit_labels = [int(d[cl == c][0]) for c in range(G)]
    cstrata = None if strata is None else [int(strata[cl == c][0]) for c in range(G)]
    groups = {}
    for c in range(G):
        groups.setdefault(0 if cstrata is None else cstrata[c], []).append(c)
    per_s = [(ix, sorted(set(itertools.permutations([unit_labels[i] for i in ix])))) for _, ix in sorted(groups.items())]
    thetas = []
    for combo in itertools.product(*[p for _, p in per_s]):
        lab = [0] * G
        for (ix, _), lp in zip(per_s, combo):
            for i, l in zip(ix, lp):
                lab[i] = l
        lab = np.array(lab)
        if kind == "stepped_wedge":
            dd = (per >= lab[cl]).astype(float)
        else:
            dd = lab[cl].astype(float)
        thetas.append(ols_theta(panel_X(cl, per, dd, cov, cluster_fe, strata, period_fe), y))
    thetas = np.array(thetas)
    tol = 1e-9 * max(np.abs(thetas).max(), abs(theta))
    N = len(thetas)
    rand = {"n_assignments": N, "p": float(np.sum(np.abs(thetas) >= abs(theta) - tol) / N),
            "min_p": float(np.sum(np.abs(thetas) >= np.abs(thetas).max() - tol) / N)}
    expected = {"theta": theta, "cr1_se": float(res.bse[k]), "cr1_p": float(res.pvalues[k]),
                "cr2_se": se2, "cr2_df": df2, "cr2_p": float(2 * stats.t.sf(abs(theta / se2), df2)),
                "randomisation": rand}
    if kind == "stepped_wedge":
        b = np.linalg.lstsq(X, y, rcond=None)[0]
        slope = b[k - 1] if cov is not None else 0.0
        yadj = y - (cov * slope if cov is not None else 0)
        est = []
        for c in range(G):
            pts = []
            for t in range(T):
                m = (cl == c) & (per == t)
                if m.sum() == 0:
                    continue
                pts.append((t, float(t >= starts[c]), yadj[m].mean()))
            pts = np.array(pts)
            if len(pts) >= 3 and 0 < pts[:, 1].sum() < len(pts):
                Xc = np.column_stack([np.ones(len(pts)), pts[:, 0], pts[:, 1]])
                est.append(float(np.linalg.lstsq(Xc, pts[:, 2], rcond=None)[0][2]))
            else:
                est.append(None)
        e = np.array([x for x in est if x is not None])
        q = len(e)
        tt = e.mean() / (e.std(ddof=1) / math.sqrt(q))
        expected["community_estimates"] = est
        expected["im"] = {"t": float(tt), "df": q - 1, "p": float(2 * stats.t.sf(abs(tt), q - 1))}
    if wcr:
        expected["wcr_p_enumerated"] = wcr_enumerate(X, y, cl, k)
    rows = []
    for i in range(len(y)):
        r = {"cluster": f"c{cl[i]}", "period": int(per[i]) + 2020, "value": float(y[i])}
        if kind == "cluster" and i % 2 == 0:
            r["arm"] = "treatment" if d[i] else "control"
        else:
            r["treated"] = bool(d[i])
        if cov is not None:
            r["covariate"] = float(cov[i])
        if strata is not None:
            r["stratum"] = f"s{strata[i]}"
        rows.append(r)
    design = {"kind": kind, "cluster_fixed_effects": cluster_fe, "max_enumerate": 100000,
              "wild_bootstrap_draws": 9999, "seed": 11}
    return {"name": name, "input": {"rows": rows, "design": design}, "expected": expected}


def randomization_cases():
    r = np.random.default_rng(7)
    unit = [
        rand_unit_case("draw_4_of_8", r.normal(size=8), [1, 0, 1, 1, 0, 0, 1, 0]),
        rand_unit_case("draw_2_of_6", r.exponential(size=6), [0, 1, 0, 0, 1, 0]),
        rand_unit_case("draw_2_of_4_min_p_one_third", r.normal(size=4), [1, 0, 0, 1]),
        rand_unit_case("blocked_pairs_and_triple", r.normal(size=9) + np.array([0, 1, 0, 1, 0, 1, 0, 0, 1]) * 0.8,
                       [0, 1, 0, 1, 0, 1, 0, 0, 1], strata=[0, 0, 1, 1, 2, 2, 3, 3, 3]),
        rand_unit_case("ties_in_values", np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0]), [1, 1, 0, 0, 0, 1]),
    ]
    r8 = np.random.default_rng(8)
    for i in range(50):
        n = int(r8.integers(3, 11))
        k = int(r8.integers(1, n))
        labels = [1] * k + [0] * (n - k)
        labels = [int(x) for x in r8.permutation(labels)]
        if i % 5 == 4:
            vals = r8.integers(0, 4, n).astype(float)  # heavy ties
        elif i % 5 == 3:
            vals = r8.exponential(size=n) + 0.7 * np.array(labels)
        else:
            vals = r8.normal(size=n) + 0.5 * np.array(labels)
        strata = None
        if i % 3 == 2 and n >= 6:
            # pairs/blocks each containing both arms
            order = np.argsort(np.array(labels), kind="stable")
            ones = [j for j in range(n) if labels[j] == 1]
            zeros = [j for j in range(n) if labels[j] == 0]
            strata = [0] * n
            for j in range(n):
                strata[j] = 0
            b = 0
            while ones and zeros:
                strata[ones.pop()] = b
                strata[zeros.pop()] = b
                b += 1
            for j in ones + zeros:
                strata[j] = max(b - 1, 0)
            if len(set(strata)) < 2:
                strata = None
        unit.append(rand_unit_case(f"generated_{i:02d}_n{n}_k{k}" + ("_blocked" if strata else ""), vals, labels, strata=strata))
    panels = []
    # stepped wedge, 4 communities x 5 periods, individual rows
    def sw(G, T, lo, hi, effect, cov=False, seed=1):
        rr = np.random.default_rng(seed)
        alpha = rr.normal(0, 0.5, G)
        order = rr.permutation(G)
        starts = 1 + order * (T - 1) // G
        cl, per, d, y, cv = [], [], [], [], []
        for c in range(G):
            for t in range(T):
                for _ in range(int(rr.integers(lo, hi + 1))):
                    x = rr.normal()
                    dd = t >= starts[c]
                    cl.append(c); per.append(t); d.append(dd); cv.append(x)
                    y.append(alpha[c] + 0.2 * t + effect * dd + 0.5 * x + rr.normal())
        return (np.array(cl), np.array(per), np.array(d), np.array(y), np.array(cv) if cov else None)
    cl, per, d, y, cv = sw(4, 5, 3, 8, 0.4)
    panels.append(panel_case("sw_4x5_period_fe", "stepped_wedge", cl, per, d, y, wcr=True))
    panels.append(panel_case("sw_4x5_cluster_fe", "stepped_wedge", cl, per, d, y, cluster_fe=True))
    cl, per, d, y, cv = sw(5, 6, 2, 5, 0.0, cov=True, seed=2)
    panels.append(panel_case("sw_5x6_covariate", "stepped_wedge", cl, per, d, y, cov=cv))
    # parallel cluster draw, 8 communities, one period
    rr = np.random.default_rng(3)
    tr = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    cl, per, d, y = [], [], [], []
    for c in range(8):
        a = rr.normal(0, 0.6)
        for _ in range(int(rr.integers(4, 10))):
            cl.append(c); per.append(0); d.append(tr[c]); y.append(a + 0.5 * tr[c] + rr.normal())
    panels.append(panel_case("cluster_8_draw_4", "cluster", np.array(cl), np.array(per), np.array(d, bool), np.array(y)))
    # blocked: 4 pairs of communities, one treated per pair, two periods
    rr = np.random.default_rng(4)
    tr = np.array([1, 0, 0, 1, 1, 0, 0, 1])
    st = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    cl, per, d, y, s = [], [], [], [], []
    for c in range(8):
        a = rr.normal(0, 0.6) + st[c] * 0.3
        for t in range(2):
            for _ in range(int(rr.integers(3, 7))):
                cl.append(c); per.append(t); d.append(tr[c]); s.append(st[c])
                y.append(a + 0.1 * t + 0.3 * tr[c] + rr.normal())
    panels.append(panel_case("blocked_4_pairs", "blocked", np.array(cl), np.array(per), np.array(d, bool), np.array(y), strata=np.array(s)))
    strat = []
    rr = np.random.default_rng(5)
    for name, sizes, ks in [("three_communities", [4, 5, 4], [2, 2, 2]), ("uneven_communities", [6, 3, 5, 4], [3, 1, 2, 2])]:
        strata = np.concatenate([[s] * n for s, n in enumerate(sizes)])
        treated = np.concatenate([rr.permutation([1] * k + [0] * (n - k)) for n, k in zip(sizes, ks)])
        values = rr.normal(size=len(strata)) + 0.6 * treated + strata * 0.5

        def tau(lab):
            num = 0.0
            for sidx, n in enumerate(sizes):
                m = strata == sidx
                num += n * (values[m & (lab == 1)].mean() - values[m & (lab == 0)].mean())
            return num / sum(sizes)
        obs = tau(treated)
        per = [list(itertools.combinations(np.where(strata == sidx)[0], k)) for sidx, k in enumerate(ks)]
        st = []
        for combo in itertools.product(*per):
            lab = np.zeros(len(strata), int)
            for c in combo:
                lab[list(c)] = 1
            st.append(tau(lab))
        st = np.array(st)
        tol = 1e-9 * max(np.abs(st).max(), abs(obs))
        strat.append({"name": name, "values": values.tolist(), "treated": [bool(t) for t in treated],
                      "strata": strata.tolist(), "n_assignments": len(st), "statistic": obs,
                      "p": float(np.sum(np.abs(st) >= abs(obs) - tol) / len(st)),
                      "min_p": float(np.sum(np.abs(st) >= np.abs(st).max() - tol) / len(st))})
    dump("few_randomization.json", {"source": "itertools enumeration; numpy lstsq per assignment; statsmodels CR1; dense CR2", "unit_cases": unit, "panel_cases": panels, "stratified_cases": strat})


# ---------------------------------------------------------- nonparametric
def nonparametric_cases():
    r = np.random.default_rng(11)
    mw = []
    def add(name, x, y, method):
        for alt in ["two-sided", "greater", "less"]:
            res = stats.mannwhitneyu(x, y, alternative=alt, method=method, use_continuity=True)
            mw.append({"name": f"{name}_{alt}", "x": list(map(float, x)), "y": list(map(float, y)),
                       "method": method, "alternative": alt.replace("-", "_"),
                       "u": float(res.statistic), "p": float(res.pvalue)})
    lik1 = r.integers(1, 6, 40); lik2 = np.clip(r.integers(1, 6, 35) + r.integers(0, 2, 35), 1, 5)
    add("likert_ties", lik1, lik2, "asymptotic")
    cnt1 = r.negative_binomial(1, 0.2, 60); cnt2 = r.negative_binomial(1, 0.15, 55)
    add("counts_heavy_tail_ties", cnt1, cnt2, "asymptotic")
    add("small_exact", r.normal(size=6), r.normal(size=8) + 0.8, "exact")
    add("exact_unequal", r.normal(size=13), r.normal(size=21) + 0.3, "exact")
    add("exact_larger", r.normal(size=40), r.normal(size=45) + 0.2, "exact")
    add("asymptotic_no_ties", r.normal(size=30), r.normal(size=25), "asymptotic")
    # generated cases on their own stream (keeps the cases above and the BCa draws unchanged)
    r9 = np.random.default_rng(9)
    add("one_per_arm_exact", [1.5], [0.2], "exact")
    add("one_per_arm_asymptotic", [1.5], [0.2], "asymptotic")
    add("one_vs_five_exact", [0.3], r9.normal(size=5), "exact")
    add("two_tied_of_three_asymptotic", [1.0, 2.0], [2.0], "asymptotic")
    for i in range(12):
        n1, n2 = int(r9.integers(1, 30)), int(r9.integers(1, 30))
        shift = float(r9.normal(0, 0.7))
        if i % 3 == 0:
            x, y = r9.integers(1, 6, n1).astype(float), np.clip(r9.integers(1, 6, n2) + (shift > 0), 1, 5).astype(float)
            if len(np.unique(np.concatenate([x, y]))) < 2:
                continue
            add(f"generated_{i:02d}_likert_{n1}x{n2}", x, y, "asymptotic")
        elif i % 3 == 1:
            add(f"generated_{i:02d}_exact_{n1}x{n2}", r9.normal(size=n1), r9.normal(size=n2) + shift, "exact")
        else:
            add(f"generated_{i:02d}_asymptotic_{n1}x{n2}", r9.exponential(size=n1), r9.exponential(size=n2) * math.exp(shift), "asymptotic")
    # all values tied: zero variance; scipy returns p = 1 (NaN z clipped), the Rust code gives StatsError::Degenerate
    for name, x, y in [("all_tied_small", [2.0, 2.0], [2.0, 2.0, 2.0]), ("all_tied_one_each", [5.0], [5.0])]:
        for alt in ["two-sided", "greater", "less"]:
            with np.errstate(all="ignore"):
                res = stats.mannwhitneyu(x, y, alternative=alt, method="asymptotic")
            mw.append({"name": f"{name}_{alt}", "x": x, "y": y, "method": "asymptotic",
                       "alternative": alt.replace("-", "_"), "u": float(res.statistic), "p": None,
                       "scipy_p": float(res.pvalue), "error": "degenerate"})

    # BCa pieces: fixed bootstrap distribution, scipy's own _bca_interval
    from scipy.stats._resampling import _bca_interval, _percentile_along_axis
    pieces = []
    for name, data in [("one_sample_skewed", [r.lognormal(0, 1, 25)]),
                       ("two_sample_likert", [r.integers(1, 6, 20).astype(float), r.integers(2, 6, 23).astype(float)])]:
        if len(data) == 1:
            stat = lambda x, axis=-1: np.mean(x, axis=axis)
            rs = [r.choice(data[0], size=(2000, len(data[0]))).mean(axis=1)]
            tb = rs[0]
        else:
            stat = lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis)
            tb = r.choice(data[1], size=(2000, len(data[1]))).mean(axis=1) - r.choice(data[0], size=(2000, len(data[0]))).mean(axis=1)
        a1, a2, ah = _bca_interval(tuple(np.asarray(d) for d in data), stat, axis=-1, alpha=np.array(0.025), theta_hat_b=tb[None, :] if False else tb, batch=None)
        lo = float(np.percentile(tb, float(a1) * 100)); hi = float(np.percentile(tb, float(a2) * 100))
        pieces.append({"name": name, "samples": [list(map(float, d)) for d in data], "theta_hat_b": tb.tolist(),
                       "alpha_1": float(a1), "alpha_2": float(a2), "a_hat": float(ah), "lower": lo, "upper": hi})

    r10 = np.random.default_rng(10)
    for i in range(48):
        n = int(r10.integers(5, 40))
        B = int(r10.integers(200, 600))
        if i % 2 == 0:
            data = [r10.lognormal(0, float(r10.uniform(0.3, 1.5)), n)]
            stat = lambda x, axis=-1: np.mean(x, axis=axis)
            tb = r10.choice(data[0], size=(B, n)).mean(axis=1)
        else:
            m = int(r10.integers(5, 40))
            data = [r10.poisson(3, n).astype(float), r10.poisson(3.5, m).astype(float) + r10.normal(0, 0.1, m)]
            stat = lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis)
            tb = r10.choice(data[1], size=(B, m)).mean(axis=1) - r10.choice(data[0], size=(B, n)).mean(axis=1)
        a1, a2, ah = _bca_interval(tuple(np.asarray(d) for d in data), stat, axis=-1, alpha=np.array(0.025), theta_hat_b=tb, batch=None)
        lo = float(np.percentile(tb, float(a1) * 100)); hi = float(np.percentile(tb, float(a2) * 100))
        pieces.append({"name": f"generated_{i:02d}_{len(data)}_sample_B{B}", "samples": [list(map(float, d)) for d in data],
                       "theta_hat_b": tb.tolist(), "alpha_1": float(a1), "alpha_2": float(a2), "a_hat": float(ah),
                       "lower": lo, "upper": hi})

    # Monte Carlo comparison: scipy.stats.bootstrap, 9999 resamples; MC sd from 20 seeds
    mc = []
    for name, data in [("mean_lognormal", [r.lognormal(0, 0.8, 30)]),
                       ("diff_counts", [r.poisson(3, 25).astype(float), r.poisson(4, 30).astype(float)])]:
        if len(data) == 1:
            stat = lambda x, axis=-1: np.mean(x, axis=axis)
        else:
            stat = lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis)
        case = {"name": name, "samples": [list(map(float, d)) for d in data]}
        for method in ["BCa", "percentile"]:
            ends = []
            for seed in range(20):
                ci = stats.bootstrap(tuple(data), stat, n_resamples=9999, method=method, confidence_level=0.95,
                                     random_state=np.random.default_rng(seed), vectorized=True).confidence_interval
                ends.append((ci.low, ci.high))
            ends = np.array(ends)
            case[method.lower()] = {"lower": float(ends[:, 0].mean()), "upper": float(ends[:, 1].mean()),
                                    "lower_sd": float(ends[:, 0].std(ddof=1)), "upper_sd": float(ends[:, 1].std(ddof=1))}
        mc.append(case)
    dump("few_nonparametric.json", {"source": "scipy.stats.mannwhitneyu; scipy.stats._resampling._bca_interval; scipy.stats.bootstrap",
                                    "mann_whitney": mw, "bca_pieces": pieces, "bootstrap_mc": mc})


# ----------------------------------------------------------------- survey
def cronbach(X):
    X = np.asarray(X, float)
    k = X.shape[1]
    return k / (k - 1) * (1 - X.var(axis=0, ddof=1).sum() / X.sum(axis=1).var(ddof=1))


def survey_cases():
    r = np.random.default_rng(13)
    alpha_cases = []
    for name, n, k, load in [("likert_5_items_n40", 40, 5, 0.8), ("likert_8_items_n120", 120, 8, 0.5), ("weak_3_items_n25", 25, 3, 0.2)]:
        f = r.normal(size=n)
        X = np.clip(np.round(3 + load * f[:, None] + r.normal(size=(n, k))), 1, 5)
        a = cronbach(X)
        df1, df2 = n - 1, (n - 1) * (k - 1)
        lo = 1 - (1 - a) * stats.f.ppf(0.975, df1, df2)
        hi = 1 - (1 - a) * stats.f.ppf(0.025, df1, df2)
        tot = X.sum(axis=1)
        alpha_cases.append({"name": name, "responses": X.tolist(), "alpha": a, "feldt_lower": lo, "feldt_upper": hi,
                            "item_total_r": [float(np.corrcoef(X[:, j], tot)[0, 1]) for j in range(k)],
                            "corrected_item_total_r": [float(np.corrcoef(X[:, j], tot - X[:, j])[0, 1]) for j in range(k)],
                            "alpha_if_deleted": [cronbach(np.delete(X, j, axis=1)) for j in range(k)]})
    r14 = np.random.default_rng(14)
    for i in range(50):
        n, k = int(r14.integers(4, 150)), int(r14.integers(3, 12))
        load = float(r14.uniform(0.1, 1.5))
        f = r14.normal(size=n)
        levels = [5, 7, 4, 11][i % 4]
        X = np.clip(np.round((levels + 1) / 2 + load * f[:, None] + r14.normal(size=(n, k))), 1, levels)
        if np.any(X.var(axis=0, ddof=1) == 0) or X.sum(axis=1).var(ddof=1) == 0:
            continue
        a = cronbach(X)
        df1, df2 = n - 1, (n - 1) * (k - 1)
        tot = X.sum(axis=1)
        alpha_cases.append({"name": f"generated_{i:02d}_n{n}_k{k}_{levels}pt", "responses": X.tolist(), "alpha": a,
                            "feldt_lower": 1 - (1 - a) * stats.f.ppf(0.975, df1, df2),
                            "feldt_upper": 1 - (1 - a) * stats.f.ppf(0.025, df1, df2),
                            "item_total_r": [float(np.corrcoef(X[:, j], tot)[0, 1]) for j in range(k)],
                            "corrected_item_total_r": [float(np.corrcoef(X[:, j], tot - X[:, j])[0, 1]) for j in range(k)],
                            "alpha_if_deleted": [cronbach(np.delete(X, j, axis=1)) for j in range(k)]})
    compare = []
    for name, a, b in [("scale_means", np.round(r.normal(3.2, 0.7, 45) * 4) / 4, np.round(r.normal(3.5, 0.9, 52) * 4) / 4),
                       ("small_unequal", r.normal(0, 1, 9), r.normal(0.5, 3, 14))]:
        w = stats.ttest_ind(b, a, equal_var=False)
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        dfw = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        m = stats.mannwhitneyu(b, a, alternative="two-sided", method="asymptotic" if len(np.unique(np.concatenate([a, b]))) < len(a) + len(b) else "exact")
        compare.append({"name": name, "control": a.tolist(), "treatment": b.tolist(), "welch_t": float(w.statistic),
                        "welch_df": float(dfw), "welch_p": float(w.pvalue), "mw_u": float(m.statistic), "mw_p": float(m.pvalue)})
    dump("few_survey.json", {"source": "numpy formulas (Cronbach 1951, Feldt 1965 via scipy.stats.f); scipy ttest_ind(equal_var=False), mannwhitneyu",
                             "alpha": alpha_cases, "compare": compare})


# ------------------------------------------------------------------ power
def power_cases():
    nct = []
    for t, df, nc in [(1.96, 10, 0.5), (2.0, 38, 2.8), (-1.5, 5, 1.0), (0.5, 100, -0.7), (2.5, 200, 3.5), (1.0, 3, 0.0), (3.0, 20, 6.0)]:
        nct.append({"t": t, "df": df, "nc": nc, "cdf": float(stats.nct.cdf(t, df, nc))})
    tt, nn = TTestIndPower(), NormalIndPower()
    out = []
    for d, n1, ratio, alpha, alt in [(0.5, 64, 1, 0.05, "two-sided"), (0.2, 300, 2, 0.05, "two-sided"), (0.8, 10, 1, 0.01, "larger"),
                                     (-0.3, 50, 0.5, 0.05, "smaller"), (0.35, 25, 1.5, 0.1, "two-sided")]:
        out.append({"kind": "t_power", "d": d, "n1": n1, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "power": float(tt.power(d, n1, alpha, ratio=ratio, alternative=alt))})
    for d, pw, ratio, alpha, alt in [(0.5, 0.8, 1, 0.05, "two-sided"), (0.2, 0.9, 2, 0.05, "two-sided"), (0.4, 0.8, 1, 0.05, "larger")]:
        out.append({"kind": "t_nobs", "d": d, "power": pw, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "n1": float(tt.solve_power(effect_size=d, nobs1=None, alpha=alpha, power=pw, ratio=ratio, alternative=alt))})
    for n1, pw, ratio, alpha, alt in [(50, 0.8, 1, 0.05, "two-sided"), (200, 0.9, 1, 0.05, "larger")]:
        # statsmodels' solve_power stops at ~3e-6 in power; refine its root on its own power function
        from scipy.optimize import brentq
        d0 = tt.solve_power(effect_size=None, nobs1=n1, alpha=alpha, power=pw, ratio=ratio, alternative=alt)
        d = brentq(lambda e: tt.power(e, n1, alpha, ratio=ratio, alternative=alt) - pw, 1e-6, 10, xtol=1e-15)
        assert abs(d - d0) < 1e-4 * d
        out.append({"kind": "t_mde", "n1": n1, "power": pw, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "d": float(d), "statsmodels_solve_power": float(d0)})
    for p1, p2, n1, ratio, alpha, alt in [(0.2, 0.25, 1000, 1, 0.05, "two-sided"), (0.5, 0.45, 400, 1, 0.05, "two-sided"), (0.1, 0.15, 500, 2, 0.05, "larger")]:
        es = proportion_effectsize(p2, p1)
        out.append({"kind": "prop_power", "p1": p1, "p2": p2, "n1": n1, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "power": float(nn.power(es, n1, alpha, ratio=ratio, alternative=alt))})
    for p1, p2, pw, ratio, alpha, alt in [(0.2, 0.25, 0.8, 1, 0.05, "two-sided"), (0.05, 0.07, 0.9, 1, 0.05, "larger")]:
        es = proportion_effectsize(p2, p1)
        out.append({"kind": "prop_nobs", "p1": p1, "p2": p2, "power": pw, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "n1": float(nn.solve_power(effect_size=es, nobs1=None, alpha=alpha, power=pw, ratio=ratio, alternative=alt))})
    for p1, n1, pw, ratio, alpha, alt in [(0.3, 500, 0.8, 1, 0.05, "two-sided")]:
        h = nn.solve_power(effect_size=None, nobs1=n1, alpha=alpha, power=pw, ratio=ratio, alternative=alt)
        out.append({"kind": "prop_mde", "p1": p1, "n1": n1, "power": pw, "ratio": ratio, "alpha": alpha, "alternative": alt,
                    "p2": float(math.sin(math.asin(math.sqrt(p1)) + h / 2) ** 2)})
    # generated grids (statsmodels directly; solve_power roots refined by brentq on statsmodels' power)
    from scipy.optimize import brentq
    alts = ["two-sided", "larger", "smaller"]
    for i, (d, n1, ratio, alpha) in enumerate(itertools.product([0.1, 0.3, 0.6, 1.0], [8, 40, 250], [0.5, 1, 3], [0.01, 0.05])):
        alt = alts[i % 3]
        dd = -d if alt == "smaller" else d
        if i % 2 == 0:
            # reference = exact noncentral-t tail (scipy.stats.nct, confirmed by quadrature); statsmodels'
            # TTestIndPower value is stored too but drifts (2e-8 relative at df ~ 1000, 6e-6 absolute
            # for "smaller" with power near 1), so it is informational only
            n2 = n1 * ratio
            df, nc = n1 + n2 - 2, dd / math.sqrt(1 / n1 + 1 / n2)
            if alt == "two-sided":
                c = stats.t.isf(alpha / 2, df)
                exact = stats.nct.sf(c, df, nc) + stats.nct.cdf(-c, df, nc)
            elif alt == "larger":
                exact = stats.nct.sf(stats.t.isf(alpha, df), df, nc)
            else:
                exact = stats.nct.cdf(-stats.t.isf(alpha, df), df, nc)
            pw_sm = float(tt.power(dd, n1, alpha, ratio=ratio, alternative=alt))
            # cross-check the nct tail by quadrature over the chi-square mixing density
            from scipy import integrate
            ct = stats.t.isf(alpha / 2 if alt == "two-sided" else alpha, df)
            tails = [(ct, nc)] if alt == "larger" else [(ct, -nc)] if alt == "smaller" else [(ct, nc), (ct, -nc)]
            quad = sum(integrate.quad(lambda v, c_=c_, m_=m_: stats.chi2.pdf(v, df) * stats.norm.sf(c_ * math.sqrt(v / df) - m_),
                                      0, df * 4 + 50, epsabs=1e-15, epsrel=1e-13, limit=500, points=[df])[0] for c_, m_ in tails)
            assert abs(quad - exact) < 1e-9 * exact, (quad, exact)
            out.append({"kind": "t_power", "d": dd, "n1": n1, "ratio": ratio, "alpha": alpha, "alternative": alt,
                        "power_statsmodels": pw_sm, "power": float(exact)})
        else:
            es = proportion_effectsize(min(0.3 + d / 4, 0.95), 0.3)
            es = -es if alt == "smaller" else es
            out.append({"kind": "prop_power", "p1": 0.3, "p2": float(0.3 + (1 if alt != "smaller" else -1) * (min(0.3 + d / 4, 0.95) - 0.3)),
                        "n1": n1 * 4, "ratio": ratio, "alpha": alpha, "alternative": alt,
                        "power": float(nn.power(proportion_effectsize(0.3 + (1 if alt != "smaller" else -1) * (min(0.3 + d / 4, 0.95) - 0.3), 0.3), n1 * 4, alpha, ratio=ratio, alternative=alt))})
    for i, (d, pw, ratio) in enumerate(itertools.product([0.15, 0.4, 0.9], [0.7, 0.9], [1, 2])):
        alt = ["two-sided", "larger"][i % 2]
        n = brentq(lambda m: tt.power(d, m, 0.05, ratio=ratio, alternative=alt) - pw, 2.5, 1e7, xtol=1e-12, rtol=1e-15)
        out.append({"kind": "t_nobs", "d": d, "power": pw, "ratio": ratio, "alpha": 0.05, "alternative": alt, "n1": float(n)})
    for i, (n1, pw) in enumerate(itertools.product([12, 60, 400], [0.8, 0.95])):
        alt = ["two-sided", "larger"][i % 2]
        d = brentq(lambda e: tt.power(e, n1, 0.05, ratio=1, alternative=alt) - pw, 1e-6, 10, xtol=1e-15)
        out.append({"kind": "t_mde", "n1": n1, "power": pw, "ratio": 1, "alpha": 0.05, "alternative": alt, "d": float(d)})
    for i, (p1, p2) in enumerate([(0.1, 0.12), (0.3, 0.36), (0.5, 0.55), (0.7, 0.6), (0.02, 0.03), (0.9, 0.93)]):
        alt = "two-sided"
        es = proportion_effectsize(p2, p1)
        n = nn.solve_power(effect_size=es, nobs1=None, alpha=0.05, power=0.8, ratio=1 + i % 2, alternative=alt)
        n = brentq(lambda m: nn.power(es, m, 0.05, ratio=1 + i % 2, alternative=alt) - 0.8, n / 2, n * 2, xtol=1e-12, rtol=1e-15)
        out.append({"kind": "prop_nobs", "p1": p1, "p2": p2, "power": 0.8, "ratio": 1 + i % 2, "alpha": 0.05, "alternative": alt, "n1": float(n)})
    for p1, n1 in [(0.1, 2000), (0.5, 300), (0.05, 10000)]:
        h = brentq(lambda e: nn.power(e, n1, 0.05, ratio=1, alternative="two-sided") - 0.8, 1e-6, 3, xtol=1e-15)
        out.append({"kind": "prop_mde", "p1": p1, "n1": n1, "power": 0.8, "ratio": 1, "alpha": 0.05, "alternative": "two-sided",
                    "p2": float(math.sin(math.asin(math.sqrt(p1)) + h / 2) ** 2)})
    # always-valid confidence-sequence test (sequential.rs): normal approximation, numpy/scipy.stats.norm
    from scipy.optimize import brentq
    def seq_power(d, n, ratio, alpha, tuning):
        l = -2 * np.log(alpha)
        r2 = (l + np.log(l + 1)) / tuning
        t = n * r2 + 1
        b = np.sqrt(2 * t / (n * r2) * np.log(np.sqrt(t) / alpha))
        m = np.sqrt(n) * abs(d) * np.sqrt(ratio) / (1 + ratio)
        return float(stats.norm.cdf(m - b) + stats.norm.cdf(-m - b))
    seq = []
    for d, n, ratio, alpha in itertools.product([0.05, 0.2, 0.5], [100, 2000, 50000], [1, 3], [0.05, 0.01]):
        tuning_ = [5000, n][len(seq) % 2]
        seq.append({"kind": "power", "d": d, "n_total": n, "ratio": ratio, "alpha": alpha, "tuning": tuning_,
                    "power": seq_power(d, n, ratio, alpha, tuning_)})
    for d, pw, ratio, tuning in itertools.product([0.05, 0.1, 0.3, 0.8], [0.8, 0.9], [1, 2], [1000, 20000]):
        n = brentq(lambda m: seq_power(d, m, ratio, 0.05, tuning) - pw, 1, 1e9, xtol=1e-12, rtol=1e-14)
        seq.append({"kind": "n", "d": d, "power": pw, "ratio": ratio, "alpha": 0.05, "tuning": tuning, "n_total": n})
    for n, pw, ratio, tuning in itertools.product([200, 5000, 100000], [0.8, 0.95], [1, 0.5], [10000]):
        d = brentq(lambda e: seq_power(e, n, ratio, 0.05, tuning) - pw, 1e-9, 50, xtol=1e-15, rtol=1e-14)
        seq.append({"kind": "mde", "n_total": n, "power": pw, "ratio": ratio, "alpha": 0.05, "tuning": tuning, "d": d})
    dump("few_power.json", {"source": "scipy.stats.nct; statsmodels TTestIndPower/NormalIndPower, proportion_effectsize", "nct_cdf": nct, "power": out, "sequential": seq})


# ------------------------------------------------------- survey response
def response_cases():
    """Differential survey response between arms: chi-square test of independence on the
    arms x {responded, did not respond} table (scipy.stats.chi2_contingency, correction=False)
    and, for two arms, Fisher's exact test (scipy.stats.fisher_exact, two-sided)."""
    r = np.random.default_rng(15)
    cases = []
    def add(name, invited, responded):
        t = np.array([[rr, i - rr] for i, rr in zip(invited, responded)], float)
        case = {"name": name, "invited": list(map(int, invited)), "responded": list(map(int, responded))}
        col = t.sum(axis=0)
        if np.any(col == 0):
            case["error"] = "degenerate"
        else:
            chi2, p, dof, expected = stats.chi2_contingency(t, correction=False)
            case.update({"chi2": float(chi2), "df": int(dof), "chi2_p": float(p),
                         "rates": [float(x) for x in t[:, 0] / t.sum(axis=1)],
                         "min_expected": float(expected.min())})
            if len(invited) == 2:
                case["fisher_p"] = float(stats.fisher_exact(t.astype(int), alternative="two-sided").pvalue)
        cases.append(case)
    add("balanced_two_arms", [500, 500], [210, 205])
    add("differential_two_arms", [1000, 1000], [420, 330])
    add("tiny_two_arms", [6, 7], [1, 6])
    add("one_invited_each", [1, 1], [1, 0])
    add("three_arms", [300, 310, 290], [120, 150, 95])
    add("nobody_responded", [50, 60], [0, 0])
    add("everybody_responded", [5, 8], [5, 8])
    for i in range(50):
        k = 2 if i % 2 == 0 else int(r.integers(3, 6))
        scale = [8, 30, 200, 5000][i % 4]
        invited = r.integers(max(2, scale // 4), scale + 1, k)
        base = float(r.uniform(0.05, 0.9))
        rates = np.clip(base + r.normal(0, 0.08 if i % 3 else 0.0, k), 0.01, 0.99)
        responded = r.binomial(invited, rates)
        add(f"generated_{i:02d}_{k}_arms_scale{scale}", invited, responded)
    dump("few_response.json", {"source": "scipy.stats.chi2_contingency(correction=False); scipy.stats.fisher_exact", "cases": cases})


# ------------------------------------------- survey response in `analyze`
def response_waves_cases():
    """The `survey_response` block of `analyze`: per-wave and pooled differential-response
    checks (scipy.stats.chi2_contingency(correction=False); scipy.stats.fisher_exact for two
    arms, used when the smallest expected count is below 5), flag when p < 0.001."""
    r = np.random.default_rng(16)

    def check(invited, responded):
        invited, responded = np.array(invited), np.array(responded)
        if np.any(invited == 0) or np.any(responded > invited):
            return {"error": "invalid_input"}
        t = np.column_stack([responded, invited - responded]).astype(float)
        if np.any(t.sum(axis=0) == 0):
            return {"error": "degenerate"}
        chi2, p, dof, expected = stats.chi2_contingency(t, correction=False)
        out = {"chi2": float(chi2), "df": int(dof), "chi2_p": float(p),
               "rates": [float(x) for x in responded / invited], "min_expected": float(expected.min())}
        if len(invited) == 2:
            out["fisher_p"] = float(stats.fisher_exact(t.astype(int), alternative="two-sided").pvalue)
        use_fisher = len(invited) == 2 and expected.min() < 5
        out["test"] = "fisher_exact" if use_fisher else "chi_square"
        out["p_value"] = out["fisher_p"] if use_fisher else out["chi2_p"]
        out["flagged"] = bool(out["p_value"] < 0.001)
        return out

    cases = []
    for i in range(52):
        k = [2, 2, 3, 4][i % 4]
        nw = [1, 2, 3][i % 3]
        waves = []
        for w in range(nw):
            scale = [6, 40, 400, 3000][(i + w) % 4]
            invited = r.integers(max(2, scale // 3), scale + 1, k)
            base = float(r.uniform(0.1, 0.8))
            shift = 0.25 if (i % 5 == 1 and w == nw - 1) else 0.0  # differential response
            rates = np.clip(base + np.concatenate([[0.0], np.full(k - 1, -shift)]) + r.normal(0, 0.03, k), 0.01, 0.99)
            responded = r.binomial(invited, rates)
            if i % 13 == 7 and w == 0:
                responded = np.zeros(k, int)  # nobody responded -> degenerate wave
            if i % 17 == 9 and w == nw - 1:
                responded = invited.copy()
                responded[0] += 1  # more responders than invited -> invalid wave
            waves.append({"wave": f"wave{w}", "invited": [int(x) for x in invited],
                          "responded": [int(x) for x in responded]})
        expected = {"waves": [check(w["invited"], w["responded"]) for w in waves]}
        if nw > 1:
            if any(e.get("error") == "invalid_input" for e in expected["waves"]):
                expected["pooled"] = {"error": "invalid_input"}
            else:
                inv = np.sum([w["invited"] for w in waves], axis=0)
                res = np.sum([w["responded"] for w in waves], axis=0)
                expected["pooled"] = check(inv, res)
        flags = [e.get("flagged", False) for e in expected["waves"]] + [expected.get("pooled", {}).get("flagged", False)]
        expected["differential_response"] = bool(any(flags))
        cases.append({"name": f"generated_{i:02d}_{k}_arms_{nw}_waves",
                      "arms": ["control"] + [f"t{j}" for j in range(1, k)],
                      "survey_response": waves, "expected": expected})
    assert sum(c["expected"]["differential_response"] for c in cases) >= 5
    dump("few_response_waves.json", {"source": "scipy.stats.chi2_contingency(correction=False); scipy.stats.fisher_exact", "cases": cases})


# ------------------------------ users randomised within communities (blocked_users)
def blocked_users_cases():
    """`analyze_rows` with kind `blocked_users`: post-stratified difference in means with the
    Neyman variance (Imbens & Rubin 2015, 9.5) and a t reference with Welch-Satterthwaite df
    (scipy.stats.t), per-community differences with Welch se, and
    the stratified permutation test by itertools enumeration of every within-community
    assignment (ties within 1e-9 of the largest |T|)."""
    r = np.random.default_rng(17)
    alts = ["two_sided", "greater", "less"]

    def tau(values, lab, comm, C):
        num = w = 0.0
        for c in range(C):
            m = comm == c
            t, u = values[m & (lab == 1)], values[m & (lab == 0)]
            if len(t) and len(u):
                num += m.sum() * (t.mean() - u.mean())
                w += m.sum()
        return num / w

    cases = []
    for i in range(52):
        C = int(r.integers(2, 6))
        sizes = r.integers(4, 9, C)
        ks = [int(r.integers(2, n - 1)) for n in sizes]
        if i % 10 == 3:
            ks[0] = 0  # a community with control users only
        if i % 10 == 6:
            sizes[0], ks[0] = 2, 1  # one user per arm: no Welch se, no Neyman se
        total = math.prod(math.comb(int(n), k) for n, k in zip(sizes, ks))
        while total > 20000:
            sizes = np.maximum(sizes - 1, 4)
            ks = [max(min(k, n - 2), 2) if k else 0 for n, k in zip(sizes, ks)]
            total = math.prod(math.comb(int(n), k) for n, k in zip(sizes, ks))
        comm = np.concatenate([[c] * int(n) for c, n in enumerate(sizes)])
        lab = np.concatenate([r.permutation([1] * k + [0] * (int(n) - k)) for n, k in zip(sizes, ks)])
        effect = [0.0, 0.5, 1.5][i % 3]
        base = r.normal(0, 1, C)
        if i % 7 == 5:
            values = r.integers(0, 3, len(comm)).astype(float)  # heavy ties
        else:
            values = np.round(base[comm] + effect * lab + r.standard_t(5, len(comm)), 6)
        alt = alts[i % 3] if i % 2 else "two_sided"
        obs = tau(values, lab, comm, C)
        per = [list(itertools.combinations(np.where(comm == c)[0], k)) for c, k in enumerate(ks)]
        st = []
        for combo in itertools.product(*per):
            l2 = np.zeros(len(comm), int)
            for cidx in combo:
                l2[list(cidx)] = 1
            st.append(tau(values, l2, comm, C))
        st = np.array(st)
        tol = 1e-9 * max(np.abs(st).max(), abs(obs))
        if alt == "two_sided":
            p, most = np.mean(np.abs(st) >= abs(obs) - tol), np.abs(st).max()
            minp = np.mean(np.abs(st) >= most - tol)
        elif alt == "greater":
            p, minp = np.mean(st >= obs - tol), np.mean(st >= st.max() - tol)
        else:
            p, minp = np.mean(st <= obs + tol), np.mean(st <= st.min() + tol)
        comms, num, var, w, ok, used = [], 0.0, 0.0, 0.0, True, 0
        for c in range(C):
            t, u = values[(comm == c) & (lab == 1)], values[(comm == c) & (lab == 0)]
            e = {"cluster": f"community{c}", "n_treated": len(t), "n_control": len(u),
                 "estimate": float(t.mean() - u.mean()) if len(t) and len(u) else None,
                 "se": float(math.sqrt(t.var(ddof=1) / len(t) + u.var(ddof=1) / len(u))) if len(t) > 1 and len(u) > 1 else None}
            comms.append(e)
            if len(t) and len(u):
                n = len(t) + len(u)
                used += 1
                num += n * (t.mean() - u.mean())
                w += n
                if len(t) > 1 and len(u) > 1:
                    var += n * n * (t.var(ddof=1) / len(t) + u.var(ddof=1) / len(u))
                else:
                    ok = False
        post = {"strata": used, "strata_skipped": C - used}
        if ok and var > 0:
            se = math.sqrt(var) / w
            # Welch-Satterthwaite df of the stratified variance (Satterthwaite 1946; Cochran 1977
            # 5.4): cells k = w_s^2 s^2_{s,a} / n_{s,a} with w_s = n_s / N (normalised weights),
            # df = (sum k)^2 / sum k^2 / (n_{s,a} - 1)
            N = sum(int((comm == c).sum()) for c in range(C)
                    if ((comm == c) & (lab == 1)).any() and ((comm == c) & (lab == 0)).any())
            cells = []
            for c in range(C):
                m = comm == c
                arms = [values[m & (lab == a)] for a in (0, 1)]
                if all(len(x) for x in arms):
                    ws = m.sum() / N
                    cells += [(ws ** 2 * x.var(ddof=1) / len(x), len(x) - 1) for x in arms]
            k = np.array([a for a, _ in cells])
            nu = np.array([b for _, b in cells], float)
            df = float(k.sum() ** 2 / np.sum(k ** 2 / nu))
            assert nu.min() - 1e-9 <= df <= nu.sum() + 1e-9
            tstat = num / w / se
            q = stats.t.ppf(0.975, df)
            post.update({"estimate": num / w, "se": se, "t": tstat, "df": df,
                         "p": float(2 * stats.t.sf(abs(tstat), df)),
                         "p_normal": float(2 * stats.norm.sf(abs(tstat))),
                         "ci95": [num / w - q * se, num / w + q * se]})
        else:
            post["error"] = "degenerate"
        rows = [{"cluster": f"community{comm[j]}", "arm": "treatment" if lab[j] else "control",
                 "value": float(values[j])} for j in range(len(comm))]
        cases.append({"name": f"generated_{i:02d}_C{C}_{alt}", "input": {
            "rows": rows, "design": {"kind": "blocked_users", "alternative": alt, "seed": 3}},
            "expected": {"estimate": obs, "randomisation": {"n_assignments": len(st), "p": float(p), "min_p": float(minp)},
                         "post_stratified": post, "communities": comms}})
    dump("few_blocked_users.json", {"source": "numpy; scipy.stats.t (Welch-Satterthwaite df); itertools enumeration", "cases": cases})


if __name__ == "__main__":
    which = sys.argv[1:] or ["cluster", "randomization", "nonparametric", "survey", "power", "response",
                             "response_waves", "blocked_users"]
    for w in which:
        globals()[f"{w}_cases"]()
