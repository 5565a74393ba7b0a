"""The loss registry: closed forms at the reference, the IPO paper's toy example, batch bookkeeping, and the
CLI / YAML / README made from the registry. (Exactness against TRL's code: test_loss_parity.py.)"""

from __future__ import annotations

import math
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.config import TrainConfig, build_config
from mlx_dpo.errors import UsageError
from mlx_dpo.train.losses import PARAMS, REGISTRY, Loss, Scores, loss_params, parse_loss, readme_table

ROOT = Path(__file__).resolve().parent.parent
LN2 = math.log(2)


def at_reference(n=3, labels=None):
    """Scores of a batch whose policy equals its reference (step 1 of a run from a fresh adapter)."""
    lp = mx.array([-7.0, -12.5, -3.0][:n])
    return Scores(lp, lp - 4.0, lp, lp - 4.0, mx.array([3.0, 5.0, 2.0][:n]), mx.array([4.0, 1.0, 6.0][:n]),
                  mx.ones(n), labels)


# Step 1 (policy = reference) of each reference-based loss, in closed form (beta 0.25, smoothing 0.1).
BETA, EPS = 0.25, 0.1
CLOSED_FORM = {
    "sigmoid": LN2,  # cDPO at Δ = 0: (1 − ε) ln 2 + ε ln 2
    "robust": LN2,
    "hinge": 1.0,
    "ipo": (1 / (2 * BETA)) ** 2,
    "exo_pair": -LN2 - 0.5 * math.log(EPS * (1 - EPS)),
    "nca_pair": 2 * LN2,
    "bco_pair": 2 * LN2,
    "sppo_hard": 2 / (2 * BETA) ** 2,
    "aot": LN2,
    "aot_unpaired": LN2,
    "apo_zero": 1.0,
    "apo_down": 1.0,
    "discopop": (LN2 + 1) / 2,  # at tau 0.05 (any tau: the modulation is σ(0) = 1/2)
    "sigmoid_norm": LN2,
    "kto": 0.5,
    "apo_zero_unpaired": 0.5,
}


def test_every_reference_based_loss_but_sft_has_a_closed_form_at_step_1():
    with_reference = {n for n, k in REGISTRY.items() if k.needs_reference}
    assert with_reference - set(CLOSED_FORM) == {"sft"}  # sft is the policy's NLL: no constant


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_loss_at_the_reference_is_its_closed_form(name):
    loss = Loss(name, BETA, label_smoothing=EPS)
    x = at_reference(labels=mx.array([1.0, 0.0, 1.0]) if loss.unpaired else None)
    np.testing.assert_allclose(np.array(loss.losses(x)), CLOSED_FORM[name], rtol=1e-6)
    metrics = loss.to_metrics(np.array(loss.stats(x, loss.losses(x))).tolist())
    assert metrics["rewards/chosen"] == metrics["rewards/rejected"] == 0.0


def test_ipo_toy_example_of_the_paper_converges_to_its_closed_form():
    """Azar et al. 2023: three answers, the transitive preferences y1 > y2, y2 > y3, y1 > y3, a free policy
    over them and a uniform reference. IPO's optimum is h(y1, y2) = h(y2, y3) = 1/(3τ) (so h(y1, y3) =
    2/(3τ)), each pair's loss (1/(6τ))², mean 1/9 at τ = 1/2. One token per answer: mean = sum."""
    tau = 0.5
    loss = Loss("ipo", tau)
    chosen, rejected = mx.array([0, 1, 0]), mx.array([1, 2, 2])  # (y1, y2), (y2, y3), (y1, y3)
    ones = mx.ones(3)

    def mean_loss(logits):
        logp = logits - mx.logsumexp(logits)
        x = Scores(logp[chosen], logp[rejected], mx.full(3, -math.log(3)), mx.full(3, -math.log(3)), ones, ones, ones)
        return loss.losses(x).mean()

    logits = mx.zeros(3)
    step = mx.value_and_grad(mean_loss)
    for _ in range(2000):
        value, grad = step(logits)
        logits = logits - 0.5 * grad
    logp = np.array(logits - mx.logsumexp(logits))
    assert logp[0] - logp[1] == pytest.approx(1 / (3 * tau), abs=1e-5)
    assert logp[1] - logp[2] == pytest.approx(1 / (3 * tau), abs=1e-5)
    assert float(value) == pytest.approx(1 / 9, abs=1e-6)


