#!/usr/bin/env bash
# Setup for bench/ofrep-callgrind.sh (SETUP=bench/trigger-setup.sh): an
# open campaign of surveys/nps.toml with the survey-trigger flag
# `survey-prompt` and no invitations, so that bulk evaluations answer it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
"$bin" surveys publish "$here/../surveys/nps.toml" --reason benchmark >/dev/null
"$bin" surveys campaign create bench-nps --instrument nps --version 1 --wave pulse \
  --opens 2026-01-01T00:00:00Z --closes 2099-01-01T00:00:00Z --trigger-flag survey-prompt \
  --reason benchmark >/dev/null
