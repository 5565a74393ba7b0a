"""Blind compare: a person judges a run's answers against the base's on held-out prompts.

The engine thread answers every prompt with both sides (MLX) and hands back the engine's Comparison; this
screen shows each prompt's two answers as "1" and "2" in the Comparison's blind order (sides shuffled,
balanced over the prompts), with nothing that says which side wrote which. Each pick is recorded at once by
Comparison.record_pick in RUN_DIR/compare-*.jsonl (never in training data); identical answers are a tie
without asking, as the engine's judges do. At the end (or on Escape) the sides are revealed: wins, ties,
losses of the run, its win rate and 95% interval."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..messages import CompareProgress, CompareReady, JobFailed


def result_line(r: dict) -> str:
    """wins / ties / losses, the win rate and its interval, the judge (a compare result of the engine)."""
    if not r.get("n"):
        return "no verdicts"
    lo, hi = r["ci95"]
    return (f"{r['wins']} wins · {r['ties']} ties · {r['losses']} losses of {r['n']} — win rate {r['win_rate']:.0%} "
            f"(95% interval {lo:.0%}–{hi:.0%}), judge {r.get('judge') or '?'}")


class BlindCompare(Screen[dict | None]):
    """Dismissed with the Comparison's result (None when nothing was judged)."""

    BINDINGS = [Binding("1", "pick('a')", "1 is better"), Binding("2", "pick('b')", "2 is better"),
                Binding("t", "pick('tie')", "Tie"), Binding("escape", "finish", "Stop and reveal")]

    def __init__(self, run_name: str, prompts: str, **kw):
        super().__init__(**kw)
        self.run_name, self.prompts = run_name, prompts
        self.comparison = None
        self.position = 0  # the duel shown now
        self.auto_ties = 0  # identical answers, tied without asking
        self.done = False

    def compose(self) -> ComposeResult:
        with Vertical(id="blind-box"):
            yield Static(f"Blind compare: {self.run_name} against the base on {self.prompts} — which answer is "
                         "better? The sides are shuffled on every prompt; which was which is shown at the end.",
                         id="blind-title", markup=False)
            yield Static("answering the held-out prompts with both sides …", id="blind-progress", markup=False)
            yield Static("", id="blind-prompt", markup=False)
            with VerticalScroll(id="blind-answers"):
                yield Static("", id="blind-1", classes="blind-answer", markup=False)
                yield Static("", id="blind-2", classes="blind-answer", markup=False)
            yield Static("", id="blind-summary", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#blind-1").border_title = "1"
        self.query_one("#blind-2").border_title = "2"
        for wid in ("#blind-prompt", "#blind-answers", "#blind-summary"):
            self.query_one(wid).display = False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "pick":
            return self.comparison is not None and not self.done
        return True

    # ------------------------------------------------------------------ from the engine thread
    def on_compare_progress(self, message: CompareProgress) -> None:
        self.query_one("#blind-progress", Static).update(message.text + " …")

    def on_compare_ready(self, message: CompareReady) -> None:
        self.comparison = message.comparison
        self.position = 0
        self.show_next()
        self.refresh_bindings()

    def on_job_failed(self, message: JobFailed) -> None:
        if message.job != "compare":
            return
        self.done = True
        self.query_one("#blind-progress", Static).update(
            f"could not prepare the comparison: {message.error.strip()} — Escape goes back")
        self.refresh_bindings()

    # ------------------------------------------------------------------ judging
    def show_next(self) -> None:
        """Show the next duel to judge (tie identical answers on the way); reveal after the last."""
        duels = self.comparison.duels
        while self.position < len(duels) and duels[self.position].identical:
            self.comparison.record_pick(duels[self.position], "tie")
            self.auto_ties += 1
            self.position += 1
        if self.position >= len(duels):
            self.reveal()
            return
        duel = duels[self.position]
        same = f" · {self.auto_ties} identical pair(s) tied without asking" if self.auto_ties else ""
        self.query_one("#blind-progress", Static).update(
            f"prompt {self.position + 1} of {len(duels)} · {len(self.comparison.rows)} judged{same} · "
            "1 or 2: the better answer · t: tie · Escape: stop and reveal")
        self.query_one("#blind-prompt", Static).update(Text.assemble(("prompt: ", "bold"), duel.prompt.text))
        self.query_one("#blind-1", Static).update(duel.first or "(empty answer)")
        self.query_one("#blind-2", Static).update(duel.second or "(empty answer)")
        for wid in ("#blind-prompt", "#blind-answers"):
            self.query_one(wid).display = True
        self.query_one("#blind-answers").scroll_home(animate=False)

    def action_pick(self, pick: str) -> None:
        if self.comparison is None or self.done:
            return
        try:
            self.comparison.record_pick(self.comparison.duels[self.position], pick)
        except OSError as e:  # the verdict could not be written: say so, the same duel waits
            self.app.notify(f"not recorded: {e}", severity="error")
            return
        self.position += 1
        self.show_next()

    def reveal(self) -> None:
        """The end: which side the run was, its wins / ties / losses against the base and the win rate."""
        self.done = True
        self.refresh_bindings()
        self.query_one("#blind-answers").display = False
        self.query_one("#blind-prompt").display = False
        rows = self.comparison.rows if self.comparison else []
        summary = self.query_one("#blind-summary", Static)
        if not rows:
            self.query_one("#blind-progress", Static).update("nothing judged, nothing recorded — Escape goes back")
            return
        result = self.comparison.result()
        self.query_one("#blind-progress", Static).update(
            f"done: {len(rows)} of {len(self.comparison.duels)} prompts judged — Escape goes back to Runs")
        order = " · ".join(f"{i + 1}: {'the run' if d.a_first else 'the base'}"
                           for i, d in enumerate(self.comparison.duels[:len(rows)]))
        summary.update(f"Revealed — {self.run_name} against the base: {result_line(result)}.\n"
                       f"Answer 1 was, prompt by prompt — {order}\n"
                       f"Recorded in {result['file']} (not training data).")
        summary.display = True

    def action_finish(self) -> None:
        if self.done:
            self.dismiss(self.comparison.result() if self.comparison and self.comparison.rows else None)
        elif self.comparison is None:
            self.dismiss(None)  # still answering: the engine's job ends by itself; nothing was recorded
        else:
            self.reveal()
