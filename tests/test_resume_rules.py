"""Resume and continue never rewrite what happened: a resumed run keeps the settings its steps trained
with (config.RESUME_MAY_CHANGE says which may change), asks for no step it already has, and a broken
or missing run dir says what to do instead.

One real training (module fixture: 2 steps, a checkpoint after each) is copied for each test.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from mlx_dpo.cli import main
from mlx_dpo.config import RESUME_MAY_CHANGE, TrainConfig
from mlx_dpo.errors import UsageError
from mlx_dpo.iterate.rounds import Iteration, IterateConfig
from mlx_dpo.train import checkpoint as ckpt

from conftest import synthetic_pairs, write_jsonl

STEPS = 2


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """A finished 2-step run with checkpoints step_1 and step_2, and its pairs file."""
    root = tmp_path_factory.mktemp("resume-rules")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(16, seed=1))
    run = root / "run"
    assert main(["train", "--model", tiny_model, "--data", data, "--output", str(run), "--iters", str(STEPS),
                 "--batch-size", "4", "--save-every", "1", "--lr-schedule", "constant",
                 "--cache-dir", str(root / "cache")]) == 0
    return run, data


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run dir (each test may break or continue its own)."""
    return Path(shutil.copytree(trained[0], tmp_path / "run"))


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def resume(run: Path, *extra) -> int:
    return main(["train", "--output", str(run), "--resume", *map(str, extra)])


def error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------- settings that steps 1..k trained with
def test_resume_with_other_data_is_refused_naming_the_runs_data_and_leaves_the_run_dir_as_it_was(
        trained, run, tmp_path, capsys):
    other = write_jsonl(tmp_path / "other.jsonl", synthetic_pairs(16, seed=7))
    before = snapshot(run)
    assert resume(run, "--data", other, "--iters", 4) == 2
    line = error_line(capsys.readouterr().err)
    assert f"this run was trained with data {trained[1]!r} (now {other!r})" in line
    assert f"--init-adapter {run} --output NEW_DIR" in line and "leave out --data" in line
    assert snapshot(run) == before  # config.yaml byte-identical, no step written


def test_resume_with_another_beta_is_refused_naming_the_runs_beta(run, capsys):
    before = snapshot(run)
    assert resume(run, "--beta", 0.5, "--iters", 4) == 2
    line = error_line(capsys.readouterr().err)
    assert "beta 0.1 (now 0.5)" in line and f"--init-adapter {run}" in line
    assert snapshot(run) == before


def test_every_changed_setting_is_named_in_one_refusal(run, capsys):
    assert resume(run, "--loss", "ipo", "--max-length", 512, "--learning-rate", "1e-4", "--iters", 4) == 2
    line = error_line(capsys.readouterr().err)
    for text in ("loss 'sigmoid' (now 'ipo')", "max_length 1024 (now 512)", "learning_rate 5e-05 (now 0.0001)",
                 "leave out --loss, --learning-rate, --max-length"):
        assert text in line, line


def test_resume_with_another_rank_or_model_names_the_runs_and_points_to_a_fresh_run(run, tmp_path, capsys):
    from tiny_models import build_tiny_model

    assert resume(run, "--lora-rank", 16) == 2
    line = error_line(capsys.readouterr().err)
    assert "lora_rank 8 (now 16)" in line and "leave out --lora-rank (or give the run's value)" in line
    assert "another lora_rank needs a new run from scratch in another --output" in line
    assert "--init-adapter " + str(run) not in line  # an init adapter keeps its own rank: no way to another
    saved_model = yaml.safe_load((run / "config.yaml").read_text())["model"]
    other = build_tiny_model(tmp_path / "m32", hidden_size=32, intermediate_size=64)
    assert resume(run, "--model", other) == 2
    line = error_line(capsys.readouterr().err)
    assert f"model {saved_model!r} (now {str(other)!r})" in line and "another model needs a new run" in line


