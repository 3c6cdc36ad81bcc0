#!/usr/bin/env bash
# Ingestion load test on loopback: the release server, wrk posting batches of
# $BATCH (500) events with random ids for $DURATION (10) s at 4 and 16
# connections. DB=sqlite (default, a fresh file) or DB=postgres (a fresh
# schema in $COMMONLAB_TEST_POSTGRES_URL's database). Prints events/s and
# request latency. Usage: bash bench/ingest-load.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=${DURATION:-10}
export BATCH=${BATCH:-500}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build -q --release -p commonlab-cli
bin="$root/target/release/commonlab"
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
export COMMONLAB_KEY=$("$bin" keys create --role sdk --name bench | tail -n 1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'body_limit_bytes = 4194304\n' > "$work/commonlab.toml"
"$bin" --config "$work/commonlab.toml" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
echo "| store | connections | events/s | p50 | p99 |"
echo "| --- | --- | --- | --- | --- |"
for c in 4 16; do
  out=$(wrk -t2 -c"$c" -d"${duration}s" --latency -s "$here/ingest.lua" "http://127.0.0.1:$port")
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  [ -n "$errs" ] && { echo "non-2xx responses: $errs" >&2; echo "$out" >&2; exit 1; }
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  eps=$(python3 -c "print(f'{$rps*$BATCH:,.0f}')")
  echo "| ${DB:-sqlite} | $c | $eps | $p50 | $p99 |"
done
