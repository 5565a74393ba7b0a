"""Training as a child process (`mlx-dpo train --events`), followed through its events and metrics file.

A crash or out-of-memory in training cannot take the UI down, and its memory is returned when it exits.
Stop sends SIGINT: the trainer finishes the step, writes a checkpoint and exits with status 130.

With `--events` the trainer (rank 0) writes one JSON object per line on stdout, each with an "event" key:
log, phase, task, start, progress, metrics, checkpoint, done, stopped, error. Those become the Training*
messages; the metrics rows are read from the run's metrics.jsonl instead, which also holds a resumed
run's earlier rows. Any other line (a traceback, mlx.launch's own lines, raw stderr) is shown as it is.

Data-parallel runs go through `mlx.launch` (`-n N` on this machine, or `--hostfile F` across Macs).
Measured with real 2-rank runs of a tiny model (mlx 0.32.4; the hostfile case through an `ssh` stand-in
that runs the command in a pty, as `ssh -tt` does; tests/test_tui_distributed.py keeps the gist):
- SIGINT to mlx.launch alone never reaches the ranks: its I/O loop dies of a KeyboardInterrupt, the
  process waits on for its rank threads, and the ranks train on. So the launcher gets its own session,
  and Stop signals that process group.
- SIGINT to the whole group is right for local ranks: each rank finishes its step, rank 0 checkpoints,
  all exit 130 (the ranks' last lines are no longer forwarded; the launcher's exit line per rank is).
  Signalling only the ranks is not: the launcher SIGTERMs the others as soon as one rank exits non-zero
  (rank 1, which writes nothing, exits first), which can hit rank 0 while it is writing the checkpoint.
- With a hostfile the ranks run behind `ssh -tt`; SIGINT to the ssh clients drops the connections and the
  remote ranks die without a checkpoint. A Ctrl-C byte on the launcher's stdin is forwarded to every
  rank's terminal, which turns it into SIGINT there; the launcher itself is interrupted a moment later
  (so it cannot SIGTERM a rank that is still checkpointing). Ranks that missed the Ctrl-C stop anyway:
  the trainer makes all ranks agree on a stop.
- mlx.launch exits 0 even when a rank failed, so a launched run is judged by what it printed: the
  trainer's "error" and "done" events, a raw "error:" line (a rank that lost its peers may say so only on
  stderr), and the launcher's "Node with rank N exited with code C" (its own format, matched as text).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path

from textual.message_pump import MessagePump

from mlx_dpo import MetricsFollower, UsageError, read_rounds

from .messages import (IterationRound, TrainingEnded, TrainingLog, TrainingMetrics, TrainingPhase, TrainingProgress,
                       TrainingSamples, TrainingStarted, TrainingTask, TrainingWarning)

POLL_SECONDS = 0.5
REMOTE_GRACE = 0.25  # seconds between the Ctrl-C for remote ranks and the SIGINT to the launcher
_LIVE: set = set()  # running trainers of this app, stopped at exit even if the app crashed
LINE_LIMIT = 1 << 20  # longest output line read (asyncio's default of 64 KiB would end the run's reader)

# The trainer: `mlx-dpo train` reporting in JSON events (tests put a stand-in here).
TRAINER = [sys.executable, "-m", "mlx_dpo", "train", "--events"]
# Iterative DPO (`mlx-dpo iterate --events`): the same events per round's training, plus "round" after each
# round and a final "done" naming the rounds; each round is a run dir DIR/round_N.
ITERATOR = [sys.executable, "-m", "mlx_dpo", "iterate", "--events"]
RANK_EXIT_RE = re.compile(r"Node with rank (\d+) (?:exited with code (-?\d+)|was killed)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
STOPPED_CODES = {130, 143, -signal.SIGINT, -signal.SIGTERM}  # a stop that checkpoints, or the launcher's SIGTERM
KILLED_CODES = {137, -signal.SIGKILL}


@atexit.register
def _stop_orphans() -> None:
    for run in list(_LIVE):
        run.stop(at_exit=True)


# ---------------------------------------------------------------------- commands and checks
def find_launcher() -> str | None:
    """mlx.launch of this Python's environment, else the one on PATH."""
    here = Path(sys.executable).parent / "mlx.launch"
    return str(here) if here.exists() else shutil.which("mlx.launch")


