"""KTO: the loss against an independent re-implementation of TRL's formula, its metrics, and training."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.train.kto import class_balance_warning, kto_losses, kto_metrics, kto_stats
from mlx_dpo.train.losses import Loss, Scores


def trl_kto_loss(policy, ref, policy_kl, ref_kl, labels, beta, w_d, w_u):
    """TRL's KTOTrainer.kto_loss, transcribed with numpy (chosen = desirable rows, rejected = the others)."""
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    kl = max((policy_kl - ref_kl).mean(), 0.0)
    ch, rj = labels > 0, labels <= 0
    chosen_logratios = policy[ch] - ref[ch]
    rejected_logratios = policy[rj] - ref[rj]
    chosen_losses = 1 - sig(beta * (chosen_logratios - kl))
    rejected_losses = 1 - sig(beta * (kl - rejected_logratios))
    losses = np.concatenate([w_d * chosen_losses, w_u * rejected_losses])
    return losses.mean(), beta * chosen_logratios, beta * rejected_logratios, kl


@pytest.mark.parametrize("beta,w_d,w_u", [(0.1, 1.0, 1.0), (0.5, 1.33, 1.0), (2.0, 1.0, 0.7)])
def test_loss_equals_trl_formula_on_random_logps(beta, w_d, w_u):
    rng = np.random.default_rng(7)
    n = 12
    policy, ref = rng.normal(-40, 8, n), rng.normal(-40, 8, n)
    ref_kl = rng.normal(-62, 8, n)
    policy_kl = ref_kl + rng.normal(1.5, 1.0, n)  # a positive KL estimate
    labels = np.array([1, 0] * 6, dtype=np.float32)
    want_loss, want_cr, want_rr, want_kl = trl_kto_loss(policy, ref, policy_kl, ref_kl, labels, beta, w_d, w_u)
    assert want_kl > 0
    f = lambda a: mx.array(np.asarray(a, np.float32))  # noqa: E731
    losses, rewards, kl = kto_losses(f(policy), f(ref), f(policy_kl), f(ref_kl), f(labels), mx.ones(n), beta=beta,
                                     desirable_weight=w_d, undesirable_weight=w_u)
    np.testing.assert_allclose(float(losses.mean()), want_loss, rtol=1e-5)
    np.testing.assert_allclose(float(kl), want_kl, rtol=1e-5)
    m = kto_metrics(np.array(kto_stats(losses, rewards, kl, f(policy), f(labels), mx.ones(n))).tolist())
    np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-5)
    np.testing.assert_allclose(m["rewards/chosen"], want_cr.mean(), rtol=1e-5)
    np.testing.assert_allclose(m["rewards/rejected"], want_rr.mean(), rtol=1e-5)
    np.testing.assert_allclose(m["kl"], want_kl, rtol=1e-5)
    assert m["count/chosen"] == 6 and m["count/rejected"] == 6 and m["n_pairs"] == 12


def test_kl_point_is_clamped_at_zero_and_carries_no_gradient():
    n = 4
    labels, mask = mx.array([1.0, 0.0, 1.0, 0.0]), mx.ones(n)
    ref = mx.zeros(n)

    def total(policy, policy_kl):
        losses, _, kl = kto_losses(policy, ref, policy_kl, ref, labels, mask, beta=0.5)
        return losses.sum(), kl

    (_, kl), (g_policy, g_kl) = mx.value_and_grad(total, argnums=(0, 1))(mx.zeros(n), mx.full((n,), -3.0))
    assert float(kl) == 0.0  # a negative estimate is clamped
    assert float(mx.abs(g_kl).sum()) == 0.0 and float(mx.abs(g_policy).sum()) > 0


