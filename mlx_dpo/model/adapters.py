"""LoRA/DoRA adapters: add them to a model, read and write them in mlx-lm's format, switch them off and on.

The files are mlx-lm's (`adapters.safetensors` + `adapter_config.json`), so `mlx_lm.generate
--adapter-path RUN_DIR` works on what we write. A freshly added adapter is the identity (LoRA B = 0,
DoRA magnitude = the base weight norm): the model then computes exactly the base model, which is why
the reference log-probs can be scored with the model about to be trained (see train/reference.py).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ..errors import UsageError
from ..fileio import atomic_write, atomic_write_json

ADAPTER_FILE = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


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


def new_adapter_config(cfg, model: nn.Module) -> dict:
    """The adapter a TrainConfig asks for on this model (`lora_layers` -1 or more than exist = all)."""
    layers = num_blocks(model) if cfg.lora_layers == -1 else min(cfg.lora_layers, num_blocks(model))
    return lora_config(cfg.lora_rank, cfg.lora_scale, cfg.lora_dropout, cfg.lora_keys, layers, cfg.dora)


def copy_weights(weights: dict) -> dict:
    """Detached copies (a later load_weights must not change them)."""
    return {k: mx.array(np.array(v)) for k, v in weights.items()}


class AdapterSwitch:
    """Swap the model's adapter between sets of values in place, without a second model copy.

    "off" is what the adapter held before the trained weights were loaded: the identity for a fresh
    adapter (exactly the base model), or the init adapter a run started from (its reference model).
    "on" is the trained adapter. Other sets of the same shape (another run's adapter) can be added.
    """

    def __init__(self, model, off: dict, on: dict, source: str = "the adapter"):
        self.model = model
        self.sets = {"off": off, "on": on}
        self.sources = {"off": "the starting adapter", "on": source}
        self.current = "on"

    @classmethod
    def load(cls, model, adapter_dir: str | Path) -> "AdapterSwitch":
        """Keep the model's current adapter values as `off`, load `adapter_dir`'s as `on` (now active)."""
        off = copy_weights(adapter_weights(model))
        load_adapter_weights(model, adapter_dir)
        return cls(model, off, adapter_weights(model), str(adapter_dir))

    @property
    def enabled(self) -> bool:
        return self.current == "on"

    def add(self, name: str, adapter_dir: str | Path) -> None:
        """Another adapter of the same shape as a set to switch to (checked now, not at first use)."""
        path = Path(adapter_dir) / ADAPTER_FILE
        try:
            weights = dict(mx.load(str(path)))
        except Exception as e:
            raise UsageError(f"{path}: cannot read adapter weights: {e}") from None
        before = self.current
        self.sets[name], self.sources[name] = weights, str(adapter_dir)
        self.use(name)  # loading it once checks names and shapes
        self.use(before)

    def use(self, name: str) -> None:
        if name != self.current:
            set_adapter_weights(self.model, self.sets[name], self.sources[name])
            self.current = name

    def set(self, enabled: bool) -> None:
        self.use("on" if enabled else "off")

    @contextmanager
    def disabled(self):
        before = self.current
        self.use("off")
        try:
            yield
        finally:
            self.use(before)
