"""Stopping a run: stop signals that checkpoint first, and recognising out-of-memory errors."""

from __future__ import annotations

import signal


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal after saving a checkpoint; `signum` is SIGINT or SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """While active, SIGINT/SIGTERM ask the loop to stop after the current step (a second one aborts).

    The loop polls `requested` at step boundaries, checkpoints, then raises Interrupted(signum).
    """

    def __init__(self, log=lambda text: None):
        self.log = log
        self.requested = False
        self.signum = signal.SIGINT
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise Interrupted(signum)  # abort; an unfinished checkpoint write leaves only a temporary
        self.requested, self.signum = True, signum
        self.log(f"{signal.Signals(signum).name}: stopping after this step (checkpointing); "
                 "press Ctrl-C again to abort")

    def __enter__(self) -> "StopSignals":
        try:
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


OOM_MARKERS = ("out of memory", "outofmemory", "insufficient memory", "malloc", "attempting to allocate",
               "bad_alloc", "failed to allocate", "allocation")


def is_out_of_memory(e: BaseException) -> bool:
    """MLX reports a failed allocation as a RuntimeError ("[metal::malloc] Attempting to allocate ...")."""
    if isinstance(e, MemoryError):
        return True
    return isinstance(e, RuntimeError) and any(m in str(e).lower() for m in OOM_MARKERS)


OOM_ADVICE = ("Try a smaller --batch-size (raise --grad-accum to keep the effective batch), a lower "
              "--max-length, --grad-checkpoint, or --quantize 4; close other apps using memory.")
