"""Map mlx-lm LoRA/DoRA adapters to Hugging Face PEFT's format and back.

mlx-lm stores x @ lora_a @ lora_b with lora_a (in, r) and lora_b (r, out), scaled by `scale`.
PEFT stores lora_A.weight (r, in) and lora_B.weight (out, r), scaled by lora_alpha / r; so the
tensors are transposed and lora_alpha = scale * r. DoRA's magnitude `m` (out,) is PEFT's
`lora_magnitude_vector`; both normalise each output row of W + scale·BA, so the mapping is exact.
PEFT keys are `base_model.model.<module path>.<leaf>`.
"""

from __future__ import annotations

import re

import numpy as np

PREFIX = "base_model.model."
TO_PEFT = {"lora_a": "lora_A.weight", "lora_b": "lora_B.weight", "m": "lora_magnitude_vector"}
FROM_PEFT = {v: k for k, v in TO_PEFT.items()}


def to_peft_tensors(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, w in weights.items():
        module, leaf = name.rsplit(".", 1)
        w = np.asarray(w)
        out[f"{PREFIX}{module}.{TO_PEFT[leaf]}"] = np.ascontiguousarray(w.T if leaf != "m" else w)
    return out


def from_peft_tensors(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, w in tensors.items():
        if not key.startswith(PREFIX):
            raise ValueError(f"{key}: not a PEFT adapter key")
        body = key[len(PREFIX):]
        for peft_leaf, leaf in FROM_PEFT.items():
            if body.endswith("." + peft_leaf):
                module = body[: -len(peft_leaf) - 1]
                out[f"{module}.{leaf}"] = np.ascontiguousarray(w.T if leaf != "m" else w)
                break
        else:
            raise ValueError(f"{key}: unknown PEFT adapter tensor")
    return out


def peft_config(adapter_cfg: dict, module_names: list[str], base_model: str, total_layers: int) -> dict:
    """adapter_config.json for PEFT: target modules as block-relative paths, adapted layers listed."""
    lp = adapter_cfg["lora_parameters"]
    layer_re = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+)$")
    targets, layers = set(), set()
    for name in module_names:
        m = layer_re.search(name)
        if not m:
            raise ValueError(f"{name}: adapter layer outside the transformer blocks has no PEFT mapping here")
        layers.add(int(m.group(1)))
        targets.add(m.group(2))
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lp["rank"],
        "lora_alpha": lp["scale"] * lp["rank"],
        "lora_dropout": lp.get("dropout", 0.0),
        "target_modules": sorted(targets),
        "layers_to_transform": sorted(layers) if len(layers) < total_layers else None,
        "layers_pattern": "layers" if len(layers) < total_layers else None,
        "use_dora": adapter_cfg["fine_tune_type"] == "dora",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": None,
        "use_rslora": False,
        "init_lora_weights": True,
    }
