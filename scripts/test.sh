#!/usr/bin/env bash
# Set up a virtualenv with the dev extras (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
