"""Behavioural evaluation against a ground-truth reward: does the adapter make answers better?

`behaviour_eval` answers held-out prompts with the base model (adapter switched off, exactly) and with
base + adapter, scores both with a reward function (default: `mlx_dpo.demo.reward.reward`, for the demo
tasks), and estimates how far the tuned policy moved from the reference:

    KL(π_tuned || π_ref) ≈ mean over y ~ π_tuned(·|x) of  log π_tuned(y|x) − log π_ref(y|x)

with y sampled at temperature 1 (the policy itself) and both log-probs summed over the answer's tokens,
end-of-turn token included. A single-sample estimate can be negative for one prompt; the mean over
prompts is ≥ 0 up to noise. `frontier.py` trains one adapter per β and plots reward against this KL.

With the default reward (`mlx_dpo.demo.reward.score`) the result also splits the reward into its parts,
per model: the fraction of answers that are correct (and answer the question asked), and the style
components — polite, concise (mean of the 0–1 score), civil — so that a gain in style cannot pass for
a gain in correctness. A custom `reward_fn` returning a float leaves those fields None; one returning
an object with `total` and boolean/float `correct`, `polite`, `concise`, `civil` fields (a
`RewardBreakdown`) gets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np

from ..model.generate import Sampling, answer, prompt_tokens

__all__ = ["behaviour_eval", "sample_with_tokens", "sequence_logprob", "load_prompts", "BehaviourResult",
           "COMPONENTS"]

#: Parts of the demo reward reported per model: correctness first, then the style components.
COMPONENTS = ("correct", "polite", "concise", "civil")


@dataclass
class BehaviourResult:
    n: int
    decoding: str                 # "greedy" or "sampled (T=...)"
    reward_base: float
    reward_tuned: float
    win_rate: float               # tuned beats base per prompt; ties count one half
    kl: float | None              # mean sequence-level KL estimate (nats), None if not computed
    rows: list = field(default_factory=list)
    skipped: int = 0              # prompts the reward cannot score (reward_fn raised ValueError)
    # Fractions of answers per model (concise: mean of its 0–1 score); None when the reward gives no breakdown.
    correct_base: float | None = None
    correct_tuned: float | None = None
    polite_base: float | None = None
    polite_tuned: float | None = None
    concise_base: float | None = None
    concise_tuned: float | None = None
    civil_base: float | None = None
    civil_tuned: float | None = None

    @property
    def reward_gain(self) -> float:
        return self.reward_tuned - self.reward_base

    @property
    def components(self) -> dict[str, tuple[float, float]] | None:
        """{"correct": (base, tuned), "polite": ..., "concise": ..., "civil": ...}, or None without a breakdown."""
        if self.correct_base is None:
            return None
        return {c: (getattr(self, f"{c}_base"), getattr(self, f"{c}_tuned")) for c in COMPONENTS}

    def as_dict(self, rows: bool = False) -> dict:
        d = {"n": self.n, "decoding": self.decoding, "reward_base": self.reward_base,
             "reward_tuned": self.reward_tuned, "reward_gain": self.reward_gain, "win_rate": self.win_rate,
             "kl": self.kl, "skipped": self.skipped,
             **{f"{c}_{m}": getattr(self, f"{c}_{m}") for c in COMPONENTS for m in ("base", "tuned")}}
        if rows:
            d["rows"] = self.rows
        return d


def _messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _user_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else [m for m in prompt if m["role"] == "user"][-1]["content"]


def _scored(result) -> tuple[float, dict | None]:
    """(total, breakdown) of a reward_fn result: a float, or a RewardBreakdown-like object with `total`."""
    if hasattr(result, "total"):
        parts = {c: getattr(result, c, None) for c in COMPONENTS}
        return float(result.total), (None if any(v is None for v in parts.values())
                                     else {c: float(v) for c, v in parts.items()})
    return float(result), None


def sample_with_tokens(model, tokenizer, prompt_ids: list[int], max_tokens: int, temperature: float = 1.0) -> list[int]:
    """Sample answer token ids (the end-of-turn token included when reached) with mlx-lm's generate_step."""
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    eos = set(tokenizer.eos_token_ids)
    out = []
    for token, _ in generate_step(mx.array(prompt_ids), model, max_tokens=max_tokens,
                                  sampler=make_sampler(temp=temperature)):
        token = int(token)
        out.append(token)
        if token in eos:
            break
    return out


