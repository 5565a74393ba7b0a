"""How a batch of pairs is laid out for the model: with the prompt shared by both answers, or not.

Both layouts score the same numbers (equal up to float rounding, tested): the shared one runs each
prompt once instead of twice (see prompt_sharing.py) and is used whenever the model supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .batching import by_length, make_batch
from .logprobs import sequence_logps
from .prompt_sharing import (by_answer_then_prompt, make_shared_batch, shared_sequence_logps,
                             supports_prompt_sharing)


@dataclass(frozen=True)
class Layout:
    name: str
    make: Callable      # (pairs, indices, batch_size, pad_multiple, pad_id) -> a batch with .to_mx()
    score: Callable     # (model, **batch.to_mx()) -> (summed completion log-probs, token counts), (2B,) each
    sort_key: Callable  # pair -> tuple: pairs with close keys are batched together (less padding)

    def logps(self, model, arrays: dict):
        """Completion log-probs and token counts of a batch's `to_mx()` arrays; rows [0, B) chosen."""
        return self.score(model, **arrays)


UNSHARED = Layout("unshared", make_batch, sequence_logps, by_length)
SHARED = Layout("shared prompt", make_shared_batch, shared_sequence_logps, by_answer_then_prompt)


def choose_layout(model, pair_lists, share_prompt: bool = True) -> Layout:
    """The shared layout when asked for, supported by the model, and every pair has a prompt token.

    Call it after mlx-lm's grad_checkpoint (if any) is applied: supports_prompt_sharing refuses
    checkpointed blocks, whose recorded K/V would lose their gradient."""
    if not share_prompt or not supports_prompt_sharing(model):
        return UNSHARED
    if any(len(p.prompt) == 0 for pairs in pair_lists if pairs for p in pairs):
        return UNSHARED
    return SHARED
