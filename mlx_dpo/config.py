"""Run configuration: one dataclass, with help text, from which the CLI flags and the YAML keys are built.

Precedence is defaults < YAML file (`--config`) < command-line flags. The resolved config is saved
into the run dir as `config.yaml`, so a run can be resumed or inspected later.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import Problem, UsageError, config_error, first_line
from .train.losses import PARAMS as LOSS_PARAMS, REGISTRY as LOSS_KINDS, parse_loss

LOSSES = tuple(LOSS_KINDS)  # every --loss, from the registry (train/losses.py)
SCHEDULES = ("cosine", "constant")
REFERENCES = ("start", "base")  # what the reference log-probs are scored with


# Arguments the renderer sets itself: a template variable of the same name would be ambiguous.
RENDER_ARGS = ("messages", "conversation", "add_generation_prompt", "tokenize", "chat_template", "return_dict",
               "continue_final_message")


TEMPLATE_KWARGS_FIX = "--chat-template-kwargs takes a JSON object, e.g. '{\"enable_thinking\": false}'"


def parse_template_kwargs(text: str) -> dict:
    """--chat-template-kwargs: a JSON object of template variables; UsageError (one line naming the flag)
    if it is not."""
    def bad(message):
        return config_error("chat_template_kwargs", message, fix=TEMPLATE_KWARGS_FIX)

    try:
        value = json.loads(text)
    except (TypeError, ValueError) as e:
        raise bad(f"not valid JSON ({first_line(e)})") from None
    if not isinstance(value, dict):
        raise bad(f"expected a JSON object, got {text!r}")
    clash = [k for k in value if k in RENDER_ARGS]
    if clash:
        raise bad(f"{', '.join(clash)} is set by the renderer, not a template variable")
    return value


def parse_score_keys(text: str) -> tuple[str, str]:
    """--score-keys CHOSEN,REJECTED: the two score columns (UsageError naming the flag if not two names)."""
    names = [n.strip() for n in str(text).split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise config_error("score_keys", f"expected two column names as CHOSEN,REJECTED, got {text!r}",
                           fix="e.g. --score-keys chosen-rating,rejected-rating")
    return names[0], names[1]


def _f(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _loss_param(name: str):
    """A loss hyper-parameter's field: its default and help are the registry's (train/losses.py PARAMS)."""
    return _f(LOSS_PARAMS[name].default, LOSS_PARAMS[name].help)


@dataclass
class TrainConfig:
    # -- what to train on
    model: Optional[str] = _f(None, "Local HF-format folder or Hugging Face hub id of the base model.")
    data: Optional[str] = _f(None, "Preference pairs: a .jsonl/.json/.parquet/.csv/.tsv file, a dataset folder (Hugging Face layout) or a hub dataset id ORG/NAME (local cache when offline).")
    valid_data: Optional[str] = _f(None, "Held-out pairs (file, dataset folder or hub id), evaluated every --eval-every steps.")
    split: str = _f("train", "Split of a dataset folder or hub dataset to read (e.g. train_prefs for UltraFeedback).")
    valid_split: Optional[str] = _f(None, "Split of --valid-data (default: --split); without --valid-data, a held-out split of --data itself (e.g. test_prefs).")
    data_config: Optional[str] = _f(None, "Subset of a dataset folder or hub dataset: a config name of its README, or a sub-folder (e.g. harmless-base).")
    data_revision: Optional[str] = _f(None, "Revision of a hub dataset: branch, tag or commit (default: main).")
    skip_invalid: bool = _f(False, "Train on the valid rows and leave out the invalid ones (counted, the first reasons printed, all listed in RUN_DIR/skipped.jsonl) instead of refusing the data.")
    min_score_margin: Optional[float] = _f(None, "Leave out pairs whose chosen score minus rejected score (score_chosen/score_rejected, rating_chosen/rating_rejected) is below this.")
    output: Optional[str] = _f(None, "Run directory: adapter, metrics.jsonl, config.yaml, checkpoints/.")
    prompt_key: str = _f("prompt", "Field name of the prompt in the data file.")
    chosen_key: str = _f("chosen", "Field name of the preferred answer.")
    rejected_key: str = _f("rejected", "Field name of the dispreferred answer.")
    system_key: str = _f("system", "Field name of the optional system message.")
    score_keys: Optional[str] = _f(None, "Score columns for --min-score-margin as CHOSEN,REJECTED (default: recognised spellings such as score_chosen/score_rejected, chosen-rating/rejected-rating).")
    # -- model and adapter
    quantize: Optional[int] = _f(None, "Quantize the base on the fly to 4 or 8 bits (pre-quantized models are used as they are).", choices=(4, 8))
    cpu_dequant_matmul: bool = _f(True, "On the CPU, run quantized layers as dequantize + float matmul on the BLAS, not MLX's slow CPU quantized kernel (same numbers up to rounding; no effect on the GPU).")
    trust_remote_code: bool = _f(False, "Allow a model folder to run its own Python code.")
    lora_rank: int = _f(8, "LoRA rank r.")
    lora_scale: float = _f(20.0, "LoRA scale (mlx-lm convention: PEFT's lora_alpha / r).")
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input during training.")
    lora_layers: int = _f(-1, "Number of transformer blocks, counted from the last, that get LoRA (-1 = all).")
    lora_keys: Optional[list] = _f(None, "Module paths inside a block to adapt, e.g. self_attn.q_proj (default: every linear layer).", nargs="+")
    dora: bool = _f(False, "Train DoRA (weight-decomposed LoRA) instead of LoRA.")
    init_adapter: Optional[str] = _f(None, "Start from an existing mlx-lm adapter folder; the reference is then base + this adapter (see --reference).")
    reference: str = _f("start", "Reference model of the DPO loss: start (the model training starts from: the base, or base + --init-adapter) or base (the base alone, also when training continues from --init-adapter).", choices=REFERENCES)
    # -- the loss: each loss, its settings and their help are entries of train/losses.py's registry
    loss: str = _f("sigmoid", f"Preference loss, TRL's names: {', '.join(LOSSES)}. DPO-trainer losses combine as a "
                              "comma-separated list weighted by --loss-weights (e.g. sigmoid,sft). When to use "
                              "each: the list at the end of `mlx-dpo train --help`.")
    loss_weights: Optional[str] = _f(None, "Weights of the losses of a combined --loss, comma-separated (TRL's "
                                           "loss_weights; default 1 each): --loss sigmoid,sft --loss-weights 1,0.5.")
    beta: float = _loss_param("beta")
    label_smoothing: float = _loss_param("label_smoothing")
    simpo_gamma: float = _loss_param("simpo_gamma")
    cpo_alpha: float = _loss_param("cpo_alpha")
    orpo_lambda: float = _loss_param("orpo_lambda")
    discopop_tau: float = _loss_param("discopop_tau")
    rpo_alpha: float = _loss_param("rpo_alpha")
    desirable_weight: float = _loss_param("desirable_weight")
    undesirable_weight: float = _loss_param("undesirable_weight")
    # -- schedule
    iters: Optional[int] = _f(None, "Optimizer steps to run (overrides --epochs).")
    epochs: Optional[int] = _f(None, "Passes over the data (default: 1, or as many as make --min-steps steps when --iters is not given).")
    min_steps: int = _f(40, "Without --iters and --epochs, small data trains at least this many steps (epochs repeat): a few picks from the chat must move the model.")
    batch_size: int = _f(4, "Pairs per micro-batch.")
    grad_accum: int = _f(1, "Micro-batches accumulated per optimizer step.")
    learning_rate: float = _f(5e-5, "Peak learning rate of AdamW (LoRA DPO commonly uses 5e-6 to 5e-5; on the demo pairs one epoch at 5e-5 visibly changes the answers, at 1e-5 it changes none).")
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay.")
    max_grad_norm: Optional[float] = _f(1.0, "Clip the global gradient norm to this value (none to disable).")
    warmup_steps: int = _f(0, "Linear warm-up steps from 0 to the learning rate.")
    lr_schedule: str = _f("cosine", "Learning-rate schedule after warm-up.", choices=SCHEDULES)
    seed: int = _f(0, "Seed for data order, LoRA init and dropout.")
    template_date: Optional[str] = _f(None, "Date (YYYY-MM-DD) that chat templates printing today's date (e.g. Llama 3.2) render with; set to the day a run first starts and kept in config.yaml, so a resumed run renders the same prompts.")
    chat_template_kwargs: Optional[str] = _f(None, "JSON object of extra variables for the chat template, passed to every render (train, validate, eval, chat, generate), e.g. '{\"enable_thinking\": false}' (Qwen3), tools, is_training; kept in config.yaml and in the cache keys.")
    # -- lengths and batching
    max_length: int = _f(1024, "Maximum prompt + completion tokens; longer pairs are truncated.")
    max_prompt_length: Optional[int] = _f(None, "Maximum prompt tokens kept (from the end) when a pair is too long (default: max_length // 2).")
    pad_multiple: int = _f(32, "Sequences are padded to a multiple of this, so the compiled step sees few shapes.")
    tokens_per_batch: Optional[int] = _f(1024, "Pack each batch's pairs end to end into rows of at most this many tokens, one row per micro-batch: no padding, same numbers, faster and lighter on every workload measured (BENCHMARKS.md). 0 turns packing off: every sequence padded to its batch's longest.")
    share_prompt: bool = _f(True, "Run each prompt once for both answers (same numbers, less compute); models without support fall back.")
    grad_checkpoint: bool = _f(False, "Recompute block activations in the backward pass: less memory, ~30% slower.")
    # -- logging and checkpoints
    log_every: int = _f(1, "Write a metrics row every N steps.")
    eval_every: Optional[int] = _f(None, "Evaluate on --valid-data every N steps (default: 10 evaluations per run).")
    sample_prompts: int = _f(3, "At every evaluation, answer this many held-out prompts greedily with the adapter as it is now (and once with the starting model), shown as samples and kept in RUN_DIR/samples.jsonl; 0 turns it off. Needs held-out data; does not change the training.")
    stop_on_collapse: bool = _f(False, "Stop with a checkpoint at the first health warning (likelihood displacement, drift from the reference, loss near 0 with an exploding margin, empty, repetitive or long sample answers) and name the last healthy checkpoint; every healthy evaluation then saves one.")
    save_every: int = _f(100, "Save a resumable checkpoint every N steps.")
    resume: bool = _f(False, "Continue the run in --output from its last checkpoint.")
    force: bool = _f(False, "Train even when the memory estimate (`mlx-dpo estimate`) says the run does not fit the memory budget: this machine's (Metal's recommended working set on a Mac, else RAM less a reserve), or $MLX_DPO_MEMORY_BUDGET (bytes, or a size such as 16GB). Without it such a run is refused before the weights load, with settings that fit; a resumed run keeps it.")
    cache_dir: Optional[str] = _f(None, "Cache folder of reference log-probs and tokenized datasets (default: $MLX_DPO_CACHE or ~/.cache/mlx-dpo).")
    # -- several processes (mlx.launch)
    dist_timeout: float = _f(600.0, "With mlx.launch: seconds to wait for the other processes before stopping (a dead or hung machine).")

    def validate(self) -> "TrainConfig":
        """Check values a user may get wrong; raise UsageError naming the key."""
        def bad(key, msg):
            raise config_error(key, msg)

        for key in ("lora_rank", "batch_size", "grad_accum", "max_length", "pad_multiple",
                    "log_every", "save_every"):
            if getattr(self, key) < 1:
                bad(key, f"must be a positive integer, got {getattr(self, key)}")
        for key in ("iters", "epochs", "eval_every", "max_prompt_length"):
            v = getattr(self, key)
            if v is not None and v < 1:
                bad(key, f"must be a positive integer, got {v}")
        if self.sample_prompts < 0:
            bad("sample_prompts", f"must be 0 (off) or a positive number of prompts, got {self.sample_prompts}")
        if self.tokens_per_batch is not None and self.tokens_per_batch < 0:
            bad("tokens_per_batch", f"must be a positive number of tokens, or 0 for no packing, got {self.tokens_per_batch}")
        for key in ("learning_rate", "lora_scale"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                bad(key, f"must be a positive number, got {v}")
        if not (math.isfinite(self.dist_timeout) and self.dist_timeout > 0):
            bad("dist_timeout", f"must be a positive number of seconds, got {self.dist_timeout}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            bad("max_grad_norm", f"must be positive, got {self.max_grad_norm}")
        if not 0 <= self.lora_dropout < 1:
            bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        for p in LOSS_PARAMS.values():
            if error := p.check(getattr(self, p.name)):
                bad(p.name, error)
        if self.weight_decay < 0 or self.warmup_steps < 0:
            bad("weight_decay/warmup_steps", "must not be negative")
        if self.lora_layers == 0 or self.lora_layers < -1:
            bad("lora_layers", f"must be -1 (all) or a positive count, got {self.lora_layers}")
        try:
            names, _ = parse_loss(self.loss, self.loss_weights)
        except ValueError as e:
            key, _, rest = str(e).partition(": ")
            bad(*((key, rest) if key == "loss_weights" else ("loss", str(e))))
        for name in names:
            if problem := LOSS_KINDS[name].check(self):
                bad(*problem)
        if self.reference not in REFERENCES:
            bad("reference", f"unknown reference {self.reference!r} (expected one of {', '.join(REFERENCES)})")
        if self.lr_schedule not in SCHEDULES:
            bad("lr_schedule", f"unknown schedule {self.lr_schedule!r} (expected one of {', '.join(SCHEDULES)})")
        if self.quantize not in (None, 4, 8):
            bad("quantize", f"must be 4 or 8, got {self.quantize}")
        if self.min_score_margin is not None and not math.isfinite(self.min_score_margin):
            bad("min_score_margin", f"must be a finite number, got {self.min_score_margin}")
        for key in ("split", "valid_split", "data_config", "data_revision"):
            v = getattr(self, key)
            if v is not None and not str(v).strip():
                bad(key, "must not be empty")
        if self.template_date is not None:
            try:
                datetime.date.fromisoformat(self.template_date)
            except (TypeError, ValueError):
                bad("template_date", f"expected a date as YYYY-MM-DD, got {self.template_date!r}")
        if self.chat_template_kwargs is not None:
            # One spelling per value: the same variables typed with other spacing or key order are not a
            # changed setting on resume or iterate continuation, nor a different cache key.
            self.chat_template_kwargs = json.dumps(parse_template_kwargs(self.chat_template_kwargs), sort_keys=True)
        if self.score_keys is not None:
            parse_score_keys(self.score_keys)
        if self.max_prompt_length is not None and self.max_prompt_length >= self.max_length:
            bad("max_prompt_length", f"must be smaller than max_length ({self.max_length})")
        return self

    @property
    def reference_adapter(self) -> str | None:
        """The adapter inside the reference model: the init adapter, unless the reference is the base."""
        return self.init_adapter if self.reference == "start" else None

    @property
    def template_kwargs(self) -> dict:
        """--chat-template-kwargs as a dict ({} when not given)."""
        return parse_template_kwargs(self.chat_template_kwargs) if self.chat_template_kwargs else {}

    @property
    def prompt_limit(self) -> int:
        return self.max_prompt_length or self.max_length // 2

    @property
    def data_keys(self):
        """The field names of the data file (a data.pairs.DataKeys)."""
        from .data.pairs import DataKeys

        return DataKeys(self.prompt_key, self.chosen_key, self.rejected_key, self.system_key,
                        parse_score_keys(self.score_keys) if self.score_keys else None)

    def data_source(self, valid: bool = False):
        """The data.sources.DataSpec of --data (or of the held-out data: --valid-data, else --data's
        --valid-split); None when there is no held-out data."""
        from .data.sources import DataSpec

        if not valid:
            return DataSpec(self.data, self.split, self.data_config, self.data_revision)
        if not self.valid_data and not self.valid_split:
            return None
        same = not self.valid_data or self.valid_data == self.data
        return DataSpec(self.valid_data or self.data, self.valid_split or self.split,
                        self.data_config if same else None, self.data_revision if same else None)

    @property
    def data_options(self) -> dict:
        """prepare()'s keyword arguments other than the source."""
        return {"min_score_margin": self.min_score_margin, "skip_invalid": self.skip_invalid,
                "cache_dir": self.cache_dir}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The settings a resumed run (`train --resume`, a continued `iterate`) may change: none of them changes what