def sequence_logprob(model, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """log π(answer | prompt), summed over the answer tokens, in one forward pass."""
    if not answer_ids:
        return 0.0
    ids = mx.array([prompt_ids + answer_ids])
    logits = model(ids[:, :-1])[0, len(prompt_ids) - 1:].astype(mx.float32)
    targets = mx.array(answer_ids)
    lp = mx.take_along_axis(logits, targets[:, None], axis=-1).squeeze(-1) - mx.logsumexp(logits, axis=-1)
    return float(lp.sum())


def behaviour_eval(model, tokenizer, switch, prompts: list, *, reward_fn: Callable[[str, str], float] | None = None,
                   sampling: Sampling | None = None, kl_samples: int = 1, kl_max_tokens: int | None = None,
                   seed: int = 0, log=None) -> BehaviourResult:
    """Compare base (adapter off) and tuned answers on `prompts` with `reward_fn(prompt, answer)`.

    Args:
        model, tokenizer, switch: from `mlx_dpo.model.generate.load_for_generation(model, adapter)`.
        prompts: user strings, or message lists (the last user message is passed to the reward).
        reward_fn: scores an answer: a float, or a breakdown with `total` (see the module docstring);
            default `mlx_dpo.demo.reward.score` (the demo tasks, with its breakdown).
        sampling: how answers are decoded; default greedy, 64 new tokens.
        kl_samples: answers sampled (T = 1) from the tuned policy per prompt for the KL estimate;
            0 skips it.
        kl_max_tokens: max tokens of those samples (default: sampling.max_tokens).
        seed: seeds MLX's sampler so repeated calls give the same answers.

    Prompts for which `reward_fn(prompt, "")` raises ValueError are skipped and counted.
    """
    if switch is None:
        raise ValueError("behaviour_eval needs a model loaded with an adapter (an AdapterSwitch)")
    if reward_fn is None:
        from .reward import score as reward_fn
    sampling = sampling or Sampling(temperature=0.0, max_tokens=64)
    greedy = sampling.temperature == 0
    rows, wins, skipped = [], 0.0, 0
    before = switch.enabled
    try:
        for i, prompt in enumerate(prompts):
            msgs, text = _messages(prompt), _user_text(prompt)
            try:
                reward_fn(text, "")
            except ValueError:  # not a prompt this reward understands
                skipped += 1
                continue
            row = {"prompt": text}
            for name, enabled in (("base", False), ("tuned", True)):
                switch.set(enabled)
                s = sampling if greedy or sampling.seed is None else Sampling(
                    sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed + i)
                if not greedy and sampling.seed is None:
                    mx.random.seed(seed * 100_003 + i)
                row[name] = answer(model, tokenizer, msgs, s)
                row[f"reward_{name}"], parts = _scored(reward_fn(text, row[name]))
                if parts is not None:
                    row[f"score_{name}"] = parts
            wins += 1.0 if row["reward_tuned"] > row["reward_base"] else 0.5 if row["reward_tuned"] == row["reward_base"] else 0.0
            if kl_samples:
                p_ids = prompt_tokens(tokenizer, msgs)
                kls = []
                for k in range(kl_samples):
                    switch.set(True)
                    mx.random.seed(seed * 1_000_003 + i * 101 + k)
                    y = sample_with_tokens(model, tokenizer, p_ids, kl_max_tokens or sampling.max_tokens)
                    lp_tuned = sequence_logprob(model, p_ids, y)
                    switch.set(False)
                    kls.append(lp_tuned - sequence_logprob(model, p_ids, y))
                row["kl"] = float(np.mean(kls))
            rows.append(row)
            if log:
                log(f"[{i + 1}/{len(prompts)}] base {row['reward_base']:.2f} tuned {row['reward_tuned']:.2f}")
    finally:
        switch.set(before)
    n = len(rows)
    mean = lambda key: float(np.mean([r[key] for r in rows])) if rows else float("nan")  # noqa: E731
    parts = {}
    if rows and all("score_base" in r and "score_tuned" in r for r in rows):
        parts = {f"{c}_{m}": float(np.mean([r[f"score_{m}"][c] for r in rows]))
                 for c in COMPONENTS for m in ("base", "tuned")}
    return BehaviourResult(
        n=n, decoding="greedy" if greedy else f"sampled (T={sampling.temperature})",
        reward_base=mean("reward_base"), reward_tuned=mean("reward_tuned"),
        win_rate=wins / n if n else float("nan"), kl=mean("kl") if kl_samples and rows else None, rows=rows,
        skipped=skipped, **parts)


def load_prompts(path: str | Path, limit: int | None = None) -> list:
    """The prompts of a pairs file (any format mlx-dpo reads): a string for single-user-turn prompts, else messages."""
    from ..data.pairs import load_pairs_strict

    prompts = [p.prompt for p in load_pairs_strict(path)]
    prompts = [p[0]["content"] if isinstance(p, list) and len(p) == 1 and p[0]["role"] == "user" else p
               for p in prompts]
    return prompts[:limit] if limit else prompts
