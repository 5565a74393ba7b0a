#!/usr/bin/env python
"""Where one mlx-dpo training step spends its time.

    python benchmarks/profile_step.py [--size small] [--quantized-matmul-kernel]

Uses the workload of run.py (build it first: the model folders and data under --workdir). Times, on
one fixed batch of the training data, each after a warm-up call (so compile time is excluded):
  forward         the layout's log-probs (backbone + head at completion positions), no grad
  backbone only   the transformer blocks without the LM head
  value_and_grad  the loss and LoRA gradients, not compiled
  step            the trainer's compiled step (value_and_grad + AdamW update)
on mlx-dpo's CPU path for 4-bit layers (dequantize + BLAS), or with --quantized-matmul-kernel on MLX's
`quantized_matmul`, the kernel the peer uses. It also reports padding:
real tokens / padded tokens of mlx-dpo's buckets vs exact-longest padding (mlx-lm-lora).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timeit(fn, reps=2):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small")
    ap.add_argument("--workdir", default=os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench"))
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--quantized-matmul-kernel", action="store_true",
                    help="switch off mlx-dpo's CPU dequantize + BLAS path (MLX's quantized_matmul, as the peer)")
    a = ap.parse_args()

    import mlx.core as mx

    import workload
    from mlx_dpo.train.batching import epoch_order, make_batch
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.logprobs import split_head
    from mlx_dpo.train.trainer import Trainer

    work = Path(a.workdir)
    q4 = workload.build_model(work / "models", a.size, 4)
    ddir = work / "data" / f"profile-{a.size}"
    workload.write_jsonl(workload.make_pairs(q4, a.pairs, seed=0), ddir / "train.jsonl")
    cfg = TrainConfig(model=str(q4), data=str(ddir / "train.jsonl"), output=str(work / "runs" / "profile"),
                      cache_dir=str(work / "runs" / "profile-cache"), batch_size=a.batch_size, max_length=1100,
                      lr_schedule="constant", max_grad_norm=None, learning_rate=1e-4, lora_scale=20.0,
                      cpu_dequant_matmul=not a.quantized_matmul_kernel)
    import shutil
    shutil.rmtree(cfg.output, ignore_errors=True)
    tr = Trainer(cfg)
    t = time.perf_counter()
    tr.setup()
    print(f"setup (load + reference precompute of {a.pairs} pairs): {time.perf_counter() - t:.1f}s")

    # Padding: mlx-dpo buckets vs exact-longest per batch (mlx-lm-lora pads chosen and rejected to one length).
    pairs = tr.session.train_pairs
    real = ours = peer = 0
    for idx in epoch_order(pairs, a.batch_size, 0, 0):
        b = make_batch(pairs, idx, a.batch_size, 32)
        real += b.n_tokens
        ours += b.inputs.size
        peer += 2 * a.batch_size * max(len(pairs[i].prompt) + max(len(pairs[i].chosen), len(pairs[i].rejected))
                                       for i in idx)
    print(f"tokens: real {real}, mlx-dpo padded {ours} ({real / ours:.0%} useful), "
          f"exact-longest {peer} ({real / peer:.0%} useful)")
    shared = sum(len(p.prompt) for p in pairs)
    total = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    print(f"prompt tokens processed twice (chosen and rejected rows): {shared / total:.0%} of all tokens")

    # One mid-length batch.
    order = epoch_order(pairs, a.batch_size, 0, 0)
    batch = make_batch(pairs, order[len(order) // 2], a.batch_size, 32)
    print(f"profiled batch: {batch.inputs.shape[0]} rows x L={batch.inputs.shape[1]}, C={batch.positions.shape[1]}, "
          f"{batch.n_tokens} real tokens")
    # The trainer's own layout (shared prompt where supported) for the profiled step; the unshared batch
    # above only describes the padding.
    inputs = tr._loss_inputs(tr.session.layout.make(pairs, order[len(order) // 2], a.batch_size, 32), batch.n_pairs)
    model = tr.model
    backbone, head = split_head(model)

    def fwd():
        mx.eval(tr.session.layout.logps(model, inputs["batch"]))

    def bb():
        mx.eval(backbone(mx.array(batch.inputs)))

    import mlx.nn as nn
    vg = nn.value_and_grad(model, tr.loss_fn)

    def grad():
        mx.eval(vg(model, inputs))

    step = tr._build_step()

    def stp():
        out = step(inputs, None, True)
        mx.eval(out, model.trainable_parameters(), tr.optimizer.state)

    res = {}
    for name, fn in (("forward (logps)", fwd), ("backbone only", bb), ("value_and_grad", grad),
                     ("compiled step", stp)):
        res[name] = timeit(fn)
        print(f"  {name:>18}: {res[name]:.2f}s")
    res["head"] = res["forward (logps)"] - res["backbone only"]
    print(f"  {'LM head + logsumexp':>18}: {res['head']:.2f}s (forward minus backbone)")
    print(f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(bundled BLAS)')}")


if __name__ == "__main__":
    main()