def test_step0_loss_and_rewards_with_policy_equal_to_reference():
    """At step 0 policy = reference: rewards 0, KL 0, every example's loss 1 - σ(0) = 0.5 (weighted)."""
    loss = Loss("kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0)
    lp = mx.array([-10.0, -20.0, -30.0])
    # chosen: the examples, rejected: their KL completions (policy = reference for both)
    x = Scores(lp, lp - 5, lp, lp - 5, mx.ones(3), mx.ones(3), mx.ones(3), mx.array([1.0, 0.0, 1.0]))
    losses = loss.losses(x)
    np.testing.assert_allclose(np.array(losses), [0.5, 0.5, 0.5])
    m = loss.to_metrics(np.array(loss.stats(x, losses)).tolist())
    assert m["rewards/chosen"] == m["rewards/rejected"] == m["kl"] == 0.0 and m["loss"] == 0.5
    assert loss.unpaired and loss.needs_reference


def test_class_balance_warning_follows_the_paper():
    assert class_balance_warning(100, 100, 1.0, 1.0) is None
    assert class_balance_warning(120, 100, 1.0, 1.0) is None
    assert "1 to 1.33" in class_balance_warning(300, 100, 1.0, 1.0)
    assert "1 to 1.33" in class_balance_warning(50, 100, 1.0, 1.0)
    assert class_balance_warning(50, 100, 2.0, 1.0) is None
    assert "both desirable and undesirable" in class_balance_warning(10, 0, 1.0, 1.0)
    assert math.isclose(4 / 3, 1.3333333, rel_tol=1e-6)


# ---------------------------------------------------------------- training

def unpaired_rows(pairs: list[dict]) -> list[dict]:
    """A learnable unpaired set: each pair's answers as separate rows, desirable or not, interleaved."""
    rows = []
    for p in pairs:
        rows.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        rows.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    return rows[::2] + rows[1::2]


def test_kto_learns_an_unpaired_set_and_its_adapter_ranks_held_out_pairs(tiny_model, tmp_path):
    import json

    from conftest import synthetic_pairs, write_jsonl
    from mlx_dpo.cli import main

    train = write_jsonl(tmp_path / "thumbs.jsonl", unpaired_rows(synthetic_pairs(48, seed=3)))
    valid = write_jsonl(tmp_path / "valid.jsonl", synthetic_pairs(24, seed=4))
    assert main(["validate", train, "--model", tiny_model]) == 0
    run = tmp_path / "kto"
    assert main(["train", "--model", tiny_model, "--data", train, "--output", str(run), "--loss", "kto",
                 "--iters", "30", "--batch-size", "8", "--learning-rate", "2e-3", "--beta", "0.1"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-5)  # policy = reference at step 1: 1 - σ(0)
    assert rows[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6) and rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    late = rows[-10:]  # one row per step of 8 examples: noisy, so the mean of the last ten
    assert np.mean([r["loss"] for r in late]) < 0.47 and np.mean([r["rewards/margins"] for r in late]) > 0.2
    assert {"kl", "count/chosen", "count/rejected", "logps/chosen", "logps/rejected"} <= set(rows[-1])

    def held_out(adapter, loss):
        import subprocess
        import sys
        r = subprocess.run([sys.executable, "-m", "mlx_dpo", "eval", "--model", tiny_model, "--data", valid,
                            "--json", "--loss", loss, "--beta", "0.1", *(["--adapter", str(adapter)] if adapter else [])],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    after = held_out(run, "kto")  # paired held-out data: DPO-style implicit-reward accuracy
    assert "rewards/accuracies" in after and "kl" not in after
    assert after["rewards/accuracies"] > 0.9  # at step 0 every reward is 0: accuracy 0 by TRL's strict >


def test_kto_gives_every_lora_parameter_a_gradient(tiny_model, tmp_path):
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from conftest import synthetic_pairs, write_jsonl
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.trainer import Trainer

    data = write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs(8, seed=5))  # pairs train KTO too
    tr = Trainer(TrainConfig(model=tiny_model, data=data, output=str(tmp_path / "run"), loss="kto", batch_size=4,
                             iters=2).validate()).setup()
    assert len(tr.session.train_pairs) == 16 and tr.session.train_labels.sum() == 8
    tr.model.update(tree_map_b(tr.model.trainable_parameters()))  # B != 0 so that A gets a gradient too
    vg = nn.value_and_grad(tr.model, tr.loss_fn)
    (_, _), grads = vg(tr.model, tr.micro_batches(1)[0].inputs)
    for name, g in tree_flatten(grads):
        assert float(mx.abs(g).max()) > 0, f"{name}: zero gradient"


def tree_map_b(params):
    from mlx.utils import tree_map_with_path
    return tree_map_with_path(lambda k, v: mx.full(v.shape, 0.01) if k.endswith("lora_b") else v, params)


def test_mixed_and_mismatched_files_are_clear_errors(tiny_model, tmp_path, capsys):
    from conftest import synthetic_pairs, write_jsonl
    from mlx_dpo.cli import main

    pairs = synthetic_pairs(4, seed=6)
    mixed = write_jsonl(tmp_path / "mixed.jsonl", pairs[:2] + unpaired_rows(pairs[2:]))
    assert main(["validate", mixed]) == 2
    err = capsys.readouterr().err
    assert f"{mixed}:3: row: an unpaired row" in err and f"the first pair is {mixed}:1" in err
    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", unpaired_rows(pairs))
    assert main(["train", "--model", tiny_model, "--data", thumbs, "--output", str(tmp_path / "r")]) == 2
    assert "unpaired rows (prompt, completion, label) train with --loss kto" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_validate_on_a_thumbs_file_says_nothing_of_an_unknown_schema(tmp_path, capsys):
    """Thumbs rows have no chosen/rejected by design: validate once printed `columns: unknown schema ... map
    them with --chosen-key` above `3 valid`, and every KTO load logged the same false line."""
    from conftest import synthetic_pairs, write_jsonl
    from mlx_dpo.cli import main
    from mlx_dpo.data.pairs import load_pairs

    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", unpaired_rows(synthetic_pairs(2, seed=1))[:3])
    assert main(["validate", thumbs]) == 0
    out, err = capsys.readouterr()
    assert err == "" and f"{thumbs}: 3 rows, 3 valid pairs (unpaired 3), 0 error(s)" in out
    assert load_pairs(thumbs).hints == []
