"""Run `mlx-dpo` with crash points patched in: the process kills itself at a named point.

    python tests/crash_points.py [--rank R] [--signal KILL|STOP] NAME:N[,NAME:N...] -- <mlx-dpo args...>

The patches live here, in the test's own process, not in the product: this script wraps a few engine
functions, then calls `mlx_dpo.cli.main(args)` and exits with its status. At a point it kills itself
with SIGKILL (a crash, an OOM kill, a power-off as far as the files are concerned) or, with
`--signal STOP`, SIGSTOP (a hung machine whose sockets stay open). With `--rank R` only the process
whose MLX_RANK is R (set by mlx.launch) is hit; the other ranks run unpatched.

Points (N is a step for the step-numbered ones, otherwise the N-th time the point is reached in this
process):
- reference:N        — the N-th call of reference.score_pairs (the reference being scored)
- reference-write:N  — a file in a "reference" cache folder is complete, not yet renamed into place
- adapter-write:N    — the same for an adapters.safetensors (a checkpoint folder's or RUN_DIR's)
- config-write:N     — the same for config.yaml
- metrics-rewrite:N  — the same for metrics.jsonl (rewritten on resume)
- pairs-write:N, trained-write:N, heldout-write:N, report-write:N, rounds-write:N — the same for
                       iterate's pairs.jsonl, trained.json, heldout.jsonl, report.json and rounds.jsonl
- file-write:N       — the same for any other file written by fileio.atomic_write
- checkpoint-write:STEP — the checkpoint of STEP is half written (no state.json yet)
- checkpoint-saved:STEP — the checkpoint of STEP is in place, RUN_DIR's adapter copy not yet written
- step:STEP          — right after optimizer step STEP, before it is logged or checkpointed
- metrics-write:STEP — half of STEP's training row is appended to metrics.jsonl (a torn last line)
- iterate-append:N   — half of the N-th line `iterate` appends (answers.jsonl, judged.jsonl) is written
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP}


def parse_spec(spec: str) -> dict[str, set[int]]:
    points: dict[str, set[int]] = {}
    for item in spec.split(","):
        name, _, n = item.strip().partition(":")
        if name:
            points.setdefault(name, set()).add(int(n or 1))
    return points


def write_point(path: Path) -> str:
    """The point of an atomic write of `path` (the file is complete, the rename not done)."""
    if path.parent.name == "reference":
        return "reference-write"
    return {"adapters.safetensors": "adapter-write", "config.yaml": "config-write",
            "metrics.jsonl": "metrics-rewrite", "pairs.jsonl": "pairs-write", "trained.json": "trained-write",
            "heldout.jsonl": "heldout-write", "report.json": "report-write",
            "rounds.jsonl": "rounds-write"}.get(path.name, "file-write")


class _OsWithCrashingReplace:
    """fileio's `os`: everything as the real module, but `replace` passes a crash point first."""

    def __init__(self, real, before_replace):
        self._real, self._before_replace = real, before_replace

    def __getattr__(self, name):
        return getattr(self._real, name)

    def replace(self, src, dst, *args, **kwargs):
        self._before_replace(Path(dst))
        return self._real.replace(src, dst, *args, **kwargs)


def install(points: dict[str, set[int]], sig: signal.Signals = signal.SIGKILL) -> None:
    """Patch the engine so this process sends itself `sig` at each of `points`."""
    from mlx_dpo import fileio
    from mlx_dpo.train import checkpoint, events, reference
    # evaluation binds score_pairs by name at import: import it first so held-out scoring stays
    # unpatched and only the reference's own scoring counts for "reference".
    from mlx_dpo.train import evaluation  # noqa: F401

    hits: Counter = Counter()

    def reached(name: str, n: int | None = None) -> None:
        if n is None:
            hits[name] += 1
            n = hits[name]
        if n in points.get(name, ()):
            os.kill(os.getpid(), sig)

    # Every atomic write goes through fileio's own os.replace (and nothing else in fileio renames).
    fileio.os = _OsWithCrashingReplace(os, lambda dst: reached(write_point(dst)))

    score_pairs = reference.score_pairs

    def crashing_score_pairs(*args, **kwargs):
        reached("reference")
        return score_pairs(*args, **kwargs)

    reference.score_pairs = crashing_score_pairs

    write_state = checkpoint._write_state

    def crashing_write_state(folder, step, position):
        reached("checkpoint-write", step)  # the adapter and optimizer files are there, state.json not
        return write_state(folder, step, position)

    checkpoint._write_state = crashing_write_state

    save = checkpoint.save

    def crashing_save(run_dir, step, *args, **kwargs):
        path = save(run_dir, step, *args, **kwargs)
        reached("checkpoint-saved", step)
        return path

    checkpoint.save = crashing_save

    def crashing_progress(progress):
        def wrapped(self, step, total_steps):
            reached("step", step)
            return progress(self, step, total_steps)
        return wrapped

    for cls in (events.Reporter, events.JsonEvents):  # the reporters that define progress themselves
        cls.progress = crashing_progress(cls.__dict__["progress"])

    metrics_write = checkpoint.MetricsLog.write

    def torn_write(self, row: dict):
        if "loss" in row and row.get("step") in points.get("metrics-write", ()):
            line = json.dumps(row) + "\n"
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line[: len(line) // 2])
                fh.flush()
                reached("metrics-write", row["step"])
                fh.write(line[len(line) // 2:])
                fh.flush()
            return
        metrics_write(self, row)

    checkpoint.MetricsLog.write = torn_write

    from mlx_dpo.iterate import rounds

    append_line = rounds.append_line

    def torn_append(path, row):
        if hits["iterate-append"] + 1 in points.get("iterate-append", ()):
            line = (json.dumps(row) + "\n").encode()
            with open(path, "ab") as fh:
                fh.write(line[: len(line) // 2])
                fh.flush()
                os.fsync(fh.fileno())
        reached("iterate-append")
        return append_line(path, row)

    rounds.append_line = torn_append


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: crash_points.py [--rank R] [--signal KILL|STOP] SPEC -- <mlx-dpo args...>")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="crash_points.py")
    parser.add_argument("spec", help='"NAME:N[,NAME:N...]"')
    parser.add_argument("--rank", help="hit only the process whose MLX_RANK is this")
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="KILL")
    opts = parser.parse_args(argv[:cut])
    if opts.rank is None or os.environ.get("MLX_RANK") == opts.rank:
        install(parse_spec(opts.spec), SIGNALS[opts.signal])
    from mlx_dpo.cli import main as cli_main

    return cli_main(argv[cut + 1:])


if __name__ == "__main__":
    sys.exit(main())
