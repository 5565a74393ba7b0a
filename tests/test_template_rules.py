"""The boundary rules of data/template.py on small synthetic templates (no download; the real templates are in
test_real_templates.py): system folds, reasoning templates, <think> handling, the frozen date, end tokens."""

from __future__ import annotations

import json

import pytest

from conftest import A, S, U
from mlx_dpo.data.pairs import PreferencePair
from mlx_dpo.data.template import (chat_prompt_text, render_pairs, render_options, set_render_options,
                                   tokenize_pair)
from tiny_models import build_tiny_model

IM = "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
GEN = "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"

# Mistral-Nemo's rule: the system text goes into the last user turn only while that turn is the last message.
NEMO_LIKE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set sys = messages[0]['content'] %}"
    "{%- set msgs = messages[1:] %}{%- else %}{%- set msgs = messages %}{%- endif %}"
    "{%- for message in msgs %}{%- if message['role'] == 'user' and loop.last and sys is defined %}"
    "{{- '<|im_start|>user\\n' + sys + '\\n\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}" + IM + "{%- endif %}{%- endfor %}" + GEN
)
# DeepSeek-R1's rule: answers lose everything up to </think>; the generation prompt opens <think>.
R1_LIKE = (
    "{%- for message in messages %}{%- if message['role'] == 'assistant' and '</think>' in message['content'] %}"
    "{{- '<|im_start|>assistant\\n' + message['content'].split('</think>')[-1] + '<|im_end|>\\n' }}"
    "{%- else %}" + IM + "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)
DATED = "{{- 'Today: ' + strftime_now('%d %b %Y') + '\\n' }}{%- for message in messages %}" + IM + "{%- endfor %}" + GEN
NO_END = "{%- for message in messages %}{{- message['role'] + ': ' + message['content'] + '\\n' }}{%- endfor %}" \
         "{%- if add_generation_prompt %}{{- 'assistant: ' }}{%- endif %}"


@pytest.fixture(scope="module")
def make_tok(tmp_path_factory):
    from mlx_lm.utils import load_tokenizer

    def make(template):
        path = build_tiny_model(tmp_path_factory.mktemp("t") / "m")
        cfg = json.loads((path / "tokenizer_config.json").read_text())
        cfg["chat_template"] = template
        (path / "tokenizer_config.json").write_text(json.dumps(cfg))
        return load_tokenizer(path, eos_token_ids=[2])

    return make


def pair(prompt, chosen, rejected, source="f:1"):
    return PreferencePair(prompt, [A(chosen)], [A(rejected)], source=source, format="conversational")


def test_system_text_stays_where_chat_puts_it(make_tok):
    tok = make_tok(NEMO_LIKE)
    p = pair([S("Be brief."), U("hi")], "Hello.", "Go away.")
    notes = []
    tp, _ = tokenize_pair(tok, p, notes)
    assert tok.decode(tp.prompt) == "<|im_start|>user\nBe brief.\n\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tp.prompt) == chat_prompt_text(tok, p.prompt)
    assert tok.decode(tp.chosen) == "Hello.<|im_end|>\n"
    assert [k for k, _ in notes] == ["system_last_user"]


def test_reasoning_template_trains_on_its_history_render_and_says_what_chat_adds(make_tok):
    tok = make_tok(R1_LIKE)
    result = render_pairs(tok, [pair([U("q")], "yes", "no", f"f:{i}") for i in (1, 2)], 100, 50)
    assert result.errors == [] and len(result.pairs) == 2
    assert tok.decode(result.pairs[0].prompt) == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    [warning] = result.warnings()
    assert warning.startswith("2 row(s): chat's generation prompt differs") and "chat adds '<think>\\n'" in warning


def test_think_block_is_kept_after_chats_opener_or_stripped_on_request(make_tok):
    tok = make_tok(R1_LIKE)
    p = pair([U("q")], "<think>\nsix by seven\n</think>\n\n42", "<think>\nguess\n</think>\n\n41")
    notes = []
    tp, _ = tokenize_pair(tok, p, notes)
    # The prompt is chat's (ending with the <think> opener); the completion is what the model writes after it.
    assert tok.decode(tp.prompt) == chat_prompt_text(tok, p.prompt)
    assert tok.decode(tp.chosen) == "six by seven\n</think>\n\n42<|im_end|>\n"
    assert [k for k, _ in notes] == ["think_kept"]
    set_render_options(tok, think="strip")
    try:
        tp, _ = tokenize_pair(tok, p)
        assert tok.decode(tp.chosen) == "42<|im_end|>\n"
        assert tok.decode(tp.prompt) == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    finally:
        set_render_options(tok)


def test_frozen_date_renders_the_same_prompt_on_any_day(make_tok):
    tok = make_tok(DATED)
    p = pair([U("q")], "yes", "no")
    set_render_options(tok, date="2024-07-26")
    try:
        assert chat_prompt_text(tok, p.prompt).startswith("Today: 26 Jul 2024\n")
        first = tokenize_pair(tok, p)[0]
        assert tokenize_pair(tok, p)[0] == first
        set_render_options(tok, date="2031-02-03")
        assert chat_prompt_text(tok, p.prompt).startswith("Today: 03 Feb 2031\n")
    finally:
        set_render_options(tok)
    assert render_options(tok).date is None
    with pytest.raises(ValueError):
        set_render_options(tok, date="26 Jul 2024")
    with pytest.raises(ValueError):
        set_render_options(tok, think="maybe")


def test_completion_without_an_end_token_gets_the_stop_token_and_is_said(make_tok):
    # Issue 26 changed this rule: such completions were trained open (a warning only); now the model's stop
    # token ends them, so the adapter learns to stop.
    tok = make_tok(NO_END)
    result = render_pairs(tok, [pair([U("q")], "yes", "no")], 100, 50)
    assert len(result.pairs) == 1
    assert result.pairs[0].chosen[-1] == result.pairs[0].rejected[-1] == tok.eos_token_id
    warnings = [w for w in result.warnings() if "end-of-turn" in w]
    assert len(warnings) == 1 and warnings[0].startswith("1 row(s): the chat template writes no end-of-turn token")


def test_chat_uses_the_same_system_fold_as_training(make_tok):
    from mlx_dpo.model.generate import prompt_tokens

    tok = make_tok("{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                   "{%- endif %}{%- for message in messages %}" + IM + "{%- endfor %}" + GEN)
    p = pair([S("sys"), U("q")], "yes", "no")
    tp, _ = tokenize_pair(tok, p)
    assert prompt_tokens(tok, p.prompt) == tp.prompt.tolist()
    assert tok.decode(tp.prompt) == "<|im_start|>user\nsys\n\nq<|im_end|>\n<|im_start|>assistant\n"


def test_config_template_date_is_checked_and_read_from_yaml(tmp_path):
    from mlx_dpo.config import TrainConfig, build_config, load_yaml
    from mlx_dpo.errors import UsageError

    assert TrainConfig(template_date="2024-07-26").validate().template_date == "2024-07-26"
    with pytest.raises(UsageError, match="template_date"):
        TrainConfig(template_date="yesterday").validate()
    f = tmp_path / "c.yaml"
    f.write_text("template_date: 2024-07-26\n")  # YAML reads this as a date, not a string
    assert build_config(load_yaml(f), {}).template_date == "2024-07-26"
