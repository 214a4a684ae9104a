#!/usr/bin/env bash
# Install digitlab with its test dependencies (versions pinned in constraints.txt), install
# Chromium for the browser test if it is missing, then run ruff and the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -k datasets
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet -c constraints.txt -e ".[test,onnx]"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian's chromium and chromium-driver for the browser test" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m ruff check src tests benchmarks
python3 -m pytest "$@"
