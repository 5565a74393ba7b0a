"""Train: the hyper-parameter form, Start / Stop / Resume, progress with ETA, live curves, the log.

Processes / hosts file run the trainer data-parallel under mlx.launch (see training.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, Collapsible, Input, Label, ProgressBar, RichLog, Select, Static

from mlx_dpo import DEMO_SETTINGS, LOSSES, UsageError, build_config, is_demo_model, read_run

from ..messages import (TrainingEnded, TrainingLog, TrainingMetrics, TrainingPhase, TrainingProgress,
                        TrainingStarted, TrainingTask)
from ..training import TrainingProcess, check_distribution
from ..widgets.charts import MetricsCharts

# (field, label, default) — defaults are the engine's, except a short demo-sized run length.
FIELDS = [("iters", "steps", "100"), ("batch_size", "batch size", "4"), ("grad_accum", "grad accum", "1"),
          ("learning_rate", "learning rate", "1e-5"), ("beta", "beta", "0.1"), ("lora_rank", "LoRA rank", "8"),
          ("max_length", "max length", "1024"), ("eval_every", "eval every", ""), ("save_every", "save every", "100"),
          ("seed", "seed", "0")]


@dataclass
class TrainSettings:
    """The Train form's figures that other tabs need (token limits, the memory estimate)."""

    batch_size: int = 4  # the global batch, over all processes
    max_length: int = 1024
    lora_rank: int = 8
    processes: int = 1


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


