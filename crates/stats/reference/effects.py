#!/usr/bin/env python3
"""Independent reference values for commonlab-stats effects, CUPED,
post-stratification, sequential, Bayesian, SRM and multiple-testing methods.

Pinned environment (checked at run time):
    numpy 2.1.3, scipy 1.14.1, statsmodels 0.14.4

Run:  python -m venv /tmp/pyref && /tmp/pyref/bin/pip install numpy==2.1.3 scipy==1.14.1 statsmodels==0.14.4
      /tmp/pyref/bin/python crates/stats/reference/effects.py
Writes crates/stats/reference/effects_cases.json (loaded by the Rust tests
with include_str!).

Classic results come from scipy / statsmodels on generated per-unit data
(scipy.stats.ttest_ind(equal_var=False), scipy.stats.chisquare,
statsmodels multipletests). GrowthBook-convention quantities (relative lift
by the delta method with |baseline|, proportions with p(1-p), ratio delta
method, pooled-theta CUPED, post-stratification, confidence sequences,
Gaussian posteriors) are written here from the published formulas in numpy,
independently of the Rust code (matrix forms where Rust uses sums, scipy
truncnorm for Bayesian risk where Rust uses the closed form).
"""
import json
import os
import sys

import numpy as np
import scipy
import statsmodels
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests

PINS = {"numpy": "2.1.3", "scipy": "1.14.1", "statsmodels": "0.14.4"}
for name, mod in (("numpy", np), ("scipy", scipy), ("statsmodels", statsmodels)):
    if mod.__version__ != PINS[name]:
        sys.exit(f"{name} {mod.__version__} != pinned {PINS[name]}")

rng = np.random.default_rng(20261126)
OUT = {}


def fnum(x):
    x = float(x)
    return x if np.isfinite(x) else None


def suff(y, x=None, d=None):
    """Sufficient statistics of per-unit arrays (math.fsum for exact-ish sums)."""
    import math

    s = {"n": float(len(y)), "sum": math.fsum(y), "sum_squares": math.fsum(y * y)}
    if d is not None:
        s.update(d_sum=math.fsum(d), d_sum_squares=math.fsum(d * d), md_sum=math.fsum(y * d))
    if x is not None:
        s.update(x_sum=math.fsum(x), x_sum_squares=math.fsum(x * x), xy_sum=math.fsum(x * y))
        if d is not None:
            s["dx_sum"] = math.fsum(d * x)
    return s


# ---------------------------------------------------------------- moments
def moments(kind, s, with_x=False):
    """(mean vector z=(Y,D,X), unit covariance 3x3, n) from sufficient stats."""
    n = s["n"]
    z = np.array([s["sum"] / n, 1.0, 0.0])
    C = np.zeros((3, 3))

    # one divisor per arm: n for every moment of a proportion (Var(Y) = p(1-p)),
    # n - 1 for means and ratios
    div = n if kind == "proportion" else n - 1

    def co(sab, sa, sb):
        return (sab - sa * sb / n) / div if n > 1 else 0.0

    if kind == "proportion":
        p = s["sum"] / n
        C[0, 0] = p * (1 - p)
    else:
        C[0, 0] = co(s["sum_squares"], s["sum"], s["sum"])
    if kind == "ratio":
        z[1] = s["d_sum"] / n
        C[1, 1] = co(s["d_sum_squares"], s["d_sum"], s["d_sum"])
        C[0, 1] = C[1, 0] = co(s["md_sum"], s["sum"], s["d_sum"])
    if with_x:
        z[2] = s["x_sum"] / n
        C[2, 2] = co(s["x_sum_squares"], s["x_sum"], s["x_sum"])
        C[0, 2] = C[2, 0] = co(s["xy_sum"], s["sum"], s["x_sum"])
        if kind == "ratio":
            C[1, 2] = C[2, 1] = co(s["dx_sum"], s["d_sum"], s["x_sum"])
    return z, C, n


def h_and_grad(kind, z, theta):
    if kind == "ratio":
        return z[0] / z[1] - theta * z[2], np.array([1 / z[1], -z[0] / z[1] ** 2, -theta])
    return z[0] - theta * z[2], np.array([1.0, 0.0, -theta])


