"""Prompt sharing: same log-probs and gradients as the unshared path, fewer positions, compiles.

Tolerance: float32 log-probs agree to |shared - unshared| <= 1e-5 * |unshared| + 1e-5 (measured
~1e-7 relative). The remaining difference is rounding: RoPE angles are computed at other absolute
positions, and attention reductions run over a different number of masked keys."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm import load

from mlx_dpo.train.batching import make_batch
from mlx_dpo.train.logprobs import sequence_logps
from mlx_dpo.model.adapters import apply_lora, lora_config, num_blocks
from mlx_dpo.train.prompt_sharing import make_shared_batch, shared_sequence_logps, supports_prompt_sharing
from mlx_dpo.data.template import TokenizedPair
from tiny_models import build_tiny_model

RTOL, ATOL = 1e-5, 1e-5


def _pairs():
    rng = np.random.default_rng(7)

    def ids(n):
        return rng.integers(3, 380, n).tolist()

    # (prompt, chosen, rejected) lengths: 1-token prompts and completions, prompts longer than one
    # pad block, completions longer than their prompt.
    shapes = [(5, 3, 2), (1, 7, 1), (12, 2, 9), (19, 1, 4), (3, 11, 6)]
    return [TokenizedPair(ids(p), ids(c), ids(r), f"t:{i}") for i, (p, c, r) in enumerate(shapes)]


PAIRS = _pairs()
# (indices, batch_size): a full batch, and a short one with filler rows.
BATCHES = [([0, 1, 2, 3], 4), ([4, 2, 1], 5)]


@pytest.fixture(scope="module")
def tiny_model_8bit(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "llama8", quantize_bits=8))


def lora_model(path, seed=0):
    """The model with LoRA on every linear of every block and non-zero B factors."""
    model, _ = load(path)
    mx.random.seed(seed)
    apply_lora(model, lora_config(4, 10.0, 0.0, None, num_blocks(model), False))
    rng = np.random.default_rng(seed)
    for name, p in tree_flatten(model.trainable_parameters()):
        if name.endswith("lora_b"):
            model.load_weights([(name, mx.array(rng.standard_normal(p.shape).astype(np.float32) * 0.05))],
                               strict=False)
    mx.eval(model.parameters())
    return model


def both(indices, batch_size, pad_multiple=8):
    batch = make_batch(PAIRS, indices, batch_size, pad_multiple)
    shared = make_shared_batch(PAIRS, indices, batch_size, pad_multiple)
    return batch, shared


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen", "tiny_model_4bit", "tiny_model_8bit"])
def test_logps_equal_unshared(request, fixture):
    model = lora_model(request.getfixturevalue(fixture))
    assert supports_prompt_sharing(model)
    for indices, bs in BATCHES:
        batch, shared = both(indices, bs)
        ref, ref_n = (np.array(a) for a in sequence_logps(model, **batch.to_mx()))
        got, got_n = (np.array(a) for a in shared_sequence_logps(model, **shared.to_mx()))
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(got_n, ref_n)
        assert np.all(ref[shared.mask.sum(1) > 0] < -1.0)  # real rows are scored, not trivially 0
        real = np.concatenate([shared.pair_mask, shared.pair_mask]) > 0
        assert np.all(got_n[~real] == 0) and np.all(got[~real] == 0)  # filler rows carry nothing

    # The adapter matters: zeroing the B factors changes the log-probs well beyond the tolerance.
    batch, shared = both(*BATCHES[0])
    with_lora = np.array(shared_sequence_logps(model, **shared.to_mx())[0])
    zeros = [(k, mx.zeros_like(v)) for k, v in tree_flatten(model.trainable_parameters()) if k.endswith("lora_b")]
    model.load_weights(zeros, strict=False)
    plain = np.array(shared_sequence_logps(model, **shared.to_mx())[0])
    assert np.max(np.abs(with_lora - plain)) > 100 * ATOL


def dpo_like(logps_fn, model, pair_mask, arrays):
    logps, ntok = logps_fn(model, **arrays)
    B = pair_mask.shape[0]
    margin = logps[:B] - logps[B:] + 0.1 * (ntok[:B] - ntok[B:])
    return (nn.log_sigmoid(0.5 * margin) * -pair_mask).sum() / pair_mask.sum()


def grads(model, fn, pair_mask, arrays):
    loss, g = nn.value_and_grad(model, partial(dpo_like, fn))(model, pair_mask, arrays)
    mx.eval(loss, g)
    return loss.item(), dict(tree_flatten(g))


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen", "tiny_model_4bit"])
def test_gradients_equal_unshared(request, fixture):
    model = lora_model(request.getfixturevalue(fixture))
    batch, shared = both(*BATCHES[1])  # with filler rows
    pm = mx.array(batch.pair_mask)
    l_ref, g_ref = grads(model, sequence_logps, pm, batch.to_mx())
    l_sh, g_sh = grads(model, shared_sequence_logps, pm, shared.to_mx())
    assert l_sh == pytest.approx(l_ref, rel=1e-4)
    names = [k for k, _ in tree_flatten(model.trainable_parameters())]
    assert set(g_ref) == set(g_sh) == set(names)
    assert any(".k_proj." in k for k in names)  # gradients through the shared prompt K/V are covered
    assert_same_gradients(g_ref, g_sh, names)


def assert_same_gradients(g_ref: dict, g_got: dict, names: list[str]) -> None:
    """Every LoRA gradient is non-zero and equal to the reference layout's, relative to its largest entry."""
    for k in names:
        ref, got = np.array(g_ref[k]), np.array(g_got[k])
        scale = np.abs(ref).max()
        assert scale > 0, f"{k}: zero gradient"
        np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4 * scale, err_msg=k)


