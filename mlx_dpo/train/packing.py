"""Padding-free packing: several pairs in one row, up to a token budget (`--tokens-per-batch`).

A batch's pairs are laid end to end in rows of at most `budget` tokens (first fit, longest first),
so the only padding left is the rounding of each row to `pad_multiple`. With the prompt shared, a
pair takes the row as

    [ prompt | chosen[:-1] | rejected[:-1] ]      positions 0..P-1 | P..P+c-2 | P..P+r-2

and the mask lets each answer see its own prompt and itself, never the other answer (the prefix-sharing
mask of arXiv 2410.20305); without sharing a pair is two sequences [prompt | answer[:-1]], each its own
causal block. A token never attends across pairs (block-diagonal), and positions restart for every
sequence, so every score equals the unpacked layout's up to float rounding (tests/test_packing.py).
The last answer token is never fed in: it is only ever a target.

Positions. mlx-lm's attention calls `rope(x, offset=cache.offset)`, and `mx.fast.rope` takes one
offset per row, not one per token. So while a packed forward runs, each block's rope is wrapped
(`_TokenRoPE`, undone afterwards): it views the (rows, heads, T, dims) queries/keys as rows*T rows of
length 1 and gives each its own offset — mlx-lm's own rope, with per-token positions, no forked model
code. Only the rope classes prompt sharing accepts (rotation by position alone) are wrapped.

The LM head runs on the scored positions only, gathered into one flat list (no completion-window
padding), and each sequence's sum is a (2B, N) one-hot matmul. Dense masks are not skipped by MLX's
SDPA: a row of T tokens costs T^2 attention, more than its sequences alone, so the budget trades
padding saved against attention spent (BENCHMARKS.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .batching import _round_up
from .logprobs import head_token_logps, split_head
from ..data.template import TokenizedPair

PROMPT, CHOSEN, REJECTED = 0, 1, 2  # `branch` of a token: answers see branch PROMPT and their own


@dataclass
class PackedBatch:
    inputs: np.ndarray     # (R, T) int32 token ids, pairs end to end, right-padded
    positions: np.ndarray  # (R, T) int32 position of each token inside its own sequence
    units: np.ndarray      # (R, T) int32 attention unit (a pair, or one sequence unshared); -1 for padding
    branch: np.ndarray     # (R, T) int32 PROMPT / CHOSEN / REJECTED (unshared: all PROMPT)
    scored: np.ndarray     # (N,) int32 flat index (row * T + t) whose output predicts each target
    targets: np.ndarray    # (N,) int32 the completion token predicted there
    segments: np.ndarray   # (2B, N) float32: 1 where target n belongs to sequence s (rows [0,B) chosen)
    pair_mask: np.ndarray  # (B,) float32: 1 for a real pair, 0 for an empty slot
    indices: np.ndarray    # (B,) int64: dataset index of each pair (empty slots repeat a real index)
    n_tokens: int          # real tokens of the equivalent unshared batch (prompt counted twice), for tokens/s
    n_positions: int       # positions the backbone runs over (R * T), for the padding-waste figure

    @property
    def n_pairs(self) -> int:
        return int(self.pair_mask.sum())

    def to_mx(self) -> dict:
        """The model-side arrays by name: the keyword arguments of :func:`packed_sequence_logps`."""
        names = ("inputs", "positions", "units", "branch", "scored", "targets", "segments")
        return {k: mx.array(getattr(self, k)) for k in names}


def _ids(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int32).reshape(-1)  # lists or int32 arrays alike


def pair_positions(pair: TokenizedPair, share_prompt: bool) -> int:
    """Tokens a pair takes in a packed row (its last answer tokens are never fed in)."""
    P, c, r = len(pair.prompt), len(pair.chosen), len(pair.rejected)
    return P + (c - 1) + (r - 1) if share_prompt else (P + c - 1) + (P + r - 1)


def pack_rows(pairs: list[TokenizedPair], indices, budget: int, share_prompt: bool) -> list[list[int]]:
    """Group `indices` into rows of at most `budget` tokens: first fit, longest pair first.

    A pair longer than the budget gets a row of its own (it is never split: its answers need its
    prompt in the same row). Deterministic: ties keep the order of `indices`."""
    sizes = {i: pair_positions(pairs[i], share_prompt) for i in indices}
    rows, room = [], []
    for i in sorted(indices, key=lambda i: -sizes[i]):  # sorted() is stable
        for k, free in enumerate(room):
            if sizes[i] <= free:
                rows[k].append(i)
                room[k] -= sizes[i]
                break
        else:
            rows.append([i])
            room.append(budget - sizes[i])
    return rows


def _slots(n: int) -> int:
    """Pair slots of a row, rounded up to a power of two: few distinct shapes for the compiled step."""
    return 1 << max(0, (n - 1).bit_length())


def make_packed_row(pairs: list[TokenizedPair], indices: list[int], pad_multiple: int, pad_id: int = 0,
                    share_prompt: bool = True) -> PackedBatch:
    """One packed row holding the pairs `indices` (see the module docstring for the layout)."""
    if any(len(pairs[i].prompt) == 0 for i in indices):
        raise ValueError("packing needs at least one prompt token per pair")
    B = _slots(len(indices))
    used = sum(pair_positions(pairs[i], share_prompt) for i in indices)
    T = _round_up(used, pad_multiple)
    inputs = np.full((T,), pad_id, np.int32)
    positions = np.zeros((T,), np.int32)
    units = np.full((T,), -1, np.int32)
    branch = np.zeros((T,), np.int32)
    scored, targets, seg_of = [], [], []  # per target: flat index, token, sequence row in [0, 2B)
    n_tokens, o = 0, 0

    def put(ids, pos0, unit, br):
        nonlocal o
        n = len(ids)
        inputs[o: o + n], positions[o: o + n] = ids, pos0 + np.arange(n)
        units[o: o + n], branch[o: o + n] = unit, br
        o += n
        return o - n

    for b, i in enumerate(indices):
        p = pairs[i]
        prompt, answers = _ids(p.prompt), (_ids(p.chosen), _ids(p.rejected))
        P = len(prompt)
        if share_prompt:
            last = put(prompt, 0, b, PROMPT) + P - 1      # the last prompt token predicts answer token 0
        for side, (ans, br) in enumerate(zip(answers, (CHOSEN, REJECTED))):
            if share_prompt:
                start = put(ans[:-1], P, b, br)
            else:
                last = put(prompt, 0, 2 * b + side, PROMPT) + P - 1
                start = put(ans[:-1], P, 2 * b + side, PROMPT)
            # Answer token j is predicted from the output one position before it: the last prompt
            # token for j = 0, the fed-in answer token j-1 after that.
            scored.extend([last] + list(range(start, start + len(ans) - 1)))
            targets.extend(ans.tolist())
            seg_of.extend([side * B + b] * len(ans))
            n_tokens += P + len(ans)
    N = _round_up(len(targets), pad_multiple)
    segments = np.zeros((2 * B, N), np.float32)
    segments[seg_of, np.arange(len(seg_of))] = 1.0
    pad = N - len(targets)
    pair_mask = np.zeros((B,), np.float32)
    pair_mask[: len(indices)] = 1.0
    idx = np.array(list(indices) + [indices[0]] * (B - len(indices)), dtype=np.int64)
    return PackedBatch(inputs[None], positions[None], units[None], branch[None],
                       np.array(scored + [0] * pad, np.int32), np.array(targets + [0] * pad, np.int32),
                       segments, pair_mask, idx, n_tokens, T)


class _TokenRoPE(nn.Module):
    """mlx-lm's rope with one position per token: (rows, T) offsets instead of one per row."""

    def __init__(self, rope):
        super().__init__()
        self.inner = rope

    def __call__(self, x, offset=0):
        if not (isinstance(offset, mx.array) and offset.ndim == 2):
            return self.inner(x, offset=offset)
        R, H, T, D = x.shape
        # rows*T sequences of length 1, each at its own offset: mx.fast.rope takes one offset per row.
        y = x.transpose(0, 2, 1, 3).reshape(R * T, H, 1, D)
        y = self.inner(y, offset=offset.reshape(-1))
        return y.reshape(R, T, H, D).transpose(0, 2, 1, 3)


