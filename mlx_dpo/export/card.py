"""The README model card written with every export: base model, data, hyper-parameters, metrics."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..data.sources import DATA_SUFFIXES
from ..fileio import read_jsonl_tolerant

LIBRARY = {"hf": "transformers", "peft": "peft", "mlx": "mlx", "gguf": "gguf", "gguf-lora": "gguf"}
FUSED = ("hf", "gguf")  # formats that hold the whole model (the adapter merged in), not an adapter
HYPER = ("loss", "beta", "label_smoothing", "learning_rate", "lr_schedule", "warmup_steps", "iters", "epochs",
         "batch_size", "grad_accum", "max_length", "max_prompt_length", "quantize", "seed")


_CACHED = re.compile(r"(?:^|/)models--([^/]+)--([^/]+)/snapshots/[^/]+/?$")


def base_model_ref(model: str) -> str:
    """How an export names its base so it loads from any folder: a hub id as typed (or the id of a
    Hugging Face cache snapshot), else the folder's absolute path (not the path as typed)."""
    p = Path(model).expanduser()
    if not p.exists():
        return model  # a hub id
    absolute = os.path.abspath(p)
    m = _CACHED.search(Path(absolute).as_posix())
    return f"{m.group(1)}/{m.group(2)}" if m else absolute


def _is_hub_id(ref: str) -> bool:
    return not ref.startswith(("/", ".", "~")) and ref.count("/") == 1 and not Path(ref).exists()


_FILE_SUFFIXES = (*DATA_SUFFIXES, ".gz")


def _data_ref(data, split) -> str:
    """`data`, with its split when it is a dataset folder or hub id (a file has no splits)."""
    is_file = str(data).lower().endswith(_FILE_SUFFIXES)
    return f"`{data}`" + (f" (split {split})" if split and not is_file else "")


def _data_line(run_cfg: dict) -> str:
    data, split = run_cfg.get("data") or "unknown", run_cfg.get("split")
    line = f"- training data: {_data_ref(data, split)}"
    if run_cfg.get("valid_data") or run_cfg.get("valid_split"):
        held = _data_ref(run_cfg.get("valid_data") or data, run_cfg.get("valid_split") or split)
        line += f" (held out: {held})"
    return line


def _what(fmt: str, kind: str, base: str, arch: str) -> str:
    """The card's first sentence: a whole model (the adapter merged in) or the adapter alone."""
    if fmt in FUSED:
        return (f"`{base}` ({arch} architecture) with a {kind} adapter fused into its weights; the adapter was "
                "trained with Direct Preference Optimization by mlx-dpo.")
    return f"A {kind} adapter trained with Direct Preference Optimization by mlx-dpo on `{base}` ({arch} architecture)."


def model_card(cfg, base_config: dict, adapter_cfg: dict, run_cfg: dict, dtype: str) -> str:
    lp = adapter_cfg["lora_parameters"]
    base = base_model_ref(cfg.model)
    # The hub checks `base_model:` and `datasets:` hold repo ids: a local path only goes in the text.
    meta = [f"base_model: {base}"] if _is_hub_id(base) else []
    data = str(run_cfg.get("data") or "")
    if _is_hub_id(data) and not data.lower().endswith(_FILE_SUFFIXES):
        meta.append(f"datasets: [{data}]")
    lines = ["---", *meta, f"library_name: {LIBRARY[cfg.format]}",
             "tags: [dpo, lora, mlx, mlx-dpo]", "---", "",
             f"# {Path(cfg.output).name}", "",
             _what(cfg.format, adapter_cfg['fine_tune_type'].upper(), base, base_config.get('model_type', 'unknown')),
             "",
             f"- export format: `{cfg.format}`" + (f", {dtype}" if cfg.format != "mlx" else "")
             + (f", re-quantized to {cfg.quantize} bits" if cfg.quantize else ""),
             _data_line(run_cfg),
             f"- adapter: rank {lp['rank']}, scale {lp['scale']}, dropout {lp.get('dropout', 0.0)}, "
             f"{adapter_cfg['num_layers']} layers, keys {lp.get('keys') or 'all linear layers'}", ""]
    hyper = [(k, run_cfg[k]) for k in HYPER if run_cfg.get(k) is not None]
    if hyper:
        lines += ["| hyper-parameter | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in hyper] + [""]
    rows = read_jsonl_tolerant(Path(cfg.adapter) / "metrics.jsonl")
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval/loss" in r]
    if train or evals:
        lines += ["| final metric | value |", "|---|---|"]
        for row in ([train[-1]] if train else []) + ([evals[-1]] if evals else []):
            lines += [f"| {k} | {v:.4f} |" for k, v in row.items()
                      if k.split("/")[-1] in ("loss", "accuracies", "margins") and isinstance(v, float)]
        lines.append("")
    return "\n".join(lines)
