"""Run directories: list them, read their config and metrics (no MLX; safe to use from any thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .fileio import read_jsonl_tolerant


@dataclass
class RunInfo:
    path: Path
    config: dict = field(default_factory=dict)
    train: list[dict] = field(default_factory=list)   # metrics rows with "loss"
    evals: list[dict] = field(default_factory=list)   # metrics rows with "eval/loss"
    checkpoints: list[int] = field(default_factory=list)
    finished: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def last_step(self) -> int:
        return self.train[-1]["step"] if self.train else 0

    def summary(self) -> dict:
        last = self.train[-1] if self.train else {}
        ev = self.evals[-1] if self.evals else {}
        return {"run": self.name, "model": Path(str(self.config.get("model", "?"))).name,
                "data": Path(str(self.config.get("data", "?"))).name, "step": self.last_step,
                "loss": last.get("loss"), "accuracy": last.get("rewards/accuracies"),
                "eval_accuracy": ev.get("eval/rewards/accuracies"),
                "status": "finished" if self.finished else ("checkpointed" if self.checkpoints else "incomplete")}


def read_run(path: str | Path) -> RunInfo:
    p = Path(path)
    info = RunInfo(p)
    try:
        info.config = yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        info.config = {}
    rows = read_jsonl_tolerant(p / "metrics.jsonl")
    info.train = [r for r in rows if "loss" in r]
    info.evals = [r for r in rows if "eval/loss" in r]
    ck = p / "checkpoints"
    if ck.is_dir():
        info.checkpoints = sorted(int(d.name.split("_")[1]) for d in ck.iterdir()
                                  if d.name.startswith("step_") and (d / "state.json").exists())
    total = info.config.get("iters")
    info.finished = bool(total and info.checkpoints and info.checkpoints[-1] >= total) or (
        (p / "adapters.safetensors").exists() and not total and bool(info.checkpoints))
    return info


def list_runs(root: str | Path) -> list[RunInfo]:
    """Run dirs directly under `root` (folders with a config.yaml), newest first."""
    r = Path(root)
    if not r.is_dir():
        return []
    runs = [read_run(d) for d in r.iterdir() if d.is_dir() and (d / "config.yaml").exists()]
    return sorted(runs, key=lambda i: (i.path / "config.yaml").stat().st_mtime, reverse=True)


class MetricsFollower:
    """Incrementally read new complete lines of a growing metrics.jsonl (a torn last line waits)."""

    def __init__(self, path: str | Path):
        self.path, self.offset = Path(path), 0

    def poll(self) -> list[dict]:
        import json

        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for line in chunk[: end + 1].splitlines():
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return rows
