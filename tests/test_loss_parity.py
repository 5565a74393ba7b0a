"""Every loss of the registry against TRL's own code (trl 1.16), not a transcription of it.

The same log-probs go to both: TRL's trainer methods run on a stand-in `self` carrying the settings they
read, and on a stand-in model whose output *is* the given per-token log-probs (DPOTrainer, KTOTrainer:
the fused LM head's `log_probs`) or logits built so that their log-softmax at each label is exactly the
given log-prob (CPOTrainer, ORPOTrainer: the NLL then comes out of TRL's own cross-entropy). The loss,
the gradient with respect to every token log-prob and every metric both compute must agree to 1e-6,
in float64 (ORPO: TRL casts its log-odds to float32, so 1e-6 absolute there).

What is not compared: TRL's logits/*, entropy, mean_token_accuracy and num_tokens need the logits or
the whole sequence, which a loss of log-probs never sees; they are listed below so a new TRL metric
cannot slip by unnoticed.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
import pytest
import torch
from trl.experimental.cpo.cpo_trainer import CPOTrainer
from trl.experimental.orpo.orpo_trainer import ORPOTrainer
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer

from mlx_dpo.train.losses import REGISTRY, DPOKind, Loss, Scores, UnpairedKind

NOT_FROM_LOGPROBS = {"entropy", "num_tokens", "logits/chosen", "logits/rejected", "mean_token_accuracy"}
TOL = dict(rtol=1e-6, atol=1e-9)
CPU = torch.device("cpu")
# TRL's DPOTrainer refuses exo_pair without smoothing; robust and aot* take it too.
SMOOTHING = {"exo_pair": 1e-3, "robust": 0.1, "aot": 0.1, "aot_unpaired": 0.1}


def batch(seed: int, n: int = 6, unpaired: bool = False):
    """Random per-token log-probs of n chosen and n rejected (or KL) completions, 1..6 tokens each, and
    reference sums; float64."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=2 * n)
    tokens = [rng.uniform(-2.0, -0.1, size=k) for k in lengths]
    sums = np.array([t.sum() for t in tokens])
    ref = sums + rng.normal(0, 1.5, size=2 * n)
    labels = rng.permutation([1.0] * (n // 2 + 1) + [0.0] * (n - n // 2 - 1)) if unpaired else None
    return SimpleNamespace(n=n, tokens=tokens, lengths=lengths.astype(float), sums=sums, ref=ref, labels=labels)


def padded(d):
    """(2n, L) per-token values after one prompt token, and the completion mask (prompt, answer, padding)."""
    L = 1 + int(d.lengths.max())
    values = np.zeros((2 * d.n, L - 1))
    completion = np.zeros((2 * d.n, L), dtype=np.int64)
    for i, t in enumerate(d.tokens):
        values[i, : len(t)] = t
        completion[i, 1: 1 + len(t)] = 1
    return values, completion


def per_sequence_grad(grad: np.ndarray, completion: np.ndarray) -> np.ndarray:
    """The gradient with respect to each sequence's summed log-prob: every token of a row must carry the
    same one (the losses read the log-probs through their sums), which is checked."""
    out = []
    for g, m in zip(grad, completion[:, 1:].astype(bool)):
        np.testing.assert_allclose(g[m], g[m][0], rtol=1e-9, atol=1e-12)
        out.append(g[m][0])
    return np.array(out)


def stand_in(cls, methods, **attrs):
    """An object with TRL's own methods (static ones kept static) and the attributes they read."""
    ns = {name: inspect.getattr_static(cls, name) for name in methods}
    obj = type(f"StandIn{cls.__name__}", (), ns)()
    obj.__dict__.update(attrs)
    return obj


ACCELERATOR = SimpleNamespace(device=CPU, gather_for_metrics=lambda t: t, gather=lambda t: t)


# ----------------------------------------------------------------------------------------- TRL's side
def trl_dpo(d, loss_types, weights, beta, label_smoothing=0.0, discopop_tau=0.05):
    values, completion = padded(d)
    leaf = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(completion[:, 1:], dtype=torch.float64)

    def model(**kw):
        zeros = torch.zeros_like(leaf)
        return SimpleNamespace(log_probs=leaf * shift, entropy=zeros, mean_logits=zeros,
                               is_top1=torch.zeros_like(leaf, dtype=torch.bool))

    n = d.n
    inputs = {"input_ids": torch.zeros(completion.shape, dtype=torch.long),
              "attention_mask": torch.tensor(np.maximum(completion, np.eye(1, completion.shape[1], dtype=np.int64))),
              "completion_mask": torch.tensor(completion),
              "ref_chosen_logps": torch.tensor(d.ref[:n]), "ref_rejected_logps": torch.tensor(d.ref[n:])}
    me = SimpleNamespace(model=SimpleNamespace(training=True), accelerator=ACCELERATOR, aux_loss_enabled=False,
                         ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                         loss_types=list(loss_types), loss_weights=list(weights), beta=beta,
                         label_smoothing=label_smoothing, args=SimpleNamespace(discopop_tau=discopop_tau),
                         use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)),
                         _total_train_tokens=0, _tp_size=1)
    loss = DPOTrainer._compute_loss(me, model, inputs, False)
    loss.backward()
    metrics = {k: v[-1] for k, v in me._metrics["train"].items()}
    return loss.item(), per_sequence_grad(leaf.grad.numpy(), completion), metrics