def test_compiled_step_matches_eager(tiny_model):
    model = lora_model(tiny_model)
    batch, shared = both(*BATCHES[1])
    pm, arrays = mx.array(batch.pair_mask), shared.to_mx()
    vg = nn.value_and_grad(model, partial(dpo_like, shared_sequence_logps))

    # As in the trainer: the model state is an implicit input of the compiled function.
    @partial(mx.compile, inputs=model.state, outputs=model.state)
    def step(pm, arrays):
        return vg(model, pm, arrays)

    (l_c, g_c), (l_e, g_e) = step(pm, arrays), vg(model, pm, arrays)
    assert l_c.item() == pytest.approx(l_e.item(), rel=1e-5)
    for (k, a), (_, b) in zip(tree_flatten(g_c), tree_flatten(g_e)):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6 * np.abs(np.array(b)).max(),
                                   err_msg=k)
    fwd = mx.compile(lambda a: shared_sequence_logps(model, **a), inputs=model.state)
    np.testing.assert_allclose(np.array(fwd(arrays)[0]), np.array(shared_sequence_logps(model, **arrays)[0]),
                               rtol=1e-5, atol=1e-5)


def positions_processed(shared) -> int:
    """Token positions the shared layout's backbone runs over (the unshared layout runs 2B * L)."""
    B, P = shared.prompts.shape
    return B * P + shared.targets.shape[0] * (shared.targets.shape[1] - 1)


def test_fewer_positions_for_long_prompts():
    rng = np.random.default_rng(3)
    pairs = [TokenizedPair(rng.integers(3, 300, 60).tolist(), rng.integers(3, 300, c).tolist(),
                           rng.integers(3, 300, r).tolist(), "t") for c, r in [(5, 7), (3, 8)]]
    batch = make_batch(pairs, [0, 1], 2, 8)
    shared = make_shared_batch(pairs, [0, 1], 2, 8)
    assert batch.inputs.shape == (4, 72)
    assert shared.prompts.shape == (2, 64) and shared.targets.shape == (4, 8)
    assert positions_processed(shared) == 2 * 64 + 4 * 7 < batch.inputs.size  # 156 < 288
    # Same bookkeeping as the unshared batch.
    assert shared.n_tokens == batch.n_tokens and shared.n_pairs == batch.n_pairs
    np.testing.assert_array_equal(shared.indices, batch.indices)
    # Left-padded prompts: the last prompt token is always at P-1.
    assert shared.prompts[0, -1] == pairs[0].prompt[-1] and not shared.prompt_valid[0, :4].any()


def test_unsupported_models(tiny_model):
    class Fake(nn.Module):
        model_type = "gpt2"

        def __init__(self):
            super().__init__()
            self.model = nn.Module()

    assert not supports_prompt_sharing(Fake())
    Fake.model_type = "llama"  # right name, but not mlx-lm's llama module
    Fake.lm_head = nn.Linear(2, 2)
    assert not supports_prompt_sharing(Fake())

    model, _ = load(tiny_model)
    assert supports_prompt_sharing(model)
    # --grad-checkpoint patches the block class (train/checkpointing.py, as mlx-lm's grad_checkpoint does); K/V
    # recorded inside a checkpointed block would lose their gradient, so sharing must be refused (the trainer's
    # --grad-checkpoint then falls back).
    from mlx_dpo.train.checkpointing import grad_checkpoint

    cls = type(model.model.layers[0])
    original = cls.__call__
    try:
        grad_checkpoint(model.model.layers[0])
        assert not supports_prompt_sharing(model)
    finally:
        cls.__call__ = original
    assert supports_prompt_sharing(model)
    model.model.layers[0].use_sliding = True  # a sliding-window layer would need another mask
    assert not supports_prompt_sharing(model)


def test_empty_prompt_is_refused():
    pairs = [TokenizedPair([], [5, 6], [7], "t")]
    with pytest.raises(ValueError, match="prompt token"):
        make_shared_batch(pairs, [0], 1, 8)


def test_shared_layout_batches_run_fewer_positions_than_unshared_on_mixed_lengths():
    """Prompts and answers are padded separately when shared, so batches are grouped by both: on
    independent prompt/answer lengths, grouping by total length alone would make sharing cost more."""
    from types import SimpleNamespace

    from mlx_dpo.train.batching import epoch_order, make_batch
    from mlx_dpo.train.layout import SHARED, UNSHARED

    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(300):
        p, c, r = (int(x) for x in np.clip(rng.lognormal(np.log(150), 0.7, 3), 32, 512))
        pairs.append(SimpleNamespace(prompt=[5] * p, chosen=[6] * c, rejected=[7] * r, length=2 * p + c + r))
    unshared = sum(make_batch(pairs, b, 4, 32).inputs.size for b in epoch_order(pairs, 4, 0, 0, UNSHARED.sort_key))
    by_total = sum(positions_processed(SHARED.make(pairs, b, 4, 32))
                   for b in epoch_order(pairs, 4, 0, 0, UNSHARED.sort_key))
    shared = sum(positions_processed(SHARED.make(pairs, b, 4, 32)) for b in epoch_order(pairs, 4, 0, 0, SHARED.sort_key))
    assert shared < 0.92 * unshared  # the layout's own grouping pays
    assert shared < by_total
