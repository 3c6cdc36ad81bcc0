#!/usr/bin/env bash
# Builds of the server side by side under the OFREP load of
# bench/ofrep-load.sh: e.g. a base commit and the working tree, measured in
# one run on the same (shared) machine so that their figures can be
# compared. Usage:
#   bash bench/ofrep-compare.sh base=BASE_BIN new=NEW_BIN [name=BIN ...]
# Each binary serves its own fresh SQLite database (release binaries of
# `commonlab`, default settings, log level info). All run throughout and
# are measured in turn, ROUNDS times (default 2): closed loop with wrk at
# each of CONNECTIONS (default "16") for DURATION seconds (default 10; 2 wrk
# threads, 1 at one connection; 1,000 rotating contexts), then open loop with oha at RATE requests/s (default
# 20,000) for DURATION seconds with latency correction (no coordinated
# omission; one context; OPEN_LOOP=0 skips it, and the need for oha). Prints a Markdown table: requests/s, p50, p99,
# and server CPU per request (utime+stime from /proc/PID/stat over the run
# divided by the requests completed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 name=BIN [name=BIN ...]" >&2; exit 2; }
rounds=${ROUNDS:-2}
duration=${DURATION:-10}
rate=${RATE:-20000}
connections=${CONNECTIONS:-16}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
open_loop_on=${OPEN_LOOP:-1}
[ "$open_loop_on" = 0 ] || command -v oha >/dev/null || { echo "oha is missing: cargo install oha (or OPEN_LOOP=0)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
tck=$(getconf CLK_TCK)

# start NAME BIN: a server on a fresh database; sets NAME_port, NAME_pid, NAME_key
# (NAME: letters, digits and _).
start() {
  local name=$1 bin=$2 dir="$work/$1"
  mkdir -p "$dir"
  local url="sqlite://$dir/bench.db"
  COMMONLAB_DATABASE_URL=$url "$bin" flags import "$here/flags.json" --reason benchmark >/dev/null
  local key
  key=$(COMMONLAB_DATABASE_URL=$url "$bin" keys create --role sdk --name bench --reason benchmark | tail -n 1)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$dir" && COMMONLAB_DATABASE_URL=$url exec "$bin" serve --listen "127.0.0.1:$port" \
    --study-key-file "$dir/study.key" >/dev/null 2>"$dir/err") &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  printf -v "${name}_port" %s "$port"
  printf -v "${name}_pid" %s "$pid"
  printf -v "${name}_key" %s "$key"
}

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# closed NAME C: wrk at C connections.
closed() {
  local name=$1 c=$2 port pid key t=2
  port=${name}_port; port=${!port}; pid=${name}_pid; pid=${!pid}; key=${name}_key; key=${!key}
  local before after out
  before=$(cpu "$pid")
  [ "$c" -gt 1 ] || t=1
  out=$(COMMONLAB_KEY=$key wrk -t"$t" -c"$c" -d"${duration}s" --latency -s "$here/ofrep.lua" "http://127.0.0.1:$port")
  after=$(cpu "$pid")
  local reqs rps p50 p99 errs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  [ -n "$errs" ] && { echo "non-2xx responses: $errs" >&2; echo "$out" >&2; exit 1; }
  local us
  us=$(python3 -c "print(f'{($after-$before)/$tck/$reqs*1e6:.1f} µs')")
  echo "| $round | $name | wrk, $c connections | $rps | $p50 | $p99 | $us |"
}

# open NAME: oha at $rate requests/s.
open_loop() {
  local name=$1 port pid key
  port=${name}_port; port=${!port}; pid=${name}_pid; pid=${!pid}; key=${name}_key; key=${!key}
  local before after json
  before=$(cpu "$pid")
  json=$(oha --no-tui --output-format json -z "${duration}s" -q "$rate" --latency-correction -c 32 \
    -m POST -H "Authorization: Bearer $key" -T application/json \
    -d '{"context":{"targetingKey":"member-42","community":"wiki-a","role":"editor"}}' \
    "http://127.0.0.1:$port/ofrep/v1/evaluate/flags/thanks-button")
  after=$(cpu "$pid")
  echo "$json" | python3 -c "
import json, sys
d = json.load(sys.stdin)
s = d['summary']; p = d['latencyPercentiles']
codes = d.get('statusCodeDistribution', {})
n = sum(codes.values())
bad = {k: v for k, v in codes.items() if k != '200'}
if bad: sys.exit(f'non-200 answers: {bad}')
cpu = ($after - $before) / $tck / n * 1e6
ms = lambda x: f'{x * 1000:.2f} ms'
print(f\"| $round | $name | oha, open loop at $rate/s | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p99'])} | {cpu:.1f} µs |\")
"
}

names=()
for arg in "$@"; do
  names+=("${arg%%=*}")
  start "${arg%%=*}" "${arg#*=}"
done
# Warm up each.
for name in "${names[@]}"; do
  port=${name}_port; key=${name}_key
  COMMONLAB_KEY=${!key} wrk -t1 -c4 -d2s -s "$here/ofrep.lua" "http://127.0.0.1:${!port}" >/dev/null
done
echo "| round | build | load | requests/s | p50 | p99 | server CPU per request |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for round in $(seq 1 "$rounds"); do
  for c in $connections; do
    for name in "${names[@]}"; do closed "$name" "$c"; done
  done
  [ "$open_loop_on" = 0 ] || for name in "${names[@]}"; do open_loop "$name"; done
done
