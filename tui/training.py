"""Training as a child process (`mlx-dpo train`), followed through its metrics file and its log.

A crash or out-of-memory in training cannot take the UI down, and its memory is returned when it exits.
Stop sends SIGINT: the trainer finishes the step, writes a checkpoint and exits with status 130.
"""

from __future__ import annotations

import asyncio
import atexit
import signal
import sys
from collections import deque
from pathlib import Path

from textual.message_pump import MessagePump

from mlx_dpo.runs import MetricsFollower

from .messages import TrainingEnded, TrainingLog, TrainingMetrics

POLL_SECONDS = 0.5
_LIVE: set = set()  # running trainers of this app, stopped at exit even if the app crashed


@atexit.register
def _stop_orphans() -> None:
    for proc in list(_LIVE):
        if proc.returncode is None:
            try:
                proc.send_signal(signal.SIGINT)  # the trainer checkpoints and exits
            except ProcessLookupError:
                pass


def train_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mlx_dpo", "train", *args]


class TrainingProcess:
    def __init__(self, target: MessagePump, run_dir: str | Path, args: list[str]):
        self.target, self.run_dir, self.args = target, Path(run_dir), args
        self.proc: asyncio.subprocess.Process | None = None
        self.follower = MetricsFollower(self.run_dir / "metrics.jsonl")
        self.tail: deque[str] = deque(maxlen=20)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def run(self) -> None:
        """Start the trainer and report until it exits (run this as an async worker)."""
        self.proc = await asyncio.create_subprocess_exec(
            *train_command(self.args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL)
        _LIVE.add(self.proc)
        poller = asyncio.create_task(self._poll_metrics())
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)
                self.target.post_message(TrainingLog(line))
        code = await self.proc.wait()
        _LIVE.discard(self.proc)
        poller.cancel()
        self._flush_metrics()
        self.target.post_message(TrainingEnded(code, self._describe(code)))

    def _flush_metrics(self) -> None:
        rows = self.follower.poll()
        if rows:
            self.target.post_message(TrainingMetrics(rows))

    async def _poll_metrics(self) -> None:
        while True:
            self._flush_metrics()
            await asyncio.sleep(POLL_SECONDS)

    def _describe(self, code: int) -> str:
        if code == 0:
            return f"training finished: adapter in {self.run_dir}"
        if code == 130:
            return f"training stopped: checkpoint saved in {self.run_dir / 'checkpoints'}; Resume continues it"
        if code in (-signal.SIGKILL, 137):
            return ("training was killed (out of memory?); the last checkpoint is intact — "
                    "try a smaller batch size or --max-length, then Resume")
        last = next((l for l in reversed(self.tail) if l.startswith("error")), self.tail[-1] if self.tail else "")
        return f"training failed (exit status {code}): {last}"

    def stop(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGINT)