def logits_for(completion: np.ndarray, leaf: torch.Tensor):
    """(rows, L, 2) logits whose log-softmax at label 0 is each completion token's log-prob (the logits at
    position t predict token t + 1); elsewhere zeros."""
    target = torch.tensor(completion[:, 1:], dtype=torch.bool)
    safe = torch.where(target, leaf, torch.full_like(leaf, -1.0))  # no inf off the targets (NaN gradients)
    first = torch.where(target, safe - torch.log1p(-torch.exp(safe)), torch.zeros_like(leaf))
    predicting = torch.stack([first, torch.zeros_like(first)], dim=-1)
    return torch.cat([predicting, torch.zeros(len(completion), 1, 2, dtype=torch.float64)], dim=1)


def trl_pairwise(trainer, d, **attrs):
    """CPOTrainer or ORPOTrainer's get_batch_loss_metrics on a batch of one-token prompts."""
    values, completion = padded(d)
    leaf = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    logits = logits_for(completion, leaf)
    n = d.n
    ids = torch.zeros(completion.shape, dtype=torch.long)
    attention = torch.tensor(np.maximum(completion, np.eye(1, completion.shape[1], dtype=np.int64)))
    labels = torch.where(torch.tensor(completion) == 1, ids, torch.full_like(ids, -100))
    sides = {"chosen": slice(0, n), "rejected": slice(n, 2 * n)}
    data = {f"{side}_{key}": value[sl] for side, sl in sides.items()
            for key, value in (("input_ids", ids), ("attention_mask", attention), ("labels", labels))}

    def model(input_ids, attention_mask=None, use_cache=False, **kw):
        return SimpleNamespace(logits=logits)

    methods = ["concatenated_forward", "concatenated_inputs", "get_batch_logps",
               "cpo_loss" if trainer is CPOTrainer else "odds_ratio_loss"]
    me = stand_in(trainer, methods, is_encoder_decoder=False, accelerator=ACCELERATOR, aux_loss_enabled=False,
                  pad_token_id=0, padding_value=0, **attrs)
    loss, metrics = trainer.get_batch_loss_metrics(me, model, data, "train")
    loss.backward()
    return loss.item(), per_sequence_grad(leaf.grad.numpy(), completion), metrics


