"""The preference losses: one registry, each loss one small class, each exact to TRL 1.16's own code.

A loss class declares what the CLI, the YAML keys, the app's menu and the README's table are made from:
its name (TRL's `loss_type`), its paper, one line on when to use it, whether it needs the reference
log-probs, paired or unpaired data, which log-probs its formula reads (summed over the answer, or the
per-token mean as TRL's IPO), its hyper-parameters (entries of PARAMS) and its metrics — and its
formula, on the (B,)-shaped log-probs of a batch (`Scores`). Adding a loss is one class here with
`@register`, plus its tests (tests/test_loss_parity.py runs it against TRL's code).

Notation: for pair i, c/r = log π(y_w)/log π(y_l) summed over completion tokens, c_ref/r_ref the same
for the reference, n_c/n_r the completion lengths; the log-ratios are c − c_ref and r − r_ref, and
Δ = (c − c_ref) − (r − r_ref).

Metrics follow the trainer TRL computes each loss in. DPOTrainer's losses all report rewards
β·(log π − log π_ref) on *summed* log-probs (TRL 1.16 does so for IPO too, whose loss reads the per-token
mean) and logps/* summed; CPOTrainer's (cpo, simpo) β·log π on the log-probs their loss reads;
ORPOTrainer's λ·(mean log π) plus nll_loss, log_odds_ratio and log_odds_chosen; KTOTrainer's its
class means and the KL point (kto.py). TRL's logits/*, entropy and token accuracy need the logits and
are not reported.

DPOTrainer's losses combine as TRL's `loss_type` list: `--loss sigmoid,sft --loss-weights 1,0.5` is
Σ weight · loss. RPO (`--rpo-alpha`, Pang et al. 2024) adds α times the chosen answer's per-token mean
NLL to any paired loss (TRL 1.x spells it `sft` in a combination, which averages over the batch's tokens
instead of per answer).

This module loads no MLX when imported: the config and the app read the registry, and MLX is imported
on the first formula evaluated (`_Lazy`).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np


class _Lazy:
    """A module imported on first attribute use (the registry is read by code that must not load MLX)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


mx = _Lazy("mlx.core")
nn = _Lazy("mlx.nn")


# ---------------------------------------------------------------------------------------------- settings
def _positive(v):
    return None if math.isfinite(v) and v > 0 else f"must be a positive number, got {v}"


def _non_negative(v):
    return None if math.isfinite(v) and v >= 0 else f"must be a non-negative number, got {v}"


def _finite(v):
    return None if math.isfinite(v) else f"must be a finite number, got {v}"


def _flip_rate(v):
    return None if 0 <= v < 0.5 else f"must be in [0, 0.5), got {v}"


@dataclass(frozen=True)
class Param:
    """A loss hyper-parameter: a TrainConfig field (flag --name-with-dashes, YAML key name) and a form field."""

    name: str
    default: float
    help: str
    check: Callable[[float], str | None] = _positive  # an error text for a bad value, else None
    label: str = ""                                    # the app's form label (default: the name)
    form: bool = True                                  # shown in the app's Train form

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


