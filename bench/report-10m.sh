#!/usr/bin/env bash
# Times `commonlab report bench-report` (bench/report-trial.toml: ten
# metrics over the metric benchmark's 10M events and 200,000 units) on
# SQLite and PostgreSQL, RUNS times each, alternating the stores
# (docs/benchmarks.md, "A report of ten metrics (issue 14)").
#
# First: `cargo bench -p commonlab-store --bench metrics` (generates the
# data and stores the trial), then `cargo build --release -p commonlab-cli`.
#
#   bench/report-10m.sh [BIN] [RUNS]
#
# BIN defaults to target/release/commonlab. Prints one line per run: store,
# wall seconds, user and system CPU seconds of the commonlab process.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/commonlab}
RUNS=${2:-3}
PG=${COMMONLAB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
case "$PG" in *\?*) PG="$PG&options=-c%20search_path%3Dbench_metrics" ;; *) PG="$PG?options=-c%20search_path%3Dbench_metrics" ;; esac
SQLITE="sqlite://$PWD/target/bench-data/metrics.db"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for store in sqlite postgres; do
    url=$SQLITE; [ "$store" = postgres ] && url=$PG
    /usr/bin/time -f "$store run $run: %e s wall, %U s user, %S s system" \
      env -u COMMONLAB_CONFIG COMMONLAB_DATABASE_URL="$url" \
      "$BIN" report bench-report --as-of 2027-03-01T00:00:00Z --out "$OUT/$store" >/dev/null
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
