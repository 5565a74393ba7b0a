"""Rendering pairs to token ids (checked prompt/completion boundary) and the truncation policy."""

from __future__ import annotations

import json
import os
import random

import pytest

from mlx_dpo.data.pairs import DataKeys, PreferencePair, load_pairs
from mlx_dpo.errors import DataError
from mlx_dpo.data.prepare import prepare, prepare_strict
from mlx_dpo.data.template import (SEP, BoundaryError, RenderResult, TokenizedPair, length_stats, render_pairs,
                              render_text, tokenize_pair, truncate_pair)
from tiny_models import CHATML_TEMPLATE, build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from conftest import A, S, U  # noqa: E402  message builders shared by the tests


def pair(prompt, chosen, rejected, source="mem:1"):
    wrap = lambda x: [U(x)] if isinstance(x, str) else x  # noqa: E731
    done = lambda x: [A(x)] if isinstance(x, str) else x  # noqa: E731
    return PreferencePair(wrap(prompt), done(chosen), done(rejected), source=source, format="explicit")


def _load_tokenizer(path):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(path)


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory):
    """The tiny model's tokenizer with its ChatML template (what `--model` loads)."""
    return _load_tokenizer(build_tiny_model(tmp_path_factory.mktemp("chat") / "m"))


@pytest.fixture(scope="module")
def plain_tok(tmp_path_factory):
    """Same tokenizer without a chat template: messages are concatenated as plain text."""
    tok = _load_tokenizer(build_tiny_model(tmp_path_factory.mktemp("plain") / "m", chat_template=False))
    assert not getattr(tok, "chat_template", None)
    return tok


def _model_with_template(root, template):
    path = build_tiny_model(root / "m")
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = template
    cfg_path.write_text(json.dumps(cfg))
    return path


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ======================================================================= chat-template rendering

CHAT_PAIRS = [
    pair("What is the capital of France?", "Paris.", "I think it is Lyon."),
    pair([S("You are a helpful assistant."), U("hi"), A("Hello! How are you?"), U("Fine, and you?")],
         "I am fine, thank you.", "Go away."),
    pair([U("Write a poem.")], [A("The sea,"), A("the wind and the stars.")], [A("No.")]),
]


@pytest.mark.parametrize("p", CHAT_PAIRS, ids=["single", "multi-turn", "multi-message-answer"])
def test_chat_prompt_ids_are_the_generation_prompt_tokens(chat_tok, p):
    tp, repaired = tokenize_pair(chat_tok, p)
    assert repaired is False
    # Token ids are int32 arrays (compact at dataset scale); compared as lists here.
    assert tp.prompt.tolist() == list(chat_tok.apply_chat_template(p.prompt, add_generation_prompt=True))
    assert tp.prompt.tolist() + tp.chosen.tolist() == list(chat_tok.apply_chat_template(p.prompt + p.chosen))
    assert tp.prompt.tolist() + tp.rejected.tolist() == list(chat_tok.apply_chat_template(p.prompt + p.rejected))
    assert tp.source == p.source


def test_chat_completion_is_the_answer_and_ends_its_turn(chat_tok):
    p = CHAT_PAIRS[0]
    tp, _ = tokenize_pair(chat_tok, p)
    im_end = chat_tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end == chat_tok.eos_token_id
    for ids, answer in ((tp.chosen.tolist(), "Paris."), (tp.rejected.tolist(), "I think it is Lyon.")):
        assert chat_tok.decode(ids).startswith(answer + "<|im_end|>")
        last = len(ids) - 1 - ids[::-1].index(im_end)
        # Only the template's trailing newline may follow the end-of-turn token.
        assert chat_tok.decode(ids[last + 1:]).strip() == ""
        assert ids.count(im_end) == 1
    # The assistant header belongs to the prompt, not to the trained completion.
    assert chat_tok.decode(tp.prompt).endswith("<|im_start|>assistant\n")


def test_render_text_with_and_without_template(chat_tok, plain_tok):
    prompt, answer = [S("sys"), U("q")], [A("a1"), A("a2")]
    assert render_text(chat_tok, prompt, None) == chat_tok.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=False)
    assert render_text(chat_tok, prompt, answer) == chat_tok.apply_chat_template(prompt + answer, tokenize=False)
    assert render_text(plain_tok, prompt, None) == "sys" + SEP + "q"
    # The answer follows the prompt after a separator (issue #13: base models glued "What is 7 x 8?56.").
    assert render_text(plain_tok, prompt, answer) == "sys" + SEP + "q" + SEP + "a1" + SEP + "a2"


