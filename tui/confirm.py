"""Small dialogs: a yes/no question (quit while training, delete a run) and a path prompt.

The safe answer has the focus when a dialog opens, Left/Right move between its buttons, Escape cancels.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

DIALOG_BINDINGS = [Binding("escape", "cancel", "Cancel"),
                   Binding("left", "app.focus_previous", "Previous button", show=False),
                   Binding("right", "app.focus_next", "Next button", show=False)]


class Confirm(ModalScreen[bool]):
    """A question with a risky answer (`yes`) and a safe one (`no`, focused first)."""

    BINDINGS = DIALOG_BINDINGS

    def __init__(self, question: str, yes: str, no: str, **kw):
        super().__init__(**kw)
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Label(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="confirm-yes", variant="error")
                yield Button(self.no, id="confirm-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # the safe choice is the default

    def action_cancel(self) -> None:
        self.dismiss(False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class ConfirmQuit(Confirm):
    def __init__(self, **kw):
        super().__init__("A training run is going. Stop it (it saves a checkpoint you can resume) and quit?",
                         "Stop training and quit", "Keep training", **kw)


class PathPrompt(ModalScreen[str | None]):
    """Ask for a file path (saving or loading a config): Enter accepts, Escape cancels."""

    BINDINGS = DIALOG_BINDINGS

    def __init__(self, question: str, value: str, action: str, **kw):
        super().__init__(**kw)
        self.question, self.value, self.action_label = question, value, action

    def compose(self) -> ComposeResult:
        from .widgets.path_input import PathInput

        with Vertical(id="prompt-box", classes="dialog"):
            yield Label(self.question, markup=False)
            yield PathInput(self.value, (".yaml", ".yml"), id="prompt-path")
            with Horizontal(classes="buttons"):
                yield Button(self.action_label, id="prompt-ok", variant="primary")
                yield Button("Cancel", id="prompt-cancel")

    def on_mount(self) -> None:
        self.query_one("#prompt-path", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        value = self.query_one("#prompt-path", Input).value.strip()
        self.dismiss(value or None if event.button.id == "prompt-ok" else None)


class EditAnswer(ModalScreen[str | None]):
    """Edit one side's A/B answer before saving it: the edited text becomes chosen, the other side rejected.
    Ctrl+S (or the button) saves, Escape cancels (nothing is saved, the answers wait for a pick)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save as chosen", priority=True)]

    def __init__(self, side: str, text: str, **kw):
        super().__init__(**kw)
        self.side, self.text = side, text

    def compose(self) -> ComposeResult:
        from textual.widgets import TextArea

        with Vertical(id="edit-box", classes="dialog"):
            yield Label(f"Edit answer {self.side}: saved as chosen, the other answer as rejected (ctrl+s saves, "
                        "escape cancels)", markup=False)
            yield TextArea(self.text, id="edit-text", soft_wrap=True)
            with Horizontal(classes="buttons"):
                yield Button("Save as chosen", id="edit-save", variant="primary")
                yield Button("Cancel", id="edit-cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-text").focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        from textual.widgets import TextArea

        text = self.query_one("#edit-text", TextArea).text.strip()
        self.dismiss(text or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "edit-save":
            self.action_save()
        else:
            self.dismiss(None)


class BadRows(ModalScreen[str | None]):
    """A run refused its data for bad rows (the trainer's error event lists them): skip them and start
    again ("skip", only where the engine says skipping would train), see them on Data ("open"), or cancel."""

    BINDINGS = DIALOG_BINDINGS

    def __init__(self, path: str, problems: list[dict], skippable: bool, **kw):
        super().__init__(**kw)
        self.path, self.problems, self.skippable = path, problems, skippable

    def compose(self) -> ComposeResult:
        n = len(self.problems)
        shown = [f"{p['file']}:{p['line']}: {p['field']}: {p['message']}" if p.get("line") is not None
                 else f"{p['file']}: {p['message']}" for p in self.problems[:3]]
        more = [f"… and {n - 3} more"] if n > 3 else []
        with Vertical(id="confirm-box", classes="dialog"):
            yield Label(f"The run did not start: {n} invalid row(s) in {self.path}.", markup=False)
            yield Label("\n".join(shown + more), markup=False, classes="dialog-detail")
            if self.skippable:
                yield Label("Skip them (Skip invalid rows, listed in RUN_DIR/skipped.jsonl) and start again?",
                            markup=False)
            with Horizontal(classes="buttons"):
                if self.skippable:
                    yield Button("Skip them and start", id="badrows-skip", variant="primary")
                yield Button("Show them on Data", id="badrows-open")
                yield Button("Cancel", id="badrows-cancel")

    def on_mount(self) -> None:
        self.query_one("#badrows-skip" if self.skippable else "#badrows-open", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"badrows-skip": "skip", "badrows-open": "open"}.get(event.button.id))


class TooBig(ModalScreen[str | None]):
    """A run the engine refused because its memory estimate exceeds the budget (the trainer's error event, key
    "force", carries the estimate): use the engine's first suggested settings and start ("suggested", offered
    where the form's settings can change: a new run), start it anyway with --force ("force"), or cancel."""

    BINDINGS = DIALOG_BINDINGS

    def __init__(self, estimate: dict, can_change: bool, **kw):
        super().__init__(**kw)
        self.estimate = estimate
        self.offer = can_change and bool(estimate.get("suggestions"))

    def compose(self) -> ComposeResult:
        from mlx_dpo import human_bytes

        from .widgets import memory

        e = self.estimate
        found = e.get("suggestions") or []
        with Vertical(id="toobig-box", classes="dialog"):
            yield Label(f"The run did not start: it needs about {human_bytes(e.get('peak_bytes'))} of memory at its "
                        f"peak, more than the {human_bytes(e.get('available_bytes'))} budget "
                        f"({e.get('available_source') or 'unknown'}); it would likely stop out of memory.",
                        markup=False)
            detail = [memory.suggestions(e, n=3)]
            if self.offer:
                detail.append(f"Use the suggested settings: {' '.join(found[0]['flags'])}")
            yield Label("\n".join(detail), markup=False, classes="dialog-detail")
            with Horizontal(classes="buttons"):
                if self.offer:
                    yield Button("Use the suggested settings", id="toobig-suggested", variant="primary")
                yield Button("Start anyway (--force)", id="toobig-force", variant="error")
                yield Button("Cancel", id="toobig-cancel")

    def on_mount(self) -> None:
        self.query_one("#toobig-suggested" if self.offer else "#toobig-cancel", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"toobig-suggested": "suggested", "toobig-force": "force"}.get(event.button.id))