def test_stats_are_masked_sums_and_metrics_are_means():
    loss = Loss("sigmoid", 1.0)
    x = Scores(mx.array([-1.0, -2.0, -3.0]), mx.array([-4.0, -5.0, -6.0]), mx.array([-1.5, -1.0, 0.0]),
               mx.array([-4.0, -5.0, 0.0]), mx.ones(3), mx.ones(3), mx.array([1.0, 1.0, 0.0]))
    m = loss.to_metrics(np.array(loss.stats(x, mx.array([1.0, 3.0, 100.0]))).tolist())
    assert m["loss"] == pytest.approx(2.0)
    assert m["rewards/accuracies"] == pytest.approx(0.5)  # per-pair fraction, filler row excluded
    assert m["rewards/margins"] == pytest.approx(-0.25)
    assert m["logps/rejected"] == pytest.approx(-4.5)
    assert m["n_pairs"] == 2


@pytest.mark.parametrize("name", list(REGISTRY))
def test_an_empty_filler_slot_changes_nothing_and_stays_finite(name):
    """A packed row's empty slot scores log-prob 0 over 0 tokens (mask 0): it must leave the loss, the
    gradients and the stats of the real pairs as they are, finite (ORPO's log(1 − p) is −inf at p = 1)."""
    loss = Loss(name, 0.3, label_smoothing=0.1)
    real = [[-3.0, -9.0, -4.0], [-5.0, -4.0, -7.0], [-2.5, -8.0, -4.5], [-6.0, -3.0, -6.5]]
    labels = [1.0, 0.0, 1.0]

    def run(with_filler):
        extra, k = ([0.0], 4) if with_filler else ([], 3)
        ntok = mx.array([3.0, 2.0, 4.0] + [1.0] * (k - 3))
        lab = mx.array(labels + [0.0] * (k - 3)) if loss.unpaired else None
        mask = mx.array([1.0] * 3 + [0.0] * (k - 3))

        def total(chosen, rejected):
            x = Scores(chosen, rejected, mx.array(real[2] + extra), mx.array(real[3] + extra), ntok, ntok, mask, lab)
            return (loss.losses(x) * mask).sum(), x

        (value, x), grads = mx.value_and_grad(total, argnums=(0, 1))(mx.array(real[0] + extra),
                                                                      mx.array(real[1] + extra))
        stats = np.array(loss.stats(x, loss.losses(x)))
        return float(value), [np.array(g)[:3] for g in grads], stats

    plain, padded = run(False), run(True)
    assert np.isfinite(padded[0]) and all(np.isfinite(g).all() for g in padded[1]) and np.isfinite(padded[2]).all()
    assert padded[0] == pytest.approx(plain[0], rel=1e-6)
    for a, b in zip(plain[1], padded[1]):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(padded[2], plain[2], rtol=1e-6, atol=1e-7)


def test_aot_sorts_the_real_pairs_only():
    """A filler row (mask 0) must not enter AOT's sorted margins, whatever its values."""
    loss = Loss("aot", 0.5)
    real = [[-3.0, -9.0], [-5.0, -4.0], [-2.0, -8.0], [-6.0, -3.0]]  # chosen, rejected, ref chosen, ref rejected

    def total(filler):
        arrays = [mx.array(v + [f]) for v, f in zip(real, filler)]
        x = Scores(*arrays, mx.ones(3), mx.ones(3), mx.array([1.0, 1.0, 0.0]))
        return float((loss.losses(x) * x.mask).sum())

    assert total([-50.0, 0.0, 0.0, -50.0]) == pytest.approx(total([0.0, -50.0, -50.0, 0.0]), rel=1e-6)
    assert total([0.0] * 4) == pytest.approx(total([-1.0, -1.0, -1.0, -1.0]), rel=1e-6)


def test_nll_terms_average_over_the_steps_tokens_given_its_scale():
    """With the step's scale (pairs / tokens), two micro-batches' NLL sums add up to the token mean of the
    whole step, as one batch of TRL's would give."""
    pc, nc = [-6.0, -2.0, -9.0], [3.0, 1.0, 5.0]
    scale = 3 / sum(nc)
    loss = Loss("sft")

    def part(idx):
        x = Scores(mx.array([pc[i] for i in idx]), mx.zeros(len(idx)), mx.zeros(len(idx)), mx.zeros(len(idx)),
                   mx.array([nc[i] for i in idx]), mx.ones(len(idx)), mx.ones(len(idx)), None, mx.array(scale))
        return float(loss.losses(x).sum())

    assert (part([0, 1]) + part([2])) / 3 == pytest.approx(-sum(pc) / sum(nc), rel=1e-6)


def test_rpo_adds_each_chosen_answers_mean_nll_to_a_paired_loss():
    x = at_reference()
    plain, rpo = Loss("hinge", 0.5), Loss("hinge", 0.5, rpo_alpha=0.7)
    np.testing.assert_allclose(np.array(rpo.losses(x)) - np.array(plain.losses(x)),
                               0.7 * np.array([7.0 / 3, 12.5 / 5, 3.0 / 2]), rtol=1e-6)


