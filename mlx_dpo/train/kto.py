"""Kahneman–Tversky Optimization (KTO) for unpaired completions marked desirable or undesirable.

TRL's formula (KTOTrainer's loss_type 'kto'), with r = log π(y|x) − log π_ref(y|x) summed over completion tokens:

    z0      = max(0, mean over the batch of  log π(y'|x) − log π_ref(y'|x))   with y' a mismatched
              completion (another example's), as the KL reference point; no gradient flows through it
    desirable    loss = λ_D · (1 − σ(β (r − z0)))
    undesirable  loss = λ_U · (1 − σ(β (z0 − r)))
    reward  = β r

Here every example travels as a "pair" (prompt_i, completion_i, completion_j): the layouts score the
example and its mismatched KL completion in the same forward (sharing the prompt), and the reference
log-probs of both are precomputed and cached exactly as DPO's are. Labels are 1 (desirable) or 0.
TRL's other unpaired loss, apo_zero_unpaired, drops the KL point (TRL reports its kl as 0).
"""

from __future__ import annotations

import mlx.core as mx

# Sums kept per step and log window (combined exactly across micro-batches), then turned into TRL names.
KTO_STAT_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "kl",
                 "rewards/accuracies")


def kl_point(policy_kl, ref_kl, mask):
    """KTO's KL reference point z0: the batch mean of the mismatched completions' log-ratios, at least 0,
    with no gradient through it."""
    n = mx.maximum(mask.sum(), 1.0)
    return mx.stop_gradient(mx.maximum(((policy_kl - ref_kl) * mask).sum() / n, 0.0))


def unpaired_losses(kind: str, logratio, kl, labels, *, beta: float, desirable_weight: float = 1.0,
                    undesirable_weight: float = 1.0):
    """Per-example losses of KTOTrainer's loss types, from r = log π − log π_ref and the KL point:
    kto (above) or apo_zero_unpaired (APO-zero without the KL point: 1 − σ(β r) desirable, σ(β r) not)."""
    if kind == "kto":
        desirable = 1 - mx.sigmoid(beta * (logratio - kl))
        undesirable = 1 - mx.sigmoid(beta * (kl - logratio))
    else:
        desirable = 1 - mx.sigmoid(beta * logratio)
        undesirable = mx.sigmoid(beta * logratio)
    return mx.where(labels > 0, desirable_weight * desirable, undesirable_weight * undesirable)


def kto_losses(policy, ref, policy_kl, ref_kl, labels, mask, *, beta: float, desirable_weight: float = 1.0,
               undesirable_weight: float = 1.0):
    """Per-example (losses, rewards) and the batch's KL reference point; all inputs have shape (B,)."""
    kl = kl_point(policy_kl, ref_kl, mask)
    losses = unpaired_losses("kto", policy - ref, kl, labels, beta=beta, desirable_weight=desirable_weight,
                             undesirable_weight=undesirable_weight)
    return losses, beta * (policy - ref), kl


def kto_stats(losses, rewards, kl, policy, labels, mask) -> mx.array:
    """Summed stats of real examples: each KTO_STAT_KEYS entry's numerator, then the two class counts
    and the example count. "rewards/accuracies" counts examples whose reward has its label's sign."""
    des, und = mask * (labels > 0), mask * (labels <= 0)
    agree = mx.where(labels > 0, rewards > 0, rewards < 0).astype(rewards.dtype)
    return mx.stack([(losses * mask).sum(), (rewards * des).sum(), (rewards * und).sum(),
                     (policy * des).sum(), (policy * und).sum(), kl * mask.sum(), (agree * mask).sum(),
                     des.sum(), und.sum(), mask.sum()])


def kto_metrics(stats, prefix: str = "") -> dict:
    """TRL-named means of summed kto_stats (a list of floats)."""
    (loss, r_des, r_und, lp_des, lp_und, kl, agree, n_des, n_und, n) = stats
    if n <= 0:
        return {}

    def mean(total, count):
        return float(total) / count if count > 0 else 0.0

    out = {"loss": loss / n, "rewards/chosen": mean(r_des, n_des), "rewards/rejected": mean(r_und, n_und),
           "logps/chosen": mean(lp_des, n_des), "logps/rejected": mean(lp_und, n_und), "kl": kl / n,
           "rewards/accuracies": agree / n}
    out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    out = {prefix + k: float(v) for k, v in out.items()}
    out.update({prefix + "count/chosen": int(n_des), prefix + "count/rejected": int(n_und),
                prefix + "n_pairs": int(n)})
    return out


def class_balance_warning(n_desirable: int, n_undesirable: int, desirable_weight: float,
                          undesirable_weight: float) -> str | None:
    """The KTO paper advises λ_D·n_D / (λ_U·n_U) in [1, 4/3]; say so (once) when the data leaves it."""
    if not n_desirable or not n_undesirable:
        return (f"KTO needs both desirable and undesirable examples; this data has {n_desirable} desirable and "
                f"{n_undesirable} undesirable")
    ratio = desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
    if 1.0 <= ratio <= 4 / 3:
        return None
    return (f"KTO: desirable_weight x desirable / (undesirable_weight x undesirable) = {ratio:.2f} "
            f"({n_desirable} desirable, {n_undesirable} undesirable); the KTO paper advises 1 to 1.33 — adjust "
            "--desirable-weight / --undesirable-weight")
