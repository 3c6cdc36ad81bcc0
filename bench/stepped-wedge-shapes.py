#!/usr/bin/env python3
"""Query shapes for a stepped wedge's per-(community, member) pass on SQLite.

Times the first step of `Store::community_period_cells` (the GROUP BY
community, unit over the covering index of migration 0009) in several
shapes, on the metric benchmark's SQLite file (generate it with
`cargo bench -p commonlab-store --bench metrics` first):

    python3 bench/stepped-wedge-shapes.py [target/bench-data/metrics.db] [runs]

Python's sqlite3 (3.40 here) against sqlx's bundled SQLite: read the
figures as ratios between shapes (docs/benchmarks.md, "Rows of a stepped
wedge"). Shapes are run alternately, `runs` rounds.
"""
import sqlite3
import statistics
import sys
import time

DB = sys.argv[1] if len(sys.argv) > 1 else "target/bench-data/metrics.db"
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ONLY = sys.argv[3].split(",") if len(sys.argv) > 3 else None

# Five 20-day windows from 2026-11-22, as the benchmark.
DAYS = ["2026-11-22", "2026-12-12", "2027-01-01", "2027-01-21", "2027-02-10", "2027-03-02"]
B = [f"{d}T00:00:00.000000Z" for d in DAYS]
W = [(B[i], B[i + 1]) for i in range(5)]
COMMS = "'c0', 'c1', 'c2', 'c3'"
HIT = "v.name IN ('contribution_created')"
SPAN = f"v.community IS NOT NULL AND v.community IN ({COMMS}) AND v.ts >= '{B[0]}' AND v.ts < '{B[-1]}'"


def per_window(column):
    """One GROUP BY community, unit over the index with `column(i, within)`
    as the columns of window i."""
    cols = []
    for i, (s, e) in enumerate(W):
        cols.extend(column(i, f"v.ts >= '{s}' AND v.ts < '{e}'"))
    return f"SELECT v.community, v.unit, {', '.join(cols)} FROM events v WHERE {SPAN} GROUP BY v.community, v.unit"


def current():
    # Before: active and y, two aggregates per window.
    return per_window(lambda i, w: [
        f"max(CASE WHEN {w} THEN 1 ELSE 0 END) AS a{i}",
        f"max(CASE WHEN {w} AND {HIT} THEN 1.0 ELSE 0.0 END) AS y{i}",
        f"0.0 AS d{i}",
    ])
def scan_only():
    return f"SELECT v.community, v.unit, count(*) FROM events v WHERE {SPAN} GROUP BY v.community, v.unit"


def period_case(col="v.ts"):
    """The window of the row, or -1: a binary search over the sorted,
    disjoint windows, each bound compared once."""
    def rec(lo, hi):
        if hi - lo == 1:
            s, e = W[lo]
            return f"CASE WHEN {col} >= '{s}' AND {col} < '{e}' THEN {lo} ELSE -1 END"
        mid = (lo + hi) // 2
        return f"CASE WHEN {col} < '{W[mid][0]}' THEN {rec(lo, mid)} ELSE {rec(mid, hi)} END"
    return rec(0, len(W))


def code_per_window():
    return per_window(lambda i, w: [f"max(CASE WHEN {w} THEN CASE WHEN {HIT} THEN 2 ELSE 1 END ELSE 0 END) AS c{i}"])
def group_by_period():
    return (f"SELECT community, unit, p, max(h) FROM (SELECT v.community, v.unit, {period_case()} AS p, "
            f"CASE WHEN {HIT} THEN 1 ELSE 0 END AS h FROM events v WHERE {SPAN}) GROUP BY community, unit, p")


def distinct_code():
    # window i: 1 * 4^i (active), 2 * 4^i (hit); sum of the distinct codes
    # per member holds every window in base 4.
    return (f"SELECT community, unit, sum(DISTINCT c) FROM (SELECT v.community, v.unit, "
            f"CASE p WHEN -1 THEN 0 ELSE (CASE WHEN {HIT} THEN 2 ELSE 1 END) << (2 * p) END AS c "
            f"FROM (SELECT v.community, v.unit, v.name, {period_case()} AS p FROM events v WHERE {SPAN}) v) "
            f"GROUP BY community, unit")


def null_when_inactive():
    # After: y per window, NULL when the member has no event in it: one
    # aggregate per window (two comparisons each).
    return per_window(lambda i, w: [f"max(CASE WHEN {w} THEN CASE WHEN {HIT} THEN 1.0 ELSE 0.0 END END) AS y{i}"])
def null_when_inactive_bare():
    # As above with the event test's own 0/1 for the rows in the window.
    return per_window(lambda i, w: [f"max(CASE WHEN {w} THEN {HIT} END) AS y{i}"])
def period_once():
    # The window computed once per row in a subquery that SQLite runs as a
    # co-routine (LIMIT keeps it from being flattened into the aggregate).
    cols = [f"max(CASE p WHEN {i} THEN h END) AS y{i}" for i in range(len(W))]
    return (f"SELECT community, unit, {', '.join(cols)} FROM (SELECT v.community, v.unit, "
            f"{period_case()} AS p, CASE WHEN {HIT} THEN 1.0 ELSE 0.0 END AS h FROM events v WHERE {SPAN} "
            f"ORDER BY v.community, v.unit LIMIT -1) GROUP BY community, unit")


SHAPES = {
    "y NULL when inactive, one aggregate per window": null_when_inactive,
    "y NULL when inactive, the test's 0/1 without CASE": null_when_inactive_bare,
    "period once per row (co-routine), one aggregate per window": period_once,
    "current (2 bounds x 2 aggregates x 5 windows)": current,
    "scan and GROUP BY only (count)": scan_only,
    "one aggregate per window (code 0/1/2)": code_per_window,
    "period by binary CASE, GROUP BY community, unit, period": group_by_period,
    "period by binary CASE, sum(DISTINCT code)": distinct_code,
}


def main():
    con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    con.execute("PRAGMA cache_size = -200000")
    shapes = {k: v() for k, v in SHAPES.items() if not ONLY or any(o in k for o in ONLY)}
    for name, sql in shapes.items():
        plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql)]
        print(f"{name}: {plan}", file=sys.stderr)
    con.execute(f"SELECT count(*) FROM ({scan_only()})").fetchone()  # warm the cache
    times = {k: [] for k in shapes}
    cpu = {k: [] for k in shapes}
    rows = {}
    for _ in range(RUNS):
        for name, sql in shapes.items():
            t, c = time.perf_counter(), time.process_time()
            rows[name] = len(con.execute(sql).fetchall())
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    # CPU time (user + system of this process) beside the wall-clock time:
    # on a shared machine the wall clock mostly measures the others.
    print("| shape | rows | wall min / median / max | CPU min / median / max |")
    print("| --- | --- | --- | --- |")
    for name, ts in times.items():
        cs = cpu[name]
        print(f"| {name} | {rows[name]} | {min(ts):.2f} / {statistics.median(ts):.2f} / {max(ts):.2f} s "
              f"| {min(cs):.2f} / {statistics.median(cs):.2f} / {max(cs):.2f} s |")


if __name__ == "__main__":
    main()
