"""Packing (`--tokens-per-batch`): same log-probs and LoRA gradients as the unpacked layout, fewer
positions, and a trainer that still starts at ln 2 and resumes bit-exactly.

Tolerance as in test_prompt_sharing.py: float32 log-probs agree to 1e-5 relative + 1e-5 (measured
0.0 on the tiny models: positions restart per sequence, so RoPE sees the same angles)."""

from __future__ import annotations

import math
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_dpo.data.template import TokenizedPair
from mlx_dpo.train import packing
from mlx_dpo.train.batching import make_batch
from mlx_dpo.train.layout import SHARED, UNSHARED, PackedLayout, choose_layout, packed
from mlx_dpo.train.logprobs import sequence_logps
from mlx_dpo.train.packing import make_packed_row, pack_rows, packed_sequence_logps, pair_positions
from mlx_dpo.train.reference import score_pairs
from test_prompt_sharing import PAIRS, assert_same_gradients, lora_model, tiny_model_8bit  # noqa: F401 (a fixture)
from test_training import _adapter, make_trainer, train_rows

RTOL, ATOL = 1e-5, 1e-5
INDICES = [0, 1, 2, 3, 4]


def unpacked(model, indices):
    """(chosen, rejected) log-probs and token counts of the plain padded layout, one batch."""
    batch = make_batch(PAIRS, indices, len(indices), 8)
    logps, ntok = (np.array(a) for a in sequence_logps(model, **batch.to_mx()))
    k = len(indices)
    return logps[:k], logps[k:], ntok[:k], ntok[k:]


def packed_logps(model, indices, share_prompt):
    row = make_packed_row(PAIRS, indices, 8, 0, share_prompt)
    logps, ntok = (np.array(a) for a in packed_sequence_logps(model, **row.to_mx()))
    B, k = len(row.pair_mask), len(indices)
    return row, (logps[:k], logps[B: B + k], ntok[:k], ntok[B: B + k]), (logps, ntok)


@pytest.mark.parametrize("share_prompt", [True, False])
@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen", "tiny_model_4bit", "tiny_model_8bit"])
def test_logps_equal_unpacked(request, fixture, share_prompt):
    model = lora_model(request.getfixturevalue(fixture))
    want = unpacked(model, INDICES)
    row, got, (all_logps, all_ntok) = packed_logps(model, INDICES, share_prompt)
    assert row.inputs.shape[0] == 1 and len(row.pair_mask) == 8  # 5 pairs in one row, 8 slots
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    assert np.all(want[0] < -1.0) and np.all(want[1] < -1.0)  # real rows are scored, not trivially 0
    empty = np.concatenate([row.pair_mask, row.pair_mask]) == 0
    assert np.all(all_logps[empty] == 0) and np.all(all_ntok[empty] == 0)  # empty slots carry nothing


def test_answers_do_not_see_each_other_and_positions_restart(tiny_model):
    """The two things that make packing exact, each broken on purpose: the scores then differ."""
    model = lora_model(tiny_model)
    want = unpacked(model, INDICES)
    row = make_packed_row(PAIRS, INDICES, 8, 0, True)

    def rejected_error(arrays):
        logps = np.array(packed_sequence_logps(model, **arrays)[0])
        return np.abs(logps[8:13] - want[1]).max()

    arrays = row.to_mx()
    assert rejected_error(arrays) <= ATOL
    seen = dict(arrays, branch=mx.zeros_like(arrays["branch"]))  # every answer token in the prompt branch
    assert rejected_error(seen) > 100 * ATOL
    row_positions = dict(arrays, positions=mx.broadcast_to(mx.arange(row.inputs.shape[1]), row.inputs.shape))
    assert rejected_error(row_positions) > 100 * ATOL


def dpo_like(logps_fn, model, pair_mask, arrays):
    logps, ntok = logps_fn(model, **arrays)
    B = pair_mask.shape[0]
    margin = logps[:B] - logps[B:] + 0.1 * (ntok[:B] - ntok[B:])
    return (nn.log_sigmoid(0.5 * margin) * -pair_mask).sum()  # a sum: micro-batches add up