PARAMS: dict[str, Param] = {p.name: p for p in (
    Param("beta", 0.1, "Strength of the KL penalty: higher beta keeps the policy closer to the reference (IPO: "
          "its tau; CPO, SimPO: the reward scale)."),
    Param("label_smoothing", 0.0, "Assumed fraction of flipped labels, in [0, 0.5): conservative DPO (cDPO) with "
          "sigmoid, aot, aot_unpaired, cpo and simpo; the flip rate of robust; EXO's epsilon (exo_pair needs it "
          "above 0).", _flip_rate, "smoothing"),
    Param("simpo_gamma", 0.5, "Target reward margin of SimPO.", _finite, "SimPO gamma"),
    Param("cpo_alpha", 1.0, "CPO: weight of the chosen answers' NLL (token mean over the batch).", _non_negative,
          "CPO alpha"),
    Param("orpo_lambda", 0.1, "ORPO: weight of the odds-ratio term (TRL's beta; lambda in the paper).",
          _non_negative, "ORPO lambda"),
    Param("discopop_tau", 0.05, "DiscoPOP: temperature of the log-ratio modulation (0.05 in the paper).",
          _positive, "DiscoPOP tau"),
    Param("desirable_weight", 1.0, "KTO: weight of the desirable examples' loss.", label="desirable wt"),
    Param("undesirable_weight", 1.0, "KTO: weight of the undesirable examples' loss (the KTO paper advises "
          "weights that make desirable x weight / undesirable x weight 1 to 4/3).", label="undesirable wt"),
    Param("rpo_alpha", 0.0, "RPO: add this weight times the chosen answers' mean token NLL to a paired loss, so "
          "the chosen answers stay likely (iterative DPO on the model's own samples needs it; 1.0 in the RPO "
          "paper). 0: off.", _non_negative, "RPO alpha"),
)}
PAIRED_EXTRA = ("rpo_alpha",)  # settings every paired loss takes besides its own


# ---------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Scores:
    """A batch's log-probs as the losses read them: (B,) arrays, real pairs first, fillers after (every
    layout builds its batches so). Unpaired losses: `chosen` is the example, `rejected` its KL completion."""

    chosen: Any
    rejected: Any
    ref_chosen: Any      # zeros for reference-free losses
    ref_rejected: Any
    ntok_chosen: Any     # completion tokens, at least 1
    ntok_rejected: Any
    mask: Any            # 1 for a real pair, 0 for a filler
    labels: Any = None   # unpaired: 1 desirable, 0 undesirable
    nll_scale: Any = None  # pairs / chosen tokens of the optimizer step (see `nll`); None: this batch's

    def with_safe_fillers(self) -> "Scores":
        """These scores with every filler row set to a harmless pair (log-probs −1 per token, reference
        alike) and no gradient through it: an empty slot of a packed row scores log-prob 0, where ORPO's
        log(1 − p) is −inf, and a NaN there would reach every gradient through the mask's product."""
        real = self.mask > 0

        def safe(v, n):
            return mx.where(real, v, -n)

        return Scores(safe(self.chosen, self.ntok_chosen), safe(self.rejected, self.ntok_rejected),
                      safe(self.ref_chosen, self.ntok_chosen), safe(self.ref_rejected, self.ntok_rejected),
                      self.ntok_chosen, self.ntok_rejected, self.mask, self.labels, self.nll_scale)

    @property
    def chosen_logratio(self):
        return self.chosen - self.ref_chosen

    @property
    def rejected_logratio(self):
        return self.rejected - self.ref_rejected

    @property
    def delta(self):
        return self.chosen_logratio - self.rejected_logratio

    @property
    def mean_chosen(self):
        return self.chosen / self.ntok_chosen

    @property
    def mean_rejected(self):
        return self.rejected / self.ntok_rejected

    @property
    def nll(self):
        """Per pair, −(chosen log-prob) × pairs / tokens: its mean over the step's pairs is the NLL averaged
        over every chosen token of the step, as TRL's cross-entropy over a batch (not a mean of per-answer
        means). The scale covers the whole optimizer step, so micro-batches and packed rows add up to it."""
        scale = self.nll_scale
        if scale is None:
            scale = self.mask.sum() / mx.maximum((self.ntok_chosen * self.mask).sum(), 1.0)
        return -self.chosen * scale


def _smoothed(z, eps: float):
    """Conservative (cDPO) logistic loss of logit z with flip rate eps: −(1−ε) log σ(z) − ε log σ(−z)."""
    out = -nn.log_sigmoid(z)
    return (1 - eps) * out - eps * nn.log_sigmoid(-z) if eps else out


def _sorted_real(v, mask):
    """v sorted ascending over the real pairs, fillers (pushed to the largest value) after them."""
    big = mx.array(np.finfo(np.float32).max, dtype=v.dtype)
    return mx.sort(mx.where(mask > 0, v, big))


