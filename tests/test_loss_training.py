"""Every loss trains a tiny model: step 1 at its closed form (or, reference-free, its rewards on the policy's
own log-probs), a gradient on every LoRA B factor, and held-out pairs ranked better afterwards.

The held-out measure is the same for every loss, so they compare: `mlx-dpo eval --loss sigmoid` on pairs
the run never saw (the DPO implicit-reward accuracy against the base, which is 0 before training: every
reward is 0). One loss per family and the new ones run by default; the others are marked slow.
"""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.train.losses import REGISTRY
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl
from test_losses import BETA, CLOSED_FORM, EPS
from test_training import train_rows

FAST = {"sigmoid", "ipo", "sft", "cpo", "simpo", "orpo", "apo_zero_unpaired"}  # one per family, and the new ones
CASES = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in REGISTRY]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("loss-data")
    return write_jsonl(d / "train.jsonl", synthetic_pairs(32, seed=3)), write_jsonl(d / "valid.jsonl",
                                                                                   synthetic_pairs(16, seed=4))


def heldout(tiny_model, valid, run, capsys) -> dict:
    capsys.readouterr()
    assert main(["eval", "--model", tiny_model, "--data", valid, "--adapter", str(run), "--loss", "sigmoid",
                 "--beta", "0.1", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CASES)
def test_loss_trains_and_ranks_held_out_pairs_better(name, tiny_model, data, tmp_path, capsys):
    train, valid = data
    cfg = TrainConfig(model=tiny_model, data=train, output=str(tmp_path / "run"), loss=name, beta=BETA,
                      label_smoothing=EPS, batch_size=3, iters=8, learning_rate=3e-3, lr_schedule="constant",
                      simpo_gamma=0.1, orpo_lambda=0.5).validate()
    tr = Trainer(cfg).setup()  # 3 pairs a batch: a packed row of 4 slots, one of them empty
    assert (tr.session.ref_train is None) == (not REGISTRY[name].needs_reference)

    # Step 1's gradient reaches every LoRA B factor (A gets none while B is still zero).
    (_, _), grads = nn.value_and_grad(tr.model, tr.loss_fn)(tr.model, tr.micro_batches(1)[0].inputs)
    b_grads = {k: float(mx.abs(v).sum()) for k, v in tree_flatten(grads) if k.endswith("lora_b")}
    assert b_grads and all(g > 0 for g in b_grads.values()), b_grads

    tr.train()
    first = train_rows(tmp_path / "run")[0]
    if name in CLOSED_FORM:
        assert first["loss"] == pytest.approx(CLOSED_FORM[name], rel=1e-5)
        assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    elif not REGISTRY[name].needs_reference:  # rewards: the scale times the log-probs the loss reads
        scale = cfg.orpo_lambda if name == "orpo" else cfg.beta
        assert first["rewards/chosen"] == pytest.approx(scale * first["logps/chosen"], rel=1e-5)
    assert first["loss"] > 0

    after = heldout(tiny_model, valid, tmp_path / "run", capsys)
    # Better than chance, with a positive mean margin (apo_down, which lowers both answers, and kto on
    # small batches of examples reach about 0.6; the others 1.0 on this data).
    assert after["rewards/accuracies"] > 0.5 and after["rewards/margins"] > 0, after


@pytest.mark.parametrize("tokens_per_batch", [0, 48])  # padded batches; packed rows, several per step
def test_nll_terms_average_over_the_tokens_the_layout_scores_in_the_whole_step(tiny_model, data, tmp_path,
                                                                             tokens_per_batch):
    """The step's `nll_scale` (pairs / chosen tokens, from the tokenized pairs) matches the chosen tokens
    the layout actually scores, and the micro-batches' sft losses add up to the step's token-mean NLL."""
    train, _ = data
    tr = Trainer(TrainConfig(model=tiny_model, data=train, output=str(tmp_path / "run"), loss="sft", batch_size=8,
                             grad_accum=2, iters=1, tokens_per_batch=tokens_per_batch).validate()).setup()
    micro = tr.micro_batches(1)
    assert len(micro) > (2 if tokens_per_batch else 1)
    tokens = pairs = logp = loss = 0.0
    for mb in micro:
        logps, ntok = tr.session.layout.logps(tr.model, mb.inputs["batch"])
        mask = mb.inputs["pair_mask"]
        B = mask.shape[0]
        tokens += float((ntok[:B] * mask).sum())
        pairs += float(mask.sum())
        logp += float((logps[:B] * mask).sum())
        loss += float(tr.loss_fn(tr.model, mb.inputs)[0])
        assert float(mb.inputs["nll_scale"]) == pytest.approx(float(micro[0].inputs["nll_scale"]))
    assert pairs == 16 and float(micro[0].inputs["nll_scale"]) == pytest.approx(pairs / tokens, rel=1e-6)
    assert loss == pytest.approx(-logp / tokens, rel=1e-5)
