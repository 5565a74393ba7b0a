"""A corpus of bad inputs, each sent through every command it applies to.

For every (bad input, command): exit status 2, no traceback, a one-line error naming the file (and the
line and field where there is one), and nothing written: the run dir and the export target are not
created and every file that existed is byte-identical afterwards. (The reference cache and a run dir's
`.lock` file are not outputs and are not compared.)

The inputs are built in each test's tmp folder (the 50 MB line too); see BAD_INPUTS below.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

from mlx_dpo.cli import main
from mlx_dpo.config import TrainConfig
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl

GOOD = {"prompt": "Please describe the sea.", "chosen": "Sure! The sea is vast and blue.", "rejected": "No."}


def U(t):
    return {"role": "user", "content": t}


def A(t):
    return {"role": "assistant", "content": t}


# ----------------------------------------------------------------------- session fixtures

@pytest.fixture(scope="session")
def good_run(tiny_model, tmp_path_factory):
    """A run dir trained 1 step on tiny_model (adapter + checkpoint + config.yaml)."""
    root = tmp_path_factory.mktemp("good-run")
    data = write_jsonl(root / "train.jsonl", synthetic_pairs(8, seed=5))
    cfg = TrainConfig(model=tiny_model, data=data, output=str(root / "run"), iters=1, batch_size=4,
                      cache_dir=str(root / "cache")).validate()
    Trainer(cfg).setup().train()
    return root / "run"


@pytest.fixture(scope="session")
def other_adapter(tmp_path_factory):
    """An adapter for a model with another hidden size (32 instead of 64)."""
    from mlx_dpo.model.adapters import apply_lora, lora_config, save_adapter
    from mlx_dpo.model.load import load_base
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("other")
    model = load_base(str(build_tiny_model(root / "m32", hidden_size=32, intermediate_size=64))).model
    cfg = lora_config(8, 20.0, 0.0, None, 2, False)
    apply_lora(model, cfg)
    save_adapter(model, root / "adapter", cfg)
    return root / "adapter"


# ----------------------------------------------------------------------- building bad inputs

def _data(ctx, content, name="bad.jsonl"):
    p = ctx.tmp / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif isinstance(content, str):
        p.write_text(content, encoding="utf-8")
    else:
        p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in content), encoding="utf-8")
    ctx.data = str(p)


def _row(ctx, row):
    """Line 1 good, line 2 blank, line 3 the bad row, line 4 good: errors must name line 3."""
    _data(ctx, [GOOD, "", row, GOOD])


def _model_copy(ctx):
    dst = ctx.tmp / "model"
    shutil.copytree(ctx.model, dst)
    ctx.model = str(dst)
    return dst


def _adapter_copy(ctx):
    dst = ctx.tmp / "adapter"
    dst.mkdir()
    for f in ("adapters.safetensors", "adapter_config.json"):
        shutil.copy2(Path(ctx.adapter) / f, dst / f)
    ctx.adapter = str(dst)
    return dst


def _edit_json(path: Path, **changes):
    obj = json.loads(path.read_text())
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(obj.get(k), dict):
            obj[k].update(v)
        else:
            obj[k] = v
    path.write_text(json.dumps(obj))


def _yaml(ctx, text):
    p = ctx.tmp / "run.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    ctx.train_extra += ["--config", str(p)]
    ctx.config = str(p)


def _run_dir_with_checkpoint(ctx):
    shutil.copytree(ctx.good_run, ctx.tmp / "run")


def _resume_as_trained(ctx):
    """--resume with the copied run's own data and batch size (a resume may not change them) and one more step."""
    ctx.train_extra.extend(["--resume", "--data", str(ctx.good_run.parent / "train.jsonl"), "--batch-size", "4",
                            "--iters", "2"])


def _long_prompt(ctx):
    # Chosen and rejected share their first 40 tokens: with --max-length 16 no pair keeps a difference.
    same = "Sure! Here is a short note about the sea: it is lovely and calm and blue and deep."
    _data(ctx, [{"prompt": "Please describe the sea. " * 5, "chosen": same + " Yes.", "rejected": same + " No."}] * 4)
    ctx.extra += ["--max-length", "16"]


