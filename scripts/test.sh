#!/usr/bin/env bash
# Set up a virtualenv with the dev extras (idempotent) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install only when pyproject.toml changed since the last install (its hash is kept in a stamp file).
STAMP=.venv/.installed-dev
HASH=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
    if [ -f "$STAMP" ]; then
        echo "test.sh: pyproject.toml changed: updating the packages in .venv (quiet until done)" >&2
    else
        echo "test.sh: first run: installing mlx-dpo with its test extras (PyTorch CPU, PEFT, pytest) into .venv" \
             "(about 1.3 GB in all; several minutes, quiet until done)" >&2
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    echo "$HASH" > "$STAMP"
fi
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