def train_command(args: list[str], processes: int = 1, hostfile: str | None = None,
                  launcher: str | None = None, port: int | None = None) -> list[str]:
    """The trainer's command: one process as is, or under mlx.launch (`-n N` here, or a hostfile)."""
    command = [*TRAINER, *args]
    if processes <= 1 and not hostfile:
        return command
    launcher = launcher or find_launcher()
    if not launcher:
        raise UsageError(LAUNCHER_MISSING)
    if hostfile:
        where = ["--hostfile", str(hostfile)]  # the hostfile may name its backend (ring, jaccl, ...)
    else:
        where = ["-n", str(processes), "--backend", "ring"]
    return [launcher, *where, *(["-p", str(port)] if port else []), "--", *command]


LAUNCHER_MISSING = (f"mlx.launch not found (next to {sys.executable} or on PATH); it comes with mlx — "
                    "reinstall mlx in this environment to train on several processes")


def parse_processes(raw: str) -> int:
    raw = raw.strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise UsageError(f"processes: expected a positive whole number, got {raw!r}", key="processes")
    return n


def read_hostfile(path: str) -> list[dict]:
    """The hosts of an mlx.launch hostfile ({"hosts": [...]} or a plain list), checked enough to launch."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"hosts file {path}: not found", key="hostfile")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"hosts file {path}: not valid JSON ({e})", key="hostfile") from None
    backend = data.get("backend", "") if isinstance(data, dict) else ""
    hosts = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(hosts, list) or not hosts:
        raise UsageError(f'hosts file {path}: lists no hosts (expected {{"hosts": [{{"ssh": ..., "ips": [...]}}, '
                         '...]} or a list of such hosts)', key="hostfile")
    for i, h in enumerate(hosts, 1):
        if not isinstance(h, dict) or not h.get("ssh"):
            raise UsageError(f'hosts file {path}: host {i} has no "ssh" name', key="hostfile")
        if backend in ("", "ring") and not h.get("ips"):
            raise UsageError(f'hosts file {path}: host {i} ({h["ssh"]}) has no "ips" (the ring backend connects '
                             "over IP addresses)", key="hostfile")
    return hosts


def check_distribution(processes_raw: str, hostfile_raw: str, batch_size: int) -> tuple[int, str | None]:
    """(number of processes, hostfile or None) from the form, or a UsageError saying what is wrong."""
    processes = parse_processes(processes_raw)
    hostfile = hostfile_raw.strip() or None
    if hostfile:
        hosts = len(read_hostfile(hostfile))
        if processes not in (1, hosts):
            raise UsageError(f"processes: the hosts file lists {hosts} host(s), one process each; set processes "
                             f"to 1 or {hosts}", key="processes")
        processes = hosts
    if batch_size % processes:
        raise UsageError(f"batch size {batch_size} cannot be split evenly over {processes} processes: use a "
                         f"multiple of {processes}", key="processes")
    if (processes > 1 or hostfile) and not find_launcher():
        raise UsageError(LAUNCHER_MISSING, key="processes")
    return processes, hostfile


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """A port p with p .. p+n-1 all free (the ring backend listens on starting port + rank)."""
    for _ in range(100):
        socks = []
        try:
            first = socket.socket()
            socks.append(first)
            first.bind((host, 0))
            port = first.getsockname()[1]
            for i in range(1, n):
                s = socket.socket()
                socks.append(s)
                s.bind((host, port + i))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise UsageError(f"no {n} consecutive free ports on {host} for the ranks")


def parse_event(line: str) -> dict | None:
    """The trainer's structured event on this line, or None for any other output."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


# ---------------------------------------------------------------------- judging a launched run
def rank_exits(lines: list[str]) -> dict[int, int | None]:
    """Each rank's exit status as mlx.launch reported it (None: killed); ranks that exited 0 are not listed."""
    out: dict[int, int | None] = {}
    for line in lines:
        if m := RANK_EXIT_RE.search(line):
            out[int(m.group(1))] = int(m.group(2)) if m.group(2) is not None else None
    return out


