"""Data: open a pairs file, see its validation report, a preview, and one pair as the model sees it."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Label, Static

from mlx_dpo import token_table

from ..messages import DataInspected, JobFailed
from ..widgets.path_input import PathInput

SUFFIXES = (".jsonl", ".json")


def example_text(ex: dict) -> Text:
    """The rendered pair with the prompt/completion boundary made visible."""
    if "error" in ex:
        return Text(ex["error"], style="red")
    t = Text()
    t.append(f"{ex['source']}  (prompt {ex['prompt_tokens']} tokens | chosen {ex['chosen_tokens']} | "
             f"rejected {ex['rejected_tokens']}{' | boundary repaired' if ex['repaired'] else ''})\n", style="dim")
    t.append(ex["prompt"], style="grey70")
    t.append("▌", style="bold yellow")  # the boundary: everything after it is scored
    t.append(ex["chosen"], style="bold green")
    t.append("\n── rejected ──\n", style="dim")
    t.append("…" + ex["prompt"][-60:], style="grey50")
    t.append("▌", style="bold yellow")
    t.append(ex["rejected"], style="bold red")
    return t


PREVIEW_COLUMNS = ("line", "format", "prompt", "chosen", "rejected")
MAX_COLUMN_WIDTH = 60  # longer cells are cut; the rendered example below shows one pair in full


class DataPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Pairs file", classes="field-label")
            yield PathInput(self.app.data_path or "", SUFFIXES, id="data-path", placeholder="path/to/pairs.jsonl")
            yield Button("Load", id="data-load", variant="primary")
        with Horizontal(classes="row"):
            yield Label("Held-out", classes="field-label")
            yield PathInput(self.app.valid_path or "", SUFFIXES, id="valid-path", placeholder="optional held-out file")
        yield Static("Open a pairs file (JSONL or JSON list) and press Load.", id="data-summary", markup=False)
        yield Static("", id="data-errors")
        yield Static("", id="valid-summary", markup=False)
        yield DataTable(id="data-preview", zebra_stripes=True, cursor_type="row")
        yield Static("", id="data-example")

    def on_mount(self) -> None:
        self.query_one("#data-preview", DataTable).add_columns(*PREVIEW_COLUMNS)
        if self.app.data_path:
            self.load()

    @on(Button.Pressed, "#data-load")
    @on(PathInput.Submitted, "#data-path")
    @on(PathInput.Submitted, "#valid-path")
    def load(self) -> None:
        path = self.query_one("#data-path", PathInput).value.strip()
        valid = self.query_one("#valid-path", PathInput).value.strip()
        if not path:
            self.app.notify("Enter the path of a pairs file first", severity="warning")
            return
        self.app.data_path, self.app.valid_path = path, valid or None
        self.query_one("#data-summary", Static).update(f"Checking {path} …")
        self.query_one("#valid-summary", Static).update(f"Checking held-out {valid} …" if valid else "")
        self.app.inspect_data(self, path)
        if valid:
            self.app.inspect_data(self, valid, job="valid")

    def on_data_inspected(self, message: DataInspected) -> None:
        if message.job == "valid":
            self.show_valid(message.result)
            return
        r = message.result
        rep = r["report"]
        fmts = ", ".join(f"{k} {v}" for k, v in sorted(rep["formats"].items())) or "none"
        lines = [f"{rep['file']}: {rep['rows']} rows · {rep['valid_pairs']} valid pairs ({fmts}) · "
                 f"{rep['errors']} error(s)"]
        if "tokens" in rep:
            lines += [*token_table(rep),
                      f"limits: {rep['truncated']} truncated, {rep['dropped']} dropped; "
                      f"{rep['trainable_pairs']} pairs will train"]
        else:
            lines.append("Choose a model on the Model tab to see token statistics and the rendered pair.")
        valid = self.app.valid_path
        lines.append("split: train = this file" + (f"; held-out = {valid}" if valid else "; no held-out file"))
        lines += [f"warning: {w}" for w in r["warnings"]]
        self.query_one("#data-summary", Static).update("\n".join(lines))
        errors = r["errors"]
        err = Text("\n".join(errors[:200]) + (f"\n… {len(errors) - 200} more" if len(errors) > 200 else ""),
                   style="red") if errors else Text("no errors", style="green")
        self.query_one("#data-errors", Static).update(err)
        self.fill_preview(r["preview"])
        self.query_one("#data-example", Static).update(example_text(r["example"]) if r["example"] else "")

    def fill_preview(self, preview: list[dict]) -> None:
        # Explicit column widths: DataTable's auto-width is measured lazily on idle, which made the
        # layout depend on timing when a second inspection replaced the rows before that happened.
        table = self.query_one("#data-preview", DataTable)
        table.clear(columns=True)
        keys = ("source", "format", "prompt", "chosen", "rejected")
        for label, key in zip(PREVIEW_COLUMNS, keys):
            longest = max((cell_len(str(row[key])) for row in preview), default=0)
            table.add_column(label, width=min(max(longest, cell_len(label)), MAX_COLUMN_WIDTH))
        for row in preview:
            table.add_row(*(row[key] for key in keys))

    def show_valid(self, r: dict) -> None:
        rep = r["report"]
        head = Text(f"held-out {rep['file']}: {rep['valid_pairs']} valid pairs, {rep['errors']} error(s)",
                    style="red" if r["errors"] else "green")
        if r["errors"]:
            head.append("\n" + "\n".join(r["errors"][:50]))
        self.query_one("#valid-summary", Static).update(head)

    def on_job_failed(self, message: JobFailed) -> None:
        if message.job == "valid":
            self.query_one("#valid-summary", Static).update(Text(f"held-out file: {message.error}", style="red"))
        elif message.job == "data":
            self.query_one("#data-summary", Static).update(Text("Could not read the data:", style="bold red"))
            self.query_one("#data-errors", Static).update(Text(message.error, style="red"))
            self.query_one("#data-preview", DataTable).clear()  # no stale rows from the previous file
            self.query_one("#data-example", Static).update("")
