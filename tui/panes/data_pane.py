"""Data: open a pairs file, dataset folder or hub dataset, see its validation report (the schema mapping
used, every problem), a preview, and any pair as the model sees it. The source options (split, subset,
revision, skip invalid rows) are the app's `data_options`, which the Train tab passes to the trainer."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Collapsible, DataTable, Input, Label, OptionList, Static, Switch
from textual.widgets.option_list import Option

from mlx_dpo import DATA_SUFFIXES, cached_datasets, token_table

from ..messages import DataInspected, JobFailed
from ..widgets.path_input import PathInput

SUFFIXES = (*DATA_SUFFIXES, ".gz")  # the files the engine reads, as the path field suggests them
# The source options as the CLI names them (--split, --data-config, --data-revision, --skip-invalid).
DEFAULT_OPTIONS = {"split": "train", "data_config": None, "data_revision": None, "skip_invalid": False}
# (option, label, placeholder, widget id)
OPTION_FIELDS = (("split", "Split", "train", "data-split"), ("data_config", "Subset", "all", "data-subset"),
                 ("data_revision", "Revision", "main", "data-revision"))
PROMPT_LINES = 8  # the rendered prompt's last lines shown above the two answers


def example_header(ex: dict, row: int) -> Text:
    """Which pair, its token counts, and the rendered prompt up to the boundary (▌: scored after it)."""
    if "error" in ex:
        return Text(ex["error"], style="red")
    t = Text()
    t.append(f"row {row + 1} ({ex['source']}) as the model sees it: prompt {ex['prompt_tokens']} tokens | "
             f"chosen {ex['chosen_tokens']} | rejected {ex['rejected_tokens']}"
             f"{' | boundary repaired' if ex['repaired'] else ''}\n", style="dim")
    lines = ex["prompt"].split("\n")
    if len(lines) > PROMPT_LINES:
        t.append(f"… {len(lines) - PROMPT_LINES} earlier lines of the prompt\n", style="dim")
        lines = lines[-PROMPT_LINES:]
    t.append("\n".join(lines), style="grey70")
    t.append("▌", style="bold yellow")
    return t


def answer_text(ex: dict, key: str, style: str) -> Text:
    t = Text("▌", style="bold yellow")  # the boundary: everything after it is scored
    t.append(ex[key], style=style)
    return t


def source_title(options: dict) -> str:
    """The collapsed Source options' title: what will be read, and what happens to invalid rows."""
    parts = [f"split {options['split']}"]
    if options["data_config"]:
        parts.append(f"subset {options['data_config']}")
    if options["data_revision"]:
        parts.append(f"revision {options['data_revision']}")
    parts.append("invalid rows skipped" if options["skip_invalid"] else "invalid rows refuse the data")
    return "Source options: " + " · ".join(parts)


def problems_text(r: dict) -> Text:
    """Every problem, one per line (SOURCE:LINE: field: message), under a line saying what they mean."""
    errors, rep = r["errors"], r["report"]
    skip_invalid = "skipped" in rep  # the choice this inspection ran with
    if not errors:
        return Text("no errors", style="green")
    n, valid = len(errors), rep["valid_pairs"]
    if r.get("fatal"):
        head = "the data cannot be read as a whole (skipping rows does not help):"
    elif skip_invalid:
        head = f"{n} invalid row(s) skipped (Skip invalid rows is on); training uses the {valid} valid pair(s):"
    else:
        head = (f"{n} problem(s): training refuses this data; turn on Skip invalid rows (Source options) to "
                f"train on the {valid} valid pair(s):")
    t = Text(head + "\n", style="bold red" if not skip_invalid or r.get("fatal") else "bold yellow")
    t.append("\n".join(errors[:200]) + (f"\n… {n - 200} more" if n > 200 else ""), style="red")
    return t


def limits_line(rep: dict, max_length: int) -> str:
    """What the token limits did, naming the limit and where to change it."""
    return (f"limits: {rep['truncated']} pair(s) cut to max length {max_length} tokens (prompt kept to "
            f"{max_length // 2}), {rep['dropped']} dropped; {rep['trainable_pairs']} pairs will train — "
            "change max length on the Train tab (F3)")


PREVIEW_COLUMNS = ("line", "format", "prompt", "chosen", "rejected")
MAX_COLUMN_WIDTH = 60  # longer cells are cut; the rendered example below shows one pair in full


