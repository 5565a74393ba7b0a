"""Run control for the trainer: stop signals, out-of-memory detection, the terminal progress bar."""

from __future__ import annotations

import signal


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal after saving a checkpoint; `signum` is SIGINT or SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


OOM_MARKERS = ("out of memory", "outofmemory", "insufficient memory", "malloc", "attempting to allocate",
               "bad_alloc", "failed to allocate", "allocation")


def is_out_of_memory(e: BaseException) -> bool:
    """MLX reports a failed allocation as a RuntimeError ("[metal::malloc] Attempting to allocate ...")."""
    if isinstance(e, MemoryError):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e).lower() for m in OOM_MARKERS)


OOM_ADVICE = ("Try a smaller --batch-size (raise --grad-accum to keep the effective batch), a lower "
              "--max-length, --grad-checkpoint, or --quantize 4; close other apps using memory.")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def install_stop_handlers(trainer):
    """SIGINT/SIGTERM finish the current step, save a checkpoint, then stop (a second one aborts)."""
    def handler(signum, frame):
        if trainer.stop_requested:
            raise Interrupted(signum)  # abort; an unfinished checkpoint write leaves only a temporary
        trainer.stop_requested, trainer.stop_signal = True, signum
        trainer.log(f"{signal.Signals(signum).name}: stopping after this step (checkpointing); "
                    "press Ctrl-C again to abort")

    try:
        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        return {}


def restore_handlers(old):
    for s, h in old.items():
        signal.signal(s, h)


class Progress:
    """A tqdm bar on a terminal; without one (pipes, the app) eval lines go to the log instead."""

    def __init__(self, total, start, enabled, log=print):
        self.bar, self.log = None, log
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, leave=True)

    def update(self, step, row):
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['rewards/accuracies']:.2f}",
                                 margin=f"{row['rewards/margins']:.3f}", tok_s=f"{row['tokens_per_second']:.0f}")

    def note(self, text):
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.log(text)

    def close(self):
        if self.bar is not None:
            self.bar.close()