def trl_kto(d, loss_type, beta, desirable_weight, undesirable_weight):
    values, completion = padded(d)
    n = d.n
    leaf = torch.tensor(values[:n], dtype=torch.float64, requires_grad=True)
    shift = torch.tensor(completion[:n, 1:], dtype=torch.float64)
    kl_values = torch.tensor(values[n:] * completion[n:, 1:])
    ids, kl_ids = torch.zeros((n, completion.shape[1]), dtype=torch.long), torch.ones((n, completion.shape[1]),
                                                                                     dtype=torch.long)
    attention = torch.tensor(np.maximum(completion, np.eye(1, completion.shape[1], dtype=np.int64)))

    def model(input_ids, **kw):
        if input_ids is kl_ids:
            return SimpleNamespace(log_probs=kl_values)
        zeros = torch.zeros_like(leaf)
        return SimpleNamespace(log_probs=leaf * shift, entropy=zeros, mean_logits=zeros)

    inputs = {"input_ids": ids, "attention_mask": attention[:n], "completion_mask": torch.tensor(completion[:n]),
              "KL_input_ids": kl_ids, "KL_attention_mask": attention[n:],
              "KL_completion_mask": torch.tensor(completion[n:]), "label": torch.tensor(d.labels > 0),
              "ref_logps": torch.tensor(d.ref[:n]), "ref_KL_logps": torch.tensor(d.ref[n:])}
    me = stand_in(KTOTrainer, ["_compute_kl_logps"], model=SimpleNamespace(training=True), accelerator=ACCELERATOR,
                  calculate_KL=loss_type != "apo_zero_unpaired", precompute_ref_logps=True, loss_type=loss_type,
                  beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight,
                  aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0,
                  _tp_size=1)
    loss = KTOTrainer._compute_loss(me, model, inputs, False)
    loss.backward()
    grads = per_sequence_grad(leaf.grad.numpy(), completion[:n])
    return loss.item(), np.concatenate([grads, np.zeros(n)]), {k: v[-1] for k, v in me._metrics["train"].items()}


# ----------------------------------------------------------------------------------------- our side
def ours(d, loss: Loss):
    """Our loss (the batch mean), its gradient w.r.t. the summed log-probs and metrics, in float64."""
    n = d.n
    f64 = lambda v: mx.array(np.asarray(v, dtype=np.float64), dtype=mx.float64)  # noqa: E731
    labels = f64(d.labels) if d.labels is not None else None
    ref = d.ref if loss.needs_reference else np.zeros(2 * n)

    def scores(logps):
        return Scores(logps[:n], logps[n:], f64(ref[:n]), f64(ref[n:]), f64(d.lengths[:n]), f64(d.lengths[n:]),
                      mx.ones(n, dtype=mx.float64), labels)

    def mean_loss(logps):
        return loss.losses(scores(logps)).mean()

    logps = f64(d.sums)
    value, grad = mx.value_and_grad(mean_loss)(logps)
    x = scores(logps)
    metrics = loss.to_metrics(np.array(loss.stats(x, loss.losses(x))).tolist())
    return float(value), np.array(grad), metrics


def assert_same(trl_out, our_out, tol=TOL, skip=()):
    (t_loss, t_grad, t_metrics), (o_loss, o_grad, o_metrics) = trl_out, our_out
    np.testing.assert_allclose(o_loss, t_loss, **tol)
    np.testing.assert_allclose(o_grad, t_grad, **tol)
    compared = set(t_metrics) - NOT_FROM_LOGPROBS - set(skip)
    assert compared <= set(o_metrics), f"TRL metrics we do not report: {sorted(compared - set(o_metrics))}"
    for key in sorted(compared):
        np.testing.assert_allclose(o_metrics[key], float(t_metrics[key]), err_msg=key, **tol)
    if "loss" in o_metrics:
        np.testing.assert_allclose(o_metrics["loss"], t_loss, **tol)
    return compared


# ----------------------------------------------------------------------------------------- the tests
DPO_KINDS = [n for n, k in REGISTRY.items() if isinstance(k, DPOKind)]
UNPAIRED_KINDS = [n for n, k in REGISTRY.items() if isinstance(k, UnpairedKind)]


def test_every_registered_loss_has_a_parity_case_here():
    covered = set(DPO_KINDS) | set(UNPAIRED_KINDS) | {"cpo", "simpo", "orpo"}
    assert covered == set(REGISTRY)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", DPO_KINDS)
def test_dpo_trainer_loss_equals_trls(name, seed):
    d, beta, eps = batch(seed), 0.3, SMOOTHING.get(name, 0.0)
    compared = assert_same(trl_dpo(d, [name], [1.0], beta, eps), ours(d, Loss(name, beta, label_smoothing=eps)))
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected"} <= compared


