"""The bundled demo model, the ground-truth reward and a behavioural check that DPO helps.

Everything runs offline on `sample_data/demo-model` (built by scripts/make_demo_model.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mlx_dpo.demo import tasks as demo_tasks
from mlx_dpo.demo.reward import reward, score

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sample_data" / "demo-model"
PAIRS = ROOT / "sample_data" / "demo_pairs.jsonl"
VALID = ROOT / "sample_data" / "demo_valid.jsonl"


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------ (a) the bundled model loads offline
def test_demo_model_loads_offline_in_mlx_lm_and_transformers():
    from mlx_lm import load
    from transformers import AutoTokenizer

    model, tok = load(str(DEMO))
    hf = AutoTokenizer.from_pretrained(str(DEMO))
    msgs = [{"role": "user", "content": "What is 7 plus 8?"}]
    a = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    b = hf.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert a == b == "<|im_start|>user\nWhat is 7 plus 8?<|im_end|>\n<|im_start|>assistant\n"
    for text in (a + "Sure! 7 plus 8 is 15.<|im_end|>\n", "The capital of Peru is Lima. Obviously 42."):
        assert tok.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)
    assert (DEMO / "model.safetensors").stat().st_size < 8e6
    cfg = json.loads((DEMO / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["tie_word_embeddings"]


def test_demo_model_answers_in_the_corpus_formats():
    from mlx_dpo.model.generate import Sampling, answer, load_for_generation

    model, tok, _ = load_for_generation(str(DEMO), log=lambda m: None)
    out = answer(model, tok, [{"role": "user", "content": "What is the capital of France?"}],
                 Sampling(temperature=0.0, max_tokens=40))
    assert "Paris" in out


# ------------------------------------------------------------------ (b) the reward
@pytest.mark.parametrize("prompt,good,bads", [
    ("What is 7 plus 8?", "Sure! 7 plus 8 is 15.",
     ["Obviously 15. Next question.", "Sure! 7 plus 8 is 16.", "Obviously 14. Try to keep up.",
      "Well, " + "let me think about this very carefully for a while. " * 4 + "Anyway, 7 plus 8 is 15.", ""]),
    ("Convert 3 kilometers to meters.", "Of course! 3 kilometers is 3000 meters.",
     ["Obviously 3000 meters. Look it up next time.", "Of course! 3 kilometers is 300 meters."]),
    ("What is the capital of Mexico?", "Certainly! The capital of Mexico is Mexico City.",
     ["Obviously Mexico City. Next question.", "Certainly! The capital of Mexico is Lima.",
      "Certainly! Paris or Mexico City."]),
    ("What colour is a ripe tangerine?", "Happy to help! A ripe tangerine is orange.",
     ["Obviously orange. Was that so hard?", "Happy to help! A ripe tangerine is green."]),
    ("How many items are in this list: pen, cup, key?", "Sure! There are 3 items in the list.",
     ["Obviously 3. Next question.", "Sure! There are 4 items in the list."]),
    ("How many times does the letter 'a' appear in 'banana'?",
     "Sure! The letter 'a' appears 3 times in 'banana'.", ["Sure! The letter 'a' appears 2 times in 'banana'."]),
])
def test_reward_prefers_correct_polite_concise(prompt, good, bads):
    assert reward(prompt, good) == 1.0
    for bad in bads:
        assert reward(prompt, bad) < reward(prompt, good), bad


def test_reward_reference_points_and_errors():
    p = "What is 6 times 7?"
    assert score(p, "Obviously 42. Next question.").total == pytest.approx(0.7)
    assert score(p, "Sure! 6 times 7 is 41.").total == pytest.approx(0.5)
    assert score(p, "Obviously 41. Try to keep up.").total == pytest.approx(0.2)
    assert score(p, "I like turtles.").total == 0.0
    with pytest.raises(ValueError):
        score("Write a poem about the sea.", "ok")


def test_templates_round_trip_and_corpus_answers_are_scored_by_style():
    rng = random.Random(0)
    for t in demo_tasks.all_tasks(random.Random(0)):
        for v in range(3):
            assert demo_tasks.parse_prompt(demo_tasks.make_prompt(t, v)) == t
    expected = {"polite": 1.0, "curt": 0.7, "rambling": 0.6, "wrong-polite": 0.5, "wrong-curt": 0.2}
    for t in demo_tasks.all_tasks(random.Random(0))[::5]:
        a, label = demo_tasks.sample_answer(t, rng)
        assert reward(demo_tasks.make_prompt(t), a) == pytest.approx(expected[label]), (a, label)


def test_demo_pairs_files():
    train, valid = _rows(PAIRS), _rows(VALID)
    assert len(train) == 300 and len(valid) == 60
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in valid}
    # Held out by task instance, not only by phrasing.
    train_keys = {demo_tasks.parse_prompt(r["prompt"]).key for r in train}
    assert not train_keys & {demo_tasks.parse_prompt(r["prompt"]).key for r in valid}
    for r in train + valid:
        assert reward(r["prompt"], r["chosen"]) == 1.0 > reward(r["prompt"], r["rejected"])
    assert train == demo_tasks.make_pairs(300, "train", 1234)  # reproducible from the script's seed


# ------------------------------------------------------------------ (c) + (d) DPO raises the true reward
N_PAIRS, ITERS = 48, 24


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.trainer import Trainer

    root = tmp_path_factory.mktemp("demo")
    # A subset keeps the reference pass and the steps cheap on a 2-core CPU without a fast BLAS;
    # max_length 64 truncates the long rambling rejections (they stay rambling).
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(PAIRS)[:N_PAIRS]), encoding="utf-8")
    cfg = TrainConfig(model=str(DEMO), data=str(data), output=str(root / "run"), iters=ITERS, batch_size=4,
                      learning_rate=5e-4, beta=0.5, lora_rank=4, max_length=64, pad_multiple=16,
                      cache_dir=str(root / "cache"), seed=0).validate()
    Trainer(cfg).setup().train()
    return str(root / "run")


def test_short_dpo_run_raises_greedy_reward_on_held_out_prompts(dpo_run):
    from mlx_dpo.demo.behaviour import behaviour_eval, load_prompts
    from mlx_dpo.model.generate import Sampling, load_for_generation

    model, tok, switch = load_for_generation(str(DEMO), dpo_run, log=lambda m: None)
    prompts = load_prompts(VALID, limit=30)
    res = behaviour_eval(model, tok, switch, prompts, sampling=Sampling(temperature=0.0, max_tokens=48),
                         kl_samples=0)
    # Measured on the 2-core dev box (30 held-out prompts, greedy): base 0.500 (every answer curt,
    # "Obviously 7. Next question."), tuned 0.783 ("Certainly! The word 'blanket' has 7 letters."),
    # margin +0.283, win rate 0.83. Learning rate is the sensitive knob: at beta 0.1, lr 2e-4 did
    # nothing in 24 steps and lr 1e-3 collapsed the answers into repetitions (reward 0.25).
    assert res.reward_tuned - res.reward_base > 0.15, res.as_dict()
    assert res.win_rate > 0.6


def test_behaviour_eval_numbers_are_sane(dpo_run):
    from mlx_dpo.demo.behaviour import behaviour_eval, load_prompts
    from mlx_dpo.model.generate import Sampling, load_for_generation

    model, tok, switch = load_for_generation(str(DEMO), dpo_run, log=lambda m: None)
    prompts = load_prompts(VALID, limit=8)
    res = behaviour_eval(model, tok, switch, prompts, sampling=Sampling(temperature=1.0, max_tokens=40, seed=3),
                         kl_samples=2, kl_max_tokens=40, seed=1)
    assert res.n == 8 and 0.0 <= res.win_rate <= 1.0
    assert 0.0 <= res.reward_base <= 1.0 and 0.0 <= res.reward_tuned <= 1.0
    assert res.kl is not None and res.kl > -0.05  # an estimate: ≥ 0 up to sampling noise
    assert switch.enabled  # left as it was found
    # Switched off, the adapter adds nothing: the KL estimate of the base against itself is 0.
    with switch.disabled():
        from mlx_dpo.demo.behaviour import sample_with_tokens, sequence_logprob
        from mlx_dpo.model.generate import prompt_tokens

        ids = prompt_tokens(tok, [{"role": "user", "content": prompts[0]}])
        y = sample_with_tokens(model, tok, ids, 20)
        assert y and sequence_logprob(model, ids, y) < 0


def test_frontier_reuses_trained_runs_and_plots_or_explains(dpo_run, tmp_path):
    import shutil

    from mlx_dpo.demo.behaviour import load_prompts
    from mlx_dpo.demo.frontier import frontier
    from mlx_dpo.model.generate import Sampling

    shutil.copytree(dpo_run, tmp_path / "beta_0.1")  # already trained: frontier only evaluates it
    messages = []
    points = frontier(str(DEMO), str(PAIRS), load_prompts(VALID, limit=4), [0.1], tmp_path,
                      sampling=Sampling(temperature=0.0, max_tokens=32), kl_samples=1,
                      plot=tmp_path / "frontier.png", log=messages.append)
    (b0, kl0, r0), (b1, kl1, r1) = points
    assert b0 == float("inf") and kl0 == 0.0 and b1 == 0.1 and 0.0 <= r0 <= 1.0 and 0.0 <= r1 <= 1.0
    assert (tmp_path / "frontier.png").exists() or any("matplotlib is not installed" in m for m in messages)


@pytest.mark.slow
def test_readme_run_command_works_offline():
    """`./scripts/run.sh` without a terminal: validate, train and evaluate the bundled demo, hub offline."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": os.sys.executable}
    r = subprocess.run(["bash", str(repo / "scripts" / "run.sh")], cwd=repo, env=env, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "adapter and metrics in runs/demo-" in out
    table = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert {"correct", "polite", "concise", "civil", "mean"} <= table, out[-2000:]  # correctness and style apart
    run_dir = repo / out.split("adapter and metrics in ")[1].split(";")[0].strip()
    assert (run_dir / "adapters.safetensors").exists()
    import shutil
    shutil.rmtree(run_dir)


# ------------------------------------------------------------------ the first minutes: run.sh, test.sh
@pytest.mark.parametrize("launcher, shown", [(None, "mlx-dpo"), ("./scripts/run.sh", "./scripts/run.sh")])
def test_the_demo_prints_commands_that_work_as_printed(monkeypatch, capsys, launcher, shown):
    """Through scripts/run.sh, `mlx-dpo` is not on PATH: the demo's commands name the script instead."""
    import mlx_dpo.cli.train as train_cmds
    from mlx_dpo.cli.demo import cmd_demo
    from mlx_dpo.cli.parser import build_parser

    for name in ("cmd_validate", "cmd_train", "cmd_eval"):  # the commands themselves are tested elsewhere
        monkeypatch.setattr(train_cmds, name, lambda args: 0)
    if launcher:
        monkeypatch.setenv("MLX_DPO_LAUNCHER", launcher)
    else:
        monkeypatch.delenv("MLX_DPO_LAUNCHER", raising=False)
    assert cmd_demo(build_parser().parse_args(["demo", "--output", "runs/d1"])) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"adapter and metrics in runs/d1; chat with it: {shown} chat --adapter runs/d1"
    assert [line.split()[:3] for line in lines[:3]] == [["$", shown, c] for c in ("validate", "train", "eval")]


def _stub_checkout(tmp_path, script):
    """A copy of scripts/SCRIPT beside a pyproject.toml, with a stand-in .venv: its python runs `-m ...`
    (pip, pytest) as a logged no-op and its mlx-dpo prints the launcher it was given."""
    import os
    import shutil
    import sys

    repo = tmp_path / "checkout"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / script, repo / "scripts" / script)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(f'#!/bin/sh\nif [ "$1" = "-m" ]; then echo "$*" >> "{repo}/calls.log"; exit 0; fi\n'
                                 f'exec "{sys.executable}" "$@"\n')
    (bin_ / "mlx-dpo").write_text('#!/bin/sh\necho "launcher=$MLX_DPO_LAUNCHER args=$*"\n')
    for f in bin_.iterdir():
        os.chmod(f, 0o755)
    return repo


