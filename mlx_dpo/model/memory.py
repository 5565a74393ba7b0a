"""Memory estimate of a training run before loading anything (reads config.json only; no MLX import).

weights + adapter + optimizer + activations + logits, for the chosen batch size and length. An estimate
to warn early, not a promise: real use depends on the kernels and on MLX's cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class MemoryEstimate:
    weights: float
    adapter_and_optimizer: float
    activations: float
    logits: float
    available: float | None

    @property
    def total(self) -> float:
        return self.weights + self.adapter_and_optimizer + self.activations + self.logits

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.total < 0.9 * self.available


def machine_memory() -> float | None:
    """Bytes of memory usable by MLX: Metal's recommended working set on a Mac, else physical RAM."""
    try:
        import mlx.core as mx

        info = mx.device_info() if hasattr(mx, "device_info") else {}
        if "max_recommended_working_set_size" in info:  # Metal only: guard, as on Linux it is absent
            return float(info["max_recommended_working_set_size"])
    except Exception:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate(model_dir: str | Path, *, batch_size: int, max_length: int, lora_rank: int = 8,
             lora_layers: int = -1, quantize: int | None = None, grad_checkpoint: bool = False,
             available: float | None = None) -> MemoryEstimate:
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    h = cfg.get("hidden_size", 0)
    n_layers = cfg.get("num_hidden_layers", 0)
    inter = cfg.get("intermediate_size", 4 * h)
    vocab = cfg.get("vocab_size", 0)
    heads = cfg.get("num_attention_heads", 1) or 1
    kv = cfg.get("num_key_value_heads", heads) or heads
    head_dim = cfg.get("head_dim", h // heads)
    per_layer = h * heads * head_dim + 2 * h * kv * head_dim + heads * head_dim * h + 3 * h * inter
    embed = vocab * h * (1 if cfg.get("tie_word_embeddings", False) else 2)
    params = n_layers * per_layer + embed
    bits = (cfg.get("quantization") or {}).get("bits") or quantize
    bytes_per = (bits / 8 + 4 / 64) if bits else 2.0 if "16" in str(cfg.get("torch_dtype", "")) else 4.0
    layers = n_layers if lora_layers == -1 else min(lora_layers, n_layers)
    lora_params = layers * lora_rank * (2 * (h + heads * head_dim) + 2 * (h + kv * head_dim) + 3 * (h + inter))
    seqs = 2 * batch_size  # chosen and rejected in one forward
    # Per layer and token, saved activations of attention + MLP (fp32): ~ (10 h + 3 inter) floats.
    act_layers = 1 if grad_checkpoint else n_layers
    activations = seqs * max_length * (10 * h + 3 * inter) * 4 * act_layers + seqs * max_length * h * 4 * n_layers
    logits = seqs * max_length * vocab * 4 * 2  # logits + their log-softmax, worst case all completion
    return MemoryEstimate(params * bytes_per, lora_params * 4 * 4, float(activations), float(logits),
                          available if available is not None else machine_memory())


def human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"