def _fifty_mb_line(ctx):
    p = ctx.tmp / "huge.jsonl"
    with open(p, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(GOOD) + "\n")
        fh.write('{"prompt": "' + "a" * (50 * 1024 * 1024) + '", "chosen": "x", "rejected": "y"}\n')
    ctx.data = str(p)


@dataclass
class Bad:
    id: str
    commands: tuple
    make: Callable
    expect: Callable  # ctx -> text that must appear in stderr
    subprocess: tuple = ()  # commands also run as a subprocess (proves no traceback from a clean start)


DATA_CMDS = ("validate", "train", "eval")
MODEL_CMDS = ("validate", "train", "eval", "chat", "export")
ADAPTER_CMDS = ("eval", "chat", "export", "train")


def at(line, field_msg):
    return lambda c: f"{c.data}:{line}: {field_msg}"


BAD_INPUTS = [
    # ---- data files: malformed / truncated / wrong encoding
    Bad("jsonl-truncated-at-eof", DATA_CMDS, lambda c: _data(c, json.dumps(GOOD) + '\n{"prompt": "a", "chosen": "x", "rej'),
        at(2, "json: invalid JSON: Unterminated string"), subprocess=("train",)),
    Bad("jsonl-malformed-line", DATA_CMDS, lambda c: _data(c, [GOOD, "{prompt: 'a'}"]),
        at(2, "json: invalid JSON: Expecting property name enclosed in double quotes")),
    Bad("json-list-truncated", DATA_CMDS, lambda c: _data(c, "[" + json.dumps(GOOD) + ',\n{"prompt": "b", "cho', "bad.json"),
        at(2, "json: invalid JSON: Unterminated string")),
    Bad("json-list-trailing-garbage", DATA_CMDS, lambda c: _data(c, "[" + json.dumps(GOOD) + "]\nxyz\n", "bad.json"),
        at(2, "json: invalid JSON: extra data after the JSON list")),
    Bad("latin-1-text", DATA_CMDS, lambda c: _data(c, json.dumps(GOOD).encode() + b'\n{"prompt": "caf\xe9", "chosen": "x", "rejected": "y"}\n'),
        at(2, "file: not UTF-8 text (bad byte 0xe9")),
    Bad("utf-16-text", DATA_CMDS, lambda c: _data(c, (json.dumps(GOOD) + "\n").encode("utf-16")),
        at(1, "file: not UTF-8 text (bad byte 0xff")),
    Bad("binary-nul-bytes", DATA_CMDS, lambda c: _data(c, json.dumps(GOOD).encode() + b"\n\x00\x01\x02\x03garbage\n"),
        at(2, "file: binary data (NUL byte)")),
    Bad("binary-random", DATA_CMDS, lambda c: _data(c, bytes(range(256)) * 64),
        at(2, "file: not UTF-8 text (bad byte 0x80 at offset 128)")),
    Bad("empty-file", DATA_CMDS, lambda c: _data(c, b""), at(1, "file: empty")),
    Bad("whitespace-only", DATA_CMDS, lambda c: _data(c, b"\r\n  \n\t\n"), at(1, "file: empty")),
    Bad("directory-not-file", DATA_CMDS, lambda c: setattr(c, "data", str(c.tmp)),
        lambda c: f"error: {c.tmp}: is a directory"),
    Bad("missing-file", DATA_CMDS, lambda c: setattr(c, "data", str(c.tmp / "nope.jsonl")),
        lambda c: f"error: {c.tmp / 'nope.jsonl'}: no such file"),
    Bad("deeply-nested", DATA_CMDS, lambda c: _data(c, [GOOD, "[" * 50000 + "]" * 50000]),
        at(2, "json: nested too deeply")),
    Bad("integer-over-digit-limit", DATA_CMDS, lambda c: _data(c, [GOOD, '{"prompt": ' + "9" * 5000 + "}"]),
        at(2, "json: invalid JSON: ")),
    Bad("line-of-50-mb", DATA_CMDS, _fifty_mb_line, at(2, "row: 52.4 million characters, over the limit"),
        subprocess=("validate",)),
    # ---- rows: wrong types at every field, empty strings, null roles, missing turns
    Bad("row-is-a-string", DATA_CMDS, lambda c: _row(c, '"just text"'), at(3, "row: expected a JSON object, got a string")),
    Bad("row-is-a-number", DATA_CMDS, lambda c: _row(c, 42), at(3, "row: expected a JSON object, got a number")),
    Bad("prompt-number", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": 7}),
        at(3, "prompt: expected a string or a list of messages, got a number")),
    Bad("prompt-bool", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": True}),
        at(3, "prompt: expected a string or a list of messages, got a boolean")),
    Bad("chosen-object", DATA_CMDS, lambda c: _row(c, {**GOOD, "chosen": {"text": "x"}}),
        at(3, "chosen: expected a list of messages, got an object")),
    Bad("chosen-null", DATA_CMDS, lambda c: _row(c, {**GOOD, "chosen": None}),
        at(3, "chosen: expected a list of messages, got null")),
    Bad("rejected-bool", DATA_CMDS, lambda c: _row(c, {**GOOD, "rejected": False}),
        at(3, "rejected: expected a list of messages, got a boolean")),
    Bad("system-list", DATA_CMDS, lambda c: _row(c, {**GOOD, "system": ["be nice"]}),
        at(3, "system: expected a string, got a list")),
    Bad("content-number", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": [{"role": "user", "content": 3}]}),
        at(3, "prompt[0].content: expected a string, got a number")),
    Bad("content-missing", DATA_CMDS, lambda c: _row(c, {**GOOD, "chosen": [{"role": "assistant"}]}),
        at(3, "chosen[0].content: missing")),
    Bad("role-null", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": [{"role": None, "content": "q"}]}),
        at(3, "prompt[0].role: expected a string, got null")),
    Bad("role-unknown", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": [{"role": "bot", "content": "q"}]}),
        at(3, "prompt[0].role: unknown role 'bot'")),
    Bad("message-not-object", DATA_CMDS, lambda c: _row(c, {**GOOD, "rejected": ["No."]}),
        at(3, "rejected[0]: expected a message object with role and content, got a string")),
    Bad("empty-prompt", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": ""}), at(3, "prompt: empty prompt")),
    Bad("empty-chosen", DATA_CMDS, lambda c: _row(c, {**GOOD, "chosen": " "}), at(3, "chosen: empty completion")),
    Bad("empty-message-list", DATA_CMDS, lambda c: _row(c, {**GOOD, "prompt": []}),
        at(3, "prompt: empty list of messages")),
    Bad("missing-rejected", DATA_CMDS, lambda c: _row(c, {"prompt": "q", "chosen": "x"}),
        at(3, "rejected: missing")),
    Bad("missing-assistant-turn", DATA_CMDS, lambda c: _row(c, {"chosen": [U("q"), A("x"), U("more?")],
                                                               "rejected": [U("q"), A("y")]}),
        at(3, "chosen: missing assistant turn")),
    Bad("completion-with-user-role", DATA_CMDS, lambda c: _row(c, {**GOOD, "chosen": [U("x")]}),
        at(3, "chosen[0].role: expected 'assistant' in a completion")),
    Bad("chosen-equals-rejected", DATA_CMDS, lambda c: _row(c, {**GOOD, "rejected": GOOD["chosen"]}),
        at(3, "chosen,rejected: chosen and rejected are identical")),
    Bad("prompts-differ", DATA_CMDS, lambda c: _row(c, {"chosen": [U("q"), A("x")], "rejected": [U("other"), A("y")]}),
        at(3, "rejected: prompt differs from chosen's at message 0")),
    Bad("no-hh-transcript", DATA_CMDS, lambda c: _row(c, {"chosen": "hello", "rejected": "bye"}),
        at(3, "chosen: expected a message list or an Anthropic-HH transcript")),
    Bad("remapped-key-absent", DATA_CMDS, lambda c: (_data(c, [GOOD]), c.extra.extend(["--chosen-key", "good"])),
        at(1, "good: missing")),
    Bad("rows-over-length-limit", ("train", "eval"), _long_prompt,
        lambda c: f"{c.data}: no pairs left after the length limits (max_length=16)"),
    Bad("bad-valid-data", ("train",), lambda c: (_data(c, [GOOD, "{"], "valid.jsonl"),
                                                 c.train_extra.extend(["--valid-data", c.data]),
                                                 setattr(c, "data", c.good_data)),
        lambda c: f"{c.tmp / 'valid.jsonl'}:2: json: invalid JSON"),
    # ---- config files and hyper-parameters
    Bad("config-unknown-key", ("train",), lambda c: _yaml(c, "learning_rat: 0.1\n"),
        lambda c: f"error: {c.config}: learning_rat: unknown config key", subprocess=("train",)),
    Bad("config-not-a-mapping", ("train",), lambda c: _yaml(c, "- beta\n- 0.1\n"),
        lambda c: f"error: {c.config}: expected a mapping of config keys, got list"),
    Bad("config-python-tag", ("train",), lambda c: _yaml(c, "beta: !!python/object/apply:os.getcwd []\n"),
        lambda c: f"error: {c.config}:1: invalid YAML"),
    Bad("config-truncated", ("train",), lambda c: _yaml(c, "beta: [0.1, 0.2\n"), lambda c: f"error: {c.config}:"),
    Bad("config-not-utf8", ("train",), lambda c: _yaml(c, b"beta: \xff\xfe\n"),
        lambda c: f"error: {c.config}: cannot read config file"),
    Bad("config-missing", ("train",), lambda c: c.train_extra.extend(["--config", str(c.tmp / "nope.yaml")]),
        lambda c: f"error: {c.tmp / 'nope.yaml'}: cannot read config file"),
    Bad("config-null-beta", ("train",), lambda c: _yaml(c, "beta: null\n"),
        lambda c: f"error: {c.config}: beta: expected a value, got null"),
    Bad("config-float-epochs", ("train",), lambda c: _yaml(c, "epochs: 2.5\n"),
        lambda c: f"error: {c.config}: epochs: expected an integer, got 2.5"),
    Bad("config-bool-learning-rate", ("train",), lambda c: _yaml(c, "learning_rate: true\n"),
        lambda c: f"error: {c.config}: learning_rate: expected a number, got True"),
    Bad("config-zero-grad-accum", ("train",), lambda c: _yaml(c, "grad_accum: 0\n"),
        lambda c: f"error: {c.config}: grad_accum: must be a positive integer, got 0"),
    Bad("config-lora-keys-number", ("train",), lambda c: _yaml(c, "lora_keys: 5\n"),
        lambda c: f"error: {c.config}: lora_keys: expected a list of strings"),
    *[Bad(f"flag{flag}={value}", ("train",), (lambda f, v: lambda c: c.train_extra.extend([f, v]))(flag, value),
          (lambda m: lambda c: f"error: config: {m}")(msg))
      for flag, value, msg in [
          ("--iters", "0", "iters: must be a positive integer, got 0"),
          ("--beta", "-0.1", "beta: must be a positive number, got -0.1"),
          ("--learning-rate", "nan", "learning_rate: must be a positive number, got nan"),
          ("--lora-scale", "0", "lora_scale: must be a positive number, got 0.0"),
          ("--lora-dropout", "1.5", "lora_dropout: must be in [0, 1), got 1.5"),
          ("--label-smoothing", "0.5", "label_smoothing: must be in [0, 0.5), got 0.5"),
          ("--max-grad-norm", "0", "max_grad_norm: must be positive, got 0.0"),
          ("--warmup-steps", "-1", "weight_decay/warmup_steps: must not be negative"),
          ("--lora-layers", "0", "lora_layers: must be -1 (all) or a positive count, got 0"),
          ("--max-length", "0", "max_length: must be a positive integer, got 0"),
          ("--save-every", "0", "save_every: must be a positive integer, got 0"),
          ("--lora-rank", "-8", "lora_rank: must be a positive integer, got -8"),
      ]],
    Bad("lora-keys-match-nothing", ("train",), lambda c: c.train_extra.extend(["--lora-keys", "no.such_proj"]),
        lambda c: "error: lora_keys: no module matched ['no.such_proj']"),
    # ---- model folders
    Bad("model-without-tokenizer", MODEL_CMDS,
        lambda c: (lambda m: [(m / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")])(_model_copy(c)),
        lambda c: f"error: {c.model}: no tokenizer files"),
    Bad("model-without-weights", MODEL_CMDS, lambda c: (_model_copy(c) / "model.safetensors").unlink(),
        lambda c: f"error: {c.model}: no model*.safetensors weights"),
    Bad("model-without-config", MODEL_CMDS, lambda c: (_model_copy(c) / "config.json").unlink(),
        lambda c: f"error: {c.model}: not a model folder: config.json is missing"),
    Bad("model-is-a-file", MODEL_CMDS, lambda c: setattr(c, "model", c.good_data),
        lambda c: f"error: {c.good_data}: model must be a folder"),
    Bad("model-corrupt-safetensors", MODEL_CMDS,
        lambda c: (_model_copy(c) / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage" * 100),
        lambda c: f"error: {c.model}: cannot load model", subprocess=("chat",)),
    Bad("model-truncated-safetensors", MODEL_CMDS,
        lambda c: (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]))(_model_copy(c) / "model.safetensors"),
        lambda c: f"error: {c.model}: cannot load model"),
    Bad("model-config-invalid-json", MODEL_CMDS, lambda c: (_model_copy(c) / "config.json").write_text("{"),
        lambda c: f"error: {c.model}: cannot load model"),
    Bad("model-unknown-architecture", MODEL_CMDS, lambda c: _edit_json(_model_copy(c) / "config.json", model_type="nonsense"),
        lambda c: f"error: {c.model}: cannot load model"),
    Bad("model-config-wrong-shape", MODEL_CMDS, lambda c: _edit_json(_model_copy(c) / "config.json", hidden_size=128),
        lambda c: f"error: {c.model}: cannot load model"),
    Bad("model-tokenizer-corrupt", MODEL_CMDS, lambda c: (_model_copy(c) / "tokenizer.json").write_text('{"version": '),
        lambda c: f"error: {c.model}: cannot load model"),
    Bad("model-custom-code-untrusted", MODEL_CMDS, lambda c: _edit_json(_model_copy(c) / "config.json", model_file="x.py"),
        lambda c: f"error: {c.model}: the model folder wants to run its own Python code: x.py (config.json "
                  "model_file); refused: pass --trust-remote-code"),
    # ---- adapters
    Bad("adapter-for-another-model", ADAPTER_CMDS, lambda c: setattr(c, "adapter", str(c.other_adapter)),
        lambda c: f"{c.other_adapter / 'adapters.safetensors'}: adapter does not fit this model", subprocess=("export",)),
    Bad("adapter-folder-missing", ADAPTER_CMDS, lambda c: setattr(c, "adapter", str(c.tmp / "no-adapter")),
        lambda c: f"error: {c.tmp / 'no-adapter'}: adapter folder not found"),
    Bad("adapter-without-weights", ADAPTER_CMDS, lambda c: (_adapter_copy(c) / "adapters.safetensors").unlink(),
        lambda c: f"error: {c.adapter}: not an adapter folder"),
    Bad("adapter-config-invalid-json", ADAPTER_CMDS, lambda c: (_adapter_copy(c) / "adapter_config.json").write_text("{'a'"),
        lambda c: f"error: {c.adapter}/adapter_config.json: invalid adapter config"),
    Bad("adapter-config-full-finetune", ADAPTER_CMDS,
        lambda c: _edit_json(_adapter_copy(c) / "adapter_config.json", fine_tune_type="full"),
        lambda c: f"error: {c.adapter}/adapter_config.json: fine_tune_type: only lora and dora"),
    Bad("adapter-config-rank-string", ADAPTER_CMDS,
        lambda c: _edit_json(_adapter_copy(c) / "adapter_config.json", lora_parameters={"rank": "eight"}),
        lambda c: f"error: {c.adapter}/adapter_config.json: lora_parameters.rank: expected a positive integer, got 'eight'"),
    Bad("adapter-config-num-layers-null", ADAPTER_CMDS,
        lambda c: _edit_json(_adapter_copy(c) / "adapter_config.json", num_layers=None),
        lambda c: f"error: {c.adapter}/adapter_config.json: num_layers: expected a positive integer or -1, got None"),
    Bad("adapter-corrupt-safetensors", ADAPTER_CMDS,
        lambda c: (_adapter_copy(c) / "adapters.safetensors").write_bytes(os.urandom(64)),
        lambda c: f"error: {c.adapter}/adapters.safetensors: cannot read adapter weights"),
    # ---- outputs
    Bad("export-target-is-a-file", ("export",), lambda c: (c.tmp / "export").write_text("keep me"),
        lambda c: f"error: {c.tmp / 'export'}: already exists"),
    Bad("output-is-a-file", ("train",), lambda c: (c.tmp / "run").write_text("keep me"),
        lambda c: f"error: {c.tmp / 'run'}: --output exists and is not a folder"),
    Bad("output-holds-a-run", ("train",), _run_dir_with_checkpoint,
        lambda c: f"error: {c.tmp / 'run'}: already holds a run"),
    Bad("resume-nothing", ("train",), lambda c: c.train_extra.append("--resume"),
        lambda c: f"error: {c.tmp / 'run'}: nothing to resume"),
    Bad("resume-only-a-torn-checkpoint", ("train",),
        lambda c: ((c.tmp / "run/checkpoints/.tmp-abc").mkdir(parents=True),
                   (c.tmp / "run/checkpoints/step_0000003").mkdir(),
                   (c.tmp / "run/checkpoints/step_0000003/adapters.safetensors").write_bytes(b"torn"),
                   c.train_extra.append("--resume")),
        lambda c: f"error: {c.tmp / 'run'}: nothing to resume (no complete checkpoint"),
    Bad("resume-corrupt-run-config", ("train",),
        lambda c: (_run_dir_with_checkpoint(c), (c.tmp / "run/config.yaml").write_text("iters: [1\n"),
                   c.train_extra.append("--resume")),
        lambda c: f"error: {c.tmp / 'run' / 'config.yaml'}:"),
    Bad("resume-corrupt-optimizer-state", ("train",),
        lambda c: (_run_dir_with_checkpoint(c),
                   (c.tmp / "run/checkpoints/step_0000001/optimizer.safetensors").write_bytes(b"\x00" * 7),
                   _resume_as_trained(c)),
        lambda c: f"error: {c.tmp / 'run/checkpoints/step_0000001'}: unreadable checkpoint"),
    Bad("resume-with-other-data", ("train",), lambda c: (_run_dir_with_checkpoint(c), _resume_as_trained(c),
                                                         c.train_extra.extend(["--data", c.data])),
        lambda c: f"error: {c.tmp / 'run'}: this run was trained with data {str(c.good_run.parent / 'train.jsonl')!r} "
                  f"(now {c.data!r})"),
    # ---- sampling
    Bad("sampling-negative-temperature", ("chat",), lambda c: c.chat_extra.extend(["--temperature", "-1"]),
        lambda c: "error: sampling: need --temperature >= 0"),
    Bad("sampling-zero-top-p", ("chat",), lambda c: c.chat_extra.extend(["--top-p", "0"]),
        lambda c: "error: sampling: need --temperature >= 0, 0 < --top-p <= 1"),
    Bad("sampling-zero-max-tokens", ("chat",), lambda c: c.chat_extra.extend(["--max-tokens", "0"]),
        lambda c: "--max-tokens >= 1"),
]

assert len({b.id for b in BAD_INPUTS}) == len(BAD_INPUTS) >= 30


def argv(cmd: str, c) -> list[str]:
    if cmd == "validate":
        return ["validate", c.data, *(["--model", c.model] if c.model != c.tiny_model else []), *c.extra]
    if cmd == "train":
        init = ["--init-adapter", c.adapter] if c.adapter != str(c.good_run) else []
        return ["train", "--model", c.model, "--data", c.data, "--output", str(c.tmp / "run"), "--iters", "1",
                "--batch-size", "2", *init, *c.extra, *c.train_extra]
    if cmd == "eval":
        return ["eval", "--model", c.model, "--adapter", c.adapter, "--data", c.data, *c.extra]
    if cmd == "chat":
        return ["chat", "--model", c.model, "--adapter", c.adapter, "--max-tokens", "2", *c.chat_extra]
    if cmd == "export":
        return ["export", "--model", c.model, "--adapter", c.adapter, "--output", str(c.tmp / "export"),
                "--format", "mlx"]
    raise AssertionError(cmd)


def _tree(folder: Path) -> dict:
    """Every file under `folder` (but the cache and lock files) with its content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if rel.parts[0] == "cache" or p.name == ".lock":
            continue
        out[str(rel)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


DATA_LINE = re.compile(r"^\S.*:\d+: [\w\[\].,-]+: .+$")


def _check_stderr(err: str, expected: str) -> None:
    assert "Traceback" not in err, err
    assert expected in err, f"expected {expected!r} in:\n{err}"
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) <= 1, err
    # The last word is the error: an `error: ...` line, or (validate) a FILE:LINE: field: message line.
    assert lines and (lines[-1].startswith("error: ") or DATA_LINE.match(lines[-1]) or
                      lines[-1].startswith(expected[:20])), err


CASES = [pytest.param(b, cmd, id=f"{b.id}-{cmd}") for b in BAD_INPUTS for cmd in b.commands]


@pytest.fixture
def ctx(tmp_path, tiny_model, good_run, other_adapter):
    data = write_jsonl(tmp_path / "good.jsonl", synthetic_pairs(6, seed=9))
    return SimpleNamespace(tmp=tmp_path, tiny_model=tiny_model, model=tiny_model, good_run=good_run,
                           adapter=str(good_run), other_adapter=other_adapter, good_data=data, data=data,
                           extra=[], train_extra=[], chat_extra=[], config=None)


@pytest.mark.parametrize("bad, cmd", CASES)
def test_bad_input(bad, cmd, ctx, capsys, monkeypatch):
    bad.make(ctx)
    before = _tree(ctx.tmp)
    fixtures = _tree(ctx.good_run), _tree(Path(ctx.tiny_model))
    run_existed, export_existed = (ctx.tmp / "run").exists(), (ctx.tmp / "export").exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/quit\n"))
    rc = main(argv(cmd, ctx))
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}\n{err}"
    _check_stderr(err, bad.expect(ctx))
    assert "Traceback" not in out
    assert (ctx.tmp / "run").exists() == run_existed and (ctx.tmp / "export").exists() == export_existed
    assert _tree(ctx.tmp) == before
    assert (_tree(ctx.good_run), _tree(Path(ctx.tiny_model))) == fixtures


SUBPROCESS_CASES = [pytest.param(b, cmd, id=f"{b.id}-{cmd}") for b in BAD_INPUTS for cmd in b.subprocess]


@pytest.mark.parametrize("bad, cmd", SUBPROCESS_CASES)
def test_bad_input_in_a_fresh_process(bad, cmd, ctx):
    bad.make(ctx)
    before = _tree(ctx.tmp)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "mlx_dpo", *argv(cmd, ctx)], capture_output=True, text=True,
                       input="hello\n/quit\n", timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    _check_stderr(r.stderr, bad.expect(ctx))
    assert "Traceback" not in r.stdout
    assert _tree(ctx.tmp) == before


def test_bom_and_crlf_load_fine(tiny_model, tmp_path, capsys):
    """The control: a UTF-8 BOM and CRLF line ends are not bad input, in JSONL and in a JSON list."""
    rows = synthetic_pairs(4, seed=1)
    jsonl = tmp_path / "crlf.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode())
    jlist = tmp_path / "crlf.json"
    jlist.write_bytes(b"\xef\xbb\xbf" + ("[\r\n" + ",\r\n".join(json.dumps(r) for r in rows) + "\r\n]\r\n").encode())
    for p in (jsonl, jlist):
        assert main(["validate", str(p), "--model", tiny_model]) == 0
        assert "4 valid pairs" in capsys.readouterr().out
    assert main(["train", "--model", tiny_model, "--data", str(jsonl), "--output", str(tmp_path / "run"),
                 "--iters", "1"]) == 0
