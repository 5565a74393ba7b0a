"""The CPU path for quantized layers (dequantize + BLAS matmul) computes what quantized_matmul does."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from mlx_dpo.config import TrainConfig
from mlx_dpo.model.cpu_matmul import (MIN_ROWS, CPUQuantizedEmbedding, CPUQuantizedLinear, compute_tag,
                                use_dequantized_matmul)
from mlx_dpo.model.adapters import apply_lora, lora_config
from mlx_dpo.model.load import load_base
from mlx_dpo.train.trainer import Trainer


def _quantized_linear(bits, bias, dtype=mx.float32, seed=0):
    mx.random.seed(seed)
    layer = nn.QuantizedLinear.from_linear(nn.Linear(128, 96, bias=bias), group_size=64, bits=bits)
    if bias:
        layer.bias = mx.random.normal((96,)) * 0.1
    layer.set_dtype(dtype)
    return layer


def _pair(bits, bias, dtype=mx.float32):
    """Two identical quantized layers, the second switched to the CPU path."""
    plain, fast = (_quantized_linear(bits, bias, dtype) for _ in range(2))
    assert use_dequantized_matmul(fast) == 1 and type(fast) is CPUQuantizedLinear
    assert all(mx.array_equal(a, b) for (_, a), (_, b) in zip(tree_flatten(plain), tree_flatten(fast)))
    return plain, fast


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_and_input_gradient_match_quantized_matmul(bits, bias):
    layer, fast = _pair(bits, bias)
    x = mx.random.normal((3, 40, 128))
    cot = mx.random.normal((3, 40, 96))
    np.testing.assert_allclose(np.array(fast(x)), np.array(layer(x)), rtol=1e-5, atol=1e-5)
    grad = lambda f: mx.grad(lambda x: (f(x) * cot).sum())(x)  # noqa: E731
    np.testing.assert_allclose(np.array(grad(fast)), np.array(grad(layer)), rtol=1e-4, atol=1e-5)


def test_half_precision_layer_accumulates_in_fp32():
    layer, fast = _pair(4, False, mx.bfloat16)
    x = mx.random.normal((64, 128)).astype(mx.bfloat16)
    got = fast(x)
    assert got.dtype == mx.bfloat16
    exact = x.astype(mx.float32) @ mx.dequantize(layer.weight, layer.scales, layer.biases, 64, 4).astype(mx.float32).T
    # one rounding to bf16 of the fp32 result: within bf16's half-ulp
    np.testing.assert_allclose(np.array(got.astype(mx.float32)), np.array(exact), rtol=2 ** -8, atol=1e-2)


def test_few_rows_keep_the_quantized_kernel_bit_for_bit():
    layer, fast = _pair(4, True)
    x = mx.random.normal((1, MIN_ROWS - 1, 128))
    assert mx.array_equal(fast(x), layer(x))


def test_tied_head_uses_the_cpu_path():
    mx.random.seed(1)
    emb = nn.QuantizedEmbedding.from_embedding(nn.Embedding(256, 128), group_size=64, bits=4)
    x, ids = mx.random.normal((2, 20, 128)), mx.array([[3, 4, 200]])
    want_logits, want_rows = emb.as_linear(x), emb(ids)
    assert use_dequantized_matmul(emb) == 1 and isinstance(emb, CPUQuantizedEmbedding)
    np.testing.assert_allclose(np.array(emb.as_linear(x)), np.array(want_logits), rtol=1e-5, atol=1e-5)
    assert mx.array_equal(emb(ids), want_rows)  # the lookup itself is untouched


def test_gpu_models_are_left_alone():
    model = nn.Sequential(_quantized_linear(4, False), _quantized_linear(4, False))
    assert use_dequantized_matmul(model, device=mx.Device(mx.gpu)) == 0
    assert all(type(m) is nn.QuantizedLinear for m in model.layers)
    assert use_dequantized_matmul(model, device=mx.Device(mx.cpu)) == 2
    assert all(isinstance(m, CPUQuantizedLinear) for m in model.layers)


def cpu_path_layers(model) -> int:
    return sum(isinstance(m, (CPUQuantizedLinear, CPUQuantizedEmbedding)) for _, m in model.named_modules())


def test_load_base_switches_quantized_layers_and_can_be_told_not_to(tiny_model_4bit, tiny_model):
    on = load_base(tiny_model_4bit, log=lambda *_: None)
    off = load_base(tiny_model_4bit, log=lambda *_: None, cpu_dequant=False)
    n_quantized = sum(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in off.model.named_modules())
    assert cpu_path_layers(on.model) == n_quantized > 0 and cpu_path_layers(off.model) == 0
    assert compute_tag(on.model) != compute_tag(off.model)  # so the reference caches differ
    assert cpu_path_layers(load_base(tiny_model, log=lambda *_: None).model) == 0  # float model: nothing to do


def test_lora_gradients_match_the_quantized_kernel(tiny_model_4bit):
    """Every LoRA tensor's gradient through the CPU path equals the one through quantized_matmul."""
    grads = []
    for cpu_dequant in (False, True):
        model = load_base(tiny_model_4bit, log=lambda *_: None, cpu_dequant=cpu_dequant).model
        mx.random.seed(0)
        apply_lora(model, lora_config(4, 20.0, 0.0, None, 2, False))
        # B = 0 gives A no gradient; a non-zero B exercises both factors
        model.update(tree_map(lambda p: p + 0.01, model.trainable_parameters()))
        tokens = mx.array(np.random.default_rng(0).integers(3, 200, (2, 48)))

        def loss(params):
            model.update(params)
            return nn.losses.cross_entropy(model(tokens[:, :-1]), tokens[:, 1:]).mean()

        grads.append(dict(tree_flatten(mx.grad(loss)(model.trainable_parameters()))))
    qmm, fast = grads
    assert qmm.keys() == fast.keys() and len(qmm) > 0
    for k in qmm:
        assert mx.abs(fast[k]).max().item() > 0, k
        np.testing.assert_allclose(np.array(fast[k]), np.array(qmm[k]), rtol=1e-3, atol=1e-6, err_msg=k)


def test_training_on_either_path_gives_the_same_adapter(tiny_model_4bit, pairs_file, tmp_path):
    adapters = []
    for flag in (False, True):
        cfg = TrainConfig(model=tiny_model_4bit, data=pairs_file, output=str(tmp_path / f"run-{flag}"), iters=3,
                          batch_size=4, learning_rate=1e-3, lr_schedule="constant", cpu_dequant_matmul=flag,
                          cache_dir=str(tmp_path / "cache")).validate()
        trainer = Trainer(cfg).setup()
        trainer.train()
        adapters.append(dict(tree_flatten(trainer.model.trainable_parameters())))
    slow, fast = adapters
    for k in slow:
        scale = mx.abs(slow[k]).max().item()
        assert mx.abs(fast[k] - slow[k]).max().item() <= 1e-3 * scale, k
    # and each path scored its own reference (the cache key has the path)
    assert len(list((tmp_path / "cache" / "reference").glob("*.safetensors"))) == 2


def test_many_rows_never_reach_quantized_matmul(monkeypatch):
    layer, fast = _pair(4, True)
    x = mx.random.normal((2, MIN_ROWS, 128))

    def unavailable(*a, **k):
        raise AssertionError("quantized_matmul called")

    monkeypatch.setattr(mx, "quantized_matmul", unavailable)
    mx.eval(fast(x), mx.grad(lambda x: fast(x).sum())(x))  # forward and backward on the BLAS
    with pytest.raises(AssertionError, match="quantized_matmul called"):
        layer(x)
