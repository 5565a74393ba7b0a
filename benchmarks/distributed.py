"""1 vs 2 processes on this machine: the same DPO run (same global batch) with and without `mlx.launch -n 2`.

    python benchmarks/distributed.py [--openblas] [--size small] [--iters 12] [--batch-size 8]

Each configuration is a separate `mlx-dpo train` (the reference cache is warmed first, so every run
measures training only). It reports wall time, steady-state pairs/s and tokens/s (metrics rows after the
first two steps, which include compilation), the per-rank peak memory, and whether the two adapters
agree. Besides the real `mlx.launch`, it also starts the two ranks directly with the environment
mlx.launch sets (MLX_RANK, MLX_HOSTFILE), to separate the launcher's own CPU use from the training.
It prints a markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import workload  # noqa: E402
from tui.training import free_port_block  # noqa: E402  (the app's: a start port with port + 1 free too)

OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
LAUNCH = Path(sys.executable).parent / "mlx.launch"


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlx_dpo", "train", *args]


def run(name: str, mode: str, args: list[str], env: dict, work: Path) -> dict:
    out = work / "runs" / name
    full = [*args, "--output", str(out)]
    t0 = time.perf_counter()
    if mode == "one":
        procs = [subprocess.Popen(train_cmd(full), env=env, cwd=work, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)]
    elif mode == "launch":
        cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "-p", str(free_port_block(2)), "--", *train_cmd(full)]
        procs = [subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)]
    else:  # "direct": what mlx.launch does on one machine, without its I/O relay loop
        port = free_port_block(2)
        hostfile = work / f"{name}-hosts.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"], [f"127.0.0.1:{port + 1}"]]))
        procs = [subprocess.Popen(train_cmd(full), env={**env, "MLX_RANK": str(r), "MLX_HOSTFILE": str(hostfile)},
                                  cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for r in range(2)]
    errs = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    if any(p.returncode for p in procs) or not (out / "adapters.safetensors").exists():
        raise SystemExit(f"{name} failed:\n" + "\n".join(e[-2000:] for e in errs))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    steady = rows[2:]  # steps 1-2 compile the step for the first shapes
    pairs = sum(r["n_pairs"] for r in steady)
    mem = [r.get("rank_peak_memory_gb", [r["peak_memory_gb"]]) for r in rows]
    return {"name": name, "wall_s": wall, "steady_pairs_per_s": pairs / sum(r["step_seconds"] for r in steady),
            "steady_tokens_per_s": float(np.mean([r["tokens_per_second"] for r in steady])),
            "peak_memory_gb_per_rank": [max(m[i] for m in mem) for i in range(len(mem[0]))],
            "final_loss": rows[-1]["loss"], "out": str(out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openblas", action="store_true", help=f"every process with LD_PRELOAD={OPENBLAS}")
    ap.add_argument("--size", default="small", choices=list(workload.MODELS))
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mlx-dpo-dist-"))
    model = workload.build_model(Path(os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench")) / "models",
                                 a.size, 4)
    data = work / "pairs.jsonl"
    workload.write_jsonl(workload.make_pairs(model, a.iters * a.batch_size, seed=0), data)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLX_DPO_CACHE": str(work / "cache")}
    if a.openblas:
        env["LD_PRELOAD"] = OPENBLAS
    args = ["--model", str(model), "--data", str(data), "--batch-size", str(a.batch_size), "--iters", str(a.iters),
            "--max-length", "1024", "--lora-rank", "8", "--learning-rate", "1e-5", "--lr-schedule", "constant",
            "--save-every", str(a.iters)]
    run("warm-cache", "one", args, env, work)  # fills the reference cache: the runs below measure training
    results = [run(name, mode, args, env, work) for name, mode in
               (("1 process", "one"), ("2 processes, mlx.launch", "launch"), ("2 processes, direct", "direct"))]
    import mlx.core as mx
    ref = {k: np.array(v) for k, v in mx.load(str(Path(results[0]["out"]) / "adapters.safetensors")).items()}
    for r in results[1:]:
        other = {k: np.array(v) for k, v in mx.load(str(Path(r["out"]) / "adapters.safetensors")).items()}
        r["max_adapter_diff"] = max(float(np.abs(other[k] - ref[k]).max()) for k in ref)
    base = results[0]
    print(f"\nmodel {model.name}, {a.iters} steps, global batch {a.batch_size}, "
          f"{'OpenBLAS' if a.openblas else 'bundled BLAS'}, {os.cpu_count()} cores\n")
    print("| run | wall s | steady pairs/s | vs 1 process | peak MLX memory per rank (GB) | adapter max diff |")
    print("|---|---:|---:|---:|---|---:|")
    for r in results:
        print(f"| {r['name']} | {r['wall_s']:.1f} | {r['steady_pairs_per_s']:.2f} | "
              f"{r['steady_pairs_per_s'] / base['steady_pairs_per_s']:.2f}× | "
              f"{', '.join(f'{m:.2f}' for m in r['peak_memory_gb_per_rank'])} | "
              f"{r.get('max_adapter_diff', 0.0):.1e} |")
    (work / "results.json").write_text(json.dumps(results, indent=1))  # raw numbers (the committed copy: benchmarks/distributed-results-bundled.json)


if __name__ == "__main__":
    main()