# the steps already run computed, so config.yaml still records what steps 1..k trained on. Everything else
# (model, data and its keys/splits/filters, the held-out data, LoRA settings, loss and beta, lengths, layout,
# batch size, accumulation, learning rate and schedule, seed, reference, template date...) is fixed once a
# run has a checkpoint: a resume that changes one is refused, and a new run from the adapter
# (`--init-adapter RUN_DIR`) is the way to train on new settings. The app asks this set; it keeps no copy.
RESUME_MAY_CHANGE = frozenset({
    "iters", "epochs",          # how far the run goes (the schedule of the steps still to run follows the new total;
                                # metrics.jsonl keeps the learning rate each step ran with)
    "log_every", "eval_every", "save_every",  # when rows, evaluations and checkpoints are written
    "output", "resume",         # the run dir itself, and the switch that continues it
    "force",                    # train past the memory check (it changes no number of the run)
    "cache_dir",                # where reference log-probs are cached (keyed by content: a miss recomputes them)
    "dist_timeout",             # how long ranks wait for each other
    "trust_remote_code",        # permission to run a model folder's code, not a number of the run
})
# Settings that fix the adapter's shape or the model it fits: `--init-adapter` keeps them too (it uses the
# adapter's own LoRA settings), so a run with other values starts from scratch.
ADAPTER_SHAPE = ("model", "lora_rank", "lora_scale", "lora_dropout", "lora_layers", "lora_keys", "dora")
# Paths compared by the file they name, so `train.jsonl` and `./train.jsonl` are the same data.
_PATH_KEYS = ("model", "data", "valid_data", "init_adapter")