def launch_outcome(errors: list[str], lines: list[str], tail: list[str], launcher_code: int, stop_sent: bool,
                   finished: bool, run_dir: Path, processes: int) -> tuple[int, str]:
    """(status, message) of a run under mlx.launch, whose own exit status says little (0 when a rank failed).

    `errors`: the ranks' error events (as "error: TEXT"); `lines`: the launcher's rank-exit lines; `tail`:
    the run's last lines; `finished`: rank 0 sent "done".
    """
    exits = rank_exits(lines)
    ranks = "; ".join(f"rank {r} " + ("was killed" if c is None else f"exited with code {c}")
                      for r, c in sorted(exits.items()))
    if errors:
        more = f" (+{len(errors) - 1} more in the log)" if len(errors) > 1 else ""
        return 1, f"training failed{f' ({ranks})' if ranks else ''}: {errors[0]}{more}"
    if any(c is None or c in KILLED_CODES for c in exits.values()):
        return 137, (f"training was killed ({ranks}; out of memory?); the last checkpoint is intact — "
                     "try a smaller batch size or --max-length, then Resume")
    if exits and all(c in STOPPED_CODES for c in exits.values()):
        checkpoints = run_dir / "checkpoints"
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            return 130, f"training stopped: checkpoint saved in {checkpoints}; Resume continues it"
        return 130, "training stopped before its first checkpoint"
    if exits:  # e.g. a host that ssh could not reach (255), and the others ended by the launcher
        said = next((l for l in reversed(tail) if not RANK_EXIT_RE.search(l)), "")
        hint = " (255: ssh could not run it on that host)" if 255 in exits.values() else ""
        return 1, f"training failed ({ranks}){hint}{': ' + said if said else ''}"
    if finished:
        return 0, f"training finished on {processes} processes: adapter in {run_dir}"
    if stop_sent:
        return 130, "training stopped before its first step"
    last = tail[-1] if tail else ""
    said = f": {last}" if last else ""
    return (launcher_code or 1), f"training failed (mlx.launch exit status {launcher_code}){said}"