def effect_from_mu(kind, mu, cov, theta, scale):
    """g(mu) and grad' cov grad for mu = (z_A, z_B), written with explicit vectors."""
    fa, ga = h_and_grad(kind, mu[:3], theta)
    fb, gb = h_and_grad(kind, mu[3:], theta)
    ua, gu = h_and_grad(kind, mu[:3], 0.0)
    if scale == "absolute":
        g = fb - fa
        grad = np.concatenate([-ga, gb])
    else:
        # g = (fb - fa)/|ua|
        g = (fb - fa) / abs(ua)
        dga = -ga / abs(ua) - (fb - fa) * np.sign(ua) * gu / ua**2
        grad = np.concatenate([dga, gb / abs(ua)])
    return g, float(grad @ cov @ grad), abs(ua)


def pooled_theta(kind, arms):
    # centred sums S = divisor * covariance: theta is the pooled within-arm OLS slope
    num = den = 0.0
    for z, C, n in arms:
        _, g = h_and_grad(kind, z, 0.0)
        w = n if kind == "proportion" else n - 1
        num += w * (g[0] * C[0, 2] + g[1] * C[1, 2])
        den += w * C[2, 2]
    return num / den if den > 0 else 0.0


def estimate(kind, a, b, scale, cuped=False):
    A = moments(kind, a, cuped)
    B = moments(kind, b, cuped)
    theta = pooled_theta(kind, [A, B]) if cuped else 0.0
    mu = np.concatenate([A[0], B[0]])
    cov = np.zeros((6, 6))
    cov[:3, :3] = A[1] / A[2]
    cov[3:, 3:] = B[1] / B[2]
    g, v, base = effect_from_mu(kind, mu, cov, theta, scale)
    _, gA = h_and_grad(kind, A[0], theta)
    _, gB = h_and_grad(kind, B[0], theta)
    sa = gA @ A[1] @ gA / A[2]
    sb = gB @ B[1] @ gB / B[2]
    df = (sa + sb) ** 2 / (sa**2 / (A[2] - 1) + sb**2 / (B[2] - 1))
    return dict(effect=g, se=np.sqrt(v), df=df, n_total=A[2] + B[2], baseline_abs=base, theta=theta)


def t_tests(e, alpha):
    t = e["effect"] / e["se"]
    df = e["df"]
    q2 = stats.t.ppf(1 - alpha / 2, df)
    q1 = stats.t.ppf(1 - alpha, df)
    return {
        "two_sided": dict(p=2 * stats.t.sf(abs(t), df), lo=e["effect"] - q2 * e["se"], hi=e["effect"] + q2 * e["se"]),
        "greater": dict(p=stats.t.sf(t, df), lo=e["effect"] - q1 * e["se"], hi=None),
        "lesser": dict(p=stats.t.cdf(t, df), lo=None, hi=e["effect"] + q1 * e["se"]),
    }


def sequential(e, alpha, tuning):
    n = e["n_total"]
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning
    s2 = e["se"] ** 2 * n
    half = np.sqrt(s2) * np.sqrt(2 * (n * rho2 + 1) * np.log(np.sqrt(n * rho2 + 1) / alpha) / (n**2 * rho2))
    st2 = e["effect"] ** 2 * n / e["se"] ** 2
    ev = np.exp(rho2 * st2 / (2 * (n * rho2 + 1))) / np.sqrt(n * rho2 + 1)
    return dict(p=min(1.0, 1 / ev), lo=e["effect"] - half, hi=e["effect"] + half)


def bayes(e, prior, scale, alpha):
    if prior is None:
        mu, sd = e["effect"], e["se"]
    else:
        k = 1.0 if scale == "relative" else e["baseline_abs"]
        m0, t2 = prior[0] * k, (prior[1] * k) ** 2
        prec = 1 / e["se"] ** 2 + 1 / t2
        mu, sd = (e["effect"] / e["se"] ** 2 + m0 / t2) / prec, np.sqrt(1 / prec)
    # risk by numerical integration (independent of the closed form):
    # E[max(D,0)] = sd * int_{-inf}^{mu/sd} Phi(t) dt, E[max(-D,0)] = sd * int_{-inf}^{-mu/sd} Phi(t) dt
    def psi(z):
        val, _ = integrate.quad(stats.norm.cdf, -np.inf, z, epsabs=0, epsrel=1e-13, limit=200)
        return val
    lo, hi = stats.norm.ppf([alpha / 2, 1 - alpha / 2], mu, sd)
    return dict(
        effect=mu, se=sd, lo=lo, hi=hi, ctw=stats.norm.sf(0, mu, sd),
        risk_control=sd * psi(mu / sd), risk_treatment=sd * psi(-mu / sd),
    )


