"""Resumable checkpoints, the metrics log and the lock of a run dir.

RUN_DIR/checkpoints/step_0000100/ holds adapters.safetensors, adapter_config.json,
optimizer.safetensors and state.json. Each is written into a temporary folder that is renamed into
place only when complete, so a kill at any point leaves either the old or the new checkpoint; a write
that fails (disk full) removes its temporary folder and leaves every earlier checkpoint as it was.

RUN_DIR/.lock is held (fcntl.flock) by the trainer using the run dir, so a second trainer is refused.
The kernel releases the lock when the holder exits or is killed: a stale lock cannot block a resume.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..errors import TrainingStopped, UsageError, first_line
from ..fileio import fsync_dir, mlx_writes, read_jsonl_tolerant, write_failure
from ..model.adapters import ADAPTER_CONFIG, ADAPTER_FILE, save_adapter, set_adapter_weights

LOCK_FILE = ".lock"

PREFIX = "step_"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{PREFIX}{step:07d}"


def _remove_stale_temporaries(root: Path) -> None:
    """Temporary folders left by a killed writer (the caller holds the run dir's lock)."""
    for p in root.iterdir():
        if p.name.startswith((".tmp-", ".old-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def save(run_dir: Path, step: int, model, optimizer, adapter_cfg: dict, position: dict | None = None) -> Path:
    root = Path(run_dir) / "checkpoints"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(root)
        final = step_dir(run_dir, step)
        old = root / f".old-{final.name}"
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    except OSError as e:
        raise _write_failed(run_dir, step, e) from None
    try:
        save_adapter(model, tmp, adapter_cfg)
        opt_state = dict(tree_flatten(optimizer.state))
        with mlx_writes(tmp / "optimizer.safetensors"):
            mx.save_safetensors(str(tmp / "optimizer.safetensors"), opt_state)
        _write_state(tmp, step, position)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():  # the same step again (a resumed run): swap, never delete first
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():  # interrupted mid-swap: put the complete one back
            os.replace(old, final)
        if isinstance(e, OSError):
            raise _write_failed(run_dir, step, e) from None
        raise
    return final


def _write_state(folder: Path, step: int, position: dict | None) -> None:
    """state.json, written last: a checkpoint folder without it is incomplete (see checkpoint_dirs).

    Data order and dropout RNG are pure functions of (seed, epoch) and (seed, step), so the step
    restores them; the position is recorded for people and tools reading the checkpoint, and its
    log_window (see log_window) for the metrics row a resumed run writes next.
    """
    (folder / "state.json").write_text(json.dumps({"step": step, **(position or {})}))


def _write_failed(run_dir: Path, step: int, e: OSError) -> TrainingStopped:
    prev = latest(run_dir)
    keep = f"the previous checkpoint {prev} is intact" if prev else "there is no earlier checkpoint"
    why = write_failure(e)
    return TrainingStopped(f"could not write the checkpoint of step {step} in {Path(run_dir) / 'checkpoints'}: "
                           f"{why}; {keep}. Free some space, then resume with --resume.")


def _read(path: Path) -> tuple[int, dict, dict]:
    """A checkpoint's step, optimizer state and adapter tensors; raises whatever the damage causes."""
    step = int(json.loads((path / "state.json").read_text())["step"])
    json.loads((path / ADAPTER_CONFIG).read_text())
    return step, mx.load(str(path / "optimizer.safetensors")), mx.load(str(path / ADAPTER_FILE))


def newest_intact(run_dir: Path, before: Path | None = None) -> Path | None:
    """The newest checkpoint (older than `before`, if given) whose files all read."""
    for path in reversed(checkpoint_dirs(run_dir)):
        if before is not None and int(path.name[len(PREFIX):]) >= int(before.name[len(PREFIX):]):
            continue
        try:
            _read(path)
        except Exception:
            continue
        return path
    return None


def _damaged(run_dir: Path, path: Path, e: Exception) -> UsageError:
    """The error of an unreadable newest checkpoint: the intact earlier one, and how to resume from it."""
    text = f"{path}: unreadable checkpoint ({type(e).__name__}: {first_line(e)})"
    prev = newest_intact(run_dir, before=path)
    if prev is None:
        return UsageError(f"{text}; no earlier checkpoint is intact, so the run cannot continue: start it "
                          "again in another --output")
    aside = path.parent / f"damaged-{path.name}"  # no step_ prefix: checkpoint_dirs no longer sees it
    return UsageError(f"{text}; the earlier checkpoint {prev} is intact: to resume from it, move the damaged one "
                      f"aside (mv {path} {aside}) and run --resume again")


def log_window(run_dir: Path, step: int) -> dict | None:
    """The steps the newest checkpoint (of `step`) holds past the last metrics row: their summed stats,
    tokens, seconds and the row they follow (state.json's log_window; None when the row came last)."""
    path = latest(run_dir)
    try:
        state = json.loads((path / "state.json").read_text()) if path else {}
    except (OSError, ValueError):
        return None
    window = state.get("log_window") if isinstance(state, dict) and state.get("step") == step else None
    return window if isinstance(window, dict) else None


def restore(run_dir: Path, model, optimizer, log=print) -> int:
    """Load the newest complete checkpoint into model and optimizer; return its step."""
    path = latest(run_dir)
    if path is None:
        raise UsageError(f"{run_dir}: nothing to resume (no complete checkpoint)")
    try:
        step, opt, weights = _read(path)
    except Exception as e:
        raise _damaged(run_dir, path, e) from None
    # Names and shapes are checked here: a mismatch is another model or rank (resume refuses those
    # settings before loading, from config.yaml), not damage.
    set_adapter_weights(model, weights, str(path / ADAPTER_FILE))
    optimizer.state = tree_unflatten(list(opt.items()))
    mx.eval(model.parameters(), optimizer.state)
    log(f"resumed from {path} (step {step})")
    return step


class MetricsLog:
    """Append-only metrics.jsonl. On resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, keep_until: int):
        self.path = Path(path)
        if self.path.exists():
            rows = [r for r in read_jsonl_tolerant(self.path) if r.get("step", 0) <= keep_until]
            from ..fileio import atomic_write_text
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def write(self, row: dict):
        line = json.dumps(row) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


class RunLock:
    """An exclusive lock on RUN_DIR/.lock (fcntl.flock: Linux and macOS; released when the process dies)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fh = None

    @property
    def held(self) -> bool:
        return self.fh is not None

    def acquire(self) -> "RunLock":
        if self.fh is not None:
            return self
        import fcntl

        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise UsageError(f"{self.path.parent}: another trainer{who} is using this run dir; wait for it "
                             "to finish or stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self.fh = fh
        return self

    def release(self) -> None:
        if self.fh is not None:
            import fcntl

            try:
                fcntl.flock(self.fh.fileno(), fcntl.LOCK_UN)
            finally:
                self.fh.close()
                self.fh = None
