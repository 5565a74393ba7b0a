"""The mlx-dpo Textual app: Data, Model, Train, Runs, Chat, Export.

MLX work of this process happens only on the engine thread (engine.py); training is a child
process (training.py). The app holds the shared choices (model, data, run) as reactive state.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Footer, Header, TabbedContent, TabPane

from mlx_dpo import default_model, read_run

from .confirm import ConfirmQuit
from .engine import Engine
from .panes.chat_pane import ChatPane
from .panes.data_pane import DataPane
from .panes.export_pane import ExportPane
from .panes.model_pane import ModelPane
from .panes.runs_pane import RunsPane
from .panes.train_pane import TrainPane, TrainSettings

TABS = [("data", "Data", DataPane), ("model", "Model", ModelPane), ("train", "Train", TrainPane),
        ("runs", "Runs", RunsPane), ("chat", "Chat", ChatPane), ("export", "Export", ExportPane)]


class MlxDpoApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mlx-dpo"
    SUB_TITLE = "Direct Preference Optimization on your Mac"
    BINDINGS = [Binding(f"f{i + 1}", f"show('{tab}')", label, priority=True) for i, (tab, label, _) in enumerate(TABS)] + [
        Binding("ctrl+q", "quit_app", "Quit", priority=True)]

    model: reactive[str | None] = reactive(None)
    run_dir: reactive[str | None] = reactive(None)

    def __init__(self, model: str | None = None, data: str | None = None, valid: str | None = None,
                 runs_root: str = "runs", engine=None):
        super().__init__()
        self.model = model or default_model()
        self.data_path, self.valid_path = data, valid
        self.quantize: int | None = None
        self.runs_root = runs_root
        self.training_running = False
        self.quit_after_training = False
        self.engine = engine if engine is not None else Engine()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for tab, label, pane in TABS:
                with TabPane(label, id=f"tab-{tab}"):
                    yield pane(id=f"pane-{tab}")
        yield Footer()

    def on_mount(self) -> None:
        self.engine.start()

    def on_unmount(self) -> None:
        self.engine.stop()
        for pane in self.query(TrainPane):
            pane.stop()  # never leave an unseen trainer behind (it checkpoints on SIGINT)

    # ------------------------------------------------------------------ shared actions
    def action_show(self, tab: str) -> None:
        # Drop focus first: TabbedContent switches back to whichever tab holds the focused widget.
        self.set_focus(None)
        self.query_one(TabbedContent).active = f"tab-{tab}"
        pane = self.query_one(f"#pane-{tab}")
        if tab == "export":
            pane.show_run()
        if tab == "chat":
            pane.show_target()
        # Focus the tab's main control so its keys work at once (no Tab presses needed).
        target = {"runs": "#runs-table", "chat": "#chat-input", "data": "#data-path", "model": "#model-path",
                  "train": "#train-start", "export": "#export-go"}[tab]
        widget = pane.query_one(target)
        if not widget.disabled:
            widget.focus()
            widget.scroll_visible(animate=False)

    def watch_run_dir(self, run_dir: str | None) -> None:
        if self.is_running and self.screen_stack:
            for pane in self.query(ExportPane):
                pane.show_run()

    def train_settings(self) -> TrainSettings:
        """The Train tab's batch, length, rank and processes (its defaults before that tab is built)."""
        panes = self.query(TrainPane)
        return panes.first().settings() if panes else TrainSettings()

    def inspect_data(self, reply_to, path: str, job: str = "data") -> None:
        length = self.train_settings().max_length
        self.engine.inspect_data(reply_to, path, self.model, {}, length, length // 2, job_name=job)

    def estimate_memory(self, reply_to) -> None:
        s = self.train_settings()
        # Per process: with N data-parallel processes each one holds 1/N of the global batch.
        per_process = max(1, s.batch_size // max(1, s.processes))
        self.engine.estimate_memory(reply_to, self.model, per_process, s.max_length, s.lora_rank, self.quantize, False)

    def refresh_runs(self) -> None:
        for pane in self.query(RunsPane):
            pane.action_refresh()

    def resume_run(self, path: str) -> None:
        self.action_show("train")
        self.query_one(TrainPane).resume(path)

    def use_run(self, path: str, tab: str) -> None:
        self.run_dir = path
        model = read_run(path).config.get("model")
        if model:
            self.model = model
        self.action_show(tab)
        self.notify(f"using {path} for {tab}")
        if tab == "chat":
            self.query_one(ChatPane).load()

    async def action_quit_app(self) -> None:
        if self.training_running:
            self.push_screen(ConfirmQuit(), self._quit_confirmed)
        else:
            self.exit()

    def _quit_confirmed(self, stop: bool | None) -> None:
        if stop:
            # Quit only once the trainer has written its checkpoint (TrainPane calls exit then).
            self.quit_after_training = True
            self.query_one(TrainPane).stop()
            self.notify("stopping training (saving a checkpoint), then quitting …", timeout=30)


def run_app(model: str | None = None, data: str | None = None, valid: str | None = None, runs: str = "runs") -> int:
    app = MlxDpoApp(model, data, valid, runs)
    app.run()
    return app.return_code or 0
