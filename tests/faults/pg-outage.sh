#!/usr/bin/env bash
# Fault test: PostgreSQL stops while the server ingests. The server must
# answer 503 (with Retry-After) rather than crash, and recover by itself when
# PostgreSQL returns. Run by .ci/run after the test suite (it stops and
# restarts this machine's PostgreSQL cluster).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=$(ls /etc/postgresql)
pg_up() { pg_ctlcluster --skip-systemctl-redirect "$cluster" main start >/dev/null 2>&1 || true; for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  pg_up
  psql -q "postgres://postgres@127.0.0.1:5432/test" -c "DROP SCHEMA IF EXISTS fault_outage CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
pg_up
psql -q "postgres://postgres@127.0.0.1:5432/test" -c "DROP SCHEMA IF EXISTS fault_outage CASCADE; CREATE SCHEMA fault_outage" >/dev/null
url="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dfault_outage"
cargo build -q -p commonlab-cli
bin="$root/target/debug/commonlab"
export COMMONLAB_DATABASE_URL="$url"
key=$("$bin" keys create --role sdk --name fault --reason "fault test" | tail -n 1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
n=0
send() {
  n=$((n + 1))
  local id
  id=$(python3 -c 'import uuid; print(uuid.uuid4())')
  curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X POST "http://127.0.0.1:$port/v1/events" \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "[{\"event_id\":\"$id\",\"unit\":\"m$n\",\"name\":\"x\",\"timestamp\":\"2026-01-01T00:00:00Z\"}]"
}
passed=0; failed=0
check() { if [ "$1" = "$2" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $3: got $1, expected $2" >&2; cat "$work/body" >&2 || true; fi; }
check "$(send)" 200 "before the outage"
pg_ctlcluster --skip-systemctl-redirect "$cluster" main stop -m fast >/dev/null
check "$(send)" 503 "during the outage"
grep -qi '^retry-after:' "$work/headers" && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: no Retry-After on 503" >&2; }
check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" 503 "readiness during the outage"
kill -0 "$pid" && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL: the server died" >&2; }
pg_up
ok=
for _ in $(seq 1 40); do
  if [ "$(send)" = 200 ]; then ok=1; break; fi
  sleep 0.5
done
check "${ok:-0}" 1 "recovery after the outage"
check "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" 200 "readiness after the outage"
echo "faults: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