def test_a_trainer_built_in_code_refuses_a_changed_setting_too(trained, tmp_path):
    """The rule lives in the engine (iterate rounds and the API resume through the Trainer)."""
    from mlx_dpo.train.trainer import Trainer

    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    cfg = TrainConfig(**{**saved, "output": str(run), "resume": True, "iters": 4, "seed": 3}).validate()
    with pytest.raises(UsageError, match=r"this run was trained with seed 0 \(now 3\)"):
        Trainer(cfg).setup()


def test_only_declared_settings_may_change_and_they_are_config_fields():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert RESUME_MAY_CHANGE <= names
    assert {"iters", "epochs", "eval_every", "save_every", "log_every"} <= RESUME_MAY_CHANGE
    for fixed in ("model", "data", "beta", "loss", "learning_rate", "lr_schedule", "batch_size", "grad_accum",
                  "seed", "lora_rank", "lora_keys", "max_length", "max_prompt_length", "reference", "valid_data",
                  "valid_split", "split", "template_date", "tokens_per_batch", "share_prompt", "skip_invalid"):
        assert fixed not in RESUME_MAY_CHANGE, fixed


# ---------------------------------------------------------------------- how far
def test_a_larger_iters_continues_and_config_records_only_the_new_total(trained, run, capsys, monkeypatch):
    import os

    before = yaml.safe_load((run / "config.yaml").read_text())
    monkeypatch.chdir(run)  # the run's data named another way (relative to here) is the same data
    assert resume(run, "--iters", STEPS + 1, "--data", os.path.relpath(trained[1], run)) == 0
    assert f"resumed from {ckpt.step_dir(run, STEPS)} (step {STEPS})" in capsys.readouterr().err
    after = yaml.safe_load((run / "config.yaml").read_text())
    assert after == {**before, "iters": STEPS + 1, "output": str(run), "resume": True}  # data as the run wrote it
    assert ckpt.step_dir(run, STEPS + 1).exists()


@pytest.mark.parametrize("iters", [STEPS, STEPS - 1])
def test_iters_at_or_below_the_checkpoint_says_nothing_to_do_and_changes_nothing(run, capsys, iters):
    before = snapshot(run)
    assert resume(run, "--iters", iters) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" not in err
    assert (f"nothing to do: {run} has trained {STEPS} steps (checkpoint {ckpt.step_dir(run, STEPS)}) and "
            f"--iters {iters} asks for no more; nothing was changed. To train further, resume with --iters above "
            f"{STEPS}.") in err
    assert "reference log-probs" not in err  # decided before loading the model or the data
    assert snapshot(run) == before  # config.yaml keeps iters: the run's status is what it was


def test_the_total_of_an_epochs_run_is_known_from_the_checkpoint_before_loading():
    from mlx_dpo.train.resume import planned_steps

    cfg = TrainConfig(epochs=3, grad_accum=2)
    assert planned_steps(cfg, {"step": 2, "batches_per_epoch": 5}) == 3 * 2  # 5 batches // 2 per step
    assert planned_steps(dataclasses.replace(cfg, iters=7), {}) == 7
    assert planned_steps(cfg, {"step": 2}) is None  # an older checkpoint: the trainer decides once it knows


def test_nothing_to_do_repairs_the_run_dirs_adapter_copy_from_its_checkpoint(run, capsys):
    """A kill between the final checkpoint and RUN_DIR's copy: the copy is brought up to the checkpoint."""
    shutil.copy(ckpt.step_dir(run, 1) / "adapters.safetensors", run / "adapters.safetensors")
    assert resume(run, "--iters", STEPS) == 0
    assert "its adapter copy was brought up to that checkpoint" in capsys.readouterr().err
    assert (run / "adapters.safetensors").read_bytes() == \
        (ckpt.step_dir(run, STEPS) / "adapters.safetensors").read_bytes()