def test_plain_text_completion_is_concatenated_text_plus_eos(plain_tok):
    p = pair("The weather is", " sunny and warm.", " cold.")
    tp, repaired = tokenize_pair(plain_tok, p)
    assert repaired is False
    eos = plain_tok.eos_token_id
    assert tp.prompt.tolist() == plain_tok.encode("The weather is")
    assert tp.chosen[-1] == eos and tp.rejected[-1] == eos
    assert plain_tok.decode(tp.chosen[:-1]) == " sunny and warm."
    assert plain_tok.decode(tp.rejected[:-1]) == " cold."
    assert tp.prompt.tolist() + tp.chosen[:-1].tolist() == plain_tok.encode("The weather is sunny and warm.")


# ======================================================================= boundary repair

MERGING = pair("Hello ", "world", "brown fox")  # the prompt's trailing space merges into the answer's first word


def test_merging_case_really_merges(plain_tok):
    prompt_ids = plain_tok.encode("Hello ")
    full_ids = plain_tok.encode("Hello world")
    assert full_ids[:len(prompt_ids)] != prompt_ids


def test_tokenize_pair_repairs_a_merged_boundary(plain_tok):
    tp, repaired = tokenize_pair(plain_tok, MERGING)
    assert repaired is True
    assert tp.prompt.tolist() == plain_tok.encode("Hello ")
    assert plain_tok.decode(tp.prompt) == "Hello "
    # The completion is exactly the answer (+ EOS), never shifted into or out of the prompt.
    assert tp.chosen[-1] == plain_tok.eos_token_id
    assert plain_tok.decode(tp.chosen[:-1]) == "world"
    assert plain_tok.decode(tp.rejected[:-1]) == "brown fox"
    assert tp.chosen[:-1].tolist() == plain_tok.encode("world", add_special_tokens=False)


def test_render_pairs_counts_repairs_and_warns_once(plain_tok):
    pairs = [MERGING, pair("The weather is", " warm.", " cold."), pair("The quick ", "brown fox", "world", "f:3")]
    result = render_pairs(plain_tok, pairs, max_length=1000, prompt_limit=500)
    assert result.errors == []
    assert result.repaired == 2
    assert len(result.pairs) == 3
    warnings = result.warnings()
    assert len(warnings) == 1
    assert warnings[0].startswith("2 row(s): prompt tokens were not a prefix")


def test_no_repair_warning_when_boundaries_are_clean(chat_tok):
    result = render_pairs(chat_tok, CHAT_PAIRS, max_length=1000, prompt_limit=500)
    assert (result.repaired, result.errors, result.warnings()) == (0, [], [])


def test_prepare_strict_logs_the_repair_warning_once(plain_tok, tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hello ", "chosen": "world", "rejected": "brown fox"},
                                              {"prompt": "The quick ", "chosen": "world", "rejected": "fox"}])
    logged = []
    prepared = prepare_strict(str(f), DataKeys(), plain_tok, 100, 50,
                              log=logged.append)
    assert len(prepared.pairs) == 2
    assert len(logged) == 1 and logged[0].startswith(f"warning: {f}: 2 row(s)")
    assert prepared.report()["boundary_repaired"] == 2


# ======================================================================= template that breaks the boundary

THINKING_TEMPLATE = (  # Qwen3-style: the generation prompt opens an empty think block the history never shows
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
)

NO_SYSTEM_TEMPLATE = (  # Gemma-style: refuses system messages
    "{%- if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{%- endif %}"
    + CHATML_TEMPLATE
)


BROKEN_TEMPLATE = (  # the answer's own text changes how the prompt renders: no boundary can be defined
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' and messages[-1]['content'].startswith('Go') %}{{- '<|im_start|>USER\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' }}{%- endif %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_non_prefix_template_is_trained_on_its_history_render_and_said_once(tmp_path):
    # Issue #13 changed this rule: such rows (every reasoning template) were row errors; now they train on
    # the prompt the template renders before an answer, and the difference from chat is reported once.
    tok = _load_tokenizer(_model_with_template(tmp_path, THINKING_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."},
                                              {"prompt": "q", "chosen": "yes", "rejected": "no"}])
    pairs = load_pairs(f).pairs
    tp, _ = tokenize_pair(tok, pairs[0])
    assert tok.decode(tp.prompt) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tp.chosen) == "Hello!<|im_end|>\n"
    result = render_pairs(tok, pairs, max_length=1000, prompt_limit=500)
    assert result.errors == [] and len(result.pairs) == 2
    [warning] = result.warnings()
    assert warning.startswith("2 row(s): chat's generation prompt differs")
    assert "chat adds '<think>\\n\\n</think>\\n\\n' after it" in warning and f"e.g. {f}:1: " in warning