def grads(model, fn, pair_mask, arrays):
    loss, g = nn.value_and_grad(model, partial(dpo_like, fn))(model, pair_mask, arrays)
    mx.eval(loss, g)
    return loss.item(), dict(tree_flatten(g))


@pytest.mark.parametrize("share_prompt", [True, False])
@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen", "tiny_model_4bit"])
def test_gradients_equal_unpacked(request, fixture, share_prompt):
    model = lora_model(request.getfixturevalue(fixture))
    batch = make_batch(PAIRS, INDICES, 5, 8)
    # The packed pairs in two rows (two micro-batches): their gradients summed equal the one batch's.
    rows = pack_rows(PAIRS, INDICES, budget=40, share_prompt=share_prompt)
    assert len(rows) >= 2
    l_ref, g_ref = grads(model, sequence_logps, mx.array(batch.pair_mask), batch.to_mx())
    l_pk, g_pk = 0.0, None
    for r in rows:
        row = make_packed_row(PAIRS, r, 8, 0, share_prompt)
        loss, g = grads(model, packed_sequence_logps, mx.array(row.pair_mask), row.to_mx())
        l_pk += loss
        g_pk = g if g_pk is None else {k: g_pk[k] + g[k] for k in g}
    assert l_pk == pytest.approx(l_ref, rel=1e-4)
    names = [k for k, _ in tree_flatten(model.trainable_parameters())]
    assert set(g_ref) == set(g_pk) == set(names)
    assert_same_gradients(g_ref, g_pk, names)


def test_compiled_matches_eager_and_rope_is_restored(tiny_model):
    model = lora_model(tiny_model)
    ropes = [layer.self_attn.rope for layer in model.model.layers]
    row = make_packed_row(PAIRS, INDICES, 8, 0, True)
    arrays = row.to_mx()
    fwd = mx.compile(lambda a: packed_sequence_logps(model, **a), inputs=model.state)
    np.testing.assert_allclose(np.array(fwd(arrays)[0]), np.array(packed_sequence_logps(model, **arrays)[0]),
                               rtol=1e-5, atol=1e-5)
    assert [layer.self_attn.rope for layer in model.model.layers] == ropes  # the per-token wrapper is undone


def test_rows_fill_the_budget_and_waste_only_rounding():
    rows = pack_rows(PAIRS, INDICES, budget=40, share_prompt=True)
    assert sorted(i for r in rows for i in r) == INDICES
    sizes = [sum(pair_positions(PAIRS[i], True) for i in r) for r in rows]
    longest = max(pair_positions(p, True) for p in PAIRS)
    assert all(s <= max(40, longest) for s in sizes)
    row = make_packed_row(PAIRS, INDICES, 8, 0, True)
    used = sum(pair_positions(PAIRS[i], True) for i in INDICES)
    assert used <= row.n_positions < used + 8  # padding is the rounding to pad_multiple only
    # Same bookkeeping as the unpacked batch: tokens of the two sequences, prompt counted twice.
    assert row.n_tokens == make_batch(PAIRS, INDICES, 5, 8).n_tokens