def full(kind, a, b, scale, alpha=0.05, cuped=False, tuning=5000.0, prior=(0.0, 0.3)):
    e = estimate(kind, a, b, scale, cuped)
    out = {k: fnum(v) for k, v in e.items()}
    out["tests"] = {k: {kk: fnum(vv) if vv is not None else None for kk, vv in v.items()} for k, v in t_tests(e, alpha).items()}
    out["tests"]["sequential"] = {k: fnum(v) for k, v in sequential(e, alpha, tuning).items()}
    out["bayes_flat"] = {k: fnum(v) for k, v in bayes(e, None, scale, alpha).items()}
    out["bayes_proper"] = {k: fnum(v) for k, v in bayes(e, prior, scale, alpha).items()}
    return out


# ---------------------------------------------------------------- 1. classic Welch via scipy
welch = []
for i in range(60):
    na, nb = int(rng.integers(2, 400)), int(rng.integers(2, 400))
    if i < 4:
        na, nb = [(2, 2), (2, 3), (3, 2), (5, 1000)][i]
    loc, sc = rng.normal(0, 50), rng.uniform(0.1, 30)
    ya = rng.normal(loc, sc, na).round(3)
    yb = rng.normal(loc + rng.normal(0, sc / 3), sc * rng.uniform(0.3, 3), nb).round(3)
    alpha = [0.05, 0.1, 0.01, 0.2][i % 4]
    case = dict(id=f"welch{i}", kind="mean", alpha=alpha, a=suff(ya), b=suff(yb))
    r2 = stats.ttest_ind(yb, ya, equal_var=False)
    ci2 = r2.confidence_interval(1 - alpha)
    rg = stats.ttest_ind(yb, ya, equal_var=False, alternative="greater")
    rl = stats.ttest_ind(yb, ya, equal_var=False, alternative="less")
    case["expect"] = dict(
        effect=float(yb.mean() - ya.mean()), df=float(r2.df), t=float(r2.statistic),
        two_sided=dict(p=float(r2.pvalue), lo=float(ci2.low), hi=float(ci2.high)),
        greater=dict(p=float(rg.pvalue), lo=float(rg.confidence_interval(1 - alpha).low), hi=None),
        lesser=dict(p=float(rl.pvalue), lo=None, hi=float(rl.confidence_interval(1 - alpha).high)),
    )
    welch.append(case)
OUT["welch_scipy"] = welch

# ---------------------------------------------------------------- 2. full method grid, gbstats conventions
grid = []


def add(id_, kind, a, b, scale, alpha=0.05, cuped=False, tuning=5000.0, prior=(0.0, 0.3), error=None):
    c = dict(id=id_, kind=kind, scale=scale, alpha=alpha, cuped=cuped, tuning=tuning, prior=list(prior), a=a, b=b)
    if error is not None:
        c["error"] = error
    else:
        c["expect"] = full(kind, a, b, scale, alpha, cuped, tuning, prior)
    grid.append(c)


for i in range(30):  # means, both scales, incl. negative baselines
    na, nb = int(rng.integers(5, 5000)), int(rng.integers(5, 5000))
    base = rng.normal(0, 20) if i % 3 else -abs(rng.normal(10, 5))  # every third negative
    ya = rng.normal(base, rng.uniform(1, 10), na)
    yb = rng.normal(base * rng.uniform(0.9, 1.1), rng.uniform(1, 10), nb)
    for scale in ("absolute", "relative"):
        add(f"mean{i}_{scale}", "mean", suff(ya), suff(yb), scale, alpha=[0.05, 0.1][i % 2],
            tuning=[5000.0, 1000.0, 20000.0][i % 3], prior=[(0.0, 0.3), (0.05, 0.1)][i % 2])
for i in range(30):  # proportions
    n_a, n_b = int(rng.integers(20, 10**6)), int(rng.integers(20, 10**6))
    p = rng.uniform(0.01, 0.9)
    ca, cb = rng.binomial(n_a, p), rng.binomial(n_b, p * rng.uniform(0.95, 1.05))
    a = {"n": float(n_a), "sum": float(ca), "sum_squares": float(ca)}
    b = {"n": float(n_b), "sum": float(cb), "sum_squares": float(cb)}
    for scale in ("absolute", "relative"):
        add(f"prop{i}_{scale}", "proportion", a, b, scale)
