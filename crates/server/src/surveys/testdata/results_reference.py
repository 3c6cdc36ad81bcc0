#!/usr/bin/env python3
"""Independent reference for survey results (server::surveys::results).

Pinned: numpy 2.4.6, scipy 1.17.1.
Run:    python3 crates/server/src/surveys/testdata/results_reference.py
Writes: crates/server/src/surveys/testdata/results_reference.json, read by
        the Rust test `results_tests.rs` (which does not run Python).

A campaign of surveys/cbpp-community.toml: 150 invited units in arms A and B
(some never exposed), five communities (one too small to show), responses
completed, started (partly answered) or declined, and two units answering
without an invitation. Computed here from the formulas, with numpy/scipy:

- scale scores: mean of the items, reverse-coded items as 6 - x; a score
  only when every item is answered; declined responses have none;
- Cronbach's alpha  k/(k-1) (1 - sum var_i / var_total)  (ddof 1), Feldt
  interval 1 - (1 - alpha) F^{-1}(1 -+ 0.025; n-1, (n-1)(k-1)), corrected
  item-total correlations (np.corrcoef of the item with the rest), alpha if
  item deleted; McDonald's omega by the likelihood fit of
  crates/stats/reference/omega.py;
- response rates (completed / invited) per arm and per community, cells with
  fewer than 5 completed responses withheld; the differential-response test
  scipy.stats.chi2_contingency(correction=False) (Fisher's exact test when an
  expected count is below 5, two arms).
"""
import json
import os
import sys

import numpy as np
from scipy import stats

sys.dont_write_bytecode = True  # nothing written beside the sources
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../../../stats/reference"))
from omega import fit as omega_fit  # noqa: E402

K = 5
SCALES = {
    "value": (["value1", "value2", "value3", "value4"], {"value4"}),
    "belonging": (["belong1", "belong2", "belong3", "belong4"], {"belong4"}),
}