# ---------------------------------------------------------------------------------------------- the losses
class Kind:
    """One loss of the registry. Subclasses set the declarations and write `losses`."""

    name: ClassVar[str]
    paper: ClassVar[str]
    when: ClassVar[str]                          # one line: when to use it
    trl: ClassVar[str]                           # the TRL trainer and setting it matches
    needs_reference: ClassVar[bool] = True
    unpaired: ClassVar[bool] = False             # unpaired rows with a label (KTO), not pairs
    logps: ClassVar[str] = "sum"                 # what its formula reads: "sum" or "mean" per token
    params: ClassVar[tuple[str, ...]] = ("beta",)
    combines: ClassVar[bool] = False             # a DPOTrainer loss: may be part of a weighted --loss a,b
    extra_metrics: ClassVar[tuple[str, ...]] = ()

    def losses(self, x: Scores, s) -> Any:
        """Per-pair losses, (B,); `s` carries the settings (s.beta, s.label_smoothing, ...)."""
        raise NotImplementedError

    def terms(self, x: Scores, s) -> dict:
        """Per-pair metric terms: rewards and log-probs (TRL's names), then `extra_metrics`."""
        raise NotImplementedError

    def check(self, s) -> tuple[str, str] | None:
        """A setting this loss cannot work with: (its name, the problem), else None."""
        return None


REGISTRY: dict[str, Kind] = {}


def register(cls):
    REGISTRY[cls.name] = cls()
    return cls


class DPOKind(Kind):
    """A DPOTrainer loss: needs the reference; its metrics are β × summed log-ratios."""

    combines = True

    def terms(self, x, s):
        return {"rewards/chosen": s.beta * x.chosen_logratio, "rewards/rejected": s.beta * x.rejected_logratio,
                "logps/chosen": x.chosen, "logps/rejected": x.rejected}


@register
class Sigmoid(DPOKind):
    name, trl = "sigmoid", "DPOTrainer loss_type='sigmoid' (cDPO smoothing as TRL's aot at batch size 1)"
    paper = "Rafailov et al. 2023 (DPO), arXiv:2305.18290; cDPO: Mitchell 2023"
    when = "DPO, the default: pairs of a better and a worse answer (--label-smoothing for noisy labels: cDPO)"
    params = ("beta", "label_smoothing")

    def losses(self, x, s):
        return _smoothed(s.beta * x.delta, s.label_smoothing)


@register
class Robust(DPOKind):
    name, trl = "robust", "DPOTrainer loss_type='robust'"
    paper = "Chowdhury et al. 2024 (rDPO), arXiv:2403.00409"
    when = "labels you expect to be partly wrong: --label-smoothing is the flip rate (0.1 in the paper)"
    params = ("beta", "label_smoothing")

    def losses(self, x, s):
        z, eps = s.beta * x.delta, s.label_smoothing
        return (-(1 - eps) * nn.log_sigmoid(z) + eps * nn.log_sigmoid(-z)) / (1 - 2 * eps)


@register
class Hinge(DPOKind):
    name, trl = "hinge", "DPOTrainer loss_type='hinge'"
    paper = "Zhao et al. 2023 (SLiC-HF), arXiv:2305.10425"
    when = "SLiC: stops pushing a pair once its margin passes 1/beta"

    def losses(self, x, s):
        return mx.maximum(1 - s.beta * x.delta, 0.0)


@register
class IPO(DPOKind):
    name, trl = "ipo", "DPOTrainer loss_type='ipo'"
    paper = "Azar et al. 2023 (IPO), arXiv:2310.12036"
    when = "near-deterministic preferences that DPO overfits: a squared loss toward a finite margin 1/(2 beta)"
    logps = "mean"

    def losses(self, x, s):
        h = x.chosen_logratio / x.ntok_chosen - x.rejected_logratio / x.ntok_rejected
        return (h - 1 / (2 * s.beta)) ** 2