@pytest.mark.parametrize("names,weights", [(["sigmoid", "sft"], [1.0, 0.5]),
                                           (["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]),  # MPO
                                           (["ipo", "hinge"], [1.0, 1.0])])
def test_weighted_combinations_equal_trls_loss_type_lists(names, weights):
    d = batch(3)
    assert_same(trl_dpo(d, names, weights, 0.2), ours(d, Loss(",".join(names), 0.2, weights=weights)))


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_sigmoid_label_smoothing_is_cdpo_as_trls_aot_on_one_pair(eps):
    """TRL 1.16's sigmoid has no smoothing any more; its aot on a batch of one pair is exactly conservative
    DPO (sorting one value changes nothing), so TRL's code still gives cDPO's numbers."""
    full = batch(4, n=4)
    for i in range(full.n):
        pick = [i, full.n + i]
        d = SimpleNamespace(n=1, tokens=[full.tokens[j] for j in pick], lengths=full.lengths[pick],
                            sums=full.sums[pick], ref=full.ref[pick], labels=None)
        assert_same(trl_dpo(d, ["aot"], [1.0], 0.4, eps), ours(d, Loss("sigmoid", 0.4, label_smoothing=eps)))


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cpo_equals_trls_cpo_trainer(eps):
    d = batch(5)
    compared = assert_same(trl_pairwise(CPOTrainer, d, loss_type="sigmoid", beta=0.2, label_smoothing=eps,
                                        cpo_alpha=0.7, alpha=0.0),
                           ours(d, Loss("cpo", 0.2, label_smoothing=eps, cpo_alpha=0.7)))
    assert "nll_loss" in compared


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_simpo_equals_trls_cpo_trainer_with_simpo_and_no_nll(eps):
    d = batch(6)
    trl_out = trl_pairwise(CPOTrainer, d, loss_type="simpo", beta=2.0, label_smoothing=eps, cpo_alpha=0.0,
                           simpo_gamma=0.8, alpha=0.0)
    assert trl_out[2]["nll_loss"] == 0.0  # TRL logs a zero NLL when cpo_alpha is 0; we leave it out
    assert_same(trl_out, ours(d, Loss("simpo", 2.0, label_smoothing=eps, simpo_gamma=0.8)), skip={"nll_loss"})


@pytest.mark.parametrize("lam", [0.1, 1.5])
def test_orpo_equals_trls_orpo_trainer(lam):
    """One-token prompts: TRL's ORPO NLL runs over prompt and answer, and a first token is never predicted,
    so with them it is the answer's NLL, which is ours (see the module docstring of train/losses.py)."""
    d = batch(7)
    compared = assert_same(trl_pairwise(ORPOTrainer, d, beta=lam), ours(d, Loss("orpo", orpo_lambda=lam)),
                           tol=dict(rtol=1e-6, atol=1e-6))
    assert {"nll_loss", "log_odds_ratio", "log_odds_chosen"} <= compared


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", UNPAIRED_KINDS)
def test_unpaired_loss_equals_trls_kto_trainer(name, seed):
    d = batch(seed + 10, n=7, unpaired=True)
    compared = assert_same(trl_kto(d, name, 0.3, 1.3, 0.8),
                           ours(d, Loss(name, 0.3, desirable_weight=1.3, undesirable_weight=0.8)))
    assert {"kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen",
            "logps/rejected"} <= compared


def test_ipo_rewards_are_on_trls_summed_scale():
    """TRL 1.16 divides by the length inside IPO's loss only; its rewards stay β × summed log-ratios."""
    d = batch(8)
    _, _, metrics = ours(d, Loss("ipo", 0.5))
    n = d.n
    assert metrics["rewards/chosen"] == pytest.approx(0.5 * np.mean(d.sums[:n] - d.ref[:n]), rel=1e-9)
    assert not math.isclose(metrics["rewards/chosen"],
                            0.5 * np.mean((d.sums[:n] - d.ref[:n]) / d.lengths[:n]), rel_tol=1e-3)
