"""The memory model's exact terms checked against the real arrays (the fitted activation terms are checked
against measured DPO steps at real sizes in benchmarks/real_sizes.py; see BENCHMARKS.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_dpo.model import memory
from mlx_dpo.model.memory import Shape, estimate, mac_budget, worst_batch


def _param_bytes(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_model_4bit", "tiny_qwen"])
def test_the_weights_term_is_the_bytes_of_the_loaded_model(fixture, request):
    from mlx_dpo.model.load import load_base

    path = request.getfixturevalue(fixture)
    loaded = load_base(path, log=lambda *_: None)
    est = estimate(path, batch_size=1, max_length=64, available=1e12)
    assert est.weights == _param_bytes(loaded.model)


def test_on_the_fly_quantization_is_counted_at_its_bits(tiny_model):
    from mlx_dpo.model.load import load_base

    loaded = load_base(tiny_model, quantize=4, log=lambda *_: None)
    assert estimate(tiny_model, batch_size=1, max_length=64, quantize=4, available=1e12).weights \
        == _param_bytes(loaded.model)


@pytest.mark.parametrize("dora", [False, True])
def test_the_adapter_term_is_four_fp32_copies_of_every_trained_parameter(tiny_model_4bit, dora):
    from mlx.utils import tree_flatten

    from mlx_dpo.model.adapters import apply_lora, lora_config
    from mlx_dpo.model.load import load_base

    model = load_base(tiny_model_4bit, log=lambda *_: None).model
    apply_lora(model, lora_config(8, 20.0, 0.0, None, -1, dora))
    trained = tree_flatten(model.trainable_parameters())
    assert all(v.dtype.size == 4 for _, v in trained)  # fp32, as the term assumes
    n = sum(v.size for _, v in trained)
    est = estimate(tiny_model_4bit, batch_size=1, max_length=64, dora=dora, available=1e12)
    assert est.adapter == 4 * 4 * n  # parameters, gradients, AdamW's two moments


def _tokenized(rng, n):
    from mlx_dpo.data.template import TokenizedPair

    out = []
    for _ in range(n):
        p, c, r = (int(x) for x in rng.integers(2, 300, 3))
        out.append(TokenizedPair(prompt=[1] * p, chosen=[2] * c, rejected=[3] * r, source="test"))
    return out


@pytest.mark.parametrize("share, budget, batch", [(True, 1024, 4), (False, 1024, 4), (True, 512, 8),
                                                   (True, 4096, 2)])
def test_the_worst_micro_batch_is_the_longest_row_the_trainer_packs(share, budget, batch):
    """worst_batch(lengths) is never below the longest packed row the trainer builds for the same pairs, batch
    by batch, and never above what one row can hold (the budget, or the longest pair alone)."""
    from mlx_dpo.train.packing import make_packed_row, pack_rows

    rng = np.random.default_rng(0)
    pairs = _tokenized(rng, 64)
    rows = []
    for start in range(0, len(pairs), batch):
        idx = list(range(start, min(start + batch, len(pairs))))
        rows += [make_packed_row(pairs, row, 32, 0, share).inputs.shape[1] for row in pack_rows(pairs, idx, budget, share)]
    lengths = [(len(p.prompt), len(p.chosen), len(p.rejected)) for p in pairs]
    b = worst_batch(lengths, batch_size=batch, max_length=1024, tokens_per_batch=budget, share_prompt=share)
    longest_pair = max((p + c + r - 2) if share else (2 * p + c + r - 2) for p, c, r in lengths)
    assert b.source == "data" and b.rows == 1 and b.shared_prompt == share
    assert max(rows) <= b.tokens <= -(-max(budget, longest_pair) // 32) * 32


def test_without_data_the_worst_case_is_every_pair_at_max_length():
    b = worst_batch(None, batch_size=4, max_length=1024, tokens_per_batch=0, share_prompt=False)
    assert (b.rows, b.tokens, b.source) == (8, 1024, "max_length")


def test_checkpointing_turns_prompt_sharing_off_as_the_trainer_does(tiny_model_4bit):
    plain = estimate(tiny_model_4bit, batch_size=1, max_length=512, available=1e12)
    gc = estimate(tiny_model_4bit, batch_size=1, max_length=512, grad_checkpoint=True, available=1e12)
    assert plain.batch.shared_prompt and not gc.batch.shared_prompt


def test_the_head_term_uses_the_trainers_chunk_size():
    from mlx_dpo.train import lm_head

    s = Shape(hidden=4096, layers=1, inter=14336, vocab=128256, heads=32, kv_heads=8, head_dim=128, tied=False,
              bits=4)
    chunk = lm_head.chunk_rows(s.vocab, 1500, s.hidden)
    assert 1024 <= chunk < s.vocab
    assert memory.head_bytes(s, 1500) == pytest.approx(
        memory.HEAD_CHUNKS_LIVE * chunk * (4096 * 6 + 1500 * 8) + 2 * 1500 * 4096 * 4)


def test_checkpointing_an_8b_shaped_model_needs_far_less_than_without(tmp_path):
    cfg = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False,
               quantization={"group_size": 64, "bits": 4})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    lengths = [(256, 740, 740)]
    plain = estimate(tmp_path, batch_size=1, max_length=1024, lengths=lengths, available=1e12)
    gc = estimate(tmp_path, batch_size=1, max_length=1024, lengths=lengths, grad_checkpoint=True, available=1e12)
    assert 4.5e9 < gc.weights < 4.54e9  # 8.03B parameters at 4.5 bits (4.2 GiB)
    assert gc.peak < 0.5 * plain.peak
    assert gc.as_dict()["peak_gb"] == pytest.approx(gc.peak / memory.GB, abs=1e-3)


def test_a_macs_budget_leaves_room_for_macos():
    assert mac_budget(16 * memory.GB) == 14 * memory.GB
    assert mac_budget(8 * memory.GB) == 6 * memory.GB
    assert mac_budget(64 * memory.GB) == 56 * memory.GB


def test_gpu_kernels_need_no_dequantized_copy(tiny_model_4bit):
    cpu = estimate(tiny_model_4bit, batch_size=1, max_length=256, path="cpu-dequantize", available=1e12)
    gpu = estimate(tiny_model_4bit, batch_size=1, max_length=256, path="gpu-kernels", available=1e12)
    biggest = max(o * i for o, i in Shape.of(tiny_model_4bit).linear_shapes())
    assert cpu.workspace - gpu.workspace == biggest * 6