def test_undefined_boundary_is_a_row_error_never_a_shift(tmp_path):
    tok = _load_tokenizer(_model_with_template(tmp_path, BROKEN_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."},
                                              {"prompt": "q", "chosen": "Go", "rejected": "no"}])
    pairs = load_pairs(f).pairs
    with pytest.raises(BoundaryError):
        tokenize_pair(tok, pairs[0])
    result = render_pairs(tok, pairs, max_length=1000, prompt_limit=500)
    assert result.pairs == []
    assert len(result.errors) == 2
    for line, err in zip((1, 2), result.errors):
        assert (err.source, err.line, err.field) == (str(f), line, "template")
        assert "prompt differently" in err.message and "fix the model's chat_template or rewrite this row" in err.message
    with pytest.raises(DataError) as exc:
        prepare_strict(str(f), DataKeys(), tok, 100, 50)
    assert exc.value.problems == result.errors and exc.value.errors == [str(e) for e in result.errors]


def test_template_that_refuses_a_system_message_gets_it_in_the_first_user_turn(tmp_path):
    # Issue #13 changed this rule (Gemma): the system row was a row error; now its text opens the first user turn.
    tok = _load_tokenizer(_model_with_template(tmp_path, NO_SYSTEM_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "yes", "rejected": "no"},
                                              {"system": "s", "prompt": "q", "chosen": "yes", "rejected": "no"}])
    result = render_pairs(tok, load_pairs(f).pairs, max_length=1000, prompt_limit=500)
    assert result.errors == [] and len(result.pairs) == 2
    assert tok.decode(result.pairs[1].prompt) == "<|im_start|>user\ns\n\nq<|im_end|>\n<|im_start|>assistant\n"
    [warning] = result.warnings()
    assert warning.startswith("1 row(s): the chat template does not accept a system message")


def test_template_that_raises_is_a_row_error(tmp_path):
    tok = _load_tokenizer(_model_with_template(tmp_path, NO_SYSTEM_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "yes", "rejected": "no"},
                                              {"prompt": [{"role": "system", "content": "s"}], "chosen": "yes",
                                               "rejected": "no"}])
    result = render_pairs(tok, load_pairs(f).pairs, max_length=1000, prompt_limit=500)
    assert len(result.pairs) == 1 and result.pairs[0].source == f"{f}:1"
    assert len(result.errors) == 1
    assert str(result.errors[0]).startswith(f"{f}:2: template: rendering failed: ")
    assert "System role not supported" in result.errors[0].message


def test_validate_cli_reports_template_errors(tmp_path, capsys):
    from mlx_dpo.cli import main

    model = _model_with_template(tmp_path, BROKEN_TEMPLATE)
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}])
    assert main(["validate", str(f), "--model", str(model)]) == 2
    out, err = capsys.readouterr()
    assert any(line.startswith(f"{f}:1: template: ") for line in err.splitlines())
    assert "Traceback" not in out + err


# ======================================================================= truncate_pair (synthetic)

def tp_(prompt, chosen, rejected, source="s:1"):
    return TokenizedPair(list(prompt), list(chosen), list(rejected), source)


def test_length_is_prompt_plus_longer_completion():
    assert tp_([1, 2, 3], [4, 5], [6, 7, 8, 9]).length == 7


def test_pair_that_fits_is_untouched():
    tp = tp_([1, 2, 3], [4, 5], [6])
    kept, truncated, reason = truncate_pair(tp, max_length=5, prompt_limit=2)
    assert kept is tp and truncated is False and reason == ""


