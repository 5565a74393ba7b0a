"""Held-out evaluation: DPO loss and TRL reward metrics over a whole file, dropout off."""

from __future__ import annotations

from .distributed import SINGLE, World
from .losses import Loss
from .reference import score_pairs
from ..data.template import TokenizedPair


def metrics_from_logps(policy: dict, ref: dict | None, *, loss: str, beta: float,
                       label_smoothing: float, simpo_gamma: float, prefix: str = "") -> dict:
    """DPO metrics of whole arrays of policy (and reference) log-probs, as returned by score_pairs.

    For callers that hold loss settings rather than a Loss (the benchmark's shared evaluator)."""
    return Loss(loss, beta, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma).metrics(policy, ref, prefix)


def evaluate(model, pairs: list[TokenizedPair], ref: dict | None, loss: Loss, *, batch_size: int,
             pad_multiple: int, pad_id: int = 0, prefix: str = "", world: World = SINGLE, layout=None,
             progress=None, labels=None) -> dict:
    was_training = model.training
    model.eval()
    policy = score_pairs(model, pairs, batch_size, pad_multiple, pad_id, progress=progress, world=world,
                         layout=layout)
    if was_training:
        model.train()
    return loss.metrics(policy, ref, prefix, labels)
