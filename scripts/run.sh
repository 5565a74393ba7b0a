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
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
if [ "$#" -gt 0 ]; then exec .venv/bin/mlx-dpo "$@"; fi

export HF_HUB_OFFLINE=1
MODEL=sample_data/demo-model
if [ ! -f "$MODEL/config.json" ]; then
    # No bundled demo model in this checkout: build a tiny random one offline (pipeline demo only).
    MODEL=.demo/tiny-model
    [ -f "$MODEL/config.json" ] || .venv/bin/python -c "from mlx_dpo.testing import build_tiny_model; build_tiny_model('$MODEL')"
fi
DATA=sample_data/train.jsonl
VALID=sample_data/valid.jsonl
if [ -t 0 ] && [ -t 1 ]; then
    exec .venv/bin/mlx-dpo tui --model "$MODEL" --data "$DATA" --valid-data "$VALID"
fi
RUN=runs/demo-$(date +%Y%m%d-%H%M%S)
.venv/bin/mlx-dpo validate "$DATA" --model "$MODEL"
.venv/bin/mlx-dpo train --model "$MODEL" --data "$DATA" --valid-data "$VALID" --output "$RUN" \
    --epochs 1 --batch-size 8 --learning-rate 1e-3 --max-length 512
.venv/bin/mlx-dpo eval --model "$MODEL" --adapter "$RUN" --data "$VALID"
echo "adapter and metrics in $RUN; chat with it: ./scripts/run.sh chat --model $MODEL --adapter $RUN"
