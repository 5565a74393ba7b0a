"""Health checks of a run: signs that DPO is ruining the model while loss and accuracy look perfect.

DPO's known failure modes all look like success in the loss: the chosen answers' likelihood falls along
with the rejected ones' (likelihood displacement), the policy drifts far from the reference, the margin
explodes while the loss reaches 0, and the answers turn empty, repetitive or long. At every evaluation
the trainer measures these signals (written into the eval row of metrics.jsonl as `health/...`):

    health/chosen_logratio    mean change of the chosen answers' log-prob against the reference, in nats
                              per token (rewards/chosen / β / mean chosen tokens): < 0 is displacement
    health/rejected_logratio  the same for the rejected answers (meant to fall)
    health/sample_kl          log π(y) − log π_start(y) per token of the policy's own greedy answers y to the
                              sample prompts (samples.py; π_start is the reference unless --reference base):
                              how far what the model *says* has moved
    health/sample_empty       fraction of those answers that are empty (and were not at the start)
    health/sample_repetition  the largest rise over the start in one answer's fraction of repeated token
                              3-grams (a base model that already loops on a prompt is not DPO's doing)
    health/sample_length      mean answer tokens now / at the start

and warns (once per kind and run) when one crosses its bound; the message says what it means and the
fix. The bounds were chosen by measurement on the bundled demo, healthy and ruinous settings side by side
(BENCHMARKS.md, "Health checks"); this module holds no MLX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# kind -> (signal, bound, direction): warn when the signal is below ("<") or above (">") the bound. Measured
# on the demo (BENCHMARKS.md, "Health checks"): the healthy runs stay within chosen_logratio >= -0.40,
# sample_kl <= 0.94, margin_per_token <= 0.42 (eval loss >= 0.40), no new repetition or empty answer and
# length <= 1.62x (polite answers are longer); the ruinous ones cross the first bounds at the evaluation
# where their held-out reward starts to fall.
BOUNDS = {
    "likelihood_displacement": ("health/chosen_logratio", -0.5, "<"),
    "kl": ("health/sample_kl", 1.5, ">"),
    "loss_collapse": ("health/margin_per_token", 1.0, ">"),
    "empty_answers": ("health/sample_empty", 0.3, ">"),
    "repetitive_answers": ("health/sample_repetition", 0.3, ">"),
    "long_answers": ("health/sample_length", 2.5, ">"),
}
LOSS_NEAR_ZERO = 0.2  # loss_collapse also needs the mean loss below this (σ(margin) > 0.82 on average)
KINDS = tuple(BOUNDS)
NGRAM = 3


@dataclass(frozen=True)
class HealthWarning:
    kind: str
    message: str
    step: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "step": self.step}


def repetition(tokens: list) -> float:
    """Fraction of an answer's token 3-grams that repeat an earlier one (0: none; near 1: a loop)."""
    grams = [tuple(tokens[i:i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


class HealthMonitor:
    """The signals of a run and the warnings they raise.

    `chosen_tokens`: mean chosen-answer length (tokens) of the pairs the metrics are measured on;
    `settings`: the run's learning_rate, beta and iters, quoted in the fixes."""

    def __init__(self, loss, chosen_tokens: float, settings: dict):
        self.loss, self.chosen_tokens, self.settings = loss, max(float(chosen_tokens), 1.0), settings
        self.warned: set[str] = set()

    def signals(self, row: dict | None, prefix: str = "", samples: list[dict] | None = None,
                start: list[dict] | None = None) -> dict:
        """The health/... values of a metrics row (train row, or eval row with `prefix` "eval/") and of the
        sample answers now and at the start; a signal that cannot be measured is left out."""
        out = {}
        beta = self.loss.beta
        relative = self.loss.needs_reference and not self.loss.unpaired
        if row and relative and f"{prefix}rewards/chosen" in row:
            per_token = beta * self.chosen_tokens
            out["health/chosen_logratio"] = row[f"{prefix}rewards/chosen"] / per_token
            out["health/rejected_logratio"] = row[f"{prefix}rewards/rejected"] / per_token
            out["health/margin_per_token"] = row[f"{prefix}rewards/margins"] / per_token
            out["health/loss"] = row[f"{prefix}loss"]
        if samples:
            kl = _mean(s["kl"] / s["tokens"] for s in samples if s.get("tokens") and s.get("kl") is not None)
            if kl is not None:
                out["health/sample_kl"] = kl
            # Against the start: a base model that already loops on a prompt is not a sign of DPO going wrong.
            start = start if start and len(start) == len(samples) else [{"answer": "x", "repetition": 0.0}] * len(samples)
            out["health/sample_empty"] = sum(not s["answer"].strip() and bool(b["answer"].strip())
                                             for s, b in zip(samples, start)) / len(samples)
            out["health/sample_repetition"] = max(max(0.0, s.get("repetition", 0.0) - b.get("repetition", 0.0))
                                                  for s, b in zip(samples, start))
            base = _mean(b.get("tokens") for b in start)
            if base:
                out["health/sample_length"] = _mean(s["tokens"] for s in samples) / base
        return out

    def crossed(self, signals: dict) -> list[str]:
        """The kinds whose signal is past its bound now (warned about before or not)."""
        found = []
        for kind, (key, bound, direction) in BOUNDS.items():
            value = signals.get(key)
            if value is None or not math.isfinite(value):
                continue
            past = value < bound if direction == "<" else value > bound
            if kind == "loss_collapse":
                past = past and signals.get("health/loss", 1.0) < LOSS_NEAR_ZERO
            if past:
                found.append(kind)
        return found

    def check(self, signals: dict, step: int) -> list[HealthWarning]:
        """Warnings for the signals past their bound, each kind once per run."""
        found = []
        for kind in self.crossed(signals):
            if kind not in self.warned:
                self.warned.add(kind)
                found.append(HealthWarning(kind, self.message(kind, signals[BOUNDS[kind][0]], signals), step))
        return found

    def message(self, kind: str, value: float, signals: dict) -> str:
        s = self.settings
        gentler = (f"lower --learning-rate (now {s.get('learning_rate'):g}), raise --beta (now {s.get('beta'):g}) "
                   "or train fewer steps")
        if kind == "likelihood_displacement":
            return (f"likelihood displacement: the chosen answers' log-probability fell {-value:.2f} nats per token "
                    "below the reference (DPO is pushing both answers down; the model unlearns how to write while "
                    f"loss and accuracy still look good). Fix: {gentler}, or add --rpo-alpha 1.0 to keep the "
                    "chosen answers likely")
        if kind == "kl":
            return (f"the model's own answers moved {value:.2f} nats per token away from the reference model "
                    f"(KL past {BOUNDS['kl'][1]:g}): it no longer answers like the model it started from. "
                    f"Fix: {gentler}")
        if kind == "loss_collapse":
            return (f"loss {signals.get('health/loss', 0):.4f} with a reward margin of {value:.1f} nats per token: "
                    "the pairs are pushed apart far beyond what the preference needs (over-optimisation). "
                    f"Fix: {gentler}, or add --label-smoothing 0.1")
        if kind == "empty_answers":
            return (f"{value:.0%} of the sample answers are empty: the model learned to stop at once. "
                    f"Fix: {gentler}, or add --rpo-alpha 1.0")
        if kind == "repetitive_answers":
            return (f"the sample answers repeat themselves ({value:.0%} of one answer's 3-grams are repeats): "
                    f"degenerate text. Fix: {gentler}")
        return (f"the sample answers are {value:.1f}x as long as the starting model's (length exploitation: "
                f"longer answers win the preference without being better). Fix: {gentler}, or use --loss ipo "
                "or --loss simpo, which normalise by length")
