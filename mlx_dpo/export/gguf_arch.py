"""Per-architecture knowledge for the GGUF export: what llama.cpp expects of each family, as llama.cpp's own
convert_hf_to_gguf.py (conversion/llama.py, gemma.py, phi.py) writes it, and what it would get wrong.

- Llama / Mistral: q/k rows permuted (llama.cpp's Llama RoPE rotates adjacent pairs; HF rotates halves),
  Llama 3's RoPE frequency factors as a tensor.
- Qwen2: as Llama, without the permutation (NEOX RoPE, like HF). Qwen3: the same, plus the queries' and
  keys' RMSNorms (attn_q_norm, attn_k_norm), which gguf's tensor map names.
- Gemma 2 / Gemma 3 (text): HF stores RMSNorm weights as w - 1 (the model computes x * (1 + w)), llama.cpp
  wants the factor itself: +1 on every "norm.weight". The embedding scaling by sqrt(hidden) is llama.cpp's
  own; soft-capping, the sliding window and its layer pattern, and Gemma 3's local RoPE base are keys.
  llama.cpp scales queries by 1/sqrt(head_dim), except for the 27B models (recognised by their layer count),
  where it uses 1/sqrt(hidden / heads): a config whose query_pre_attn_scalar says otherwise is refused.
- Phi-3: q/k/v and gate/up stay fused as in HF (attn_qkv, ffn_up of twice the width); partial rotary
  dimensions; LongRoPE's factor tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class Family:
    arch: str                       # gguf.MODEL_ARCH member name
    permute: bool = False           # q/k rows to llama.cpp's adjacent-pair RoPE layout
    norm_shift: float = 0.0         # added to every "*norm.weight" (Gemma's 1 + w convention)
    drop: tuple = ()                # tensors llama.cpp does not read (it would refuse the file)
    rope_kinds: tuple = ("none",)
    extra: object = None            # writer of the family's own keys: extra(w, config)
    tolerance_scale: float = 1.0    # Gemma: llama.cpp's CPU GELU goes through an f16 table (gguf.GGUF_TOLERANCE)
    checks: tuple = field(default=())


def _head_dim(config: dict) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def _gemma_scale_check(config: dict, big_layers: int) -> str | None:
    """llama.cpp's query scale for Gemma: 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B layer count."""
    expected = (config["hidden_size"] // config["num_attention_heads"]
                if config["num_hidden_layers"] == big_layers else _head_dim(config))
    got = config.get("query_pre_attn_scalar", expected)
    if got != expected:
        return (f"query_pre_attn_scalar {got} differs from the {expected} llama.cpp assumes for a "
                f"{config['num_hidden_layers']}-layer model of this family")
    return None


def _gemma2_extra(w, config: dict) -> None:
    w.add_attn_logit_softcapping(config.get("attn_logit_softcapping") or 50.0)
    w.add_final_logit_softcapping(config.get("final_logit_softcapping") or 30.0)
    w.add_sliding_window(config.get("sliding_window") or 4096)


def gemma3_sliding(config: dict) -> list[bool]:
    """Which layers use the sliding window: all but every `sliding_window_pattern`-th (mlx-lm's rule)."""
    pattern = config.get("sliding_window_pattern") or 6
    types = config.get("layer_types")
    if types:
        return [t == "sliding_attention" for t in types]
    return [(i + 1) % pattern != 0 for i in range(config["num_hidden_layers"])]


def _gemma3_extra(w, config: dict) -> None:
    if config.get("final_logit_softcapping"):
        w.add_final_logit_softcapping(config["final_logit_softcapping"])
    sliding = gemma3_sliding(config)
    if any(sliding):
        w.add_sliding_window(config.get("sliding_window") or 512)
        w.add_sliding_window_pattern(sliding)
    w.add_rope_freq_base_swa(config.get("rope_local_base_freq") or 10000.0)


def _phi3_extra(w, config: dict) -> None:
    scaling = config.get("rope_scaling") or {}
    original = (scaling.get("original_max_position_embeddings")
                or config.get("original_max_position_embeddings") or config.get("max_position_embeddings", 4096))
    w.add_rope_scaling_orig_ctx_len(original)
    kind = (scaling.get("rope_type") or scaling.get("type") or "none").lower()
    if kind in ("longrope", "su"):
        import gguf

        scale = config["max_position_embeddings"] / original
        attn = math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1.0 else 1.0
        w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        w.add_rope_scaling_attn_factors(attn)


