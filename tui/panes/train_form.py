"""The Train tab's settings form ("Hyper-parameters"): its fields, the loss's settings, the train/iterate mode,
the form read as `mlx-dpo train` / `mlx-dpo iterate` flags and checked by the engine's own validation, the
YAML config the CLI's --config reads (filled from and saved as), and the equivalent command line.

The run dir is not here: it sits beside Start in the Train tab's top row (TrainPane), so each method that
needs it takes it as `output`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields
from pathlib import Path

import yaml
from textual import on
from textual.containers import Grid, Horizontal
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static

from mlx_dpo import (DEMO_SETTINGS, ITERATE_FLAGS, LOSS_KINDS, LOSS_PARAMS, LOSSES, TrainConfig, UsageError, build_config,
                     config_error, is_demo_model, load_config_file, loss_params)

from ..training import check_distribution
from .data_pane import DEFAULT_OPTIONS
from .iterate_form import LABELS as ITERATE_LABELS, IterateForm, flag_args

# (field, label, default) — None: the engine's own default (TrainConfig's); steps default to a short run.
FIELDS = [("iters", "steps", "100"), ("batch_size", "batch size", None), ("grad_accum", "grad accum", None),
          ("learning_rate", "learning rate", None), ("lora_rank", "LoRA rank", None),
          ("max_length", "max length", None), ("eval_every", "eval every", None), ("save_every", "save every", None),
          ("seed", "seed", None)]
FLOAT_FIELDS = ("learning_rate",)
# What an empty field means (the engine's rule): no steps = an epoch, or as many as make --min-steps steps.
PLACEHOLDERS = {"eval_every": "10 per run", "iters": f"1 epoch, ≥ {TrainConfig.min_steps}"}
# The loss's settings: the registry's (each shown only with a loss that uses it, below the loss menu).
LOSS_FIELDS = [p for p in LOSS_PARAMS.values() if p.form]
# The form's label of each TrainConfig key it shows (validation messages name the field as the form does).
LABELS = {name: label for name, label, _ in FIELDS} | {p.name: p.label or p.name for p in LOSS_FIELDS} | {
    "loss": "loss", "output": "run dir", "init_adapter": "start from adapter", "model": "model (Model tab)",
    "data": "pairs file (Data tab)", "valid_data": "held-out file (Data tab)", "quantize": "quantize (Model tab)",
    "chat_template_kwargs": "template variables (Model tab)"}
LABELS |= ITERATE_LABELS
MODES = [("train: DPO on the pairs file", "train"),
         ("iterate: the model writes its own pairs, a judge ranks them", "iterate")]
TRAIN_ONLY = ("eval_every", "processes")  # fields iterate mode hides (rounds train on one process, no eval data)
# The data-source flags of the Data tab belong to `train`'s pairs file, not to iterate's prompts.
DATA_FLAGS = ("data", "valid_data", *DEFAULT_OPTIONS)


@dataclass
class TrainSettings:
    """The Train form's figures that other tabs need (token limits, the memory estimate)."""

    batch_size: int = 4  # the global batch, over all processes
    max_length: int = 1024
    lora_rank: int = 8
    processes: int = 1


