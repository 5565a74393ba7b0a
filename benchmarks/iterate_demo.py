"""Iterative DPO against offline DPO on the bundled demo, judged by the demo tasks' ground-truth reward.

    python benchmarks/iterate_demo.py [--workdir /tmp/mlx-dpo-iterate] [--rounds 3] [--per-round 100]

Iterative: `mlx-dpo iterate` with the demo reward as judge, each round on the next --per-round prompts
of sample_data/demo_pairs.jsonl (their written answers unused), K samples per prompt, best vs worst.
Offline: one `mlx-dpo train` run on the same number of written pairs of the same file (the first ones),
with the same training settings. Both are scored the same way: greedy answers to the 60 held-out
prompts of sample_data/demo_valid.jsonl, mean reward. Prints one JSON object and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_flags(args) -> list[str]:
    """The training settings of every round and of the offline run (the same for both)."""
    return ["--batch-size", str(args.batch_size), "--learning-rate", str(args.learning_rate), "--beta", str(args.beta),
            "--rpo-alpha", str(args.rpo_alpha), "--lora-rank", "4", "--max-length", "64", "--save-every", "1000",
            "--epochs", str(args.epochs)]


def mlx_dpo(*args) -> None:
    subprocess.run([sys.executable, "-m", "mlx_dpo", *args], check=True, cwd=ROOT)


def heldout_reward(adapter: str | None, valid: str, max_tokens: int) -> dict:
    from mlx_dpo.demo import DEMO_MODEL
    from mlx_dpo.demo.reward import judge
    from mlx_dpo.iterate.prompts import load_prompts
    from mlx_dpo.iterate.sampling import Policy, heldout_answers

    prompts = load_prompts(valid)
    policy = Policy.load(str(DEMO_MODEL), adapter)
    texts = heldout_answers(policy, prompts, max_tokens)
    scores = [judge(p.messages, t) for p, t in zip(prompts, texts)]
    return {"heldout/score_mean": sum(scores) / len(scores), "n": len(scores)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/mlx-dpo-iterate")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=100)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--reference", default="base")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--rpo-alpha", type=float, default=0.0)
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pairs, valid = ROOT / "sample_data/demo_pairs.jsonl", ROOT / "sample_data/demo_valid.jsonl"
    t0 = time.monotonic()
    mlx_dpo("iterate", "--prompts", str(pairs), "--valid-prompts", str(valid), "--judge",
            "python:mlx_dpo.demo.reward:judge", "--rounds", str(args.rounds), "--prompts-per-round",
            str(args.per_round), "--samples", str(args.samples), "--max-tokens", str(args.max_tokens),
            "--temperature", str(args.temperature), "--reference", args.reference, "--kl-samples", "1",
            "--output", str(work / "iterate"), *train_flags(args))
    t_iter = time.monotonic() - t0
    rounds = [json.loads(line) for line in (work / "iterate/rounds.jsonl").read_text().splitlines()]
    total_pairs = sum(r.get("pairs", 0) for r in rounds)
    subset = work / "offline_pairs.jsonl"
    subset.write_text("".join(pairs.read_text().splitlines(keepends=True)[:total_pairs]))
    t0 = time.monotonic()
    mlx_dpo("train", "--data", str(subset), "--output", str(work / "offline"), *train_flags(args))
    t_off = time.monotonic() - t0
    offline = heldout_reward(str(work / "offline"), str(valid), args.max_tokens)
    result = {"settings": vars(args), "rounds": rounds, "total_pairs": total_pairs, "offline": offline,
              "seconds": {"iterate": round(t_iter, 1), "offline": round(t_off, 1)}}
    print(json.dumps(result))
    print("\n| model | pairs trained | held-out reward | win vs start | KL to base | answer tokens |")
    print("|---|---|---|---|---|---|")
    for r in rounds:
        name = "start (base)" if r["round"] == 0 else f"iterative, round {r['round']}"
        print(f"| {name} | {sum(x.get('pairs', 0) for x in rounds if x['round'] <= r['round'])} | "
              f"{r.get('heldout/score_mean', float('nan')):.3f} | {r.get('heldout/win_rate_vs_start', float('nan')):.2f} | "
              f"{r.get('heldout/kl_to_base', float('nan')):.3f} | {r.get('heldout/answer_tokens', float('nan')):.1f} |")
    print(f"| offline DPO (written pairs) | {total_pairs} | {offline['heldout/score_mean']:.3f} | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