class TrainPane(VerticalScroll):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.process: TrainingProcess | None = None
        self.total_steps = 0
        self.started = 0.0
        self.first_step: tuple[int, float] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Run dir", classes="field-label")
            yield Input(self.default_output(), id="train-output")
        with Horizontal(classes="row buttons"):
            yield Button("Start", id="train-start", variant="success")
            yield Button("Stop", id="train-stop", variant="error", disabled=True)
            yield Button("Resume", id="train-resume", disabled=True)
        with Vertical(id="train-progress-box"):
            yield ProgressBar(total=1, id="train-progress", show_eta=False)  # determinate until a run starts
            yield Static("idle", id="train-status", markup=False)
            yield Static("", id="train-ranks", markup=False)
        defaults = self.field_defaults()
        with Collapsible(title="Hyper-parameters", id="train-settings", collapsed=False):
            with Grid(id="train-form"):
                for name, label, _ in FIELDS:
                    yield Label(label, classes="form-label")
                    yield Input(defaults[name], id=f"train-{name}", classes="form-input",
                                placeholder="10 per run" if name == "eval_every" else "")
                yield Label("loss", classes="form-label")
                yield Select([(l, l) for l in LOSSES], value="sigmoid", allow_blank=False, id="train-loss")
                yield Label("processes", classes="form-label")
                yield Input("1", id="train-processes", classes="form-input")
            with Horizontal(id="train-hosts-row"):
                yield Label("hosts file", classes="form-label")
                yield Input(id="train-hostfile", placeholder="optional: mlx.launch JSON hostfile")
        yield MetricsCharts(id="train-charts")
        yield RichLog(id="train-log", max_lines=2000, wrap=True)

    def field_defaults(self) -> dict:
        """The engine's defaults, or the demo's settings when the model is the bundled demo model."""
        values = {name: default for name, _, default in FIELDS}
        if is_demo_model(self.app.model):
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

    # ------------------------------------------------------------------ form
    def form_flags(self) -> dict:
        flags: dict = {"model": self.app.model, "data": self.app.data_path,
                       "output": self.query_one("#train-output", Input).value.strip(),
                       "loss": self.query_one("#train-loss", Select).value}
        if self.app.valid_path:
            flags["valid_data"] = self.app.valid_path
        if self.app.quantize:
            flags["quantize"] = self.app.quantize
        for name, label, _ in FIELDS:
            raw = self.query_one(f"#train-{name}", Input).value.strip()
            if not raw:
                continue
            try:
                flags[name] = float(raw) if name in ("learning_rate", "beta") else int(raw)
            except ValueError:
                raise UsageError(f"{label}: expected a number, got {raw!r}") from None
        return flags

    def args_for(self, flags: dict, resume: bool = False) -> list[str]:
        args = []
        for k, v in flags.items():
            if v is not None:
                args += ["--" + k.replace("_", "-"), str(v)]
        return args + (["--resume"] if resume else [])

    @on(Button.Pressed, "#train-start")
    def start(self) -> None:
        try:
            flags = self.form_flags()
            for key, what in (("model", "a model on the Model tab"), ("data", "a pairs file on the Data tab"),
                              ("output", "a run dir")):
                if not flags.get(key):
                    raise UsageError(f"choose {what} first")
            cfg = build_config({}, flags)  # the engine's own validation, before a process is started
            processes, hostfile = self.distribution(cfg.batch_size)
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        self.launch(flags["output"], self.args_for(flags), flags.get("iters", 0), processes=processes,
                    hostfile=hostfile)

    def distribution(self, batch_size: int) -> tuple[int, str | None]:
        """(processes, hostfile) from the form, checked against the global batch size."""
        return check_distribution(self.query_one("#train-processes", Input).value,
                                  self.query_one("#train-hostfile", Input).value, batch_size)

    @on(Button.Pressed, "#train-resume")
    def _resume_pressed(self) -> None:
        self.resume(self.query_one("#train-output", Input).value.strip())

    def resume(self, run: str) -> None:
        info = read_run(run)
        if not info.checkpoints:
            self.app.notify(f"{run}: no checkpoint to resume", severity="error")
            return
        self.query_one("#train-output", Input).value = run
        self.show_config(info.config)
        if info.finished:
            self.app.notify(f"{run} already finished ({info.last_step} steps); start a new run instead")
            return
        try:
            processes, hostfile = self.distribution(int(info.config.get("batch_size") or 1))
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        # No rows passed on: the metrics follower reads the run's file from the start.
        self.launch(run, ["--output", run, "--resume"], info.config.get("iters") or 0, resume=True,
                    processes=processes, hostfile=hostfile)

    def show_config(self, config: dict) -> None:
        """Fill the form with a run's saved settings (what a resumed run will use)."""
        for name, _, _ in FIELDS:
            if config.get(name) is not None:
                self.query_one(f"#train-{name}", Input).value = str(config[name])
        if config.get("loss") in LOSSES:
            self.query_one("#train-loss", Select).value = config["loss"]

    @on(Button.Pressed, "#train-stop")
    def stop(self) -> None:
        if self.process and self.process.running:
            self.process.stop()
            self.query_one("#train-status", Static).update("stopping after this step (saving a checkpoint) …")

    def launch(self, run_dir: str, args: list[str], total: int, resume: bool = False, processes: int = 1,
               hostfile: str | None = None) -> None:
        """Start the trainer on `run_dir`; `total` is the form's step count until the trainer says its own."""
        if self.process and self.process.running:
            self.app.notify("a training run is already going", severity="warning")
            return
        if not resume and (Path(run_dir) / "config.yaml").exists():
            self.app.notify(f"{run_dir} already holds a run: press Resume to continue it, or change the run dir",
                            severity="error", timeout=8)
            return
        self.total_steps = int(total or 0)
        self.started, self.first_step = time.monotonic(), None
        self.app.run_dir = run_dir
        self.query_one(MetricsCharts).reset()  # a resumed run's earlier rows come from its metrics file
        self.query_one("#train-log", RichLog).clear()
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps or None, progress=0)
        self.process = TrainingProcess(self, run_dir, args, processes, hostfile)
        ranks = self.query_one("#train-ranks", Static)
        ranks.update("")
        ranks.display = False  # shown once a data-parallel run reports per-rank figures
        self.set_running(True)
        self.query_one("#train-status", Static).update("starting: loading the model and computing reference log-probs …")
        self.run_process()

    @work(exclusive=True, group="training")
    async def run_process(self) -> None:
        await self.process.run()  # an async worker: the subprocess needs no thread (and no MLX here)

    def set_running(self, running: bool) -> None:
        self.query_one("#train-start", Button).disabled = running
        self.query_one("#train-resume", Button).disabled = running
        self.query_one("#train-stop", Button).disabled = not running
        self.query_one("#train-output", Input).disabled = running
        for widget in self.query("#train-settings Input, #train-settings Select"):
            widget.disabled = running  # edits would not reach a running process
        self.query_one("#train-settings", Collapsible).collapsed = running  # make room for the charts
        self.app.training_running = running
        (self.query_one("#train-stop" if running else "#train-start", Button)).focus()

    # ------------------------------------------------------------------ process events
    def on_training_log(self, message: TrainingLog) -> None:
        self.query_one("#train-log", RichLog).write(message.line)

    def starting(self) -> bool:
        """Before the first step is reported and no stop was asked for: the status line says what the run does."""
        return self.first_step is None and not (self.process and self.process.stop_sent)

    def on_training_phase(self, message: TrainingPhase) -> None:
        if self.starting():
            text = message.text if message.phase == "train" else f"starting: {message.text}"
            self.query_one("#train-status", Static).update(f"{text} …")

    def on_training_task(self, message: TrainingTask) -> None:
        if self.starting():  # tokenizing, the reference pass (an eval during training keeps the step line)
            self.query_one("#train-status", Static).update(
                f"starting: {message.label} {message.done}/{message.total} …")

    def on_training_started(self, message: TrainingStarted) -> None:
        self.total_steps = message.total_steps
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=message.step)

    def on_training_progress(self, message: TrainingProgress) -> None:
        self.total_steps = message.total_steps
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=message.step)

    def on_training_metrics(self, message: TrainingMetrics) -> None:
        self.query_one(MetricsCharts).add_rows(message.rows)
        train = [r for r in message.rows if "loss" in r]
        if not train:
            return
        last = train[-1]
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (last["step"], now)
        step0, t0 = self.first_step
        rate = (last["step"] - step0) / (now - t0) if now > t0 and last["step"] > step0 else None
        eta = fmt_eta((self.total_steps - last["step"]) / rate) if rate and self.total_steps else "…"
        self.query_one("#train-status", Static).update(
            f"step {last['step']}/{self.total_steps or '?'} · ETA {eta} · {last['tokens_per_second']:.0f} tok/s · "
            f"loss {last['loss']:.4f} · acc {last['rewards/accuracies']:.2f} · margin {last['rewards/margins']:.3f}")
        if line := rank_line(last):
            ranks = self.query_one("#train-ranks", Static)
            ranks.update(line)
            ranks.display = True

    def on_training_ended(self, message: TrainingEnded) -> None:
        if self.app.quit_after_training:
            self.app.exit()
            return
        self.set_running(False)
        self.query_one("#train-status", Static).update(message.message)
        self.query_one("#train-log", RichLog).write(message.message)
        severity = "information" if message.returncode in (0, 130) else "error"
        self.app.notify(message.message, severity=severity, timeout=10)
        self.query_one("#train-resume", Button).disabled = message.returncode == 0
        if message.returncode == 130:
            self.query_one("#train-resume", Button).focus()
        if message.returncode == 0:
            self.query_one("#train-output", Input).value = self.default_output()  # ready for the next run
        self.app.refresh_runs()