def test_prompt_is_cut_from_the_left_to_the_prompt_limit_first():
    tp = tp_(range(10, 20), [1, 2, 3], [4, 5])
    kept, truncated, reason = truncate_pair(tp, max_length=8, prompt_limit=4)
    assert truncated is True and reason == ""
    assert kept.prompt.tolist() == [16, 17, 18, 19]  # the end of the prompt (the latest turn) survives
    assert kept.chosen.tolist() == [1, 2, 3] and kept.rejected.tolist() == [4, 5]  # completions fit after the prompt cut
    assert kept.source == "s:1"


def test_leading_bos_is_kept_when_the_prompt_is_cut():
    tp = tp_([0] + list(range(10, 20)), [1, 2, 3], [4, 5])
    kept, _, _ = truncate_pair(tp, max_length=8, prompt_limit=4, bos_id=0)
    assert kept.prompt.tolist() == [0, 17, 18, 19]
    # Without a BOS id (or when the prompt does not start with it) the plain suffix is kept.
    assert truncate_pair(tp, max_length=8, prompt_limit=4)[0].prompt.tolist() == [16, 17, 18, 19]
    assert truncate_pair(tp_(range(10, 20), [1], [2]), 8, 4, bos_id=0)[0].prompt.tolist() == [16, 17, 18, 19]


def test_completions_are_cut_from_the_right_after_the_prompt():
    tp = tp_([1, 2], range(100, 110), range(200, 206))
    kept, truncated, _ = truncate_pair(tp, max_length=6, prompt_limit=3)
    assert truncated is True
    assert kept.prompt.tolist() == [1, 2]  # within its limit: untouched
    assert kept.chosen.tolist() == [100, 101, 102, 103]
    assert kept.rejected.tolist() == [200, 201, 202, 203]
    assert kept.length == 6


def test_both_prompt_and_completions_cut():
    tp = tp_(range(10, 20), range(100, 110), [200, 201])
    kept, _, _ = truncate_pair(tp, max_length=7, prompt_limit=3)
    assert kept.prompt.tolist() == [17, 18, 19]
    assert kept.chosen.tolist() == [100, 101, 102, 103]
    assert kept.rejected.tolist() == [200, 201]


def test_pair_identical_after_truncation_is_dropped():
    tp = tp_([1, 2], [5, 6, 7, 8], [5, 6, 7, 9])
    kept, truncated, reason = truncate_pair(tp, max_length=5, prompt_limit=2)
    assert kept is None and truncated is True
    assert reason == "chosen and rejected are identical after truncation"


def test_shorter_completion_that_is_a_prefix_still_differs():
    tp = tp_([1, 2], [5, 6, 7, 8], [5, 6])
    kept, _, _ = truncate_pair(tp, max_length=5, prompt_limit=2)
    assert kept.chosen.tolist() == [5, 6, 7] and kept.rejected.tolist() == [5, 6]


def test_truncation_invariants_on_random_pairs():
    rng = random.Random(0)
    for _ in range(2000):
        max_length = rng.randint(2, 40)
        prompt_limit = rng.randint(1, max_length - 1)
        bos = rng.choice([None, 0])
        prompt = ([0] if bos is not None and rng.random() < 0.5 else []) + \
            [rng.randint(1, 5) for _ in range(rng.randint(1, 40))]
        chosen = [rng.randint(1, 3) for _ in range(rng.randint(1, 30))]
        rejected = [rng.randint(1, 3) for _ in range(rng.randint(1, 30))]
        if chosen == rejected:  # the loader never lets identical pairs through
            continue
        tp = tp_(prompt, chosen, rejected)
        kept, truncated, reason = truncate_pair(tp, max_length, prompt_limit, bos)
        assert truncated == (tp.length > max_length)
        if kept is None:
            assert reason
            continue
        assert kept.length <= max_length
        c, r = kept.chosen.tolist(), kept.rejected.tolist()
        assert c and r and c != r
        assert c == chosen[:len(c)] and r == rejected[:len(r)]
        if truncated:
            # The prompt keeps its end; it is cut only down to prompt_limit, never further.
            kp = kept.prompt.tolist()
            body = kp[1:] if bos is not None and prompt[0] == bos and kp[0] == bos else kp
            assert prompt[len(prompt) - len(body):] == body
            assert len(kept.prompt) == min(len(prompt), prompt_limit)
            # Completions are cut only as far as needed to fit.
            longer = max(len(kept.chosen), len(kept.rejected))
            assert longer == min(max(len(chosen), len(rejected)), max_length - len(kept.prompt))
        else:
            assert kept is tp