FAMILIES = {
    "llama": Family("LLAMA", permute=True, rope_kinds=("none", "linear", "llama3")),
    "mistral": Family("LLAMA", permute=True, rope_kinds=("none", "linear")),
    "qwen2": Family("QWEN2", rope_kinds=("none", "linear")),
    "qwen3": Family("QWEN3", rope_kinds=("none", "linear")),
    "gemma2": Family("GEMMA2", norm_shift=1.0, drop=("lm_head.weight",), extra=_gemma2_extra,
                     tolerance_scale=2.0, checks=(lambda c: _gemma_scale_check(c, 46),)),
    "gemma3_text": Family("GEMMA3", norm_shift=1.0, rope_kinds=("none", "linear"), extra=_gemma3_extra,
                          tolerance_scale=2.0, checks=(lambda c: _gemma_scale_check(c, 62),)),
    "phi3": Family("PHI3", rope_kinds=("none", "longrope", "su"), extra=_phi3_extra),
}
# What people call them, for messages (model_type in config.json -> family name).
FAMILY_NAMES = {"llama": "Llama (2, 3.x)", "mistral": "Mistral", "qwen2": "Qwen2/2.5", "qwen3": "Qwen3",
                "gemma2": "Gemma 2",
                "gemma3_text": "Gemma 3 (text)", "phi3": "Phi-3/3.5"}
# Related model types that are not converted, with the reason, so the refusal can say why.
NOT_YET = {
    "gemma3": "a multimodal Gemma 3 checkpoint (only the text-only gemma3_text layout is converted)",
    "gemma": "Gemma 1", "phi": "Phi-2", "phimoe": "Phi-3.5-MoE", "mixtral": "Mixtral (mixture of experts)",
}


def supported_list() -> str:
    return ", ".join(f"{FAMILY_NAMES[k]} ({k})" for k in FAMILIES)


def family_for(config: dict) -> Family:
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        why = f" ({NOT_YET[model_type]})" if model_type in NOT_YET else ""
        raise UsageError(f"--format gguf: architecture {model_type!r}{why} is not supported; supported: "
                         f"{supported_list()} (export --format hf and convert it with llama.cpp's "
                         "convert_hf_to_gguf.py instead)")
    fam = FAMILIES[model_type]
    for check in fam.checks:
        if (problem := check(config)) is not None:
            raise UsageError(f"--format gguf: {problem}; llama.cpp would compute a different model")
    return fam


def rope_plan(config: dict, fam: Family) -> dict:
    scaling = config.get("rope_scaling") or {}
    kind = (scaling.get("rope_type") or scaling.get("type") or "none").lower()
    if kind == "default":
        kind = "none"
    if kind not in fam.rope_kinds:
        raise UsageError(f"--format gguf: rope scaling {kind!r} is not supported for {config['model_type']} "
                         f"(supported: {', '.join(fam.rope_kinds)})")
    return {} if kind == "none" else dict(scaling, kind=kind)


def rope_dims(config: dict) -> int:
    return int(_head_dim(config) * config.get("partial_rotary_factor", 1.0))


def llama3_rope_factors(config: dict, scaling: dict) -> np.ndarray:
    base = config.get("rope_theta", 10000.0)
    dim = _head_dim(config)
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = scaling.get("factor", 8.0)
    low, high = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old = scaling.get("original_max_position_embeddings", 8192)
    low_wl, high_wl = old / low, old / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def generated_tensors(config: dict, rope: dict) -> dict[str, np.ndarray]:
    """Tensors llama.cpp wants that the checkpoint does not hold (RoPE factors)."""
    if rope.get("kind") == "llama3":
        return {"rope_freqs.weight": llama3_rope_factors(config, rope)}
    if rope.get("kind") in ("longrope", "su"):
        return {"rope_factors_long.weight": np.array(rope["long_factor"], dtype=np.float32),
                "rope_factors_short.weight": np.array(rope["short_factor"], dtype=np.float32)}
    return {}


def permute(x: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> llama.cpp's adjacent-pair layout (convert_hf_to_gguf's LlamaModel.permute)."""
    return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def transform(fam: Family, config: dict, key: str, data: np.ndarray) -> np.ndarray:
    """One HF tensor as llama.cpp reads it."""
    if fam.norm_shift and key.endswith("norm.weight"):
        data = data + fam.norm_shift
    if fam.permute:
        if key.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, config["num_attention_heads"])
        elif key.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, config.get("num_key_value_heads") or config["num_attention_heads"])
    return data


def llama_cpp_name(fam: Family, name: str, special_rstrip: bool) -> str:
    """general.name as llama.cpp reads it: for Phi-3 a name containing "phi3"/"phi-3" makes llama.cpp strip
    the whitespace after special tokens (as Phi-3's own tokenizer.json does with rstrip); so the name says
    Phi-3 exactly when our tokenizer strips, and otherwise must not."""
    if fam.arch != "PHI3":
        return name
    mentions = any(s in name.lower() for s in ("phi3", "phi-3"))
    if special_rstrip and not mentions:
        return f"{name} (Phi-3)"
    if not special_rstrip and mentions:
        return name.lower().replace("phi-3", "phi 3").replace("phi3", "phi 3")
    return name
