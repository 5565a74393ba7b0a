"""What the model says while it trains: sample answers at each evaluation, health warnings, --stop-on-collapse.

The runs that must (or must not) warn use the bundled demo model on a slice of its pairs: its answers are
real sentences, so a collapse is one (the tiny random test models answer noise from the start).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.demo import DEMO_MODEL, DEMO_PAIRS, DEMO_VALID
from mlx_dpo.fileio import read_jsonl_tolerant
from mlx_dpo.train.events import Reporter
from mlx_dpo.train.health import BOUNDS, HealthMonitor
from mlx_dpo.train.losses import Loss
from mlx_dpo.train.trainer import Trainer


class Recorder(Reporter):
    def __init__(self):
        super().__init__()
        self.warned, self.sampled = [], []

    def warning(self, kind, message):
        self.warned.append((kind, message))

    def samples(self, step, samples):
        self.sampled.append((step, samples))


@pytest.fixture(scope="module")
def demo_slice(tmp_path_factory):
    """16 demo pairs to train on, 8 held-out ones (their first 3 prompts are the sample prompts)."""
    d = tmp_path_factory.mktemp("demo")
    (d / "train.jsonl").write_text("\n".join(DEMO_PAIRS.read_text().splitlines()[:16]) + "\n")
    (d / "valid.jsonl").write_text("\n".join(DEMO_VALID.read_text().splitlines()[:8]) + "\n")
    return str(d / "train.jsonl"), str(d / "valid.jsonl")


def demo_flags(train, valid, out, lr, iters=6):
    return ["--model", str(DEMO_MODEL), "--data", train, "--valid-data", valid, "--output", str(out),
            "--batch-size", "2", "--lora-rank", "4", "--max-length", "64", "--beta", "0.5",
            "--learning-rate", str(lr), "--iters", str(iters), "--eval-every", "2"]


def events_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_collapsing_run_warns_with_the_fix_and_a_healthy_one_does_not(demo_slice, tmp_path, capsys):
    train, valid = demo_slice
    assert main(["train", *demo_flags(train, valid, tmp_path / "ruined", 5e-3), "--events"]) == 0
    events = events_of(capsys.readouterr().out)
    warnings = [e for e in events if e["event"] == "warning"]
    kinds = [w["kind"] for w in warnings]
    assert "likelihood_displacement" in kinds and len(kinds) == len(set(kinds))  # each kind once
    assert all(set(w) == {"event", "kind", "message"} for w in warnings)
    displacement = next(w["message"] for w in warnings if w["kind"] == "likelihood_displacement")
    assert "--learning-rate (now 0.005)" in displacement and "--beta (now 0.5)" in displacement
    rows = [r for r in read_jsonl_tolerant(tmp_path / "ruined" / "metrics.jsonl") if "eval/loss" in r]
    assert rows[-1]["health/chosen_logratio"] < BOUNDS["likelihood_displacement"][1]
    assert "likelihood_displacement" in rows[-1]["health/warnings"]

    healthy = Recorder()
    cfg = TrainConfig(model=str(DEMO_MODEL), data=train, valid_data=valid, output=str(tmp_path / "fine"),
                      batch_size=2, lora_rank=4, max_length=64, beta=0.5, learning_rate=5e-4, iters=8,
                      eval_every=2).validate()
    Trainer(cfg, healthy).setup().train()
    assert healthy.warned == []
    rows = [r for r in read_jsonl_tolerant(tmp_path / "fine" / "metrics.jsonl") if "eval/loss" in r]
    assert [r["health/warnings"] for r in rows] == [[]] * 4
    assert {"health/chosen_logratio", "health/sample_kl", "health/sample_length"} <= set(rows[-1])


def test_stop_on_collapse_checkpoints_and_names_the_last_healthy_checkpoint(demo_slice, tmp_path, capsys):
    train, valid = demo_slice
    run = tmp_path / "run"
    # At 2e-3 the evaluation of step 2 passes and the one of step 4 finds the collapse.
    assert main(["train", *demo_flags(train, valid, run, 2e-3, iters=8), "--stop-on-collapse"]) == 1
    err = capsys.readouterr().err
    assert "WARNING [likelihood_displacement]" in err  # visible on the command line, with its fix
    healthy = run / "checkpoints" / "step_0000002"
    assert "stopped at step 4 on a health warning" in err
    assert f"the last healthy checkpoint is {healthy} (step 2): use it with --adapter {healthy}" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]
    # The healthy checkpoint is an adapter folder: compare takes it, with its run's base and held-out prompts.
    capsys.readouterr()
    assert main(["compare", "--adapter", str(healthy), "--judge", "python:mlx_dpo.demo.reward:judge", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 8 and result["file"].startswith(str(healthy / "compare-vs-base-"))


def _adapter(run_dir) -> dict:
    return {k: np.array(v) for k, v in mx.load(str(Path(run_dir) / "adapters.safetensors")).items()}


def tiny_cfg(model, data, valid, out, **kw) -> TrainConfig:
    base = dict(model=model, data=data, valid_data=valid, output=str(out), batch_size=4, learning_rate=1e-3,
                iters=4, eval_every=1, lora_dropout=0.1, lr_schedule="cosine")
    return TrainConfig(**{**base, **kw}).validate()


def test_sampling_leaves_the_trained_adapter_bit_identical(tiny_model, pairs_file, valid_file, tmp_path):
    """Greedy sampling at every evaluation draws no random numbers: dropout and the result are the same."""
    seen = Recorder()
    Trainer(tiny_cfg(tiny_model, pairs_file, valid_file, tmp_path / "on", sample_prompts=3), seen).setup().train()
    Trainer(tiny_cfg(tiny_model, pairs_file, valid_file, tmp_path / "off", sample_prompts=0)).setup().train()
    assert [step for step, _ in seen.sampled] == [0, 1, 2, 3, 4]  # it did sample
    a, b = _adapter(tmp_path / "on"), _adapter(tmp_path / "off")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in read_jsonl_tolerant(tmp_path / d / "metrics.jsonl") if "loss" in r]
              for d in ("on", "off")]
    assert losses[0] == losses[1]
    assert not (tmp_path / "off" / "samples.jsonl").exists()


def test_samples_jsonl_holds_the_start_and_each_evaluation_and_resume_keeps_it(tiny_model, pairs_file, valid_file,
                                                                               tmp_path):
    kw = dict(iters=6, batch_size=3, save_every=100)
    straight = Recorder()
    Trainer(tiny_cfg(tiny_model, pairs_file, valid_file, tmp_path / "straight", **kw), straight).setup().train()
    Trainer(tiny_cfg(tiny_model, pairs_file, valid_file, tmp_path / "split", **kw)).setup().train(stop_at_step=3)
    resumed = Recorder()
    Trainer(tiny_cfg(tiny_model, pairs_file, valid_file, tmp_path / "split", resume=True, **kw),
            resumed).setup().train()
    a, b = _adapter(tmp_path / "straight"), _adapter(tmp_path / "split")
    assert all(np.array_equal(a[k], b[k]) for k in a)  # resume stays bit-exact with sampling on

    lines = [read_jsonl_tolerant(tmp_path / d / "samples.jsonl") for d in ("straight", "split")]
    assert [r["step"] for r in lines[0]] == [r["step"] for r in lines[1]] == [0, 1, 2, 3, 4, 5, 6]
    answers = [[[s["answer"] for s in r["samples"]] for r in ls] for ls in lines]
    assert answers[0] == answers[1]  # the same answers: greedy, from the same weights
    start, later = lines[0][0]["samples"], lines[0][-1]["samples"]
    assert len(start) == 3 and all({"prompt", "answer", "tokens", "kl", "repetition"} <= set(s) for s in start)
    assert [s["base"] for s in later] == [s["answer"] for s in start]  # "start vs now" on every line
    assert straight.sampled[0] == (0, start) and straight.sampled[-1] == (6, later)
    assert [step for step, _ in resumed.sampled] == [0, 4, 5, 6]  # the kept start answers are sent again


def test_no_samples_without_held_out_data(tiny_model, pairs_file, tmp_path):
    seen = Recorder()
    Trainer(tiny_cfg(tiny_model, pairs_file, None, tmp_path / "run", iters=2), seen).setup().train()
    assert seen.sampled == [] and not (tmp_path / "run" / "samples.jsonl").exists()


def test_sample_prompts_must_not_be_negative(tmp_path, capsys):
    assert main(["train", "--data", "x.jsonl", "--output", str(tmp_path / "r"), "--sample-prompts", "-1"]) == 2
    assert "sample_prompts: must be 0 (off)" in capsys.readouterr().err


# ---------------------------------------------------------------------- the checks themselves (no MLX)
def monitor() -> HealthMonitor:
    return HealthMonitor(Loss("sigmoid", 0.5), 10.0, {"learning_rate": 5e-4, "beta": 0.5})


def eval_row(chosen, rejected, loss) -> dict:
    # rewards are beta * (log-ratio summed over 10 tokens): chosen = -1.0 nats/token -> -5.0
    return {"eval/rewards/chosen": chosen * 5.0, "eval/rewards/rejected": rejected * 5.0,
            "eval/rewards/margins": (chosen - rejected) * 5.0, "eval/loss": loss}


def test_each_kind_warns_once_and_only_past_its_bound():
    m = monitor()
    fine = m.signals(eval_row(-0.1, -0.5, 0.4), "eval/")
    assert fine["health/chosen_logratio"] == pytest.approx(-0.1) and m.check(fine, 2) == []
    bad = m.signals(eval_row(-1.0, -3.0, 0.1), "eval/")
    assert [w.kind for w in m.check(bad, 4)] == ["likelihood_displacement", "loss_collapse"]
    assert m.check(bad, 6) == [] and m.crossed(bad) == ["likelihood_displacement", "loss_collapse"]


def test_a_large_margin_is_no_collapse_while_the_loss_is_not_near_zero():
    m = monitor()
    assert m.crossed(m.signals(eval_row(0.2, -1.5, 0.5), "eval/")) == []


def test_sample_checks_are_relative_to_the_start():
    m = monitor()
    start = [{"answer": "a loop loop loop", "tokens": 10, "repetition": 0.6},
             {"answer": "fine", "tokens": 10, "repetition": 0.0}]
    same = [dict(s, kl=0.1) for s in start]
    assert m.crossed(m.signals(None, "", same, start)) == []  # a base that already loops is not DPO's doing
    worse = [{"answer": "", "tokens": 0, "kl": 0.0, "repetition": 0.0},
             {"answer": "x y x y", "tokens": 40, "kl": 80.0, "repetition": 0.9}]
    kinds = [w.kind for w in m.check(m.signals(None, "", worse, start), 2)]
    assert kinds == ["kl", "empty_answers", "repetitive_answers"]  # 40 / 10 tokens: 2x, under the bound
    longer = [dict(s, tokens=30) for s in same]
    assert m.crossed(m.signals(None, "", longer, start)) == ["long_answers"]


def test_reference_free_and_unpaired_losses_skip_the_log_ratio_checks():
    for loss in (Loss("simpo", 2.0), Loss("kto", 0.1)):
        m = HealthMonitor(loss, 10.0, {"learning_rate": 1e-3, "beta": 0.1})
        assert m.signals({"rewards/chosen": -100.0, "rewards/rejected": -200.0, "rewards/margins": 100.0,
                          "loss": 0.0}) == {}
