"""Prompt sharing (arXiv 2410.20305): one forward over each prompt, reused by both completions.

A DPO pair's chosen and rejected sequences share their prompt, so the unshared layout
(:func:`batching.make_batch`) runs every prompt token twice. Here the B prompts run once, left-padded
to a common length P, while per-layer cache objects record their keys/values; then the 2B completions
run with caches that prepend those keys/values (tiled to both rows of each pair) and continue the RoPE
positions at P. Only array ops are involved (no in-place writes), so gradients flow through the prompt
K/V into the LoRA weights, and the whole thing traces under ``mx.compile`` / ``nn.value_and_grad``.

Results equal :func:`logprobs.sequence_logps` up to float rounding: attention is masked to real tokens
and RoPE scores depend only on relative positions, so where the prompt starts does not matter.

Use :func:`supports_prompt_sharing` first; for other models (or an empty prompt) use the unshared path.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .batching import _round_up
from .logprobs import head_logps, split_head
from ..data.template import TokenizedPair

# mlx-lm modules whose backbone is `embed_tokens -> layers(h, mask, cache) -> norm`, with attention that
# applies `rope(x, offset=cache.offset)`, then `cache.update_and_fetch(k, v)`, then SDPA with our mask
# (checked against mlx-lm 0.32 llama.py (also serves "mistral"), qwen2.py, qwen3.py).
_MODULES = {"mlx_lm.models.llama", "mlx_lm.models.qwen2", "mlx_lm.models.qwen3"}
# RoPE variants whose rotation depends on the position only (DynamicNTK's base also depends on the
# sequence length of the call, which differs between the prompt and completion calls).
_ROPE_NAMES = {"RoPE", "Llama3RoPE", "YarnRoPE", "SuScaledRoPE"}


@dataclass
class SharedBatch:
    prompts: np.ndarray       # (B, P) int32 prompt ids, LEFT-padded (the last prompt token is at P-1)
    prompt_valid: np.ndarray  # (B, P) bool: True at real prompt tokens
    targets: np.ndarray       # (2B, C) int32 completion ids, right-padded; rows [0,B) chosen, [B,2B) rejected
    mask: np.ndarray          # (2B, C) float32: 1 for a real completion token, 0 for padding
    pair_mask: np.ndarray     # (B,) float32: 1 for a real pair, 0 for a filler row
    indices: np.ndarray       # (B,) int64: dataset index of each pair (filler rows repeat a real index)
    n_tokens: int             # real tokens of the equivalent unshared batch (prompt counted twice), for tokens/s

    @property
    def n_pairs(self) -> int:
        return int(self.pair_mask.sum())

    def to_mx(self) -> dict:
        """The model-side arrays by name: the keyword arguments of :func:`shared_sequence_logps`."""
        return {"prompts": mx.array(self.prompts), "prompt_valid": mx.array(self.prompt_valid),
                "targets": mx.array(self.targets), "mask": mx.array(self.mask)}


def by_answer_then_prompt(pair: TokenizedPair) -> tuple:
    """Sort key for the shared layout: prompts and answers are padded separately, so batches should
    agree on both. Grouping by the longer answer (in 32-token steps), then the prompt length, runs
    0.87x the positions of the unshared layout on the benchmark's length mix; sorting by total length
    would run 1.06x, more than not sharing at all."""
    return (max(len(pair.chosen), len(pair.rejected)) // 32, len(pair.prompt))


def make_shared_batch(pairs: list[TokenizedPair], indices: list[int], batch_size: int, pad_multiple: int,
                      pad_id: int = 0) -> SharedBatch:
    """The prompt-shared layout of the batch `make_batch` would build from the same arguments.

    Raises ValueError if a prompt is empty: the first completion token then has nothing to be
    predicted from (the unshared path is ill-defined there too); callers should not share such batches.
    """
    real = len(indices)
    assert 0 < real <= batch_size
    chosen = [pairs[i] for i in indices]
    if any(len(p.prompt) == 0 for p in chosen):
        raise ValueError("prompt sharing needs at least one prompt token per pair")
    P = _round_up(max(len(p.prompt) for p in chosen), pad_multiple)
    C = _round_up(max(max(len(p.chosen), len(p.rejected)) for p in chosen), pad_multiple)
    prompts = np.full((batch_size, P), pad_id, dtype=np.int32)
    valid = np.zeros((batch_size, P), dtype=bool)
    targets = np.full((2 * batch_size, C), pad_id, dtype=np.int32)
    mask = np.zeros((2 * batch_size, C), dtype=np.float32)
    n_tokens = 0
    for b, p in enumerate(chosen):
        prompts[b, P - len(p.prompt):] = p.prompt
        valid[b, P - len(p.prompt):] = True
        for row, completion in ((b, p.chosen), (batch_size + b, p.rejected)):
            targets[row, : len(completion)] = completion
            mask[row, : len(completion)] = 1.0
            n_tokens += len(p.prompt) + len(completion)
    # Filler rows (a short last batch) copy pair 0's tokens so shapes stay fixed; their mask stays 0.
    for f in range(real, batch_size):
        prompts[f], valid[f] = prompts[0], valid[0]
        targets[f], targets[batch_size + f] = targets[0], targets[batch_size]
    pair_mask = np.zeros((batch_size,), dtype=np.float32)
    pair_mask[:real] = 1.0
    idx = np.array(list(indices) + [indices[0]] * (batch_size - real), dtype=np.int64)
    return SharedBatch(prompts, valid, targets, mask, pair_mask, idx, n_tokens)


def supports_prompt_sharing(model: nn.Module) -> bool:
    """True if :func:`shared_sequence_logps` is exact for this model (else use sequence_logps)."""
    if split_head(model) is None or type(model).__module__ not in _MODULES:
        return False
    backbone = model.model
    if not all(hasattr(backbone, a) for a in ("embed_tokens", "layers", "norm")):
        return False
    if getattr(backbone, "pipeline_size", 1) != 1:  # qwen2 pipeline parallelism sends h between ranks
        return False
    for layer in backbone.layers:
        if layer is None or getattr(layer, "use_sliding", False):  # llama sliding-window layers
            return False
        # mlx-lm's grad_checkpoint replaces the block class's __call__ with an mx.checkpoint wrapper;
        # K/V recorded by our cache inside it would be cut off from the gradient.
        if getattr(type(layer).__call__, "__qualname__", "") != f"{type(layer).__name__}.__call__":
            return False
        attn = getattr(layer, "self_attn", None)
        if attn is None or type(getattr(attn, "rope", None)).__name__ not in _ROPE_NAMES:
            return False
    return True


class _RecordKV:
    """Prompt pass: positions start at 0; keep this layer's keys/values for the completion pass."""

    offset = 0

    def update_and_fetch(self, keys, values):
        self.keys, self.values = keys, values
        return keys, values


