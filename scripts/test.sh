#!/usr/bin/env bash
# Install digitlab with its test dependencies (versions pinned in constraints.txt), install
# Chromium for the browser test and a CJK font for the Chinese figures if they are missing, then
# run ruff and the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -k datasets
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet -c constraints.txt -e ".[test,onnx,tensorboard]"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian's chromium and chromium-driver for the browser test" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! fc-list 2>/dev/null | grep -qi "CJK"; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian's fonts-noto-cjk for the Chinese figures" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq fonts-noto-cjk >/dev/null
  # matplotlib's cached font list predates the font: build it again
  python3 -c "from matplotlib import font_manager as fm; fm._load_fontmanager(try_read_cache=False)" 2>/dev/null || true
fi

python3 -m ruff check src tests benchmarks
python3 -m pytest "$@"