def test_total_never_exceeds_max_length_even_with_a_large_prompt_limit():
    # prepare()/render_pairs() accept any prompt_limit; only TrainConfig enforces prompt_limit < max_length.
    tp = tp_(range(10, 15), [1, 2, 3], [4, 5, 6, 7])
    kept, truncated, reason = truncate_pair(tp, max_length=4, prompt_limit=6)
    assert truncated is True
    assert kept is None or kept.length <= 4


# ======================================================================= truncation through render_pairs

STORY = "Once upon a time there was a little cat who lived in a small house."


def test_render_pairs_truncates_and_drops_with_counts(chat_tok):
    pairs = [
        pair("hi", "Paris.", "No.", "f:1"),                                        # fits
        pair("Tell me a story.", STORY, "No.", "f:2"),                             # truncated, kept
        pair("Tell me a story.", STORY + " The end.", STORY + " Bye.", "f:3"),     # identical after the cut
        pair([U("Please write a short poem about the sea, the wind and the stars at night.")] * 3,
             "The sea.", "No.", "f:4"),                                            # long prompt, cut from the left
    ]
    full = [tokenize_pair(chat_tok, p)[0] for p in pairs]
    max_length, prompt_limit = 40, 24
    assert full[0].length <= max_length < min(t.length for t in full[1:])
    assert len(full[1].prompt) <= prompt_limit < len(full[3].prompt)

    result = render_pairs(chat_tok, pairs, max_length=max_length, prompt_limit=prompt_limit)
    assert result.errors == []
    assert result.truncated == 3
    assert result.dropped == ["f:3: chosen and rejected are identical after truncation"]
    assert [t.source for t in result.pairs] == ["f:1", "f:2", "f:4"]
    # Raw lengths are recorded before truncation, for every rendered row.
    assert result.raw_lengths == {"prompt": [len(t.prompt) for t in full], "chosen": [len(t.chosen) for t in full],
                                  "rejected": [len(t.rejected) for t in full]}

    short, story, poem = result.pairs
    assert short == full[0]
    assert story.prompt.tolist() == full[1].prompt.tolist()  # prompt within its limit: untouched
    assert story.chosen.tolist() == full[1].chosen[:max_length - len(full[1].prompt)].tolist()
    assert story.rejected.tolist() == full[1].rejected.tolist()
    assert poem.prompt.tolist() == full[3].prompt[-prompt_limit:].tolist()
    assert chat_tok.decode(poem.prompt).endswith("<|im_start|>assistant\n")
    assert poem.chosen.tolist() == full[3].chosen.tolist()
    for t in result.pairs:
        assert t.length <= max_length

    warnings = result.warnings()
    assert warnings == ["1 pair(s) dropped by the length limits "
                        "(e.g. f:3: chosen and rejected are identical after truncation)"]


def test_prepare_report_uses_raw_lengths(chat_tok, tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Paris.", "rejected": "No."},
                                              {"prompt": "Tell me a story.", "chosen": STORY, "rejected": "No."}])
    prepared = prepare(str(f), DataKeys(), chat_tok, max_length=30, prompt_limit=15)
    full = [tokenize_pair(chat_tok, p)[0] for p in load_pairs(str(f)).pairs]  # prepared keeps no messages
    report = prepared.report()
    assert report["tokens"]["total"] == length_stats([t.length for t in full])
    assert report["tokens"]["chosen"] == length_stats([len(t.chosen) for t in full])
    assert report["truncated"] == sum(t.length > 30 for t in full)
    assert report["trainable_pairs"] == 2


def test_prepare_strict_fails_when_every_pair_is_dropped(chat_tok, tmp_path):
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Tell me a story.", "chosen": STORY + " The end.",
                                              "rejected": STORY + " Bye."}])
    with pytest.raises(DataError, match="no pairs left after the length limits"):
        prepare_strict(str(f), DataKeys(), chat_tok, 30, 15, log=lambda m: None)


# ======================================================================= length_stats

