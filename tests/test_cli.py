"""The `mlx-dpo` command end to end: train, eval, config files, interrupts, and user errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest
import yaml

from mlx_dpo.cli import main


def cli(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mlx_dpo", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_train_then_eval_json(tiny_model, pairs_file, valid_file, tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--model", tiny_model, "--data", pairs_file, "--valid-data", valid_file, "--output", run,
            "--iters", 6, "--batch-size", 4, "--learning-rate", 2e-3)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    for f in ("adapters.safetensors", "adapter_config.json", "config.yaml", "metrics.jsonl"):
        assert (run / f).exists(), f
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["iters"] == 6 and saved["learning_rate"] == 2e-3
    r = cli("eval", "--model", tiny_model, "--adapter", run, "--data", valid_file, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert {"loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "n_pairs"} <= set(out)
    assert out["n_pairs"] == 12
    assert "reused from cache" in r.stderr  # same reference as training's eval set
    base = json.loads(cli("eval", "--model", tiny_model, "--data", valid_file, "--json").stdout)
    assert base["loss"] == pytest.approx(np.log(2), abs=1e-5) and base["rewards/margins"] == pytest.approx(0, abs=1e-5)
    assert out["rewards/margins"] > base["rewards/margins"]
    r = cli("eval", "--model", tiny_model, "--adapter", run, "--data", valid_file)
    assert "rewards/accuracies" in r.stdout and r.returncode == 0


def test_adapter_loads_in_mlx_lm_with_same_logits(tiny_model, pairs_file, tmp_path):
    from mlx_lm import generate, load

    from mlx_dpo.model.adapters import attach_adapter
    from mlx_dpo.model.load import load_base

    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(run), "--iters", "3",
                 "--learning-rate", "5e-3"]) == 0
    theirs, tok = load(tiny_model, adapter_path=str(run))
    ours = load_base(tiny_model).model
    attach_adapter(ours, run)
    x = mx.array([tok.encode("Please describe the sea.")])
    np.testing.assert_allclose(np.array(theirs(x)), np.array(ours(x)), atol=1e-5)
    base, _ = load(tiny_model)
    assert not np.allclose(np.array(base(x)), np.array(ours(x)), atol=1e-4)  # the adapter does something
    assert isinstance(generate(theirs, tok, prompt="hello", max_tokens=3), str)


def test_yaml_config_and_flag_precedence(tiny_model, pairs_file, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": tiny_model, "data": pairs_file, "iters": 5, "beta": 0.3,
                                   "batch-size": 2, "learning_rate": 1e-4}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--output", str(run), "--iters", "2"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["iters"] == 2 and saved["beta"] == 0.3 and saved["batch_size"] == 2
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


@pytest.mark.parametrize("content,needle", [
    ({"modle": "x"}, "modle: unknown config key"),
    ({"beta": "high"}, "beta: expected a number"),
    ({"batch_size": 0}, "batch_size: must be a positive integer"),
    ("[1, 2", "invalid YAML"),
])
def test_bad_config_file_is_a_clear_error(tmp_path, capsys, content, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,needle", [
    (["--batch-size", "0"], "batch_size: must be a positive integer"),
    (["--learning-rate", "-1"], "learning_rate: must be a positive number"),
    (["--max-prompt-length", "2048"], "max_prompt_length: must be smaller"),
])
def test_bad_flags_exit_2(tiny_model, pairs_file, tmp_path, capsys, args, needle):
    rc = main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(tmp_path / "run"), *args])
    assert rc == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_data_in_train_writes_nothing(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "x", "rejected": "y"}\n{"prompt": "b", "chosen": "same", "rejected": "same"}\n{oops\n')
    rc = main(["train", "--model", tiny_model, "--data", str(bad), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{bad}:2: chosen,rejected: chosen and rejected are identical" in err
    assert f"{bad}:3: json: invalid JSON" in err
    assert not (tmp_path / "run").exists()


def test_missing_model_folder(tmp_path, pairs_file, capsys):
    rc = main(["train", "--model", str(tmp_path / "nope"), "--data", pairs_file, "--output", str(tmp_path / "r")])
    assert rc == 2 and "no such model folder" in capsys.readouterr().err


def test_uncached_hub_id_offline_is_a_clear_error(tmp_path, pairs_file, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rc = main(["train", "--model", "nobody/not-a-model", "--data", pairs_file, "--output", str(tmp_path / "r")])
    assert rc == 2 and "not in the local Hugging Face cache" in capsys.readouterr().err


def test_ctrl_c_checkpoints_and_exits_130_then_resumes(tiny_model, pairs_file, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mlx_dpo", "train", "--model", tiny_model, "--data", pairs_file,
                             "--output", str(run), "--iters", "100000", "--batch-size", "2", "--save-every", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ckpts = sorted((run / "checkpoints").iterdir())
    assert ckpts and (run / "adapters.safetensors").exists()
    step = int(ckpts[-1].name.split("_")[1])
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert rows[-1]["step"] == step
    r = cli("train", "--output", run, "--resume", "--iters", step + 2)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {ckpts[-1]}" in r.stderr
    rows = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert [x["step"] for x in rows] == list(range(1, step + 3))


def test_eval_with_an_adapter_for_another_model_computes_nothing(tiny_model, pairs_file, tmp_path, capsys):
    from tiny_models import build_tiny_model

    other = build_tiny_model(tmp_path / "other", hidden_size=32, intermediate_size=64)
    cache = tmp_path / "evalcache"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(tmp_path / "run"),
                 "--iters", "1"]) == 0
    capsys.readouterr()
    rc = main(["eval", "--model", str(other), "--adapter", str(tmp_path / "run"), "--data", pairs_file,
               "--cache-dir", str(cache)])
    assert rc == 2 and "adapter does not fit this model" in capsys.readouterr().err
    assert not list(cache.rglob("*.safetensors"))  # no reference computed or cached for a doomed eval


def test_every_help_renders(capsys):
    """argparse %-formats help text: a stray % once printed its internals into `train --help`."""
    from mlx_dpo.cli.parser import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"validate", "train", "eval", "chat", "generate", "export", "frontier", "demo", "tui"} <= set(commands)
    for argv in [[]] + [[name] for name in commands]:
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv + ["--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: mlx-dpo") and "option_strings" not in text and "%(" not in text, argv
    assert "tui" in parser.format_help()
    assert "30%" in commands["train"].format_help()  # the doubled %% renders as one


@pytest.mark.parametrize("argv,line", [
    # argparse's abbreviations read --lr as --lr-schedule ("invalid choice: '1e-4'") ...
    (["train", "--lr", "1e-4"], "mlx-dpo train: error: unknown option --lr; did you mean --learning-rate? "
                                "(mlx-dpo train --help lists its options)"),
    # ... and --epoch as --epochs, without a word
    (["train", "--epoch", "2", "--data", "d.jsonl", "--output", "r"],
     "mlx-dpo train: error: unknown option --epoch; did you mean --epochs? (mlx-dpo train --help lists its options)"),
    (["generate", "--prompt", "hi", "--max-new-tokens", "3"], "mlx-dpo generate: error: unknown option "
     "--max-new-tokens; did you mean --max-tokens? (mlx-dpo generate --help lists its options)"),
    (["train", "--learning_rate=1", "--zzz"], "mlx-dpo train: error: unknown options --learning_rate (did you mean "
     "--learning-rate?), --zzz; mlx-dpo train --help lists its options"),
])
def test_an_unknown_or_abbreviated_option_is_one_line_naming_the_nearest_option(argv, line, capsys, tmp_path,
                                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == "" and err.splitlines() == [line]
    assert not (tmp_path / "r").exists()


def test_no_command_takes_abbreviated_options():
    from mlx_dpo.cli.parser import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert not parser.allow_abbrev and not [name for name, p in commands.items() if p.allow_abbrev]


def test_eval_of_a_run_uses_its_base_and_loss_settings(tiny_model, pairs_file, valid_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(run), "--iters", "3",
                 "--batch-size", "4", "--learning-rate", "2e-3", "--beta", "0.5", "--max-length", "256"]) == 0
    capsys.readouterr()

    def evaluate(*extra):
        assert main(["eval", "--adapter", str(run), "--data", valid_file, "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    inherited = evaluate()  # no --model: the run's base, not the demo model; its beta and lengths
    explicit = evaluate("--model", tiny_model, "--beta", "0.5", "--max-length", "256")
    assert inherited == explicit
    other = evaluate("--beta", "0.1")  # a flag still wins: rewards scale with beta
    assert other["rewards/margins"] == pytest.approx(inherited["rewards/margins"] / 5, rel=1e-4)


def test_eval_flags_for_run_are_the_runs_settings_under_the_flags_given(tmp_path):
    """One function gives `eval --adapter RUN_DIR` and the app's Evaluate the run's settings."""
    from mlx_dpo.cli.parser import LENGTHS, LOSS_ARGS
    from mlx_dpo.config import EVAL_FROM_RUN, TrainConfig, eval_flags_for_run, save_config

    assert set(LOSS_ARGS + LENGTHS) <= set(EVAL_FROM_RUN)  # every setting the metrics depend on
    run = tmp_path / "run"
    run.mkdir()
    save_config(TrainConfig(model="base", data="train.jsonl", valid_data="pairs.jsonl", valid_split="test",
                            beta=0.5, loss="ipo", max_length=256, init_adapter="start", reference="base",
                            batch_size=8), run / "config.yaml")
    got = eval_flags_for_run(run, {"data": "pairs.jsonl", "beta": 0.2})
    assert got["beta"] == 0.2 and got["loss"] == "ipo" and got["max_length"] == 256 and got["model"] == "base"
    assert got["init_adapter"] == "start" and got["reference"] == "base" and got["split"] == "test"
    assert "batch_size" not in got and eval_flags_for_run(run, {}, also=("batch_size",))["batch_size"] == 8
    other = eval_flags_for_run(run, {"data": "other.jsonl", "reference": "start"})
    assert "split" not in other and other["reference"] == "start"
    assert eval_flags_for_run(tmp_path / "missing", {"beta": 0.3}) == {"beta": 0.3}
