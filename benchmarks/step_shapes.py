#!/usr/bin/env python
"""What distinct batch shapes cost the compiled training step (issue 19's "fewer distinct shapes").

    python benchmarks/step_shapes.py --openblas [--kernel]

On the realistic workload (`vocab32k` model, 64 long-tail pairs, batch 4) it counts the distinct
micro-batch shapes of one epoch per layout, then times the trainer's own compiled step
(`Trainer._build_step`, the optimizer update included) on micro-batches of the packed layout:

- *new shape*: the first call on a shape (trace + compile + run), as nearly every step of an epoch is
  when almost every micro-batch has a shape of its own;
- *same shape again*: the same micro-batch once more (the compiled graph reused);
- *eager*: the same micro-batch with `mx.disable_compile()` (no tracing at all).

If a new shape cost much more than a reused one, bucketing row lengths into fewer shapes would pay;
if eager were as fast, compiling would not be worth its traces. Interleaved over `--repeats` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import reexec_with_openblas, spread  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openblas", action="store_true")
    ap.add_argument("--kernel", action="store_true")
    ap.add_argument("--workdir", default=os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench"))
    ap.add_argument("--batches", type=int, default=6, help="micro-batches timed per round")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.openblas:
        reexec_with_openblas()
    import mlx.core as mx

    import workload
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.batching import epoch_order
    from mlx_dpo.train.layout import SHARED, packed
    from mlx_dpo.train.trainer import Trainer

    work = Path(a.workdir)
    q4 = workload.build_model(work / "models", "vocab32k", 4)
    data = work / "data" / "realistic-vocab32k-64" / "train.jsonl"
    if not data.exists():
        workload.write_jsonl(workload.make_longtail_pairs(q4, 64, seed=0), data)
    tmp = Path(tempfile.mkdtemp())
    cfg = TrainConfig(model=str(q4), data=str(data), output=str(tmp / "run"), cache_dir=str(tmp / "cache"),
                      batch_size=4, max_length=2048, lr_schedule="constant", max_grad_norm=None,
                      cpu_dequant_matmul=not a.kernel).validate()
    tr = Trainer(cfg).setup()
    pairs = tr.session.train_pairs

    shapes = {}
    for name, lay in (("padded, shared prompt", SHARED), ("packed 1024", packed(1024))):
        seen, n = set(), 0
        for idx in epoch_order(pairs, 4, 0, 0, lay.sort_key):
            for b in lay.parts(pairs, idx, 4, 32):
                n += 1
                seen.add(tuple(tuple(v.shape) for v in b.to_mx().values()))
        shapes[name] = {"micro_batches": n, "distinct_shapes": len(seen)}
        print(f"{name}: {n} micro-batches per epoch, {len(seen)} distinct shapes", flush=True)

    micro = [mb for s in range(1, tr.total_steps + 1) for mb in tr.micro_batches(s)]
    model = tr.model
    times = {"new shape": [], "same shape again": [], "eager": []}
    # One untimed call first: the process's one-time costs (allocations, first kernels) are no shape's.
    warm = tr._build_step()
    mx.eval(warm(micro[-1].inputs, None, True)[0], model.trainable_parameters(), tr.optimizer.state)
    ratios = {"new shape / same shape again": [], "eager / same shape again": []}
    pos = 0
    for rep in range(a.repeats):
        step = tr._build_step()  # a fresh compiled function: no graph from an earlier round
        for _ in range(a.batches):
            mb = micro[pos % len(micro)]
            pos += 1
            for kind in ("new shape", "same shape again", "eager"):
                if kind == "eager":
                    mx.disable_compile()
                t = time.perf_counter()
                stats, grad, _ = step(mb.inputs, None, True)
                mx.eval(stats, model.trainable_parameters(), tr.optimizer.state)
                times[kind].append(time.perf_counter() - t)
                if kind == "eager":
                    mx.enable_compile()
            ratios["new shape / same shape again"].append(times["new shape"][-1] / times["same shape again"][-1])
            ratios["eager / same shape again"].append(times["eager"][-1] / times["same shape again"][-1])
        print(f"round {rep}: " + ", ".join(f"{k} {statistics.median(v[-a.batches:]):.2f}s" for k, v in times.items()),
              flush=True)

    def stat(v):
        return {**spread(v), "n": len(v)}

    res = {"path": "quantized_matmul kernel" if a.kernel else "CPU dequantize path",
           "blas": os.environ.get("LD_PRELOAD", "bundled"), "shapes_per_epoch": shapes,
           "step_s": {k: stat(v) for k, v in times.items()},
           "ratios_per_micro_batch": {k: stat(v) for k, v in ratios.items()}}
    out = Path(a.out or HERE / f"results-step-shapes-{'kernel' if a.kernel else 'cpu'}.json")
    out.write_text(json.dumps(res, indent=1))
    for k, v in res["step_s"].items():
        print(f"| {k} | {v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}] s |")
    for k, v in res["ratios_per_micro_batch"].items():
        print(f"| {k} | {v['median']:.2f}x [{v['min']:.2f}-{v['max']:.2f}] |")


if __name__ == "__main__":
    main()
