"""Signals, the run-dir lock, out of memory, a full disk, torn logs, and trust boundaries."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import pytest
import yaml

from mlx_dpo.train import checkpoint as ckpt
from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.errors import TrainingStopped
from mlx_dpo.fileio import atomic_write, read_jsonl_tolerant
from mlx_dpo.runs import MetricsFollower
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl


def _train_args(model, data, out, *extra):
    return ["train", "--model", model, "--data", data, "--output", str(out), "--batch-size", "4",
            "--lr-schedule", "constant", "--learning-rate", "1e-3", *map(str, extra)]


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ======================================================================= signals and the lock

def test_sigterm_checkpoints_exits_143_and_the_lock_refuses_a_second_trainer(tiny_model, pairs_file, tmp_path,
                                                                              capsys):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mlx_dpo",
                             *_train_args(tiny_model, pairs_file, run, "--iters", 100000, "--save-every", 2)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ckpt.latest(run):
            time.sleep(0.1)
        assert ckpt.latest(run), "no checkpoint within 120 s"
        # A second trainer on the same run dir is refused while the first holds it, and writes nothing.
        before = (run / "config.yaml").read_bytes()
        assert main(["train", "--output", str(run), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"{run}: another trainer (pid {proc.pid}) is using this run dir" in err, err
        assert (run / "config.yaml").read_bytes() == before
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    _no_traceback(err)
    assert "stopped by SIGTERM" in err
    last = ckpt.latest(run)
    step = int(last.name.split("_")[1])
    rows = [r for r in read_jsonl_tolerant(run / "metrics.jsonl") if "loss" in r]
    assert rows[-1]["step"] == step  # the checkpoint is of the last step run, not of an older one
    # The lock went with the process: the run resumes.
    assert main(["train", "--output", str(run), "--resume", "--iters", str(step + 1)]) == 0
    assert f"resumed from {last} (step {step})" in capsys.readouterr().err


def test_lock_refuses_and_is_released(tiny_model, pairs_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(tiny_model, pairs_file, run, "--iters", 1)) == 0
    capsys.readouterr()
    holder = ckpt.RunLock(run).acquire()
    try:
        assert main(["train", "--output", str(run), "--resume", "--iters", "2"]) == 2
        assert "another trainer" in capsys.readouterr().err
        assert not ckpt.step_dir(run, 2).exists()
    finally:
        holder.release()
    assert main(["train", "--output", str(run), "--resume", "--iters", "2"]) == 0
    assert ckpt.step_dir(run, 2).exists()


def test_lock_of_a_killed_process_is_not_stale(tmp_path):
    """flock dies with its holder: a SIGKILLed trainer leaves .lock behind but not the lock."""
    (tmp_path / "run").mkdir()
    code = ("import os, signal, sys; from mlx_dpo.train.checkpoint import RunLock; RunLock(sys.argv[1]).acquire(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert (tmp_path / "run" / ".lock").exists()
    ckpt.RunLock(tmp_path / "run").acquire().release()


# ======================================================================= out of memory, non-finite, disk full

OOM = RuntimeError("[metal::malloc] Attempting to allocate 137438953472 bytes which is greater than the "
                   "maximum allowed buffer size of 77309411328 bytes.")


def _make(model, data, out, **kw):
    cfg = dict(model=model, data=data, output=str(out), batch_size=4, learning_rate=1e-3, iters=4,
               lr_schedule="constant", save_every=1)
    cfg.update(kw)
    return Trainer(TrainConfig(**cfg).validate()).setup()


def test_out_of_memory_in_a_step_stops_with_advice_and_keeps_the_checkpoint(tiny_model, pairs_file, tmp_path):
    _make(tiny_model, pairs_file, tmp_path / "run").train(stop_at_step=2)
    kept = _snapshot(tmp_path / "run" / "checkpoints")
    tr = _make(tiny_model, pairs_file, tmp_path / "run", resume=True)

    def step(*a):
        raise OOM
    tr._build_step = lambda: step
    with pytest.raises(TrainingStopped) as exc:
        tr.train()
    msg = str(exc.value)
    assert msg.startswith("out of memory at step 3 ([metal::malloc] Attempting to allocate")
    assert str(ckpt.step_dir(tmp_path / "run", 2)) in msg and "--batch-size" in msg and "--grad-checkpoint" in msg
    assert _snapshot(tmp_path / "run" / "checkpoints") == kept
    # Not every RuntimeError is an OOM: others are not disguised as one.
    tr2 = _make(tiny_model, pairs_file, tmp_path / "run", resume=True)
    tr2._build_step = lambda: (lambda *a: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tr2.train()


def test_out_of_memory_on_the_command_line_exits_1(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    def build(self):
        def step(*a):
            raise MemoryError("std::bad_alloc")
        return step
    monkeypatch.setattr(Trainer, "_build_step", build)
    assert main(_train_args(tiny_model, pairs_file, tmp_path / "run", "--iters", 2)) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and line[0].startswith("error: out of memory at step 1 (std::bad_alloc)")
    assert "Last good checkpoint: none" in line[0]


def test_nonfinite_loss_on_the_command_line_exits_1(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    import numpy as np

    real = Trainer._loss_inputs

    def poisoned(self, batch, denom, *rest):
        inputs = real(self, batch, denom, *rest)
        if self.step >= 1:
            inputs["ref_rejected"] = mx.array(np.full(len(batch.indices), np.nan, np.float32))
        return inputs
    monkeypatch.setattr(Trainer, "_loss_inputs", poisoned)
    assert main(_train_args(tiny_model, pairs_file, tmp_path / "run", "--iters", 3, "--save-every", 1)) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert f"error: non-finite loss at step 2; stopped without saving it. Last good checkpoint: " \
           f"{ckpt.step_dir(tmp_path / 'run', 1)}" in err
    assert ckpt.latest(tmp_path / "run") == ckpt.step_dir(tmp_path / "run", 1)


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(a[0]) if a else None)


@pytest.mark.parametrize("fault", ["mx.save_safetensors", "os.replace", "json.dumps-state"])
def test_disk_full_while_checkpointing_keeps_the_previous_one(tiny_model, pairs_file, tmp_path, capsys,
                                                              monkeypatch, fault):
    run = tmp_path / "run"
    assert main(_train_args(tiny_model, pairs_file, run, "--iters", 1, "--save-every", 1)) == 0
    capsys.readouterr()
    before = _snapshot(run / "checkpoints")
    adapter = (run / "adapters.safetensors").read_bytes()
    if fault == "mx.save_safetensors":
        monkeypatch.setattr(mx, "save_safetensors", _enospc)
    elif fault == "os.replace":
        real = os.replace
        monkeypatch.setattr(os, "replace", lambda a, b: _enospc(b) if "step_" in str(b) else real(a, b))
    else:  # state.json: the last file of the folder
        real_write = Path.write_text
        monkeypatch.setattr(Path, "write_text",
                            lambda self, *a, **k: _enospc(self) if self.name == "state.json" else real_write(self, *a, **k))
    assert main(["train", "--output", str(run), "--resume", "--iters", "3"]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1
    assert "the disk is full" in errors[0]
    assert f"the previous checkpoint {ckpt.step_dir(run, 1)} is intact" in errors[0] or \
           f"the last checkpoint {ckpt.step_dir(run, 1)} is intact" in errors[0]
    assert _snapshot(run / "checkpoints") == before  # no step 2, no temporary left over
    assert (run / "adapters.safetensors").read_bytes() == adapter
    monkeypatch.undo()
    assert main(["train", "--output", str(run), "--resume", "--iters", "3"]) == 0  # and it resumes after


def mlx_disk_full(monkeypatch, where=lambda path: True):
    """A full disk as MLX meets it: mx.save_safetensors writes part of the file, then raises MLX's own
    RuntimeError (errno lost), for each path `where` accepts; and the disk reports no space left."""
    import shutil

    real_save, real_usage = mx.save_safetensors, shutil.disk_usage

    def save(path, arrays, metadata=None):
        if not where(Path(path)):
            return real_save(path, arrays, metadata=metadata or {})
        Path(path).write_bytes(b"\x00" * 100)
        raise RuntimeError("[write] Unable to write 4096 bytes to file.")
    monkeypatch.setattr(mx, "save_safetensors", save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0))


FULL_AT = {  # which write finds the disk full, in a resumed run's step 2
    "checkpoint optimizer": lambda p: p.name == "optimizer.safetensors",
    "checkpoint adapter": lambda p: p.parent.name.startswith(".tmp-") and "adapters" in p.name,
    "final adapter": lambda p: p.parent.name == "run",
}


@pytest.mark.parametrize("where", FULL_AT)
def test_a_full_disk_in_an_mlx_write_stops_with_a_clear_error_and_the_last_checkpoint_loads(
        tiny_model, pairs_file, tmp_path, capsys, monkeypatch, where):
    run = tmp_path / "run"
    assert main(_train_args(tiny_model, pairs_file, run, "--iters", 1, "--save-every", 1)) == 0
    capsys.readouterr()
    before = _snapshot(run / "checkpoints")
    adapter = (run / "adapters.safetensors").read_bytes()
    mlx_disk_full(monkeypatch, FULL_AT[where])
    assert main(["train", "--output", str(run), "--resume", "--iters", "2"]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    errors = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "resume with --resume" in errors[0], err
    if where == "final adapter":  # checkpoint 2 was written whole before the run dir's copy failed
        assert f"could not write {run / 'adapters.safetensors'}: the disk is full; the last checkpoint " \
               f"{ckpt.step_dir(run, 2)} is intact" in errors[0]
        assert ckpt.latest(run) == ckpt.step_dir(run, 2)
    else:
        assert f"could not write the checkpoint of step 2 in {run / 'checkpoints'}: the disk is full; the " \
               f"previous checkpoint {ckpt.step_dir(run, 1)} is intact" in errors[0]
        assert _snapshot(run / "checkpoints") == before  # no step 2, no temporary left over
    assert (run / "adapters.safetensors").read_bytes() == adapter
    assert not [p for p in run.rglob(".*") if p.name != ".lock"]  # no partial file anywhere
    monkeypatch.undo()
    assert main(["train", "--output", str(run), "--resume", "--iters", "2"]) == 0  # the last checkpoint loads
    err = capsys.readouterr().err
    if where == "final adapter":  # step 2 is done: the resume only brings the run dir's copy up to its checkpoint
        assert "nothing to do" in err and "its adapter copy was brought up to that checkpoint" in err
    else:
        assert f"resumed from {ckpt.step_dir(run, 1)}" in err
    assert (run / "adapters.safetensors").read_bytes() == (ckpt.step_dir(run, 2) / "adapters.safetensors").read_bytes()


@pytest.mark.parametrize("fmt", ["hf", "peft"])
def test_a_full_disk_during_an_export_is_a_clear_error_and_writes_nothing(tiny_model, pairs_file, tmp_path,
                                                                          capsys, monkeypatch, fmt):
    run = tmp_path / "run"
    assert main(_train_args(tiny_model, pairs_file, run, "--iters", 1)) == 0
    exports = tmp_path / "exports"
    exports.mkdir()
    capsys.readouterr()
    mlx_disk_full(monkeypatch, lambda p: exports in p.parents)
    out = exports / "out"
    assert main(["export", "--model", tiny_model, "--adapter", str(run), "--output", str(out),
                 "--format", fmt]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert f"error: could not write the export to {out}: the disk is full; nothing was written to {out}. " \
           "Free some space, then run the export again." in err.splitlines()
    assert list(exports.iterdir()) == []  # neither OUT nor a temporary folder


def test_an_mlx_write_failure_is_called_a_full_disk_only_when_the_disk_is_full(tmp_path, monkeypatch):
    import shutil

    from mlx_dpo.fileio import mlx_write_failure, write_failure

    e = RuntimeError("[write] Unable to write 4096 bytes to file.")
    assert mlx_write_failure(RuntimeError("[load] Failed to open file x"), tmp_path / "x") is None
    roomy = mlx_write_failure(e, tmp_path / "x.safetensors")  # this disk has room: something else failed
    assert roomy.filename == str(tmp_path / "x.safetensors")
    assert write_failure(roomy).startswith("the write failed (MLX gives no reason; ") and "GB are free" in \
        write_failure(roomy)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert write_failure(mlx_write_failure(e, tmp_path / "x.safetensors")) == "the disk is full"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_mlx_words_a_failed_write_the_way_we_translate_it(tmp_path):
    from mlx_dpo.fileio import mlx_write_failure

    target = tmp_path / "x.safetensors"
    target.symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(RuntimeError) as e:
        mx.save_safetensors(str(target), {"a": mx.zeros((1000,))})
    assert isinstance(mlx_write_failure(e.value, target), OSError), str(e.value)


def test_a_full_disk_while_iterate_appends_a_line_leaves_no_torn_line(tmp_path, monkeypatch):
    from mlx_dpo.iterate.rounds import append_line, read_lines

    path = tmp_path / "answers.jsonl"
    append_line(path, {"index": 0})
    before, real_write, calls = path.read_bytes(), os.write, []

    def write(fd, data):  # room for 5 bytes: the write takes them and returns 5, the next finds none
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, bytes(data[:5]))
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as e:
        append_line(path, {"index": 1, "answers": ["a long answer"]})
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_bytes() == before  # a rerun appends after a whole line, not after a torn one
    append_line(path, {"index": 1})
    assert read_lines(path) == [{"index": 0}, {"index": 1}]


def test_disk_full_writing_the_reference_cache(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mx, "save_safetensors", _enospc)
    assert main(_train_args(tiny_model, pairs_file, tmp_path / "run", "--iters", 1)) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "error: could not write the reference cache" in err and "the disk is full" in err
    assert not (tmp_path / "run").exists()


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    target = tmp_path / "adapters.safetensors"
    target.write_bytes(b"old")

    def half(p):
        p.write_bytes(b"ne")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["adapters.safetensors"]


def test_a_machine_too_small_refuses_the_run_before_loading_and_force_trains_with_a_warning(
        tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    import mlx_dpo.model.memory

    monkeypatch.setattr(mlx_dpo.model.memory, "machine_memory", lambda: 1000.0)
    assert main(_train_args(tiny_model, pairs_file, tmp_path / "run", "--iters", 1)) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "error: this run needs about" in err and "--force trains anyway" in err
    assert not (tmp_path / "run").exists()
    assert main(_train_args(tiny_model, pairs_file, tmp_path / "run", "--iters", 1, "--force")) == 0
    err = capsys.readouterr().err
    assert "warning: this run needs about" in err and "training anyway (--force)" in err
    assert err.index("training anyway") < err.index("reference log-probs")


# ======================================================================= torn metrics

def test_torn_metrics_lines_are_skipped(tmp_path):
    p = tmp_path / "metrics.jsonl"
    row = json.dumps({"step": 2, "loss": 0.5, "note": "caf\u00e9 \u2603"}, ensure_ascii=False).encode()
    for cut in range(len(row)):  # cut anywhere, even inside a multi-byte character
        p.write_bytes(b'{"step": 1, "loss": 0.7}\n' + row[:cut])
        assert read_jsonl_tolerant(p) == [{"step": 1, "loss": 0.7}]
        f = MetricsFollower(p)
        assert f.poll() == [{"step": 1, "loss": 0.7}]
        with open(p, "ab") as fh:
            fh.write(row[cut:] + b"\n")
        assert f.poll() == [json.loads(row)]  # the torn line is read once it is complete
    p.write_bytes(b'[1, 2]\n"text"\n{"step": 3}\n')
    assert read_jsonl_tolerant(p) == [{"step": 3}]


def test_resume_drops_a_torn_metrics_line(tiny_model, pairs_file, tmp_path):
    run = tmp_path / "run"
    _make(tiny_model, pairs_file, run).train(stop_at_step=2)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss": 0.6')
    _make(tiny_model, pairs_file, run, resume=True).train()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2, 3, 4]


WALL_CLOCK = ("tokens_per_second", "step_seconds", "peak_memory_gb")


def test_a_resume_between_two_metrics_rows_writes_the_next_row_as_an_unresumed_run(tiny_model, pairs_file,
                                                                                    tmp_path):
    _make(tiny_model, pairs_file, tmp_path / "straight", iters=6, log_every=3, save_every=2).train()
    run = tmp_path / "run"
    # Checkpoint 4 comes one step after row 3: the resumed run's row 6 must still cover steps 4-6.
    _make(tiny_model, pairs_file, run, iters=6, log_every=3, save_every=2).train(stop_at_step=4)
    last = _make(tiny_model, pairs_file, run, iters=6, log_every=3, save_every=2, resume=True).train()

    def rows(folder):
        return [{k: v for k, v in r.items() if k not in WALL_CLOCK}
                for r in read_jsonl_tolerant(folder / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows(run)] == [3, 6]
    assert rows(run) == rows(tmp_path / "straight")
    assert {k: v for k, v in last.items() if k not in WALL_CLOCK} == rows(run)[-1]


# ======================================================================= trust boundaries

def test_yaml_config_cannot_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'beta: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}:1: invalid YAML" in err
    assert not marker.exists() and not (tmp_path / "run").exists()


def _custom_code_model(tiny_model, folder: Path, marker: Path) -> Path:
    import shutil

    shutil.copytree(tiny_model, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_file"] = "custom.py"
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                      "from mlx_lm.models.llama import Model, ModelArgs\n")
    return folder


@pytest.mark.parametrize("command", ["validate", "train", "eval", "chat", "export"])
def test_model_code_runs_only_with_trust_remote_code(tiny_model, pairs_file, tmp_path, capsys, monkeypatch, command):
    marker = tmp_path / "code-ran"
    model = str(_custom_code_model(tiny_model, tmp_path / "custom", marker))
    run = tmp_path / "run"
    argv = {"validate": ["validate", pairs_file, "--model", model],
            "train": _train_args(model, pairs_file, run, "--iters", 1),
            "eval": ["eval", "--model", model, "--data", pairs_file],
            "chat": ["chat", "--model", model, "--max-tokens", "2"],
            "export": ["export", "--model", model, "--adapter", str(tmp_path), "--output", str(tmp_path / "x")]}[command]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("/quit\n"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    if command != "export":  # export checks the adapter folder first
        assert "the model folder wants to run its own Python code: custom.py" in err and "--trust-remote-code" in err
    assert not marker.exists() and not run.exists()
    if command == "validate":
        assert main(argv + ["--trust-remote-code"]) == 0
        assert marker.read_text() == "ran"


def test_hub_token_is_never_printed_or_written(tiny_model, pairs_file, tmp_path, capsys, monkeypatch):
    secret = "hf_SeCrEtToKeN0123456789abcdefghijkl"
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.setenv(var, secret)
    run = tmp_path / "run"
    assert main(_train_args(tiny_model, pairs_file, run, "--iters", 2, "--save-every", 1)) == 0
    assert main(["eval", "--model", tiny_model, "--adapter", str(run), "--data", pairs_file, "--json"]) == 0
    out, err = capsys.readouterr()
    assert secret not in out + err
    for f in run.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # No credential-like key (token, hf_token, hub_token, ...); "tokens_per_batch" counts tokens of text.
    assert not [k for k in saved if "token" in k.lower().split("_")]
    # A token cannot get into config.yaml through --config either: the key is refused, the value not echoed.
    cfg = tmp_path / "c.yaml"
    for key in ("token", "hf_token", "use_auth_token"):
        cfg.write_text(yaml.safe_dump({key: secret}))
        assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "r2")]) == 2
        err = capsys.readouterr().err
        assert f"{key}: unknown config key" in err and secret not in err
    assert not (tmp_path / "r2").exists()


def test_data_fields_are_never_used_as_paths(tiny_model, tmp_path, capsys):
    """Row values that look like paths stay text: nothing is read from or written to them."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    elsewhere = tmp_path / "elsewhere"
    rows = [{"prompt": str(victim), "chosen": f"../../{victim.name}", "rejected": str(elsewhere / "x"),
             "system": str(victim), "output": str(elsewhere), "model": str(elsewhere), "adapter": str(elsewhere),
             "cache_dir": str(elsewhere), "file": "/etc/passwd"}] * 2 + synthetic_pairs(6, seed=3)
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    run = tmp_path / "run"
    assert main(["validate", data, "--model", tiny_model]) == 0
    assert main(_train_args(tiny_model, data, run, "--iters", 1)) == 0
    assert victim.read_text() == "precious" and not elsewhere.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["victim.txt", "d.jsonl", "run", "cache"])