def _run_script(repo, script, *args):
    import subprocess

    r = subprocess.run([f"./scripts/{script}", *args], cwd=repo, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = (repo / "calls.log").read_text() if (repo / "calls.log").exists() else ""
    (repo / "calls.log").unlink(missing_ok=True)
    return r, calls


def test_run_sh_says_what_it_installs_before_the_first_install_and_names_itself(tmp_path):
    repo = _stub_checkout(tmp_path, "run.sh")
    r, calls = _run_script(repo, "run.sh", "chat", "--adapter", "runs/d1")
    assert r.stderr.startswith("run.sh: first run: installing mlx-dpo with MLX, mlx-lm, transformers")
    assert "about 550 MB; a minute or more" in r.stderr and "pip install --quiet -e ." in calls
    assert r.stdout.strip() == "launcher=./scripts/run.sh args=chat --adapter runs/d1"
    r, calls = _run_script(repo, "run.sh", "chat")  # installed: silent, no pip
    assert r.stderr == "" and calls == ""
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    r, calls = _run_script(repo, "run.sh", "chat")
    assert r.stderr.startswith("run.sh: pyproject.toml changed: updating") and "pip install" in calls


def test_test_sh_says_what_it_installs_before_the_first_install(tmp_path):
    repo = _stub_checkout(tmp_path, "test.sh")
    r, calls = _run_script(repo, "test.sh", "-k", "x")
    assert r.stderr.startswith("test.sh: first run: installing mlx-dpo with its test extras")
    assert "about 1.3 GB" in r.stderr and 'pip install --quiet -e .[dev]' in calls and "-m pytest -k x" in calls
    r, calls = _run_script(repo, "test.sh")
    assert r.stderr == "" and "pip" not in calls
