"""`mlx-dpo compare`: did the adapter get better? Its answers against the base's (or another run's), judged."""

from __future__ import annotations

import json
import sys

from .output import ConsoleReporter

FLAGS = ("adapter", "against", "prompts", "judge", "judge_prompt", "model", "samples", "temperature", "top_p",
         "max_tokens", "limit", "seed", "output", "quantize", "show")


def cmd_compare(args) -> int:
    from ..compare.run import CompareConfig, run_compare

    cfg = CompareConfig(**{k: getattr(args, k) for k in FLAGS})
    report = ConsoleReporter(show_progress=sys.stderr.isatty() and not args.json)
    result = run_compare(cfg, report)
    if args.json:
        print(json.dumps(result))
    else:
        for line in result_lines(result):
            print(line)
    return 0


def result_lines(r: dict) -> list[str]:
    """The report for people: the sides are named only here (a human judge saw them blind)."""
    a, b = r["a"], r["b"]
    lo, hi = r["ci95"]
    out = [f"A = {a}", f"B = {b}",
           f"{r['prompts']} prompts ({r['decoding']}), judge {r['judge']}: A wins {r['wins']}, ties {r['ties']}, "
           f"loses {r['losses']} (n {r['n']})",
           f"win rate of A {r['win_rate']:.3f} (95% interval {lo:.3f}-{hi:.3f}; ties count half)"]
    tok, words = r["mean_tokens"], r["mean_words"]
    if tok["a"] is not None:
        out.append(f"mean answer length: A {tok['a']:.1f} tokens ({words['a']:.1f} words), "
                   f"B {tok['b']:.1f} tokens ({words['b']:.1f} words)")
    for title, examples in (("largest wins of A", r["largest_wins"]), ("largest losses of A", r["largest_losses"])):
        if examples:
            out.append(f"{title}:")
            for e in examples:
                scores = (f" [{e['score_a']:.2f} vs {e['score_b']:.2f}]" if "score_a" in e else "")
                out.append(f"  - {_short(e['prompt'], 70)}{scores}\n      A: {_short(e['answer_a'], 90)}\n"
                           f"      B: {_short(e['answer_b'], 90)}")
    out.append(f"verdicts in {r['file']}")
    return out


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
