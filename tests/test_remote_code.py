"""Code in a model folder runs only with --trust-remote-code, whatever stdin says, through every loader.

The folders here are the tiny model with a tokenizer class (or a config class, or an mlx-lm
architecture) in a .py file that, when imported, writes a marker file: the marker tells whether
the folder's code ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_dpo.cli import main
from mlx_dpo.errors import UsageError

# A working tokenizer class (the tiny model's tokenizer.json, loaded by transformers' fast tokenizer).
TOKENIZER_CODE = """open({marker!r}, "w").write("ran")
from transformers import PreTrainedTokenizerFast
class FolderTokenizer(PreTrainedTokenizerFast):
    pass
"""
CONFIG_CODE = """open({marker!r}, "w").write("ran")
from transformers import LlamaConfig
class FolderConfig(LlamaConfig):
    model_type = "xverse"
"""


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def code_model(tiny_model, tmp_path):
    """The tiny model whose tokenizer class lives in the folder's tok.py (as Qwen-1, InternLM2, Kimi ship)."""
    folder = tmp_path / "code-model"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "tok-ran"
    (folder / "tok.py").write_text(TOKENIZER_CODE.format(marker=str(marker)), encoding="utf-8")
    _edit_json(folder / "tokenizer_config.json", tokenizer_class="FolderTokenizer",
               auto_map={"AutoTokenizer": [None, "tok.FolderTokenizer"]})
    return folder, marker


def cli(*args, stdin: str, tmp_path: Path):
    # transformers copies a folder's code into HF_MODULES_CACHE before importing it: keep that in tmp_path
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "hf-modules")}
    return subprocess.run([sys.executable, "-m", "mlx_dpo", *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=300, env=env)


def _assert_refused(text: str, marker: Path) -> None:
    assert "tok.py (tokenizer_config.json auto_map)" in text and "--trust-remote-code" in text, text
    assert not marker.exists(), "the folder's code ran"


@pytest.mark.parametrize("command", ["generate", "chat"])
def test_a_yes_on_stdin_does_not_let_the_folders_tokenizer_code_run(code_model, tmp_path, command):
    folder, marker = code_model
    extra = ["--prompt", "hi"] if command == "generate" else []
    # transformers' prompt "Do you wish to run the custom code? [y/N]" read stdin: in chat, the first line
    r = cli(command, "--model", folder, "--max-tokens", 2, *extra, stdin="y\nhello\n/quit\n", tmp_path=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "[y/N]" not in r.stdout + r.stderr
    _assert_refused(r.stderr, marker)
    assert r.stderr.count("\n") == 1  # one line: error: FOLDER: ...


def test_trust_remote_code_lets_the_folders_tokenizer_run(code_model, tmp_path):
    folder, marker = code_model
    r = cli("generate", "--model", folder, "--prompt", "hi", "--max-tokens", 2, "--trust-remote-code",
            stdin="", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert marker.exists()


def test_a_config_class_in_auto_map_never_runs_and_the_model_still_loads(tiny_model, tmp_path):
    """config.json's auto_map AutoConfig: transformers (looking up the tokenizer) used to ask on stdin for a
    model type it does not know; with the answer 'no' it uses its own config class, and so does mlx-dpo,
    without asking. mlx-lm builds the model itself (xverse is llama to mlx-lm)."""
    folder = tmp_path / "config-code"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "conf-ran"
    (folder / "conf.py").write_text(CONFIG_CODE.format(marker=str(marker)), encoding="utf-8")
    _edit_json(folder / "config.json", model_type="xverse", auto_map={"AutoConfig": "conf.FolderConfig"})
    r = cli("generate", "--model", folder, "--prompt", "hi", "--max-tokens", 2, stdin="y\n", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[y/N]" not in r.stdout + r.stderr
    assert not marker.exists(), "the folder's config code ran"


def _adapter(tmp_path: Path) -> Path:
    """An adapter folder that passes the checks made before the model loads."""
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 4, "scale": 8.0, "dropout": 0.0}}))
    (d / "adapters.safetensors").write_bytes(b"")
    return d


def _engine_job(submit) -> list:
    """Run one job of the app's real engine thread; the messages it posted."""
    from tui.engine import Engine

    posted = []

    class Pane:
        def post_message(self, message):
            posted.append(message)

    engine = Engine()
    engine.start()
    submit(engine, Pane())
    engine.stop()  # queued after the job: the thread ends when the job is done
    engine._thread.join(timeout=120)
    return posted


def _app_failure(posted) -> str:
    from tui.messages import JobFailed

    failed = [m for m in posted if isinstance(m, JobFailed)]
    assert failed, posted
    return failed[0].error


