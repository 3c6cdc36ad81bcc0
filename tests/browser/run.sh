#!/usr/bin/env bash
# The survey pages and the web console in a real browser: headless Chromium driven over
# WebDriver (the commonlab-browser-test binary, fantoccini) with axe-core,
# against the real `commonlab serve` on a fresh SQLite database. Installs
# Chromium, chromedriver (Debian) and axe-core (npm) when missing, and FAILS
# when it cannot run: it is never skipped. Run by .ci/run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null

# axe-core from npm, pinned in package.json, installed under target/ (not
# the source tree).
node_dir="$root/target/browser-node"
axe="$node_dir/node_modules/axe-core/axe.min.js"
if [ ! -f "$axe" ] || ! cmp -s "$here/package.json" "$node_dir/package.json"; then
  mkdir -p "$node_dir"
  cp "$here/package.json" "$node_dir/package.json"
  (cd "$node_dir" && npm install --no-audit --no-fund --silent)
fi
test -f "$axe"

cargo build -q -p commonlab-cli -p commonlab-browser-test
bin="$root/target/debug/commonlab"
driver_bin="$root/target/debug/commonlab-browser-test"
work=$(mktemp -d)
server_pid=
chromedriver_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$chromedriver_pid" ]; then kill "$chromedriver_pid" 2>/dev/null || true; wait "$chromedriver_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('$1')" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 did not answer" >&2
  return 1
}

export COMMONLAB_DATABASE_URL="sqlite://$work/browser.db"
# Plain HTTP on the loopback: the console's cookies cannot be Secure here.
export COMMONLAB_CONSOLE_SECURE_COOKIE=false
port=$(free_port)
COMMONLAB_CONSOLE_SECURE_COOKIE=false "$bin" serve --listen "127.0.0.1:$port" --study-key-file "$work/study.key" \
  --admin-key-file "$work/admin.key" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
wait_for "http://127.0.0.1:$port/readyz" || { cat "$work/server.err" >&2; exit 1; }

driver_port=$(free_port)
chromedriver --port="$driver_port" >"$work/chromedriver.log" 2>&1 &
chromedriver_pid=$!
wait_for "http://127.0.0.1:$driver_port/status" || { cat "$work/chromedriver.log" >&2; exit 1; }

# Screenshots of the pages (test artefacts, not committed: target/ is ignored).
shots="$root/target/browser-screenshots"
mkdir -p "$shots"
STUDY_KEY_FILE="$work/study.key" ADMIN_KEY_FILE="$work/admin.key" SCREENSHOT_DIR="$shots" BASE_URL="http://127.0.0.1:$port" \
  WEBDRIVER_URL="http://127.0.0.1:$driver_port" AXE_JS="$axe" "$driver_bin"

kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
if [ "$status" -ne 0 ]; then
  echo "server did not shut down cleanly (exit $status)" >&2
  cat "$work/server.err" >&2
  exit 1
fi
