"""Chat and generation: scripted sessions, --compare, and the adapter switch being exact."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm import load

from mlx_dpo.config import TrainConfig
from mlx_dpo.model.generate import ChatSession, Sampling, answer, load_for_generation
from mlx_dpo.train.trainer import Trainer

from conftest import synthetic_pairs, write_jsonl

GREEDY = ["--temperature", "0", "--max-tokens", "8"]


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    data = write_jsonl(root / "t.jsonl", synthetic_pairs(16, seed=11))
    cfg = TrainConfig(model=tiny_model, data=data, output=str(root / "run"), iters=8, batch_size=4,
                      learning_rate=5e-3, cache_dir=str(root / "cache")).validate()
    Trainer(cfg).setup().train()
    return str(root / "run")


def cli(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "mlx_dpo", *args], input=stdin, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_adapter_switch_off_is_exactly_the_base(tiny_model, run_dir):
    model, tok, switch = load_for_generation(tiny_model, run_dir, log=lambda m: None)
    base, _ = load(tiny_model)
    x = mx.array([tok.encode("Please describe the sea.")])
    tuned = np.array(model(x))
    with switch.disabled():
        np.testing.assert_array_equal(np.array(model(x)), np.array(base(x)))
    np.testing.assert_array_equal(np.array(model(x)), tuned)  # and back on again
    assert not np.allclose(tuned, np.array(base(x)), atol=1e-3)


def test_greedy_answers_differ_from_base(tiny_model, run_dir):
    model, tok, switch = load_for_generation(tiny_model, run_dir, log=lambda m: None)
    msgs = [{"role": "user", "content": "Please describe the sea."}]
    greedy = Sampling(temperature=0.0, max_tokens=10)
    tuned = answer(model, tok, msgs, greedy)
    with switch.disabled():
        base = answer(model, tok, msgs, greedy)
    assert tuned and base and tuned != base
    assert answer(model, tok, msgs, greedy) == tuned  # greedy is deterministic


def test_chat_session_keeps_history_and_resets(tiny_model):
    model, tok, _ = load_for_generation(tiny_model, log=lambda m: None)
    chat = ChatSession(model, tok, Sampling(temperature=0.8, max_tokens=5, seed=3), system="Be brief.")
    first = "".join(chat.send("hello"))
    "".join(chat.send("and again"))
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.messages[2]["content"] == first
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "Be brief."}]
    assert "".join(chat.send("hello")) == first  # same seed, same history: same sample


def test_scripted_chat_two_turns(tiny_model, run_dir):
    r = cli("chat", "--model", tiny_model, "--adapter", run_dir, *GREEDY, stdin="hello\nwhat now?\n/quit\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("assistant> ") == 2
    assert "Traceback" not in r.stderr


def test_chat_reset_and_eof(tiny_model):
    r = cli("chat", "--model", tiny_model, *GREEDY, stdin="hello\n/reset\nhello\n")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("assistant> ")]
    assert len(lines) == 2 and lines[0] == lines[1]  # after /reset the same greedy answer again
    assert "(conversation cleared)" in r.stdout


def test_generate_compare_prints_both_labelled(tiny_model, run_dir):
    r = cli("generate", "--model", tiny_model, "--adapter", run_dir, "--prompt", "Please describe the sea.",
            "--compare", *GREEDY)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("=== base (adapter off) ===") < out.index("=== tuned (base + adapter) ===")
    base, tuned = out.split("=== tuned (base + adapter) ===")
    assert base.split("===")[-1].strip() != tuned.strip()


def test_generate_without_chat_template_continues_text(tmp_path):
    from tiny_models import build_tiny_model

    plain = build_tiny_model(tmp_path / "plain", chat_template=False)
    r = cli("generate", "--model", str(plain), "--prompt", "The quick brown fox", *GREEDY)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_compare_needs_an_adapter(tiny_model):
    r = cli("generate", "--model", tiny_model, "--prompt", "hi", "--compare")
    assert r.returncode == 2 and "--compare needs --adapter" in r.stderr


def _model_with_template(tiny_model, tmp_path, template: str) -> str:
    import json
    import shutil

    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst)
    cfg = json.loads((dst / "tokenizer_config.json").read_text())
    cfg["chat_template"] = template
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return str(dst)


# A tools template used without tools: `functions` is undefined for every conversation.
TOOLS_TEMPLATE = ("{{ 'Tools: ' + functions[0].name }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
                  "{% if add_generation_prompt %}A:{% endif %}")
# A template that refuses some conversations only (as raise_exception on a role order it rejects).
REFUSES_FAIL = ("{% if 'FAIL' in messages[-1]['content'] %}{{ raise_exception('cannot render this') }}{% endif %}"
                "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_generate_and_chat_on_a_template_that_raises_are_one_line_and_exit_2(tiny_model, tmp_path, capsys,
                                                                             monkeypatch):
    """They once died with a Jinja traceback where `validate` reports the template's problem in one line."""
    import io

    from mlx_dpo.cli import main

    model = _model_with_template(tiny_model, tmp_path, TOOLS_TEMPLATE)
    line = ("error: chat template: rendering failed: 'functions' is undefined; the model's chat template refuses "
            "this conversation (roles: user): change the conversation, or use a model whose template renders it "
            "(tokenizer_config.json or chat_template.jinja)")
    assert main(["generate", "--model", model, "--prompt", "hi", *GREEDY]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == line and "Traceback" not in err
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", "--model", model, *GREEDY]) == 2  # refused before the chat starts
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == line


def test_chat_says_a_message_its_template_refuses_and_goes_on(tiny_model, tmp_path, capsys, monkeypatch):
    import io

    from mlx_dpo.cli import main
    from mlx_dpo.model.generate import TemplateRefused

    model = _model_with_template(tiny_model, tmp_path, REFUSES_FAIL)
    monkeypatch.setattr("sys.stdin", io.StringIO("FAIL this\nhello\n/quit\n"))
    assert main(["chat", "--model", model, *GREEDY]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("assistant> (not answered: chat template: rendering failed: cannot render this;")
    assert out[1].startswith("assistant> ") and len(out) == 2

    m, tok, _ = load_for_generation(model, log=lambda s: None)
    chat = ChatSession(m, tok, Sampling(temperature=0.0, max_tokens=4))
    "".join(chat.send("hello"))
    before = [dict(x) for x in chat.messages]
    with pytest.raises(TemplateRefused):
        "".join(chat.send("FAIL"))
    assert chat.messages == before  # the refused turn left no trace in the history
