"""The Train tab's view of what the model *does*: its greedy answers to a few held-out prompts at each
evaluation, beside the starting model's (the trainer's `samples` events), and the health warnings (its
`warning` events) — a run can look perfect by its loss while its answers fall apart."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

SHOWN = 3  # prompts shown (the trainer's --sample-prompts default)


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class SamplesPanel(Vertical):
    """Warnings on top (each with its fix), then per sample prompt: the start's answer and the answer now."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.warnings: list[tuple[str, str]] = []  # (kind, message) of this run's warning events
        self.start: dict[str, str] = {}  # prompt -> the starting model's answer (step 0)

    def compose(self) -> ComposeResult:
        yield Static("", id="samples-warnings")
        yield Static(Text("sample answers appear at each evaluation (a held-out file is needed)", style="dim"),
                     id="samples-answers")

    def on_mount(self) -> None:
        self.border_title = "answers now vs at the start"
        self.query_one("#samples-warnings").display = False

    def reset(self) -> None:
        self.warnings, self.start = [], {}
        self.query_one("#samples-warnings", Static).update("")
        self.query_one("#samples-warnings").display = False
        self.query_one("#samples-answers", Static).update(
            Text("sample answers appear at each evaluation (a held-out file is needed)", style="dim"))

    def show_samples(self, step: int, samples: list[dict]) -> None:
        if step == 0:
            self.start = {s["prompt"]: s["answer"] for s in samples}
        out = Text()
        for s in samples[:SHOWN]:
            start = s.get("base", self.start.get(s["prompt"]))
            out.append(f"{_short(s['prompt'], 100)}\n", style="bold")
            if start is not None and step > 0:
                out.append("  start: ", style="dim")
                out.append(f"{_short(start) or '(empty)'}\n", style="dim")
            out.append(f"  step {step}: " if step else "  start: ", style="cyan")
            out.append(f"{_short(s['answer']) or '(empty answer)'}\n")
        self.query_one("#samples-answers", Static).update(out)

    def show_warning(self, kind: str, message: str) -> None:
        self.warnings.append((kind, message))
        text = Text()
        for k, m in self.warnings:
            text.append(f"⚠ {k}: ", style="bold yellow")
            text.append(f"{m}\n", style="yellow")
        box = self.query_one("#samples-warnings", Static)
        box.update(text)
        box.display = True
