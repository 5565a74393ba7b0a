"""What the CLI prints: log lines on stderr (results go to stdout), and the console Reporter of a run."""

from __future__ import annotations

import os
import sys
import time

from ..train.events import Reporter


def command_name() -> str:
    """How the user runs mlx-dpo: `mlx-dpo`, or the script that launched it (scripts/run.sh names itself in
    MLX_DPO_LAUNCHER: its .venv is not on PATH), so a printed command works as printed."""
    return os.environ.get("MLX_DPO_LAUNCHER") or "mlx-dpo"


def log(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # the reader went away (e.g. the app quit): keep training/saving
        pass


class ConsoleReporter(Reporter):
    """Log lines on stderr and, on a terminal, tqdm bars: tokenizing, the reference pass, evaluation, and
    the training steps (loss, accuracy, margin, tokens/s, ETA).

    Without a terminal (pipes, CI) there are no bars: a line per logged step instead, held-out
    evaluation lines in the log, and a line every TASK_EVERY seconds of a long task (a short one says
    nothing), so a log never goes quiet for minutes while a large file is tokenized.
    """

    TASK_EVERY = 30.0  # seconds between the progress lines of one task, without a terminal

    def __init__(self, show_progress: bool = False, clock=time.monotonic):
        super().__init__(log)
        self.show_progress, self.bar, self.total_steps = show_progress, None, 0
        self.tasks: dict = {}
        self.clock = clock
        self._task_said: dict[str, float] = {}  # task -> when its last line was logged (or it began)

    def task(self, name, done, total, label="") -> None:
        unit = "pair" if name == "tokenize" else "batch"
        if not self.show_progress:
            now = self.clock()
            if done >= total:
                self._task_said.pop(name, None)
            elif now - self._task_said.setdefault(name, now) >= self.TASK_EVERY:
                self._task_said[name] = now
                self.log(f"{label or name}: {done}/{total} {unit}s ({100 * done // max(total, 1)}%)")
            return
        bar = self.tasks.get(name)
        if bar is None:
            from tqdm import tqdm
            bar = self.tasks[name] = tqdm(total=total, desc=label or name, unit=unit, dynamic_ncols=True, leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self.tasks[name]

    def start(self, step, total_steps, pairs, trainable_parameters) -> None:
        self.total_steps = total_steps
        if self.show_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, leave=True)

    def metrics(self, row: dict) -> None:
        if "loss" not in row:
            return
        if self.bar is not None:
            self.bar.n = row["step"]
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['rewards/accuracies']:.2f}",
                                 margin=f"{row['rewards/margins']:.3f}", tok_s=f"{row['tokens_per_second']:.0f}")
        else:
            self.log(step_line(row, self.total_steps))

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.log(text)

    def warning(self, kind: str, message: str) -> None:
        # Above the progress bar, marked so it is not lost among the step lines.
        self.note(f"{_yellow('WARNING')} [{kind}] {message}" if sys.stderr.isatty() else f"WARNING [{kind}] {message}")

    def samples(self, step: int, samples: list[dict]) -> None:
        if samples:  # one line: the first prompt's answer (all of them are in RUN_DIR/samples.jsonl)
            first = samples[0]
            who = "start" if step == 0 else f"step {step}"
            self.note(f"{who} sample: {_short(first['prompt'], 40)!r} -> {_short(first['answer'], 70)!r}")

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def step_line(row: dict, total_steps: int) -> str:
    """One logged training step as a line (where no progress bar is drawn)."""
    return (f"step {row['step']}/{total_steps}: loss {row['loss']:.4f}, accuracy {row['rewards/accuracies']:.3f}, "
            f"margin {row['rewards/margins']:.3f}, {row['tokens_per_second']:.0f} tok/s, "
            f"{row['step_seconds']:.2f} s/step")


def _yellow(text: str) -> str:
    return f"\033[1;33m{text}\033[0m"


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
