"""How a batch of pairs is laid out for the model: prompt shared by both answers or not, packed or padded.

Every layout scores the same numbers (equal up to float rounding, tested): the shared one runs each
prompt once instead of twice (see prompt_sharing.py) and is used whenever the model supports it; the
packed one (`--tokens-per-batch`, see packing.py) lays a batch's pairs end to end in rows of a token
budget instead of padding every sequence to the batch's longest, and runs one row per micro-batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .batching import by_length, make_batch, sequential_batches
from .logprobs import sequence_logps
from .packing import make_packed_row, pack_rows, packed_sequence_logps
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

    def parts(self, pairs, indices, batch_size: int, pad_multiple: int, pad_id: int = 0) -> list:
        """The micro-batches that hold the pairs `indices` (one padded batch here)."""
        return [self.make(pairs, indices, batch_size, pad_multiple, pad_id)]

    def groups(self, pairs, batch_size: int) -> list[list[int]]:
        """Fixed groups of pair indices for forward-only passes (reference and evaluation)."""
        return sequential_batches(pairs, batch_size, self.sort_key)


@dataclass(frozen=True)
class PackedLayout(Layout):
    """Pairs end to end in rows of at most `budget` tokens; each row is one micro-batch."""

    budget: int = 0
    share_prompt: bool = True

    def parts(self, pairs, indices, batch_size: int, pad_multiple: int, pad_id: int = 0) -> list:
        return [make_packed_row(pairs, row, pad_multiple, pad_id, self.share_prompt)
                for row in pack_rows(pairs, indices, self.budget, self.share_prompt)]

    def groups(self, pairs, batch_size: int) -> list[list[int]]:
        # Forward-only: no optimizer step to respect, so every pair goes into the fullest rows there are.
        return pack_rows(pairs, range(len(pairs)), self.budget, self.share_prompt)


UNSHARED = Layout("unshared", make_batch, sequence_logps, by_length)
SHARED = Layout("shared prompt", make_shared_batch, shared_sequence_logps, by_answer_then_prompt)


def packed(budget: int, share_prompt: bool = True) -> PackedLayout:
    """The packed layout; optimizer steps group the same pairs as the padded layout it replaces."""
    base = SHARED if share_prompt else UNSHARED
    name = f"packed, {budget} tokens per row" + (", shared prompt" if share_prompt else "")
    return PackedLayout(name, None, packed_sequence_logps, base.sort_key, budget, share_prompt)


def choose_layout(model, pair_lists, share_prompt: bool = True, tokens_per_batch: int | None = None) -> Layout:
    """The shared (or packed) layout when asked for, supported by the model, and every pair has a prompt token.

    Call it after mlx-lm's grad_checkpoint (if any) is applied: supports_prompt_sharing refuses
    checkpointed blocks, whose recorded K/V would lose their gradient. Packing runs the same blocks
    itself (per-token positions), so it needs the same support, with or without a shared prompt."""
    if not supports_prompt_sharing(model):
        return UNSHARED
    if any(len(p.prompt) == 0 for pairs in pair_lists if pairs for p in pairs):
        return UNSHARED
    if tokens_per_batch:
        return packed(tokens_per_batch, share_prompt)
    return SHARED if share_prompt else UNSHARED
