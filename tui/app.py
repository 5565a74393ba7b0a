"""The mlx-dpo Textual app: Data, Model, Train, Runs, Chat, Export.

MLX work of this process happens only on the engine thread (engine.py); training is a child
process (training.py). The app holds the shared choices (model, data, run) as reactive state.

Keys: F1–F6 switch tabs, `?` lists the keys of the current tab, Ctrl+P finds any command by name,
Ctrl+Q quits. Each pane declares its own BINDINGS (shown in the footer while it is the current tab)
and a `focus_first()` that puts the focus on a safe, visible control when the tab is shown.
"""

from __future__ import annotations

from typing import Iterable

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Switch, TabbedContent, TabPane, Tabs

from mlx_dpo import UsageError, default_model, list_runs, parse_template_kwargs, read_run

from .confirm import ConfirmQuit
from .engine import Engine
from .help_screen import HelpScreen
from .panes.chat_pane import ChatPane
from .panes.data_pane import DEFAULT_OPTIONS, DataPane
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
    # The F-keys are written on the tabs themselves ("F3 Train"), so the footer keeps its room for the
    # current tab's actions.
    BINDINGS = [Binding(f"f{i + 1}", f"show('{tab}')", label, show=False, priority=True)
                for i, (tab, label, _) in enumerate(TABS)] + [
        Binding("question_mark", "help", "Keys"),
        Binding("escape", "leave_field", "Leave field",
                tooltip="Leave a text field (where ? is text)"),
        Binding("ctrl+q", "quit_app", "Quit", priority=True)]

    model: reactive[str | None] = reactive(None)
    run_dir: reactive[str | None] = reactive(None)

    def __init__(self, model: str | None = None, data: str | None = None, valid: str | None = None,
                 runs_root: str = "runs", engine=None, demo: bool = False):
        super().__init__()
        self.demo = demo  # opened on the bundled demo (--demo): the Train form starts from its settings
        self.model = model or default_model()
        self.data_path, self.valid_path = data, valid
        self.data_options = dict(DEFAULT_OPTIONS)  # split, data_config, data_revision, skip_invalid (Data tab)
        self.quantize: int | None = None
        # The chat template's variables (Model tab) as the JSON text given, None for none: passed as
        # --chat-template-kwargs to training and iterate, and used by chat, A/B and the Data tab's rendering.
        self.chat_template_kwargs: str | None = None
        self.runs_root = runs_root
        self.training_running = False
        self.quit_after_training = False
        self.engine = engine if engine is not None else Engine()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs"):
            for i, (tab, label, pane) in enumerate(TABS):
                with TabPane(f"F{i + 1} {label}", id=f"tab-{tab}"):
                    yield pane(id=f"pane-{tab}")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # The tab bar never takes the focus: F1–F6 (or a click) switch tabs, and a focused tab bar
        # would swallow the keys of the tab below it.
        for tabs in self.query(Tabs):
            tabs.can_focus = False
        self.engine.start()
        self.call_after_refresh(self.current_pane().focus_first)

    def on_unmount(self) -> None:
        self.engine.stop()
        for pane in self.query(TrainPane):
            pane.stop()  # never leave an unseen trainer behind (it checkpoints on SIGINT)

    # ------------------------------------------------------------------ tabs and focus
    def current_tab(self) -> str:
        return (self.query_one(TabbedContent).active or "tab-data").removeprefix("tab-")

    def current_pane(self) -> Widget:
        return self.query_one(f"#pane-{self.current_tab()}")

    def is_shown(self, widget: Widget) -> bool:
        """Is `widget` on the current tab? Focusing a widget of another tab would switch to that tab."""
        return self.current_pane() in widget.ancestors_with_self

    def focus_if_shown(self, widget: Widget) -> None:
        if self.is_shown(widget) and widget.focusable:
            widget.focus()

    def action_show(self, tab: str) -> None:
        # Drop focus first: TabbedContent switches back to whichever tab holds the focused widget.
        self.set_focus(None)
        self.query_one(TabbedContent).active = f"tab-{tab}"
        pane = self.query_one(f"#pane-{tab}")
        if tab == "export":
            pane.show_run()
        if tab == "chat":
            pane.show_target()
        pane.focus_first()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """A tab clicked with the mouse gets the same first focus as one chosen with its F-key."""
        pane = self.current_pane()
        focused = self.focused
        if focused is None or pane not in focused.ancestors_with_self:
            pane.focus_first()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":
            return isinstance(self.focused, Input)  # shown in the footer only while typing in a field
        return True

    def action_leave_field(self) -> None:
        """Escape in a text field: the focus moves to the tab's next control that is not one, so that `?`
        and the letter keys work (in a text field they are text)."""
        if not isinstance(self.focused, Input):
            return
        pane = self.current_pane()
        chain = [w for w in self.screen.focus_chain if pane in w.ancestors]
        start = chain.index(self.focused) if self.focused in chain else -1
        for widget in chain[start + 1:] + chain[:start]:
            if not isinstance(widget, Input):
                widget.focus()
                return

    def action_help(self) -> None:
        """List the active bindings: the current tab's first, then the app's."""
        if isinstance(self.screen, HelpScreen):
            return
        pane = self.current_pane()
        tab_label = dict((t, l) for t, l, _ in TABS)[self.current_tab()]
        rows, seen = [(tab_label, key, what) for key, what in getattr(pane, "KEYS_EXTRA", [])], set()
        for node, where in ((pane, tab_label), (self, "any tab")):
            # The bindings the node's class declares (not the scrolling keys every container inherits).
            for b in type(node).BINDINGS:
                if not isinstance(b, Binding) or not b.description or b.key in seen:
                    continue
                seen.add(b.key)
                state = node.check_action(b.action.split("(")[0], ()) if node is pane else True
                if state is False or b.action.startswith("show("):
                    continue
                what = b.tooltip or b.description
                rows.append((where, self.get_key_display(b), what + ("" if state else " (not now)")))
        rows += [("any tab", f"F1–F{len(TABS)}", "switch tab"),
                 ("any tab", self.get_key_display(Binding("ctrl+p", "")), "command palette (any command by name)"),
                 ("any tab", "tab / shift+tab", "next / previous control")]
        self.push_screen(HelpScreen(f"Keys of the {tab_label} tab", rows))

    # ------------------------------------------------------------------ the command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        def on(tab: str, action: str):
            def run() -> None:
                self.action_show(tab)
                self.call_after_refresh(self.run_pane_action, tab, action)
            return run

        yield SystemCommand("Train: start training", "start a run with the Train form (ctrl+s)", on("train", "start"))
        yield SystemCommand("Train: stop training", "checkpoint and stop the running trainer (ctrl+b)",
                            on("train", "stop"))
        yield SystemCommand("Train: resume training", "continue the run in the run dir (ctrl+r)", on("train", "resume"))
        yield SystemCommand("Train: save the form as a YAML config", "the file `mlx-dpo train --config` reads (ctrl+f)", on("train", "save_config"))
        yield SystemCommand("Train: load a YAML config", "fill the form from a config file (ctrl+o)",
                            on("train", "load_config"))
        yield SystemCommand("Train: show the equivalent command", "the `mlx-dpo train …` line of the form (ctrl+g)",
                            on("train", "show_command"))
        yield SystemCommand("Data: open a pairs file, dataset folder or hub id",
                            "choose the training data (ctrl+l loads it)", on("data", "open"))
        yield SystemCommand("Data: source options", "split, subset, revision, skip invalid rows, cached datasets "
                            "(ctrl+o)", on("data", "source"))
        yield SystemCommand("Model: open a model", "a hub id or a local folder (ctrl+l uses it)", on("model", "open"))
        yield SystemCommand("Export: export the adapter", "fused HF model, GGUF (llama.cpp, Ollama), PEFT or mlx-lm (ctrl+s)",
                            on("export", "export"))
        yield SystemCommand("Runs: refresh the list", "re-read the runs folder (ctrl+r)", on("runs", "refresh"))
        yield SystemCommand("Runs: evaluate the highlighted run", "its adapter on held-out pairs (v)",
                            on("runs", "evaluate"))
        yield SystemCommand("Runs: blind compare the highlighted run", "judge its answers against the base's on "
                            "held-out prompts, sides hidden (b)", on("runs", "blind_compare"))
        yield SystemCommand("Train: iterative DPO (iterate mode)", "the model writes its own pairs, a judge ranks "
                            "them, it trains, round after round", on("train", "iterate_mode"))
        yield SystemCommand("Chat: load model + adapter", "chat with the current run's adapter (ctrl+l)",
                            on("chat", "load"))
        yield SystemCommand("Chat: new conversation", "clear both transcripts (ctrl+n)", on("chat", "new"))
        for i, (tab, label, _) in enumerate(TABS):
            yield SystemCommand(f"Go to the {label} tab", f"F{i + 1}", lambda tab=tab: self.action_show(tab))
        for run in list_runs(self.runs_root):
            yield SystemCommand(f"Open run {run.name}", f"show its curves on Runs ({run.path})",
                                lambda path=str(run.path): self.open_run(path), discover=False)
        yield SystemCommand("Keys of this tab", "the `?` screen", self.action_help)
        yield from super().get_system_commands(screen)

    async def run_pane_action(self, tab: str, action: str) -> None:
        """Run a tab's action as its key would, or say why it cannot run now."""
        pane = self.query_one(f"#pane-{tab}")
        if not pane.check_action(action, ()):
            reason = getattr(pane, "why_not", lambda a: "not available now")(action)
            self.notify(reason, severity="warning")
            return
        await self.run_action(action, pane)

    def open_run(self, path: str) -> None:
        self.action_show("runs")
        self.query_one(RunsPane).select(path)

    # ------------------------------------------------------------------ shared actions
    def watch_run_dir(self, run_dir: str | None) -> None:
        if self.is_running and self.screen_stack:
            for pane in self.query(ExportPane):
                pane.show_run()

    def train_settings(self) -> TrainSettings:
        """The Train tab's batch, length, rank and processes (its defaults before that tab is built)."""
        panes = self.query(TrainPane)
        return panes.first().settings() if panes else TrainSettings()

    @property
    def template_kwargs(self) -> dict:
        return parse_template_kwargs(self.chat_template_kwargs) if self.chat_template_kwargs else {}

    def set_template_kwargs(self, text: str | None) -> None:
        """Make `text` (JSON, "" for none) the template variables of everything the app does with the model.

        Checked by the engine's own rule first: a UsageError leaves the previous value in effect."""
        text = (text or "").strip() or None
        kwargs = parse_template_kwargs(text) if text else {}
        if text == self.chat_template_kwargs:
            return
        self.chat_template_kwargs = text
        self.engine.set_template_kwargs(kwargs)
        for pane in self.query(ModelPane):
            pane.show_template_kwargs(text)

    def inspect_data(self, reply_to, path: str, job: str = "data", example: int = 0) -> None:
        length = self.train_settings().max_length
        o = self.data_options
        # The held-out data is read with the same split; subset and revision belong to --data only (as the CLI).
        same = path == self.data_path
        source = {"split": o["split"], "subset": o["data_config"] if same else None,
                  "revision": o["data_revision"] if same else None, "skip_invalid": o["skip_invalid"]}
        self.engine.inspect_data(reply_to, path, self.model, {}, length, length // 2, job_name=job, example=example,
                                 source=source, template_kwargs=self.template_kwargs)

    def memory_assumptions(self) -> str:
        s = self.train_settings()
        per_process = max(1, s.batch_size // max(1, s.processes))
        quant = f"{self.quantize}-bit" if self.quantize else "weights as stored"
        procs = f" per process ({s.processes} processes)" if s.processes > 1 else ""
        return f"batch {per_process}{procs}, max length {s.max_length}, LoRA rank {s.lora_rank}, {quant}"

    def estimate_memory(self, reply_to, model: str | None = None) -> None:
        """The engine's estimate of the run the Train form would start (its settings, the Data tab's data and
        the Model tab's quantization), each process holding 1/N of the global batch."""
        s = self.train_settings()
        panes = self.query(TrainPane)
        config, flags = panes.first().form.estimate_flags() if panes else ({}, {})
        if self.quantize:
            flags["quantize"] = self.quantize
        self.engine.estimate_memory(reply_to, model or self.model, flags, config, max(1, s.processes))

    def refresh_runs(self) -> None:
        for pane in self.query(RunsPane):
            pane.action_refresh()

    def resume_run(self, path: str) -> None:
        self.action_show("train")
        self.query_one(TrainPane).resume(path)

    def continue_from_run(self, path: str) -> None:
        """A new run on the Train form that starts from this run's adapter (`--init-adapter`)."""
        self.action_show("train")
        self.query_one(TrainPane).continue_from(path)

    def open_data(self, path: str) -> None:
        """Open `path` (the Chat tab's preference file) on the Data tab."""
        self.action_show("data")
        pane = self.query_one(DataPane)
        pane.query_one("#data-path", Input).value = path
        pane.load()

    def set_skip_invalid(self, skip: bool) -> None:
        """The Data tab's Skip invalid rows, as the next run reads it (and its switch shows it)."""
        self.data_options["skip_invalid"] = skip
        self.query_one("#data-skip-invalid", Switch).value = skip

    def train_on_prefs(self, path: str, adapter: str | None, loss: str | None = None) -> None:
        """Prepare a run on the Train form: the preference file as data, continuing from `adapter`; the Data
        tab shows that file (what trains is what it shows)."""
        pane = self.query_one(DataPane)
        pane.query_one("#data-path", Input).value = path
        pane.load()  # checks the file (its report is on Data) and makes it the app's data
        self.action_show("train")
        self.query_one(TrainPane).prepare_from_chat(path, adapter, loss)

    def training_finished(self, run_dir: str, from_chat: bool) -> None:
        """A run ended well; one that trained on Chat's picks becomes Chat's next adapter."""
        if from_chat:
            self.query_one(ChatPane).offer(run_dir)
            self.notify(f"Chat (F5) now offers the new adapter {run_dir}: Load (ctrl+l) there", timeout=10)

    def use_run(self, path: str, tab: str) -> None:
        """Use the run's adapter on `tab`, with the run's model and the template variables it trained with
        (as `mlx-dpo chat --adapter RUN` takes them; the Model tab shows them)."""
        self.run_dir = path
        config = read_run(path).config
        model = config.get("model")
        if model:
            self.model = model
        trained_with = config.get("chat_template_kwargs")
        if isinstance(trained_with, str) and trained_with != self.chat_template_kwargs:
            try:
                self.set_template_kwargs(trained_with)
                self.notify(f"template variables {trained_with}: the run's (Model tab, F2)")
            except UsageError:
                pass  # a config.yaml edited by hand: the app's own stay
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


def run_app(model: str | None = None, data: str | None = None, valid: str | None = None, runs: str = "runs",
            demo: bool = False) -> int:
    app = MlxDpoApp(model, data, valid, runs, demo=demo)
    app.run()
    return app.return_code or 0
