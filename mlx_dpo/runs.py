"""Run directories: list them, read their config and metrics (no MLX; safe to use from any thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .fileio import read_jsonl_tolerant


# `mlx-dpo iterate`'s own flags; every other TrainConfig flag given is a training setting of each round (the CLI
# and the app split a form or a command line by this one list).
ITERATE_FLAGS = ("model", "prompts", "judge", "output", "rounds", "samples", "valid_prompts", "reference",
                 "temperature", "top_p", "max_tokens", "min_spread", "judge_prompt", "judge_timeout", "seed", "limit",
                 "prompts_per_round", "valid_limit", "init_adapter", "kl_samples", "eval_temperature", "quantize")

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
        """The folder's name; a round of an iteration (`mlx-dpo iterate`) is named ITERATION/round_N."""
        if is_iteration(self.path.parent):
            return f"{self.path.parent.name}/{self.path.name}"
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


def is_iteration(path: Path) -> bool:
    """A folder of `mlx-dpo iterate` (its round_N are run dirs)."""
    return (path / "iterate.yaml").is_file()


def read_iteration_settings(folder: str | Path) -> dict:
    """The settings an iteration folder started with (its iterate.yaml: iterate's own keys, `rounds`, and
    `train` with the training flags of every round); {} for a folder that is not one or cannot be read."""
    path = Path(folder) / "iterate.yaml"
    if not path.is_file():
        return {}
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return saved if isinstance(saved, dict) else {}


def list_runs(root: str | Path) -> list[RunInfo]:
    """Run dirs directly under `root` (folders with a config.yaml), and the rounds of iterations there
    (ROOT/ITERATION/round_N), newest first."""
    r = Path(root)
    if not r.is_dir():
        return []
    folders = []
    for d in r.iterdir():
        if not d.is_dir():
            continue
        if is_iteration(d):
            folders += [x for x in d.glob("round_*") if x.is_dir()]
        else:
            folders.append(d)
    runs = [read_run(d) for d in folders if (d / "config.yaml").exists()]
    return sorted(runs, key=lambda i: (i.path / "config.yaml").stat().st_mtime, reverse=True)


def read_samples(run_dir: str | Path) -> list[dict]:
    """A run's sample answers (RUN_DIR/samples.jsonl): {"step", "samples": [{"prompt", "answer", "tokens", "kl",
    "repetition", "base"?}]} per evaluation, step 0 the starting model's answers; [] for none."""
    return [r for r in read_jsonl_tolerant(Path(run_dir) / "samples.jsonl") if isinstance(r.get("samples"), list)]


def read_rounds(iteration: str | Path) -> list[dict]:
    """The round reports of an iteration (its rounds.jsonl), round 0 first."""
    return read_jsonl_tolerant(Path(iteration) / "rounds.jsonl")


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
