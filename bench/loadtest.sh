#!/usr/bin/env bash
# `commonlab loadtest` against the release server on SQLite and on
# PostgreSQL (a database of its own, created and dropped here), the default
# mix at $RATE requests/s for $DURATION (with a researcher key, so the run
# sets up a survey campaign and its respondents answer it; the server's
# per-address survey limit is raised, since every synthetic respondent
# shares 127.0.0.1), then, when `oha` is installed,
# single-flag OFREP evaluations by `loadtest` and by `oha --rate` (open
# loop, latency corrected) at the same rate, side by side.
# Usage: bash bench/loadtest.sh   (RATE=200 DURATION=60s by default;
# PG=postgres://postgres@127.0.0.1:5432 the server to create the database on;
# OHA=path/to/oha if it is not on PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rate=${RATE:-200}
duration=${DURATION:-60s}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
oha=${OHA:-$(command -v oha || true)}
cargo build -q --release -p commonlab-cli
bin="$root/target/release/commonlab"
work=$(mktemp -d)
pid=
db=commonlab_loadtest_$$
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
communities=wiki-a,coop-b,social-c,hackerspace-d
tck=$(getconf CLK_TCK)
cpu() { awk '{print ($14 + $15) / '"$tck"'}' "/proc/$pid/stat"; }

run_on() {
  local name=$1 url=$2
  export COMMONLAB_DATABASE_URL=$url
  "$bin" flags import "$here/flags.json" --reason benchmark >/dev/null
  local key research
  key=$("$bin" keys create --role sdk --name bench --reason benchmark | tail -n 1)
  research=$("$bin" keys create --role researcher --name bench-research --reason benchmark | tail -n 1)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  COMMONLAB_SURVEY_RATE_PER_IP_PER_MINUTE=1000000 \
    "$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/$name.key" >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local base="http://127.0.0.1:$port"
  # Warm up (connections, caches).
  "$bin" loadtest --url "$base" --key "$key" --rate 50 --duration 2s --seed 99 >/dev/null
  echo "### $name: default mix, $rate/s for $duration (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  local before after
  before=$(cpu)
  "$bin" loadtest --url "$base" --key "$key" --research-key "$research" --rate "$rate" \
    --duration "$duration" --communities "$communities"
  after=$(cpu)
  echo "server CPU: $(python3 -c "print(f'{$after-$before:.1f}')") s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ -x "$oha" ] && [ "$name" = sqlite ]; then
    local flag=thanks-button
    echo "### $name: single-flag evaluations, $rate/s for $duration, loadtest then oha"
    "$bin" loadtest --url "$base" --key "$key" --rate "$rate" --duration "$duration" \
      --mix single=1 --flag "$flag" --communities "$communities"
    "$oha" --no-tui -z "$duration" -q "$rate" --latency-correction -m POST \
      -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
      -d '{"context":{"targetingKey":"load-1","community":"coop-b"}}' \
      "$base/ofrep/v1/evaluate/flags/$flag"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

run_on sqlite "sqlite://$work/bench.db"
psql "$pg/postgres" -qc "CREATE DATABASE $db" >/dev/null
run_on postgres "$pg/$db"
[ -x "$oha" ] || echo "oha not installed: the comparison was skipped"
true
