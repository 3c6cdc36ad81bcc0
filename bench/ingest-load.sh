#!/usr/bin/env bash
# Ingestion load test on loopback: the release server, wrk posting batches of
# $BATCH (500) events with random ids for $DURATION (10) s at 4 and 16
# connections. DB=sqlite (default, a fresh file) or DB=postgres (a fresh
# schema in $COMMONLAB_TEST_POSTGRES_URL's database). Prints events/s,
# request latency, the CPU seconds the server and wrk used per second of the
# run, and the load average before each level; at the end it checks the rows
# stored against the events acknowledged and that no event was a duplicate
# (every random id unique). Builds into $CARGO_TARGET_DIR (default
# target/). Usage: bash bench/ingest-load.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=${DURATION:-10}
export BATCH=${BATCH:-500}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build -q --release -p commonlab-cli
bin="${CARGO_TARGET_DIR:-$root/target}/release/commonlab"
work=$(mktemp -d)
pid=
pg=${COMMONLAB_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null
  [ "${DB:-sqlite}" = postgres ] && psql -q "$pg" -c "DROP SCHEMA IF EXISTS bench_ingest CASCADE" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
if [ "${DB:-sqlite}" = postgres ]; then
  psql -q "$pg" -c "DROP SCHEMA IF EXISTS bench_ingest CASCADE; CREATE SCHEMA bench_ingest" >/dev/null
  export COMMONLAB_DATABASE_URL="$pg?options=-c%20search_path%3Dbench_ingest"
else
  export COMMONLAB_DATABASE_URL="sqlite://$work/bench.db"
fi
export COMMONLAB_KEY=$("$bin" keys create --role sdk --name bench --reason benchmark | tail -n 1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'body_limit_bytes = 4194304\n' > "$work/commonlab.toml"
"$bin" --config "$work/commonlab.toml" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }  # utime+stime(+children), ticks
tck=$(getconf CLK_TCK)
echo "| store | connections | events/s | p50 | p99 | server CPU s/s | wrk CPU s/s | load avg (1 min) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for c in ${CONNECTIONS:-4 16}; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  s0=$(cpu "$pid")
  wrk -t2 -c"$c" -d"${duration}s" --latency -s "$here/ingest.lua" "http://127.0.0.1:$port" > "$work/wrk.out" &
  wpid=$!
  sleep 1
  w0=$(cpu "$wpid" 2>/dev/null || echo 0)
  w1=$w0
  while kill -0 "$wpid" 2>/dev/null; do w1=$(cpu "$wpid" 2>/dev/null || echo "$w1"); sleep 0.5; done
  wait "$wpid"
  s1=$(cpu "$pid")
  out=$(cat "$work/wrk.out")
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  [ -n "$errs" ] && { echo "non-2xx responses: $errs" >&2; echo "$out" >&2; exit 1; }
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  eps=$(python3 -c "print(f'{$rps*$BATCH:,.0f}')")
  scpu=$(python3 -c "print(f'{($s1-$s0)/$tck/$duration:.2f}')")
  # wrk's CPU from 1 s into the run to its end (its start-up excluded).
  wcpu=$(python3 -c "print(f'{($w1-$w0)/$tck/max($duration-1.5,0.5):.2f}')")
  echo "| ${DB:-sqlite} | $c | $eps | $p50 | $p99 | $scpu | $wcpu | $load |"
done
metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
stored=$(echo "$metrics" | awk '$1=="commonlab_events_stored_total" {print $2}')
dups=$(echo "$metrics" | awk '$1=="commonlab_events_duplicate_total" {print $2}')
if [ "${DB:-sqlite}" = postgres ]; then
  rows=$(psql -qtA "$pg" -c "SELECT count(*) FROM bench_ingest.events")
else
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM events').fetchone()[0])" "$work/bench.db")
fi
echo
# Every acknowledged event is stored, none was a duplicate (the ids are
# unique), and at most the batches in flight when wrk stopped (committed,
# never acknowledged) are stored on top.
inflight=0; for c in ${CONNECTIONS:-4 16}; do inflight=$((inflight + c * BATCH)); done
echo "rows: $rows, acknowledged (stored counter): $stored, duplicates: $dups"
[ "$dups" = 0 ] && [ "$rows" -ge "$stored" ] && [ "$rows" -le $((stored + inflight)) ] ||
  { echo "row count check failed" >&2; exit 1; }