def _iterate(model, tmp, pairs):
    from mlx_dpo.iterate.rounds import IterateConfig, Iteration

    Iteration(IterateConfig(model=str(model), prompts=pairs, judge="python:mlx_dpo.demo.reward:judge",
                            output=str(tmp / "it")))


def _export(model, tmp, pairs):
    from mlx_dpo import ExportConfig, run_export

    run_export(ExportConfig(model=str(model), adapter=str(_adapter(tmp)), output=str(tmp / "out")))


def _loader(name):
    import mlx_dpo

    return lambda model, tmp, pairs: getattr(mlx_dpo, name)(str(model))


LOADERS = {
    "load_tokenizer_only": _loader("load_tokenizer_only"),
    "load_base": _loader("load_base"),
    "load_for_generation": _loader("load_for_generation"),
    "judge model:": lambda model, tmp, pairs: _loader("make_judge")(f"model:{model}", tmp, pairs),
    "iterate policy": _iterate,
    "export": _export,
}


@pytest.mark.parametrize("loader", LOADERS)
def test_every_loader_refuses_the_folders_code(code_model, tmp_path, pairs_file, loader):
    folder, marker = code_model
    with pytest.raises(UsageError) as e:
        LOADERS[loader](folder, tmp_path, pairs_file)
    _assert_refused(str(e.value), marker)


def test_a_model_judge_loads_its_folders_code_only_when_iterate_trusts_it(code_model):
    from mlx_dpo import make_judge

    folder, marker = code_model
    judge = make_judge(f"model:{folder}", trust_remote_code=True)
    assert judge.trust_remote_code  # and the judge's load passes it on:
    with pytest.raises(UsageError) as e:
        make_judge(f"model:{folder}")._reply([{"role": "user", "content": "hi"}])
    _assert_refused(str(e.value), marker)


@pytest.mark.parametrize("command", [["validate", "{pairs}", "--model", "{model}"],
                                     ["train", "--model", "{model}", "--data", "{pairs}", "--output", "{tmp}/run"],
                                     ["estimate", "--model", "{model}", "--data", "{pairs}"],
                                     ["eval", "--model", "{model}", "--data", "{pairs}"]])
def test_commands_that_load_a_model_refuse_its_code_with_exit_2(code_model, tmp_path, pairs_file, capsys, command):
    folder, marker = code_model
    argv = [a.format(model=folder, pairs=pairs_file, tmp=tmp_path) for a in command]
    assert main(argv) == 2
    _assert_refused(capsys.readouterr().err, marker)


@pytest.mark.parametrize("job", ["inspect_data", "load_chat"])
def test_the_app_refuses_the_folders_code(code_model, pairs_file, job):
    folder, marker = code_model
    if job == "inspect_data":
        posted = _engine_job(lambda e, pane: e.inspect_data(pane, pairs_file, str(folder), {}, 256, 128))
    else:
        posted = _engine_job(lambda e, pane: e.load_chat(pane, str(folder), None))
    _assert_refused(_app_failure(posted), marker)


def test_a_custom_mlx_lm_architecture_is_refused_before_the_weights_load(tiny_model, tmp_path):
    from mlx_dpo import load_base

    folder = tmp_path / "arch-code"
    shutil.copytree(tiny_model, folder)
    _edit_json(folder / "config.json", model_file="arch.py")
    with pytest.raises(UsageError, match=r"arch\.py \(config\.json model_file\).*--trust-remote-code"):
        load_base(str(folder))


@pytest.mark.parametrize("files, expected", [
    ({"tokenizer_config.json": {"auto_map": {"AutoTokenizer": ["tok.Slow", "tok_fast.Fast"]}}},
     ["tok.py (tokenizer_config.json auto_map)", "tok_fast.py (tokenizer_config.json auto_map)"]),
    ({"tokenizer_config.json": {"auto_map": ["tokenization_x.XTokenizer", None]}},  # transformers' old list form
     ["tokenization_x.py (tokenizer_config.json auto_map)"]),
    ({"config.json": {"auto_map": {"AutoTokenizer": "org/other--tok.T"}}},  # code from another hub repo
     ["tok.py of org/other (config.json auto_map)"]),
    ({"config.json": {"model_file": "arch.py"}}, ["arch.py (config.json model_file)"]),
    # mlx-lm builds the model itself; transformers falls back to its own config class when refused
    ({"config.json": {"auto_map": {"AutoConfig": "c.C", "AutoModelForCausalLM": "m.M"}}}, []),
    ({"config.json": ["not", "an", "object"], "tokenizer_config.json": "{broken"}, []),
])
def test_the_code_a_folder_asks_to_run_is_read_from_its_json_files(tmp_path, files, expected):
    from mlx_dpo.model.load import code_to_run

    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    assert code_to_run(tmp_path) == expected
