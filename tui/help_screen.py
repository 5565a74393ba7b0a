"""The `?` screen: every key binding of the current tab, then the app-wide ones."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label


ACTION_WIDTH = 46  # the help box is 80 wide: where and key columns, then the descriptions


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]], **kw):
        """`rows`: (where, key, what it does), in the order shown."""
        super().__init__(**kw)
        self.title_text, self.rows = title, rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Label(self.title_text, id="help-title", markup=False)
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Label("Esc, q or ? closes · Ctrl+P finds any command by name", id="help-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("where")
        table.add_column("key")
        # A fixed width for the descriptions and rows as tall as their text: long ones wrap, none is cut off.
        table.add_column("action", width=ACTION_WIDTH)
        for where, key, action in self.rows:
            table.add_row(where, key, Text(action), height=None)
        table.focus()