@register
class ExoPair(DPOKind):
    name, trl = "exo_pair", "DPOTrainer loss_type='exo_pair'"
    paper = "Ji et al. 2024 (EXO), arXiv:2402.00856"
    when = "EXO: mode-seeking (reverse KL) DPO; needs --label-smoothing above 0 (1e-3 in the paper)"
    params = ("beta", "label_smoothing")

    def check(self, s):
        if not s.label_smoothing > 0:
            return "label_smoothing", "exo_pair needs it above 0 (the EXO paper uses 1e-3), got 0"
        return None

    def losses(self, x, s):
        z, eps = s.beta * x.delta, s.label_smoothing
        return (mx.sigmoid(z) * (nn.log_sigmoid(z) - math.log1p(-eps))
                + mx.sigmoid(-z) * (nn.log_sigmoid(-z) - math.log(eps)))


@register
class NCAPair(DPOKind):
    name, trl = "nca_pair", "DPOTrainer loss_type='nca_pair'"
    paper = "Chen et al. 2024 (NCA), arXiv:2402.05369"
    when = "NCA: raises the chosen answer's likelihood, not only the margin (against likelihood displacement)"

    def losses(self, x, s):
        cr, rr = s.beta * x.chosen_logratio, s.beta * x.rejected_logratio
        return -nn.log_sigmoid(cr) - 0.5 * nn.log_sigmoid(-cr) - 0.5 * nn.log_sigmoid(-rr)


@register
class BCOPair(DPOKind):
    name, trl = "bco_pair", "DPOTrainer loss_type='bco_pair'"
    paper = "Jung et al. 2024 (BCO), arXiv:2404.04656"
    when = "BCO: each answer classified good or bad by its own reward; chosen up and rejected down separately"

    def losses(self, x, s):
        return -nn.log_sigmoid(s.beta * x.chosen_logratio) - nn.log_sigmoid(-s.beta * x.rejected_logratio)


@register
class SPPOHard(DPOKind):
    name, trl = "sppo_hard", "DPOTrainer loss_type='sppo_hard'"
    paper = "Wu et al. 2024 (SPPO), arXiv:2405.00675"
    when = "SPPO with hard labels: each log-ratio pulled to +-1/(2 beta); self-play rounds (iterate)"

    def losses(self, x, s):
        return (x.chosen_logratio - 0.5 / s.beta) ** 2 + (x.rejected_logratio + 0.5 / s.beta) ** 2


@register
class AOT(DPOKind):
    name, trl = "aot", "DPOTrainer loss_type='aot'"
    paper = "Melnyk et al. 2024 (AOT), arXiv:2406.05882"
    when = "AOT: sorted policy margins must dominate sorted reference margins (per micro-batch: big batches)"
    params = ("beta", "label_smoothing")

    def losses(self, x, s):
        delta = (_sorted_real(x.chosen - x.rejected, x.mask)
                 - _sorted_real(x.ref_chosen - x.ref_rejected, x.mask))
        return _smoothed(s.beta * delta, s.label_smoothing)


@register
class AOTUnpaired(DPOKind):
    name, trl = "aot_unpaired", "DPOTrainer loss_type='aot_unpaired' (TRL before 1.0: 'aot_pair')"
    paper = "Melnyk et al. 2024 (AOT), arXiv:2406.05882"
    when = "AOT on chosen and rejected log-ratios sorted apart (TRL's former aot_pair; big batches)"
    params = ("beta", "label_smoothing")

    def losses(self, x, s):
        delta = _sorted_real(x.chosen_logratio, x.mask) - _sorted_real(x.rejected_logratio, x.mask)
        return _smoothed(s.beta * delta, s.label_smoothing)


@register
class APOZero(DPOKind):
    name, trl = "apo_zero", "DPOTrainer loss_type='apo_zero'"
    paper = "D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266"
    when = "APO-zero: chosen answers better than the model's own: chosen likelihood up, rejected down"

    def losses(self, x, s):
        return (1 - mx.sigmoid(s.beta * x.chosen_logratio)) + mx.sigmoid(s.beta * x.rejected_logratio)


