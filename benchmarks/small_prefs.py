"""Does a file of a few chat picks move the model? (issue 28: "small preference files learn")

Five picks as a person makes them in the app's A/B mode on the bundled demo model: the first five pairs of
sample_data/demo_pairs.jsonl (a polite, correct answer picked over a curt or wrong one). Each row trains
the engine's default settings but for --min-steps (the least number of steps small data trains without
--iters/--epochs; 1 = one epoch, the old default) and is scored on the 60 held-out demo prompts: greedy
answers of the base and of base + adapter, by the demo's ground-truth reward (fraction polite, correct,
and the mean reward). CPU path, OpenBLAS preloaded (re-exec) as every benchmark here.

    python benchmarks/small_prefs.py [--min-steps 1 10 20 40 80] [--picks 5]
    python benchmarks/small_prefs.py --min-steps 40 --settings "learning_rate=5e-4 beta=0.5" "learning_rate=1e-4"

`--settings`: train flags per row (each a space-separated list of KEY=VALUE), e.g. the app's demo presets.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import reexec_with_openblas  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-steps", type=int, nargs="+", default=[1, 10, 20, 40, 80])
    ap.add_argument("--picks", type=int, default=5)
    ap.add_argument("--settings", nargs="+", default=[""], help="train flags per row: 'KEY=VALUE KEY=VALUE'")
    ap.add_argument("--data", default=None, help="pairs file instead of the first --picks demo pairs")
    args = ap.parse_args()
    reexec_with_openblas()
    from mlx_dpo.demo import DEMO_MODEL, DEMO_PAIRS, DEMO_VALID
    from mlx_dpo.demo.behaviour import behaviour_eval, load_prompts
    from mlx_dpo.model.generate import load_for_generation

    prompts = load_prompts(DEMO_VALID)
    with tempfile.TemporaryDirectory() as tmp:
        picks = Path(tmp) / "picks.jsonl"
        if args.data:
            picks = Path(args.data)
        else:
            picks.write_text("".join(DEMO_PAIRS.read_text().splitlines(keepends=True)[:args.picks]))
        print(f"{picks.name if args.data else f'{args.picks} picks'}, {len(prompts)} held-out prompts, greedy; "
              "demo reward; degenerate = answers the reward finds neither correct nor polite nor civil", flush=True)
        print("| settings | --min-steps | steps | polite base -> tuned | correct base -> tuned | reward base -> tuned "
              "| win rate | degenerate tuned |")
        print("|---|---|---|---|---|---|---|---|")
        for n, (m, settings) in enumerate((m, st) for st in args.settings for m in args.min_steps):
            out = Path(tmp) / f"run{n}"
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in (kv.split("=", 1) for kv in settings.split())]
            r = subprocess.run([sys.executable, "-m", "mlx_dpo", "train", "--model", str(DEMO_MODEL), "--data",
                                str(picks), "--output", str(out), "--min-steps", str(m), *flags],
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr)
            steps = sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line)
            model, tok, switch = load_for_generation(str(DEMO_MODEL), str(out))
            res = behaviour_eval(model, tok, switch, prompts, kl_samples=0)
            broken = sum(1 for row in res.rows if not any(row["score_tuned"][c] for c in ("correct", "polite", "civil")))
            print(f"| {settings or 'defaults'} | {m} | {steps} | {res.polite_base:.2f} -> {res.polite_tuned:.2f} | "
                  f"{res.correct_base:.2f} -> {res.correct_tuned:.2f} | {res.reward_base:.3f} -> {res.reward_tuned:.3f} "
                  f"| {res.win_rate:.2f} | {broken}/{res.n} |", flush=True)


if __name__ == "__main__":
    main()
