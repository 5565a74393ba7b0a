"""Export: the formats of `mlx-dpo export` with their options, progress, and the verification result."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, LoadingIndicator, RichLog, Select, Static

from ..messages import ExportDone, ExportLog, JobFailed


class ExportPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static("adapter: (pick a run on Runs or train one)", id="export-run")
        with Grid(id="export-form"):
            yield Label("format", classes="form-label")
            yield Select([("Hugging Face, fused (hf)", "hf"), ("PEFT adapter", "peft"), ("mlx-lm adapter", "mlx")],
                         value="hf", allow_blank=False, id="export-format")
            yield Label("dtype", classes="form-label")
            yield Select([("as the base", "base"), ("float32", "float32"), ("float16", "float16"),
                          ("bfloat16", "bfloat16")], value="base", allow_blank=False, id="export-dtype")
            yield Label("re-quantize", classes="form-label")
            yield Select([("no", "none"), ("4-bit (MLX)", "4"), ("8-bit (MLX)", "8")], value="none",
                         allow_blank=False, id="export-quantize")
            yield Label("output", classes="form-label")
            yield Input("", id="export-output", placeholder="new folder")
            yield Label("push to hub", classes="form-label")
            yield Input("", id="export-push", placeholder="optional: user/repo")
        with Horizontal(classes="row buttons"):
            yield Checkbox("verify (reload and compare logits)", value=True, id="export-verify")
            yield Button("Export", id="export-go", variant="primary")
        yield LoadingIndicator(id="export-busy")
        yield Static("", id="export-result")
        yield RichLog(id="export-log", wrap=True, max_lines=500)

    def on_mount(self) -> None:
        self.query_one("#export-busy").display = False
        self.show_run()

    def show_run(self) -> None:
        run = self.app.run_dir
        self.query_one("#export-run", Static).update(f"adapter: {run}" if run else
                                                     "adapter: (pick a run on Runs or train one)")
        if run and not self.query_one("#export-output", Input).value:
            self.query_one("#export-output", Input).value = str(Path(run).parent / f"{Path(run).name}-export")

    @on(Button.Pressed, "#export-go")
    def go(self) -> None:
        run, model = self.app.run_dir, self.app.model
        out = self.query_one("#export-output", Input).value.strip()
        if not (run and model and out):
            self.app.notify("Need a model, a run (adapter) and an output folder", severity="warning")
            return
        dtype = self.query_one("#export-dtype", Select).value
        quant = self.query_one("#export-quantize", Select).value
        options = {"model": model, "adapter": run, "output": out, "format": self.query_one("#export-format", Select).value,
                   "dtype": None if dtype == "base" else dtype, "quantize": None if quant == "none" else int(quant),
                   "verify": self.query_one("#export-verify", Checkbox).value,
                   "push_to_hub": self.query_one("#export-push", Input).value.strip() or None}
        self.query_one("#export-busy").display = True
        self.query_one("#export-go", Button).disabled = True
        self.query_one("#export-result", Static).update("exporting …")
        self.app.engine.export(self, options)

    def finish(self, text: Text) -> None:
        self.query_one("#export-busy").display = False
        self.query_one("#export-go", Button).disabled = False
        self.query_one("#export-result", Static).update(text)

    def on_export_log(self, message: ExportLog) -> None:
        self.query_one("#export-log", RichLog).write(message.line)

    def on_export_done(self, message: ExportDone) -> None:
        self.finish(Text(message.summary, style="bold green"))

    def on_job_failed(self, message: JobFailed) -> None:
        self.finish(Text(message.error, style="bold red"))
