"""Train: the hyper-parameter form, Start / Stop / Resume, progress with ETA, live curves, the log.

Processes / hosts file run the trainer data-parallel under mlx.launch (see training.py). The form can
be saved as (and filled from) the YAML file `mlx-dpo train --config` reads, and shown as the
equivalent `mlx-dpo train …` command.

Safety: Start never hands the focus to Stop (a habitual second Enter must not stop the run); while a
run goes the focus rests on the progress line, and Stop is a click or its key (ctrl+b).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

import yaml
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, Collapsible, Input, Label, ProgressBar, RichLog, Select, Static

from mlx_dpo import (DEMO_SETTINGS, ITERATE_FLAGS, LOSS_KINDS, LOSS_PARAMS, LOSSES, TrainConfig, UsageError, build_config,
                     config_error, is_demo_model, is_iteration, load_config_file, loss_params, read_rounds, read_run)

from ..confirm import BadRows, PathPrompt
from ..messages import (IterationRound, TrainingEnded, TrainingLog, TrainingMetrics, TrainingPhase, TrainingProgress,
                        TrainingSamples, TrainingStarted, TrainingTask, TrainingWarning)
from ..training import TrainingProcess, check_distribution
from ..widgets.charts import MetricsCharts, RoundCharts
from ..widgets.samples import SamplesPanel
from ..widgets.rounds import RoundsTable
from .data_pane import DEFAULT_OPTIONS
from .iterate_form import LABELS as ITERATE_LABELS, IterateForm, flag_args, iteration_settings, resume_args, rounds_done

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
    "data": "pairs file (Data tab)", "valid_data": "held-out file (Data tab)", "quantize": "quantize (Model tab)"}
LABELS |= ITERATE_LABELS
ETA_SMOOTHING = 0.3  # weight of the newest seconds-per-step figure in the ETA's moving average
MODES = [("train: DPO on the pairs file", "train"),
         ("iterate: the model writes its own pairs, a judge ranks them", "iterate")]
TRAIN_ONLY = ("eval_every", "processes")  # fields iterate mode hides (rounds train on one process, no eval data)
# Iterate mode: the stages of a round, and the stage each reported phase belongs to.
STAGES = ("generate", "judge", "train", "evaluate")
STAGE_OF = {"generate": "generate", "judge": "judge", "load": "train", "data": "train", "reference": "train",
            "train": "train", "evaluate": "evaluate"}
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


def rank_line(row: dict) -> str:
    """The per-rank figures of a data-parallel metrics row ("" for a one-process row)."""
    if not row.get("ranks"):
        return ""
    ranks = [f"rank {i}: {tps:.0f} tok/s, {fmt_memory(gb)}"
             for i, (tps, gb) in enumerate(zip(row["rank_tokens_per_second"], row["rank_peak_memory_gb"]))]
    return " · ".join([f"{row['ranks']} processes", *ranks])


def fmt_memory(gb: float) -> str:
    return f"{gb:.2f} GB" if gb >= 1 else f"{gb * 1024:.0f} MB"


def fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def friendly(e: UsageError) -> tuple[str, str | None]:
    """An engine error as the form shows it: the form's label for the setting it concerns, and that setting.

    A config error on `iters` ("config: iters: must be a positive integer, got 0") reads
    "steps: must be a positive integer, got 0"."""
    if e.key in LABELS and e.problem is not None:  # the engine's config error: named as the form names it
        return f"{LABELS[e.key]}: {e.detail}", e.key
    return str(e), e.key


class EtaClock:
    """Seconds per step as a moving average over the polls, so the ETA does not jump with each one."""

    def __init__(self):
        self.last: tuple[int, float] | None = None
        self.per_step: float | None = None

    def update(self, step: int, now: float) -> None:
        if self.last is not None and step > self.last[0] and now > self.last[1]:
            sample = (now - self.last[1]) / (step - self.last[0])
            self.per_step = sample if self.per_step is None else (
                ETA_SMOOTHING * sample + (1 - ETA_SMOOTHING) * self.per_step)
        if self.last is None or step > self.last[0]:
            self.last = (step, now)

    def eta(self, step: int, total: int) -> str:
        return fmt_eta((total - step) * self.per_step) if self.per_step and total else "…"


class ProgressBox(Vertical):
    """The progress bar and status line. It holds the focus while a run goes: a safe, visible place
    where Enter does nothing (Start is disabled then, and Stop must never receive a stray Enter)."""

    can_focus = True


class TrainPane(VerticalScroll):
    can_focus = False  # the pane scrolls; its controls take the focus

    BINDINGS = [Binding("ctrl+s", "start", "Start"), Binding("ctrl+b", "stop", "Stop"),
                Binding("ctrl+r", "resume", "Resume"),
                Binding("ctrl+o", "load_config", "Open config", show=False),
                Binding("ctrl+f", "save_config", "Save config", show=False),
                Binding("ctrl+g", "show_command", "Show command")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.process: TrainingProcess | None = None
        self.total_steps = 0
        self.first_step: tuple[int, float] | None = None
        self.clock = EtaClock()
        self.last_row: dict | None = None  # the last training metrics row of the current run
        self.config_file: str | None = None  # a loaded YAML config: passed as --config, the form's flags win
        self.from_chat = False  # the form was prepared from Chat's preference file (its run goes back to Chat)
        self.chat_run: str | None = None  # the run started from such a form
        self.in_loop = False  # iterate mode: a round's training loop is going (else a stage before or after it)
        self.stage = ""  # iterate mode: the stage of the round now (generate, judge, train, evaluate)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row buttons", id="train-top"):
            yield Label("Run dir", classes="field-label")
            yield Input(self.default_output(), id="train-output")
            yield Button("Start", id="train-start", variant="success")
            yield Button("Stop", id="train-stop", variant="error", disabled=True)
            yield Button("Resume", id="train-resume", disabled=True)
        with ProgressBox(id="train-progress-box"):
            yield ProgressBar(total=1, id="train-progress", show_eta=False)  # determinate until a run starts
            yield Static("idle", id="train-status", markup=False)
            yield Static("", id="train-ranks", markup=False)
            yield Static("", id="train-stage", classes="iterate-only")
        yield RoundsTable(id="train-round-table", classes="iterate-only")
        defaults = self.field_defaults()
        with Collapsible(title="Hyper-parameters", id="train-settings", collapsed=False):
            with Horizontal(classes="train-wide-row", id="train-mode-row"):
                yield Label("mode", classes="form-label")
                yield Select(MODES, value="train", allow_blank=False, id="train-mode")
            yield IterateForm(id="train-iterate", classes="iterate-only")
            with Grid(id="train-form"):
                for name, label, _ in FIELDS:
                    only = " train-only" if name in TRAIN_ONLY else ""
                    yield Label(label, classes="form-label" + only)
                    yield Input(defaults[name], id=f"train-{name}", classes="form-input" + only,
                                placeholder=PLACEHOLDERS.get(name, ""))
                yield Label("processes", classes="form-label train-only")
                yield Input("1", id="train-processes", classes="form-input train-only")
                yield Label("loss", classes="form-label")
                yield Select([(l, l) for l in LOSSES], value="sigmoid", allow_blank=False, id="train-loss")
                for p in LOSS_FIELDS:  # the selected loss's settings, with its line on when to use it below
                    yield Label(p.label or p.name, id=f"train-{p.name}-label", classes="form-label loss-setting")
                    yield Input(defaults[p.name], id=f"train-{p.name}", classes="form-input loss-setting")
            yield Static(id="train-loss-help", classes="train-wide-row", markup=False)
            with Horizontal(classes="train-wide-row"):
                yield Label("from adapter", classes="form-label")
                yield Input(id="train-init_adapter", classes="train-wide",
                            placeholder="optional: a run dir to continue from (reference = base + it)")
            with Horizontal(classes="train-wide-row train-only"):
                yield Label("hosts file", classes="form-label")
                yield Input(id="train-hostfile", classes="train-wide", placeholder="optional: mlx.launch JSON hostfile")
        yield MetricsCharts(id="train-charts")
        yield SamplesPanel(id="train-answers")  # (#train-samples is iterate's samples-per-prompt field)
        yield RoundCharts(id="train-round-charts", classes="iterate-only")
        yield RichLog(id="train-log", max_lines=2000, wrap=True)

    def on_mount(self) -> None:
        self.query_one("#train-log", RichLog).border_title = "log"
        self.query_one("#train-round-table", RoundsTable).border_title = "rounds"
        self.show_loss_settings()
        self.update_resume()
        self.watch(self.app, "model", lambda _: self._refresh_iterate_form(), init=False)

    # ------------------------------------------------------------------ train or iterate
    @property
    def mode(self) -> str:
        try:
            return str(self.query_one("#train-mode", Select).value)
        except NoMatches:
            return "train"

    def set_mode(self, mode: str) -> None:
        self.query_one("#train-mode", Select).value = mode
        self.set_class(mode == "iterate", "-iterate")

    @on(Select.Changed, "#train-mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self.set_class(event.value == "iterate", "-iterate")
        if event.value == "iterate":
            self._refresh_iterate_form()
            self.show_rounds()
        self.update_resume()

    def _refresh_iterate_form(self) -> None:
        if self.mode == "iterate":
            self.query_one(IterateForm).refresh_defaults()

    def show_rounds(self, reports: list[dict] | None = None) -> None:
        """The round table and charts: the running iteration's reports, else those of the run dir's iteration."""
        if reports is None:
            folder = self.query_one("#train-output", Input).value.strip()
            reports = read_rounds(folder) if folder else []
        self.query_one(RoundsTable).show(reports)
        self.query_one(RoundCharts).reset(reports)
        self.show_stage()

    def show_stage(self) -> None:
        """Iterate mode: "round 2/3 · generate › judge › train › evaluate", the current stage highlighted."""
        from rich.text import Text

        line = Text()
        process = self.process if self.process and self.process.iterate else None
        if process is None or not self.running:
            self.query_one("#train-stage", Static).update("")
            return
        total = next((int(v) for k, v in zip(process.args, process.args[1:]) if k == "--rounds"), 0)
        line.append(f"round {process.current_round}/{total} · " if process.current_round else "round 0 (start) · ")
        for i, stage in enumerate(STAGES):
            if i:
                line.append(" › ", style="dim")
            line.append(stage, style="bold reverse" if stage == self.stage else "dim")
        self.query_one("#train-stage", Static).update(line)

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

    def default_output(self) -> str:
        return str(Path(self.app.runs_root) / datetime.now().strftime("run-%Y%m%d-%H%M%S"))

    @property
    def running(self) -> bool:
        return bool(self.process and self.process.running)

    # ------------------------------------------------------------------ keys and focus
    def focus_first(self) -> None:
        """Start when it can start; while a run goes, the progress line (never Stop: Enter would stop the run)."""
        start = self.query_one("#train-start", Button)
        self.app.focus_if_shown(start if not start.disabled else self.query_one(ProgressBox))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("start", "load_config", "iterate_mode"):
            return None if self.running else True
        if action == "stop":
            return True if self.running else None
        if action == "resume":
            try:
                return None if self.running or self.query_one("#train-resume", Button).disabled else True
            except NoMatches:  # asked before the pane is built
                return None
        return True

    def why_not(self, action: str) -> str:
        if action == "stop":
            return "no training run is going"
        if action == "resume":
            return "nothing to resume: the run dir holds no unfinished run with a checkpoint"
        return "a training run is going"

    def action_start(self) -> None:
        self.start()

    def action_stop(self) -> None:
        self.stop()

    def action_resume(self) -> None:
        self._resume_pressed()

    def action_iterate_mode(self) -> None:
        """The palette's "iterative DPO": the form in iterate mode, opened."""
        self.set_mode("iterate")
        self.query_one("#train-settings", Collapsible).collapsed = False
        self.app.focus_if_shown(self.query_one("#train-mode", Select))

    # ------------------------------------------------------------------ form
    def form_flags(self) -> dict:
        flags: dict = {"model": self.app.model, "data": self.app.data_path,
                       "output": self.query_one("#train-output", Input).value.strip(),
                       "loss": self.query_one("#train-loss", Select).value}
        if self.app.valid_path:
            flags["valid_data"] = self.app.valid_path
        # The Data tab's source options; only those off their default, so a loaded --config keeps its own.
        for key, value in self.app.data_options.items():
            if value != DEFAULT_OPTIONS[key]:
                flags[key] = value
        if self.app.quantize:
            flags["quantize"] = self.app.quantize
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
                raise config_error(name, f"expected a number, got {raw!r}") from None
        return flags

    def args_for(self, flags: dict, resume: bool = False) -> list[str]:
        args = ["--config", self.config_file] if self.config_file and not resume else []
        for k, v in flags.items():
            if v is True:  # a switch (--skip-invalid): the flag alone
                args.append("--" + k.replace("_", "-"))
            elif v is not None and v is not False:
                args += ["--" + k.replace("_", "-"), str(v)]
        return args + (["--resume"] if resume else [])

    def checked_flags(self) -> dict:
        """The form as flags, checked by the engine's own validation; a UsageError names the field by its
        label and focuses it."""
        try:
            flags = self.form_flags()
            for key, what in (("model", "a model on the Model tab"), ("data", "a pairs file on the Data tab"),
                              ("output", "a run dir")):
                if not flags.get(key):
                    raise UsageError(f"choose {what} first")
            yaml_values = load_config_file(self.config_file) if self.config_file else {}
            build_config(yaml_values, flags, {k: self.config_file for k in yaml_values})
        except UsageError as e:
            text, key = friendly(e)
            self.mark_invalid(key)
            raise UsageError(text, key=key) from None
        return flags

    def mark_invalid(self, key: str | None) -> None:
        for widget in self.query(".-invalid-field"):
            widget.remove_class("-invalid-field")
        try:
            widget = self.query_one(f"#train-{key}") if key else None
        except NoMatches:
            widget = None
        if widget is None:
            return
        widget.add_class("-invalid-field")
        self.query_one("#train-settings", Collapsible).collapsed = False
        self.app.focus_if_shown(widget)

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        event.input.remove_class("-invalid-field")
        if event.input.id == "train-output":
            self.update_resume()
            if self.mode == "iterate" and not self.running:
                self.show_rounds()  # the rounds of the iteration there, if it is one
        elif event.input.id == "train-rounds":
            self.update_resume()  # more rounds than an iteration has: Resume adds them

    def update_resume(self) -> None:
        """Resume is possible when the run dir holds an unfinished run with a checkpoint."""
        run = self.query_one("#train-output", Input).value.strip()
        if self.mode == "iterate":
            resumable = self.iteration_unfinished(run)
        else:
            info = read_run(run) if run else None
            resumable = bool(info and info.checkpoints and not info.finished)
        self.query_one("#train-resume", Button).disabled = self.running or not resumable
        self.refresh_bindings()

    def iteration_unfinished(self, folder: str) -> bool:
        """An iteration in `folder` that has rounds left: its own number, or more when the form asks for more."""
        saved = iteration_settings(folder)
        if not saved:
            return False
        try:
            wanted = int(self.query_one("#train-rounds", Input).value)
        except ValueError:
            wanted = 0
        return rounds_done(folder) < max(int(saved.get("rounds") or 1), wanted)

    @on(Button.Pressed, "#train-start")
    def start(self) -> None:
        if self.running:
            self.app.notify("a training run is already going", severity="warning")
            return
        if self.mode == "iterate":
            self.start_iteration()
            return
        try:
            flags = self.checked_flags()
            processes, hostfile = self.distribution(int(flags.get("batch_size") or 4))
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        self.launch(flags["output"], self.args_for(flags), flags.get("iters", 0), processes=processes,
                    hostfile=hostfile)

    def distribution(self, batch_size: int) -> tuple[int, str | None]:
        """(processes, hostfile) from the form, checked against the global batch size."""
        try:
            return check_distribution(self.query_one("#train-processes", Input).value,
                                      self.query_one("#train-hostfile", Input).value, batch_size)
        except UsageError as e:
            self.mark_invalid(e.key or "processes")
            raise

    # ------------------------------------------------------------------ iterate
    def iterate_flags(self) -> dict:
        """`mlx-dpo iterate`'s flags: the iterate fields, and the Train form's settings for every round's
        training (checked by the engine's validation as a round would be). A UsageError names the field."""
        try:
            flags = {k: v for k, v in self.form_flags().items() if k not in DATA_FLAGS and k != "eval_every"}
            flags.update(self.query_one(IterateForm).flags())
            for key, what in (("model", "a model on the Model tab"), ("output", "a run dir (the iteration's folder)")):
                if not flags.get(key):
                    raise UsageError(f"choose {what} first")
            train = {k: v for k, v in flags.items() if k not in ITERATE_FLAGS}  # the engine's split of the flags
            build_config({}, {**train, "model": flags["model"], "data": "pairs.jsonl",
                              "output": str(Path(flags["output"]) / "round_1")}).validate()
        except UsageError as e:
            text, key = friendly(e)
            self.mark_invalid(key)
            raise UsageError(text, key=key) from None
        return flags

    def start_iteration(self) -> None:
        try:
            flags = self.iterate_flags()
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        folder = flags["output"]
        if is_iteration(Path(folder)):
            self.update_resume()
            self.app.notify(f"{folder} holds an iteration: Resume (ctrl+r) continues it (raise rounds to add "
                            "rounds); to start a new one, change the run dir", severity="warning", timeout=10)
            return
        if (Path(folder) / "config.yaml").exists():
            self.refuse_used_run_dir(folder)
            return
        self.launch(folder, flag_args(flags), flags.get("iters", 0), iterate=True,
                    first_round=0 if flags.get("valid_prompts") else 1)

    def resume_iteration(self, folder: str) -> None:
        """Run the iteration's command again (its own settings from iterate.yaml): it continues where it stopped."""
        try:
            wanted = int(self.query_one("#train-rounds", Input).value) if self.mode == "iterate" else 0
        except ValueError:
            wanted = 0
        try:
            args, first = resume_args(folder, wanted)
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        saved = iteration_settings(folder)
        self.set_mode("iterate")
        self.query_one("#train-output", Input).value = folder
        self.query_one(IterateForm).show_settings(saved)
        self.show_config(saved.get("train") or {})
        self.launch(folder, args, (saved.get("train") or {}).get("iters") or 0, resume=True, iterate=True,
                    first_round=first)

    @on(Button.Pressed, "#train-resume")
    def _resume_pressed(self) -> None:
        self.resume(self.query_one("#train-output", Input).value.strip())

    def resume(self, run: str) -> None:
        if self.mode == "iterate" and is_iteration(Path(run)):
            self.resume_iteration(run)
            return
        parent = str(Path(run).parent)
        saved = iteration_settings(parent)
        if saved and rounds_done(parent) < int(saved.get("rounds") or 1):
            self.resume_iteration(parent)  # a round of an unfinished iteration: the iteration continues
            return
        info = read_run(run)
        if info.finished:
            self.continue_from(run, why=f"{Path(run).name} already finished ({info.last_step} steps)")
            return
        if not info.checkpoints:
            self.app.notify(f"{run}: no checkpoint to resume", severity="error")
            return
        self.query_one("#train-output", Input).value = run
        self.show_config(info.config)
        try:
            processes, hostfile = self.distribution(int(info.config.get("batch_size") or 1))
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        # No rows passed on: the metrics follower reads the run's file from the start.
        self.launch(run, ["--output", run, "--resume"], info.config.get("iters") or 0, resume=True,
                    processes=processes, hostfile=hostfile)

    def continue_from(self, run: str, why: str = "") -> None:
        """Fill the form for a new run that starts from `run`'s adapter (the one way on from a finished run)."""
        info = read_run(run)
        self.set_mode("train")
        self.show_config(info.config)
        self.query_one("#train-init_adapter", Input).value = str(run)
        self.query_one("#train-output", Input).value = self.fresh_output(f"{Path(run).name}-cont")
        self.query_one("#train-settings", Collapsible).collapsed = False
        lead = f"{why}: " if why else ""
        self.app.notify(f"{lead}the form now holds a new run that continues from its adapter — ctrl+s starts it",
                        timeout=10)
        self.focus_first()

    def prepare_from_chat(self, data: str, adapter: str | None, loss: str | None = None) -> None:
        """Fill the form for a run on Chat's preference file that continues from the adapter chatted with
        (`loss` "kto" for a file of thumbs, which are unpaired rows)."""
        self.set_mode("train")
        self.query_one("#train-init_adapter", Input).value = adapter or ""
        # A few picks make one or two steps an epoch: no step count, so the engine trains as many epochs as make
        # --min-steps steps (enough to move the model, measured on the demo: benchmarks/small_prefs.py).
        self.query_one("#train-iters", Input).value = ""
        if loss:
            self.query_one("#train-loss", Select).value = loss
        self.query_one("#train-output", Input).value = self.fresh_output(f"chat-{datetime.now():%Y%m%d-%H%M%S}")
        self.query_one("#train-settings", Collapsible).collapsed = False
        self.from_chat = True
        if adapter:
            note = (f"a new run on {data} that continues from {adapter}: the reference is then base + that "
                    "adapter; to start from (and compare against) the base model instead, clear \"from adapter\"")
        else:
            note = f"a new run on {data} from the base model (the chat had no adapter)"
        note += (f"; steps left empty: as many epochs as make {TrainConfig.min_steps} steps, so a few picks move the "
                 "model — ctrl+s starts it")
        self.query_one("#train-log", RichLog).write(note)
        self.app.notify(note, timeout=15)
        self.focus_first()

    def fresh_output(self, name: str) -> str:
        base = Path(self.app.runs_root) / name
        candidate, n = base, 2
        while candidate.exists():
            candidate, n = Path(f"{base}-{n}"), n + 1
        return str(candidate)

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

    @on(Button.Pressed, "#train-stop")
    def stop(self) -> None:
        if self.running:
            self.process.stop()
            self.query_one("#train-status", Static).update("stopping after this step (saving a checkpoint) …")

    def launch(self, run_dir: str, args: list[str], total: int, resume: bool = False, processes: int = 1,
               hostfile: str | None = None, iterate: bool = False, first_round: int = 1) -> None:
        """Start the trainer on `run_dir`; `total` is the form's step count until the trainer says its own.
        `iterate`: `mlx-dpo iterate` on the iteration folder `run_dir` instead (see TrainingProcess)."""
        if self.running:
            self.app.notify("a training run is already going", severity="warning")
            return
        if not resume and not iterate and (Path(run_dir) / "config.yaml").exists():
            self.refuse_used_run_dir(run_dir)
            return
        self.total_steps = int(total or 0)
        self.first_step, self.clock, self.last_row = None, EtaClock(), None
        self.in_loop, self.stage = False, ""
        if not iterate:
            self.app.run_dir = run_dir  # an iteration's folder is no run: each round's adapter becomes it
        self.query_one(MetricsCharts).reset()  # fresh axes; a resumed run's earlier rows come from its file
        self.query_one(SamplesPanel).reset()
        self.query_one("#train-log", RichLog).clear()
        self.query_one("#train-progress", ProgressBar).update(total=None, progress=0)
        self.process = TrainingProcess(self, run_dir, args, processes, hostfile, iterate=iterate,
                                       first_round=first_round)
        if iterate:
            self.show_rounds(self.process.rounds)
        # A run on Chat's picks: when it finishes, Chat offers its adapter.
        self.chat_run, self.from_chat = (run_dir if self.from_chat and not resume else None), False
        ranks = self.query_one("#train-ranks", Static)
        ranks.update("")
        ranks.display = False  # shown once a data-parallel run reports per-rank figures
        self.set_running(True)
        self.query_one("#train-settings", Collapsible).collapsed = True  # room for the charts (stays so)
        self.scroll_home(animate=False, immediate=True)  # the progress line, the rounds and the curves, from wherever the form was
        self.query_one("#train-status", Static).update(
            "starting the iteration …" if iterate else "starting: loading the model and computing reference log-probs …")
        self.run_process()
        self.app.refresh_runs()

    def refuse_used_run_dir(self, run_dir: str) -> None:
        """A run dir that holds a run: say the one way on (Resume, or a fresh folder filled in)."""
        info = read_run(run_dir)
        if info.checkpoints and not info.finished:
            self.update_resume()
            self.app.notify(f"{run_dir} holds an unfinished run: Resume (ctrl+r) continues it; to start over, "
                            "change the run dir", severity="warning", timeout=10)
            return
        what = "a finished run" if info.finished else "a run that saved nothing"
        self.query_one("#train-output", Input).value = fresh = self.default_output()
        if fresh == run_dir:
            fresh = self.query_one("#train-output", Input).value = self.fresh_output(Path(run_dir).name)
        self.app.notify(f"{run_dir} holds {what}; the run dir is now {fresh} — ctrl+s starts there", severity="warning",
                        timeout=10)

    @work(exclusive=True, group="training")
    async def run_process(self) -> None:
        await self.process.run()  # an async worker: the subprocess needs no thread (and no MLX here)

    def set_running(self, running: bool) -> None:
        focused = self.app.focused
        was_here = focused is None or self in focused.ancestors
        if running:
            # Move the focus to the progress line *before* Start is disabled: a disabled focused widget
            # hands the focus on, and it must never land on Stop.
            self.app.focus_if_shown(self.query_one(ProgressBox))
        self.query_one("#train-start", Button).disabled = running
        self.query_one("#train-stop", Button).disabled = not running
        self.query_one("#train-output", Input).disabled = running
        for widget in self.query("#train-settings Input, #train-settings Select"):
            widget.disabled = running  # edits would not reach a running process
        self.app.training_running = running
        self.update_resume()
        if not running and was_here:
            self.focus_first()

    # ------------------------------------------------------------------ process events
    def on_training_log(self, message: TrainingLog) -> None:
        self.query_one("#train-log", RichLog).write(message.line)

    @property
    def iterating(self) -> bool:
        return bool(self.process and self.process.iterate)

    def starting(self) -> bool:
        """Before the first step is reported and no stop was asked for: the status line says what the run does.
        An iteration: outside a round's training loop (generating, judging, loading, evaluating)."""
        if self.process and self.process.stop_sent:
            return False
        return not self.in_loop if self.iterating else self.first_step is None

    def on_training_phase(self, message: TrainingPhase) -> None:
        if self.iterating:
            self.in_loop = False  # a phase is a stage of the round, or the round's trainer getting ready
            self.stage = STAGE_OF.get(message.phase, self.stage)
            self.show_stage()
        if self.starting():
            text = message.text if message.phase == "train" or self.iterating else f"starting: {message.text}"
            self.query_one("#train-status", Static).update(f"{text} …")

    def on_training_task(self, message: TrainingTask) -> None:
        if self.starting():  # tokenizing, the reference pass (an eval during training keeps the step line)
            self.query_one("#train-progress", ProgressBar).update(total=max(1, message.total), progress=message.done)
            lead = "" if self.iterating else "starting: "
            self.query_one("#train-status", Static).update(
                f"{lead}{message.label} {message.done}/{message.total} …")

    def on_iteration_round(self, message: IterationRound) -> None:
        """A round ended: its row in the table and its point on the round charts; its adapter is the app's run."""
        reports = self.process.rounds if self.process else [message.report]
        self.query_one(RoundsTable).show(reports)
        self.query_one(RoundCharts).reset(reports)
        adapter = message.report.get("adapter")
        if message.report.get("round", 0) > 0 and adapter and (Path(adapter) / "adapters.safetensors").exists():
            self.app.run_dir = str(adapter)
        self.show_stage()
        self.app.refresh_runs()

    def on_training_started(self, message: TrainingStarted) -> None:
        if self.iterating:  # a round's training: its own curves, from its first step (or its checkpoint)
            self.in_loop = True
            self.first_step, self.clock, self.last_row = None, EtaClock(), None
            self.query_one(MetricsCharts).reset()
            self.show_stage()
        self.total_steps = message.total_steps
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=message.step)
        self.update_status()
        self.app.refresh_runs()

    def on_training_progress(self, message: TrainingProgress) -> None:
        self.total_steps = message.total_steps
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=message.step)
        self.update_status()

    def on_training_samples(self, message: TrainingSamples) -> None:
        self.query_one(SamplesPanel).show_samples(message.step, message.samples)

    def on_training_warning(self, message: TrainingWarning) -> None:
        self.query_one(SamplesPanel).show_warning(message.kind, message.message)
        self.app.notify(f"{message.kind}: {message.message}", severity="warning", timeout=15)

    def on_training_metrics(self, message: TrainingMetrics) -> None:
        self.query_one(MetricsCharts).add_rows(message.rows)
        if self.app.is_shown(self.app.query_one("#pane-runs")):
            self.app.refresh_runs()  # the live run's steps and loss on Runs
        train = [r for r in message.rows if "loss" in r]
        if not train:
            return
        last = train[-1]
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (last["step"], now)
        self.clock.update(last["step"], now)
        self.last_row = last
        self.update_status()
        if line := rank_line(last):
            ranks = self.query_one("#train-ranks", Static)
            ranks.update(line)
            ranks.display = True

    def update_status(self) -> None:
        """The step line, from the last metrics row and the trainer's own step count (events and metrics
        rows arrive on two channels, in either order)."""
        last = self.last_row
        if last is None or (self.process and self.process.stop_sent):
            return
        eta = self.clock.eta(last["step"], self.total_steps)
        # After the last step the run still evaluates and writes its checkpoint and adapter.
        when = ("evaluating and saving …" if self.total_steps and last["step"] >= self.total_steps and not self.iterating
                else f"ETA {eta}")
        self.query_one("#train-status", Static).update(
            f"step {last['step']}/{self.total_steps or '?'} · {when} · {last['tokens_per_second']:.0f} tok/s · "
            f"loss {last['loss']:.4f} · acc {last['rewards/accuracies']:.2f} · margin {last['rewards/margins']:.3f}")

    def on_training_ended(self, message: TrainingEnded) -> None:
        if self.app.quit_after_training:
            self.app.exit()
            return
        chat_run, self.chat_run = self.chat_run, None
        if message.returncode == 0:
            if chat_run:
                self.app.training_finished(chat_run, True)
        elif chat_run:
            self.from_chat = True  # a failed start keeps the link: the retry's adapter still goes to Chat
            bar = self.query_one("#train-progress", ProgressBar)
            bar.update(progress=bar.total or 1, total=bar.total or 1)  # "done" comes without a last progress event
            if not self.iterating:  # an iteration's folder stays: raising rounds and Resume adds rounds
                self.query_one("#train-output", Input).value = self.default_output()  # ready for the next run
        self.set_running(False)
        self.show_stage()
        self.query_one("#train-status", Static).update(message.message)
        self.query_one("#train-log", RichLog).write(message.message)
        severity = "information" if message.returncode in (0, 130) else "error"
        self.app.notify(message.message, severity=severity, timeout=10)
        self.app.refresh_runs()
        self.offer_fix_for_bad_rows()

    def offer_fix_for_bad_rows(self) -> None:
        """A run refused its data for bad rows: offer to skip them and start again, or to show them on Data
        (from the trainer's error event: its problems, and whether skipping them would train)."""
        events = self.process.error_events if self.process and not self.iterating else []
        failed = events[-1] if events else {}
        if not failed.get("problems") or self.running:
            return
        data = self.app.data_path or ""

        def chosen(answer: str | None) -> None:
            if answer == "skip":
                self.app.set_skip_invalid(True)
                self.start()
            elif answer == "open":
                self.app.open_data(data)

        self.app.push_screen(BadRows(data, failed["problems"], bool(failed.get("skippable"))), chosen)

    # ------------------------------------------------------------------ config file and command
    def action_show_command(self) -> None:
        """The `mlx-dpo train …` line this form would run (written to the log, and to the clipboard);
        in iterate mode the `mlx-dpo iterate …` line."""
        try:
            flags = self.iterate_flags() if self.mode == "iterate" else self.form_flags()
        except UsageError as e:
            self.app.notify(friendly(e)[0], severity="error")
            return
        if self.mode == "iterate":
            line = shlex.join(["mlx-dpo", "iterate", *flag_args(flags)])
        else:
            line = shlex.join(["mlx-dpo", "train", *self.args_for({k: v for k, v in flags.items() if v})])
        self.query_one("#train-log", RichLog).write(line)
        self.app.copy_to_clipboard(line)
        self.app.notify(f"{line}\n(in the log below, and copied)", timeout=15)

    def action_save_config(self) -> None:
        default = self.config_file or str(Path(self.app.runs_root) / "train.yaml")
        self.app.push_screen(PathPrompt("Save the Train form as a YAML config (for mlx-dpo train --config):",
                                        default, "Save"), self.save_config)

    def save_config(self, path: str | None) -> None:
        if not path:
            return
        try:
            flags = self.form_flags()
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

    def action_load_config(self) -> None:
        default = self.config_file or str(Path(self.app.runs_root) / "train.yaml")
        self.app.push_screen(PathPrompt("Fill the Train form from a YAML config:", default, "Open"), self.load_config)

    def load_config(self, path: str | None) -> None:
        if not path:
            return
        try:
            values = load_config_file(path)
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        self.show_config(values)
        if values.get("model"):
            self.app.model = str(values["model"])
        if values.get("data"):
            self.app.data_path = str(values["data"])
        if "valid_data" in values:
            self.app.valid_path = values["valid_data"] or None
        if values.get("output"):
            self.query_one("#train-output", Input).value = str(values["output"])
        self.config_file = path  # keys the form has no field for travel as --config
        self.app.notify(f"loaded {path}")
