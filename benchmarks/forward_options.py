#!/usr/bin/env python
"""Forward-only passes (the reference pass, held-out evaluation): which of issue 19's options pay.

    python benchmarks/forward_options.py --openblas                 # CPU dequantize path
    python benchmarks/forward_options.py --openblas --kernel        # MLX's quantized_matmul kernel

On the realistic workload's `vocab32k` model and its 64 long-tail pairs (build them first with
`benchmarks/realistic.py --model vocab32k`, or let this script build them), one process scores every
pair with each variant, variants interleaved over `--repeats` rounds:

- padded, shared prompt, batch 4 (today's padded layout) and batch 16 (a larger reference batch);
- packed rows of 1024 tokens (today's packed layout), 2048 and 4096 (larger rows: forward-only passes
  hold no activations for a backward, so they can afford more tokens per row);
- packed 1024 through `mx.compile` (one compiled graph per distinct row shape).

Each variant scores the whole set twice per round: the *first* pass is what the one reference pass of a
run costs (compile included where there is one); the *second* is what evaluation every N steps costs
once the compiled graphs exist. Every variant's log-probs are checked against the first variant's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from run import OPENBLAS, reexec_with_openblas, spread  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openblas", action="store_true", help=f"re-run itself with LD_PRELOAD={OPENBLAS}")
    ap.add_argument("--kernel", action="store_true", help="MLX's quantized_matmul kernel (the Mac-GPU path)")
    ap.add_argument("--workdir", default=os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench"))
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def main():
    a = parse()
    if a.openblas:
        reexec_with_openblas()
    import mlx.core as mx

    import workload
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.data.prepare import prepare_strict
    from mlx_dpo.model.load import load_base
    from mlx_dpo.train.layout import SHARED, packed
    from mlx_dpo.train.reference import score_pairs

    work = Path(a.workdir)
    q4 = workload.build_model(work / "models", "vocab32k", 4)
    data = work / "data" / f"realistic-vocab32k-{a.pairs}" / "train.jsonl"
    if not data.exists():
        workload.write_jsonl(workload.make_longtail_pairs(q4, a.pairs, seed=0), data)
    loaded = load_base(str(q4), log=lambda *_: None, cpu_dequant=not a.kernel)
    model = loaded.model
    model.eval()
    pairs = prepare_strict(str(data), DataKeys(), loaded.tokenizer, 2048, 1024, lambda *_: None).pairs

    class Compiled:
        """A layout whose scoring goes through mx.compile (retraced once per distinct input shape)."""

        def __init__(self, layout):
            self.inner = layout
            self.fn = mx.compile(lambda arrays: layout.logps(model, arrays))

        def groups(self, *args):
            return self.inner.groups(*args)

        def parts(self, *args):
            return self.inner.parts(*args)

        def logps(self, _model, arrays):
            return self.fn(arrays)

    variants = {
        "padded, shared prompt, batch 4": (SHARED, 4),
        "padded, shared prompt, batch 16": (SHARED, 16),
        "packed 1024": (packed(1024), 4),
        "packed 2048": (packed(2048), 4),
        "packed 4096": (packed(4096), 4),
        "packed 1024, mx.compile": (None, 4),  # built fresh each round: its first pass pays the compile
    }
    times = {name: {"first": [], "second": []} for name in variants}
    peaks = {name: [] for name in variants}
    base = None
    for rep in range(a.repeats):
        for name, (layout, bs) in variants.items():
            lay = Compiled(packed(1024)) if layout is None else layout
            mx.reset_peak_memory()
            for which in ("first", "second"):
                t = time.perf_counter()
                out = score_pairs(model, pairs, bs, 32, loaded.tokenizer.pad_token_id or 0, layout=lay)
                times[name][which].append(time.perf_counter() - t)
            peaks[name].append(mx.get_peak_memory() / 1e9)
            if base is None:
                base = out
            diff = max(float(abs(out[k] - base[k]).max()) for k in ("chosen", "rejected"))
            print(f"rep {rep} {name:34s} first {times[name]['first'][-1]:6.1f}s second "
                  f"{times[name]['second'][-1]:6.1f}s peak {peaks[name][-1]:.2f} GB max|dlogp| {diff:.2e}",
                  flush=True)
            assert diff < 1e-2 * max(1.0, float(abs(base["chosen"]).max())), (name, diff)

    res = {"path": "quantized_matmul kernel" if a.kernel else "CPU dequantize path", "pairs": len(pairs),
           "blas": os.environ.get("LD_PRELOAD", "bundled"), "repeats": a.repeats,
           "variants": {n: {"first_s": spread(t["first"]), "second_s": spread(t["second"]),
                            "mlx_peak_gb": spread(peaks[n])} for n, t in times.items()}}
    out = Path(a.out or HERE / f"results-forward-{'kernel' if a.kernel else 'cpu'}.json")
    out.write_text(json.dumps(res, indent=1))
    ref = res["variants"]["packed 1024"]
    print(f"\n{res['path']}, {len(pairs)} pairs, {a.repeats} repeats (median [min-max]); ratio = packed 1024 / variant")
    for n, v in res["variants"].items():
        f, s = v["first_s"], v["second_s"]
        print(f"| {n} | {f['median']:.1f} [{f['min']:.1f}-{f['max']:.1f}] | {ref['first_s']['median'] / f['median']:.2f}x "
              f"| {s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}] | {ref['second_s']['median'] / s['median']:.2f}x "
              f"| {v['mlx_peak_gb']['median']:.2f} |")


if __name__ == "__main__":
    main()