def main():
    rng = np.random.default_rng(13)
    units, responses = [], []
    communities = ["north", "south", "east", "west", "tiny"]
    for i in range(150):
        unit = f"{i + 1:064x}"
        arm = "A" if i % 2 == 0 else "B"
        if i % 15 == 7:
            arm = None  # never exposed
        community = communities[i % 4] if i < 146 else "tiny"
        units.append({"unit": unit, "invited": True, "arm": arm, "community": community})
        # Arm B answers less often: a differential response to detect.
        p_complete = 0.75 if arm == "A" else 0.45
        u = rng.uniform()
        if u < p_complete:
            status = "completed"
        elif u < p_complete + 0.1:
            status = "started"
        elif u < p_complete + 0.15:
            status = "declined"
        else:
            continue
        responses.append(respond(rng, unit, status))
    for j in range(2):
        unit = f"{1000 + j:064x}"
        units.append({"unit": unit, "invited": False, "arm": "A", "community": None})
        responses.append(respond(rng, unit, "completed"))

    expected = {"scales": {}, "rates": {}}
    for key, (items, reverse) in SCALES.items():
        rows, scores, arms = [], [], []
        arm_of = {u["unit"]: u["arm"] for u in units}
        for r in responses:
            if r["status"] == "declined" or not all(i in r["answers"] for i in items):
                continue
            row = [6 - r["answers"][i] if i in reverse else r["answers"][i] for i in items]
            rows.append(row)
            scores.append(float(np.mean(row)))
            arms.append(arm_of.get(r["unit"]))
        X = np.array(rows, dtype=float)
        n, k = X.shape
        total = X.sum(axis=1)
        alpha = k / (k - 1) * (1 - X.var(axis=0, ddof=1).sum() / total.var(ddof=1))
        df1, df2 = n - 1, (n - 1) * (k - 1)
        lo = 1 - (1 - alpha) * stats.f.ppf(0.975, df1, df2)
        hi = 1 - (1 - alpha) * stats.f.ppf(0.025, df1, df2)
        citr, aid = [], []
        for j in range(k):
            rest = np.delete(X, j, axis=1)
            citr.append(float(np.corrcoef(X[:, j], rest.sum(axis=1))[0, 1]))
            kk = k - 1
            aid.append(float(kk / (kk - 1) * (1 - rest.var(axis=0, ddof=1).sum() / rest.sum(axis=1).var(ddof=1))))
        lam, psi = omega_fit(np.cov(X, rowvar=False, ddof=1))
        omega = lam.sum() ** 2 / (lam.sum() ** 2 + psi.sum())
        by_arm = {}
        for a in ("A", "B"):
            xs = np.array([s for s, arm in zip(scores, arms) if arm == a])
            by_arm[a] = {"n": len(xs), "mean": float(xs.mean()), "sd": float(xs.std(ddof=1))}
        expected["scales"][key] = {
            "n": n, "mean": float(np.mean(scores)), "sd": float(np.std(scores, ddof=1)),
            "alpha": float(alpha), "alpha_lower": float(lo), "alpha_upper": float(hi),
            "corrected_item_total_r": citr, "alpha_if_deleted": aid, "omega": float(omega),
            "by_arm": by_arm,
        }

    status = {r["unit"]: r["status"] for r in responses}

    def cell(pred):
        invited = [u for u in units if u["invited"] and pred(u)]
        completed = sum(status.get(u["unit"]) == "completed" for u in invited)
        return {"invited": len(invited), "completed": completed,
                "started": sum(status.get(u["unit"]) == "started" for u in invited),
                "declined": sum(status.get(u["unit"]) == "declined" for u in invited),
                "suppressed": completed < K}

    expected["rates"]["overall"] = cell(lambda u: True)
    expected["rates"]["by_arm"] = {a: cell(lambda u, a=a: u["arm"] == a) for a in ("A", "B")}
    expected["rates"]["without_arm"] = cell(lambda u: u["arm"] is None)
    expected["rates"]["by_community"] = {c: cell(lambda u, c=c: u["community"] == c) for c in communities}
    table = np.array([[expected["rates"]["by_arm"][a]["completed"],
                       expected["rates"]["by_arm"][a]["invited"] - expected["rates"]["by_arm"][a]["completed"]]
                      for a in ("A", "B")])
    chi2, p, dof, exp = stats.chi2_contingency(table, correction=False)
    fisher_p = stats.fisher_exact(table)[1]
    expected["differential"] = {"chi2": float(chi2), "df": float(dof), "chi2_p": float(p),
                                "fisher_p": float(fisher_p), "min_expected": float(exp.min()),
                                "p_value": float(fisher_p if exp.min() < 5 else p)}
    expected["uninvited_responses"] = 2

    out = {"min_cell": K, "units": units, "responses": responses, "expected": expected}
    with open(os.path.join(HERE, "results_reference.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print(json.dumps(expected["differential"]), expected["rates"]["by_community"]["tiny"])


def respond(rng, unit, status):
    answers = {}
    if status != "declined":
        trait = rng.normal()
        answers["frequency"] = str(rng.choice(["never", "monthly", "weekly", "daily"]))
        if answers["frequency"] != "never":
            answers["hours"] = float(rng.integers(0, 40)) / 2
        answers["activities"] = {"codes": ["write", "review"], "other": "I also translate <b>docs</b>"}
        for prefix in ("value", "belong"):
            for j in range(1, 5):
                x = trait * 0.9 + rng.normal() * 0.8
                if j == 4:
                    x = -x
                answers[f"{prefix}{j}"] = float(int(np.clip(np.round(x + 3), 1, 5)))
        answers["comments"] = "=HYPERLINK(\"x\") thanks, Ana from north"
        if status == "started":
            for key in ("belong1", "belong2", "belong3", "belong4", "comments"):
                answers.pop(key)
    return {"unit": unit, "status": status, "answers": answers}


if __name__ == "__main__":
    main()
