"""Runs: past runs with their config and final metrics; view curves, overlay two, resume, chat, export."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from mlx_dpo import list_runs, read_run

from ..widgets.charts import MetricsCharts

HELP = ("Select a run: Enter shows its curves; o overlays the highlighted run on the shown one; "
        "r resumes, c chats, e exports it; ctrl+r refreshes.")
COLUMNS = ("run", "model", "data", "step", "loss", "accuracy", "eval_accuracy", "status")


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


class RunsPane(VerticalScroll):
    BINDINGS = [Binding("o", "overlay", "Overlay"), Binding("r", "resume", "Resume"),
                Binding("c", "chat", "Chat with it"), Binding("e", "export", "Export it"),
                Binding("ctrl+r", "refresh", "Refresh")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.paths: list[str] = []
        self.shown: str | None = None

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(HELP, id="runs-help", markup=False)
        yield MetricsCharts(id="runs-charts")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.action_refresh()

    def action_refresh(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        runs = list_runs(self.app.runs_root)
        self.paths = [str(r.path) for r in runs]
        for r in runs:
            s = r.summary()
            table.add_row(*(_cell(s[c]) for c in COLUMNS))
        self.query_one("#runs-help", Static).update(
            HELP if runs else f"No runs yet in {self.app.runs_root}/ — start one on Train.")

    def highlighted(self) -> str | None:
        row = self.query_one(DataTable).cursor_row
        return self.paths[row] if 0 <= row < len(self.paths) else None

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
            self.app.resume_run(path)

    def action_chat(self) -> None:
        if path := self.highlighted():
            self.app.use_run(path, "chat")

    def action_export(self) -> None:
        if path := self.highlighted():
            self.app.use_run(path, "export")
