"""Answers from the current policy: K samples per training prompt, one greedy answer per held-out prompt.

Every prompt is seeded on its own (from the run's seed, the round and the prompt's index), so a round
is reproducible and an interrupted round continues with exactly the answers it would have produced.
The K samples of a prompt are one batch of mlx-lm's batch generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from ..model.generate import Sampling, prompt_tokens
from .prompts import Prompt


@dataclass
class Policy:
    """A loaded model: the base with the round's adapter on (`switch` turns it off: exactly the base)."""
    model: object
    tokenizer: object
    switch: object = None  # AdapterSwitch, None when the policy is the base itself
    adapter: str | None = None

    @classmethod
    def load(cls, model: str, adapter: str | None, quantize: int | None = None,
             trust_remote_code: bool = False, template_kwargs: dict | None = None) -> "Policy":
        from ..model.generate import load_for_generation

        m, tok, switch = load_for_generation(model, adapter, quantize, trust_remote_code, log=lambda s: None,
                                             template_kwargs=template_kwargs)
        return cls(m, tok, switch, adapter)


def prompt_seed(seed: int, round_: int, index: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + round_ * 10_007 + index * 101 + salt) % (2 ** 32)


def sample_answers(policy: Policy, prompt: Prompt, k: int, sampling: Sampling, seed: int) -> list[str]:
    """`k` answers to `prompt` (the end-of-turn token is where an answer stops; it is not in the text)."""
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(seed)
    ids = prompt_tokens(policy.tokenizer, prompt.messages)
    sampler = make_sampler(temp=sampling.temperature, top_p=sampling.top_p if sampling.top_p < 1.0 else 0.0)
    out = batch_generate(policy.model, policy.tokenizer, [ids] * k, max_tokens=sampling.max_tokens, sampler=sampler)
    return [t.strip() for t in out.texts]


def heldout_answers(policy, prompts: list[Prompt], max_tokens: int, temperature: float = 0.0, seed: int = 0,
                    batch: int = 8) -> list[str]:
    """One answer per prompt (greedy, or sampled at `temperature` with a seed per batch), `batch` prompts
    per batch of mlx-lm's batch generator."""
    from mlx_lm.generate import batch_generate
    from mlx_lm.sample_utils import make_sampler

    texts = []
    for start in range(0, len(prompts), batch):
        ids = [prompt_tokens(policy.tokenizer, p.messages) for p in prompts[start: start + batch]]
        mx.random.seed((seed + start) % (2 ** 32))
        out = batch_generate(policy.model, policy.tokenizer, ids, max_tokens=max_tokens,
                             sampler=make_sampler(temp=temperature))
        texts += [t.strip() for t in out.texts]
    return texts


def answer_tokens(policy: Policy, text: str) -> int:
    return len(policy.tokenizer.encode(text, add_special_tokens=False)) if text else 0


def kl_to_base(policy: Policy, prompt: Prompt, max_tokens: int, seed: int, samples: int = 1) -> float | None:
    """KL(policy || base) of one prompt: mean over y ~ policy (T = 1) of log π(y|x) − log π_base(y|x)."""
    from ..demo.behaviour import sample_with_tokens, sequence_logprob

    if policy.switch is None:
        return 0.0  # the policy is the base
    ids = prompt_tokens(policy.tokenizer, prompt.messages)
    before = policy.switch.enabled
    kls = []
    try:
        for s in range(samples):
            policy.switch.set(True)
            mx.random.seed((seed + s) % (2 ** 32))
            y = sample_with_tokens(policy.model, policy.tokenizer, ids, max_tokens)
            tuned = sequence_logprob(policy.model, ids, y)
            policy.switch.set(False)
            kls.append(tuned - sequence_logprob(policy.model, ids, y))
    finally:
        policy.switch.set(before)
    return sum(kls) / len(kls)
