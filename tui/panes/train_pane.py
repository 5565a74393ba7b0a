"""Train: Start / Stop / Resume of a run (or an iteration) with the settings form and the run's views.

The form (train_form.py) holds the settings, their checks, the YAML config and the command line; the
monitor (run_monitor.py) shows the run: progress with ETA, live curves, samples, rounds, the log. This pane
coordinates them: it starts, stops and resumes the child process (training.py), receives its messages
(it is their `target`) and hands each to the monitor, and keeps the link to Chat and the app's notices.

Processes / hosts file run the trainer data-parallel under mlx.launch (see training.py).

Safety: Start never hands the focus to Stop (a habitual second Enter must not stop the run); while a
run goes the focus rests on the progress line, and Stop is a click or its key (ctrl+b).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.widgets import Button, Input, Label, Select

from mlx_dpo import TrainConfig, UsageError, is_iteration, read_rounds, read_run

from ..confirm import BadRows, PathPrompt, TooBig
from ..messages import (IterationRound, TrainingEnded, TrainingLog, TrainingMetrics, TrainingPhase, TrainingProgress,
                        TrainingSamples, TrainingStarted, TrainingTask, TrainingWarning)
from ..training import TrainingProcess
from .iterate_form import flag_args, iteration_settings, resume_args, rounds_done
from .run_monitor import EtaClock, ProgressBox, RunMonitor  # noqa: F401  (EtaClock: tests import it from here)
from .train_form import TrainForm, TrainSettings, friendly  # noqa: F401  (TrainSettings: the app's import)


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
        self.launched: dict = {}  # launch()'s arguments of the last run started (started again with --force)
        self.from_chat = False  # the form was prepared from Chat's preference file (its run goes back to Chat)
        self.chat_run: str | None = None  # the run started from such a form

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row buttons", id="train-top"):
            yield Label("Run dir", classes="field-label")
            yield Input(self.default_output(), id="train-output")
            yield Button("Start", id="train-start", variant="success")
            yield Button("Stop", id="train-stop", variant="error", disabled=True)
            yield Button("Resume", id="train-resume", disabled=True)
        yield RunMonitor(TrainForm(id="train-settings"), id="train-monitor")

    def on_mount(self) -> None:
        self.update_resume()

    @property
    def form(self) -> TrainForm:
        return self.query_one(TrainForm)

    @property
    def monitor(self) -> RunMonitor:
        return self.query_one(RunMonitor)

    @property
    def run_dir_input(self) -> Input:
        return self.query_one("#train-output", Input)

    @property
    def output(self) -> str:
        return self.run_dir_input.value.strip()

    # ------------------------------------------------------------------ train or iterate
    @property
    def mode(self) -> str:
        try:
            return self.form.mode
        except NoMatches:
            return "train"

    def set_mode(self, mode: str) -> None:
        self.form.set_mode(mode)
        self.set_class(mode == "iterate", "-iterate")

    @on(Select.Changed, "#train-mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self.set_class(event.value == "iterate", "-iterate")  # the form's and the monitor's iterate-only parts
        if event.value == "iterate":
            self.form.refresh_iterate()
            self.show_rounds()
        self.update_resume()

    def show_rounds(self, reports: list[dict] | None = None) -> None:
        """The round table and charts: the running iteration's reports, else those of the run dir's iteration."""
        if reports is None:
            folder = self.output
            reports = read_rounds(folder) if folder else []
        self.monitor.show_rounds(reports)

    @property
    def stage(self) -> str:
        return self.monitor.stage

    def settings(self) -> TrainSettings:
        """The form's figures for the other tabs (their defaults before the form is built)."""
        try:
            return self.form.settings()
        except NoMatches:
            return TrainSettings()

    def default_output(self) -> str:
        return str(Path(self.app.runs_root) / datetime.now().strftime("run-%Y%m%d-%H%M%S"))

    @property
    def running(self) -> bool:
        return bool(self.process and self.process.running)

    @property
    def iterating(self) -> bool:
        return bool(self.process and self.process.iterate)

    # ------------------------------------------------------------------ keys and focus
    def focus_first(self) -> None:
        """Start when it can start; while a run goes, the progress line (never Stop: Enter would stop the run)."""
        start = self.query_one("#train-start", Button)
        self.app.focus_if_shown(start if not start.disabled else self.monitor.progress_box)

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
        self.form.collapsed = False
        self.form.focus_mode()

    # ------------------------------------------------------------------ the form (train_form.py) with the run dir
    def form_flags(self) -> dict:
        return self.form.flags(self.output)

    def args_for(self, flags: dict, resume: bool = False) -> list[str]:
        return self.form.args_for(flags, resume)

    def checked_flags(self) -> dict:
        """The form as flags, checked by the engine's own validation; a UsageError names the field by its
        label and focuses it."""
        try:
            return self.form.checked_flags(self.output)
        except UsageError as e:
            self.mark_invalid(e.key)
            raise

    def iterate_flags(self) -> dict:
        """`mlx-dpo iterate`'s flags (see TrainForm.iterate_flags); a UsageError focuses its field."""
        try:
            return self.form.iterate_flags(self.output)
        except UsageError as e:
            self.mark_invalid(e.key)
            raise

    def distribution(self, batch_size: int) -> tuple[int, str | None]:
        """(processes, hostfile) from the form, checked against the global batch size."""
        try:
            return self.form.distribution(batch_size)
        except UsageError as e:
            self.mark_invalid(e.key or "processes")
            raise

    def mark_invalid(self, key: str | None) -> None:
        """Mark the field `key` (the run dir, or one of the form's) and focus it, the form opened."""
        for widget in self.query(".-invalid-field"):
            widget.remove_class("-invalid-field")
        try:
            widget = self.query_one(f"#train-{key}") if key else None
        except NoMatches:
            widget = None
        if widget is None:
            return
        widget.add_class("-invalid-field")
        self.form.collapsed = False
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

    def show_config(self, config: dict) -> None:
        """Fill the form with a run's saved settings (what a resumed run will use)."""
        self.form.show_config(config)

    def update_resume(self) -> None:
        """Resume is possible when the run dir holds an unfinished run with a checkpoint."""
        run = self.output
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
        return rounds_done(folder) < max(int(saved.get("rounds") or 1), self.form.rounds_wanted())

    # ------------------------------------------------------------------ start, resume, continue
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
        wanted = self.form.rounds_wanted() if self.mode == "iterate" else 0
        try:
            args, first = resume_args(folder, wanted)
        except UsageError as e:
            self.app.notify(str(e), severity="error", timeout=8)
            return
        saved = iteration_settings(folder)
        self.set_mode("iterate")
        self.run_dir_input.value = folder
        self.form.show_iteration(saved)
        self.launch(folder, args, (saved.get("train") or {}).get("iters") or 0, resume=True, iterate=True,
                    first_round=first)

    @on(Button.Pressed, "#train-resume")
    def _resume_pressed(self) -> None:
        self.resume(self.output)

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
        self.run_dir_input.value = run
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
        self.form.set_adapter(str(run))
        self.run_dir_input.value = self.fresh_output(f"{Path(run).name}-cont")
        self.form.collapsed = False
        lead = f"{why}: " if why else ""
        self.app.notify(f"{lead}the form now holds a new run that continues from its adapter — ctrl+s starts it",
                        timeout=10)
        self.focus_first()

    def prepare_from_chat(self, data: str, adapter: str | None, loss: str | None = None) -> None:
        """Fill the form for a run on Chat's preference file that continues from the adapter chatted with
        (`loss` "kto" for a file of thumbs, which are unpaired rows)."""
        self.set_mode("train")
        self.form.prepare_from_chat(adapter, loss)
        self.run_dir_input.value = self.fresh_output(f"chat-{datetime.now():%Y%m%d-%H%M%S}")
        self.form.collapsed = False
        self.from_chat = True
        if adapter:
            note = (f"a new run on {data} that continues from {adapter}: the reference is then base + that "
                    "adapter; to start from (and compare against) the base model instead, clear \"from adapter\"")
        else:
            note = f"a new run on {data} from the base model (the chat had no adapter)"
        note += (f"; steps left empty: as many epochs as make {TrainConfig.min_steps} steps, so a few picks move the "
                 "model — ctrl+s starts it")
        self.monitor.log(note)
        self.app.notify(note, timeout=15)
        self.focus_first()

    def fresh_output(self, name: str) -> str:
        base = Path(self.app.runs_root) / name
        candidate, n = base, 2
        while candidate.exists():
            candidate, n = Path(f"{base}-{n}"), n + 1
        return str(candidate)

    @on(Button.Pressed, "#train-stop")
    def stop(self) -> None:
        if self.running:
            self.process.stop()
            self.monitor.stopping()

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
        self.launched = {"run_dir": run_dir, "args": args, "total": total, "resume": resume, "processes": processes,
                         "hostfile": hostfile, "iterate": iterate, "first_round": first_round}
        if not iterate:
            self.app.run_dir = run_dir  # an iteration's folder is no run: each round's adapter becomes it
        self.process = TrainingProcess(self, run_dir, args, processes, hostfile, iterate=iterate,
                                       first_round=first_round)
        self.monitor.begin(self.process, total)
        # A run on Chat's picks: when it finishes, Chat offers its adapter.
        self.chat_run, self.from_chat = (run_dir if self.from_chat and not resume else None), False
        self.set_running(True)
        self.form.collapsed = True  # room for the charts (stays so)
        self.scroll_home(animate=False, immediate=True)  # the progress line, the rounds and the curves, from wherever the form was
        self.monitor.show_status(
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
        self.run_dir_input.value = fresh = self.default_output()
        if fresh == run_dir:
            fresh = self.run_dir_input.value = self.fresh_output(Path(run_dir).name)
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
            self.app.focus_if_shown(self.monitor.progress_box)
        self.query_one("#train-start", Button).disabled = running
        self.query_one("#train-stop", Button).disabled = not running
        self.run_dir_input.disabled = running
        self.form.set_running(running)
        self.app.training_running = running
        self.update_resume()
        if not running and was_here:
            self.focus_first()

    # ------------------------------------------------------------------ process events: shown by the monitor
    def on_training_log(self, message: TrainingLog) -> None:
        self.monitor.log(message.line)

    def on_training_phase(self, message: TrainingPhase) -> None:
        self.monitor.phase(message)

    def on_training_task(self, message: TrainingTask) -> None:
        self.monitor.task(message)

    def on_iteration_round(self, message: IterationRound) -> None:
        """A round ended: its row in the table and its point on the round charts; its adapter is the app's run."""
        self.monitor.round_ended(message.report)
        adapter = message.report.get("adapter")
        if message.report.get("round", 0) > 0 and adapter and (Path(adapter) / "adapters.safetensors").exists():
            self.app.run_dir = str(adapter)
        self.app.refresh_runs()

    def on_training_started(self, message: TrainingStarted) -> None:
        self.monitor.started(message)
        self.app.refresh_runs()

    def on_training_progress(self, message: TrainingProgress) -> None:
        self.monitor.progress(message.step, message.total_steps)

    def on_training_samples(self, message: TrainingSamples) -> None:
        self.monitor.samples(message.step, message.samples)

    def on_training_warning(self, message: TrainingWarning) -> None:
        self.monitor.warning(message.kind, message.message)
        self.app.notify(f"{message.kind}: {message.message}", severity="warning", timeout=15)

    def on_training_metrics(self, message: TrainingMetrics) -> None:
        self.monitor.metrics(message.rows)
        if self.app.is_shown(self.app.query_one("#pane-runs")):
            self.app.refresh_runs()  # the live run's steps and loss on Runs

    def on_training_ended(self, message: TrainingEnded) -> None:
        if self.app.quit_after_training:
            self.app.exit()
            return
        chat_run, self.chat_run = self.chat_run, None
        if message.returncode == 0:
            if chat_run:
                self.app.training_finished(chat_run, True)
            self.monitor.fill_bar()
            if not self.iterating:  # an iteration's folder stays: raising rounds and Resume adds rounds
                self.run_dir_input.value = self.default_output()  # ready for the next run
        elif chat_run:
            self.from_chat = True  # a failed start keeps the link: the retry's adapter still goes to Chat
        self.set_running(False)
        self.monitor.ended(message)
        severity = "information" if message.returncode in (0, 130) else "error"
        self.app.notify(message.message, severity=severity, timeout=10)
        self.app.refresh_runs()
        self.offer_fix_for_bad_rows()
        self.offer_fix_for_memory()

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

    def offer_fix_for_memory(self) -> None:
        """The engine refused the run because its memory estimate exceeds the budget (an error event with the
        key "force" and the estimate in its details): offer the engine's suggested settings (a new run), to
        start it anyway with --force (any run, a resume or an iteration too), or to cancel."""
        events = self.process.error_events if self.process else []
        failed = events[-1] if events else {}
        if failed.get("key") != "force" or self.running or not self.launched:
            return
        estimate = (failed.get("details") or {}).get("memory") or {}
        launched = dict(self.launched)

        def chosen(answer: str | None) -> None:
            if answer == "force":
                self.launch(**{**launched, "args": [*launched["args"], "--force"]})
            elif answer == "suggested":
                named = " ".join(self.form.use_settings(estimate["suggestions"][0]["settings"]))
                self.monitor.log(f"settings from the memory estimate: {named}")
                self.app.notify(f"the form now uses {named} (settings that fit); starting again", timeout=10)
                self.start()

        self.app.push_screen(TooBig(estimate, not launched["resume"] and not launched["iterate"]), chosen)

    # ------------------------------------------------------------------ config file and command
    def action_show_command(self) -> None:
        """The `mlx-dpo train …` line this form would run (written to the log, and to the clipboard);
        in iterate mode the `mlx-dpo iterate …` line."""
        try:
            line = self.form.command_line(self.output)
        except UsageError as e:
            self.app.notify(friendly(e)[0], severity="error")
            return
        self.monitor.log(line)
        self.app.copy_to_clipboard(line)
        self.app.notify(f"{line}\n(in the log below, and copied)", timeout=15)

    def action_save_config(self) -> None:
        self.app.push_screen(PathPrompt("Save the Train form as a YAML config (for mlx-dpo train --config):",
                                        self.form.config_default(), "Save"), self.form.save_config)

    def action_load_config(self) -> None:
        self.app.push_screen(PathPrompt("Fill the Train form from a YAML config:", self.form.config_default(), "Open"),
                             self.load_config)

    def load_config(self, path: str | None) -> None:
        """Fill the form (and the app's model and data) from a YAML config; a run dir it names becomes the run dir."""
        if not path:
            return
        values = self.form.load_config(path)
        if values is None:
            return
        if values.get("output"):
            self.run_dir_input.value = str(values["output"])
        self.app.notify(f"loaded {path}")
