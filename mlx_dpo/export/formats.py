"""Export a trained adapter: a fused Hugging Face model, a PEFT adapter, the mlx-lm adapter folder, or a GGUF
file for llama.cpp / Ollama / LM Studio (the fused hf model converted with the `gguf` package: export/gguf.py).

Every export is written to a temporary folder, reloaded from disk and compared with the in-memory
base + adapter (logits over a few prompts from the training data); only a passing export is renamed
to OUT. Fusing dequantizes first: re-quantizing a merged 4-bit weight (what mlx-lm's fuse does by
default) rounds a small DPO update away, so it happens only on request and its drift is reported.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..config import load_run_config
from ..errors import TrainingStopped, UsageError
from ..fileio import disk_full, mlx_writes, write_failure
from .card import base_model_ref, model_card
from ..model.generate import load_for_generation
from ..model.adapters import ADAPTER_CONFIG, ADAPTER_FILE, adapter_weights, read_adapter_config, set_adapter_weights
from ..model.load import resolve_model_path
from .peft_format import from_peft_tensors, peft_config, to_peft_tensors
from .verify import verification_inputs

FORMATS = ("hf", "peft", "mlx", "gguf", "gguf-lora")
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
# Largest |logit difference| accepted for an export in each dtype (the weights' rounding error).
TOLERANCE = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 2.5e-1}
COPY_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
              "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json", "generation_config.json")


@dataclass
class ExportConfig:
    model: str
    adapter: str
    output: str
    format: str = "hf"
    dtype: str | None = None        # hf/peft tensors; default: the base's dtype (float32 if unknown)
    quantize: int | None = None     # hf only: re-quantize the fused model for MLX
    verify: bool = True
    push_to_hub: str | None = None
    trust_remote_code: bool = False
    gguf_base: str | None = None    # gguf-lora only: an existing base GGUF (else the base is exported as f16)
    gguf_type: str = "f16"          # gguf only: f16, bf16, q8_0, or a k-quant of llama.cpp's (gguf_quant.py)


@dataclass
class ExportResult:
    output: Path
    max_abs_diff: float | None
    adapter_effect: float | None    # max |logit(base + adapter) - logit(base)| on the same prompts
    tolerance: float | None
    note: str = ""

    def verdict(self) -> str:
        """One line for people: what the reload-and-compare check found."""
        if self.max_abs_diff is None:
            return "verification skipped" + (f": {self.note}" if self.note else "")
        text = f"verified: max |logit difference| {self.max_abs_diff:.3g}"
        text += f" (tolerance {self.tolerance:g})" if self.tolerance else ""
        return text + (f"; {self.note}" if self.note else "")


def _logits(model, inputs: list[list[int]]) -> list[np.ndarray]:
    return [np.array(model(mx.array([ids]))[0].astype(mx.float32)) for ids in inputs]


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def _base_dtype(config: dict) -> str:
    name = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return name if name in DTYPES else "float32"


def run_export(cfg: ExportConfig, log=print) -> ExportResult:
    if cfg.format not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {cfg.format!r}")
    out = Path(cfg.output)
    if out.exists():
        raise UsageError(f"{out}: already exists; choose a new --output (nothing was written)")
    if cfg.quantize and cfg.format != "hf":
        raise UsageError("--quantize applies to --format hf only")
    if cfg.format == "gguf" and cfg.dtype:
        raise UsageError("--dtype does not apply to --format gguf; use --gguf-type f16|bf16|q8_0")
    if cfg.format == "gguf-lora" and (cfg.dtype or cfg.gguf_type != "f16"):
        raise UsageError("--dtype and --gguf-type do not apply to --format gguf-lora (the adapter stays float32, "
                         "its base is f16, or the GGUF you name with --gguf-base)")
    if cfg.gguf_base and cfg.format != "gguf-lora":
        raise UsageError("--gguf-base applies to --format gguf-lora only")
    plan = None
    if cfg.format in ("gguf", "gguf-lora"):  # refuse what cannot be converted before loading anything
        from mlx_lm.utils import load_config

        from .gguf import preflight

        from .gguf_quant import K_QUANTS, need_quantizer

        path = resolve_model_path(cfg.model)
        plan = preflight(path, load_config(path), "f16" if cfg.format == "gguf-lora" else cfg.gguf_type)
        if cfg.gguf_type in K_QUANTS:  # llama.cpp's quantizer is there, before any work
            need_quantizer(cfg.gguf_type)
        if cfg.gguf_type in K_QUANTS and not cfg.verify:
            raise UsageError(f"--no-verify does not apply to --gguf-type {cfg.gguf_type}: its drift from the MLX "
                             "model is always measured and reported")
    adapter_cfg = read_adapter_config(only_checkpoints_hint(Path(cfg.adapter)))
    if cfg.format == "gguf-lora":  # DoRA, modules llama.cpp takes no LoRA on, a mismatched --gguf-base
        from mlx_lm.utils import load_config

        from .gguf_lora import preflight_lora

        preflight_lora(cfg, plan, adapter_cfg, Path(cfg.adapter), load_config(resolve_model_path(cfg.model)))
    run_cfg = load_run_config(Path(cfg.adapter))
    if cfg.format == "peft" and cfg.quantize is None and run_cfg.get("quantize"):
        log("note: the adapter was trained on a base quantized on the fly; PEFT applies it to the float original")
    quantize = None if cfg.format == "peft" else run_cfg.get("quantize")

    model, tokenizer, switch = load_for_generation(cfg.model, cfg.adapter, quantize, cfg.trust_remote_code, log)
    from mlx_lm.utils import load_config

    base_path = resolve_model_path(cfg.model)
    base_config = load_config(base_path)
    if cfg.format == "peft" and "quantization" in base_config:
        raise UsageError(f"{cfg.model}: PEFT cannot load an MLX-quantized checkpoint; export --format hf "
                         "(dequantized) instead, or train on the unquantized original")
    dtype = cfg.dtype or _base_dtype(base_config)
    if cfg.format == "gguf":
        from .gguf import HF_DTYPE
        dtype = HF_DTYPE[cfg.gguf_type] or dtype
    elif cfg.format == "gguf-lora":
        dtype = "float16"
    if dtype not in DTYPES:
        raise UsageError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")

    inputs = verification_inputs(tokenizer, run_cfg.get("data"))
    tuned = _logits(model, inputs)
    with switch.disabled():
        base = _logits(model, inputs)
    effect = _max_diff(tuned, base)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with mlx_writes(tmp):  # any other MLX write (each writer translates its own where it writes)
            if cfg.format == "gguf":
                from .gguf_export import export_gguf
                result = export_gguf(cfg, model, tokenizer, base_path, base_config, adapter_cfg, run_cfg, dtype,
                                     plan, tmp, inputs, tuned, effect, _write_hf, ExportResult, log)
            elif cfg.format == "gguf-lora":
                from .gguf_lora import export_gguf_lora
                result = export_gguf_lora(cfg, model, tokenizer, base_path, base_config, adapter_cfg, run_cfg, plan,
                                          tmp, inputs, tuned, effect, _write_hf, ExportResult, log)
            else:
                writer = {"hf": _write_hf, "peft": _write_peft, "mlx": _write_mlx}[cfg.format]
                writer(cfg, model, tokenizer, base_path, base_config, adapter_cfg, dtype, tmp)
                (tmp / "README.md").write_text(model_card(cfg, base_config, adapter_cfg, run_cfg, dtype),
                                               encoding="utf-8")
                result = ExportResult(out, None, effect, None)
                if cfg.verify:
                    result = _verify(cfg, tmp, inputs, tuned, effect, dtype, model, log)
        os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(out, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.output = out
    if cfg.push_to_hub:
        push_to_hub(out, cfg.push_to_hub, log)
    return result


def only_checkpoints_hint(folder: Path) -> Path:
    """`folder`, unless it is a run dir holding checkpoints but no adapter copy (stopped before writing it,
    or the copy removed): then a UsageError naming its newest intact checkpoint, an adapter folder."""
    from ..train.checkpoint import checkpoint_dirs, newest_intact

    if (folder / ADAPTER_FILE).exists() or not checkpoint_dirs(folder):
        return folder
    intact = newest_intact(folder)
    if intact is None:
        raise UsageError(f"{folder}: holds no adapter ({ADAPTER_FILE}), only checkpoints, and none of them is "
                         "intact: nothing to export")
    raise UsageError(f"{folder}: holds no adapter ({ADAPTER_FILE}), only the checkpoints of a run: export its "
                     f"newest intact one with --adapter {intact}")


def _write_failed(out: Path, e: OSError) -> TrainingStopped:
    if disk_full(e):
        return TrainingStopped(f"could not write the export to {out}: the disk is full; nothing was written to "
                               f"{out}. Free some space, then run the export again.")
    return TrainingStopped(f"could not write the export to {out}: {e.filename + ': ' if e.filename else ''}"
                           f"{write_failure(e)}; nothing was written to {out}")


def _write_hf(cfg, model, tokenizer, base_path, base_config, adapter_cfg, dtype, tmp: Path):
    from mlx_lm.utils import dequantize_model, quantize_model, save_config, save_model

    fused = [(n, m.fuse(dequantize=True)) for n, m in model.named_modules() if hasattr(m, "fuse")]
    model.update_modules(tree_unflatten(fused))
    dequantize_model(model)  # embeddings / heads that were quantized but not adapted
    model.update(tree_unflatten([(k, v.astype(DTYPES[dtype])) for k, v in tree_flatten(model.parameters())]))
    config = {k: v for k, v in base_config.items() if k not in ("quantization", "quantization_config")}
    config["torch_dtype"] = dtype
    if cfg.quantize:
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            model, config = quantize_model(model, config, group_size=None, bits=cfg.quantize)
    mx.eval(model.parameters())
    with mlx_writes(tmp / "model.safetensors"):  # here, before a caller removes the partial shard
        save_model(tmp, model)
    save_config(config, tmp / "config.json")
    _copy_tokenizer(base_path, tmp, tokenizer)


def _copy_tokenizer(base_path: Path, tmp: Path, tokenizer):
    for name in COPY_FILES:
        if (base_path / name).exists():
            shutil.copy2(base_path / name, tmp / name)
    if not (tmp / "generation_config.json").exists():
        eos = sorted(getattr(tokenizer, "eos_token_ids", []) or [])
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": eos or None}, indent=2))


def _write_peft(cfg, model, tokenizer, base_path, base_config, adapter_cfg, dtype, tmp: Path):
    weights = {k: np.array(v.astype(mx.float32)) for k, v in adapter_weights(model).items()}
    tensors = {k: mx.array(v).astype(DTYPES[dtype]) for k, v in to_peft_tensors(weights).items()}
    modules = sorted({k.rsplit(".", 1)[0] for k in weights})
    pcfg = peft_config(adapter_cfg, modules, base_model_ref(str(cfg.model)), len(model.layers))
    with mlx_writes(tmp / "adapter_model.safetensors"):
        mx.save_safetensors(str(tmp / "adapter_model.safetensors"), tensors, metadata={"format": "pt"})
    (tmp / "adapter_config.json").write_text(json.dumps(pcfg, indent=2))
    _copy_tokenizer(base_path, tmp, tokenizer)


def _write_mlx(cfg, model, tokenizer, base_path, base_config, adapter_cfg, dtype, tmp: Path):
    for name in (ADAPTER_FILE, ADAPTER_CONFIG):
        shutil.copy2(Path(cfg.adapter) / name, tmp / name)


def _verify(cfg, tmp: Path, inputs, tuned, effect, dtype, model, log) -> ExportResult:
    """Reload what was written and compare its logits with the in-memory base + adapter."""
    if cfg.format == "hf":
        from mlx_lm.utils import load_model
        del model
        mx.clear_cache()
        reloaded, _ = load_model(tmp)
        got = _logits(reloaded, inputs)
    else:
        if cfg.format == "peft":
            peft = mx.load(str(tmp / "adapter_model.safetensors"))
            weights = from_peft_tensors({k: np.array(v.astype(mx.float32)) for k, v in peft.items()})
        else:
            weights = {k: np.array(v) for k, v in mx.load(str(tmp / ADAPTER_FILE)).items()}
        set_adapter_weights(model, weights, str(tmp))
        got = _logits(model, inputs)
    diff = _max_diff(got, tuned)
    tol = TOLERANCE[dtype] if cfg.format != "mlx" else TOLERANCE["float32"]
    where = f"{cfg.format} export ({dtype}{f', {cfg.quantize}-bit' if cfg.quantize else ''})"
    log(f"verify: {where}: max |logit difference| vs base + adapter = {diff:.3g} "
        f"(adapter's own effect on logits: {effect:.3g}; tolerance {tol:g})")
    if cfg.quantize:
        kept = max(0.0, 1 - diff / effect) if effect > 0 else 1.0
        log(f"note: re-quantized to {cfg.quantize} bits: logits moved by up to {diff:.3g}; "
            f"about {kept:.0%} of the adapter's effect is above that noise")
        return ExportResult(tmp, diff, effect, None, note="re-quantized: drift reported, not enforced")
    if not np.isfinite(diff) or diff > tol:
        raise TrainingStopped(f"export verification failed: max |logit difference| {diff:.3g} exceeds the "
                              f"{dtype} tolerance {tol:g}; nothing was written to {cfg.output}"
                              + ("; try --dtype float32" if dtype != "float32" else ""))
    return ExportResult(tmp, diff, effect, tol)


def push_to_hub(folder: Path, repo: str, log=print) -> None:
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model")
    except Exception as e:  # the token comes from the usual place and is never printed
        raise UsageError(f"push to hub {repo} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    log(f"pushed {folder} to https://huggingface.co/{repo}")