def test_reference_free_losses_are_exactly_cpo_simpo_and_orpo():
    assert {n for n, k in REGISTRY.items() if not k.needs_reference} == {"cpo", "simpo", "orpo"}
    x = at_reference()
    shifted = Scores(x.chosen, x.rejected, x.ref_chosen + 3.0, x.ref_rejected - 8.0, x.ntok_chosen,
                     x.ntok_rejected, x.mask)
    for name in ("cpo", "simpo", "orpo"):
        loss = Loss(name)
        assert not loss.needs_reference
        np.testing.assert_array_equal(np.array(loss.losses(x)), np.array(loss.losses(shifted)))
    assert Loss("sigmoid,sft").needs_reference and Loss("kto").unpaired and not Loss("orpo").unpaired


def test_every_loss_declares_what_the_cli_app_and_readme_show():
    fields = {f for f in TrainConfig.__dataclass_fields__}
    assert set(PARAMS) <= fields  # every hyper-parameter is a flag and a YAML key
    for name, kind in REGISTRY.items():
        assert kind.name == name and kind.paper and kind.trl and "\n" not in kind.when and len(kind.when) <= 100
        assert set(kind.params) <= set(PARAMS) and kind.logps in ("sum", "mean")
    assert REGISTRY["ipo"].logps == REGISTRY["simpo"].logps == REGISTRY["orpo"].logps == "mean"
    assert loss_params("orpo") == ["orpo_lambda", "rpo_alpha"]
    assert loss_params("kto") == ["beta", "desirable_weight", "undesirable_weight"]
    assert loss_params("sigmoid,discopop") == ["beta", "label_smoothing", "discopop_tau", "rpo_alpha"]


def test_readme_table_is_the_registrys():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- losses: start.*?-->\n(.*?)\n<!-- losses: end -->", text, re.S)
    assert found, "README.md lacks the <!-- losses: start --> ... <!-- losses: end --> block"
    assert found.group(1) == readme_table(), "README's loss table differs from the registry; it should be:\n" + \
        readme_table()


def test_train_help_lists_every_loss_with_when_to_use_it(capsys):
    from mlx_dpo.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name, kind in REGISTRY.items():
        assert re.search(rf"^  {name} +{re.escape(kind.when)}$", out, re.M), name
    for p in PARAMS.values():
        assert p.flag in out


@pytest.mark.parametrize("values,key,message", [
    ({"loss": "dpo"}, "loss", "unknown loss 'dpo'"),
    ({"loss": "sigmoid,aot_pair"}, "loss", "TRL 1.x calls it aot_unpaired (use --loss aot_unpaired)"),
    ({"loss": "sigmoid,orpo"}, "loss", "orpo cannot be combined"),
    ({"loss": "sigmoid,sft", "loss_weights": "1"}, "loss_weights", "expected 2 finite number(s)"),
    ({"loss": "sigmoid,sft", "loss_weights": "1,x"}, "loss_weights", "expected numbers separated by commas"),
    ({"loss": "exo_pair"}, "label_smoothing", "exo_pair needs it above 0"),
    ({"loss": "orpo", "orpo_lambda": -1.0}, "orpo_lambda", "must be a non-negative number"),
    ({"loss": "discopop", "discopop_tau": 0.0}, "discopop_tau", "must be a positive number"),
])
def test_bad_loss_settings_name_their_key(values, key, message):
    with pytest.raises(UsageError) as e:
        build_config({}, values)
    assert str(e.value).startswith(f"config: {key}: ") and message in str(e.value)


def test_yaml_takes_trls_list_form_and_the_run_saves_the_comma_form(tmp_path):
    from mlx_dpo.config import load_yaml, save_config

    cfg = build_config({"loss": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1]}, {})
    assert (cfg.loss, cfg.loss_weights) == ("sigmoid,bco_pair,sft", "0.8,0.2,1")
    assert parse_loss(cfg.loss, cfg.loss_weights) == (["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0])
    save_config(cfg, tmp_path / "config.yaml")  # what the app writes, the app accepts
    again = build_config(load_yaml(tmp_path / "config.yaml"), {})
    assert Loss.from_config(again).weights == [0.8, 0.2, 1.0]


def test_settings_a_loss_does_not_use_are_named_once():
    assert Loss("simpo", label_smoothing=0.1).ignored_settings() == []
    assert Loss("hinge").ignored_settings() == []
    (warning,) = Loss("orpo", beta=0.5, orpo_lambda=0.2).ignored_settings()
    assert warning.startswith("--beta 0.5 has no effect with --loss orpo")
    assert "no effect with --loss kto" in Loss("kto", rpo_alpha=1.0).ignored_settings()[0]
