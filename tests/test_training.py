"""The trainer really learns: step-0 identities, gradients, held-out accuracy, resume, quantized base."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_dpo.config import TrainConfig
from mlx_dpo.errors import TrainingStopped, UsageError
from mlx_dpo.fileio import read_jsonl_tolerant
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl


def make_trainer(model, data, out, **kw) -> Trainer:
    base = dict(model=model, data=data, output=str(out), batch_size=4, learning_rate=1e-3, iters=4,
                lr_schedule="constant")
    base.update(kw)
    return Trainer(TrainConfig(**base).validate()).setup()


def train_rows(run_dir) -> list[dict]:
    return [r for r in read_jsonl_tolerant(Path(run_dir) / "metrics.jsonl") if "loss" in r]


def test_step0_loss_is_ln2_and_rewards_zero(tiny_model, pairs_file, tmp_path):
    make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=2).train()
    first = train_rows(tmp_path / "run")[0]
    assert first["step"] == 1
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["rewards/chosen"] == pytest.approx(0, abs=1e-5)
    assert first["rewards/rejected"] == pytest.approx(0, abs=1e-5)
    assert first["rewards/margins"] == pytest.approx(0, abs=1e-5)
    # The update after step 1 moves the policy: step 2 is no longer at the reference.
    second = train_rows(tmp_path / "run")[1]
    assert abs(second["rewards/margins"]) > 1e-4


def test_metrics_rows_have_trl_keys(tiny_model, pairs_file, valid_file, tmp_path):
    make_trainer(tiny_model, pairs_file, tmp_path / "run", valid_data=valid_file, iters=2, eval_every=1).train()
    rows = read_jsonl_tolerant(tmp_path / "run" / "metrics.jsonl")
    keys = {"step", "epoch", "loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
            "rewards/accuracies", "logps/chosen", "logps/rejected", "learning_rate", "tokens_per_second",
            "step_seconds", "peak_memory_gb"}
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/loss" in r]
    assert [r["step"] for r in train] == [1, 2]
    assert keys <= set(train[0])
    assert {"eval/" + k for k in ("loss", "rewards/accuracies", "rewards/margins")} <= set(evals[0])
    assert [r["step"] for r in evals] == [1, 2]
    assert evals[0]["eval/n_pairs"] == 12


def _grads(trainer, step=1):
    vg = nn.value_and_grad(trainer.model, trainer.loss_fn)
    (_, _), grads = vg(trainer.model, trainer.micro_batches(step)[0].inputs)
    return dict(tree_flatten(grads))


def test_every_lora_parameter_gets_nonzero_gradient(tiny_model, pairs_file, tmp_path):
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=1)
    names = {k for k, _ in tree_flatten(tr.model.trainable_parameters())}
    assert names and all(k.rsplit(".", 1)[-1] in ("lora_a", "lora_b") for k in names)
    g0 = _grads(tr)
    assert set(g0) == names
    # At step 0, B = 0 makes dL/dA vanish exactly (that is what makes policy == reference);
    # every B must already receive gradient.
    assert all(float(mx.abs(v).max()) > 0 for k, v in g0.items() if k.endswith("lora_b"))
    before = {k: np.array(v) for k, v in tree_flatten(tr.model.trainable_parameters())}
    tr.train()
    after = dict(tree_flatten(tr.model.trainable_parameters()))
    g1 = _grads(tr)
    for k in names:
        assert float(mx.abs(g1[k]).max()) > 0, f"{k} gets no gradient after one update"
        assert not np.array_equal(before[k], np.array(after[k])) or k.endswith("lora_a"), f"{k} did not change"
    assert any(not np.array_equal(before[k], np.array(after[k])) for k in names if k.endswith("lora_b"))


def test_heldout_reward_accuracy_rises(tiny_model, tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", synthetic_pairs(48, seed=3))
    valid = write_jsonl(tmp_path / "v.jsonl", synthetic_pairs(24, seed=4))
    tr = make_trainer(tiny_model, train, tmp_path / "run", valid_data=valid, iters=30, batch_size=8,
                      learning_rate=2e-3, eval_every=30, beta=0.1)
    before = tr.evaluate_valid()
    tr.train()
    after = [r for r in read_jsonl_tolerant(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r][-1]
    assert before["eval/rewards/accuracies"] < 0.9 and before["eval/loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert after["eval/rewards/accuracies"] > 0.9
    assert after["eval/loss"] < 0.5
    assert after["eval/rewards/margins"] > 0


def _adapter(run_dir):
    return {k: np.array(v) for k, v in mx.load(str(Path(run_dir) / "adapters.safetensors")).items()}


@pytest.mark.parametrize("extra", [dict(), dict(grad_accum=2, lora_dropout=0.1, lr_schedule="cosine", warmup_steps=2)])
def test_resume_is_bit_exact(tiny_model, pairs_file, tmp_path, extra):
    kw = dict(iters=6, batch_size=3, save_every=100, **extra)
    make_trainer(tiny_model, pairs_file, tmp_path / "straight", **kw).train()
    make_trainer(tiny_model, pairs_file, tmp_path / "split", **kw).train(stop_at_step=3)
    assert (tmp_path / "split" / "checkpoints" / "step_0000003" / "optimizer.safetensors").exists()
    make_trainer(tiny_model, pairs_file, tmp_path / "split", resume=True, **kw).train()
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    la = [r["loss"] for r in train_rows(tmp_path / "straight")]
    lb = [r["loss"] for r in train_rows(tmp_path / "split")]
    assert la == lb and len(la) == 6  # no duplicated rows after resume


def test_existing_run_dir_is_not_overwritten(tiny_model, pairs_file, tmp_path):
    make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=1).train()
    before = (tmp_path / "run" / "adapters.safetensors").read_bytes()
    with pytest.raises(UsageError, match="already holds a run"):
        make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=1)
    assert (tmp_path / "run" / "adapters.safetensors").read_bytes() == before


def test_quantized_base_trains(tiny_model_4bit, pairs_file, tmp_path):
    tr = make_trainer(tiny_model_4bit, pairs_file, tmp_path / "run", iters=6)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in tr.model.named_modules())
    tr.train()
    rows = train_rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_on_the_fly_quantization(tiny_model, pairs_file, tmp_path):
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=2, quantize=8)
    assert any(isinstance(m, nn.QuantizedLinear) for _, m in tr.model.named_modules())
    tr.train()
    assert train_rows(tmp_path / "run")[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_dora_trains(tiny_model, pairs_file, tmp_path):
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=3, dora=True)
    assert any(k.endswith(".m") for k, _ in tree_flatten(tr.model.trainable_parameters()))
    tr.train()
    rows = train_rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert json.loads((tmp_path / "run" / "adapter_config.json").read_text())["fine_tune_type"] == "dora"


def test_dataset_smaller_than_a_batch(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "small.jsonl", synthetic_pairs(3, seed=5))
    make_trainer(tiny_model, data, tmp_path / "run", batch_size=8, iters=3).train()
    rows = train_rows(tmp_path / "run")
    assert len(rows) == 3 and all(r["n_pairs"] == 3 for r in rows)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_grad_accumulation_matches_big_batch(tiny_model, pairs_file, tmp_path):
    """2 micro-batches of 2 give the same update as one batch of 4 (same pairs, mean loss)."""
    # The padded layout (packing off): its batches are built by hand below.
    big = make_trainer(tiny_model, pairs_file, tmp_path / "a", batch_size=4, iters=1, max_grad_norm=None,
                       tokens_per_batch=0)
    small = make_trainer(tiny_model, pairs_file, tmp_path / "b", batch_size=2, grad_accum=2, iters=1,
                         max_grad_norm=None, tokens_per_batch=0)
    vg_b, vg_s = nn.value_and_grad(big.model, big.loss_fn), nn.value_and_grad(small.model, small.loss_fn)
    # Feed the same 4 pairs both ways.
    idx = [0, 1, 2, 3]
    b, s = big.session, small.session
    assert b.layout.name == s.layout.name == "shared prompt"
    inputs_big = big._loss_inputs(b.layout.make(b.train_pairs, idx, 4, 32), 4)
    (_, _), gb = vg_b(big.model, inputs_big)
    gs = None
    for part in ([0, 1], [2, 3]):
        (_, _), g = vg_s(small.model, small._loss_inputs(s.layout.make(s.train_pairs, part, 2, 32), 4))
        g = dict(tree_flatten(g))
        gs = g if gs is None else {k: gs[k] + g[k] for k in g}
    for k, v in tree_flatten(gb):
        np.testing.assert_allclose(np.array(v), np.array(gs[k]), rtol=1e-4, atol=1e-7)


def test_nonfinite_loss_stops_and_keeps_checkpoint(tiny_model, pairs_file, tmp_path):
    make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=4, save_every=2).train(stop_at_step=2)
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000002" / "adapters.safetensors"
    saved = ckpt.read_bytes()
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=4, save_every=1, resume=True)
    tr.session.ref_train["chosen"][:] = np.nan  # poison the reference so step 3's loss is NaN
    with pytest.raises(TrainingStopped, match="non-finite loss at step 3"):
        tr.train()
    assert ckpt.read_bytes() == saved
    assert not (tmp_path / "run" / "checkpoints" / "step_0000003").exists()


@pytest.mark.parametrize("loss,expected", [("ipo", lambda b: (1 / (2 * b)) ** 2), ("hinge", lambda b: 1.0)])
def test_other_losses_at_step0(tiny_model, pairs_file, tmp_path, loss, expected):
    make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=3, loss=loss, beta=0.5).train()
    rows = train_rows(tmp_path / "run")
    assert rows[0]["loss"] == pytest.approx(expected(0.5), rel=1e-5)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_simpo_is_reference_free_and_learns(tiny_model, pairs_file, tmp_path):
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=6, loss="simpo", beta=2.0)
    assert tr.session.ref_train is None
    assert not (Path(os.environ["MLX_DPO_CACHE"]) / "reference").exists()
    tr.train()
    rows = train_rows(tmp_path / "run")
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_init_adapter_is_the_reference(tiny_model, pairs_file, tmp_path):
    """Starting from an adapter: step 0 is again ln 2, because the reference is base + that adapter."""
    make_trainer(tiny_model, pairs_file, tmp_path / "first", iters=4).train()
    make_trainer(tiny_model, pairs_file, tmp_path / "second", iters=2,
                 init_adapter=str(tmp_path / "first")).train()
    rows = train_rows(tmp_path / "second")
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    first_last = train_rows(tmp_path / "first")[-1]
    assert first_last["rewards/margins"] != 0


def test_throughput_counts_training_steps_only(tiny_model, pairs_file, valid_file, tmp_path, monkeypatch):
    """Evaluation is timed as its own metric; the step after it does not absorb its time.

    A fake clock makes this exact: every optimizer step takes 1 s, every evaluation 100 s."""
    from mlx_dpo.train import trainer as trainer_module
    from mlx_dpo.train.trainer import Trainer

    now = [0.0]
    monkeypatch.setattr(trainer_module, "clock", lambda: now[0])

    def timed(method, seconds):
        def run(self, *args):
            out = method(self, *args)
            now[0] += seconds
            return out
        return run

    monkeypatch.setattr(Trainer, "_optimizer_step", timed(Trainer._optimizer_step, 1.0))
    monkeypatch.setattr(Trainer, "evaluate_valid", timed(Trainer.evaluate_valid, 100.0))
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "run", iters=4, eval_every=1, valid_data=valid_file)
    tr.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train, evals = [r for r in rows if "loss" in r], [r for r in rows if "eval/loss" in r]
    assert [r["step_seconds"] for r in train] == [1.0] * 4
    assert all(r["tokens_per_second"] > 0 for r in train)
    assert [r["eval/seconds"] for r in evals] == [100.0] * 4
