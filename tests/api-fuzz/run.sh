#!/usr/bin/env bash
# Property-based test of the whole JSON API against its OpenAPI document:
# schemathesis (PyPI, pinned in requirements.txt, installed in a venv under
# target/) generates requests for every operation of
# /api/v1/openapi.json, valid and invalid ones, and sends them with an
# admin key to the real `commonlab serve` on a fresh SQLite database on
# 127.0.0.1. Fails on any 5xx (check `not_a_server_error`), on an answer
# whose body is not what the document says of its status and media type
# (check `response_schema_conformance`), on a status the document does
# not give the operation (check `status_code_conformance`), or when the
# server dies. Bounded: COMMONLAB_API_FUZZ_EXAMPLES examples per operation
# (default 40) and COMMONLAB_API_FUZZ_SECONDS for the whole run (default
# 180; schemathesis keeps fuzzing until it is spent). A flag set, a
# running trial, a survey and a campaign are stored first and
# schemathesis.toml names them in path parameters, so requests reach past
# the 404s. Writes nothing into
# the source tree. Run by .ci/run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
examples=${COMMONLAB_API_FUZZ_EXAMPLES:-40}
seconds=${COMMONLAB_API_FUZZ_SECONDS:-180}

venv="$root/target/api-fuzz-venv"
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

export COMMONLAB_DATABASE_URL="sqlite://$work/fuzz.db"
reason="api fuzz test"
"$bin" flags import "$root/experiments/flags.json" --reason "$reason" >/dev/null
"$bin" experiments create "$root/experiments/thanks-button.toml" --reason "$reason" >/dev/null
"$bin" experiments start thanks-button --reason "$reason" >/dev/null 2>&1
"$bin" surveys publish "$root/surveys/sus.toml" --reason "$reason" >/dev/null
"$bin" surveys campaign create fuzz-wave --instrument sus --version 1 --wave w1 \
  --opens 2026-01-01T00:00:00Z --closes 2099-12-31T00:00:00Z --reason "$reason" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" \
  --admin-key-file "$work/admin.key" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz')" 2>/dev/null; then break; fi
  sleep 0.1
done
python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz')" \
  || { cat "$work/server.err" >&2; exit 1; }
key=$(tr -d '\n' <"$work/admin.key")

# From the temporary folder: schemathesis' report directory and example
# database stay out of the tree.
status=0
(
  cd "$work"
  timeout "$((seconds + 60))" "$venv/bin/st" --config-file "$here/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --url "http://127.0.0.1:$port" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --max-time "$seconds" \
    --workers 1 \
    --generation-with-security-parameters false \
    --request-timeout 10 \
    --generation-database none \
    --seed "${COMMONLAB_API_FUZZ_SEED:-16}" \
    --no-color
) || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "the server died during the run:" >&2
  cat "$work/server.err" >&2
  exit 1
fi
if grep -q '"panicked"\|panicked at' "$work/server.err" "$work/server.out"; then
  echo "the server panicked during the run:" >&2
  grep -h 'panicked' "$work/server.err" "$work/server.out" >&2
  status=1
fi
kill -TERM "$server_pid"
wait "$server_pid" || { echo "server did not shut down cleanly" >&2; status=1; }
server_pid=
exit "$status"
