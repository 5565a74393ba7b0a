"""The numbers of a round: what it trained on, and how its policy answers the held-out prompts.

Held-out answers are greedy (deterministic, comparable across rounds). Reported per round, as flat
keys (TRL-style names) in `DIR/rounds.jsonl`:

    pairs, skipped/tie, skipped/spread, skipped/empty   the pairs this round made, and the prompts it left out
    train/steps, train/loss, train/accuracy             the end of the round's training run
    samples/score_mean                                  mean judge score of the round's own samples (python judges)
    heldout/score_mean, _min, _p25, _median, _p75, _max the judge's scores of the held-out answers (python judges)
    heldout/win_rate_vs_start, heldout/win_rate_vs_previous
        per prompt 1 if the answer beats the start model's (round 0) / the previous round's, ½ for a tie
    heldout/kl_to_base                                  sequence-level KL(policy ‖ base), sampled at T = 1
    heldout/answer_tokens, heldout/answer_words         mean answer length: length exploitation shows here
"""

from __future__ import annotations

import numpy as np

QUANTILES = (("min", 0), ("p25", 25), ("median", 50), ("p75", 75), ("max", 100))


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def score_summary(scores: list[float], prefix: str) -> dict:
    if not scores:
        return {}
    out = {f"{prefix}/score_mean": float(np.mean(scores))}
    for name, q in QUANTILES:
        out[f"{prefix}/score_{name}"] = float(np.percentile(scores, q))
    return out


def heldout_summary(rows: list[dict]) -> dict:
    """The held-out part of a round's report from its heldout.jsonl rows."""
    if not rows:
        return {}
    out = {"heldout/prompts": len(rows)}
    if all(r.get("score") is not None for r in rows):
        out.update(score_summary([r["score"] for r in rows], "heldout"))
    for key in ("win_rate_vs_start", "win_rate_vs_previous", "kl_to_base"):
        value = _mean(r.get(key) for r in rows)
        if value is not None:
            out[f"heldout/{key}"] = value
    out["heldout/answer_tokens"] = _mean(r["tokens"] for r in rows)
    out["heldout/answer_words"] = _mean(len(r["answer"].split()) for r in rows)
    return out


def round_line(rep: dict) -> str:
    """One line per round for people."""
    r = rep["round"]
    if r == 0:
        head = "round 0 (the start model)"
    else:
        skipped = ", ".join(f"{rep.get(f'skipped/{k}', 0)} {k}" for k in ("tie", "spread", "empty")
                            if rep.get(f"skipped/{k}"))
        head = f"round {r}: {rep.get('pairs', 0)} pairs" + (f" ({skipped} skipped)" if skipped else "")
        if rep.get("train/steps"):
            head += f", {rep['train/steps']} steps, loss {rep['train/loss']:.4f}"
        elif rep.get("pairs", 0) == 0:
            head += ", nothing to train"
    parts = []
    if "heldout/score_mean" in rep:
        parts.append(f"held-out score {rep['heldout/score_mean']:.3f} (median {rep['heldout/score_median']:.3f})")
    for key, label in (("win_rate_vs_start", "win vs start"), ("win_rate_vs_previous", "vs previous")):
        if f"heldout/{key}" in rep:
            parts.append(f"{label} {rep[f'heldout/{key}']:.2f}")
    if "heldout/kl_to_base" in rep:
        parts.append(f"KL {rep['heldout/kl_to_base']:.3f}")
    if rep.get("heldout/answer_tokens") is not None:
        parts.append(f"answers {rep['heldout/answer_tokens']:.1f} tokens")
    return head + ("; " + ", ".join(parts) if parts else "")
