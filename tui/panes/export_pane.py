"""Export: the formats of `mlx-dpo export` with their options, progress, and the verification result."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, LoadingIndicator, RichLog, Select, Static

from ..messages import ExportDone, ExportLog, JobFailed
from ..widgets.toggle import Toggle


GGUF = ("gguf:f16", "gguf:bf16", "gguf:q8_0", "gguf:q4_k_m", "gguf:q5_k_m", "gguf:q6_k", "gguf:q4_0", "gguf-lora")


class ExportPane(VerticalScroll):
    can_focus = False
    BINDINGS = [Binding("ctrl+s", "export", "Export")]

    def compose(self) -> ComposeResult:
        yield Static("adapter: (pick a run on Runs or train one)", id="export-run", markup=False)
        with Horizontal(classes="row buttons"):
            yield Button("Export", id="export-go", variant="primary")
            yield Toggle("verify (reload and compare logits)", value=True, id="export-verify")
        yield Static("", id="export-result")
        yield LoadingIndicator(id="export-busy")
        with Grid(id="export-form"):
            yield Label("format", classes="form-label")
            yield Select([("Hugging Face, fused (hf)", "hf"), ("PEFT adapter", "peft"), ("mlx-lm adapter", "mlx"),
                          ("GGUF f16 (llama.cpp, Ollama)", "gguf:f16"), ("GGUF bf16", "gguf:bf16"),
                          ("GGUF q8_0 (quantized)", "gguf:q8_0"),
                          ("GGUF q4_k_m (llama.cpp quantizer; smallest common choice)", "gguf:q4_k_m"),
                          ("GGUF q5_k_m (llama.cpp quantizer)", "gguf:q5_k_m"),
                          ("GGUF q6_k (llama.cpp quantizer)", "gguf:q6_k"),
                          ("GGUF q4_0 (llama.cpp quantizer)", "gguf:q4_0"),
                          ("GGUF LoRA adapter + f16 base (llama.cpp, Ollama ADAPTER)", "gguf-lora")],
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
        yield RichLog(id="export-log", wrap=True, max_lines=500)

    def on_mount(self) -> None:
        self.query_one("#export-busy").display = False
        self.query_one("#export-log", RichLog).border_title = "log"
        self.show_run()

    def focus_first(self) -> None:
        go = self.query_one("#export-go", Button)
        self.app.focus_if_shown(go if not go.disabled else self.query_one("#export-log"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":
            buttons = self.query("#export-go")
            return None if not buttons or buttons.first().disabled else True
        return True

    def why_not(self, action: str) -> str:
        return "an export is already going"

    def action_export(self) -> None:
        self.go()

    def show_run(self) -> None:
        run = self.app.run_dir
        self.query_one("#export-run", Static).update(f"adapter: {run}" if run else
                                                     "adapter: (pick a run on Runs or train one)")
        self.default_output()

    @on(Select.Changed, "#export-format")
    def default_output(self) -> None:
        """A fresh `<run>-<format>` folder name, unless the user typed their own."""
        run, out = self.app.run_dir, self.query_one("#export-output", Input)
        fmt = self.query_one("#export-format", Select).value
        for pane_id in ("#export-dtype", "#export-quantize"):  # a GGUF's type is part of its format choice
            self.query_one(pane_id).disabled = fmt in ("mlx", *GGUF) or (pane_id == "#export-quantize" and fmt != "hf")
        if run and (not out.value or out.value == getattr(self, "_suggested", None)):
            base = Path(run).parent / f"{Path(run).name}-{str(fmt).replace(':', '-')}"
            candidate, n = base, 2
            while candidate.exists():
                candidate, n = Path(f"{base}-{n}"), n + 1
            out.value = self._suggested = str(candidate)

    @on(Button.Pressed, "#export-go")
    def go(self) -> None:
        run, model = self.app.run_dir, self.app.model
        out = self.query_one("#export-output", Input).value.strip()
        if not (run and model and out):
            self.app.notify("Need a model, a run (adapter) and an output folder", severity="warning")
            return
        dtype = self.query_one("#export-dtype", Select).value
        quant = self.query_one("#export-quantize", Select).value
        fmt, _, gguf_type = str(self.query_one("#export-format", Select).value).partition(":")
        if fmt in ("gguf", "gguf-lora"):  # the fused model's tensors are the GGUF type: no dtype, no MLX re-quantization
            dtype, quant = "base", "none"
        options = {"model": model, "adapter": run, "output": out, "format": fmt,
                   **({"gguf_type": gguf_type} if gguf_type else {}),
                   "dtype": None if dtype == "base" else dtype, "quantize": None if quant == "none" else int(quant),
                   "verify": self.query_one("#export-verify", Checkbox).value,
                   "push_to_hub": self.query_one("#export-push", Input).value.strip() or None}
        from .chat_pane import ChatPane
        for chat in self.app.query(ChatPane):
            chat.unload()  # the engine frees the chat model before an export loads its own copy
        self.query_one("#export-busy").display = True
        # The focus goes to the log before the button is disabled (it would land on the next control).
        self.app.focus_if_shown(self.query_one("#export-log"))
        self.query_one("#export-go", Button).disabled = True
        self.refresh_bindings()
        self.query_one("#export-result", Static).update("exporting …")
        self.app.engine.export(self, options)

    def finish(self, text: Text) -> None:
        self.query_one("#export-busy").display = False
        self.query_one("#export-go", Button).disabled = False
        self.query_one("#export-result", Static).update(text)
        self.refresh_bindings()
        focused = self.app.focused
        if focused is not None and self in focused.ancestors:
            # Not the Export button: a habitual Enter would export again; the output folder is next.
            self.app.focus_if_shown(self.query_one("#export-output"))

    def on_export_log(self, message: ExportLog) -> None:
        self.query_one("#export-log", RichLog).write(message.line)

    def on_export_done(self, message: ExportDone) -> None:
        self.finish(Text(message.summary, style="bold green"))
        self.default_output()  # the next export gets a fresh folder

    def on_job_failed(self, message: JobFailed) -> None:
        self.finish(Text(message.error, style="bold red"))
