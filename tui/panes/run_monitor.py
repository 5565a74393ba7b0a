"""The Train tab's view of a run: the progress bar and its status line (with an ETA), the per-rank figures,
iterate mode's round stages, table and charts, the live curves, the trainer's sample answers and the log.

It only shows: TrainPane receives the TrainingProcess's messages (their `target`) and hands each to the
method here that shows it, keeping what the app does about them (the Chat link, notifications, Runs).
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import ProgressBar, RichLog, Static

from ..messages import TrainingEnded, TrainingPhase, TrainingStarted, TrainingTask
from ..training import TrainingProcess
from ..widgets.charts import MetricsCharts, RoundCharts
from ..widgets.rounds import RoundsTable
from ..widgets.samples import SamplesPanel

ETA_SMOOTHING = 0.3  # weight of the newest seconds-per-step figure in the ETA's moving average
# Iterate mode: the stages of a round, and the stage each reported phase belongs to.
STAGES = ("generate", "judge", "train", "evaluate")
STAGE_OF = {"generate": "generate", "judge": "judge", "load": "train", "data": "train", "reference": "train",
            "train": "train", "evaluate": "evaluate"}


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


class RunMonitor(Vertical):
    """The run's views. They sit around the settings form, as the tab has always shown them (the progress
    above it, the curves and log below), so the form is handed in and placed between them."""

    def __init__(self, between: Widget, **kw):
        super().__init__(**kw)
        self.between = between
        self.process: TrainingProcess | None = None  # the run shown (TrainPane's)
        self.total_steps = 0
        self.first_step: tuple[int, float] | None = None
        self.clock = EtaClock()
        self.last_row: dict | None = None  # the last training metrics row of the current run
        self.in_loop = False  # iterate mode: a round's training loop is going (else a stage before or after it)
        self.stage = ""  # iterate mode: the stage of the round now (generate, judge, train, evaluate)

    def compose(self) -> ComposeResult:
        with ProgressBox(id="train-progress-box"):
            yield ProgressBar(total=1, id="train-progress", show_eta=False)  # determinate until a run starts
            yield Static("idle", id="train-status", markup=False)
            yield Static("", id="train-ranks", markup=False)
            yield Static("", id="train-stage", classes="iterate-only")
        yield RoundsTable(id="train-round-table", classes="iterate-only")
        yield self.between
        yield MetricsCharts(id="train-charts")
        yield SamplesPanel(id="train-sample-answers")  # not train-samples: iterate's samples field
        yield RoundCharts(id="train-round-charts", classes="iterate-only")
        yield RichLog(id="train-log", max_lines=2000, wrap=True)

    def on_mount(self) -> None:
        self.query_one("#train-log", RichLog).border_title = "log"
        self.query_one("#train-round-table", RoundsTable).border_title = "rounds"

    @property
    def progress_box(self) -> ProgressBox:
        return self.query_one(ProgressBox)

    @property
    def running(self) -> bool:
        return bool(self.process and self.process.running)

    @property
    def iterating(self) -> bool:
        return bool(self.process and self.process.iterate)

    def show_status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(text)

    def log(self, line) -> None:
        self.query_one("#train-log", RichLog).write(line)

    # ------------------------------------------------------------------ a run begins
    def begin(self, process: TrainingProcess, total: int) -> None:
        """Fresh views for `process`; `total` is the form's step count until the trainer says its own."""
        self.process = process
        self.total_steps = int(total or 0)
        self.first_step, self.clock, self.last_row = None, EtaClock(), None
        self.in_loop, self.stage = False, ""
        self.query_one(MetricsCharts).reset()  # fresh axes; a resumed run's earlier rows come from its file
        self.query_one(SamplesPanel).reset()
        self.query_one("#train-log", RichLog).clear()
        self.query_one("#train-progress", ProgressBar).update(total=None, progress=0)
        if process.iterate:
            self.show_rounds(process.rounds)
        ranks = self.query_one("#train-ranks", Static)
        ranks.update("")
        ranks.display = False  # shown once a data-parallel run reports per-rank figures

    # ------------------------------------------------------------------ iterate mode
    def show_rounds(self, reports: list[dict]) -> None:
        """The round table and charts of these round reports."""
        self.query_one(RoundsTable).show(reports)
        self.query_one(RoundCharts).reset(reports)
        self.show_stage()

    def show_stage(self) -> None:
        """Iterate mode: "round 2/3 · generate › judge › train › evaluate", the current stage highlighted."""
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

    def round_ended(self, report: dict) -> None:
        """A round's row in the table and its point on the round charts."""
        self.show_rounds(self.process.rounds if self.process else [report])

    # ------------------------------------------------------------------ the trainer's events
    def starting(self) -> bool:
        """Before the first step is reported and no stop was asked for: the status line says what the run does.
        An iteration: outside a round's training loop (generating, judging, loading, evaluating)."""
        if self.process and self.process.stop_sent:
            return False
        return not self.in_loop if self.iterating else self.first_step is None

    def phase(self, message: TrainingPhase) -> None:
        if self.iterating:
            self.in_loop = False  # a phase is a stage of the round, or the round's trainer getting ready
            self.stage = STAGE_OF.get(message.phase, self.stage)
            self.show_stage()
        if self.starting():
            text = message.text if message.phase == "train" or self.iterating else f"starting: {message.text}"
            self.show_status(f"{text} …")

    def task(self, message: TrainingTask) -> None:
        if self.starting():  # tokenizing, the reference pass (an eval during training keeps the step line)
            self.query_one("#train-progress", ProgressBar).update(total=max(1, message.total), progress=message.done)
            lead = "" if self.iterating else "starting: "
            self.show_status(f"{lead}{message.label} {message.done}/{message.total} …")

    def started(self, message: TrainingStarted) -> None:
        if self.iterating:  # a round's training: its own curves, from its first step (or its checkpoint)
            self.in_loop = True
            self.first_step, self.clock, self.last_row = None, EtaClock(), None
            self.query_one(MetricsCharts).reset()
            self.show_stage()
        self.progress(message.step, message.total_steps)

    def progress(self, step: int, total_steps: int) -> None:
        self.total_steps = total_steps
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=step)
        self.update_status()

    def samples(self, step: int, samples: list) -> None:
        self.query_one(SamplesPanel).show_samples(step, samples)

    def warning(self, kind: str, message: str) -> None:
        self.query_one(SamplesPanel).show_warning(kind, message)

    def metrics(self, rows: list[dict]) -> None:
        self.query_one(MetricsCharts).add_rows(rows)
        train = [r for r in rows if "loss" in r]
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
        self.show_status(
            f"step {last['step']}/{self.total_steps or '?'} · {when} · {last['tokens_per_second']:.0f} tok/s · "
            f"loss {last['loss']:.4f} · acc {last['rewards/accuracies']:.2f} · margin {last['rewards/margins']:.3f}")

    def stopping(self) -> None:
        self.show_status("stopping after this step (saving a checkpoint) …")

    def ended(self, message: TrainingEnded) -> None:
        self.show_stage()
        self.show_status(message.message)
        self.log(message.message)

    def fill_bar(self) -> None:
        """A failed run's bar as done: "done" comes without a last progress event."""
        bar = self.query_one("#train-progress", ProgressBar)
        bar.update(progress=bar.total or 1, total=bar.total or 1)
