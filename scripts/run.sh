#!/usr/bin/env bash
# Set up a virtualenv (idempotent) and run mlx-dpo.
#   ./scripts/run.sh            opens the app on the sample data (in a terminal), offline
#   ./scripts/run.sh ARGS...    runs `mlx-dpo ARGS...` (e.g. train, eval, chat, export)
# Without a terminal (CI, pipes) the no-argument form runs a scripted demo instead:
# validate the sample pairs, train an adapter, evaluate it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install only when pyproject.toml changed since the last install (its hash is kept in a stamp file).
STAMP=.venv/.installed
HASH=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ "$(cat "$STAMP" 2>/dev/null)" != "$HASH" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e .
    echo "$HASH" > "$STAMP"
fi
if [ "$#" -gt 0 ]; then exec .venv/bin/mlx-dpo "$@"; fi

export HF_HUB_OFFLINE=1
# The bundled demo chat model and its preference pairs (tasks with checkable answers).
MODEL=sample_data/demo-model
DATA=sample_data/demo_pairs.jsonl
VALID=sample_data/demo_valid.jsonl
if [ -t 0 ] && [ -t 1 ]; then
    exec .venv/bin/mlx-dpo tui --model "$MODEL" --data "$DATA" --valid-data "$VALID"
fi
RUN=runs/demo-$(date +%Y%m%d-%H%M%S)
DEMO=(--beta 0.5 --max-length 64)
.venv/bin/mlx-dpo validate "$DATA" --model "$MODEL"
.venv/bin/mlx-dpo train --model "$MODEL" --data "$DATA" --valid-data "$VALID" --output "$RUN" \
    --iters 24 --batch-size 2 --learning-rate 5e-4 --lora-rank 4 "${DEMO[@]}"
.venv/bin/mlx-dpo eval --model "$MODEL" --adapter "$RUN" --data "$VALID" --generate --limit 30 "${DEMO[@]}"
echo "adapter and metrics in $RUN; chat with it: ./scripts/run.sh chat --adapter $RUN"
