"""Load a base model (local folder or hub id) and its tokenizer, quantizing on request.

Everything model-specific goes through mlx-lm's loader and quantization, so any architecture
mlx-lm supports works here. Adapters are added by `adapters.py`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from .cpu_matmul import use_dequantized_matmul
from ..errors import UsageError


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    path: Path           # resolved local folder


def resolve_model_path(model: str) -> Path:
    """A local folder as is; otherwise a hub id resolved through huggingface-hub (cache, offline mode)."""
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{model}: model must be a folder (HF format), not a file")
        _check_model_folder(p)
        return p
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise UsageError(f"{model}: no such model folder (and not a hub id of the form org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        local = snapshot_download(model, allow_patterns=[
            "*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"])
    except LocalEntryNotFoundError:
        raise UsageError(f"{model}: not in the local Hugging Face cache and the hub is unreachable "
                         "(offline?); pass a local folder or download it first") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UsageError(f"{model}: could not fetch from the Hugging Face hub: {str(e).splitlines()[0]}") from None
    p = Path(local)
    _check_model_folder(p)
    return p


def _check_model_folder(p: Path) -> None:
    if not (p / "config.json").exists():
        raise UsageError(f"{p}: not a model folder: config.json is missing")
    if not list(p.glob("model*.safetensors")):
        raise UsageError(f"{p}: no model*.safetensors weights in the model folder")
    if not any((p / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise UsageError(f"{p}: no tokenizer files (tokenizer.json / tokenizer_config.json) in the model folder")


def load_tokenizer_only(model: str):
    """The tokenizer of a model (no weights loaded): for data inspection."""
    from mlx_lm.utils import load_config, load_tokenizer

    path = resolve_model_path(model)
    try:
        return load_tokenizer(path, eos_token_ids=load_config(path).get("eos_token_id"))
    except Exception as e:
        raise UsageError(f"{path}: cannot load tokenizer: {type(e).__name__}: {e}") from None


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def load_base(model: str, quantize: int | None = None, trust_remote_code: bool = False, log=print,
              cpu_dequant: bool = True) -> LoadedModel:
    """Load weights and tokenizer; quantize a float model on the fly when asked.

    On the CPU, quantized layers then compute through `cpu_matmul` (unless `cpu_dequant` is off)."""
    from mlx_lm.utils import load_model, load_tokenizer, quantize_model

    path = resolve_model_path(model)
    try:
        mdl, config = load_model(path, trust_remote_code=trust_remote_code)
        # The tokenizer may run the folder's code only when the user allowed it (transformers' default is off).
        tokenizer = load_tokenizer(path, {"trust_remote_code": True} if trust_remote_code else None,
                                   eos_token_ids=config.get("eos_token_id"))
    except ValueError as e:
        raise UsageError(f"{path}: cannot load model: {str(e).splitlines()[0]}") from None
    except Exception as e:  # corrupt safetensors, wrong shapes, unknown architecture
        raise UsageError(f"{path}: cannot load model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    pre_quantized = is_quantized(mdl)
    if quantize and pre_quantized:
        log(f"note: {model} is already quantized; --quantize {quantize} ignored")
    elif quantize:
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints bits-per-weight
            mdl, config = quantize_model(mdl, config, group_size=None, bits=quantize)
        mx.eval(mdl.parameters())
    if cpu_dequant:
        use_dequantized_matmul(mdl)
    return LoadedModel(mdl, tokenizer, path)
