"""Load a base model (local folder or hub id), quantize on request, add LoRA/DoRA, save adapters.

Everything model-specific goes through mlx-lm (loader, quantization, tuner layers), so any
architecture mlx-lm supports works here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .cpu_matmul import use_dequantized_matmul
from ..errors import UsageError
from ..fileio import atomic_write, atomic_write_json

ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_LEAVES = ("lora_a", "lora_b", "m")


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    config: dict
    path: Path           # resolved local folder
    quantized: bool      # base weights are quantized (pre-quantized or on the fly)


DEMO_MODEL = Path(__file__).resolve().parent.parent / "sample_data" / "demo-model"


def default_model() -> str | None:
    """The bundled demo model, used when no --model is given (works offline out of the box)."""
    return str(DEMO_MODEL) if (DEMO_MODEL / "config.json").exists() else None


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
    return LoadedModel(mdl, tokenizer, config, path, pre_quantized or bool(quantize))


def lora_config(rank: int, scale: float, dropout: float, keys, num_layers: int, dora: bool) -> dict:
    """mlx-lm's adapter_config.json fields (so `mlx_lm.load(..., adapter_path=RUN_DIR)` works)."""
    return {
        "fine_tune_type": "dora" if dora else "lora",
        "num_layers": num_layers,
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": dropout, "keys": keys},
    }


def apply_lora(model: nn.Module, adapter_cfg: dict) -> None:
    """Freeze the base and wrap the chosen linears with mlx-lm's LoRA/DoRA layers.

    LoRA's B factor starts at zero, so right after this call the model computes exactly the base
    model: this is why reference log-probs can be taken from the same model before training.
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    params = dict(adapter_cfg["lora_parameters"])
    if params.get("keys") is None:
        params.pop("keys", None)
    try:
        linear_to_lora_layers(model, adapter_cfg["num_layers"], params,
                              use_dora=adapter_cfg["fine_tune_type"] == "dora")
    except ValueError as e:
        raise UsageError(f"cannot add adapter layers: {e}") from None
    if not tree_flatten(model.trainable_parameters()):
        keys = params.get("keys")
        raise UsageError(f"lora_keys: no module matched {keys}; nothing would be trained")


def num_blocks(model: nn.Module) -> int:
    return len(model.layers)


def read_adapter_config(adapter_dir: str | Path) -> dict:
    d = Path(adapter_dir)
    cfg_path = d / ADAPTER_CONFIG
    if not d.is_dir():
        raise UsageError(f"{d}: adapter folder not found")
    if not cfg_path.exists() or not (d / ADAPTER_FILE).exists():
        raise UsageError(f"{d}: not an adapter folder ({ADAPTER_CONFIG} and {ADAPTER_FILE} expected)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UsageError(f"{cfg_path}: invalid adapter config ({type(e).__name__}: {e})") from None
    _check_adapter_config(cfg, cfg_path)
    return cfg


def _check_adapter_config(cfg, cfg_path: Path) -> None:
    """Types and ranges of the fields we use, so a bad file is a one-line error rather than a crash later."""
    def bad(field, msg):
        raise UsageError(f"{cfg_path}: {field}: {msg}")

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(cfg, dict):
        raise UsageError(f"{cfg_path}: invalid adapter config: expected a JSON object")
    cfg.setdefault("fine_tune_type", "lora")
    if cfg["fine_tune_type"] not in ("lora", "dora"):
        bad("fine_tune_type", "only lora and dora adapters are supported")
    n = cfg.get("num_layers")
    if not isinstance(n, int) or isinstance(n, bool) or n == 0 or n < -1:
        bad("num_layers", f"expected a positive integer or -1, got {n!r}")
    lp = cfg.get("lora_parameters")
    if not isinstance(lp, dict):
        bad("lora_parameters", "missing or not an object")
    rank = lp.get("rank")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        bad("lora_parameters.rank", f"expected a positive integer, got {rank!r}")
    if not number(lp.get("scale")):
        bad("lora_parameters.scale", f"expected a number, got {lp.get('scale')!r}")
    lp.setdefault("dropout", 0.0)
    if not number(lp["dropout"]) or not 0 <= lp["dropout"] < 1:
        bad("lora_parameters.dropout", f"expected a number in [0, 1), got {lp['dropout']!r}")
    keys = lp.get("keys")
    if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
        bad("lora_parameters.keys", "expected a list of module names")


def load_adapter_weights(model: nn.Module, adapter_dir: str | Path) -> None:
    """Load adapter tensors into a model that already has the matching LoRA layers."""
    path = Path(adapter_dir) / ADAPTER_FILE
    try:
        weights = mx.load(str(path))
    except Exception as e:
        raise UsageError(f"{path}: cannot read adapter weights: {e}") from None
    set_adapter_weights(model, weights, str(path))


def set_adapter_weights(model: nn.Module, weights: dict, source: str) -> None:
    """Replace every adapter tensor, checking names and shapes (load_weights alone checks neither)."""
    params = {k: v for k, v in tree_flatten(model.trainable_parameters())}
    problems = []
    for name, w in weights.items():
        if name not in params:
            problems.append(f"{name} is not an adapter parameter of this model")
        elif tuple(w.shape) != tuple(params[name].shape):
            problems.append(f"{name} has shape {tuple(w.shape)}, the model expects {tuple(params[name].shape)}")
    missing = set(params) - set(weights)
    if missing:
        problems.append(f"missing {len(missing)} tensor(s), e.g. {sorted(missing)[0]}")
    if problems:
        raise UsageError(f"{source}: adapter does not fit this model: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=False)
    mx.eval(model.parameters())


def attach_adapter(model: nn.Module, adapter_dir: str | Path) -> dict:
    """Add the LoRA layers an adapter folder describes and load its weights; return its config."""
    cfg = read_adapter_config(adapter_dir)
    apply_lora(model, cfg)
    load_adapter_weights(model, adapter_dir)
    return cfg


def adapter_weights(model: nn.Module) -> dict:
    return dict(tree_flatten(model.trainable_parameters()))


def save_adapter(model: nn.Module, out_dir: str | Path, adapter_cfg: dict) -> None:
    """Write adapters.safetensors + adapter_config.json atomically (weights first, config last)."""
    out = Path(out_dir)
    weights = adapter_weights(model)
    atomic_write(out / ADAPTER_FILE, lambda p: mx.save_safetensors(str(p), weights, metadata={"format": "mlx"}))
    atomic_write_json(out / ADAPTER_CONFIG, adapter_cfg)


def cache_root(cache_dir: str | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MLX_DPO_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlx-dpo"
