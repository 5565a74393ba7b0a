#!/usr/bin/env bash
# Set up a virtualenv (idempotent) and run mlx-dpo.
#   ./scripts/run.sh            opens the app on the sample data (in a terminal), offline
#   ./scripts/run.sh ARGS...    runs `mlx-dpo ARGS...` (e.g. train, eval, chat, export)
# Without a terminal (CI, pipes) the no-argument form runs a scripted demo instead:
# validate the sample pairs, train an adapter, evaluate it.
set -euo pipefail
# .venv/bin is not on PATH: commands that mlx-dpo prints (the demo's "chat with it: ...") name this script.
export MLX_DPO_LAUNCHER="$0"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install only when pyproject.toml changed since the last install (its hash is kept in a stamp file).
STAMP=.venv/.installed
HASH=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
    if [ -f "$STAMP" ]; then
        echo "run.sh: pyproject.toml changed: updating the packages in .venv (quiet until done)" >&2
    else
        echo "run.sh: first run: installing mlx-dpo with MLX, mlx-lm, transformers, pyarrow and Textual into .venv" \
             "(about 550 MB; a minute or more, quiet until done)" >&2
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
    echo "$HASH" > "$STAMP"
fi
if [ "$#" -gt 0 ]; then exec .venv/bin/mlx-dpo "$@"; fi

export HF_HUB_OFFLINE=1
# The bundled demo model and its pairs (tasks with checkable answers); paths and settings: mlx_dpo/demo.
if [ -t 0 ] && [ -t 1 ]; then
    exec .venv/bin/mlx-dpo tui --demo
fi
exec .venv/bin/mlx-dpo demo