@register
class APODown(DPOKind):
    name, trl = "apo_down", "DPOTrainer loss_type='apo_down'"
    paper = "D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266"
    when = "APO-down: chosen answers worse than the model's own: both likelihoods down, rejected more"

    def losses(self, x, s):
        return mx.sigmoid(s.beta * x.chosen_logratio) + (1 - mx.sigmoid(s.beta * x.delta))


@register
class DiscoPOP(DPOKind):
    name, trl = "discopop", "DPOTrainer loss_type='discopop'"
    paper = "Lu et al. 2024 (DiscoPOP), arXiv:2406.08414"
    when = "DiscoPOP: a discovered blend of the logistic and exponential losses, modulated by the margin"
    params = ("beta", "discopop_tau")

    def losses(self, x, s):
        z = s.beta * x.delta
        m = mx.sigmoid(z / s.discopop_tau)
        return -nn.log_sigmoid(z) * (1 - m) + mx.exp(-z) * m


@register
class SFT(DPOKind):
    name, trl = "sft", "DPOTrainer loss_type='sft'"
    paper = "as a term of MPO: Wang et al. 2024, arXiv:2411.10442"
    when = "the chosen answers' NLL (token mean); as a term of a combination (--loss sigmoid,sft: RPO, MPO)"

    def losses(self, x, s):
        return x.nll


@register
class SigmoidNorm(DPOKind):
    name, trl = "sigmoid_norm", "DPOTrainer loss_type='sigmoid_norm'"
    paper = "length-normalised DPO (TRL's; no single paper)"
    when = "DPO on per-token mean log-ratios: long and short answers weigh alike"
    logps = "mean"

    def losses(self, x, s):
        h = x.chosen_logratio / x.ntok_chosen - x.rejected_logratio / x.ntok_rejected
        return -nn.log_sigmoid(s.beta * h)


class PolicyOnlyKind(Kind):
    """A reference-free loss (CPOTrainer, ORPOTrainer): rewards are scale × the log-probs its formula reads."""

    needs_reference = False
    reward_scale: ClassVar[str] = "beta"

    def logps_of(self, x):
        return (x.mean_chosen, x.mean_rejected) if self.logps == "mean" else (x.chosen, x.rejected)

    def terms(self, x, s):
        c, r = self.logps_of(x)
        k = getattr(s, self.reward_scale)
        return {"rewards/chosen": k * c, "rewards/rejected": k * r, "logps/chosen": c, "logps/rejected": r}


@register
class CPO(PolicyOnlyKind):
    name, trl = "cpo", "CPOTrainer loss_type='sigmoid'"
    paper = "Xu et al. 2024 (CPO), arXiv:2401.08417"
    when = "CPO: no reference pass; a DPO-like margin on the policy alone plus the chosen NLL (--cpo-alpha)"
    params = ("beta", "label_smoothing", "cpo_alpha")
    extra_metrics = ("nll_loss",)

    def losses(self, x, s):
        return _smoothed(s.beta * (x.chosen - x.rejected), s.label_smoothing) + s.cpo_alpha * x.nll

    def terms(self, x, s):
        return {**super().terms(x, s), "nll_loss": x.nll}


@register
class SimPO(PolicyOnlyKind):
    name, trl = "simpo", "CPOTrainer loss_type='simpo', cpo_alpha=0"
    paper = "Meng et al. 2024 (SimPO), arXiv:2405.14734"
    when = "SimPO: no reference pass; length-normalised margin with a target gap (--simpo-gamma; beta 2-2.5)"
    params = ("beta", "label_smoothing", "simpo_gamma")
    logps = "mean"

    def losses(self, x, s):
        return _smoothed(s.beta * (x.mean_chosen - x.mean_rejected) - s.simpo_gamma, s.label_smoothing)


