#!/usr/bin/env python
"""The realistic workload (issue 19): long-tail lengths, a real vocabulary, per-phase times, padding waste.

    python benchmarks/realistic.py --openblas                 # mlx-dpo on the CPU path, packing on/off
    python benchmarks/realistic.py --openblas --kernel --peer # + the quantized_matmul kernel rows, mlx-lm-lora
    python benchmarks/realistic.py --openblas --model vocab32k --kernel --peer --eval 16  # 32k vocab, held-out

Model: `workload.MODELS["realvocab"]` (Qwen2.5-0.5B shapes, 2 blocks, tied 151,936-token head, 4-bit).
Data: `workload.make_longtail_pairs` (prompts and answers 16-1024 tokens, log-normal, most short).
Every contender runs in its own process (`contenders.py`), `--repeats` times; the table shows the
median with min-max. MFU = model FLOPs / time / the best fp32 GFLOP/s of the model's own GEMM shapes,
measured in the same process right before the run; an MFU above 100% is flagged as a failed measurement.
Model FLOPs count the work a frozen-base LoRA step needs on real tokens only: per optimizer step
4 x (block parameters x distinct tokens + head parameters x answer tokens), plus 2 x the same for
the reference pass when it is not cached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import workload  # noqa: E402
from run import OPENBLAS, run_child, spread  # noqa: E402

HP = dict(rank=8, scale=20.0, lr=1e-4, beta=0.1, max_length=2048, seed=0)


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--openblas", action="store_true", help=f"LD_PRELOAD={OPENBLAS} for every contender")
    ap.add_argument("--workdir", default=os.environ.get("MLX_DPO_BENCH_DIR", "/tmp/mlx-dpo-bench"))
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", default="1024", help="--tokens-per-batch of the packed rows; a comma list runs "
                    "one packed row per budget")
    ap.add_argument("--lengths", default="longtail", choices=("longtail", "long"),
                    help="longtail: UltraFeedback-like (most short); long: prompts and answers ~350 tokens each")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-cache rows")
    ap.add_argument("--kernel", action="store_true", help="also the quantized_matmul kernel rows")
    ap.add_argument("--peer", action="store_true", help="also mlx-lm-lora (kernel path: it has no other)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--resume", action="store_true", help="keep the rows already measured in --out")
    ap.add_argument("--out", default=None, help="default results-realistic.json (realvocab), "
                    "results-realistic-<model>.json otherwise")
    ap.add_argument("--model", default="realvocab", choices=sorted(workload.MODELS))
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU dequantize path rows")
    ap.add_argument("--rows", default=None, help="semicolon-separated row names to run (default: all)")
    ap.add_argument("--eval", type=int, default=0, help="held-out pairs scored for the rep-0 adapters")
    a = ap.parse_args()
    if a.out is None:
        a.out = str(HERE / ("results-realistic.json" if a.model == "realvocab" else f"results-realistic-{a.model}.json"))
    return a


def layout_waste(model_path: Path, data: Path, batch_size: int, budget: int) -> dict:
    """Distinct real tokens / positions the backbone and the head run over, per layout, one epoch."""
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.data.prepare import prepare_strict
    from mlx_dpo.model.load import load_tokenizer_only
    from mlx_dpo.train.batching import epoch_order, make_batch
    from mlx_dpo.train.layout import SHARED, UNSHARED, packed

    tok = load_tokenizer_only(str(model_path))
    pairs = prepare_strict(str(data), DataKeys(), tok, HP["max_length"], HP["max_length"] // 2, lambda *_: None).pairs
    real = sum(len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    answers = sum(len(p.chosen) + len(p.rejected) for p in pairs)
    out = {"pairs": len(pairs), "real_tokens": real, "answer_tokens": answers,
           "prompt_mean": statistics.mean(len(p.prompt) for p in pairs),
           "answer_mean": statistics.mean(len(a) for p in pairs for a in (p.chosen, p.rejected)),
           "prompt_max": max(len(p.prompt) for p in pairs),
           "answer_max": max(len(a) for p in pairs for a in (p.chosen, p.rejected)),
           "answer_median": statistics.median(len(a) for p in pairs for a in (p.chosen, p.rejected))}
    for name, layout in (("unshared", UNSHARED), ("shared", SHARED), ("packed", packed(budget))):
        backbone = head = 0
        for idx in epoch_order(pairs, batch_size, 0, 0, layout.sort_key):
            if layout is UNSHARED:
                b = make_batch(pairs, idx, batch_size, 32)
                backbone, head = backbone + b.inputs.size, head + b.targets.size
            elif layout is SHARED:
                b = layout.make(pairs, idx, batch_size, 32)
                backbone += b.prompts.size + b.targets.shape[0] * (b.targets.shape[1] - 1)
                head += b.targets.size
            else:
                for row in layout.parts(pairs, idx, batch_size, 32):
                    backbone, head = backbone + row.n_positions, head + row.targets.size
        out[name] = {"backbone_positions": backbone, "head_positions": head,
                     "real_over_positions": real / backbone, "answers_over_head": answers / head}
    return out


def model_flops(stats: dict, waste: dict, steps_fraction: float = 1.0) -> dict:
    blocks, head = stats["params_blocks"], stats["params_head"]
    fwd = 2 * (blocks * waste["real_tokens"] + head * waste["answer_tokens"])
    return {"train": 2 * fwd * steps_fraction, "reference": fwd}


def summarise(runs: list[dict], flops: dict, cold: bool) -> dict:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"ok": False, "error": runs[-1].get("error") if runs else "not run"}

    e2e = [r["e2e_s"] for r in ok]
    out = {"ok": True, "n": len(ok), "e2e_s": spread(e2e), "pairs_per_s": spread([r["pairs"] / x for r, x in zip(ok, e2e)]),
           "phases_s": {k: spread([r["phases_s"][k] for r in ok]) for k in ok[0]["phases_s"]},
           "mlx_peak_gb": spread([r["mlx_peak_bytes"] / 1e9 for r in ok]),
           "rss_peak_gb": spread([r["rss_peak_bytes"] / 1e9 for r in ok]), "layout": ok[0].get("layout")}
    mfus = []
    for r in ok:
        work = flops["train"] + (flops["reference"] if cold else 0.0)
        busy = r["phases_s"]["first_step"] + r["phases_s"]["steady"] + (r["phases_s"]["reference"] if cold else 0)
        mfus.append(work / busy / (r["peak_gflops"] * 1e9))
    out["mfu"] = spread(mfus)
    out["mfu_failed"] = any(m > 1.0 for m in mfus)
    out["peak_gflops"] = spread([r["peak_gflops"] for r in ok])
    return out


def summarise_peer(runs: list[dict], flops: dict, n_pairs: int) -> dict:
    """mlx-lm-lora: no separate reference pass (it scores the reference inside every step)."""
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"ok": False, "error": runs[-1].get("error") if runs else "not run"}
    for r in ok:
        steady = r["steady_s_per_step"] * (r["steps"] - 1)
        r["phases_s"] = {"load": r["setup_s"], "tokenize": 0.0, "reference": 0.0, "first_step": r["first_step_s"],
                         "steady": steady, "save": r["e2e_s"] - r["setup_s"] - r["first_step_s"] - steady}
        r["pairs"] = n_pairs
    return summarise(ok, flops, True)


def main():
    a = parse()
    work = Path(a.workdir)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               MLX_DPO_CACHE=str(work / "unused-cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if a.openblas:
        env["LD_PRELOAD"] = OPENBLAS
    else:
        env.pop("LD_PRELOAD", None)
    t_all = time.perf_counter()
    print("[realistic] building the model and the data", flush=True)
    q4 = workload.build_model(work / "models", a.model, 4)
    mtag = ("" if a.model == "realvocab" else f"{a.model}-") + ("long-" if a.lengths == "long" else "")
    ddir = work / "data" / f"realistic-{mtag}{a.pairs}"
    # long: every pair ~1,000 tokens, where packing's dense T^2 attention costs most
    make_pairs = (workload.make_longtail_pairs if a.lengths == "longtail" else
                  partial(workload.make_longtail_pairs, lo=128, hi=1024, median=330, sigma=0.35))
    workload.write_jsonl(make_pairs(q4, a.pairs, seed=0), ddir / "train.jsonl")
    valid = None
    if a.eval:  # held-out pairs, outside the peer's data dir (it would evaluate them)
        valid = work / "data" / f"realistic-{mtag}heldout-{a.eval}" / "valid.jsonl"
        workload.write_jsonl(make_pairs(q4, a.eval, seed=1), valid)
    stats = workload.model_stats(q4)
    budgets = [int(b) for b in str(a.budget).split(",")]
    waste = layout_waste(q4, ddir / "train.jsonl", a.batch_size, budgets[0])
    for b in budgets[1:]:
        waste[f"packed_{b}"] = layout_waste(q4, ddir / "train.jsonl", a.batch_size, b)["packed"]
    iters = -(-a.pairs // a.batch_size)
    hp = dict(HP, batch_size=a.batch_size, iters=iters, layers=stats["layers"])
    flops = model_flops(stats, waste)
    # The model's own fp32 GEMMs on the CPU path: a block's projections and a head chunk.
    h, inter = stats["hidden"], json.loads((q4 / "config.json").read_text())["intermediate_size"]
    shapes = [(512, h, h), (512, h, inter), (512, inter, h), (512, h, 16384)]
    base = dict(kind="mlx_dpo_phases", model=str(q4), hp=hp, train=str(ddir / "train.jsonl"), gemm_shapes=shapes)
    # The padded rows turn packing off explicitly (0), whatever the default is.
    cpu_plans = [("packed" if len(budgets) == 1 else f"packed {b}", {"tokens_per_batch": b}) for b in budgets]
    cpu_plans += [("padded, shared prompt", {"tokens_per_batch": 0})]
    kernel_plans = [(f"{name}, quantized_matmul kernel", dict(extra, cpu_dequant_matmul=False))
                    for name, extra in cpu_plans]
    # Order: CPU rows (cold, warm), then the peer, then the kernel rows: the slowest last.
    states = ("cold",) if a.no_warm else ("cold", "warm")
    order = [] if a.no_cpu else [(c, p) for c in states for p in cpu_plans]
    order += [("peer", None)] if a.peer else []
    order += [(c, p) for c in states for p in kernel_plans] if a.kernel else []
    wanted = set(a.rows.split(";")) if a.rows else None
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "hp": hp, "model": stats, "waste": waste,
               "flops": flops, "budget": budgets[0], "budgets": budgets, "lengths": a.lengths, "blas": env.get("LD_PRELOAD", "bundled"),
               "load_avg_before": os.getloadavg(), "rows": {}}
    done = json.loads(Path(a.out).read_text())["rows"] if a.resume and Path(a.out).exists() else {}
    # Cold rows of every layout first: the packed-vs-padded comparison is complete soonest.
    def heldout(row):
        """Held-out metrics of the rep-0 adapter (one shared evaluator), right after the row is measured."""
        r = results["rows"][row]
        good = [x for x in r.get("runs", []) if x.get("ok")]
        if not valid or not good or r.get("heldout") or "warm" in row or "kernel" in row:
            return  # warm and kernel rows train the same adapter as the CPU cold rows (up to rounding)
        tag = f"real-{mtag}eval-" + "".join(c if c.isalnum() else "_" for c in row)
        ev = run_child(dict(kind="eval", model=str(q4), hp=hp, valid=str(valid), adapter_dir=good[0]["adapter_dir"],
                            quantize_group=None), env, work, tag, a.timeout)
        r["heldout"] = ev.get("heldout") if ev.get("ok") else {"error": ev.get("error")}
        Path(a.out).write_text(json.dumps(results, indent=1, default=str))

    # Repeats are interleaved (repeat r runs every row once, in `order`), so a change in the machine's
    # load during the run is spread over all contenders instead of landing on one row's repeats.
    rows = []  # (row name, spec builder for repeat rep, summariser)
    for cache_state, plan in order:
        if cache_state == "peer":
            def peer_spec(rep):
                return dict(kind="mlx_lm_lora", model=str(q4), quantize=False, hp=hp, data_dir=str(ddir),
                            gemm_shapes=shapes, run_dir=str(work / "runs" / f"real-{mtag}peer-{rep}")), \
                    f"real-{mtag}peer-{rep}"
            rows.append(("mlx-lm-lora", peer_spec, lambda runs: summarise_peer(runs, flops, a.pairs)))
            continue
        name, extra = plan
        slug = mtag + name.replace(", ", "-").replace(" ", "_")

        def dpo_spec(rep, slug=slug, cache_state=cache_state, extra=extra):
            tag = f"real-{slug}-{cache_state}-{rep}"
            cache = work / "runs" / f"real-{slug}-cache-{rep}"
            if cache_state == "cold":
                shutil.rmtree(cache, ignore_errors=True)
            run_dir = work / "runs" / tag
            shutil.rmtree(run_dir, ignore_errors=True)
            return dict(base, run_dir=str(run_dir), cache_dir=str(cache), extra=extra), tag
        rows.append((f"mlx-dpo ({name}, {cache_state})", dpo_spec,
                     lambda runs, cold=cache_state == "cold": summarise(runs, flops, cold)))
    todo = []
    for row, spec, summary in rows:
        if wanted and row not in wanted:
            if row in done:
                results["rows"][row] = done[row]
            continue
        if done.get(row, {}).get("ok") and done[row].get("n", 0) >= a.repeats:
            results["rows"][row] = done[row]  # --resume: measured by an earlier invocation
            continue
        todo.append((row, spec, summary))
    runs_of = {row: [] for row, _, _ in todo}
    for rep in range(a.repeats):
        print(f"[realistic] repeat {rep + 1}/{a.repeats}", flush=True)
        for row, spec, summary in todo:
            child, tag = spec(rep)
            runs_of[row].append(run_child(child, env, work, tag, a.timeout))
            held = results["rows"].get(row, {}).get("heldout")  # scored after repeat 0: keep it
            results["rows"][row] = {"runs": runs_of[row], **summary(runs_of[row]), **({"heldout": held} if held else {})}
            Path(a.out).write_text(json.dumps(results, indent=1, default=str))
            if rep == 0:
                heldout(row)
    results["total_s"] = time.perf_counter() - t_all
    Path(a.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"done in {results['total_s'] / 60:.1f} min -> {a.out}", flush=True)


if __name__ == "__main__":
    main()
