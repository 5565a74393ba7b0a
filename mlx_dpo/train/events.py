"""How a run reports what it does: human log lines and structured events, through one `Reporter`.

The session and the trainer call a Reporter; where the reports go is the caller's choice:
- `Reporter(log=...)` passes log lines to a function and drops the structured events (tests, library
  use; `Reporter()` is silent);
- the CLI's console reporter (cli/output.py) prints log lines to stderr and draws a progress bar;
- `JsonEvents` writes every report as one JSON object per line — the channel the app reads from the
  trainer child process (`mlx-dpo train --events`), so it never has to parse human log text.

Events (key "event"; other keys as in the methods below): log, phase, task, start, progress,
metrics, samples, warning, checkpoint, done, stopped, error; `iterate` adds round_start and round (a `note`
travels as a log event).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Callable, TextIO

PHASES = ("load", "data", "reference", "train")  # what a run does before and while it trains

# Set by the CLI under `--events`: an error that must be out before the process may be killed (a rank that
# lost its peers: mlx.launch ends the others at once) sends its event where it arises (announce_error).
_announce = False


def announce_errors() -> None:
    global _announce
    _announce = True


def announce_error(text: str, status: int) -> None:
    if _announce:
        JsonEvents().error(text, status)


class Reporter:
    """The callbacks of a run. Every method but `log` and `note` does nothing here; subclasses pick."""

    def __init__(self, log: Callable[[str], None] | None = None):
        self._log = log

    def log(self, text: str) -> None:
        """A human-readable line (settings chosen, warnings, what was cached or saved)."""
        if self._log is not None:
            self._log(text)

    def note(self, text: str) -> None:
        """A line worth keeping above a progress display (the held-out evaluation of a step)."""
        self.log(text)

    def phase(self, phase: str, text: str) -> None:
        """The run moved on to `phase` (one of PHASES); `text` says what it does now."""

    def task(self, name: str, done: int, total: int, label: str = "") -> None:
        """Progress of a long step before or beside training: `name` is "tokenize", "reference" or
        "eval"; `label` says it for people (which file, which split). done == total ends it."""

    def start(self, step: int, total_steps: int, pairs: int, trainable_parameters: int) -> None:
        """The training loop begins at `step` (0, or the step a resumed run continues after)."""

    def progress(self, step: int, total_steps: int) -> None:
        """Optimizer step `step` is done (before it is logged or checkpointed)."""

    def metrics(self, row: dict) -> None:
        """A metrics row, as appended to metrics.jsonl (training rows have "loss", eval rows "eval/loss")."""

    def checkpoint(self, step: int, path: str) -> None:
        """A resumable checkpoint of `step` is complete at `path`."""

    def samples(self, step: int, samples: list[dict]) -> None:
        """The model's greedy answers to the fixed sample prompts after `step` (0: the starting model), each
        {"prompt", "answer", "tokens", "kl", "repetition"} and, after step 0, "base": the starting model's
        answer (samples.py)."""

    def warning(self, kind: str, message: str) -> None:
        """A health warning (train/health.py KINDS): the run looks fine by its loss but the model is going
        wrong; `message` says what was measured and the fix."""

    def end(self) -> None:
        """The training loop ended (normally or not): close what start() opened."""

    def done(self, step: int, loss: float, accuracy: float, output: str) -> None:
        """The run finished; the adapter is in `output`."""

    def stopped(self, signum: int, checkpoint: str | None) -> None:
        """The run stopped on a signal; `checkpoint` is what it saved (None: nothing yet)."""

    def error(self, text: str, status: int, key: str | None = None, problems: list[dict] | None = None,
              skippable: bool = False, details: dict | None = None) -> None:
        """The run failed with a message for the user; the process exits with `status`. `key`: the setting a
        usage error concerns; `problems`: a data error's problems (errors.Problem.as_dict()); `skippable`:
        --skip-invalid would train on the valid rows; `details`: the error's plain data (UsageError.details,
        e.g. a memory refusal's estimate and suggestions)."""

    def round_start(self, round_: int, rounds: int) -> None:
        """`mlx-dpo iterate`: round `round_` of `rounds` begins (0: the start model's held-out answers)."""

    def round(self, report: dict) -> None:
        """`mlx-dpo iterate`: a round ended (or was found done); `report` is its line of DIR/rounds.jsonl."""


class JsonEvents(Reporter):
    """Every report as a JSON line on `stream` (default stdout), flushed at once.

    A reader that went away (the app quit) must not stop training or saving: write errors are ignored.
    """

    TASK_INTERVAL = 0.25  # seconds between task events of one task (its last one is always sent)

    def __init__(self, stream: TextIO | None = None):
        super().__init__()
        self.stream = stream
        self._task_sent: dict[str, float] = {}

    def emit(self, event: str, **fields) -> None:
        stream = self.stream or sys.stdout
        try:
            stream.write(json.dumps({"event": event, **fields}) + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def log(self, text: str) -> None:
        self.emit("log", text=text)

    def task(self, name, done, total, label="") -> None:
        now = time.monotonic()
        if done < total and now - self._task_sent.get(name, -1e9) < self.TASK_INTERVAL:
            return  # a reader needs a few updates a second, not one per row
        self._task_sent[name] = now
        self.emit("task", name=name, done=done, total=total, label=label)

    def phase(self, phase: str, text: str) -> None:
        self.emit("phase", phase=phase, text=text)

    def start(self, step, total_steps, pairs, trainable_parameters) -> None:
        self.emit("start", step=step, total_steps=total_steps, pairs=pairs,
                  trainable_parameters=trainable_parameters)

    def progress(self, step, total_steps) -> None:
        self.emit("progress", step=step, total_steps=total_steps)

    def metrics(self, row: dict) -> None:
        self.emit("metrics", row=row)

    def checkpoint(self, step, path) -> None:
        self.emit("checkpoint", step=step, path=str(path))

    def samples(self, step, samples) -> None:
        self.emit("samples", step=step, samples=samples)

    def warning(self, kind, message) -> None:
        self.emit("warning", kind=kind, message=message)

    def done(self, step, loss, accuracy, output) -> None:
        self.emit("done", step=step, loss=loss, accuracy=accuracy, output=str(output))

    def stopped(self, signum, checkpoint) -> None:
        self.emit("stopped", signal=signal.Signals(signum).name, status=128 + int(signum),
                  checkpoint=str(checkpoint) if checkpoint else None)

    def error(self, text, status, key=None, problems=None, skippable=False, details=None) -> None:
        fields = {"text": text, "status": status}
        if key is not None:
            fields["key"] = key  # the setting a usage error concerns (the app marks that field)
        if problems:
            fields["problems"] = problems  # a data error's problems: {file, line, field, message, fix}
            fields["skippable"] = skippable  # --skip-invalid would train on the valid rows
        if details:
            fields["details"] = details  # e.g. a run refused for memory: its estimate and the settings that fit
        self.emit("error", **fields)

    def round_start(self, round_, rounds) -> None:
        self.emit("round_start", round=round_, rounds=rounds)

    def round(self, report) -> None:
        self.emit("round", report=report)
