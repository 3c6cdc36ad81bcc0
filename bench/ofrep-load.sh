#!/usr/bin/env bash
# OFREP load test on loopback: the release server on a fresh SQLite database,
# wrk (Debian package) at 1, 16 and 64 connections for $DURATION seconds each.
# Prints requests/s, p50/p99 latency and server CPU time per request (from
# /proc/PID/stat). Usage: bash bench/ofrep-load.sh   (DURATION=10 by default;
# TRIAL=1 runs the same load with a running hash trial on the flag, so every
# request is assigned and first exposures are logged).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=${DURATION:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build -q --release -p commonlab-cli
bin="$root/target/release/commonlab"
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export COMMONLAB_DATABASE_URL="sqlite://$work/bench.db"
"$bin" flags import "$here/flags.json" --reason benchmark >/dev/null
export COMMONLAB_KEY=$("$bin" keys create --role sdk --name bench --reason benchmark | tail -n 1)
if [ "${TRIAL:-0}" = 1 ]; then
  "$bin" experiments create "$here/trial.toml" --reason benchmark >/dev/null
  "$bin" experiments start bench-thanks --reason benchmark >/dev/null
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"
# Warm up.
wrk -t1 -c4 -d2s -s "$here/ofrep.lua" "$url" >/dev/null
tck=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
echo "| connections | requests/s | p50 | p99 | server CPU per request |"
echo "| --- | --- | --- | --- | --- |"
for c in 1 16 64; do
  t=1; [ "$c" -gt 1 ] && t=2
  before=$(cpu)
  out=$(wrk -t"$t" -c"$c" -d"${duration}s" --latency -s "$here/ofrep.lua" "$url")
  after=$(cpu)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errs=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  [ -n "$errs" ] && { echo "non-2xx responses: $errs" >&2; echo "$out" >&2; exit 1; }
  us=$(python3 -c "print(f'{($after-$before)/$tck/$reqs*1e6:.1f} µs')")
  echo "| $c | $rps | $p50 | $p99 | $us |"
done
