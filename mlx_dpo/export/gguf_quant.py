"""k-quant GGUF types (q4_k_m, q5_k_m, q6_k, q4_0): llama.cpp's own quantizer (`llama_model_quantize` through
llama-cpp-python) applied to the verified f16 export, and the drift it causes, measured in llama.cpp.

No quantization code of ours: the k-quant formats and llama.cpp's per-tensor mix (Q4_K_M keeps some attention-v
and feed-forward-down tensors at Q6_K) change with llama.cpp, so only llama.cpp itself writes them. Rows whose
length is not a multiple of 256 (k-quant blocks) fall back to llama.cpp's own choice of another type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# --gguf-type -> the llama_ftype constant's name in llama_cpp
K_QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
            "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}
INSTALL_HINT = "pip install 'mlx-dpo[gguf-verify]'"


def need_quantizer(gguf_type: str) -> None:
    """Refuse a k-quant before any work when llama.cpp's quantizer is not importable."""
    from ..errors import UsageError

    try:
        import llama_cpp
        getattr(llama_cpp, K_QUANTS[gguf_type])
        llama_cpp.llama_model_quantize  # noqa: B018
    except Exception:
        raise UsageError(f"--gguf-type {gguf_type} is made by llama.cpp's own quantizer, which needs "
                         f"llama-cpp-python: {INSTALL_HINT}") from None


def quantize(src: Path, dst: Path, gguf_type: str) -> None:
    import os

    import llama_cpp

    from ..errors import TrainingStopped

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, K_QUANTS[gguf_type])
    params.nthread = max(1, min(8, os.cpu_count() or 1))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.exists():
        raise TrainingStopped(f"llama.cpp's quantizer failed on {src.name} ({gguf_type}, return code {rc})")


@dataclass
class Drift:
    max_abs_diff: float       # max |logit(llama.cpp, quantized) - logit(MLX base + adapter)|
    max_rel_diff: float       # the same, over the largest |MLX logit| of that sequence
    agree: int                # positions where both pick the same greedy next token
    positions: int

    @property
    def agreement(self) -> float:
        return self.agree / self.positions if self.positions else 1.0

    def line(self) -> str:
        return (f"max |logit difference| {self.max_abs_diff:.3g} (relative {self.max_rel_diff:.1%}); greedy next "
                f"token agrees at {self.agree}/{self.positions} positions ({self.agreement:.0%})")


def measure_drift(path: Path, inputs: list[list[int]], tuned: list[np.ndarray]) -> Drift:
    from .gguf import llama_logits, load_llama

    llm = load_llama(path, max(len(x) for x in inputs) + 16)
    try:
        absd = rel = 0.0
        agree = total = 0
        for ids, want in zip(inputs, tuned):
            got = llama_logits(llm, ids)
            d = float(np.abs(got - want).max())
            absd, rel = max(absd, d), max(rel, d / max(float(np.abs(want).max()), 1e-9))
            agree += int((got.argmax(-1) == want.argmax(-1)).sum())
            total += len(ids)
        return Drift(absd, rel, agree, total)
    finally:
        llm.close() if hasattr(llm, "close") else None


def size_text(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
