#!/usr/bin/env bash
# End-to-end test with the official OpenFeature Python SDK + OFREP provider
# against the real `commonlab` binary on a fresh SQLite database.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/target/sdk-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"

cargo build -q -p commonlab-cli
bin="$root/target/debug/commonlab"
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export COMMONLAB_DATABASE_URL="sqlite://$work/sdk.db"
"$bin" flags import "$here/flags.json" --reason "sdk end-to-end test" >/dev/null
key=$("$bin" keys create --role sdk --name sdk-e2e --reason "sdk end-to-end test" | tail -n 1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/readyz')" 2>/dev/null; then break; fi
  sleep 0.1
done
# An in-app survey: a campaign with a survey-trigger flag, member-7 invited
# (the links need the study key the server created).
"$bin" surveys publish "$root/surveys/nps.toml" --reason "sdk end-to-end test" >/dev/null
"$bin" surveys campaign create sdk-nps --instrument nps --version 1 --wave pulse \
  --opens 2026-01-01T00:00:00Z --closes 2099-01-01T00:00:00Z --trigger-flag survey-prompt \
  --reason "sdk end-to-end test" >/dev/null
echo member-7 > "$work/units.txt"
"$bin" surveys links sdk-nps --units "$work/units.txt" --study-key-file "$work/study.key" \
  --reason "sdk end-to-end test" >/dev/null
COMMONLAB_URL="http://127.0.0.1:$port" COMMONLAB_SDK_KEY="$key" "$venv/bin/python" "$here/test_ofrep_sdk.py"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
if [ "$status" -ne 0 ]; then
  echo "server did not shut down cleanly (exit $status)" >&2
  cat "$work/server.err" >&2
  exit 1
fi