def _same(key: str, old, new) -> bool:
    if old == new:
        return True
    if key in _PATH_KEYS and isinstance(old, str) and isinstance(new, str):
        try:
            return os.path.samefile(old, new)
        except OSError:
            return False
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return float(old) == float(new)
    return False


def resume_changes(saved: dict, cfg: "TrainConfig") -> list[tuple[str, Any, Any]]:
    """(key, the run's value, the value now) for each setting of `cfg` that differs from the run's saved
    config.yaml (`saved`) and may not change on resume. Keys the saved file lacks (an older version's
    run) are not compared; a template date not chosen yet (None) is the run's."""
    out = []
    for f in config_fields():
        if f.name in RESUME_MAY_CHANGE or f.name not in saved:
            continue
        new = getattr(cfg, f.name)
        if f.name == "template_date" and new is None:
            continue
        if not _same(f.name, saved[f.name], new):
            out.append((f.name, saved[f.name], new))
    return out


def keep_run_settings(saved: dict, cfg: "TrainConfig") -> "TrainConfig":
    """`cfg` with the run's own spelling of every setting that may not change (a path given another way
    stays as the run wrote it, an unset template date takes the run's), so config.yaml is rewritten
    byte-identical apart from what RESUME_MAY_CHANGE allows. Call after resume_changes found none."""
    fixed = {f.name: saved[f.name] for f in config_fields()
             if f.name in saved and f.name not in RESUME_MAY_CHANGE}
    return dataclasses.replace(cfg, **fixed)


