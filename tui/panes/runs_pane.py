"""Runs: past runs with their config and final metrics; view curves, overlay two, resume, continue from
one's adapter, evaluate it on held-out pairs, chat, export, delete. The list refreshes itself (on the
trainer's events, and every few seconds while the tab is shown, for runs started elsewhere). The rounds
of an iteration (`mlx-dpo iterate`) are runs named ITERATION/round_N; showing one also shows the
iteration's round reports. A run's compare results (RUN_DIR/compare-*.jsonl: `mlx-dpo compare`, or the
blind compare here, key b) are shown with it; where several runs were compared against the base, they
are ranked (Bradley–Terry, Elo points with 95% intervals) below the list."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from mlx_dpo import (COMPARE_BASE, RunInfo, compare_files, is_iteration, list_runs, rank_run_dirs, read_compare,
                     read_rounds, read_run, read_verdicts)

from ..confirm import Confirm
from ..messages import EvalDone, EvalProgress, JobFailed
from ..screens.blind_compare import BlindCompare, result_line
from ..widgets.charts import MetricsCharts
from ..widgets.rounds import RoundsTable

HELP = ("Enter shows a run's curves · o overlays the highlighted run on the shown one · r resumes · "
        "n starts a new run from its adapter · v evaluates it on held-out pairs · b compares it blind with the "
        "base · c chats · e exports · d deletes · ? all keys")
EVAL_METRICS = (("loss", "loss", 4), ("rewards/accuracies", "accuracy", 2), ("rewards/margins", "margin", 3),
                ("rewards/chosen", "chosen", 3), ("rewards/rejected", "rejected", 3))
# What a run did comes first (an 80-column terminal shows up to the held-out accuracy), how it was set up after.
COLUMNS = ("run", "status", "steps", "loss", "acc", "eval acc", "loss kind", "β", "lr", "started", "duration",
           "model", "data")
AUTO_REFRESH_SECONDS = 3.0
BLIND_PROMPTS = 12  # held-out prompts a person judges in the app's blind compare (a few minutes of reading)


def _num(v, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, float) else ("" if v is None else str(v))


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run_times(info: RunInfo) -> tuple[str, str]:
    """(started, duration) from the run dir's files: config.yaml is written at the start, metrics.jsonl
    after each logged step."""
    try:
        start = (info.path / "config.yaml").stat().st_mtime
    except OSError:
        return "", ""
    try:
        end = (info.path / "metrics.jsonl").stat().st_mtime
    except OSError:
        end = start
    return datetime.fromtimestamp(start).strftime("%m-%d %H:%M"), fmt_duration(end - start)


def run_row(info: RunInfo, live: bool) -> tuple[str, ...]:
    s, c = info.summary(), info.config
    started, duration = run_times(info)
    lr = c.get("learning_rate")
    total = c.get("iters")
    status = s["status"]
    if live:  # after its last step a run still evaluates and saves before it is finished
        status = "evaluating, saving" if total and info.last_step >= total else "training"
    steps = f"{info.last_step}/{total}" if total else str(info.last_step)
    return (s["run"], status, steps, _num(s["loss"]), _num(s["accuracy"], 2), _num(s["eval_accuracy"], 2),
            str(c.get("loss", "")), _num(c.get("beta"), 3), f"{lr:g}" if isinstance(lr, (int, float)) else "",
            started, duration, s["model"], s["data"])


class RunsPane(VerticalScroll):
    can_focus = False
    KEYS_EXTRA = [("enter", "show the highlighted run's curves"), ("↑ ↓", "highlight a run")]
    BINDINGS = [Binding("o", "overlay", "Overlay"), Binding("r", "resume", "Resume"),
                Binding("n", "continue", "New from it"),
                Binding("v", "evaluate", "Evaluate", tooltip="Evaluate the highlighted run's adapter on held-out pairs"),
                # Not in the footer: at 80 columns it has no room left (it would cut "? Keys"); the help line
                # above the list, the ? screen and the palette name it.
                Binding("b", "blind_compare", "Blind compare", show=False,
                        tooltip="Compare the highlighted run's answers with the base's, blind: you judge held-out prompts"),
                Binding("c", "chat", "Chat", show=False),
                Binding("e", "export", "Export", show=False), Binding("d", "delete", "Delete"),
                Binding("ctrl+r", "refresh", "Refresh", show=False)]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.paths: list[str] = []
        self.shown: str | None = None
        self.evaluating: str | None = None  # the run the engine evaluates now
        self.compared: tuple = ()  # the compare files (and their sizes) the ranking was made from

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(HELP, id="runs-help", markup=False)
        yield Static("", id="runs-ranking", markup=False)
        yield Static("", id="runs-eval", markup=False)
        yield Static("", id="runs-compare", markup=False)
        yield RoundsTable(id="runs-rounds")
        yield MetricsCharts(id="runs-charts")

    def on_mount(self) -> None:
        self.query_one("#runs-table", DataTable).add_columns(*COLUMNS)
        for wid in ("#runs-eval", "#runs-compare", "#runs-ranking"):
            self.query_one(wid).display = False
        self.query_one(RoundsTable).display = False
        self.action_refresh()
        self.set_interval(AUTO_REFRESH_SECONDS, self.auto_refresh)

    def focus_first(self) -> None:
        self.app.focus_if_shown(self.query_one("#runs-table"))

    def auto_refresh(self) -> None:
        if self.app.is_shown(self) and self.app.screen is self.app.screen_stack[0]:
            self.action_refresh()

    def live_run(self) -> str | None:
        train = self.app.query_one("#pane-train")
        return str(train.process.live_dir) if train.running else None

    def action_refresh(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        keep = self.highlighted()
        runs = list_runs(self.app.runs_root)
        live = self.live_run()
        table.clear()
        self.paths = [str(r.path) for r in runs]
        for r in runs:
            table.add_row(*run_row(r, live is not None and Path(live) == r.path))
        if keep in self.paths:
            table.move_cursor(row=self.paths.index(keep), animate=False)
        if not runs:
            self.query_one("#runs-help", Static).update(f"No runs yet in {self.app.runs_root}/ — start one on Train (F3).")
        elif self.shown is None:
            self.query_one("#runs-help", Static).update(HELP)
        self.show_ranking(runs)

    def highlighted(self) -> str | None:
        row = self.query_one("#runs-table", DataTable).cursor_row
        return self.paths[row] if 0 <= row < len(self.paths) else None

    def select(self, path: str) -> None:
        """Highlight `path` and show its curves (the palette's "Open run")."""
        self.action_refresh()
        paths = [str(Path(p)) for p in self.paths]
        if str(Path(path)) in paths:
            self.query_one("#runs-table", DataTable).move_cursor(row=paths.index(str(Path(path))), animate=False)
            self.show()

    @on(DataTable.RowSelected, "#runs-table")
    def show(self) -> None:
        path = self.highlighted()
        if path:
            info = read_run(path)
            self.shown = path
            self.app.run_dir = path
            self.query_one(MetricsCharts).reset(info.train + info.evals)
            self.query_one("#runs-help", Static).update(f"{info.name}: {info.config.get('loss', '?')} loss, "
                                                        f"beta {info.config.get('beta', '?')}, "
                                                        f"lr {info.config.get('learning_rate', '?')}, "
                                                        f"{info.last_step} steps, checkpoints {info.checkpoints}")
            self.show_rounds(info)
            self.show_compare(path)

    def show_rounds(self, info: RunInfo) -> None:
        """A round of an iteration: the iteration's round reports under the run's line."""
        rounds = self.query_one(RoundsTable)
        iteration = info.path.parent
        if is_iteration(iteration):
            rounds.border_title = f"rounds of {iteration.name} (this is {info.path.name})"
            rounds.show(read_rounds(iteration))
            rounds.display = True
        else:
            rounds.display = False

    # ------------------------------------------------------------------ compare results
    def show_compare(self, path: str) -> None:
        """The shown run's compare results, one line per compare-*.jsonl (the engine recomputes each)."""
        lines = []
        for f in compare_files(path):
            r = read_compare(f)
            if r["n"]:
                against = "the base" if r["b"] == COMPARE_BASE else Path(r["b"]).name
                lines.append(f"vs {against}: {result_line(r)} ({f.name})")
        box = self.query_one("#runs-compare", Static)
        box.update(f"compared ({read_run(path).name}):\n" + "\n".join(lines) if lines else "")
        box.display = bool(lines)

    def show_ranking(self, runs: list[RunInfo]) -> None:
        """Runs compared against the base, ranked by a Bradley–Terry fit of all their verdicts (two or more)."""
        files = tuple((str(f), f.stat().st_size) for r in runs for f in compare_files(r.path))
        if files == self.compared:
            return  # nothing new: refreshing every few seconds must not re-fit
        self.compared = files
        dirs = [r.path for r in runs
                if any(any(COMPARE_BASE in (v["a"], v["b"]) for v in read_verdicts(f)) for f in compare_files(r.path))]
        box = self.query_one("#runs-ranking", Static)
        box.display = len(dirs) >= 2
        if len(dirs) < 2:
            return
        names = {str(r.path.resolve()): r.name for r in runs}
        lines = [f"{i}. {names.get(e['name'], e['name'])}: {e['rating']:+.0f} Elo "
                 f"(95% {e['ci95'][0]:+.0f} to {e['ci95'][1]:+.0f}) · {e['wins']}W {e['ties']}T {e['losses']}L"
                 for i, e in enumerate(rank_run_dirs(dirs), 1)]
        box.update("ranking against the base (Bradley–Terry over all compare verdicts):\n" + "\n".join(lines))

    def action_blind_compare(self) -> None:
        """Open the blind compare on the highlighted run: its answers against the base's, on held-out prompts."""
        path = self.highlighted()
        if not path:
            self.app.notify("no run to compare: highlight one", severity="warning")
            return
        info = read_run(path)
        if not (info.path / "adapters.safetensors").exists():
            self.app.notify(f"{info.name} has no adapter yet (adapters.safetensors): nothing to compare",
                            severity="error")
            return
        prompts = self.eval_data(info)
        if not prompts:
            self.app.notify(f"{info.name}: no held-out prompts to compare on — its config has no valid_data and the "
                            "Data tab has no held-out file (open one there, F1, or train with one)",
                            severity="error", timeout=10)
            return
        screen = BlindCompare(info.name, prompts)
        # The base the run trained on (config.yaml); the app's model only for a run that names none.
        options = {"adapter": path, "prompts": prompts, "limit": BLIND_PROMPTS,
                   "model": None if info.config.get("model") else self.app.model}
        self.app.push_screen(screen, lambda result: self.compare_done(path, result))
        self.app.engine.prepare_compare(screen, options)

    def compare_done(self, path: str, result: dict | None) -> None:
        if result is None:
            return
        self.app.notify(f"blind compare of {Path(path).name}: {result_line(result)}", timeout=10)
        self.action_refresh()
        if self.shown == path:
            self.show_compare(path)

    # ------------------------------------------------------------------ evaluate
    def eval_data(self, info: RunInfo) -> str | None:
        """The held-out pairs to evaluate on: the run's own valid_data, else the Data tab's held-out file."""
        return info.config.get("valid_data") or self.app.valid_path

    def action_evaluate(self) -> None:
        path = self.highlighted()
        if not path:
            self.app.notify("no run to evaluate: highlight one", severity="warning")
            return
        if self.evaluating:
            self.app.notify(f"already evaluating {Path(self.evaluating).name}", severity="warning")
            return
        info = read_run(path)
        if not (info.path / "adapters.safetensors").exists():
            self.app.notify(f"{info.name} has no adapter yet (adapters.safetensors): nothing to evaluate",
                            severity="error")
            return
        data = self.eval_data(info)
        if not data:
            self.app.notify(f"{info.name}: no held-out pairs to evaluate on — its config has no valid_data and the "
                            "Data tab has no held-out file (open one there, F1)", severity="error", timeout=10)
            return
        self.evaluating = path
        self.say_eval(f"evaluating {info.name} on {data} …")
        self.app.engine.evaluate_run(self, path, data, self.app.model)

    def say_eval(self, text: str) -> None:
        line = self.query_one("#runs-eval", Static)
        line.update(text)
        line.display = True

    def on_eval_progress(self, message: EvalProgress) -> None:
        self.say_eval(f"evaluating {read_run(message.run).name}: {message.text} …")

    def on_eval_done(self, message: EvalDone) -> None:
        self.evaluating = None
        m = message.metrics
        figures = " · ".join(f"{label} {m[key]:.{digits}f}" for key, label, digits in EVAL_METRICS
                             if isinstance(m.get(key), (int, float)))
        name = read_run(message.run).name
        self.say_eval(f"eval of {name} on {message.data}: {figures}")
        self.app.notify(f"evaluated {name}: {figures}", timeout=8)

    def on_job_failed(self, message: JobFailed) -> None:
        if message.job != "eval":
            return
        self.evaluating = None
        self.say_eval(f"evaluation failed: {message.error.splitlines()[0] if message.error else '?'}")
        self.app.notify(f"evaluation failed: {message.error}", severity="error", timeout=10)

    def action_overlay(self) -> None:
        other = self.highlighted()
        if not self.shown or not other or other == self.shown:
            self.app.notify("Show a run with Enter, then highlight another and press o", severity="warning")
            return
        a, b = read_run(self.shown), read_run(other)
        self.query_one(MetricsCharts).reset(a.train + a.evals, overlay=b.train)
        self.query_one("#runs-help", Static).update(f"{a.name} (colour) over {b.name} (grey)")

    def action_resume(self) -> None:
        if path := self.highlighted():
            self.app.resume_run(path)  # a finished run becomes a new run from its adapter, on Train

    def action_continue(self) -> None:
        if path := self.highlighted():
            self.app.continue_from_run(path)

    def action_chat(self) -> None:
        if path := self.highlighted():
            self.app.use_run(path, "chat")

    def action_export(self) -> None:
        if path := self.highlighted():
            self.app.use_run(path, "export")

    def action_delete(self) -> None:
        path = self.highlighted()
        if not path:
            return
        live = self.live_run()
        if live is not None and Path(live) == Path(path):
            self.app.notify("that run is training: stop it on Train first", severity="error")
            return
        question = (f"Delete the run {Path(path).name} and everything in it (adapter, checkpoints, metrics)? "
                    "This cannot be undone.")
        self.app.push_screen(Confirm(question, "Delete it", "Keep it"), lambda yes: self._delete(path, yes))

    def _delete(self, path: str, yes: bool | None) -> None:
        if not yes:
            return
        try:
            shutil.rmtree(path)
        except OSError as e:
            self.app.notify(f"could not delete {path}: {e}", severity="error")
            return
        if self.shown == path:
            self.shown = None
            self.query_one(MetricsCharts).reset()
        if self.app.run_dir == path:
            self.app.run_dir = None
        self.app.notify(f"deleted {path}")
        self.action_refresh()