class DataPane(VerticalScroll):
    can_focus = False
    KEYS_EXTRA = [("enter", "in a path or source field: load it; in the preview: render that row as the model "
                            "sees it; in the cached datasets: use that dataset")]
    BINDINGS = [Binding("ctrl+l", "load", "Load"), Binding("ctrl+t", "preview", "Preview table"),
                Binding("ctrl+o", "source", "Source options", show=False,
                        tooltip="Source options: split, subset, revision, skip invalid rows, cached datasets")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.example_row = 0

    def compose(self) -> ComposeResult:
        options = self.app.data_options
        with Horizontal(classes="row"):
            yield Label("Data", classes="field-label")
            yield PathInput(self.app.data_path or "", SUFFIXES, id="data-path",
                            placeholder="file, dataset folder or hub id (ORG/NAME)")
            yield Button("Load", id="data-load", variant="primary")
        with Horizontal(classes="row"):
            yield Label("Held-out", classes="field-label")
            yield PathInput(self.app.valid_path or "", SUFFIXES, id="valid-path", placeholder="optional held-out file")
        with Collapsible(title=source_title(options), id="data-source", collapsed=True):
            with Horizontal(id="data-source-form"):
                for name, label, placeholder, wid in OPTION_FIELDS:
                    yield Label(label, classes="source-label")
                    yield Input(options[name] or "", id=wid, placeholder=placeholder, classes="source-input")
            with Horizontal(id="data-skip-row"):
                yield Switch(options["skip_invalid"], id="data-skip-invalid")
                yield Label("Skip invalid rows: train on the valid ones and list the others (--skip-invalid)",
                            id="data-skip-label")
            yield Label("Datasets in the local Hugging Face cache (Enter uses one):", id="data-cached-label")
            yield OptionList(id="data-cached")
        yield Static("Open a pairs file (JSONL, JSON list or Parquet), a dataset folder or a hub dataset id, and press "
                     "Load (ctrl+l).", id="data-summary", markup=False)
        yield Static("", id="data-errors")
        yield Static("", id="valid-summary", markup=False)
        yield DataTable(id="data-preview", zebra_stripes=True, cursor_type="row")
        yield Static("", id="data-example")
        with Horizontal(id="data-answers"):
            yield Static("", id="data-chosen", classes="answer")
            yield Static("", id="data-rejected", classes="answer")

    def on_mount(self) -> None:
        table = self.query_one("#data-preview", DataTable)
        table.add_columns(*PREVIEW_COLUMNS)
        table.border_title = "training rows"
        self.query_one("#data-chosen").border_title = "chosen"
        self.query_one("#data-rejected").border_title = "rejected"
        self.query_one("#data-answers").display = False
        self.list_cached()
        if self.app.data_path:
            self.load()

    def list_cached(self) -> None:
        """The hub datasets with a snapshot in the local cache (a folder scan: no MLX, no network)."""
        found = cached_datasets()
        cached = self.query_one("#data-cached", OptionList)
        cached.clear_options()
        cached.add_options([Option(d, id=d) for d in found] or [Option("(none found)", disabled=True)])

    @on(Collapsible.Expanded, "#data-source")
    def source_shown(self) -> None:
        self.list_cached()  # a dataset downloaded meanwhile shows up

    @on(OptionList.OptionSelected, "#data-cached")
    def use_cached(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#data-path", PathInput).value = event.option.id
        self.load()

    def source_options(self) -> dict:
        """The Source options as the CLI names them; blank fields are the defaults."""
        out = dict(DEFAULT_OPTIONS)
        for name, _, _, wid in OPTION_FIELDS:
            value = self.query_one(f"#{wid}", Input).value.strip()
            out[name] = value or DEFAULT_OPTIONS[name]
        out["skip_invalid"] = self.query_one("#data-skip-invalid", Switch).value
        return out

    @on(Input.Changed, ".source-input")
    @on(Switch.Changed, "#data-skip-invalid")
    def options_changed(self) -> None:
        # What the form shows is what trains: the Train tab reads app.data_options when it starts a run.
        self.app.data_options = self.source_options()
        self.query_one("#data-source", Collapsible).title = source_title(self.app.data_options)

    @on(Switch.Changed, "#data-skip-invalid")
    def skip_changed(self) -> None:
        if self.app.data_path:
            self.load()  # the report says what the problems mean for training

    def focus_first(self) -> None:
        # With data chosen, the focus goes to Load (a button: `?` and the tab's keys work there, nothing types
        # over the path); with none, to the path to type.
        self.app.focus_if_shown(self.query_one("#data-load" if self.app.data_path else "#data-path"))

    def action_load(self) -> None:
        self.load()

    def action_preview(self) -> None:
        self.app.focus_if_shown(self.query_one("#data-preview"))

    def action_open(self) -> None:
        self.app.focus_if_shown(self.query_one("#data-path"))

    def action_source(self) -> None:
        box = self.query_one("#data-source", Collapsible)
        box.collapsed = not box.collapsed
        if not box.collapsed:
            self.call_after_refresh(self.app.focus_if_shown, self.query_one("#data-split"))

    @on(Button.Pressed, "#data-load")
    @on(PathInput.Submitted, "#data-path")
    @on(PathInput.Submitted, "#valid-path")
    @on(Input.Submitted, ".source-input")
    def load(self) -> None:
        path = self.query_one("#data-path", PathInput).value.strip()
        valid = self.query_one("#valid-path", PathInput).value.strip()
        if not path:
            self.app.notify("Enter a pairs file, a dataset folder or a hub dataset id first", severity="warning")
            return
        self.app.data_path, self.app.valid_path = path, valid or None
        self.app.data_options = self.source_options()
        self.example_row = 0
        self.query_one("#data-summary", Static).update(f"Checking {path} …")
        self.query_one("#valid-summary", Static).update(f"Checking held-out {valid} …" if valid else "")
        self.app.inspect_data(self, path)
        if valid:
            self.app.inspect_data(self, valid, job="valid")

    @on(DataTable.RowSelected, "#data-preview")
    def render_row(self, event: DataTable.RowSelected) -> None:
        """Render the chosen row's pair with the chat template (on the engine thread: it needs the tokenizer)."""
        if not self.app.data_path or event.cursor_row == self.example_row:
            return
        self.example_row = event.cursor_row
        self.query_one("#data-example", Static).update(Text(f"rendering row {event.cursor_row + 1} …", style="dim"))
        self.app.inspect_data(self, self.app.data_path, job="example", example=event.cursor_row)

    def on_data_inspected(self, message: DataInspected) -> None:
        if message.job == "valid":
            self.show_valid(message.result)
            return
        if message.job == "example":
            self.show_example(message.result)
            return
        r = message.result
        rep = r["report"]
        fmts = ", ".join(f"{k} {v}" for k, v in sorted(rep["formats"].items())) or "none"
        lines = [f"{rep['file']}: {rep['rows']} rows · {rep['valid_pairs']} valid pairs ({fmts}) · "
                 f"{rep['errors']} error(s)"]
        # Where the rows came from and how their columns were mapped (none for plain prompt/chosen/rejected).
        lines += [line.removeprefix("data: ") for line in r.get("mapping", [])]
        lines += rep.get("hints", [])
        if "tokens" in rep:
            lines += [*token_table(rep), limits_line(rep, self.app.train_settings().max_length)]
        else:
            lines.append("Choose a model on the Model tab to see token statistics and the rendered pair.")
        valid = self.app.valid_path
        train = f"split {rep['source']['split']}" if "source" in rep else "this file"
        lines.append(f"split: train = {train}" + (f"; held-out = {valid}" if valid else "; no held-out file"))
        lines += [f"warning: {w}" for w in r["warnings"]]
        self.query_one("#data-summary", Static).update("\n".join(lines))
        self.query_one("#data-errors", Static).update(problems_text(r))
        self.fill_preview(r["preview"], rep["file"])
        self.show_example(r)

    def show_example(self, r: dict) -> None:
        ex, row = r["example"], r.get("example_index", 0)
        answers = self.query_one("#data-answers")
        answers.display = bool(ex) and "error" not in ex
        self.query_one("#data-example", Static).update(example_header(ex, row) if ex else "")
        if answers.display:
            self.query_one("#data-chosen", Static).update(answer_text(ex, "chosen", "bold green"))
            self.query_one("#data-rejected", Static).update(answer_text(ex, "rejected", "bold red"))

    def fill_preview(self, preview: list[dict], file: str) -> None:
        # Explicit column widths: DataTable's auto-width is measured lazily on idle, which made the
        # layout depend on timing when a second inspection replaced the rows before that happened.
        table = self.query_one("#data-preview", DataTable)
        table.clear(columns=True)
        table.border_title = f"training rows of {file} (first {len(preview)}; Enter renders one)"
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
        elif message.job in ("data", "example"):
            self.query_one("#data-summary", Static).update(Text("Could not read the data:", style="bold red"))
            self.query_one("#data-errors", Static).update(Text(message.error, style="red"))
            self.query_one("#data-preview", DataTable).clear()  # no stale rows from the previous file
            self.query_one("#data-example", Static).update("")
            self.query_one("#data-answers").display = False
