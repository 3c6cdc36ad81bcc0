#!/usr/bin/env bash
# Instructions per OFREP request of one or more release builds, counted by
# callgrind (not timed, so a shared machine does not blur them). Usage:
#   bash bench/ofrep-callgrind.sh base=BASE_BIN new=NEW_BIN
# Each binary serves a fresh SQLite database (default settings, log level
# info); wrk warms it up for 3 s at 2 connections, the counters are zeroed,
# then wrk runs DURATION seconds (default 10) and the instructions counted
# are divided by the requests wrk completed. SCRIPT picks the wrk script
# (default bench/ofrep.lua, single evaluations; bench/ofrep-bulk.lua for
# bulk). SETUP, when set, is run after the flags are imported with the
# binary as $1 and the database URL in COMMONLAB_DATABASE_URL (e.g.
# bench/trigger-setup.sh: a campaign with a survey-trigger flag).
# KEEP=DIR keeps each build's
# profile of the measured run as DIR/NAME.cg.out (for
# `callgrind_annotate --inclusive=yes DIR/NAME.cg.out`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
duration=${DURATION:-10}
script=${SCRIPT:-$here/ofrep.lua}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v callgrind_control >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
echo "| build | requests | instructions per request |"
echo "| --- | --- | --- |"
for arg in "$@"; do
  name=${arg%%=*}; bin=${arg#*=}; dir="$work/$name"; mkdir -p "$dir"
  url="sqlite://$dir/bench.db"
  COMMONLAB_DATABASE_URL=$url "$bin" flags import "$here/flags.json" --reason benchmark >/dev/null
  [ -n "${SETUP:-}" ] && COMMONLAB_DATABASE_URL=$url bash "$SETUP" "$bin"
  key=$(COMMONLAB_DATABASE_URL=$url "$bin" keys create --role sdk --name bench --reason benchmark | tail -n 1)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$dir" && COMMONLAB_DATABASE_URL=$url exec valgrind --tool=callgrind \
    --callgrind-out-file="$dir/cg.out" "$bin" serve --listen "127.0.0.1:$port" \
    --study-key-file "$dir/study.key" >/dev/null 2>"$dir/err") &
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
  COMMONLAB_KEY=$key wrk -t1 -c2 -d3s -s "$script" "http://127.0.0.1:$port" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  out=$(COMMONLAB_KEY=$key wrk -t1 -c2 -d"${duration}s" -s "$script" "http://127.0.0.1:$port")
  callgrind_control -d "$pid" >/dev/null  # writes cg.out.1: the measured run only
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  sleep 1
  ir=$(cat "$dir"/cg.out.* | awk '/^summary:/ {s += $2} END {print s}')
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cat "$dir"/cg.out.* > "$KEEP/$name.cg.out"; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  python3 -c "print(f'| $name | $reqs | {$ir/$reqs:,.0f} |')"
done