def test_length_stats_numbers():
    assert length_stats([1, 2, 3, 4, 100]) == {"min": 1, "mean": 22.0, "p50": 3, "p95": 80, "max": 100}
    assert length_stats([7]) == {"min": 7, "mean": 7.0, "p50": 7, "p95": 7, "max": 7}
    assert length_stats([]) == {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    stats = length_stats(list(range(1, 101)))
    assert (stats["p50"], stats["p95"], stats["mean"]) == (50, 95, 50.5)
    assert all(type(v) is int for k, v in stats.items() if k != "mean")
    json.dumps(stats)  # plain Python numbers, so `validate --json` can print them


def test_render_result_has_no_warnings_by_default():
    assert RenderResult().warnings() == []


# ======================================================================= --chat-template-kwargs

# A template variable in miniature, like Qwen3's enable_thinking (which mlx-lm's wrapper itself sets from the
# vocabulary, so a name of our own here): with no_think true the assistant's turn opens with an empty think block.
SWITCH_TEMPLATE = (
    "{%- set empty = '<think>\\n\\n</think>\\n\\n' if no_think is defined and no_think else '' %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (empty if message['role'] == 'assistant' else '') "
    "+ message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' + empty }}{%- endif %}"
)


def test_chat_template_kwargs_reach_every_render_and_the_data_cache_key(tmp_path):
    from mlx_dpo.data.cache import cache_key
    from mlx_dpo.data.sources import DataSpec, resolve
    from mlx_dpo.data.template import chat_prompt_text, set_render_options

    tok = _load_tokenizer(_model_with_template(tmp_path, SWITCH_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}])
    p = load_pairs(f).pairs[0]
    source = resolve(DataSpec(str(f)))
    plain_key = cache_key(source, {}, tok, 100, 50)
    assert "<think>" not in tok.decode(tokenize_pair(tok, p)[0].prompt)
    try:
        set_render_options(tok, template_kwargs={"no_think": True})
        assert chat_prompt_text(tok, p.prompt).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert tok.decode(tokenize_pair(tok, p)[0].prompt).endswith("<think>\n\n</think>\n\n")
        assert cache_key(source, {}, tok, 100, 50) != plain_key
    finally:
        set_render_options(tok)


@pytest.mark.parametrize("command", ["validate", "generate", "train"])
def test_bad_chat_template_kwargs_is_one_line_naming_the_flag(tmp_path, capsys, command):
    from mlx_dpo.cli import main

    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}])
    args = {"validate": ["validate", str(f)], "generate": ["generate", "--prompt", "hi"],
            "train": ["train", "--data", str(f), "--output", str(tmp_path / "run")]}[command]
    assert main([*args, "--chat-template-kwargs", "{enable_thinking: false}"]) == 2
    out, err = capsys.readouterr()
    [line] = err.strip().splitlines()
    assert "chat_template_kwargs: not valid JSON" in line and "--chat-template-kwargs takes a JSON object" in line
    assert "Traceback" not in out + err and not (tmp_path / "run").exists()


def test_chat_template_kwargs_are_used_by_validate_and_kept_in_config_yaml(tmp_path, capsys):
    import yaml

    from mlx_dpo.cli import main
    from mlx_dpo.config import load_run_config

    model = _model_with_template(tmp_path, SWITCH_TEMPLATE)
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."}] * 4)
    report = lambda *extra: (main(["validate", str(f), "--model", str(model), "--json", *extra]),  # noqa: E731
                             json.loads(capsys.readouterr().out))
    (code, plain), (code2, switched) = report(), report("--chat-template-kwargs", '{"no_think": true}')
    assert code == code2 == 0
    assert switched["tokens"]["prompt"]["max"] > plain["tokens"]["prompt"]["max"]
    run = tmp_path / "run"
    assert main(["train", "--model", str(model), "--data", str(f), "--output", str(run), "--iters", "1",
                 "--batch-size", "2", "--chat-template-kwargs", '{"no_think": true}']) == 0
    assert json.loads(load_run_config(run)["chat_template_kwargs"]) == {"no_think": True}
    assert yaml.safe_load((run / "config.yaml").read_text())["chat_template_kwargs"]


def test_chat_template_kwargs_may_be_a_yaml_mapping_and_are_kept_as_json(tmp_path):
    from mlx_dpo.config import build_config, load_yaml

    f = tmp_path / "c.yaml"
    f.write_text("chat_template_kwargs:\n  enable_thinking: false\n  tools: []\n")
    cfg = build_config(load_yaml(f), {}).validate()
    assert cfg.template_kwargs == {"enable_thinking": False, "tools": []}
    assert json.loads(cfg.chat_template_kwargs) == cfg.template_kwargs


# ======================================================================= answers the template leaves open

