"""Per-sequence completion log-probs: log π(completion | prompt) = Σ_j log p(y_j | prompt, y_<j).

One forward over the 2B stacked sequences (chosen and rejected together). The LM head — a
(hidden × vocab) matmul, the largest single cost for small models with big vocabularies — runs only
at the completion positions, not over prompt tokens or padding, for architectures whose output is
exactly `head(backbone(x))`; others fall back to the full forward and gather afterwards. Where the
(rows x completion positions x vocab) logits would be large, the head runs over the vocabulary a
chunk of rows at a time with an online logsumexp, recomputed in the backward (`lm_head.VocabHead`);
a head layer it does not know runs a block of positions at a time instead (`head_logps`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .lm_head import VocabHead


# Model types whose Model.__call__ is `out = self.model(x); return lm_head(out) or tied embedding(out)`
# with nothing in between (no logit soft-capping or scaling), checked against mlx-lm's sources.
SPLIT_HEAD_TYPES = {"llama", "mistral", "qwen2", "qwen3"}


def split_head(model: nn.Module):
    """Return (backbone, head) callables if the head can be applied to selected positions only."""
    if getattr(model, "model_type", None) not in SPLIT_HEAD_TYPES or not hasattr(model, "model"):
        return None
    module, tied = (model.lm_head, False) if hasattr(model, "lm_head") else (model.model.embed_tokens, True)
    if VocabHead.supports(module):
        return model.model, VocabHead(module, tied)
    return model.model, (module.as_linear if tied else module)


def sequence_logps(model: nn.Module, inputs: mx.array, positions: mx.array, targets: mx.array,
                   mask: mx.array, use_split_head: bool = True) -> tuple[mx.array, mx.array]:
    """Return (sum of completion-token log-probs, number of completion tokens), each of shape (2B,)."""
    parts = split_head(model) if use_split_head else None
    if parts is not None:
        backbone, head = parts
        hidden = backbone(inputs)                                          # (2B, L, H)
        hidden = mx.take_along_axis(hidden, positions[..., None], axis=1)  # (2B, C, H)
        return head_logps(head, hidden, targets, mask)
    else:
        logits = model(inputs)                                             # (2B, L, V)
        logits = mx.take_along_axis(logits, positions[..., None], axis=1)  # (2B, C, V)
    return completion_logps(logits, targets, mask)


def completion_logps(logits: mx.array, targets: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """(Σ log p(target) over real tokens, number of real tokens) per row, from (rows, C, V) logits."""
    return token_logps(logits, targets, mask).sum(axis=-1), mask.sum(axis=-1)


def token_logps(logits: mx.array, targets: mx.array, mask: mx.array) -> mx.array:
    """(rows, C) log p(target) at each position (0 where mask is 0), from (rows, C, V) logits."""
    logits = logits.astype(mx.float32)
    # log softmax at the target id only: logit[target] - logsumexp(logits)
    target_logits = mx.take_along_axis(logits, targets[..., None], axis=-1).squeeze(-1)
    return (target_logits - mx.logsumexp(logits, axis=-1)) * mask


# Logits of more elements than this (64 MB in fp32) are computed a block of positions at a time, and
# each block's logits are recomputed in the backward (mx.checkpoint) instead of kept: the
# (rows x C x vocab) logits and their gradient are the largest activations of a big-vocabulary model.
# Measured on the 50.9M-parameter benchmark model (vocab 40960): a training step's MLX peak 1.91 ->
# 1.55 GB at the same speed; a quarter of this block size gave 1.34 GB but an 18% slower step.
LOGITS_BLOCK_ELEMENTS = 1 << 24


def head_logps(head, hidden: mx.array, targets: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
    """completion_logps(head(hidden), targets, mask), never holding more than one block of logits."""
    return head_token_logps(head, hidden, targets, mask).sum(axis=-1), mask.sum(axis=-1)


def head_token_logps(head, hidden: mx.array, targets: mx.array, mask: mx.array) -> mx.array:
    """token_logps(head(hidden), targets, mask), (rows, C), one block of positions' logits at a time."""
    rows, C, _ = hidden.shape
    vocab = head(hidden[:1, :1]).shape[-1]  # shape only: this lazy array is never evaluated
    block = max(1, LOGITS_BLOCK_ELEMENTS // (rows * vocab))
    if block >= C:
        return token_logps(head(hidden), targets, mask)
    if isinstance(head, VocabHead):  # vocabulary chunks: one pass over W, no position blocks
        return head.token_logps(hidden, targets) * mask

    parts = []
    for start in range(0, C, block):
        sl = slice(start, start + block)

        # targets and mask are closed over: the checkpoint differentiates its arguments only
        def block_logps(h, t=targets[:, sl], m=mask[:, sl]):
            return token_logps(head(h), t, m)

        parts.append(mx.checkpoint(block_logps)(hidden[:, sl]))
    return mx.concatenate(parts, axis=1)