for i in range(30):  # ratios
    na, nb = int(rng.integers(10, 3000)), int(rng.integers(10, 3000))
    da, db = rng.poisson(3, na) + 1.0, rng.poisson(3, nb) + 1.0
    ma = da * rng.gamma(2, 2, na) * (1 if i % 4 else -1)
    mb = db * rng.gamma(2, 2.1, nb) * (1 if i % 4 else -1)
    for scale in ("absolute", "relative"):
        add(f"ratio{i}_{scale}", "ratio", suff(ma, d=da), suff(mb, d=db), scale)
# huge counts (1e9 units)
for i in range(8):
    n = 1e9
    p = [0.5, 0.1, 0.01, 0.9, 0.3, 0.001, 0.7, 0.05][i]
    a = {"n": n, "sum": round(n * p), "sum_squares": round(n * p)}
    b = {"n": n + 12345, "sum": round((n + 12345) * p * 1.0003), "sum_squares": round((n + 12345) * p * 1.0003)}
    for scale in ("absolute", "relative"):
        add(f"huge_prop{i}_{scale}", "proportion", a, b, scale)
for i in range(4):
    n = 1e9
    mean, var = [(3.0, 4.0), (100.0, 25.0), (-2.0, 1.0), (0.5, 0.25)][i]
    a = {"n": n, "sum": n * mean, "sum_squares": (n - 1) * var + n * mean**2}
    m2 = mean * 1.0001
    b = {"n": n, "sum": n * m2, "sum_squares": (n - 1) * var * 1.01 + n * m2**2}
    for scale in ("absolute", "relative"):
        add(f"huge_mean{i}_{scale}", "mean", a, b, scale)
# degenerate cases
Z = {"n": 10.0, "sum": 0.0, "sum_squares": 0.0}
O = {"n": 10.0, "sum": 10.0, "sum_squares": 10.0}
H = {"n": 10.0, "sum": 5.0, "sum_squares": 5.0}
for scale in ("absolute", "relative"):
    add(f"n1_control_{scale}", "mean", {"n": 1.0, "sum": 3.0, "sum_squares": 9.0}, H, scale, error="control arm has n < 2")
    add(f"n1_treatment_{scale}", "mean", H, {"n": 1.0, "sum": 3.0, "sum_squares": 9.0}, scale, error="treatment arm has n < 2")
    add(f"n0_{scale}", "mean", {"n": 0.0, "sum": 0.0, "sum_squares": 0.0}, H, scale, error="control arm has no units")
    add(f"zero_var_control_{scale}", "mean", {"n": 10.0, "sum": 30.0, "sum_squares": 90.0}, H, scale, error="control arm has zero variance")
    add(f"zero_var_treatment_{scale}", "mean", H, {"n": 10.0, "sum": 30.0, "sum_squares": 90.0}, scale, error="treatment arm has zero variance")
    add(f"all_zero_prop_{scale}", "proportion", Z, H, scale, error="control arm has zero variance")
    add(f"all_one_prop_{scale}", "proportion", H, O, scale, error="treatment arm has zero variance")
    add(f"both_zero_prop_{scale}", "proportion", Z, Z, scale, error="control arm has zero variance")
    add(f"huge_const_{scale}", "mean", {"n": 1e9, "sum": 1e12, "sum_squares": 1e15}, H, scale, error="control arm has zero variance")
    add(f"ratio_zero_den_{scale}", "ratio", dict(n=10.0, sum=5.0, sum_squares=5.0, d_sum=0.0, d_sum_squares=0.0, md_sum=0.0),
        dict(n=10.0, sum=5.0, sum_squares=5.0, d_sum=10.0, d_sum_squares=12.0, md_sum=6.0), scale, error="zero")
add("zero_baseline_relative", "mean", {"n": 4.0, "sum": 0.0, "sum_squares": 8.0}, H, "relative",
    error="control mean is zero; relative lift is undefined")
OUT["grid"] = grid

