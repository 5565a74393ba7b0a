"""Log-probs: the masked, shifted, head-only-at-completion path equals a plain per-token computation."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm import load

from mlx_dpo.train.batching import make_batch
from mlx_dpo.train.logprobs import sequence_logps, split_head
from mlx_dpo.data.template import TokenizedPair

PAIRS = [
    TokenizedPair([5, 6, 7, 8, 9], [10, 11, 12], [13, 14], "a:1"),
    TokenizedPair([20, 21], [22, 23, 24, 25, 26, 27], [28], "a:2"),
    TokenizedPair([30, 31, 32], [33], [34, 35, 36, 37], "a:3"),
]


def reference_logp(model, prompt, completion):
    """log p(completion | prompt), one sequence, no batching or padding, full logits."""
    seq = mx.array(np.concatenate([prompt, completion])[None])  # ids may be int32 arrays
    logp = np.array(model(seq)[0].astype(mx.float32))
    logp = logp - np.log(np.exp(logp - logp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logp.max(-1, keepdims=True)
    # Token at position t is predicted by the output at t-1.
    return sum(logp[len(prompt) + j - 1, tok] for j, tok in enumerate(completion))


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen"])
@pytest.mark.parametrize("split", [True, False])
def test_batched_logps_equal_unbatched(request, fixture, split):
    model, _ = load(request.getfixturevalue(fixture))
    assert split_head(model) is not None
    batch = make_batch(PAIRS, [0, 1, 2], batch_size=4, pad_multiple=8)  # one filler row
    logps, ntok = sequence_logps(model, **batch.to_mx(), use_split_head=split)
    logps, ntok = np.array(logps), np.array(ntok)
    for i, p in enumerate(PAIRS):
        assert logps[i] == pytest.approx(reference_logp(model, p.prompt, p.chosen), abs=2e-4)
        assert logps[4 + i] == pytest.approx(reference_logp(model, p.prompt, p.rejected), abs=2e-4)
        assert ntok[i] == len(p.chosen) and ntok[4 + i] == len(p.rejected)
    assert ntok[3] == 0 and logps[3] == 0  # filler rows are fully masked


def test_padded_shapes_come_from_a_fixed_set():
    b = make_batch(PAIRS, [0, 1], batch_size=2, pad_multiple=32)
    assert b.inputs.shape == (4, 32) and b.targets.shape == (4, 32)
    assert b.pair_mask.tolist() == [1.0, 1.0]
    # Chosen rows first, then rejected rows of the same pairs.
    assert b.inputs[0, :8].tolist() == list(PAIRS[0].prompt) + list(PAIRS[0].chosen)
    assert b.inputs[2, :7].tolist() == list(PAIRS[0].prompt) + list(PAIRS[0].rejected)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_qwen"])
def test_head_in_position_blocks_gives_the_same_values_and_gradients(request, fixture, monkeypatch):
    """Big logits are computed (and recomputed in the backward) a block of positions at a time."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    from mlx_dpo.train import logprobs
    from mlx_dpo.model.adapters import apply_lora, lora_config

    model, _ = load(request.getfixturevalue(fixture))
    apply_lora(model, lora_config(4, 20.0, 0.0, None, 2, False))
    model.update(_nonzero_b(model.trainable_parameters()))
    batch = make_batch(PAIRS, [0, 1, 2], batch_size=4, pad_multiple=8)
    arrays = batch.to_mx()

    def loss(model):
        logps, _ = sequence_logps(model, **arrays)
        return (logps * mx.arange(1, logps.size + 1)).sum(), logps

    results = []
    for block_elements in (1 << 30, 1):  # one block; then one position per block (C blocks)
        monkeypatch.setattr(logprobs, "LOGITS_BLOCK_ELEMENTS", block_elements)
        (_, logps), grads = nn.value_and_grad(model, loss)(model)
        results.append((np.array(logps), dict(tree_flatten(grads))))
    (whole, g_whole), (blocks, g_blocks) = results
    np.testing.assert_allclose(blocks, whole, rtol=1e-5, atol=1e-5)
    assert g_whole.keys() == g_blocks.keys()
    for k in g_whole:
        assert mx.abs(g_blocks[k]).max().item() > 0, k
        # Relative to the largest entry: the vocabulary-chunked backward (lm_head.py) sums W[t] and
        # softmax @ W separately, which rounds near-cancelling entries differently.
        scale = np.abs(np.array(g_whole[k])).max()
        np.testing.assert_allclose(np.array(g_blocks[k]), np.array(g_whole[k]), rtol=1e-3, atol=1e-4 * scale,
                                   err_msg=k)