# GLM-4.6's shape: nothing follows the answer (the model stops on the next <|user|>).
OPEN_ENDED_TEMPLATE = (
    "{%- for message in messages %}{{- '<|' + message['role'] + '|>\\n' + message['content'] }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)


def test_a_completion_the_template_leaves_open_ends_with_the_stop_token_said_once(tmp_path):
    tok = _load_tokenizer(_model_with_template(tmp_path, OPEN_ENDED_TEMPLATE))
    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "chosen": "Hello!", "rejected": "Go away."},
                                              {"prompt": "q", "chosen": "yes", "rejected": "no"}])
    pairs = load_pairs(f).pairs
    tp, _ = tokenize_pair(tok, pairs[0])
    assert tok.decode(tp.chosen) == "Hello!" + tok.eos_token and tp.rejected[-1] == tok.eos_token_id
    result = render_pairs(tok, pairs, max_length=1000, prompt_limit=500)
    assert all(p.chosen[-1] == p.rejected[-1] == tok.eos_token_id for p in result.pairs)
    [warning] = result.warnings()
    assert warning.startswith("2 row(s): the chat template writes no end-of-turn token after the answer")
    assert f"e.g. {f}:1: ended with" in warning


def test_a_completion_that_ends_its_turn_gets_no_second_stop_token(chat_tok):
    tp, _ = tokenize_pair(chat_tok, pair("hi", "Hello!", "Go away."))
    assert chat_tok.decode(tp.chosen) == "Hello!<|im_end|>\n"


# ======================================================================= validate --show

def test_validate_show_prints_pairs_as_the_model_sees_them_with_the_boundary_and_end_tokens(tmp_path, capsys):
    from mlx_dpo.cli import main

    model = _model_with_template(tmp_path, CHATML_TEMPLATE)
    f = _write_jsonl(tmp_path / "d.jsonl", [{"system": "Be kind.", "prompt": "hi", "chosen": "Hello!",
                                               "rejected": "Go away."},
                                              {"prompt": "q", "chosen": "yes", "rejected": "no"},
                                              {"prompt": "r", "chosen": "a", "rejected": "b"}])
    assert main(["validate", str(f), "--model", str(model), "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert f"=== pair 1 of 2: {f}:1 as the model sees it" in out and f"pair 2 of 2: {f}:2" in out
    assert f"{f}:3" not in out
    assert "system: 'Be kind.'" in out
    assert "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n▌\n" in out
    assert "--- chosen (ends with '<|im_end|>'):\n▌Hello!<|im_end|>\n" in out
    assert "--- rejected (ends with '<|im_end|>'):\n▌Go away.<|im_end|>\n" in out

    assert main(["validate", str(f), "--model", str(model), "--show", "1", "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["shown"]
    assert shown["source"] == f"{f}:1" and shown["system"] == "Be kind."
    assert shown["prompt"].endswith("<|im_start|>assistant\n") and shown["chosen"] == "Hello!<|im_end|>\n"
    assert shown["chosen_end"] == shown["rejected_end"] == "<|im_end|>"
    assert shown["chosen_tokens"] == len(tokenize_pair(_load_tokenizer(model), load_pairs(f).pairs[0])[0].chosen)


def test_validate_show_without_a_model_is_one_line(tmp_path, capsys):
    from mlx_dpo.cli import main

    f = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "yes", "rejected": "no"}])
    assert main(["validate", str(f), "--show", "1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--show needs --model" in line


def test_eval_and_chat_of_a_run_take_its_chat_template_kwargs_unless_a_flag_says_otherwise(tmp_path):
    from argparse import Namespace

    from mlx_dpo.cli.use import _template_kwargs
    from mlx_dpo.config import TrainConfig, eval_flags_for_run, save_config

    run = tmp_path / "run"
    run.mkdir()
    save_config(TrainConfig(model="m", data="d", chat_template_kwargs='{"enable_thinking": false}'), run / "config.yaml")
    assert eval_flags_for_run(run, {})["chat_template_kwargs"] == '{"enable_thinking": false}'
    assert _template_kwargs(Namespace(adapter=str(run))) == {"enable_thinking": False}
    assert _template_kwargs(Namespace(adapter=str(run), chat_template_kwargs='{"x": 1}')) == {"x": 1}
    assert _template_kwargs(Namespace(adapter=None)) is None