def _log1mexp(v):
    """log(1 − exp(v)) for v ≤ 0, stable on both sides of −ln 2 (as TRL's ORPO)."""
    return mx.where(v < -0.6931471805599453, mx.log1p(-mx.exp(v)), mx.log(-mx.expm1(v)))


@register
class ORPO(PolicyOnlyKind):
    name, trl = "orpo", "ORPOTrainer"
    paper = "Hong et al. 2024 (ORPO), arXiv:2403.07691"
    when = "ORPO: no reference and no SFT stage: the chosen NLL plus an odds-ratio term (--orpo-lambda)"
    params = ("orpo_lambda",)
    logps = "mean"
    reward_scale = "orpo_lambda"
    extra_metrics = ("nll_loss", "log_odds_ratio", "log_odds_chosen")

    @staticmethod
    def log_odds(x):
        c, r = x.mean_chosen, x.mean_rejected
        return (c - r) - (_log1mexp(c) - _log1mexp(r))

    def losses(self, x, s):
        return x.nll - s.orpo_lambda * nn.log_sigmoid(self.log_odds(x))

    def terms(self, x, s):
        odds = self.log_odds(x)
        return {**super().terms(x, s), "nll_loss": x.nll, "log_odds_ratio": nn.log_sigmoid(odds),
                "log_odds_chosen": odds}


class UnpairedKind(Kind):
    """A KTOTrainer loss on examples with a label; its metrics are class means (kto.py)."""

    unpaired = True
    params = ("beta", "desirable_weight", "undesirable_weight")
    uses_kl: ClassVar[bool] = True

    def kl(self, x):
        from .kto import kl_point

        return kl_point(x.rejected, x.ref_rejected, x.mask) if self.uses_kl else mx.zeros((), x.chosen.dtype)

    def losses(self, x, s):
        from .kto import unpaired_losses

        return unpaired_losses(self.name, x.chosen_logratio, self.kl(x), x.labels, beta=s.beta,
                               desirable_weight=s.desirable_weight, undesirable_weight=s.undesirable_weight)


@register
class KTO(UnpairedKind):
    name, trl = "kto", "KTOTrainer loss_type='kto'"
    paper = "Ethayarajh et al. 2024 (KTO), arXiv:2402.01306"
    when = "KTO: answers marked good or bad (thumbs), or pairs split into both; weights balance the two"


@register
class APOZeroUnpaired(UnpairedKind):
    name, trl = "apo_zero_unpaired", "KTOTrainer loss_type='apo_zero_unpaired'"
    paper = "D'Oosterlinck et al. 2024 (APO), arXiv:2408.06266"
    when = "APO-zero on answers marked good or bad: good ones up, bad ones down, no KL reference point"
    uses_kl = False


# ---------------------------------------------------------------------------------------------- a run's loss
RENAMED = {"aot_pair": "aot_unpaired"}  # TRL's former names
PAIR_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
             "logps/chosen", "logps/rejected")
STAT_KEYS = PAIR_KEYS  # the summed stats of a paired loss, in order (then its extra metrics, then the count)


def parse_loss(kind: str, weights: str | None = None) -> tuple[list[str], list[float]]:
    """`--loss` (one name, or DPOTrainer names joined by commas) and `--loss-weights` -> (names, weights).

    Raises ValueError with a message for the user (unknown name, a loss that does not combine, weights
    that do not match)."""
    names = [n.strip() for n in str(kind).split(",")]
    for n in names:
        if n in RENAMED:
            raise ValueError(f"unknown loss {n!r}: TRL 1.x calls it {RENAMED[n]} (use --loss {RENAMED[n]})")
        if n not in REGISTRY:
            raise ValueError(f"unknown loss {n!r} (expected one of {', '.join(REGISTRY)})")
    if len(names) > 1:
        alone = [n for n in names if not REGISTRY[n].combines]
        if alone:
            raise ValueError(f"{alone[0]} cannot be combined with other losses: only DPO-trainer losses combine, "
                             f"as TRL's loss_type list ({', '.join(n for n, k in REGISTRY.items() if k.combines)})")
    if weights is None or str(weights).strip() == "":
        return names, [1.0] * len(names)
    try:
        values = [float(w) for w in str(weights).split(",")]
    except ValueError:
        raise ValueError(f"loss_weights: expected numbers separated by commas, got {weights!r}") from None
    if len(values) != len(names) or not all(math.isfinite(v) for v in values):
        raise ValueError(f"loss_weights: expected {len(names)} finite number(s), one per loss of "
                         f"--loss {','.join(names)}, got {weights!r}")
    return names, values