def test_ids_as_lists_or_int32_arrays():
    as_arrays = [TokenizedPair(np.asarray(p.prompt, np.int32), np.asarray(p.chosen, np.int32),
                               np.asarray(p.rejected, np.int32), p.source) for p in PAIRS]
    a, b = make_packed_row(PAIRS, INDICES, 8), make_packed_row(as_arrays, INDICES, 8)
    for k in ("inputs", "positions", "units", "branch", "scored", "targets", "segments"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_choose_layout(tiny_model):
    model = lora_model(tiny_model)
    layout = choose_layout(model, [PAIRS], True, 256)
    assert isinstance(layout, PackedLayout) and layout.sort_key is SHARED.sort_key
    assert choose_layout(model, [PAIRS], True, None) is SHARED
    assert choose_layout(model, [PAIRS], False, 256).sort_key is UNSHARED.sort_key
    empty = [TokenizedPair([], [5, 6], [7], "t")]
    assert choose_layout(model, [PAIRS, empty], True, 256) is UNSHARED  # nothing to predict token 0 from
    with pytest.raises(ValueError, match="prompt token"):
        make_packed_row(empty, [0], 8)


def test_packing_is_the_default_and_0_or_none_turns_it_off(tiny_model, pairs_file, tmp_path):
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.errors import UsageError

    assert TrainConfig(model="m", data="d").validate().tokens_per_batch == 1024
    model = lora_model(tiny_model)
    assert choose_layout(model, [PAIRS], True, 0) is SHARED
    with pytest.raises(UsageError, match="tokens_per_batch: must be a positive number of tokens, or 0"):
        TrainConfig(model="m", data="d", tokens_per_batch=-1).validate()
    default = make_trainer(tiny_model, pairs_file, tmp_path / "on", iters=1)
    assert default.session.layout.name == "packed, 1024 tokens per row, shared prompt"
    off = make_trainer(tiny_model, pairs_file, tmp_path / "off", iters=1, tokens_per_batch=0)
    assert off.session.layout is SHARED


def test_reference_scores_equal_unpacked(tiny_model):
    model = lora_model(tiny_model)
    want = score_pairs(model, PAIRS, 2, 8, layout=UNSHARED)
    got = score_pairs(model, PAIRS, 2, 8, layout=packed(24))
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=k)


def test_training_step0_is_ln2_and_matches_unpacked(tiny_model, pairs_file, tmp_path):
    kw = dict(iters=3, batch_size=4)
    make_trainer(tiny_model, pairs_file, tmp_path / "plain", **kw).train()
    tr = make_trainer(tiny_model, pairs_file, tmp_path / "packed", tokens_per_batch=64, **kw)
    assert isinstance(tr.session.layout, PackedLayout)
    assert max(len(tr.micro_batches(s)) for s in (1, 2, 3)) > 1  # a 64-token budget splits the batches
    tr.train()
    plain, pk = train_rows(tmp_path / "plain"), train_rows(tmp_path / "packed")
    assert pk[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert pk[0]["rewards/margins"] == pytest.approx(0, abs=1e-5)
    for a, b in zip(plain, pk):  # same pairs per step, same numbers up to rounding
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
    a, b = _adapter(tmp_path / "plain"), _adapter(tmp_path / "packed")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_packed_resume_is_bit_exact(tiny_model, pairs_file, tmp_path):
    kw = dict(iters=4, batch_size=3, save_every=100, tokens_per_batch=96, grad_accum=2)
    make_trainer(tiny_model, pairs_file, tmp_path / "straight", **kw).train()
    make_trainer(tiny_model, pairs_file, tmp_path / "split", **kw).train(stop_at_step=2)
    make_trainer(tiny_model, pairs_file, tmp_path / "split", resume=True, **kw).train()
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert [r["loss"] for r in train_rows(tmp_path / "straight")] == [r["loss"] for r in train_rows(tmp_path / "split")]


def test_token_rope_gives_each_token_its_own_position():
    rope = nn.RoPE(8)
    x = mx.random.normal((2, 3, 5, 8))
    pos = mx.array([[0, 1, 2, 0, 1], [3, 4, 0, 1, 2]])
    got = packing._TokenRoPE(rope)(x, offset=pos)
    for r in range(2):
        for t in range(5):
            want = rope(x[r: r + 1, :, t: t + 1], offset=int(pos[r, t].item()))
            np.testing.assert_allclose(np.array(got[r: r + 1, :, t: t + 1]), np.array(want), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.array(packing._TokenRoPE(rope)(x, offset=3)), np.array(rope(x, offset=3)))
