#!/usr/bin/env python
"""mlx-dpo vs mlx-lm-lora (DPO) vs TRL: one command, same workload, same settings, same BLAS.

    python benchmarks/run.py            # small + large model, scenarios (a) and (b)
    python benchmarks/run.py --quick    # small model only, few steps (a few minutes)
    python benchmarks/run.py --openblas # every contender under LD_PRELOAD=OpenBLAS (see NOTES-MLX-LINUX)

Builds its workload offline and seeded (benchmarks/workload.py), runs every contender in its own
subprocess (benchmarks/contenders.py), and writes BENCHMARKS.md (machine, workload, table, ratios
vs mlx-lm-lora computed in this run) plus the raw results as JSON next to the work folder.

Scenarios:
  (a) a 4-bit checkpoint used as is by every MLX contender;
  (b) a float checkpoint quantized to 4 bits on load (mlx-dpo `quantize=4`, mlx-lm-lora `--load-in-4bits`).
TRL (PyTorch CPU, float32 + PEFT LoRA) is an outside reference on the float checkpoint: PyTorch has no
4-bit CPU path comparable to MLX's, so it is listed apart and not part of the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import workload  # noqa: E402

OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"


def spread(values) -> dict:
    """Median and min-max of repeated measurements (the form every table here shows)."""
    import statistics

    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def reexec_with_openblas() -> None:
    """Run this script again with OpenBLAS preloaded (MLX reads the BLAS at import, so it must be set
    before the process starts); returns only in the re-executed process."""
    if os.environ.get("LD_PRELOAD") != OPENBLAS:
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=dict(os.environ, LD_PRELOAD=OPENBLAS)))


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small model only, few steps")
    ap.add_argument("--openblas", action="store_true", help=f"run every contender with LD_PRELOAD={OPENBLAS}")
    ap.add_argument("--workdir", default=os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench"),
                    help="models, data, run dirs and raw results (default /tmp/mlx-dpo-bench)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="markdown report to write")
    ap.add_argument("--sizes", nargs="+", choices=list(workload.MODELS), help="override the model sizes")
    ap.add_argument("--scenarios", nargs="+", choices=["a", "b"], default=["a", "b"])
    ap.add_argument("--no-trl", action="store_true", help="skip the TRL (PyTorch) reference")
    ap.add_argument("--no-eval", action="store_true", help="skip held-out evaluation of the trained adapters")
    ap.add_argument("--timeout", type=float, default=1800, help="per-contender timeout in seconds")
    return ap.parse_args()


# Settings shared by every contender. Pairs/steps per size keep the full run within ~30 min on 2 cores.
HP = dict(rank=8, scale=20.0, lr=1e-4, beta=0.1, max_length=1100, seed=0)
PLAN = {  # size -> (train pairs, held-out pairs, batch size)
    "quick": {"small": (12, 8, 4)},
    "full": {"small": (24, 16, 4), "large": (4, 0, 2)},
}


def run_child(spec: dict, env: dict, workdir: Path, name: str, timeout: float) -> dict:
    spec_path = workdir / "specs" / f"{name}.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec["result"] = str(workdir / "results" / f"{name}.json")
    Path(spec["result"]).parent.mkdir(parents=True, exist_ok=True)
    Path(spec["result"]).unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec, indent=1))
    log = workdir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    print(f"  {name} ...", end="", flush=True)
    with open(log, "w") as fh:
        try:
            subprocess.run([sys.executable, str(HERE / "contenders.py"), str(spec_path)], env=env, stdout=fh,
                           stderr=subprocess.STDOUT, timeout=timeout, cwd=workdir)
        except subprocess.TimeoutExpired:
            pass
    try:
        res = json.loads(Path(spec["result"]).read_text())
    except (OSError, json.JSONDecodeError):
        res = {"ok": False, "error": f"no result (timeout {timeout:.0f}s or crash); see {log}"}
    res["log"] = str(log)
    res["wall_s"] = time.perf_counter() - t
    print(f" {'ok' if res.get('ok') else 'FAILED: ' + str(res.get('error'))[:200]} ({res['wall_s']:.0f}s)", flush=True)
    return res


def main():
    a = parse()
    mode = "quick" if a.quick else "full"
    plan = {s: v for s, v in PLAN[mode].items() if not a.sizes or s in a.sizes}
    if a.sizes:
        for s in a.sizes:
            plan.setdefault(s, PLAN["full"].get(s, PLAN["quick"].get(s)))
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               MLX_DPO_CACHE=str(work / "unused-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if a.openblas:
        if not Path(OPENBLAS).exists():
            sys.exit(f"{OPENBLAS} missing: apt-get update && apt-get install -y libopenblas0-pthread")
        env["LD_PRELOAD"] = OPENBLAS
    else:
        env.pop("LD_PRELOAD", None)
    blas_tag = "openblas" if a.openblas else "bundled"
    t_all = time.perf_counter()
    results = {"mode": mode, "blas": blas_tag, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "hp": HP, "plan": plan, "sizes": {}, "argv": sys.argv[1:]}
    print(f"[machine] measuring matmul rates ({blas_tag} BLAS)")
    results["machine"] = run_child({"kind": "machine"}, env, work, f"machine-{blas_tag}", 600)

    for size, (n_train, n_valid, bs) in plan.items():
        print(f"[{size}] building workload")
        f32 = workload.build_model(work / "models", size, None)
        q4 = workload.build_model(work / "models", size, 4)
        ddir = work / "data" / f"{size}-{n_train}"
        rows = workload.make_pairs(f32, n_train + n_valid, seed=HP["seed"])
        workload.write_jsonl(rows[:n_train], ddir / "train.jsonl")
        valid = None
        if n_valid:
            valid = ddir / "heldout" / "valid.jsonl"   # not in the peer's data dir: it would evaluate it
            workload.write_jsonl(rows[n_train:], valid)
        stats = workload.model_stats(f32)
        lengths = workload.length_summary(f32, ddir / "train.jsonl", HP["max_length"])
        iters = -(-n_train // bs)  # one epoch
        hp = dict(HP, batch_size=bs, iters=iters, layers=stats["layers"])
        sres = results["sizes"][size] = {"model": stats, "lengths": lengths, "hp": hp, "scenarios": {}}
        if stats["tokenizer_vocab"] < stats["vocab"]:
            print(f"  warning: tokenizer has {stats['tokenizer_vocab']} tokens < vocab {stats['vocab']}")
        for sc in a.scenarios:
            model = str(q4 if sc == "a" else f32)
            quant = sc == "b"
            tag = f"{size}-{sc}-{blas_tag}"
            runs = work / "runs" / tag
            shutil.rmtree(runs, ignore_errors=True)
            cache = runs / "ref-cache"
            base = dict(model=model, quantize=quant, hp=hp, train=str(ddir / "train.jsonl"), data_dir=str(ddir))
            print(f"[{size} / scenario {sc}] {n_train} pairs, batch {bs}, {iters} steps")
            r = {}
            r["mlx-dpo (cold cache)"] = run_child(dict(base, kind="mlx_dpo", run_dir=str(runs / "dpo-cold"),
                                                       cache_dir=str(cache)), env, work, f"{tag}-mlxdpo-cold", a.timeout)
            r["mlx-dpo (warm cache)"] = run_child(dict(base, kind="mlx_dpo", run_dir=str(runs / "dpo-warm"),
                                                       cache_dir=str(cache)), env, work, f"{tag}-mlxdpo-warm", a.timeout)
            # Same warm cache, one feature off at a time: what prompt sharing gives, what checkpointing costs.
            for label, extra in (("no prompt sharing", {"share_prompt": False}), ("grad checkpoint", {"grad_checkpoint": True})):
                slug = label.replace(" ", "-")
                r[f"mlx-dpo (warm, {label})"] = run_child(dict(base, kind="mlx_dpo", run_dir=str(runs / f"dpo-{slug}"),
                                                               cache_dir=str(cache), extra=extra), env, work,
                                                          f"{tag}-mlxdpo-{slug}", a.timeout)
            # The CPU dequantize + BLAS path off: MLX's quantized_matmul kernel, as the peer uses it.
            # Its own cache (the key has the matmul path), cold then warm.
            for cache_state in ("cold", "warm"):
                slug = f"qmm-{cache_state}"
                r[f"mlx-dpo ({cache_state}, quantized_matmul kernel)"] = run_child(
                    dict(base, kind="mlx_dpo", run_dir=str(runs / f"dpo-{slug}"), cache_dir=str(runs / "ref-cache-qmm"),
                         extra={"cpu_dequant_matmul": False}), env, work, f"{tag}-mlxdpo-{slug}", a.timeout)
            r["mlx-lm-lora"] = run_child(dict(base, kind="mlx_lm_lora", run_dir=str(runs / "peer")), env, work,
                                         f"{tag}-peer", a.timeout)
            if valid and not a.no_eval:
                for name, group in (("mlx-dpo (cold cache)", 64), ("mlx-lm-lora", 128)):
                    if r[name].get("ok"):
                        ev = run_child(dict(kind="eval", model=model, hp=hp, valid=str(valid),
                                            adapter_dir=r[name]["adapter_dir"], quantize_group=group if quant else None),
                                       env, work, f"{tag}-eval-{'dpo' if 'dpo' in name else 'peer'}", a.timeout)
                        r[name]["heldout"] = ev.get("heldout") if ev.get("ok") else {"error": ev.get("error")}
            sres["scenarios"][sc] = r
        if not a.no_trl:
            print(f"[{size}] TRL reference (PyTorch CPU, float32 checkpoint)")
            sres["trl"] = run_child(dict(kind="trl", model=str(f32), hp=hp, train=str(ddir / "train.jsonl"),
                                         valid=str(valid) if valid and not a.no_eval else None,
                                         run_dir=str(work / "runs" / f"{size}-trl-{blas_tag}")),
                                    env, work, f"{size}-trl-{blas_tag}", a.timeout)
        (work / f"results-{mode}-{blas_tag}.json").write_text(json.dumps(results, indent=1, default=str))
        shutil.copy(work / f"results-{mode}-{blas_tag}.json", HERE / f"results-{mode}-{blas_tag}.json")
        import report
        report.write(a.out, HERE)  # partial report after each size

    results["total_s"] = time.perf_counter() - t_all
    raw = work / f"results-{mode}-{blas_tag}.json"
    raw.write_text(json.dumps(results, indent=1, default=str))
    shutil.copy(raw, HERE / f"results-{mode}-{blas_tag}.json")
    import report
    report.write(a.out, HERE)
    print(f"done in {results['total_s'] / 60:.1f} min; raw results {raw}; report {a.out}")


if __name__ == "__main__":
    main()