def loss_params(kind: str) -> list[str]:
    """The hyper-parameters a --loss value uses (a combination's, once each), in PARAMS order."""
    names = [n.strip() for n in str(kind).split(",") if n.strip() in REGISTRY]
    used = {p for n in names for p in REGISTRY[n].params}
    if any(not REGISTRY[n].unpaired for n in names):
        used |= set(PAIRED_EXTRA)
    return [p for p in PARAMS if p in used]


class Loss:
    """A run's loss: one registry entry, or a weighted sum of DPOTrainer entries, bound to its settings once
    (as torchtune's DPOLoss). `Loss("ipo", beta=0.5)`, `Loss("sigmoid,sft", weights=[1, 0.5])`; settings not
    given take PARAMS' defaults."""

    def __init__(self, kind: str = "sigmoid", beta: float | None = None, *, weights=None, **settings):
        unknown = set(settings) - set(PARAMS)
        if unknown:
            raise TypeError(f"unknown loss setting(s): {', '.join(sorted(unknown))}")
        names, default_weights = parse_loss(kind)
        self.names, self.kinds = names, [REGISTRY[n] for n in names]
        self.weights = [float(w) for w in weights] if weights is not None else default_weights
        if len(self.weights) != len(names):
            raise ValueError(f"{len(self.weights)} weights for {len(names)} losses")
        self.settings = {p.name: float(settings.get(p.name, p.default)) for p in PARAMS.values()}
        if beta is not None:
            self.settings["beta"] = float(beta)

    @classmethod
    def from_config(cls, cfg) -> "Loss":
        names, weights = parse_loss(cfg.loss, getattr(cfg, "loss_weights", None))
        return cls(",".join(names), weights=weights, **{p: getattr(cfg, p) for p in PARAMS if hasattr(cfg, p)})

    def __getattr__(self, name):  # the settings read as attributes: loss.beta, loss.simpo_gamma, ...
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(name)

    def __repr__(self):
        return f"Loss({self.kind!r}, weights={self.weights}, {self.settings})"

    @property
    def kind(self) -> str:
        return ",".join(self.names)

    @property
    def needs_reference(self) -> bool:
        return any(k.needs_reference for k in self.kinds)

    @property
    def unpaired(self) -> bool:
        """KTO-like: every example is one completion with a label; its "rejected" row is the KL completion."""
        return self.kinds[0].unpaired

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return PAIR_KEYS + self.kinds[0].extra_metrics

    def check(self) -> tuple[str, str] | None:
        """The first setting the loss cannot work with, as (name, problem), else None."""
        return next((err for k in self.kinds if (err := k.check(self))), None)

    def ignored_settings(self) -> list[str]:
        """Warnings for settings this loss does not use although they are set (logged once per run)."""
        used = loss_params(self.kind)
        out = []
        for p in PARAMS.values():
            value = self.settings[p.name]
            if p.name in used or value == p.default:
                continue
            takers = [n for n, k in REGISTRY.items() if p.name in k.params] or ["the paired losses"]
            out.append(f"{p.flag} {value:g} has no effect with --loss {self.kind} (it is used by "
                       f"{', '.join(takers)}); it is ignored")
        return out

    # -- the numbers
    def losses(self, x: Scores):
        """Per-pair losses (B,): the weighted sum of the kinds' losses, plus RPO's term for pairs."""
        x = x.with_safe_fillers()
        total = None
        for kind, w in zip(self.kinds, self.weights):
            part = kind.losses(x, self)
            part = part if w == 1 else w * part
            total = part if total is None else total + part
        if self.rpo_alpha and not self.unpaired:
            total = total + self.rpo_alpha * (-x.chosen / x.ntok_chosen)
        return total

    def stats(self, x: Scores, losses) -> Any:
        """Summed stats of a batch (combinable across micro-batches and log windows): for pairs, the sum over
        real pairs of each of `metric_keys`, then the pair count; for unpaired losses kto.kto_stats."""
        x = x.with_safe_fillers()
        if self.unpaired:
            from .kto import kto_stats

            rewards = self.beta * x.chosen_logratio
            return kto_stats(losses, rewards, self.kinds[0].kl(x), x.chosen, x.labels, x.mask)
        t, m = self.kinds[0].terms(x, self), x.mask
        cr, rr = t["rewards/chosen"], t["rewards/rejected"]
        per_pair = [losses, cr, rr, cr - rr, (cr > rr).astype(cr.dtype), t["logps/chosen"], t["logps/rejected"],
                    *(t[k] for k in self.kinds[0].extra_metrics)]
        return mx.stack([(v * m).sum() for v in per_pair] + [m.sum()])

    def to_metrics(self, stats: list, prefix: str = "") -> dict:
        """TRL-named means of summed stats (a list of floats)."""
        if self.unpaired:
            from .kto import kto_metrics

            return kto_metrics(stats, prefix)
        n = stats[-1]
        if n <= 0:
            return {}
        out = {prefix + k: float(v) / n for k, v in zip(self.metric_keys, stats[:-1])}
        out[prefix + "n_pairs"] = int(n)
        return out

    def scores(self, policy: dict, ref: dict | None, labels=None, dtype=None) -> Scores:
        """Scores of whole arrays of scored pairs (as returned by reference.score_pairs); no reference:
        zeros in its place."""
        dtype = dtype or mx.float32
        n = len(policy["chosen"])
        zeros = np.zeros(n)

        def arr(v):
            return mx.array(np.asarray(v, dtype=np.float64), dtype=dtype)

        return Scores(arr(policy["chosen"]), arr(policy["rejected"]),
                      arr(ref["chosen"] if ref is not None else zeros), arr(ref["rejected"] if ref is not None else zeros),
                      arr(np.maximum(policy["ntok_chosen"], 1)), arr(np.maximum(policy["ntok_rejected"], 1)),
                      mx.ones(n, dtype=dtype), arr(labels) if labels is not None else None)

    def metrics(self, policy: dict, ref: dict | None, prefix: str = "", labels=None) -> dict:
        """TRL-named metrics over whole arrays of scored pairs (the NLL terms averaged over all their tokens)."""
        x = self.scores(policy, ref, labels)
        return self.to_metrics(np.array(self.stats(x, self.losses(x))).tolist(), prefix)


# ---------------------------------------------------------------------------------------------- documents
def readme_table() -> str:
    """The README's table of losses (tests/test_losses.py checks the README holds exactly this)."""
    rows = ["| `--loss` | data | reference | settings | when to use it | paper |", "|---|---|---|---|---|---|"]
    for name, k in REGISTRY.items():
        settings = ", ".join(f"`{PARAMS[p].flag}`" for p in k.params)
        data = "unpaired or pairs" if k.unpaired else "pairs"
        ref = "yes" if k.needs_reference else "no"
        rows.append(f"| `{name}` | {data} | {ref} | {settings} | {k.when} | {k.paper} |")
    return "\n".join(rows)


def help_lines() -> str:
    """One line per loss for `train --help`: its name and when to use it."""
    width = max(len(n) for n in REGISTRY) + 2
    return "\n".join(f"  {name:<{width}}{k.when}" for name, k in REGISTRY.items())
