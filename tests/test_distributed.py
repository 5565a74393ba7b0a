"""Data-parallel training with `mlx.launch -n 2` (ring backend over loopback) against one process.

Each 2-rank run costs ~20 s here: two MLX processes plus mlx.launch's own I/O loop share two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.train.distributed import WATCHDOG_EXIT, World, check_batch_split, local_batch
from mlx_dpo.errors import UsageError
from tui.training import free_port_block

from conftest import synthetic_pairs, write_jsonl

pytestmark = pytest.mark.slow  # real processes / downloads: minutes on a 2-core machine

LAUNCH = Path(sys.executable).parent / "mlx.launch"
CRASH_POINTS = Path(__file__).with_name("crash_points.py")  # a kill (or a hang) patched in at a named point
TRAIN = ["--batch-size", "4", "--learning-rate", "1e-3", "--max-length", "64", "--lr-schedule", "constant",
         "--lora-rank", "4", "--seed", "3"]


def run_ranks(n: int, args: list[str], env: dict, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = ([str(LAUNCH), "-n", str(n), "--backend", "ring", "-p", str(free_port_block(2)), "--"] if n > 1 else [])
    cmd += [sys.executable, "-m", "mlx_dpo", "train", *args]
    # Its own session, so a timeout can take down the launcher and every rank it started.
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)



@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("dist")
    write_jsonl(root / "train.jsonl", synthetic_pairs(22, seed=1))  # 6 batches of 4, the last one of 2
    write_jsonl(root / "valid.jsonl", synthetic_pairs(6, seed=2))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return root, env, ["--model", tiny_model, "--data", "train.jsonl", *TRAIN]


def adapters(run: Path) -> dict:
    return {k: np.array(v) for k, v in mx.load(str(run / "adapters.safetensors")).items()}


def assert_same_adapter(a: Path, b: Path):
    wa, wb = adapters(a), adapters(b)
    assert wa.keys() == wb.keys()
    scale = max(np.abs(v).max() for v in wa.values())
    assert scale > 1e-3  # the adapter moved: equal-because-untrained would prove nothing
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], atol=1e-4 * scale, err_msg=k)


def reference_files(cache: Path) -> dict:
    return {p.name: {k: np.array(v) for k, v in mx.load(str(p)).items()}
            for p in sorted((cache / "reference").glob("*.safetensors"))}


def test_two_ranks_train_like_one_and_write_one_run_dir(setup):
    root, env, common = setup
    args = [*common, "--valid-data", "valid.jsonl", "--iters", "6", "--eval-every", "3", "--save-every", "3"]
    one = run_ranks(1, [*args, "--output", "runs/one"], {**env, "MLX_DPO_CACHE": str(root / "cache1")}, root)
    assert one.returncode == 0, one.stderr
    before = sorted(p.name for p in root.iterdir())
    two = run_ranks(2, [*args, "--output", "runs/two"], {**env, "MLX_DPO_CACHE": str(root / "cache2")}, root)
    assert two.returncode == 0 and "Traceback" not in two.stderr, two.stdout + two.stderr
    assert sorted(p.name for p in root.iterdir()) == sorted(before + ["cache2"])
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["one", "two"]
    assert_same_adapter(root / "runs/one", root / "runs/two")
    assert sorted(os.listdir(root / "runs/two/checkpoints")) == ["step_0000003", "step_0000006"]

    # The sharded reference precompute equals the one-process one, bit for bit (train and valid).
    ref1, ref2 = reference_files(root / "cache1"), reference_files(root / "cache2")
    assert len(ref1) == 2 and ref1.keys() == ref2.keys()
    for name in ref1:
        for k in ref1[name]:
            np.testing.assert_array_equal(ref2[name][k], ref1[name][k])

    rows = [json.loads(line) for line in (root / "runs/two/metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert sorted(r["n_pairs"] for r in train_rows) == [2, 4, 4, 4, 4, 4]  # global figures: the whole batch
    assert all(r["ranks"] == 2 and len(r["rank_peak_memory_gb"]) == 2 for r in train_rows)
    assert all(r["tokens_per_second"] == pytest.approx(sum(r["rank_tokens_per_second"])) for r in train_rows)
    eval_rows = [r for r in rows if "eval/loss" in r]
    assert [r["eval/n_pairs"] for r in eval_rows] == [6, 6]
    one_rows = [json.loads(line) for line in (root / "runs/one/metrics.jsonl").read_text().splitlines()]
    for a, b in zip([r for r in one_rows if "loss" in r], train_rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4)


def test_two_ranks_pack_like_one_process(setup):
    """Packing (--tokens-per-batch) under mlx.launch: each rank packs its own pairs into rows (the ranks may
    get different row counts); the adapter equals one process's, packed or padded, and the sharded packed
    reference equals the one-process padded one. 22 pairs: the last global batch has 2 (one per rank)."""
    root, env, common = setup
    args = [*common, "--iters", "6", "--valid-data", "valid.jsonl", "--eval-every", "6"]
    env = {**env, "MLX_DPO_CACHE": str(root / "cache-pack1")}
    padded = run_ranks(1, [*args, "--tokens-per-batch", "0", "--output", "runs/pad1"], env, root)
    assert padded.returncode == 0, padded.stderr
    one = run_ranks(1, [*args, "--tokens-per-batch", "48", "--output", "runs/pack1"],
                    {**env, "MLX_DPO_CACHE": str(root / "cache-pack2")}, root)
    assert one.returncode == 0, one.stderr
    two = run_ranks(2, [*args, "--tokens-per-batch", "48", "--output", "runs/pack2"],
                    {**env, "MLX_DPO_CACHE": str(root / "cache-pack3")}, root)
    assert two.returncode == 0 and "Traceback" not in two.stderr, two.stdout + two.stderr
    assert_same_adapter(root / "runs/pack1", root / "runs/pack2")
    assert_same_adapter(root / "runs/pad1", root / "runs/pack2")
    assert "packed, 48 tokens per row" in two.stdout + two.stderr
    ref_padded, ref_two = reference_files(root / "cache-pack1"), reference_files(root / "cache-pack3")
    assert len(ref_two) == 2
    by_size = lambda refs: sorted(refs.values(), key=lambda r: len(r["chosen"]))  # valid (6), then train (22)
    for a, b in zip(by_size(ref_padded), by_size(ref_two)):
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-4)
    rows = [json.loads(line) for line in (root / "runs/pack2/metrics.jsonl").read_text().splitlines()]
    assert sorted(r["n_pairs"] for r in rows if "loss" in r) == [2, 4, 4, 4, 4, 4]
    assert [r["eval/n_pairs"] for r in rows if "eval/loss" in r] == [6]


def test_resume_a_one_process_run_on_two(setup):
    """A checkpoint written by one process continues on two (same global batch) as if never split."""
    root, env, common = setup
    env = {**env, "MLX_DPO_CACHE": str(root / "cache3")}
    full = run_ranks(1, [*common, "--iters", "6", "--output", "runs/full"], env, root)
    assert full.returncode == 0, full.stderr
    first = run_ranks(1, [*common, "--iters", "3", "--save-every", "3", "--output", "runs/split"], env, root)
    assert first.returncode == 0, first.stderr
    second = run_ranks(2, ["--resume", "--iters", "6", "--output", "runs/split"], env, root)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stdout + second.stderr
    assert "resumed" in (second.stdout + second.stderr).lower()
    assert_same_adapter(root / "runs/full", root / "runs/split")
    steps = [json.loads(line)["step"] for line in (root / "runs/split/metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    # Nothing left to train: every rank agrees and ends at once (none waits for a step that never comes).
    again = run_ranks(2, ["--resume", "--iters", "6", "--output", "runs/split"], env, root, timeout=120)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stdout + again.stderr
    assert "nothing to do" in again.stdout + again.stderr


def _launch_and_watch(root, env, args, crash: list[str], marker: str, wait_for: str, limit: float):
    """Start a 2-rank run with `crash` (crash_points.py's options), wait until `wait_for` appears in its
    output, then kill what is left."""
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "-p", str(free_port_block(2)), "--",
           sys.executable, str(CRASH_POINTS), *crash, "--", "train", *args]
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and not any(wait_for in line for line in lines):
        time.sleep(0.2)
    # A SIGSTOPped rank ignores the launcher's SIGTERM: clean up every process of this run.
    subprocess.run(["pkill", "-KILL", "-f", marker], check=False)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
    reader.join(timeout=5)
    return "".join(lines)


def test_a_killed_rank_stops_the_run_with_a_clear_error(setup):
    root, env, common = setup
    out_dir = "runs/killed"
    env = {**env, "MLX_DPO_CACHE": str(root / "cache4")}
    text = _launch_and_watch(root, env, [*common, "--iters", "6", "--save-every", "1", "--output",
                                                  str(root / out_dir)], ["--rank", "1", "step:3"], str(root / out_dir),
                                      "lost the connection to another rank", limit=120)
    assert "rank 0: lost the connection to another rank" in text, text
    assert "Traceback" not in text, text
    # Steps 1 and 2 were checkpointed before rank 1 died; nothing half-written is left as a checkpoint.
    assert sorted(os.listdir(root / out_dir / "checkpoints"))[:2] == ["step_0000001", "step_0000002"]


def test_a_hung_rank_ends_the_run_after_the_timeout(setup):
    root, env, common = setup
    out_dir = str(root / "runs/hung")
    env = {**env, "MLX_DPO_CACHE": str(root / "cache5")}
    text = _launch_and_watch(root, env, [*common, "--iters", "6", "--dist-timeout", "6", "--output",
                                                  out_dir], ["--rank", "1", "--signal", "STOP", "step:2"], out_dir,
                                      "no answer from the other ranks", limit=120)
    assert "rank 0: no answer from the other ranks for 6s" in text, text
    assert f"exited with code {WATCHDOG_EXIT}" in text or "no answer" in text


def test_global_batch_must_split_evenly():
    with pytest.raises(UsageError, match="--batch-size 3 cannot be split evenly over 2 processes"):
        check_batch_split(3, World(rank=0, size=2))
    assert check_batch_split(8, World(rank=1, size=2)) == 4


def test_a_rank_without_pairs_in_a_short_batch_contributes_nothing(tiny_model):
    from types import SimpleNamespace

    pairs = [SimpleNamespace(prompt=[1, 2], chosen=[3, 4], rejected=[5], length=4)]
    batch = local_batch(pairs, [0], World(rank=1, size=2), 2, 8)  # one pair, two ranks: rank 1 gets none
    assert batch.n_pairs == 0 and batch.n_tokens == 0 and batch.inputs.shape == (4, 8)
    mine = local_batch(pairs, [0], World(rank=0, size=2), 2, 8)
    assert mine.n_pairs == 1 and mine.n_tokens == 7  # (2 + 2) + (2 + 1)


def test_ranks_pack_their_own_pairs_and_an_empty_rank_gets_a_weightless_row():
    from types import SimpleNamespace

    from mlx_dpo.train.distributed import local_rows
    from mlx_dpo.train.layout import packed

    pairs = [SimpleNamespace(prompt=[1, 2], chosen=[3, 4, 5], rejected=[6, 7]) for _ in range(3)]
    layout = packed(12)  # a pair takes 2 + 2 + 1 = 5 positions: two pairs per row
    rank0 = local_rows(layout, pairs, [0, 1, 2], World(rank=0, size=2), 8)
    rank1 = local_rows(layout, pairs, [0, 1, 2], World(rank=1, size=2), 8)
    assert [list(r.indices[r.pair_mask > 0]) for r in rank0] == [[0, 2]]  # pairs 0 and 2, one row
    assert [list(r.indices[r.pair_mask > 0]) for r in rank1] == [[1]]
    empty = local_rows(layout, pairs, [0], World(rank=1, size=2), 8)  # one pair, two ranks
    assert len(empty) == 1 and empty[0].n_pairs == 0 and empty[0].n_tokens == 0