class _PrefixKV:
    """Completion pass: attend to [pair's prompt K/V ; own K/V], positions continuing after the prompt."""

    def __init__(self, record: _RecordKV, offset: int):
        # Row r of the 2B completions belongs to pair r mod B: stacking the B prompt rows twice lines
        # them up. A concatenate (not a slice write into a buffer, as mlx-lm's KVCache does) keeps the
        # prompt K/V differentiable; its gradient is the sum over both completions.
        self.keys = mx.concatenate([record.keys, record.keys], axis=0)
        self.values = mx.concatenate([record.values, record.values], axis=0)
        self.offset = offset

    def update_and_fetch(self, keys, values):
        return (mx.concatenate([self.keys, keys], axis=2), mx.concatenate([self.values, values], axis=2))


def shared_sequence_logps(model: nn.Module, prompts: mx.array, prompt_valid: mx.array, targets: mx.array,
                          mask: mx.array) -> tuple[mx.array, mx.array]:
    """Return (sum of completion-token log-probs, number of completion tokens), each of shape (2B,).

    Same values as ``sequence_logps`` on the unshared batch of the same pairs. Arguments are
    ``SharedBatch.to_mx()`` (by name); the model must pass :func:`supports_prompt_sharing`.
    """
    backbone, head = split_head(model)
    layers = backbone.layers
    B, P = prompts.shape
    C = targets.shape[1]

    # Prompt pass, (B, P). Keys: causal AND real token. Each position may also attend to itself, so a
    # pad query never has an all-masked row (softmax of all -inf is NaN, and NaN * 0 is still NaN).
    pos = mx.arange(P)
    causal = pos[:, None] >= pos[None]
    pmask = causal & (prompt_valid[:, None, None, :] | (pos[:, None] == pos[None]))  # (B, 1, P, P)
    records = [_RecordKV() for _ in layers]
    h = backbone.embed_tokens(prompts)
    for layer, rec in zip(layers, records):
        h = layer(h, pmask, cache=rec)
    last = h[:, -1:, :]                                  # (B, 1, H): output at the last prompt token
    scored = mx.concatenate([last, last], axis=0)        # (2B, 1, H): predicts completion token 0

    if C > 1:
        # Completion pass, (2B, C-1). The last completion token is only ever a target (its output would
        # predict the token after the completion), so it is not fed in. Query i (completion position i,
        # absolute P+i) sees its pair's real prompt tokens and completion positions <= i.
        n = C - 1
        cpos = mx.arange(n)
        pvalid = mx.concatenate([prompt_valid, prompt_valid], axis=0)[:, None, None, :]
        cmask = mx.concatenate([mx.broadcast_to(pvalid, (2 * B, 1, n, P)),
                                mx.broadcast_to(cpos[:, None] >= cpos[None], (2 * B, 1, n, n))], axis=-1)
        h = backbone.embed_tokens(targets[:, :n])
        for layer, rec in zip(layers, records):
            h = layer(h, cmask, cache=_PrefixKV(rec, P))
        # Shift: completion token j > 0 is predicted from completion position j-1.
        scored = mx.concatenate([scored, h], axis=1)     # (2B, C, H)

    # RMSNorm is per position, so norming only the scored positions equals norming everything.
    return head_logps(head, backbone.norm(scored), targets, mask)
