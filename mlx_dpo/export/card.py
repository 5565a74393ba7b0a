"""The README model card written with every export: base model, data, hyper-parameters, metrics."""

from __future__ import annotations

from pathlib import Path

from ..fileio import read_jsonl_tolerant

LIBRARY = {"hf": "transformers", "peft": "peft", "mlx": "mlx"}
HYPER = ("loss", "beta", "label_smoothing", "learning_rate", "lr_schedule", "warmup_steps", "iters", "epochs",
         "batch_size", "grad_accum", "max_length", "max_prompt_length", "quantize", "seed")


def model_card(cfg, base_config: dict, adapter_cfg: dict, run_cfg: dict, dtype: str) -> str:
    lp = adapter_cfg["lora_parameters"]
    lines = ["---", f"base_model: {cfg.model}", f"library_name: {LIBRARY[cfg.format]}",
             "tags: [dpo, lora, mlx, mlx-dpo]", "---", "",
             f"# {Path(cfg.output).name}", "",
             f"A {adapter_cfg['fine_tune_type'].upper()} adapter trained with Direct Preference Optimization "
             f"by mlx-dpo on `{cfg.model}` ({base_config.get('model_type', 'unknown')} architecture).", "",
             f"- export format: `{cfg.format}`" + (f", {dtype}" if cfg.format != "mlx" else "")
             + (f", re-quantized to {cfg.quantize} bits" if cfg.quantize else ""),
             f"- training data: `{run_cfg.get('data', 'unknown')}`"
             + (f" (held out: `{run_cfg['valid_data']}`)" if run_cfg.get("valid_data") else ""),
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
