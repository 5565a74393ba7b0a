"""Load a base model (local folder or hub id) and its tokenizer, quantizing on request.

Everything model-specific goes through mlx-lm's loader and quantization, so any architecture
mlx-lm supports works here. Adapters are added by `adapters.py`.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from .cpu_matmul import use_dequantized_matmul
from ..errors import UsageError, first_line


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


def code_to_run(path: Path) -> list[str]:
    """The Python files a model folder asks our loaders to run, each with the key that asks:
    mlx-lm's `model_file` (config.json) and a tokenizer class in `auto_map` (tokenizer_config.json, or
    config.json, which transformers 4 also reads). Other `auto_map` entries (AutoConfig, AutoModel...)
    are left out: mlx-lm builds the model itself, and with trust_remote_code=False transformers falls
    back to its own config class without running them."""
    config, tok_config = _read_json(path / "config.json"), _read_json(path / "tokenizer_config.json")
    wanted = []
    if isinstance(config.get("model_file"), str):
        wanted.append(f"{config['model_file']} (config.json model_file)")
    for name, cfg in (("tokenizer_config.json", tok_config), ("config.json", config)):
        auto = cfg.get("auto_map")
        refs = auto.get("AutoTokenizer") if isinstance(auto, dict) else auto  # a list: transformers' old form
        refs = [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []
        for ref in refs:
            if isinstance(ref, str) and "." in ref:
                repo, _, ref = ref.rpartition("--")  # ORG/NAME--module.Class: code from another hub repo
                wanted.append(f"{ref.rsplit('.', 1)[0]}.py" + (f" of {repo}" if repo else "") + f" ({name} auto_map)")
    return list(dict.fromkeys(wanted))


def _read_json(p: Path) -> dict:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or broken: the loader that needs the file says so
    return data if isinstance(data, dict) else {}


def refuse_code(path: Path, trust_remote_code: bool) -> None:
    """Every loader calls this first: without --trust-remote-code, code in a model folder never runs."""
    wanted = [] if trust_remote_code else code_to_run(path)
    if wanted:
        raise UsageError(f"{path}: the model folder wants to run its own Python code: {', '.join(wanted)}; "
                         "refused: pass --trust-remote-code to allow it (only for a folder you trust)")


def _load_tokenizer(path: Path, trust_remote_code: bool, eos_token_ids):
    from mlx_lm.utils import load_tokenizer

    # Always explicit: left unset, transformers asks "run the custom code? [y/N]" on stdin, and a script's
    # (or `chat`'s) first input line answers it.
    return load_tokenizer(path, {"trust_remote_code": bool(trust_remote_code)}, eos_token_ids=eos_token_ids)


def _refused_by_transformers(path: Path, e: Exception, trust_remote_code: bool) -> UsageError | None:
    """transformers' own refusal (of code refuse_code does not know of), as our one-line message."""
    if trust_remote_code or "trust_remote_code" not in str(e):
        return None
    return UsageError(f"{path}: the model folder wants to run its own Python code ({first_line(e)}); "
                      "refused: pass --trust-remote-code to allow it (only for a folder you trust)")


def load_tokenizer_only(model: str, trust_remote_code: bool = False):
    """The tokenizer of a model (no weights loaded): for data inspection, and training's data before its weights.
    A broken folder is "cannot load model", as load_base says (training meets it here first)."""
    from mlx_lm.utils import load_config

    path = resolve_model_path(model)
    refuse_code(path, trust_remote_code)
    try:
        config = load_config(path)
    except Exception as e:
        raise UsageError(f"{path}: cannot load model: config.json: {type(e).__name__}: {first_line(e)}") from None
    try:
        return _load_tokenizer(path, trust_remote_code, config.get("eos_token_id"))
    except Exception as e:
        raise _refused_by_transformers(path, e, trust_remote_code) or UsageError(
            f"{path}: cannot load model: its tokenizer: {type(e).__name__}: {first_line(e)}") from None


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding)) for _, m in model.named_modules())


def load_base(model: str, quantize: int | None = None, trust_remote_code: bool = False, log=print,
              cpu_dequant: bool = True, tokenizer=None) -> LoadedModel:
    """Load weights and tokenizer; quantize a float model on the fly when asked. `tokenizer`: one already
    loaded (load_tokenizer_only, e.g. to tokenize the data before the weights), used instead of a second.

    On the CPU, quantized layers then compute through `cpu_matmul` (unless `cpu_dequant` is off)."""
    from mlx_lm.utils import load_model, quantize_model

    path = resolve_model_path(model)
    refuse_code(path, trust_remote_code)  # before the weights: a refusal should not wait for gigabytes
    try:
        mdl, config = load_model(path, trust_remote_code=trust_remote_code)
        if tokenizer is None:
            tokenizer = _load_tokenizer(path, trust_remote_code, config.get("eos_token_id"))
    except ValueError as e:
        if refused := _refused_by_transformers(path, e, trust_remote_code):
            raise refused from None
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
