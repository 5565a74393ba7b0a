"""Model: a hub id or local folder, models already in the local Hugging Face cache, quantization, the
chat template's variables, and a memory estimate of the run the Train tab would start, on the Data tab's data,
before anything is loaded (the engine's own check: the trainer refuses a run it says does not fit, unless forced).

A model becomes the app's current model only once the engine has found and read it (the memory
estimate is that check): a typo or a model that is not available leaves the current one in place.
The template variables ({"enable_thinking": false} for Qwen3) take effect on Enter or on leaving the
field, checked by the engine's own rule; a refused value leaves the previous one in effect.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from mlx_dpo import DEMO_MODEL, UsageError, list_runs

from ..messages import JobFailed, MemoryEstimated
from ..widgets import memory
from ..widgets.path_input import PathInput


def bundled_models() -> list[str]:
    """The models installed with mlx-dpo: the demo model, if this installation has it."""
    return [str(DEMO_MODEL)] if (DEMO_MODEL / "config.json").exists() else []


def model_key(model: str) -> str:
    """One key per model: a local folder by its absolute path (runs/x/../m and m are one), a hub id as is."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


def cached_models(current: str | None = None, runs_root: str | None = None) -> list[str]:
    """The current model, models used by past runs, bundled models, and model repos in the
    local Hugging Face cache: everything usable offline, each model once."""
    found: list[str] = [current] if current else []
    if runs_root:
        found += [str(r.config["model"]) for r in list_runs(runs_root) if r.config.get("model")]
    found += bundled_models()
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                found.append(repo.repo_id)
    except Exception:  # no cache yet, or an unreadable one: nothing to list
        pass
    unique: dict[str, str] = {}
    for model in found:
        unique.setdefault(model_key(model), model)  # the first spelling seen is the one shown
    return list(unique.values())


class ModelPane(VerticalScroll):
    can_focus = False
    KEYS_EXTRA = [("enter", "in the model field: use it; in the template variables: apply them; in the list: use "
                            "that model")]
    BINDINGS = [Binding("ctrl+l", "use", "Use model"), Binding("ctrl+t", "estimate", "Estimate memory"),
                Binding("ctrl+o", "list", "Offline models", show=False)]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.candidate: str | None = None  # a model being checked before it becomes current

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Model", classes="field-label")
            yield PathInput(self.app.model or "", id="model-path", placeholder="hub id (org/name) or local folder")
            yield Button("Use", id="model-use", variant="primary")
        with Horizontal(classes="row"):
            yield Label("Quantize", classes="field-label")
            yield Select([("as stored", "none"), ("4-bit", "4"), ("8-bit", "8")], value="none",
                         allow_blank=False, id="model-quantize")
            yield Button("Estimate memory", id="model-estimate")
        with Horizontal(classes="row", id="model-template-row"):
            yield Label("Template\nvariables", classes="field-label")
            yield Input(self.app.chat_template_kwargs or "", id="model-template-kwargs",
                        placeholder='JSON, e.g. {"enable_thinking": false}',
                        tooltip="The chat template's variables: used by training, iterate, chat, A/B and the Data "
                                "tab's rendering (Enter or leaving the field applies them)")
        yield Static("", id="model-template-error", markup=False)
        yield Static(f"current model: {self.app.model or '(none)'}", id="model-current", markup=False)
        yield Static("", id="model-memory", markup=False)
        yield Label("Models available offline (local cache and bundled):")
        models = cached_models(self.app.model, self.app.runs_root)
        yield OptionList(*[Option(m, id=m) for m in models] or [Option("(none found)", disabled=True)],
                         id="model-list")

    def focus_first(self) -> None:
        self.app.focus_if_shown(self.query_one("#model-path"))

    def action_use(self) -> None:
        self.use()

    def action_list(self) -> None:
        self.app.focus_if_shown(self.query_one("#model-list"))

    def action_estimate(self) -> None:
        self.estimate()

    @on(OptionList.OptionSelected, "#model-list")
    def pick(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#model-path", PathInput).value = event.option.id or ""
        self.use()

    @on(Button.Pressed, "#model-use")
    @on(Input.Submitted, "#model-path")
    def use(self) -> None:
        value = self.query_one("#model-path", PathInput).value.strip()
        if not value:
            self.app.notify("Enter a model folder or hub id", severity="warning")
            return
        self.candidate = value
        self.query_one("#model-memory", Static).update(f"checking {value} …")
        self.app.estimate_memory(self, value)

    @on(Input.Submitted, "#model-template-kwargs")
    @on(Input.Blurred, "#model-template-kwargs")
    def apply_template_kwargs(self) -> None:
        field = self.query_one("#model-template-kwargs", Input)
        try:
            self.app.set_template_kwargs(field.value)
        except UsageError as e:
            field.add_class("-invalid-field")
            kept = self.app.chat_template_kwargs or "none"
            self.show_template_error(f"template variables not changed: {e.detail} (still in use: {kept})")
            return
        self.show_template_kwargs(self.app.chat_template_kwargs)

    def show_template_kwargs(self, text: str | None) -> None:
        """The template variables in effect, in the field (its error cleared)."""
        field = self.query_one("#model-template-kwargs", Input)
        if field.value.strip() != (text or ""):
            field.value = text or ""
        field.remove_class("-invalid-field")
        self.show_template_error("")

    def show_template_error(self, text: str) -> None:
        box = self.query_one("#model-template-error", Static)
        box.update(Text(text, style="bold red"))
        box.display = bool(text)

    @on(Select.Changed, "#model-quantize")
    def quantize_changed(self, event: Select.Changed) -> None:
        self.app.quantize = None if event.value == "none" else int(event.value)
        if self.app.model:
            self.estimate()

    @on(Button.Pressed, "#model-estimate")
    def estimate(self) -> None:
        if not self.app.model:
            self.app.notify("Choose a model first", severity="warning")
            return
        self.query_one("#model-memory", Static).update("estimating …")
        self.app.estimate_memory(self)

    def on_memory_estimated(self, message: MemoryEstimated) -> None:
        if self.candidate is not None and message.model == self.candidate:
            self.candidate = None
            if self.app.model != message.model:
                self.app.model = message.model
                self.app.notify(f"model: {message.model}")
            self.query_one("#model-current", Static).update(f"current model: {message.model}")
        est = message.estimate
        text = Text(f"training needs {message.text}\n")
        text.append_text(memory.verdict(est))
        if hint := memory.suggestions(est):
            text.append(f"\n{hint}", style="bold")
        text.append(f"\n{memory.lengths(est)}", style="dim")
        text.append(f"\nassuming {self.app.memory_assumptions()} (change them on the Train tab, F3)", style="dim")
        self.query_one("#model-memory", Static).update(text)

    def on_job_failed(self, message: JobFailed) -> None:
        if message.job != "memory":
            return
        text = Text(message.error.strip(), style="red")
        if self.candidate is not None:
            text = Text(f"{self.candidate} is not available, so the current model stays "
                        f"{self.app.model or '(none)'}:\n", style="bold red") + text
            self.candidate = None
        self.query_one("#model-memory", Static).update(text)