def engine_default(name: str) -> str:
    """TrainConfig's default of a field, as the form writes it ("" for none)."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    return "" if default is None else form_text(default)


def form_text(value) -> str:
    """A setting as the form shows it: small floats as 5e-4, not 0.0005 (as learning rates are written)."""
    if isinstance(value, float) and value and abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def friendly(e: UsageError) -> tuple[str, str | None]:
    """An engine error as the form shows it: the form's label for the setting it concerns, and that setting.

    A config error on `iters` ("config: iters: must be a positive integer, got 0") reads
    "steps: must be a positive integer, got 0"."""
    if e.key in LABELS and e.problem is not None:  # the engine's config error: named as the form names it
        return f"{LABELS[e.key]}: {e.detail}", e.key
    return str(e), e.key


def require(flags: dict, needed: tuple[tuple[str, str], ...]) -> None:
    for key, what in needed:
        if not flags.get(key):
            raise UsageError(f"choose {what} first")


class TrainForm(Collapsible):
    """The "Hyper-parameters" section (#train-settings). A UsageError from its checks carries the form's
    label of the field in its text and the field's key (TrainPane marks and focuses that field)."""

    def __init__(self, **kw):
        super().__init__(title="Hyper-parameters", collapsed=False, **kw)
        self.config_file: str | None = None  # a loaded YAML config: passed as --config, the form's flags win
        # Settings without a field, taken from the memory estimate's suggestion (--grad-checkpoint,
        # --tokens-per-batch): passed as flags, shown in the command line (ctrl+g) and the log.
        self.extra: dict = {}
        for widget in self.fields():
            self.compose_add_child(widget)  # the collapsible's contents

    def fields(self) -> list[Widget]:
        defaults = self.field_defaults()
        cells: list[Widget] = []
        for name, label, _ in FIELDS:
            only = " train-only" if name in TRAIN_ONLY else ""
            cells += [Label(label, classes="form-label" + only),
                      Input(defaults[name], id=f"train-{name}", classes="form-input" + only,
                            placeholder=PLACEHOLDERS.get(name, ""))]
        cells += [Label("processes", classes="form-label train-only"),
                  Input("1", id="train-processes", classes="form-input train-only"),
                  Label("loss", classes="form-label"),
                  Select([(l, l) for l in LOSSES], value="sigmoid", allow_blank=False, id="train-loss")]
        for p in LOSS_FIELDS:  # the selected loss's settings, with its line on when to use it below
            cells += [Label(p.label or p.name, id=f"train-{p.name}-label", classes="form-label loss-setting"),
                      Input(defaults[p.name], id=f"train-{p.name}", classes="form-input loss-setting")]
        return [
            Horizontal(Label("mode", classes="form-label"),
                       Select(MODES, value="train", allow_blank=False, id="train-mode"),
                       classes="train-wide-row", id="train-mode-row"),
            IterateForm(id="train-iterate", classes="iterate-only"),
            Grid(*cells, id="train-form"),
            Static(id="train-loss-help", classes="train-wide-row", markup=False),
            Horizontal(Label("from adapter", classes="form-label"),
                       Input(id="train-init_adapter", classes="train-wide",
                             placeholder="optional: a run dir to continue from (reference = base + it)"),
                       classes="train-wide-row"),
            Horizontal(Label("hosts file", classes="form-label"),
                       Input(id="train-hostfile", classes="train-wide", placeholder="optional: mlx.launch JSON hostfile"),
                       classes="train-wide-row train-only"),
        ]

    def on_mount(self) -> None:
        self.show_loss_settings()
        self.watch(self.app, "model", lambda _: self.refresh_iterate(), init=False)

    def field_defaults(self) -> dict:
        """The engine's defaults, or the demo's settings when the app was opened on the demo (--demo) and its
        model is the bundled one (plain `mlx-dpo tui` also defaults to that model, but not to its settings)."""
        values = {name: default if default is not None else engine_default(name) for name, _, default in FIELDS}
        values |= {p.name: engine_default(p.name) for p in LOSS_FIELDS}
        if self.app.demo and is_demo_model(self.app.model):
            values.update({name: form_text(v) for name, v in DEMO_SETTINGS.items() if name in values})
        return values

    def settings(self) -> TrainSettings:
        """The form's figures for the other tabs; a field that does not parse (or is not built yet) keeps
        its default."""
        values = {}
        for field in fields(TrainSettings):
            try:
                values[field.name] = int(self.query_one(f"#train-{field.name}", Input).value)
            except (NoMatches, ValueError):
                pass
        return TrainSettings(**values)

    # ------------------------------------------------------------------ train or iterate
    @property
    def mode(self) -> str:
        try:
            return str(self.query_one("#train-mode", Select).value)
        except NoMatches:
            return "train"

    def set_mode(self, mode: str) -> None:
        self.query_one("#train-mode", Select).value = mode

    def focus_mode(self) -> None:
        self.app.focus_if_shown(self.query_one("#train-mode", Select))

    def refresh_iterate(self) -> None:
        if self.mode == "iterate":
            self.query_one(IterateForm).refresh_defaults()

    def rounds_wanted(self) -> int:
        """The iterate fields' rounds (0 when not a number)."""
        try:
            return int(self.query_one("#train-rounds", Input).value)
        except ValueError:
            return 0

    @on(Select.Changed, "#train-loss")
    def show_loss_settings(self) -> None:
        """Only the selected loss's settings, and one line on when to use it."""
        loss = str(self.query_one("#train-loss", Select).value)
        used = set(loss_params(loss))
        for p in LOSS_FIELDS:
            for widget in (self.query_one(f"#train-{p.name}-label"), self.query_one(f"#train-{p.name}")):
                widget.display = p.name in used
        kinds = [LOSS_KINDS[n] for n in loss.split(",") if n in LOSS_KINDS]
        self.query_one("#train-loss-help", Static).update(" · ".join(k.when for k in kinds))

    def set_running(self, running: bool) -> None:
        for widget in self.query("Input, Select"):
            widget.disabled = running  # edits would not reach a running process

    # ------------------------------------------------------------------ the form as flags
    def flags(self, output: str, strict: bool = True) -> dict:
        """The form as `mlx-dpo train`'s flags (with the app's model, data and quantization), unchecked.
        Not `strict`: a number field that does not parse is left out (the engine's default), not an error."""
        flags: dict = {"model": self.app.model, "data": self.app.data_path, "output": output,
                       "loss": self.query_one("#train-loss", Select).value}
        if self.app.valid_path:
            flags["valid_data"] = self.app.valid_path
        # The Data tab's source options; only those off their default, so a loaded --config keeps its own.
        for key, value in self.app.data_options.items():
            if value != DEFAULT_OPTIONS[key]:
                flags[key] = value
        if self.app.quantize:
            flags["quantize"] = self.app.quantize
        if self.app.chat_template_kwargs:  # the Model tab's template variables: every render of the run uses them
            flags["chat_template_kwargs"] = self.app.chat_template_kwargs
        if init := self.query_one("#train-init_adapter", Input).value.strip():
            flags["init_adapter"] = init
        shown = set(loss_params(flags["loss"]))  # a loss's settings only: another loss's would be warned about
        numbers = [(name, name in FLOAT_FIELDS) for name, _, _ in FIELDS] + [(p.name, True) for p in LOSS_FIELDS
                                                                            if p.name in shown]
        for name, is_float in numbers:
            raw = self.query_one(f"#train-{name}", Input).value.strip()
            if not raw:
                continue
            try:
                flags[name] = float(raw) if is_float else int(raw)
            except ValueError:
                if strict:
                    raise config_error(name, f"expected a number, got {raw!r}") from None
        return flags | self.extra

    def estimate_flags(self) -> tuple[dict, dict]:
        """(the loaded config file's values, the form's flags) of the run Start would begin, for the memory
        estimate: what the form cannot say yet (a field being typed) is left to the defaults."""
        try:
            config = load_config_file(self.config_file) if self.config_file else {}
        except UsageError:
            config = {}
        flags = {k: v for k, v in self.flags("", strict=False).items() if v is not None and k != "output"}
        return config, flags

    def use_settings(self, settings: dict) -> list[str]:
        """Take the engine's suggested settings (TrainConfig keys): into their fields where the form has them,
        the Model tab's quantization, else `extra`. Returns their flags, as the log and notices name them."""
        named = []
        for key, value in settings.items():
            named.append("--" + key.replace("_", "-") + ("" if value is True else f" {value}"))
            try:
                self.query_one(f"#train-{key}", Input).value = form_text(value)
                continue
            except NoMatches:
                pass
            if key == "quantize":  # the Model tab's setting: its menu shows it (and sets the app's)
                self.app.quantize = int(value)
                for menu in self.app.query("#model-quantize").results(Select):
                    menu.value = str(value)
            else:
                self.extra[key] = value
        return named

    def args_for(self, flags: dict, resume: bool = False) -> list[str]:
        args = ["--config", self.config_file] if self.config_file and not resume else []
        for k, v in flags.items():
            if v is True:  # a switch (--skip-invalid): the flag alone
                args.append("--" + k.replace("_", "-"))
            elif v is not None and v is not False:
                args += ["--" + k.replace("_", "-"), str(v)]
        return args + (["--resume"] if resume else [])

    def checked_flags(self, output: str) -> dict:
        """The form as flags, checked by the engine's own validation; a UsageError names the field by its label."""
        try:
            flags = self.flags(output)
            require(flags, (("model", "a model on the Model tab"), ("data", "a pairs file on the Data tab"),
                            ("output", "a run dir")))
            yaml_values = load_config_file(self.config_file) if self.config_file else {}
            build_config(yaml_values, flags, {k: self.config_file for k in yaml_values})
        except UsageError as e:
            text, key = friendly(e)
            raise UsageError(text, key=key) from None
        return flags

    def iterate_flags(self, output: str) -> dict:
        """`mlx-dpo iterate`'s flags: the iterate fields, and the form's settings for every round's training
        (checked by the engine's validation as a round would be). A UsageError names the field."""
        try:
            flags = {k: v for k, v in self.flags(output).items() if k not in DATA_FLAGS and k != "eval_every"}
            flags.update(self.query_one(IterateForm).flags())
            require(flags, (("model", "a model on the Model tab"), ("output", "a run dir (the iteration's folder)")))
            train = {k: v for k, v in flags.items() if k not in ITERATE_FLAGS}  # the engine's split of the flags
            build_config({}, {**train, "model": flags["model"], "data": "pairs.jsonl",
                              "output": str(Path(flags["output"]) / "round_1")}).validate()
        except UsageError as e:
            text, key = friendly(e)
            raise UsageError(text, key=key) from None
        return flags

    def distribution(self, batch_size: int) -> tuple[int, str | None]:
        """(processes, hostfile) from the form, checked against the global batch size."""
        return check_distribution(self.query_one("#train-processes", Input).value,
                                  self.query_one("#train-hostfile", Input).value, batch_size)

    def command_line(self, output: str) -> str:
        """The `mlx-dpo train …` line this form would run; in iterate mode the `mlx-dpo iterate …` line."""
        if self.mode == "iterate":
            return shlex.join(["mlx-dpo", "iterate", *flag_args(self.iterate_flags(output))])
        flags = self.flags(output)
        return shlex.join(["mlx-dpo", "train", *self.args_for({k: v for k, v in flags.items() if v})])

    # ------------------------------------------------------------------ filled from settings, config files
    def show_config(self, config: dict) -> None:
        """Fill the form with a run's saved settings (what a resumed run will use)."""
        for name in [name for name, _, _ in FIELDS] + [p.name for p in LOSS_FIELDS]:
            if config.get(name) is not None:
                value = config[name]
                self.query_one(f"#train-{name}", Input).value = form_text(value) if isinstance(value, float) else str(value)
        loss = config.get("loss")
        if isinstance(loss, list):  # TRL's list form of a combination
            loss = ",".join(map(str, loss))
        if loss and all(n in LOSS_KINDS for n in str(loss).split(",")):
            select = self.query_one("#train-loss", Select)
            if loss not in LOSSES:  # a combination (sigmoid,sft): offered for this form as it is
                select.set_options([(l, l) for l in (*LOSSES, loss)])
            select.value = loss
        if "init_adapter" in config:
            self.query_one("#train-init_adapter", Input).value = str(config["init_adapter"] or "")

    def show_iteration(self, saved: dict) -> None:
        """Fill the iterate fields and the training settings with an iteration's own (its iterate.yaml)."""
        self.query_one(IterateForm).show_settings(saved)
        self.show_config(saved.get("train") or {})

    def set_adapter(self, adapter: str) -> None:
        """The run dir a new run starts from (--init-adapter; "" for the base model)."""
        self.query_one("#train-init_adapter", Input).value = adapter

    def prepare_from_chat(self, adapter: str | None, loss: str | None) -> None:
        """A run on Chat's picks: from the chatted adapter, and no step count, so the engine trains as many
        epochs as make --min-steps steps (a few picks make one or two steps an epoch; enough to move the model,
        measured on the demo: benchmarks/small_prefs.py)."""
        self.set_adapter(adapter or "")
        self.query_one("#train-iters", Input).value = ""
        if loss:
            self.query_one("#train-loss", Select).value = loss

    def config_default(self) -> str:
        return self.config_file or str(Path(self.app.runs_root) / "train.yaml")

    def save_config(self, path: str | None) -> None:
        if not path:
            return
        try:
            flags = self.flags("")  # no run dir: a config names none
        except UsageError as e:
            self.app.notify(friendly(e)[0], severity="error")
            return
        values = load_config_file(self.config_file) if self.config_file else {}
        values.update({k: v for k, v in flags.items() if v is not None and k != "output"})
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        except OSError as e:
            self.app.notify(f"could not save {path}: {e}", severity="error")
            return
        self.app.notify(f"saved the form to {path}")

    def load_config(self, path: str) -> dict | None:
        """Fill the form (and the app's model and data) from a YAML config; its values, None if it is refused.
        Keys the form has no field for travel as --config."""
        try:
            values = load_config_file(path)
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return None
        self.show_config(values)
        if values.get("model"):
            self.app.model = str(values["model"])
        if values.get("data"):
            self.app.data_path = str(values["data"])
        if "valid_data" in values:
            self.app.valid_path = values["valid_data"] or None
        self.config_file = path
        return values
