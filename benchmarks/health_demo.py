"""Health signals on the bundled demo, healthy and ruinous settings side by side (issue 24).

    python benchmarks/health_demo.py [--openblas] [--workdir /tmp/mlx-dpo-health] [--only NAME ...]
    python benchmarks/health_demo.py --report benchmarks/results-health-demo.json   # the tables again

Trains the demo model on sample_data/demo_pairs.jsonl under several settings (see RUNS), evaluating every
--eval-every steps on sample_data/demo_valid.jsonl with `--sample-prompts 60`: every held-out prompt is
answered greedily at every evaluation (samples.jsonl), so the ground truth of each evaluation — the demo
reward of those 60 answers and their win rate against the starting model's — sits beside the signals the
trainer computes (metrics.jsonl `health/...`). The sample-answer signals are recomputed from the first 3
prompts only, as a default run (`--sample-prompts 3`) sees them. Then `mlx-dpo compare` of each final
adapter against the base with the demo judge. Prints one JSON object and the markdown of BENCHMARKS.md's
"Health checks" section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import reexec_with_openblas  # noqa: E402

BASE = {"batch_size": 2, "lora_rank": 4, "max_length": 64}
# name -> (kind, settings); the demo's own are mlx_dpo.demo.DEMO_SETTINGS (24 steps at 5e-4, beta 0.5).
RUNS = {
    "demo (default)": ("healthy", {"iters": 24, "learning_rate": 5e-4, "beta": 0.5}),
    "engine defaults": ("healthy", {"iters": 150, "learning_rate": 5e-5, "beta": 0.1}),
    "lr 1e-4, beta 0.1": ("healthy", {"iters": 150, "learning_rate": 1e-4, "beta": 0.1}),
    "demo, 48 steps": ("borderline", {"iters": 48, "learning_rate": 5e-4, "beta": 0.5}),
    "demo, 150 steps (the issue)": ("ruinous", {"iters": 150, "learning_rate": 5e-4, "beta": 0.5}),
    "lr 5e-4, beta 0.1": ("ruinous", {"iters": 150, "learning_rate": 5e-4, "beta": 0.1}),
    "lr 1e-3, beta 0.1": ("ruinous", {"iters": 150, "learning_rate": 1e-3, "beta": 0.1}),
}
SIGNALS = ("health/chosen_logratio", "health/sample_kl", "health/margin_per_token", "health/loss",
           "health/sample_repetition", "health/sample_length", "health/sample_empty")


def mlx_dpo(*args) -> str:
    return subprocess.run([sys.executable, "-m", "mlx_dpo", *args], check=True, cwd=ROOT, capture_output=True,
                          text=True).stdout


def sample_signals(rows: list[dict], start: list[dict], tokenizer, n: int = 3) -> dict:
    """The sample-answer signals of the first `n` prompts (what a default run measures)."""
    from mlx_dpo.train.health import repetition

    now, base = rows[:n], start[:n]
    ids = [tokenizer.encode(s["answer"], add_special_tokens=False) for s in now]
    kls = [s["kl"] / s["tokens"] for s in now if s["tokens"]]
    return {"health/sample_kl": sum(kls) / len(kls) if kls else 0.0,
            "health/sample_empty": sum(not s["answer"] for s in now) / len(now),
            "health/sample_repetition": max(repetition(x) for x in ids),
            "health/sample_length": (sum(s["tokens"] for s in now) / len(now)) / (sum(s["tokens"] for s in base) / len(base))}


def measure(name: str, settings: dict, work: Path, eval_every: int) -> dict:
    from mlx_dpo.demo import DEMO_PAIRS, DEMO_VALID, DEMO_MODEL
    from mlx_dpo.demo.reward import judge
    from mlx_dpo.model.load import load_tokenizer_only

    run = work / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    shutil.rmtree(run, ignore_errors=True)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**BASE, **settings}.items()]
    started = time.time()
    mlx_dpo("train", "--data", str(DEMO_PAIRS), "--valid-data", str(DEMO_VALID), "--output", str(run),
            "--eval-every", str(eval_every), "--sample-prompts", "60", "--save-every", "1000", *flags)
    seconds = time.time() - started
    tokenizer = load_tokenizer_only(str(DEMO_MODEL))
    evals = {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval/loss" in r}
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    start = samples[0]["samples"]
    start_scores = [judge(s["prompt"], s["answer"]) for s in start]
    points = []
    for rec in samples[1:]:
        row = evals[rec["step"]]
        scores = [judge(s["prompt"], s["answer"]) for s in rec["samples"]]
        wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, start_scores)]
        points.append({"step": rec["step"], "eval/loss": row["eval/loss"],
                       "eval/accuracy": row["eval/rewards/accuracies"],
                       "reward": sum(scores) / len(scores), "win_rate_vs_start": sum(wins) / len(wins),
                       **{k: row[k] for k in SIGNALS if k in row and not k.startswith("health/sample")},
                       **sample_signals(rec["samples"], start, tokenizer), "example": rec["samples"][0]["answer"][:60]})
    compare = json.loads(mlx_dpo("compare", "--adapter", str(run), "--judge", "python:mlx_dpo.demo.reward:judge",
                                 "--json", "--show", "1"))
    return {"name": name, "kind": RUNS[name][0], "settings": settings, "seconds": seconds,
            "start_reward": sum(start_scores) / len(start_scores), "points": points,
            "compare": {k: compare[k] for k in ("wins", "ties", "losses", "n", "win_rate", "ci95", "mean_tokens")}}


def with_warnings(results: list[dict]) -> list[dict]:
    """Each evaluation's crossed bounds under health.py's BOUNDS as they are now (so a change of bound
    re-renders the tables from results.json without training again: --report)."""
    from mlx_dpo.train.health import HealthMonitor

    monitor = HealthMonitor(None, 1.0, {})
    for r in results:
        for x in r["points"]:
            x["warnings"] = monitor.crossed(x)
    return results


def markdown(results: list[dict]) -> str:
    results = with_warnings(results)
    out = ["| run | kind | steps | final held-out acc. | reward (start → end) | compare vs base (win rate, 95% CI) "
           "| chosen logratio (min) | sample KL (max) | margin/token (max) | repetition (max) | length ratio (max) "
           "| first warning |", "|" + "---|" * 12]
    for r in results:
        p = r["points"]
        first = next(((x["step"], x["warnings"]) for x in p if x["warnings"]), None)
        c = r["compare"]
        out.append(
            f"| {r['name']} | {r['kind']} | {r['settings']['iters']} | {p[-1]['eval/accuracy']:.2f} "
            f"| {r['start_reward']:.3f} → {p[-1]['reward']:.3f} "
            f"| {c['win_rate']:.2f} ({c['ci95'][0]:.2f}–{c['ci95'][1]:.2f}), {c['wins']}/{c['ties']}/{c['losses']} "
            f"| {min(x['health/chosen_logratio'] for x in p):.2f} | {max(x['health/sample_kl'] for x in p):.2f} "
            f"| {max(x['health/margin_per_token'] for x in p):.2f} | {max(x['health/sample_repetition'] for x in p):.2f} "
            f"| {max(x['health/sample_length'] for x in p):.2f} "
            f"| {'none' if first is None else f'step {first[0]}: ' + ', '.join(first[1])} |")
    for r in results:
        if r["kind"] == "healthy":
            continue
        out += ["", f"`{r['name']}` over its evaluations (to step 48, and the last):", "",
                "| step | eval acc. | reward | win vs start | chosen logratio | sample KL | margin/token | eval loss "
                "| repetition | length | warnings | a sample answer |", "|" + "---|" * 12]
        points = r["points"]
        for x in [x for x in points if x["step"] <= 48] + ([points[-1]] if points[-1]["step"] > 48 else []):
            out.append(f"| {x['step']} | {x['eval/accuracy']:.2f} | {x['reward']:.3f} | {x['win_rate_vs_start']:.2f} "
                       f"| {x['health/chosen_logratio']:.2f} | {x['health/sample_kl']:.2f} "
                       f"| {x['health/margin_per_token']:.2f} | {x['eval/loss']:.3f} "
                       f"| {x['health/sample_repetition']:.2f} | {x['health/sample_length']:.2f} "
                       f"| {', '.join(x['warnings']) or '-'} | {x['example']!r} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/mlx-dpo-health")
    ap.add_argument("--eval-every", type=int, default=6)
    ap.add_argument("--only", nargs="+", choices=list(RUNS), help="run only these settings")
    ap.add_argument("--openblas", action="store_true", help="preload OpenBLAS (Linux CPU; faster, same numbers)")
    ap.add_argument("--report", metavar="RESULTS", help="only print the tables of a results file (e.g. "
                    "benchmarks/results-health-demo.json, the measurements of BENCHMARKS.md)")
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads(Path(args.report).read_text())))
        return 0
    if args.openblas:
        reexec_with_openblas()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.only or RUNS:
        results.append(measure(name, RUNS[name][1], work, args.eval_every))
        print(f"{name}: done in {results[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
