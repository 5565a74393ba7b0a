#!/usr/bin/env bash
# Set up a virtualenv (idempotent) and run mlx-dpo. With no arguments, run an offline demo:
# build a tiny model, validate the sample pairs, train a DPO adapter on them and evaluate it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
if [ "$#" -gt 0 ]; then exec .venv/bin/mlx-dpo "$@"; fi

# Demo. The bundled pretrained demo model is not in the repo yet, so this uses a tiny randomly
# initialised model built offline: it shows the whole pipeline working, not a useful chat model.
export HF_HUB_OFFLINE=1
DEMO=.demo
MODEL=$DEMO/tiny-model
RUN=$DEMO/run-$(date +%Y%m%d-%H%M%S)
[ -f "$MODEL/config.json" ] || .venv/bin/python -c "from mlx_dpo.testing import build_tiny_model; build_tiny_model('$MODEL')"
.venv/bin/mlx-dpo validate sample_data/train.jsonl --model "$MODEL"
.venv/bin/mlx-dpo train --model "$MODEL" --data sample_data/train.jsonl --valid-data sample_data/valid.jsonl \
    --output "$RUN" --epochs 1 --batch-size 8 --learning-rate 1e-3 --max-length 512
.venv/bin/mlx-dpo eval --model "$MODEL" --adapter "$RUN" --data sample_data/valid.jsonl
echo "adapter and metrics in $RUN"