# ---------------------------------------------------------------------- the process
class TrainingProcess:
    def __init__(self, target: MessagePump, run_dir: str | Path, args: list[str], processes: int = 1,
                 hostfile: str | None = None, iterate: bool = False, first_round: int = 1):
        """`iterate`: run `mlx-dpo iterate` on the iteration folder `run_dir` (one process); its first
        round is 0 when it answers held-out prompts with the start model, else 1."""
        self.target, self.run_dir, self.args = target, Path(run_dir), args
        self.processes, self.hostfile = processes, hostfile
        self.iterate = iterate
        self.first_round = first_round
        # The reports of the rounds done (an iteration that continues has some), then each "round" event's.
        self.rounds: list[dict] = read_rounds(self.run_dir) if iterate else []
        self.proc: asyncio.subprocess.Process | None = None
        self.follower = MetricsFollower(self.run_dir / "metrics.jsonl")
        self.tail: deque[str] = deque(maxlen=20)
        self.notes: list[str] = []  # the launcher's rank-exit lines, for a launched run's verdict
        self.errors: list[str] = []  # the trainer's error events ("error: TEXT"), each once
        self.warnings: list[dict] = []  # its health warnings (warning events)
        self.error_events: list[dict] = []  # the same events whole: status, the setting (key), data problems
        self.finished = False  # the trainer sent its "done" event
        self.stopped: dict | None = None  # its "stopped" event
        self.stop_sent = False
        self.phases: list[str] = []  # the phases the trainer reported, in order
        self._launcher_signalled = False
        self._held: list[str] = []  # the launcher's own KeyboardInterrupt traceback after a stop, withheld

    @property
    def current_round(self) -> int:
        """The round an iteration works on now: the one after the last reported."""
        return max((int(r["round"]) for r in self.rounds), default=self.first_round - 1) + 1

    @property
    def live_dir(self) -> Path:
        """The run dir being trained: the run's, or the current round's of an iteration."""
        return self.run_dir / f"round_{self.current_round}" if self.iterate else self.run_dir

    @property
    def launched(self) -> bool:
        return self.processes > 1 or bool(self.hostfile)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def command(self) -> list[str]:
        port = free_port_block(self.processes) if self.launched and not self.hostfile else None
        return train_command(self.args, self.processes, self.hostfile, port=port)

    async def run(self) -> None:
        """Start the trainer and report until it exits (run this as an async worker)."""
        if self.iterate:
            self.proc = await asyncio.create_subprocess_exec(
                *ITERATOR, *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, limit=LINE_LIMIT)
        elif not self.launched:
            self.proc = await asyncio.create_subprocess_exec(
                *train_command(self.args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, limit=LINE_LIMIT)
        else:
            command = self.command()
            self.target.post_message(TrainingLog(f"$ {' '.join(command)}"))
            if self.hostfile:
                first = read_hostfile(self.hostfile)[0]["ssh"]
                self.target.post_message(TrainingLog(
                    f"rank 0 runs on the first host ({first}) and writes the run dir there: list this Mac first to "
                    "follow the run here; the model and data paths must exist on every host"))
            # Its own session: Stop signals the launcher's group, and ssh cannot stop on a terminal prompt.
            # stdin is a pipe: a Ctrl-C written there reaches remote ranks (and /dev/null would spin its loop).
            self.proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.PIPE, start_new_session=True, limit=LINE_LIMIT)
        _LIVE.add(self)  # stays there if this worker is cancelled (the app closing): stopped at exit
        old_handlers = self._stop_with_the_app() if self.launched else {}
        poller = asyncio.create_task(self._poll_metrics())
        try:
            assert self.proc.stdout is not None
            async for raw in self.proc.stdout:
                self._line(ANSI_RE.sub("", raw.decode("utf-8", "replace")).rstrip())
            code = await self.proc.wait()
        finally:
            poller.cancel()
        _LIVE.discard(self)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        for line in self._held:
            self._show(line)
        self._flush_metrics()
        if self.launched:
            code, text = launch_outcome(self.errors, self.notes, list(self.tail), code, self.stop_sent, self.finished,
                                        self.run_dir, self.processes)
            if code == 130 and (self.stopped is not None or text.startswith("training stopped before")):
                text = self.stopped_text()  # rank 0's "stopped" event says what was saved
        else:
            text = self._describe(code)
        self.target.post_message(TrainingEnded(code, text))

    def _line(self, line: str) -> None:
        if not line:
            return
        if (event := parse_event(line)) is not None:
            try:
                self._event(event)
            except (KeyError, TypeError, ValueError):  # an event this app cannot read: shown as it came
                self._show(line)
            return
        if self.launched:
            # After a stop, mlx.launch prints the traceback of its own KeyboardInterrupt: noise, not news.
            if self.stop_sent and (self._held or line.startswith("Traceback (most recent call last)")):
                self._held.append(line)
                if line == "KeyboardInterrupt":
                    self._held = []
                elif not line.startswith((" ", "Traceback")):
                    held, self._held = self._held, []
                    for h in held:
                        self._show(h)
                return
            if RANK_EXIT_RE.search(line):
                self.notes.append(line)
        if line not in self.errors:  # the CLI prints an error on stderr as well as sending its event
            self._show(line)

    def _event(self, event: dict) -> None:
        kind = event["event"]
        if kind == "log":
            self._show(str(event["text"]))
        elif kind == "phase":
            self.phases.append(str(event["phase"]))
            self.target.post_message(TrainingPhase(str(event["phase"]), str(event["text"])))
        elif kind == "task":
            self.target.post_message(TrainingTask(str(event["name"]), int(event["done"]), int(event["total"]),
                                                  str(event.get("label") or event["name"])))
        elif kind == "start":
            if self.iterate:  # a round's training begins: follow its run dir's metrics from the start
                self._flush_metrics()
                self.follower = MetricsFollower(self.live_dir / "metrics.jsonl")
            self.target.post_message(TrainingStarted(int(event["total_steps"]), int(event["step"])))
        elif kind == "progress":
            self.target.post_message(TrainingProgress(int(event["step"]), int(event["total_steps"])))
        elif kind == "round":
            report = dict(event["report"])
            self._flush_metrics()  # the round's last rows before its report
            self.rounds = [r for r in self.rounds if r.get("round") != report["round"]] + [report]
            self.target.post_message(IterationRound(report))
        elif kind == "done":
            self.finished = True
        elif kind == "stopped":
            self.stopped = event
        elif kind == "error":
            self._error(event)
        elif kind == "samples":
            self.target.post_message(TrainingSamples(int(event["step"]), list(event["samples"])))
        elif kind == "warning":
            self.warnings.append(event)
            self._show(f"warning: {event['message']}")
            self.target.post_message(TrainingWarning(str(event["kind"]), str(event["message"])))
        # "metrics" rows come from metrics.jsonl; "checkpoint" is also a log line; newer kinds are skipped.

    def _error(self, event: dict) -> None:
        line = f"error: {event['text']}"
        if line not in self.errors:  # one error may come as two events (a lost rank says so at once, then exits)
            self.errors.append(line)
            self.error_events.append(event)
            if line not in self.tail:
                self._show(line)

    def _show(self, line: str) -> None:
        self.tail.append(line)
        self.target.post_message(TrainingLog(line))

    def _flush_metrics(self) -> None:
        rows = self.follower.poll()
        if rows:
            self.target.post_message(TrainingMetrics(rows))

    async def _poll_metrics(self) -> None:
        while True:
            self._flush_metrics()
            await asyncio.sleep(POLL_SECONDS)

    @property
    def what(self) -> str:
        return "iteration" if self.iterate else "training"

    def _describe(self, code: int) -> str:
        if code == 0 and self.iterate:
            done = [r for r in self.rounds if r.get("round", 0) > 0]
            last = done[-1].get("adapter") if done else None
            return f"iteration finished: {len(done)} round(s) in {self.run_dir}" + (
                f"; the last adapter is {last}" if last else "")
        if code == 0:
            return f"training finished: adapter in {self.run_dir}"
        if code == 130 or (code == -signal.SIGINT and self.stop_sent):  # -2: stopped before its handler was set
            return self.stopped_text()
        if code in (-signal.SIGKILL, 137):
            return (f"{self.what} was killed (out of memory?); the last checkpoint is intact — "
                    "try a smaller batch size or --max-length, then Resume")
        last = self.errors[-1] if self.errors else (self.tail[-1] if self.tail else "")
        return f"{self.what} failed (exit status {code}): {last}"

    @property
    def reference_cached(self) -> bool:
        """The reference log-probs were scored (and so cached) before the stop: the train phase began."""
        return "reference" in self.phases and "train" in self.phases

    def stopped_text(self) -> str:
        """What a stop really left behind: the checkpoint the "stopped" event names, or nothing."""
        if self.iterate:  # every finished stage of a round is kept; a round's training resumes at its checkpoint
            checkpoint = self.stopped.get("checkpoint") if self.stopped is not None else None
            saved = f" (the round's training checkpoint: {checkpoint})" if (
                checkpoint and Path(checkpoint).parent.parent == self.live_dir) else ""
            return (f"iteration stopped in round {self.current_round}{saved}: what it finished is kept; "
                    "Resume (ctrl+r) continues it")
        checkpoint = self.stopped.get("checkpoint") if self.stopped is not None else None
        if checkpoint is None and self.stopped is None:  # no event (an older trainer): look on disk
            saved = sorted((self.run_dir / "checkpoints").glob("step_*"))
            checkpoint = str(saved[-1]) if saved else None
        if checkpoint:
            return f"training stopped: checkpoint saved in {checkpoint}; Resume (ctrl+r) continues it"
        text = "training stopped before its first checkpoint: nothing was saved"
        if self.reference_cached:
            text += "; the reference log-probs are cached, a new start is fast"
        return text

    # ------------------------------------------------------------------ stopping
    def stop(self, at_exit: bool = False) -> None:
        """Ask every process of the run to checkpoint and exit (a second call aborts, as a second Ctrl-C)."""
        if not self.running:
            return
        if at_exit and self.stop_sent:  # never a second signal to a run that is already checkpointing,
            if self.hostfile and not self._launcher_signalled:  # but finish a stop cut short by the exit
                time.sleep(REMOTE_GRACE)
                self._interrupt_launcher()
            return
        self.stop_sent = True
        try:
            if not self.launched:
                self.proc.send_signal(signal.SIGINT)
            elif not self.hostfile:
                os.killpg(self.proc.pid, signal.SIGINT)  # the launcher and its local ranks
            else:
                self._ctrl_c_remote()
                if at_exit:
                    time.sleep(REMOTE_GRACE)
                    self._interrupt_launcher()
                else:
                    asyncio.get_running_loop().call_later(REMOTE_GRACE, self._interrupt_launcher)
        except ProcessLookupError:
            pass

    def _ctrl_c_remote(self) -> None:
        """A Ctrl-C on the launcher's stdin: forwarded to each rank's `ssh -tt` terminal, a SIGINT there."""
        try:
            os.write(self.proc.stdin.get_extra_info("pipe").fileno(), b"\x03")
        except (OSError, AttributeError, ValueError):
            pass

    def _interrupt_launcher(self) -> None:
        self._launcher_signalled = True
        try:
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass

    def _stop_with_the_app(self) -> dict:
        """SIGHUP (terminal closed) or SIGTERM to the app: stop the launched run first (it is in its own
        session, so it would not get the hangup), then die of that signal as before."""
        def handler(signum, frame):
            _stop_orphans()
            signal.signal(signum, old.get(signum) or signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        old = {}
        try:
            for sig in (signal.SIGHUP, signal.SIGTERM):
                current = signal.getsignal(sig)
                if current in (signal.SIG_DFL, None):  # leave a handler someone else installed alone
                    old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
        return old
