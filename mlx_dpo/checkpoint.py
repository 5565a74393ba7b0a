"""Resumable checkpoints and the metrics log of a run dir.

RUN_DIR/checkpoints/step_0000100/ holds adapters.safetensors, adapter_config.json,
optimizer.safetensors and state.json. Each is written into a temporary folder that is renamed into
place only when complete, so a kill at any point leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from .errors import UsageError
from .io import read_jsonl_tolerant
from .model import save_adapter, load_adapter_weights

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


def save(run_dir: Path, step: int, model, optimizer, adapter_cfg: dict, position: dict | None = None) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(run_dir, step)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_adapter(model, tmp, adapter_cfg)
        opt_state = dict(tree_flatten(optimizer.state))
        mx.save_safetensors(str(tmp / "optimizer.safetensors"), opt_state)
        # Data order and dropout RNG are pure functions of (seed, epoch) and (seed, step), so the
        # step restores them; the position is recorded for people and tools reading the checkpoint.
        (tmp / "state.json").write_text(json.dumps({"step": step, **(position or {})}))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def restore(run_dir: Path, model, optimizer, log=print) -> int:
    """Load the newest complete checkpoint into model and optimizer; return its step."""
    path = latest(run_dir)
    if path is None:
        raise UsageError(f"{run_dir}: nothing to resume (no complete checkpoint)")
    try:
        step = int(json.loads((path / "state.json").read_text())["step"])
        opt = mx.load(str(path / "optimizer.safetensors"))
    except Exception as e:
        raise UsageError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    load_adapter_weights(model, path)
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
            from .io import atomic_write_text
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def write(self, row: dict):
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