# ---------------------------------------------------------------- 3. CUPED
cup = []
for i in range(36):
    kind = ["mean", "proportion", "ratio"][i % 3]
    na, nb = int(rng.integers(10, 4000)), int(rng.integers(10, 4000))
    rho = rng.uniform(-0.9, 0.95)

    def arm(n, shift):
        x = rng.normal(10, 3, n)
        if kind == "proportion":
            y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(rho * (x - 10) / 3 + shift)))).astype(float)
            return suff(y, x=x)
        y = 5 + rho * (x - 10) + rng.normal(shift, 2, n)
        if kind == "ratio":
            d = rng.poisson(2, n) + 1.0
            return suff(y * d, x=x, d=d)
        return suff(y, x=x)

    a, b = arm(na, 0.0), arm(nb, rng.normal(0, 0.2))
    for scale in ("absolute", "relative"):
        c = dict(id=f"cuped{i}_{scale}", kind=kind, scale=scale, alpha=0.05, cuped=True, tuning=5000.0,
                 prior=[0.0, 0.3], a=a, b=b, expect=full(kind, a, b, scale, cuped=True))
        cup.append(c)
# CUPED absolute on means cross-checked with scipy on adjusted per-unit data
cup_scipy = []
for i in range(12):
    na, nb = int(rng.integers(5, 800)), int(rng.integers(5, 800))
    xa, xb = rng.normal(0, 2, na), rng.normal(0, 2, nb)
    ya, yb = 1 + 0.8 * xa + rng.normal(0, 1, na), 1.1 + 0.8 * xb + rng.normal(0, 1.3, nb)
    a, b = suff(ya, x=xa), suff(yb, x=xb)
    # pooled within-arm OLS slope
    th = (np.sum((xa - xa.mean()) * (ya - ya.mean())) + np.sum((xb - xb.mean()) * (yb - yb.mean()))) / (
        np.sum((xa - xa.mean()) ** 2) + np.sum((xb - xb.mean()) ** 2))
    r = stats.ttest_ind(yb - th * xb, ya - th * xa, equal_var=False)
    ci = r.confidence_interval(0.95)
    cup_scipy.append(dict(id=f"cuped_scipy{i}", kind="mean", a=a, b=b, theta=float(th),
                          expect=dict(effect=float((yb - th * xb).mean() - (ya - th * xa).mean()), df=float(r.df),
                                      p=float(r.pvalue), lo=float(ci.low), hi=float(ci.high))))
OUT["cuped"] = cup
OUT["cuped_scipy"] = cup_scipy

# ---------------------------------------------------------------- 4. post-stratification
ps = []


def poststrat(kind, strata, scale):
    cells = []
    for a, b in strata:
        A, B = moments(kind, a), moments(kind, b)
        cells.append((A, B))
    N = sum(A[2] + B[2] for A, B in cells)
    nu = np.array([(A[2] + B[2]) / N for A, B in cells])
    Amat = np.array([np.concatenate([A[0], B[0]]) for A, B in cells]).T  # 6 x K
    mu = Amat @ nu
    within = np.zeros((6, 6))
    for w, (A, B) in zip(nu, cells):
        blk = np.zeros((6, 6))
        blk[:3, :3] = A[1] / A[2]
        blk[3:, 3:] = B[1] / B[2]
        within += w**2 * blk
    multinom = Amat @ (np.diag(nu) - np.outer(nu, nu)) @ Amat.T / N
    g, v, base = effect_from_mu(kind, mu, within + multinom, 0.0, scale)
    return dict(effect=g, se=np.sqrt(v), df=np.inf, n_total=N, baseline_abs=base, theta=0.0)


for i in range(30):
    kind = ["mean", "proportion", "ratio"][i % 3]
    K = int(rng.integers(1, 7))
    strata = []
    for k in range(K):
        na, nb = int(rng.integers(3, 500)), int(rng.integers(3, 500))
        lvl = rng.normal(5, 2)
        if kind == "proportion":
            p = rng.uniform(0.05, 0.95)
            ca, cb = rng.binomial(na, p), rng.binomial(nb, p)
            if ca in (0, na):
                ca = 1
            if cb in (0, nb):
                cb = 1
            strata.append(({"n": float(na), "sum": float(ca), "sum_squares": float(ca)},
                           {"n": float(nb), "sum": float(cb), "sum_squares": float(cb)}))
        elif kind == "ratio":
            da, db = rng.poisson(2, na) + 1.0, rng.poisson(2, nb) + 1.0
            strata.append((suff(da * rng.normal(lvl, 1, na), d=da), suff(db * rng.normal(lvl * 1.02, 1, nb), d=db)))
        else:
            strata.append((suff(rng.normal(lvl, 2, na)), suff(rng.normal(lvl + 0.1, 2, nb))))
    for scale in ("absolute", "relative"):
        e = poststrat(kind, strata, scale)
        alpha = 0.05
        z = stats.norm.ppf(1 - alpha / 2)
        expect = dict(effect=fnum(e["effect"]), se=fnum(e["se"]),
                      two_sided=dict(p=fnum(2 * stats.norm.sf(abs(e["effect"] / e["se"]))),
                                     lo=fnum(e["effect"] - z * e["se"]), hi=fnum(e["effect"] + z * e["se"])),
                      sequential={k: fnum(v) for k, v in sequential(e, alpha, 5000.0).items()})
        ps.append(dict(id=f"ps{i}_{scale}", kind=kind, scale=scale,
                       strata=[dict(name=f"c{k}", a=a, b=b) for k, (a, b) in enumerate(strata)], expect=expect))
