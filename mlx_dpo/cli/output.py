"""What the CLI prints: log lines on stderr (results go to stdout), and the console Reporter of a run."""

from __future__ import annotations

import sys

from ..train.events import Reporter


def log(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # the reader went away (e.g. the app quit): keep training/saving
        pass


class ConsoleReporter(Reporter):
    """Log lines on stderr and, on a terminal, a tqdm bar of the steps (loss, accuracy, margin, tok/s).

    Without a terminal (pipes, CI) there is no bar, and held-out evaluation lines go to the log.
    """

    def __init__(self, show_progress: bool = False):
        super().__init__(log)
        self.show_progress, self.bar = show_progress, None

    def start(self, step, total_steps, pairs, trainable_parameters) -> None:
        if self.show_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, leave=True)

    def metrics(self, row: dict) -> None:
        if self.bar is not None and "loss" in row:
            self.bar.n = row["step"]
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['rewards/accuracies']:.2f}",
                                 margin=f"{row['rewards/margins']:.3f}", tok_s=f"{row['tokens_per_second']:.0f}")

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.log(text)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