# ---------------------------------------------------------------------- run dirs that cannot be resumed
def test_resume_of_a_missing_run_dir_says_so_not_that_data_is_required(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert resume(missing) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {missing}: nothing to resume: no such run dir") and "--data" not in line
    assert not missing.exists()


def test_resume_of_a_folder_without_a_run_says_there_is_nothing_to_resume(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert resume(tmp_path / "empty") == 2
    line = error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'empty'}: nothing to resume (no complete checkpoint" in line and "--data" not in line


def test_a_damaged_newest_checkpoint_names_the_intact_earlier_one_and_the_advice_works(run, capsys):
    newest, earlier = ckpt.step_dir(run, STEPS), ckpt.step_dir(run, STEPS - 1)
    (newest / "optimizer.safetensors").write_bytes(b"\x00" * 7)
    before = snapshot(run)
    assert resume(run, "--iters", STEPS + 1) == 2
    line = error_line(capsys.readouterr().err)
    aside = newest.parent / f"damaged-{newest.name}"
    assert line.startswith(f"error: {newest}: unreadable checkpoint")
    assert f"the earlier checkpoint {earlier} is intact: to resume from it, move the damaged one aside " \
           f"(mv {newest} {aside}) and run --resume again" in line
    assert snapshot(run) == before
    newest.rename(aside)  # what the message says to do
    assert resume(run, "--iters", STEPS + 1) == 0
    assert f"resumed from {earlier} (step {STEPS - 1})" in capsys.readouterr().err
    assert ckpt.step_dir(run, STEPS + 1).exists()


def test_export_of_a_run_dir_with_only_checkpoints_points_at_the_newest_intact_one(run, tiny_model, tmp_path, capsys):
    for name in ("adapters.safetensors", "adapter_config.json"):
        (run / name).unlink()
    (ckpt.step_dir(run, STEPS) / "adapters.safetensors").write_bytes(b"torn")
    out = tmp_path / "export"
    assert main(["export", "--model", tiny_model, "--adapter", str(run), "--output", str(out), "--format", "mlx"]) == 2
    line = error_line(capsys.readouterr().err)
    intact = ckpt.step_dir(run, STEPS - 1)
    assert line == (f"error: {run}: holds no adapter (adapters.safetensors), only the checkpoints of a run: "
                    f"export its newest intact one with --adapter {intact}") and not out.exists()
    # ... and that folder exports (with the run's settings: its config.yaml is found from the checkpoint)
    assert main(["export", "--model", tiny_model, "--adapter", str(intact), "--output", str(out),
                 "--format", "mlx"]) == 0
    assert (out / "adapters.safetensors").read_bytes() == (intact / "adapters.safetensors").read_bytes()


# ---------------------------------------------------------------------- iterate: the same rule for its rounds
def test_a_continued_iteration_refuses_changed_training_settings_but_takes_a_new_iters(tiny_model, tmp_path):
    judge = tmp_path / "judge.py"
    judge.write_text("def judge(messages, answer):\n    return -len(answer)\n")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", synthetic_pairs(4, seed=3))
    out = tmp_path / "it"

    def start(**train):
        return Iteration(IterateConfig(model=tiny_model, prompts=prompts, judge=f"{judge}:judge", output=str(out),
                                       rounds=1, train={"beta": 0.1, "iters": 2, "seed": 0, **train}))

    start()
    saved = (out / "iterate.yaml").read_bytes()
    with pytest.raises(UsageError) as exc:
        start(beta=0.3, learning_rate=1e-4)
    msg = str(exc.value)
    assert "this iteration's rounds were trained with beta 0.1 (now 0.3), learning_rate 5e-05 (now 0.0001)" in msg
    assert "leave out --beta, --learning-rate" in msg and "another --output" in msg
    assert (out / "iterate.yaml").read_bytes() == saved
    start(iters=5, save_every=2)  # how far a round goes and when it saves may change
    assert yaml.safe_load((out / "iterate.yaml").read_text())["train"]["iters"] == 5
