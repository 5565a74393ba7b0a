"""SIGKILL the trainer at many points, resume each time: nothing is lost, nothing torn is read.

The kill points are patched in by the test's own launcher, tests/crash_points.py ("NAME:N"), not by
a hook in the product: the trainer SIGKILLs itself there, which is exactly what a crash, an OOM kill
or a power-off looks like to the files (minus the page cache). After every kill the run dir must hold
only complete checkpoints, the next run must resume from the newest one, and after the last resume
the adapter must equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.train import checkpoint as ckpt
from mlx_dpo.cli import main
from mlx_dpo.fileio import read_jsonl_tolerant

from conftest import synthetic_pairs, write_jsonl

pytestmark = pytest.mark.slow  # real processes / downloads: minutes on a 2-core machine

ITERS = 6
CRASH_POINTS = Path(__file__).with_name("crash_points.py")
# (kill point, what it interrupts). Each entry is one trainer process; the order follows the run's
# progress, so every point is reached (the step numbers are global, the other counts per process).
KILLS = [
    ("reference:1", "scoring the reference, before anything is written"),
    ("reference-write:1", "writing the reference cache (temporary file complete, not renamed)"),
    ("checkpoint-write:1", "writing the first checkpoint (half a folder, no state.json)"),
    ("step:2", "right after an optimizer update, before it is logged or saved"),
    ("adapter-write:2", "replacing RUN_DIR/adapters.safetensors after checkpoint 2"),
    ("metrics-rewrite:1", "rewriting metrics.jsonl on resume"),
    ("metrics-write:4", "appending a metrics row (torn last line)"),
    ("checkpoint-write:5", "writing a checkpoint after a resume"),
    ("checkpoint-saved:6", "after the final checkpoint, before RUN_DIR's final adapter"),
]


def _args(model, data, out):
    return ["train", "--model", model, "--data", data, "--output", str(out), "--iters", str(ITERS),
            "--batch-size", "4", "--save-every", "1", "--lr-schedule", "constant", "--learning-rate", "2e-3",
            "--lora-dropout", "0.1"]



def _run(args, kill=None, timeout=120):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(CRASH_POINTS), kill, "--", *args] if kill else [sys.executable, "-m", "mlx_dpo", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _tensors(path: Path) -> dict:
    return {k: np.array(v) for k, v in mx.load(str(path)).items()}


def _check_run_dir(run: Path) -> int:
    """Every complete checkpoint is whole and readable; return the newest complete step (0 if none)."""
    steps = []
    for d in ckpt.checkpoint_dirs(run):
        state = json.loads((d / "state.json").read_text())
        assert d.name == f"step_{state['step']:07d}"
        for f in ("adapters.safetensors", "optimizer.safetensors"):
            assert _tensors(d / f), f"{d / f} is empty"
        json.loads((d / "adapter_config.json").read_text())
        steps.append(state["step"])
    if (run / "adapters.safetensors").exists():
        assert _tensors(run / "adapters.safetensors")
    for row in read_jsonl_tolerant(run / "metrics.jsonl"):
        assert isinstance(row["step"], int)
    return max(steps, default=0)


def test_sigkill_anywhere_then_resume_is_bit_exact(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(16, seed=11))
    run = tmp_path / "killed"
    for point, what in KILLS:
        last = _check_run_dir(run) if run.exists() else 0
        args = _args(tiny_model, data, run) + (["--resume"] if last else [])
        r = _run(args, kill=point)
        assert r.returncode == -signal.SIGKILL, f"{point} ({what}) was not reached: rc {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr
        if last:
            assert f"resumed from {ckpt.step_dir(run, last)} (step {last})" in r.stderr, (point, r.stderr)
        _check_run_dir(run)

    # The last kill came after the final checkpoint: nothing is left to train, and RUN_DIR's adapter copy
    # (still step 5's) is brought up to that checkpoint without loading anything.
    r = _run(_args(tiny_model, data, run) + ["--resume"])
    assert r.returncode == 0, r.stderr
    assert f"nothing to do: {run} has trained {ITERS} steps (checkpoint {ckpt.step_dir(run, ITERS)})" in r.stderr
    assert "its adapter copy was brought up to that checkpoint" in r.stderr
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # temporaries cleaned

    # The same run without interruptions (in-process; same code, same CPU kernels).
    straight = tmp_path / "straight"
    assert main(_args(tiny_model, data, straight)) == 0
    a, b = _tensors(straight / "adapters.safetensors"), _tensors(run / "adapters.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert (straight / "adapters.safetensors").read_bytes() == (run / "adapters.safetensors").read_bytes()
    for step in range(1, ITERS + 1):  # every checkpoint equals the uninterrupted run's
        for f in ("adapters.safetensors", "optimizer.safetensors"):
            sa, sb = _tensors(ckpt.step_dir(straight, step) / f), _tensors(ckpt.step_dir(run, step) / f)
            assert all(np.array_equal(sa[k], sb[k]) for k in sa), (step, f)
    rows_a = [r for r in read_jsonl_tolerant(straight / "metrics.jsonl") if "loss" in r]
    rows_b = [r for r in read_jsonl_tolerant(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows_b] == list(range(1, ITERS + 1))  # no duplicate, no torn row
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
