"""The question asked before quitting while a training run is going."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmQuit(ModalScreen[bool]):
    BINDINGS = [("escape", "dismiss(False)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label("A training run is going. Stop it (it saves a checkpoint you can resume) and quit?")
            with Horizontal(classes="buttons"):
                yield Button("Stop training and quit", id="confirm-yes", variant="error")
                yield Button("Keep training", id="confirm-no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()  # the safe choice is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")
