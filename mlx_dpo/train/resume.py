"""What a resume may do (`train --resume`, a continued `iterate` round): continue the run as it was trained.

- Settings: RUN_DIR/config.yaml records what steps 1..k trained with. A resume that would change one of
  them (anything outside config.RESUME_MAY_CHANGE) is refused before anything is loaded or written,
  naming each setting and the run's value; a new run from the adapter (`--init-adapter RUN_DIR`) is the
  way to train on new settings.
- How far: a total of steps at or below the newest checkpoint's step leaves nothing to do. The run dir is
  left as it is (config.yaml keeps its `iters`, so an unfinished run does not turn "finished"), with
  one repair: RUN_DIR's adapter copy is made equal to that checkpoint's when a kill came between the two
  writes (what the run had done, not a change to it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config import TrainConfig, keep_run_settings, load_run_config, resume_changes, resume_refusal
from ..errors import UsageError
from ..fileio import atomic_write
from ..model.adapters import ADAPTER_CONFIG, ADAPTER_FILE
from .batching import total_steps


class NothingToDo(Exception):
    """The run already has the steps asked for; the message says so (the CLI exits 0, as `make` does
    for a target that is up to date: the run is in the state asked for, and nothing was changed).
    `step` is the checkpoint's step (None on a rank other than 0, which only follows rank 0)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


def checked_config(run_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """`cfg` for resuming the run in `run_dir`: UsageError if it changes a setting of the run, else `cfg`
    with the run's own spelling of its fixed settings (so config.yaml is rewritten as it was)."""
    saved = load_run_config(run_dir)
    changes = resume_changes(saved, cfg)
    if changes:
        raise UsageError(resume_refusal(run_dir, changes))
    return keep_run_settings(saved, cfg)


def checkpoint_state(path: Path) -> dict:
    """A checkpoint's state.json ({} if unreadable: restoring it then reports the damage)."""
    try:
        state = json.loads((Path(path) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return state if isinstance(state, dict) and isinstance(state.get("step"), int) else {}


def planned_steps(cfg: TrainConfig, state: dict) -> int | None:
    """The run's total of optimizer steps, known before the data is loaded: --iters, or --epochs times the
    steps per epoch the checkpoint recorded (data, batch size and accumulation cannot change on resume).
    None when the checkpoint does not say (an older one): the trainer checks again once it knows."""
    if cfg.iters:
        return cfg.iters
    per_epoch = state.get("batches_per_epoch")
    if not isinstance(per_epoch, int) or isinstance(per_epoch, bool) or per_epoch < 1:
        return None
    return total_steps(cfg, per_epoch)


def nothing_to_do(run_dir: Path, checkpoint: Path, step: int, cfg: TrainConfig, total: int) -> NothingToDo:
    asked = f"--iters {cfg.iters}" if cfg.iters else f"--epochs {cfg.epochs or 'default'} ({total} steps)"
    repaired = _sync_run_adapter(run_dir, checkpoint)
    return NothingToDo(f"nothing to do: {run_dir} has trained {step} steps (checkpoint {checkpoint}) and {asked} "
                       f"asks for no more; " + ("its adapter copy was brought up to that checkpoint, nothing else "
                                                 "was changed" if repaired else "nothing was changed")
                       + f". To train further, resume with --iters above {step}.", step)


def _sync_run_adapter(run_dir: Path, checkpoint: Path) -> bool:
    """Make RUN_DIR's adapter files the checkpoint's when they differ (a kill between the checkpoint and
    RUN_DIR's copy); True when something was written."""
    wrote = False
    for name in (ADAPTER_FILE, ADAPTER_CONFIG):
        src, dst = Path(checkpoint) / name, Path(run_dir) / name
        try:
            if dst.exists() and dst.read_bytes() == src.read_bytes():
                continue
            atomic_write(dst, lambda p, src=src: shutil.copyfile(src, p))
        except OSError:
            continue  # the checkpoint is intact and names itself in the message; the copy is a convenience
        wrote = True
    return wrote