def resume_refusal(run_dir, changes: list[tuple[str, Any, Any]]) -> str:
    """The one-line error of a resume that would change settings of the run (see RESUME_MAY_CHANGE)."""
    what = ", ".join(f"{k} {old!r} (now {new!r})" for k, old, new in changes)
    flags = ", ".join("--" + k.replace("_", "-") for k, _, _ in changes)
    text = (f"{run_dir}: this run was trained with {what}; --resume continues a run with its own settings "
            "(only how far it goes and when it logs, evaluates and saves may change: iters, epochs, log_every, "
            f"eval_every, save_every). To continue it, "
            f"leave out {flags} (or give the run's value{'s' if len(changes) > 1 else ''}); ")
    shape = [k for k, _, _ in changes if k in ADAPTER_SHAPE]
    if shape:
        return text + (f"another {'/'.join(shape)} needs a new run from scratch in another --output "
                       "(--init-adapter would keep the adapter's own model and LoRA settings)")
    return text + f"to train on the new settings from this run's adapter, start a new run: --init-adapter {run_dir} --output NEW_DIR"


def config_fields():
    return dataclasses.fields(TrainConfig)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file with the safe loader; unknown keys are an error, not ignored."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{p}: cannot read config file: {e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{p}{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping of config keys, got {type(data).__name__}")
    known = {f.name: f for f in config_fields()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise UsageError(Problem(str(p), "unknown config key", None, str(key)), key=name)
        out[name] = value
    return out


def build_config(yaml_values: dict, flag_values: dict, sources: dict | None = None) -> TrainConfig:
    """Defaults < YAML < flags, with type checks on YAML values (flags are typed by argparse).

    `sources` maps a YAML key to the file it came from, so an error names that file instead of "config".
    """
    sources = sources or {}
    values, origin = {}, {}
    for f in config_fields():
        if f.name in flag_values:
            values[f.name] = flag_values[f.name]
        elif f.name in yaml_values:
            origin[f.name] = sources.get(f.name)
            try:
                values[f.name] = _coerce(f, yaml_values[f.name])
            except UsageError as e:
                raise _from_file(e, origin[f.name]) from None
    try:
        return TrainConfig(**values).validate()
    except UsageError as e:
        raise _from_file(e, origin.get(e.key)) from None


def _from_file(e: UsageError, source) -> UsageError:
    """The error of a value that came from the config file `source`, named by that file instead of "config"."""
    if source and e.problem is not None and e.problem.source == "config":
        return config_error(e.key, e.problem.message, source=str(source), fix=e.problem.fix)
    return e


def _coerce(f: dataclasses.Field, value):
    default = f.default
    kind = type(default) if default is not None else None
    if value is None:
        if not str(f.type).startswith("Optional"):  # only optional settings may be null
            raise config_error(f.name, "expected a value, got null")
        return None
    if f.name == "lora_keys":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise config_error(f.name, "expected a list of strings")
        return value
    if kind is bool or f.name in ("dora", "resume", "grad_checkpoint", "trust_remote_code", "share_prompt"):
        if not isinstance(value, bool):
            raise config_error(f.name, f"expected true or false, got {value!r}")
        return value
    if kind is float or f.name in ("max_grad_norm", "min_score_margin"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise config_error(f.name, f"expected a number, got {value!r}")
        return float(value)
    if kind is int or f.name in ("iters", "epochs", "eval_every", "max_prompt_length", "quantize", "tokens_per_batch"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise config_error(f.name, f"expected an integer, got {value!r}")
        return value
    if f.name in ("loss", "loss_weights") and isinstance(value, list):  # TRL's list form: [sigmoid, sft]
        value = ",".join(str(v) for v in value)
    if f.name == "loss_weights" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if f.name == "chat_template_kwargs" and isinstance(value, dict):  # a YAML mapping: kept as JSON text
        return json.dumps(value, sort_keys=True)
    if f.name == "template_date" and isinstance(value, datetime.date):
        return value.isoformat()  # YAML reads an unquoted 2026-12-01 as a date
    if not isinstance(value, str):
        raise config_error(f.name, f"expected a string, got {value!r}")
    return value


def save_config(cfg: TrainConfig, path: Path) -> None:
    from .fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def load_run_config(run_dir: Path) -> dict:
    """A run's config.yaml ({} if it has none). A checkpoint folder (RUN_DIR/checkpoints/step_N) gives its
    run's, so an export, eval or chat of a checkpoint loads the base as the run did."""
    p = Path(run_dir) / "config.yaml"
    if not p.exists() and p.parent.name.startswith("step_") and p.parent.parent.name == "checkpoints":
        p = p.parent.parent.parent / "config.yaml"
    if not p.exists():
        return {}
    return load_yaml(p)


# What a run's held-out metrics depend on besides its adapter: how the base was loaded (model, quantization,
# matmul path), the loss settings, the lengths and the template date and variables. `eval --adapter RUN_DIR` and the
# app's Evaluate take them from the run's config.yaml, so their numbers compare with the run's own.
EVAL_FROM_RUN = ("model", "quantize", "trust_remote_code", "cpu_dequant_matmul", "template_date",
                 "chat_template_kwargs", "loss", "loss_weights", *LOSS_PARAMS, "max_length", "max_prompt_length")


def eval_flags_for_run(run_dir: Path, flags: dict, also: tuple[str, ...] = ()) -> dict:
    """`flags` (what the user gave now, which wins) completed with the run's settings for an evaluation.

    Adds EVAL_FROM_RUN and `also` from RUN_DIR/config.yaml, the reference the run trained against (base +
    its init adapter, or the base alone), and the run's held-out split when `flags["data"]` is the run's
    held-out file."""
    saved = load_run_config(Path(run_dir))
    out = dict(flags)
    if "init_adapter" not in out and saved.get("init_adapter"):
        out["init_adapter"] = saved["init_adapter"]
        out.setdefault("reference", saved.get("reference", "start"))
    for key in EVAL_FROM_RUN + tuple(also):
        if key not in out and saved.get(key) is not None:
            out[key] = saved[key]
    if ("split" not in out and out.get("data") and saved.get("valid_split")
            and saved.get("valid_data") == out["data"]):
        out["split"] = saved["valid_split"]
    return out
