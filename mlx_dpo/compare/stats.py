"""The numbers of a comparison: win rate with its interval, and a ranking of several runs (no MLX).

Win rate: the mean verdict of side A (1 win, ½ tie, 0 loss; ¾ / ¼ where a judge model disagreed with
itself across the two orders). Its 95% interval is Wilson's score interval over the *prompts* (each
prompt's mean verdict over its K samples): answers to one prompt are not independent, so the prompts
are the sample size. Wilson's interval stays inside [0, 1], contains the rate, and is not degenerate
at 0% or 100%; counting a tie as half a win and half a loss makes it slightly wider than it needs to be.

Ranking (`rank_runs`): a Bradley–Terry model over every verdict of every comparison given — P(i beats j) =
σ(θ_i − θ_j), a tie counting half a win each way — fitted by Newton's method with a weak Gaussian prior on
θ (variance 1 / PRIOR) that keeps a run which wins or loses everything finite. Ratings are Elo points
(400 · log10 odds) relative to the anchor (the base model when it took part); intervals are ±1.96
standard errors from the fit's curvature.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .duels import compare_files, read_verdicts

Z95 = 1.959963984540054
PRIOR = 0.1     # precision of the prior on each θ (logit units)
ELO = 400 / math.log(10)


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion `p` observed over `n` trials ((0, 1) for n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # p is inside mathematically; min/max keep it inside after rounding (p = 1 gave 0.9999999999999999).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _words(text: str) -> int:
    return len(text.split())


def summarize(rows: list[dict], show: int = 3) -> dict:
    """The result of one comparison from its verdict rows (duels.verdict_row): counts, win rate and
    interval, mean answer lengths, and the `show` largest wins and losses of side A."""
    n = len(rows)
    scores = [float(r["score"]) for r in rows]
    per_prompt = defaultdict(list)
    for r in rows:
        per_prompt[r.get("source") or r.get("index")].append(float(r["score"]))
    rate = float(np.mean(scores)) if n else float("nan")
    prompt_rate = float(np.mean([np.mean(v) for v in per_prompt.values()])) if n else 0.0
    lo, hi = wilson(prompt_rate, len(per_prompt))

    def example(r: dict) -> dict:
        out = {"prompt": _prompt_text(r.get("prompt")), "answer_a": r["answer_a"], "answer_b": r["answer_b"],
               "score": r["score"], "margin": r.get("margin", r["score"] - 0.5)}
        if "score_a" in r:
            out["score_a"], out["score_b"] = r["score_a"], r["score_b"]
        return out

    by_margin = sorted(rows, key=lambda r: r.get("margin", r["score"] - 0.5), reverse=True)
    first = rows[0] if rows else {}
    return {
        "a": first.get("a"), "b": first.get("b"), "judge": first.get("judge"),
        "n": n, "prompts": len(per_prompt),
        "wins": sum(s > 0.5 for s in scores), "ties": sum(s == 0.5 for s in scores),
        "losses": sum(s < 0.5 for s in scores),
        "win_rate": rate, "ci95": [lo, hi],
        "mean_tokens": {"a": _mean(r.get("tokens_a") for r in rows), "b": _mean(r.get("tokens_b") for r in rows)},
        "mean_words": {"a": _mean(_words(r["answer_a"]) for r in rows), "b": _mean(_words(r["answer_b"]) for r in rows)},
        "largest_wins": [example(r) for r in by_margin if r["score"] > 0.5][:show],
        "largest_losses": [example(r) for r in reversed(by_margin) if r["score"] < 0.5][:show],
    }


def read_compare(path: str | Path, show: int = 3) -> dict:
    """The result of one compare-*.jsonl (what `mlx-dpo compare` reported, recomputed from its verdicts)."""
    return {**summarize(read_verdicts(path), show), "file": str(path)}


def rank_run_dirs(run_dirs, anchor: str | None = "base") -> list[dict]:
    """rank_runs over every verdict in the compare-*.jsonl files of these run dirs (e.g. each against the base)."""
    return rank_runs([row for d in run_dirs for f in compare_files(d) for row in read_verdicts(f)], anchor)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _prompt_text(messages) -> str:
    if isinstance(messages, str):
        return messages
    users = [m.get("content", "") for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else ""


def rank_runs(rows: list[dict], anchor: str | None = "base") -> list[dict]:
    """Rank every side named in the verdict rows (of one or several comparisons) by a Bradley–Terry fit.

    Returns one entry per side, best first: {"name", "rating", "ci95": [lo, hi], "wins", "ties", "losses",
    "n"}; ratings are Elo points relative to `anchor` (0, interval [0, 0]) when it took part, else to
    the mean of all sides. Counts are from that side's point of view over all its verdicts."""
    names = sorted({r["a"] for r in rows} | {r["b"] for r in rows})
    if not names:
        return []
    index = {name: i for i, name in enumerate(names)}
    pairs = np.array([(index[r["a"]], index[r["b"]]) for r in rows], dtype=int).reshape(-1, 2)
    score = np.array([float(r["score"]) for r in rows])
    k = len(names)
    fixed = index.get(anchor) if anchor is not None else None
    free = [i for i in range(k) if i != fixed]
    theta = np.zeros(k)
    for _ in range(100):  # Newton's method on the (concave) penalised log-likelihood
        grad, hess = _gradient(theta, pairs, score, k)
        g, h = grad[free], hess[np.ix_(free, free)]
        delta = np.linalg.solve(h, -g)
        theta[free] += delta
        if np.max(np.abs(delta)) < 1e-10:
            break
    _, hess = _gradient(theta, pairs, score, k)
    cov = np.zeros((k, k))
    cov[np.ix_(free, free)] = np.linalg.inv(-hess[np.ix_(free, free)])
    if fixed is None:  # relative to the mean of all sides
        centre = np.eye(k) - 1.0 / k
        theta, cov = centre @ theta, centre @ cov @ centre.T
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    out = []
    for name, i in index.items():
        a_side, b_side = pairs[:, 0] == i, pairs[:, 1] == i
        own = np.concatenate([score[a_side], 1.0 - score[b_side]])
        out.append({"name": name, "rating": float(theta[i] * ELO),
                    "ci95": [float((theta[i] - Z95 * se[i]) * ELO), float((theta[i] + Z95 * se[i]) * ELO)],
                    "wins": int((own > 0.5).sum()), "ties": int((own == 0.5).sum()),
                    "losses": int((own < 0.5).sum()), "n": int(own.size)})
    return sorted(out, key=lambda e: e["rating"], reverse=True)


def _gradient(theta: np.ndarray, pairs: np.ndarray, score: np.ndarray, k: int):
    """Gradient and Hessian of Σ [s log σ(θa − θb) + (1 − s) log σ(θb − θa)] − PRIOR/2 · |θ|²."""
    a, b = pairs[:, 0], pairs[:, 1]
    p = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
    d, w = score - p, p * (1.0 - p)
    grad = -PRIOR * theta
    np.add.at(grad, a, d)
    np.add.at(grad, b, -d)
    hess = -PRIOR * np.eye(k)
    np.add.at(hess, (a, a), -w)
    np.add.at(hess, (b, b), -w)
    np.add.at(hess, (a, b), w)
    np.add.at(hess, (b, a), w)
    return grad, hess
