"""The DPO loss family, from policy and reference completion log-probs.

With h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l)):
  sigmoid  −(1−ε)·log σ(β h) − ε·log σ(−β h)      (DPO; ε > 0: conservative DPO, cDPO — not robust DPO,
                                                   which divides by 1 − 2ε and subtracts the flipped term)
  ipo      (h − 1/(2β))², with length-averaged log-probs, as in the IPO paper and TRL
  hinge    max(0, 1 − β h)                         (SLiC)
  simpo    −log σ(β (ā_w − ā_l) − γ), ā = length-averaged policy log-prob, no reference (ε: as in cDPO)
Label smoothing ε has no effect on the other losses; `Loss.ignored_settings` says so (logged once per run).
RPO (TRL's `rpo_alpha`, Pang et al. 2024): + α · (the chosen answer's mean token NLL, −log π(y_w) / |y_w|),
which keeps the chosen answers likely while the margin grows — DPO alone can lower both answers'
likelihood, which on a model's own samples (iterative DPO) moves mass to answers nobody judged.
Rewards follow TRL: β·(log π − log π_ref) summed over completion tokens (SimPO: β·ā).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

STAT_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
             "logps/chosen", "logps/rejected")


def dpo_losses(policy_c, policy_r, ref_c, ref_r, ntok_c, ntok_r, *, loss: str, beta: float,
               label_smoothing: float = 0.0, simpo_gamma: float = 0.5, rpo_alpha: float = 0.0):
    """Per-pair losses and rewards. All inputs have shape (B,); returns (losses, chosen_r, rejected_r)."""
    losses, chosen_r, rejected_r = _pair_losses(policy_c, policy_r, ref_c, ref_r, ntok_c, ntok_r, loss=loss,
                                                beta=beta, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma)
    if rpo_alpha:
        losses = losses + rpo_alpha * (-policy_c / ntok_c)
    return losses, chosen_r, rejected_r


def _pair_losses(policy_c, policy_r, ref_c, ref_r, ntok_c, ntok_r, *, loss, beta, label_smoothing, simpo_gamma):
    if loss == "simpo":
        avg_c, avg_r = policy_c / ntok_c, policy_r / ntok_r
        logits = beta * (avg_c - avg_r) - simpo_gamma
        losses = (-(1 - label_smoothing) * nn.log_sigmoid(logits)
                  - label_smoothing * nn.log_sigmoid(-logits))
        return losses, beta * avg_c, beta * avg_r
    chosen_r = beta * (policy_c - ref_c)
    rejected_r = beta * (policy_r - ref_r)
    if loss == "ipo":
        h = (policy_c - ref_c) / ntok_c - (policy_r - ref_r) / ntok_r
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        h = (policy_c - ref_c) - (policy_r - ref_r)
        if loss == "sigmoid":
            losses = (-(1 - label_smoothing) * nn.log_sigmoid(beta * h)
                      - label_smoothing * nn.log_sigmoid(-beta * h))
        elif loss == "hinge":
            losses = mx.maximum(0.0, 1 - beta * h)
        else:
            raise ValueError(f"unknown loss {loss!r}")
    return losses, chosen_r, rejected_r


REFERENCE_FREE = ("simpo",)  # losses that never look at the reference log-probs
SMOOTHED = ("sigmoid", "simpo")  # losses that use label_smoothing (conservative DPO)


@dataclass(frozen=True)
class Loss:
    """One member of the DPO family bound to its settings, once per run (as torchtune's DPOLoss).

    Called on (B,)-shaped policy and reference log-probs and completion token counts, it returns
    per-pair (losses, chosen rewards, rejected rewards). `needs_reference` is False for SimPO, whose
    runs skip the reference pass and get zeros in its place.
    """

    kind: str = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    desirable_weight: float = 1.0    # KTO only
    undesirable_weight: float = 1.0  # KTO only
    rpo_alpha: float = 0.0           # paired losses: weight of the chosen answers' NLL (RPO)

    @classmethod
    def from_config(cls, cfg) -> "Loss":
        return cls(cfg.loss, cfg.beta, cfg.label_smoothing, cfg.simpo_gamma,
                   getattr(cfg, "desirable_weight", 1.0), getattr(cfg, "undesirable_weight", 1.0),
                   getattr(cfg, "rpo_alpha", 0.0))

    def ignored_settings(self) -> list[str]:
        """Warnings for settings this loss does not use although they are set (logged once per run)."""
        if self.label_smoothing and self.kind not in SMOOTHED:
            return [f"--label-smoothing {self.label_smoothing} has no effect with --loss {self.kind}: conservative "
                    f"DPO smoothing applies to {' and '.join(SMOOTHED)} only; it is ignored"]
        if self.rpo_alpha and self.unpaired:
            return [f"--rpo-alpha {self.rpo_alpha} has no effect with --loss kto (it weights the chosen answer of "
                    "a pair); it is ignored"]
        return []

    @property
    def needs_reference(self) -> bool:
        return self.kind not in REFERENCE_FREE

    @property
    def unpaired(self) -> bool:
        """KTO: every example is one completion with a label; its "rejected" row is the KL completion."""
        return self.kind == "kto"

    def __call__(self, policy_c, policy_r, ref_c, ref_r, ntok_c, ntok_r, labels=None, mask=None):
        """(losses, chosen rewards, rejected rewards) per pair; for KTO (losses, rewards, KL point)."""
        if self.unpaired:
            from .kto import kto_losses
            return kto_losses(policy_c, ref_c, policy_r, ref_r, labels, mask, beta=self.beta,
                              desirable_weight=self.desirable_weight, undesirable_weight=self.undesirable_weight)
        return dpo_losses(policy_c, policy_r, ref_c, ref_r, ntok_c, ntok_r, loss=self.kind, beta=self.beta,
                          label_smoothing=self.label_smoothing, simpo_gamma=self.simpo_gamma,
                          rpo_alpha=self.rpo_alpha)

    def stats(self, losses, chosen_r, rejected_r, policy_c, policy_r, mask, labels=None) -> mx.array:
        """Summed stats of a batch (combinable across micro-batches and log windows)."""
        if self.unpaired:
            from .kto import kto_stats
            return kto_stats(losses, chosen_r, rejected_r, policy_c, labels, mask)
        return pair_stats(losses, chosen_r, rejected_r, policy_c, policy_r, mask)

    def to_metrics(self, stats: list, prefix: str = "") -> dict:
        if self.unpaired:
            from .kto import kto_metrics
            return kto_metrics(stats, prefix)
        return stats_to_metrics(stats, prefix)

    def metrics(self, policy: dict, ref: dict | None, prefix: str = "", labels=None) -> dict:
        """TRL-named metrics over whole arrays of scored pairs (as returned by reference.score_pairs)."""
        n = len(policy["chosen"])
        zeros = np.zeros(n, dtype=np.float32)
        pc, pr = mx.array(policy["chosen"]), mx.array(policy["rejected"])
        mask = mx.ones(n)
        lab = mx.array(labels) if labels is not None else None
        losses, cr, rr = self(pc, pr, mx.array(ref["chosen"] if ref is not None else zeros),
                              mx.array(ref["rejected"] if ref is not None else zeros),
                              mx.array(np.maximum(policy["ntok_chosen"], 1)),
                              mx.array(np.maximum(policy["ntok_rejected"], 1)), labels=lab, mask=mask)
        return self.to_metrics(np.array(self.stats(losses, cr, rr, pc, pr, mask, lab)).tolist(), prefix)


def pair_stats(losses, chosen_r, rejected_r, policy_c, policy_r, pair_mask) -> mx.array:
    """Sums over real pairs of each STAT_KEYS entry, plus the pair count as the last element.

    Sums (not means) so micro-batches and log windows combine exactly; divide by the count to report.
    """
    m = pair_mask
    return mx.stack([
        (losses * m).sum(),
        (chosen_r * m).sum(),
        (rejected_r * m).sum(),
        ((chosen_r - rejected_r) * m).sum(),
        ((chosen_r > rejected_r).astype(mx.float32) * m).sum(),
        (policy_c * m).sum(),
        (policy_r * m).sum(),
        m.sum(),
    ])


def stats_to_metrics(stats, prefix: str = "") -> dict:
    """Turn summed stats (as a list of floats) into TRL-named means."""
    n = stats[-1]
    if n <= 0:
        return {}
    out = {prefix + k: float(v) / n for k, v in zip(STAT_KEYS, stats[:-1])}
    out[prefix + "n_pairs"] = int(n)
    return out