OUT["poststrat"] = ps

# ---------------------------------------------------------------- 5. SRM
srm = []
for i in range(55):
    k = int(rng.integers(2, 6))
    w = rng.uniform(0.1, 1, k) if i % 3 else np.ones(k)
    tot = int(rng.integers(10, 10**7)) if i < 50 else 10**9
    users = rng.multinomial(tot, w / w.sum()).astype(float)
    if i % 7 == 0:
        users[0] = round(users[0] * 1.02)
    exp_ = users.sum() * w / w.sum()
    r = stats.chisquare(users, exp_)
    srm.append(dict(id=f"srm{i}", users=users.tolist(), weights=w.tolist(), statistic=float(r.statistic),
                    p=float(r.pvalue), mismatch=bool(r.pvalue < 0.001)))
OUT["srm"] = srm

# ---------------------------------------------------------------- 6. multiple testing
mt = []
for i in range(55):
    m = int(rng.integers(1, 30))
    p = rng.uniform(size=m) ** rng.uniform(0.5, 6)
    if i % 5 == 0:
        p[: m // 2] = p[0]  # ties
    if i == 1:
        p = np.array([0.0, 1.0, 0.5])
    mt.append(dict(id=f"mt{i}", p=p.tolist(), holm=multipletests(p, method="holm")[1].tolist(),
                   bh=multipletests(p, method="fdr_bh")[1].tolist()))
OUT["multiple"] = mt

# ---------------------------------------------------------------- 7. distributions
dist = []
for df in [1.0, 2.0, 3.5, 10.0, 29.5, 100.0, 1e3, 5e4, 1e5, 3e5, 1e6, 1e7, 2e9]:
    for t in [-40.0, -8.0, -3.0, -1.5, -0.2, 0.0, 0.7, 2.0, 5.0, 12.0]:
        dist.append(dict(kind="t", df=df, x=t, cdf=float(stats.t.cdf(t, df)), sf=float(stats.t.sf(t, df))))
    for p in [1e-10, 0.001, 0.025, 0.05, 0.4, 0.6, 0.95, 0.975, 0.995]:
        dist.append(dict(kind="t_ppf", df=df, p=p, x=float(stats.t.ppf(p, df))))
for x in [-38.0, -10.0, -3.0, -1.0, 0.0, 0.5, 1.96, 5.0, 9.0, 20.0, 37.0]:
    dist.append(dict(kind="norm", x=x, cdf=float(stats.norm.cdf(x)), sf=float(stats.norm.sf(x))))
for p in [1e-300, 1e-12, 1e-4, 0.025, 0.5, 0.8, 0.975, 0.999999]:
    dist.append(dict(kind="norm_ppf", p=p, x=float(stats.norm.ppf(p))))
for k in [1.0, 2.0, 3.0, 7.0, 40.0]:
    for x in [0.01, 0.5, 3.84, 10.0, 80.0, 400.0]:
        dist.append(dict(kind="chi2", df=k, x=x, sf=float(stats.chi2.sf(x, k))))
OUT["dist"] = dist

OUT["meta"] = dict(pins=PINS, generator="crates/stats/reference/effects.py", seed=20261126)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "effects_cases.json")
with open(path, "w") as f:
    json.dump(OUT, f, indent=None, separators=(",", ":"), allow_nan=False)
print({k: len(v) for k, v in OUT.items() if isinstance(v, list)}, "->", path)
