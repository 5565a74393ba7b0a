"""Quantized layers on the CPU: dequantize the weight and multiply on the BLAS, not in quantized_matmul.

MLX's CPU `quantized_matmul` with a transposed weight — the forward of every quantized Linear,
x @ W.T — unpacks each weight element once per input row. Measured on this project's 2-core box:
2.2 GFLOP/s for 4-bit float32 layers (7 for the untransposed kernel a backward uses) and 0.05–0.3
GFLOP/s for float16/bfloat16 layers, against 60–140 GFLOP/s for dequantize + an fp32 matmul on
OpenBLAS (1.7–2.4 on the wheel's bundled reference BLAS: per float32 matmul 0.8x forward, 0.5x
backward, a wash end to end on the benchmark model; a Mac's CPU uses Accelerate). The GPU kernels are
another matter, so nothing changes on the GPU (see `applies`).

The values are the same up to fp32 summation order (the fp32 matmul of the dequantized weight is what
`quantized_matmul` computes, term by term). Half-precision layers multiply in fp32 and round once:
within 0.2% of the fp32 product where MLX's bf16 CPU kernel is off by 3-7% (benchmarks/matmul_paths.py).
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

# Below this many input rows (decoding a token, a tiny prompt) unpacking the whole weight costs more
# than the per-row kernel: the layer keeps quantized_matmul.
MIN_ROWS = 16


def _cast(a: mx.array, dtype) -> mx.array:
    return a if a.dtype == dtype else a.astype(dtype)  # no copy for float32 layers


def _fp32(a: mx.array) -> mx.array:
    return _cast(a, mx.float32)


@lru_cache(maxsize=None)
def dequantized_matmul(group_size: int, bits: int):
    """x @ dequantize(w).T in fp32, with a VJP for the input only (W is frozen).

    The fp32 weight is a transient of one layer at a time (the LM head's, vocab x hidden x 4 bytes,
    is the largest; the logits it produces are larger whenever a batch has more rows than the hidden
    size). The backward dequantizes again rather than keeping it: measured on the 50.9M benchmark
    model, a training step at 1.1-1.2x the MLX peak of quantized_matmul and 9x its speed.
    """

    def weight(w, scales, biases):
        return _fp32(mx.dequantize(w, scales, biases, group_size, bits))

    # The weight is unpacked only once the other operand exists (mx.depends): the codes do not depend on
    # the activations, so MLX's scheduler is free to unpack layers ahead of their turn and hold several in
    # fp32 at once; the LM head did exactly that (train/lm_head.py). A guard here: no block-level case was
    # caught in isolation, but a 32-block 8B step ran out of memory (22 GB) without it and without
    # checkpointing's own ordering (train/checkpointing.py).
    @mx.custom_function
    def matmul(x, w, scales, biases):
        return _cast(_fp32(x) @ weight(*mx.depends([w, scales, biases], [x])).T, x.dtype)

    @matmul.vjp
    def matmul_vjp(primals, cotangent, output):
        x, w, scales, biases = primals
        dx = _fp32(cotangent) @ weight(*mx.depends([w, scales, biases], [cotangent]))
        return _cast(dx, x.dtype), mx.zeros_like(w), mx.zeros_like(scales), mx.zeros_like(biases)

    return matmul


def _many_rows(x: mx.array) -> bool:
    return x.size // max(x.shape[-1], 1) >= MIN_ROWS


class CPUQuantizedLinear(nn.QuantizedLinear):
    """A QuantizedLinear (same parameters, same isinstance) whose forward uses `dequantized_matmul`."""

    def __call__(self, x):
        if not _many_rows(x):
            return super().__call__(x)
        y = dequantized_matmul(self.group_size, self.bits)(x, self["weight"], self["scales"], self["biases"])
        return y + self["bias"] if "bias" in self else y


class CPUQuantizedEmbedding(nn.QuantizedEmbedding):
    """A QuantizedEmbedding whose `as_linear` (a tied LM head) uses `dequantized_matmul`."""

    def as_linear(self, x):
        if not _many_rows(x):
            return super().as_linear(x)
        return dequantized_matmul(self.group_size, self.bits)(x, self["weight"], self["scales"], self["biases"])


_SWAPS = {nn.QuantizedLinear: CPUQuantizedLinear, nn.QuantizedEmbedding: CPUQuantizedEmbedding}


def applies(device=None) -> bool:
    """Only the CPU has the slow transposed kernel; Metal's quantized kernels are left alone."""
    return (device or mx.default_device()).type == mx.cpu


def use_dequantized_matmul(model: nn.Module, device=None) -> int:
    """Switch the model's affine-quantized layers to the CPU path (on the CPU only); returns how many."""
    if not applies(device):
        return 0
    n = 0
    for _, module in model.named_modules():
        swap = _SWAPS.get(type(module))
        if swap is not None and getattr(module, "mode", "affine") == "affine":
            module.__class__ = swap  # same parameters and attributes: only the forward changes
            n += 1
    return n


def compute_tag(model: nn.Module) -> str:
    """Device and matmul path, for cache keys: the two paths agree only up to fp32 rounding."""
    swapped = any(isinstance(m, tuple(_SWAPS.values())) for _, m in model.named_modules())
    return f"device={mx.default_device().type}|cpu_dequant={swapped}"