def _nonzero_b(params):
    """LoRA parameters with B != 0 (B = 0 gives A no gradient)."""
    from mlx.utils import tree_map
    return tree_map(lambda p: p + 0.01, params)


@pytest.mark.parametrize("fixture,cpu_path", [("tiny_model", False), ("tiny_qwen", False),
                                              ("tiny_model_4bit", False), ("tiny_model_4bit", True)])
def test_vocab_chunked_head_equals_full_logits(request, monkeypatch, fixture, cpu_path):
    """The head over vocabulary chunks (online logsumexp, chunks recomputed in the backward) gives the
    log-probs and LoRA gradients of the plain log-softmax over the full logits; llama's untied head,
    qwen2's tied embedding, a 4-bit head on the kernel and on the CPU dequantize path."""
    from mlx_dpo.model.adapters import apply_lora, lora_config
    from mlx_dpo.model.cpu_matmul import use_dequantized_matmul
    from mlx_dpo.train import lm_head, logprobs

    model, _ = load(request.getfixturevalue(fixture))
    if cpu_path:
        assert use_dequantized_matmul(model) > 0
    apply_lora(model, lora_config(4, 20.0, 0.0, None, 2, False))
    model.update(_nonzero_b(model.trainable_parameters()))
    backbone, head = logprobs.split_head(model)
    assert isinstance(head, lm_head.VocabHead)
    arrays = make_batch(PAIRS, [0, 1, 2], batch_size=4, pad_multiple=8).to_mx()

    def loss(model, chunked):
        hidden = mx.take_along_axis(backbone(arrays["inputs"]), arrays["positions"][..., None], axis=1)
        if chunked:
            tok = logprobs.head_token_logps(head, hidden, arrays["targets"], arrays["mask"])
        else:  # the straightforward computation: full fp32 logits, log-softmax, gather
            logits = head(hidden).astype(mx.float32)
            tok = mx.take_along_axis(nn.log_softmax(logits, axis=-1), arrays["targets"][..., None], -1)[..., 0]
            tok = tok * arrays["mask"]
        return (tok * mx.arange(1, tok.shape[1] + 1)).sum(), tok

    want_val, want_g = nn.value_and_grad(model, lambda m: loss(m, False))(model)
    monkeypatch.setattr(logprobs, "LOGITS_BLOCK_ELEMENTS", 1)  # engage the chunked path
    monkeypatch.setattr(lm_head, "VOCAB_CHUNK_MIN", 100)       # 384 tokens: 4 chunks, the last one short
    monkeypatch.setattr(lm_head, "CHUNK_BYTES", 1)
    got_val, got_g = nn.value_and_grad(model, lambda m: loss(m, True))(model)
    np.testing.assert_allclose(np.array(got_val[1]), np.array(want_val[1]), rtol=1e-5, atol=1e-5)
    want_g, got_g = dict(tree_flatten(want_g)), dict(tree_flatten(got_g))
    assert want_g.keys() == got_g.keys()
    for k in want_g:
        scale = np.abs(np.array(want_g[k])).max()
        assert scale > 0, k
        np.testing.assert_allclose(np.array(got_g[k]), np.array(want_g[k]), rtol=1e-4, atol=1e-5 * scale, err_msg=k)