@contextmanager
def token_positions(layers):
    """Wrap every block's rope in _TokenRoPE for the duration of one packed forward."""
    attns = [layer.self_attn for layer in layers]
    ropes = [a.rope for a in attns]
    for a, r in zip(attns, ropes):
        a.rope = _TokenRoPE(r)
    try:
        yield
    finally:
        for a, r in zip(attns, ropes):
            a.rope = r


class _Positions:
    """The 'cache' a block gets: per-token RoPE positions; keys and values pass through unchanged."""

    def __init__(self, positions: mx.array):
        self.offset = positions

    def update_and_fetch(self, keys, values):
        return keys, values


def packed_mask(units: mx.array, branch: mx.array) -> mx.array:
    """(R, 1, T, T) bool: key k is visible to query q in the same unit, at or before q, and in the
    prompt or q's own answer. Every query sees itself, so padding never has an all-masked row."""
    T = units.shape[1]
    pos = mx.arange(T)
    causal = pos[:, None] >= pos[None]
    same = units[:, :, None] == units[:, None, :]
    own = (branch[:, None, :] == PROMPT) | (branch[:, None, :] == branch[:, :, None])
    return ((same & causal & own) | (pos[:, None] == pos[None]))[:, None]


def packed_sequence_logps(model: nn.Module, inputs: mx.array, positions: mx.array, units: mx.array,
                          branch: mx.array, scored: mx.array, targets: mx.array,
                          segments: mx.array) -> tuple[mx.array, mx.array]:
    """Return (sum of completion-token log-probs, number of completion tokens), each of shape (2B,).

    Same values as ``sequence_logps`` on the unpacked batch of the same pairs. Arguments are
    ``PackedBatch.to_mx()`` (by name); the model must pass ``supports_prompt_sharing``.
    """
    backbone, head = split_head(model)
    R, T = inputs.shape
    mask = packed_mask(units, branch)
    cache = _Positions(positions)
    h = backbone.embed_tokens(inputs)
    with token_positions(backbone.layers):
        for layer in backbone.layers:
            h = layer(h, mask, cache=cache)
    hidden = h.reshape(R * T, -1)[scored]                       # (N, H): only the scored positions
    real = segments.sum(axis=0)                                 # (N,) 1 at a real target, 0 at padding
    # RMSNorm is per position, so norming only the scored positions equals norming everything.
    tok = head_token_logps(head, backbone.norm(hidden)[None], targets[None], real[None])[0]
    return segments @ tok, segments.sum(axis=-1)
