"""Length-bucketed, padded batches with a small fixed set of shapes, in a seeded, resumable order.

One batch holds B pairs as 2B sequences — rows [0, B) the chosen answers, rows [B, 2B) the rejected
ones — so one forward pass scores both. Sequence length L and completion window C are rounded up to a
multiple of `pad_multiple`, and a short last batch is filled with masked dummy rows, so the compiled
step sees only a few (B, L, C) shapes instead of recompiling for every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.template import TokenizedPair


@dataclass
class Batch:
    inputs: np.ndarray     # (2B, L) int32 token ids, right-padded
    positions: np.ndarray  # (2B, C) int32: input positions whose output predicts a completion token
    targets: np.ndarray    # (2B, C) int32: the completion token predicted at each position
    mask: np.ndarray       # (2B, C) float32: 1 for a real completion token, 0 for padding
    pair_mask: np.ndarray  # (B,) float32: 1 for a real pair, 0 for a filler row
    indices: np.ndarray    # (B,) int64: dataset index of each pair (filler rows repeat a real index)
    n_tokens: int          # real (non-pad) tokens in the batch, for tokens/s

    @property
    def n_pairs(self) -> int:
        return int(self.pair_mask.sum())

    def to_mx(self) -> dict:
        """The model-side arrays by name: the keyword arguments of logprobs.sequence_logps."""
        import mlx.core as mx

        return {"inputs": mx.array(self.inputs), "positions": mx.array(self.positions),
                "targets": mx.array(self.targets), "mask": mx.array(self.mask)}


def _round_up(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def make_batch(pairs: list[TokenizedPair], indices: list[int], batch_size: int, pad_multiple: int,
               pad_id: int = 0) -> Batch:
    real = len(indices)
    assert 0 < real <= batch_size
    rows = []
    for side in ("chosen", "rejected"):
        for i in indices:
            p = pairs[i]
            rows.append((p.prompt, getattr(p, side)))
    L = _round_up(max(len(pr) + len(c) for pr, c in rows), pad_multiple)
    C = min(L, _round_up(max(len(c) for _, c in rows), pad_multiple))
    n = 2 * batch_size
    inputs = np.full((n, L), pad_id, dtype=np.int32)
    positions = np.zeros((n, C), dtype=np.int32)
    targets = np.zeros((n, C), dtype=np.int32)
    mask = np.zeros((n, C), dtype=np.float32)
    n_tokens = 0
    for r, (prompt, completion) in enumerate(rows):
        row = r if r < real else batch_size + (r - real)  # rejected rows start at batch_size
        seq = np.concatenate([prompt, completion])  # ids are int32 arrays: `+` would add them
        inputs[row, : len(seq)] = seq
        P, c = len(prompt), len(completion)
        # The logits at position t predict token t+1, so completion token j (at P+j) is scored
        # from the output at position P+j-1. Padding positions are clamped into range and masked.
        positions[row] = np.minimum(np.arange(C) + P - 1, L - 1)
        targets[row, :c] = completion
        mask[row, :c] = 1.0
        n_tokens += len(seq)
    # Filler rows (a short last batch) copy pair 0's tokens so shapes stay fixed; they carry no weight.
    for f in range(real, batch_size):
        for base in (0, batch_size):
            inputs[base + f], positions[base + f], targets[base + f] = inputs[base], positions[base], targets[base]
    pair_mask = np.zeros((batch_size,), dtype=np.float32)
    pair_mask[:real] = 1.0
    idx = np.array(list(indices) + [indices[0]] * (batch_size - real), dtype=np.int64)
    return Batch(inputs, positions, targets, mask, pair_mask, idx, n_tokens)


def by_length(pair: TokenizedPair) -> tuple:
    """Sort key for the unshared layout, whose rows are padded to the longest prompt + answer."""
    return (pair.length,)


def epoch_order(pairs: list[TokenizedPair], batch_size: int, seed: int, epoch: int,
                key=by_length) -> list[list[int]]:
    """The batches of one epoch: pairs grouped by `key` (similar shapes, less padding), order shuffled.

    A pure function of (seed, epoch), so a resumed run recomputes the same order and skips what it did.
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(pairs)
    tiebreak = rng.permutation(n)
    keys = np.array([key(p) for p in pairs]).reshape(n, -1)
    order = np.lexsort((tiebreak, *keys.T[::-1]))  # by key, random among equal keys
    batches = [order[i: i + batch_size].tolist() for i in range(0, n, batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[j] for j in perm]


def sequential_batches(pairs: list[TokenizedPair], batch_size: int, key=by_length) -> list[list[int]]:
    """Fixed, sorted batches for forward-only passes (reference and evaluation)."""
    order = sorted(range(len(pairs)), key=lambda i: key(pairs[i]))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


def batches_per_epoch(n_pairs: int, batch_size: int) -> int:
    return -(-n_pairs // batch_size)


def epochs_to_run(cfg, steps_per_epoch: int) -> int:
    """--epochs, or (without --iters and --epochs) 1, or as many as make `cfg.min_steps` steps: a file of a
    few picks makes 1 or 2 steps an epoch, which moves a LoRA adapter from zero by almost nothing."""
    if cfg.epochs:
        return cfg.epochs
    return max(1, -(-cfg.min_steps // max(1, steps_per_epoch)))


def total_steps(cfg, batches: int) -> int:
    """Optimizer steps of a run whose data makes `batches` micro-batches an epoch (the one rule of the trainer
    and of resume's check before the data is loaded)."""
    per_epoch = max(1, batches // cfg.grad_accum)
    return cfg.iters or epochs_to_run(cfg, per_epoch) * per_epoch
