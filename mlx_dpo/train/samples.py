"""Sample answers while training: what the model *says* to a few fixed held-out prompts, at every evaluation.

Loss and reward accuracy can look perfect while the model forgets how to write (DPO's likelihood
displacement): `SampleWatch` answers the same few prompts greedily at each evaluation with the adapter as
it is now, and once with the starting model (base, or base + the init adapter: the reference unless
`--reference base`), so a reader sees "start vs now". It also scores each answer's tokens under both,
which gives the sequence-level KL of the policy's own answers to the starting model (health.py reads it).

Training results do not change with sampling on or off:
- decoding is greedy (argmax: no random numbers), and MLX's global RNG state is put back afterwards
  anyway, so the dropout stream of the next step is what it would have been;
- dropout is off while answering (`model.eval()`), and the training mode is restored;
- the starting weights are swapped in for the KL pass and the trained values put back exactly
  (same arrays' values; the optimizer state is untouched).
Everything runs on the calling (training) thread: MLX arrays belong to the thread that made them.

RUN_DIR/samples.jsonl holds one line per evaluation, `{"step", "samples": [{"prompt", "answer",
"tokens", "kl", "repetition", "base"?}]}`; step 0 is the starting model's answers ("base" on later
lines repeats them).
"""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx

from ..model.adapters import adapter_weights, copy_weights, set_adapter_weights
from ..model.generate import prompt_tokens
from .health import repetition

SAMPLES_FILE = "samples.jsonl"
# Pairs whose messages the session keeps for the sample prompts (the others keep their token ids only).
KEEP_MESSAGES = 64
# Answers are cut at twice the longest chosen answer of the held-out pairs (within these bounds): long
# enough to see an answer ramble past the data's own answers, short enough to cost seconds per evaluation.
MIN_TOKENS, MAX_TOKENS = 32, 256


def pick_prompts(prepared, n: int) -> list[list[dict]]:
    """The first `n` distinct prompts (message lists ending with a user turn) whose messages were kept."""
    seen, out = set(), []
    for p in prepared.load.pairs:
        messages = getattr(p, "prompt", None)  # a PairRecord (messages released) has none
        if not messages or messages[-1].get("role") != "user":
            continue
        key = tuple((m["role"], m["content"]) for m in messages)
        if key not in seen:
            seen.add(key)
            out.append([dict(m) for m in messages])
            if len(out) == n:
                break
    return out


def answer_budget(pairs) -> int:
    longest = max((len(p.chosen) for p in pairs), default=MIN_TOKENS)
    return int(min(MAX_TOKENS, max(MIN_TOKENS, 2 * longest)))


@contextmanager
def _kept_rng():
    """MLX's global RNG state as it was before (greedy decoding draws nothing; this makes sure of it)."""
    hi, lo = (int(x) for x in mx.random.state[0].tolist())
    try:
        yield
    finally:
        mx.random.seed((hi << 32) | lo)  # a key is the 64-bit seed it came from: this restores it exactly


@contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


class SampleWatch:
    """Greedy answers of the model to fixed prompts, now and at the start (see the module docstring).

    `start` is a detached copy of the adapter's starting values (taken before any update or resume)."""

    def __init__(self, model, tokenizer, prompts: list[list[dict]], max_tokens: int, start: dict):
        self.model, self.tokenizer, self.max_tokens = model, tokenizer, max_tokens
        self.prompts = prompts
        self.prompt_ids = [prompt_tokens(tokenizer, m) for m in prompts]
        self.start = start

    @classmethod
    def for_session(cls, session, n: int) -> "SampleWatch | None":
        """The watch of a training session: `n` prompts of its held-out data (None: no held-out data or n = 0)."""
        if n <= 0 or not session.valid_pairs or len(session.data) < 2:
            return None
        prompts = pick_prompts(session.data[1], n)
        if not prompts:
            return None
        return cls(session.model, session.tokenizer, prompts, answer_budget(session.valid_pairs),
                   copy_weights(adapter_weights(session.model)))

    def answers(self, start: bool = False) -> list[dict]:
        """One greedy answer per prompt with the adapter as it is now (or its starting values), each with
        its token count and `kl`: log π(answer) − log π_start(answer) summed over its tokens."""
        from mlx_lm.generate import batch_generate

        from ..demo.behaviour import sequence_logprob

        with _kept_rng(), _eval_mode(self.model):
            now = adapter_weights(self.model)
            try:
                if start:
                    set_adapter_weights(self.model, self.start, "the starting adapter")
                out = batch_generate(self.model, self.tokenizer, self.prompt_ids, max_tokens=self.max_tokens,
                                     return_token_ids=True)
                ids = [list(t) for t in out.token_ids]
                kl = [0.0] * len(ids)  # the starting model against itself
                if not start:  # log π(y) now, then under the starting values
                    kl = [sequence_logprob(self.model, p, y) for p, y in zip(self.prompt_ids, ids)]
                    set_adapter_weights(self.model, self.start, "the starting adapter")
                    kl = [a - sequence_logprob(self.model, p, y) for a, p, y in zip(kl, self.prompt_ids, ids)]
            finally:
                set_adapter_weights(self.model, now, "the trained adapter")  # the same values, exactly
        return [{"prompt": text, "answer": answer.strip(), "tokens": len(y), "kl": k, "repetition": repetition(y)}
                for text, answer, y, k in zip(self.texts, out.texts, ids, kl)]

    @property
    def texts(self) -> list[str]:
        """Each prompt as shown: its last user message."""
        return [[m for m in p if m["role"] == "user"][-1]["content"] for p in self.prompts]
