"""Loading, normalising and validating preference-pair files, and the `mlx-dpo validate` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_dpo.cli import main
from mlx_dpo.data.pairs import DataKeys, load_pairs, load_pairs_strict
from mlx_dpo.errors import DataError, UsageError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


from conftest import A, S, U  # noqa: E402  message builders shared by the tests


def write_jsonl(path: Path, rows) -> Path:
    """One JSON value per line; a str row is written verbatim (for broken lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def only_pair(path, keys=DataKeys()):
    result = load_pairs(path, keys)
    assert result.errors == []
    assert len(result.pairs) == 1
    return result.pairs[0]


def errors_of(path, keys=DataKeys()):
    result = load_pairs(path, keys)
    assert result.pairs == [] or result.errors
    return [str(e) for e in result.errors]  # as printed


# ======================================================================= formats

def test_explicit_strings_become_user_and_assistant_messages(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}])
    pair = only_pair(p)
    assert pair.prompt == [U("What is 2+2?")]
    assert pair.chosen == [A("4")]
    assert pair.rejected == [A("5")]
    assert pair.format == "explicit"
    assert pair.source == f"{p}:1"


def test_explicit_system_is_prepended_as_system_message(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"system": "Be brief.", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}])
    pair = only_pair(p)
    assert pair.prompt == [S("Be brief."), U("Capital of France?")]
    assert pair.chosen == [A("Paris.")]
    assert pair.rejected == [A("Lyon.")]


def test_conversational_multi_turn_prompt_is_kept_in_order(tmp_path):
    prompt = [S("sys"), U("hi"), A("hello"), U("how are you?")]
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": prompt, "chosen": [A("fine, thanks")], "rejected": [A("go away")]}])
    pair = only_pair(p)
    assert pair.prompt == prompt
    assert pair.chosen == [A("fine, thanks")]
    assert pair.rejected == [A("go away")]
    assert pair.format == "conversational"


def test_conversational_prompt_with_string_completions(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"prompt": [U("hi")], "chosen": "hello", "rejected": "bye"}])
    pair = only_pair(p)
    assert (pair.prompt, pair.chosen, pair.rejected) == ([U("hi")], [A("hello")], [A("bye")])


def test_system_field_is_not_added_twice_when_prompt_has_one(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"system": "other", "prompt": [S("own"), U("hi")], "chosen": "a", "rejected": "b"}])
    assert only_pair(p).prompt == [S("own"), U("hi")]


def test_extra_message_keys_are_dropped(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": [{"role": "user", "content": "hi", "name": "bob"}], "chosen": "a", "rejected": "b"}])
    assert only_pair(p).prompt == [U("hi")]


def test_implicit_message_lists_split_at_the_final_answer(tmp_path):
    shared = [S("sys"), U("hi"), A("hello"), U("and now?")]
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"chosen": shared + [A("good answer")], "rejected": shared + [A("bad answer")]}])
    pair = only_pair(p)
    assert pair.prompt == shared
    assert pair.chosen == [A("good answer")]
    assert pair.rejected == [A("bad answer")]
    assert pair.format == "implicit"


def test_implicit_with_system_field_prepends_system(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"system": "Be kind.", "chosen": [U("q"), A("yes")], "rejected": [U("q"), A("no")]}])
    assert only_pair(p).prompt == [S("Be kind."), U("q")]


def test_null_prompt_means_implicit(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": None, "chosen": [U("q"), A("yes")], "rejected": [U("q"), A("no")]}])
    pair = only_pair(p)
    assert pair.format == "implicit"
    assert pair.prompt == [U("q")]


def test_implicit_anthropic_hh_single_turn(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{
        "chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.",
        "rejected": "\n\nHuman: What is the capital of France?\n\nAssistant: I don't know.",
    }])
    pair = only_pair(p)
    assert pair.prompt == [U("What is the capital of France?")]
    assert pair.chosen == [A("Paris.")]
    assert pair.rejected == [A("I don't know.")]
    assert pair.format == "implicit"


def test_implicit_anthropic_hh_multi_turn(tmp_path):
    shared = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.\nA short one."
    p = write_jsonl(tmp_path / "d.jsonl", [{
        "chosen": shared + "\n\nAssistant: Why did the cat sit on the computer? To watch the mouse.",
        "rejected": shared + "\n\nAssistant: No.",
    }])
    pair = only_pair(p)
    assert pair.prompt == [U("Hi there"), A("Hello! How can I help?"), U("Tell me a joke.\nA short one.")]
    assert pair.chosen == [A("Why did the cat sit on the computer? To watch the mouse.")]
    assert pair.rejected == [A("No.")]


def test_implicit_mixed_transcript_and_message_list(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": [U("q"), A("no")]}])
    pair = only_pair(p)
    assert (pair.prompt, pair.chosen, pair.rejected) == ([U("q")], [A("yes")], [A("no")])


def test_json_list_file_loads_like_jsonl(tmp_path):
    rows = [
        {"prompt": "a", "chosen": "x", "rejected": "y"},
        {"prompt": [U("b")], "chosen": [A("x")], "rejected": [A("z")]},
        {"chosen": [U("c"), A("x")], "rejected": [U("c"), A("w")]},
    ]
    p = tmp_path / "d.json"
    p.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    result = load_pairs(p)
    assert result.errors == []
    assert result.rows == 3
    assert [(q.prompt, q.chosen, q.rejected) for q in result.pairs] == [
        ([U("a")], [A("x")], [A("y")]), ([U("b")], [A("x")], [A("z")]), ([U("c")], [A("x")], [A("w")])]
    assert dict(result.formats) == {"explicit": 1, "conversational": 1, "implicit": 1}
    # Each row's source is the line its element starts on.
    text = p.read_text().splitlines()
    for pair in result.pairs:
        line = int(pair.source.rsplit(":", 1)[1])
        assert text[line - 1].strip() == "{"


def test_jsonl_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('\n{"prompt": "a", "chosen": "x", "rejected": "y"}\n\n   \n'
                 '{"prompt": "b", "chosen": "x", "rejected": "y"}\n', encoding="utf-8")
    result = load_pairs(p)
    assert result.errors == []
    assert [q.source for q in result.pairs] == [f"{p}:2", f"{p}:5"]


def test_field_remapping_with_data_keys(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"question": "hi", "good": "hello", "bad": "go away", "sys": "Be nice.",
         "prompt": "IGNORED", "chosen": "IGNORED", "rejected": "IGNORED2", "system": "IGNORED"}])
    keys = DataKeys(prompt="question", chosen="good", rejected="bad", system="sys")
    pair = only_pair(p, keys)
    assert pair.prompt == [S("Be nice."), U("hi")]
    assert pair.chosen == [A("hello")]
    assert pair.rejected == [A("go away")]


def test_remapped_keys_appear_in_error_messages(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"question": "hi", "good": "hello"}])
    keys = DataKeys(prompt="question", chosen="good", rejected="bad")
    assert errors_of(p, keys) == [f"{p}:1: bad: missing (expected a string or a list of messages)"]


def test_utf8_bom_and_crlf_line_endings(tmp_path):
    rows = [{"prompt": "héllo", "chosen": "wörld ✓", "rejected": "nö"},
            {"prompt": "b", "chosen": "x", "rejected": "y"}]
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(r, ensure_ascii=False).encode() for r in rows) + b"\r\n")
    result = load_pairs(p)
    assert result.errors == []
    assert [(q.prompt, q.chosen) for q in result.pairs] == [([U("héllo")], [A("wörld ✓")]), ([U("b")], [A("x")])]
    assert [q.source for q in result.pairs] == [f"{p}:1", f"{p}:2"]


def test_utf8_bom_and_crlf_in_json_list(tmp_path):
    p = tmp_path / "d.json"
    text = '[\r\n  {"prompt": "a", "chosen": "x", "rejected": "y"},\r\n  {"prompt": "b", "chosen": "x", "rejected": "x"}\r\n]\r\n'
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = load_pairs(p)
    assert [q.prompt for q in result.pairs] == [[U("a")]]
    assert [str(e) for e in result.errors] == [f"{p}:3: chosen,rejected: chosen and rejected are identical"]


def test_unicode_line_separators_inside_strings_are_not_line_breaks(tmp_path):
    rows = [{"prompt": "line\u2028sep", "chosen": "next\x85line", "rejected": "para\u2029sep"},
            {"prompt": "b", "chosen": "x", "rejected": "y"}]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    result = load_pairs(p)
    assert result.errors == []
    assert result.pairs[0].prompt == [U("line\u2028sep")]
    assert result.pairs[0].chosen == [A("next\x85line")]
    assert [q.source for q in result.pairs] == [f"{p}:1", f"{p}:2"]


def test_load_pairs_strict_returns_pairs_or_raises_with_every_error(tmp_path):
    good = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "chosen": "x", "rejected": "y"}])
    assert [q.chosen for q in load_pairs_strict(good)] == [[A("x")]]
    bad = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "a", "chosen": "x"}, "{nope", {"prompt": "a"}])
    with pytest.raises(DataError) as exc:
        load_pairs_strict(bad)
    assert sorted(e.split(": ")[0] for e in exc.value.errors) == [f"{bad}:1", f"{bad}:2", f"{bad}:3"]
    assert "(and 2 more)" in str(exc.value)


# ======================================================================= row errors

ROW_ERRORS = [
    # (row, expected "field: message" after "FILE:LINE: ")
    ({"prompt": "q", "rejected": "r"}, "chosen: missing (expected a string or a list of messages)"),
    ({"prompt": "q", "chosen": "c"}, "rejected: missing (expected a string or a list of messages)"),
    ({"prompt": 42, "chosen": "c", "rejected": "r"}, "prompt: expected a string or a list of messages, got a number"),
    ({"prompt": {"text": "q"}, "chosen": "c", "rejected": "r"},
     "prompt: expected a string or a list of messages, got an object"),
    ({"prompt": "q", "chosen": None, "rejected": "r"}, "chosen: expected a list of messages, got null"),
    ({"prompt": "q", "chosen": "c", "rejected": 3.5}, "rejected: expected a list of messages, got a number"),
    ({"prompt": "q", "chosen": {"role": "assistant", "content": "c"}, "rejected": "r"},
     "chosen: expected a list of messages, got an object"),
    ({"prompt": "q", "chosen": True, "rejected": "r"}, "chosen: expected a list of messages, got a boolean"),
    ({"prompt": "q", "chosen": "c", "rejected": "r", "system": 7}, "system: expected a string, got a number"),
    ({"prompt": "q", "chosen": "c", "rejected": "r", "system": ["s"]}, "system: expected a string, got a list"),
    ({"prompt": "   ", "chosen": "c", "rejected": "r"}, "prompt: empty prompt"),
    ({"prompt": "q", "chosen": "", "rejected": "r"}, "chosen: empty completion"),
    ({"prompt": "q", "chosen": "c", "rejected": " \n\t"}, "rejected: empty completion"),
    ({"prompt": [U("q")], "chosen": [A("")], "rejected": [A("r")]}, "chosen: empty completion"),
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "chosen,rejected: chosen and rejected are identical"),
    ({"prompt": [U("q")], "chosen": [A("x")], "rejected": "x"}, "chosen,rejected: chosen and rejected are identical"),
    ({"prompt": [{"role": "bot", "content": "q"}], "chosen": "c", "rejected": "r"},
     "prompt[0].role: unknown role 'bot' (expected system, user or assistant)"),
    ({"prompt": [{"content": "q"}], "chosen": "c", "rejected": "r"}, "prompt[0].role: missing"),
    ({"prompt": [U("q"), {"role": "user"}], "chosen": "c", "rejected": "r"}, "prompt[1].content: missing"),
    ({"prompt": [{"role": "user", "content": 5}], "chosen": "c", "rejected": "r"},
     "prompt[0].content: expected a string, got a number"),
    ({"prompt": [{"role": "user", "content": None}], "chosen": "c", "rejected": "r"},
     "prompt[0].content: expected a string, got null"),
    ({"prompt": [{"role": "user", "content": [{"type": "text", "text": "q"}]}], "chosen": "c", "rejected": "r"},
     "prompt[0].content: expected a string, got a list"),
    ({"prompt": [{"role": 1, "content": "q"}], "chosen": "c", "rejected": "r"},
     "prompt[0].role: expected a string, got a number"),
    ({"prompt": ["q"], "chosen": "c", "rejected": "r"},
     "prompt[0]: expected a message object with role and content, got a string"),
    ({"prompt": [], "chosen": "c", "rejected": "r"}, "prompt: empty list of messages"),
    ({"prompt": [U("q"), A("partial")], "chosen": "c", "rejected": "r"},
     "prompt[1].role: the prompt ends with an assistant turn; the answer belongs in chosen/rejected"),
    ({"prompt": [U("q")], "chosen": [U("c")], "rejected": "r"},
     "chosen[0].role: expected 'assistant' in a completion, got 'user'"),
    ({"chosen": [U("q"), A("x")], "rejected": [U("other q"), A("y")]},
     "rejected: prompt differs from chosen's at message 0: "
     "in implicit form both must share everything before the final answer"),
    ({"chosen": [S("s"), U("q"), A("x")], "rejected": [U("q"), A("y")]},
     "rejected: prompt differs from chosen's at message 0: "
     "in implicit form both must share everything before the final answer"),
    ({"chosen": "\n\nHuman: q\n\nAssistant: x", "rejected": "\n\nHuman: q2\n\nAssistant: y"},
     "rejected: prompt differs from chosen's at message 0: "
     "in implicit form both must share everything before the final answer"),
    ({"chosen": [U("q"), A("x"), U("more?")], "rejected": [U("q"), A("y")]},
     "chosen: missing assistant turn: the conversation must end with the answer"),
    ({"chosen": "\n\nHuman: q", "rejected": "\n\nHuman: q\n\nAssistant: y"},
     "chosen: missing assistant turn: the conversation must end with the answer"),
    ({"chosen": [A("x")], "rejected": [A("y")]}, "chosen: no prompt: the conversation has only assistant turns"),
    ({"chosen": "just text", "rejected": "other text"},
     "chosen: expected a message list or an Anthropic-HH transcript starting with '\\n\\nHuman:'"),
    ({"chosen": "\n\nHuman: q\n\nAssistant:", "rejected": "\n\nHuman: q\n\nAssistant: y"},
     "chosen: empty completion"),
    ({"chosen": [U("q"), A("x")], "rejected": 5},
     "rejected: expected a conversation (message list or HH transcript), got a number"),
    ({"chosen": [U("q"), A("x")], "rejected": [U("q"), A("x")]}, "chosen,rejected: chosen and rejected are identical"),
    ([1, 2, 3], "row: expected a JSON object, got a list"),
    ("just a string", "row: expected a JSON object, got a string"),
]


@pytest.mark.parametrize("row, expected", ROW_ERRORS, ids=[e.split(":")[0] + f"-{i}" for i, (_, e) in enumerate(ROW_ERRORS)])
def test_row_error_is_reported_with_file_line_and_field(tmp_path, row, expected):
    ok = {"prompt": "fine", "chosen": "a", "rejected": "b"}
    p = tmp_path / "d.jsonl"
    # The bad row sits on line 3, after a good row and a blank line.
    p.write_text(json.dumps(ok) + "\n\n" + json.dumps(row) + "\n" + json.dumps(ok) + "\n", encoding="utf-8")
    result = load_pairs(p)
    assert [str(e) for e in result.errors] == [f"{p}:3: {expected}"]
    assert [q.source for q in result.pairs] == [f"{p}:1", f"{p}:4"]
    assert result.rows == 3


def test_every_bad_row_is_reported_not_just_the_first(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "q", "chosen": "c", "rejected": "r"},             # 1 ok
        '{"prompt": "q", "chosen": "c", "rejected": ',                 # 2 bad JSON
        {"prompt": "q", "chosen": "c"},                               # 3 missing field
        {"prompt": "q", "chosen": "same", "rejected": "same"},        # 4 identical
        {"prompt": [{"role": "robot", "content": "x"}], "chosen": "c", "rejected": "r"},  # 5 unknown role
        {"prompt": "q2", "chosen": "c", "rejected": "r"},            # 6 ok
        "[1, 2",                                                      # 7 bad JSON
    ])
    result = load_pairs(p)
    # Reported in line order, file-level JSON errors interleaved with row errors.
    assert [(e.source, e.line) for e in result.errors] == [(str(p), n) for n in (2, 3, 4, 5, 7)]
    assert str(result.errors[0]).startswith(f"{p}:2: json: invalid JSON: ")
    assert str(result.errors[4]).startswith(f"{p}:7: json: invalid JSON: ")
    assert str(result.errors[1]) == f"{p}:3: rejected: missing (expected a string or a list of messages)"
    assert str(result.errors[2]) == f"{p}:4: chosen,rejected: chosen and rejected are identical"
    assert str(result.errors[3]).startswith(f"{p}:5: prompt[0].role: unknown role 'robot'")
    assert [q.source for q in result.pairs] == [f"{p}:1", f"{p}:6"]


def test_invalid_json_line_names_the_column(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ['{"prompt": "q", "chosen": "c" "rejected": "r"}'])
    assert errors_of(p) == [f"{p}:1: json: invalid JSON: Expecting ',' delimiter (column 31)"]


def test_json_list_row_errors_use_the_line_each_element_starts_on(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(
        '[\n'                                                   # 1
        '  {"prompt": "a", "chosen": "x", "rejected": "y"},\n'  # 2
        '  {\n'                                                 # 3
        '    "prompt": "b",\n'                                  # 4
        '    "chosen": "same",\n'                               # 5
        '    "rejected": "same"\n'                              # 6
        '  },\n'                                                # 7
        '  {"prompt": 3,\n'                                     # 8
        '   "chosen": "x", "rejected": "y"},\n'                 # 9
        '  "not an object",\n'                                  # 10
        '  {"prompt": "c", "chosen": "x", "rejected": "z"}\n'   # 11
        ']\n', encoding="utf-8")
    result = load_pairs(p)
    assert [str(e) for e in result.errors] == [
        f"{p}:3: chosen,rejected: chosen and rejected are identical",
        f"{p}:8: prompt: expected a string or a list of messages, got a number",
        f"{p}:10: row: expected a JSON object, got a string",
    ]
    assert [q.source for q in result.pairs] == [f"{p}:2", f"{p}:11"]
    assert result.rows == 5


def test_json_list_syntax_error_reports_its_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n  {"prompt": "a", "chosen": "x", "rejected": "y"},\n'
                 '  {"prompt": "b", "chosen": "x", "rejected": "y"}\n'
                 '  {"prompt": "c", "chosen": "x", "rejected": "y"}\n]\n', encoding="utf-8")
    result = load_pairs(p)
    assert len(result.errors) == 1
    assert str(result.errors[0]).startswith(f"{p}:4: json: invalid JSON: expected ',' or ']' after a list element")


@pytest.mark.parametrize("text, line, message", [
    ('[\n {"prompt": "a", "chosen": "x", "rejected": "y"},\n]\n', 3, "Expecting value"),
    ('[\n {"prompt": "a", "chosen": "x", "rejected": "y"}\n', 3, "expected ',' or ']' after a list element"),
    ('[{"prompt": "a", "chosen": "x", "rejected": "y"}]\n\n[]\n', 3, "extra data after the JSON list"),
])
def test_json_list_structural_errors(tmp_path, text, line, message):
    p = tmp_path / "d.json"
    p.write_text(text, encoding="utf-8")
    errors = load_pairs(p).errors
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{p}:{line}: json: invalid JSON: {message}")


def test_empty_json_list(tmp_path):
    p = tmp_path / "d.json"
    p.write_text("[ ]\n", encoding="utf-8")
    assert [str(e) for e in load_pairs(p).errors] == [f"{p}:1: file: no preference pairs found"]


def test_non_utf8_bytes_report_line_and_byte(tmp_path):
    p = tmp_path / "d.jsonl"
    good = b'{"prompt": "a", "chosen": "x", "rejected": "y"}\n'
    p.write_bytes(good + good + b'{"prompt": "caf\xe9", "chosen": "x", "rejected": "y"}\n')
    offset = 2 * len(good) + len(b'{"prompt": "caf')
    assert [str(e) for e in load_pairs(p).errors] == [f"{p}:3: file: not UTF-8 text (bad byte 0xe9 at offset {offset})"]


def test_utf16_file_is_reported_as_not_utf8(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes('{"prompt": "a", "chosen": "x", "rejected": "y"}\n'.encode("utf-16"))
    errors = load_pairs(p).errors
    assert len(errors) == 1 and str(errors[0]).startswith(f"{p}:1: file: not UTF-8 text (bad byte 0xff")


def test_binary_nul_data_is_rejected(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"prompt": "a", "chosen": "x", "rejected": "y"}\n\x00\x01\x02\x00garbage\n')
    assert [str(e) for e in load_pairs(p).errors] == [f"{p}:2: file: binary data (NUL byte), expected JSON text"]


@pytest.mark.parametrize("content", [b"", b"   \n\n\t\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "d.jsonl"
    p.write_bytes(content)
    result = load_pairs(p)
    assert [str(e) for e in result.errors] == [f"{p}:1: file: empty, expected preference pairs as JSONL or a JSON list"]
    assert result.pairs == []


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        load_pairs(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such file") as exc:
        load_pairs(tmp_path / "nope.jsonl")
    assert str(tmp_path / "nope.jsonl") in str(exc.value)


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "a", "chosen": "x", "rejected": "y"}\n' + "[" * 100000 + "]" * 100000 + "\n",
                 encoding="utf-8")
    result = load_pairs(p)
    assert len(result.pairs) == 1
    assert len(result.errors) == 1 and str(result.errors[0]).startswith(f"{p}:2: ")


# ======================================================================= `mlx-dpo validate`

GOOD_ROWS = [
    {"prompt": "Why is the sky blue?", "chosen": "Sunlight is scattered by the air.", "rejected": "It is paint."},
    {"prompt": [U("hi")], "chosen": [A("Hello!")], "rejected": [A("Go away.")]},
    {"chosen": [U("q"), A("yes")], "rejected": [U("q"), A("no")]},
]

BAD_ROWS = [
    {"prompt": "q", "chosen": "c", "rejected": "r"},
    '{"prompt": "q", "chosen": ',
    {"prompt": "q", "chosen": "c"},
    {"prompt": "q", "chosen": "x", "rejected": "x"},
    {"prompt": "q", "chosen": "c", "rejected": "r", "system": 5},
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def test_validate_good_file_prints_counts_and_exits_0(tmp_path, capsys):
    p = write_jsonl(tmp_path / "good.jsonl", GOOD_ROWS)
    assert main(["validate", str(p)]) == 0
    out, err = capsys.readouterr()
    assert f"{p}: 3 rows, 3 valid pairs (conversational 1, explicit 1, implicit 1), 0 error(s)" in out
    assert "Traceback" not in out + err


def test_validate_bad_file_lists_every_error_on_stderr_and_exits_2(tmp_path, capsys):
    p = write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS)
    expected = [str(e) for e in load_pairs(p).errors]
    assert len(expected) == 4
    assert main(["validate", str(p)]) == 2
    out, err = capsys.readouterr()
    err_lines = err.splitlines()
    for line in expected:
        assert line in err_lines
    for n in (2, 3, 4, 5):
        assert any(e.startswith(f"{p}:{n}: ") for e in err_lines)
    assert "rows, 1 valid pairs (explicit 1), 4 error(s)" in out.splitlines()[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jsonl", "no such file"),
    (lambda d: d, "is a directory"),
])
def test_validate_missing_path_or_directory_exits_2_with_one_line(tmp_path, capsys, make, message):
    target = make(tmp_path)
    assert main(["validate", str(target)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {target}: {message}")
    assert "Traceback" not in out + err


@pytest.mark.parametrize("content", [b"", b"\x00\x01binary", b"\xff\xfe\x00garbage"])
def test_validate_unreadable_content_exits_2(tmp_path, capsys, content):
    p = tmp_path / "d.jsonl"
    p.write_bytes(content)
    assert main(["validate", str(p)]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith(f"{p}:1: file: ")
    assert "Traceback" not in out + err


def test_validate_key_flags_remap_fields(tmp_path, capsys):
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"question": "hi", "good": "hello", "bad": "bye", "sys": "Be nice."},
        {"question": "hi", "good": "hello"},
    ])
    code = main(["validate", str(p), "--prompt-key", "question", "--chosen-key", "good",
                 "--rejected-key", "bad", "--system-key", "sys", "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines() == [f"{p}:2: bad: missing (expected a string or a list of messages)"]
    report = json.loads(out)
    assert report["valid_pairs"] == 1 and report["formats"] == {"explicit": 1}
    # Without the flags the same file has no usable rows at all.
    assert main(["validate", str(p), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["valid_pairs"] == 0
    assert f"{p}:1: chosen: missing (expected a string or a list of messages)" in err.splitlines()


def test_validate_json_prints_one_parseable_object(tmp_path, capsys):
    p = write_jsonl(tmp_path / "good.jsonl", GOOD_ROWS)
    assert main(["validate", str(p), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # the whole stdout is one JSON object
    assert report == {"file": str(p), "rows": 3, "valid_pairs": 3, "errors": 0,
                      "formats": {"explicit": 1, "conversational": 1, "implicit": 1}}


def _expected_lengths(tokenizer, pairs):
    """Prompt / completion token counts computed straight from the chat template."""
    out = []
    for pair in pairs:
        prompt = tokenizer.apply_chat_template(pair.prompt, add_generation_prompt=True)
        c = len(tokenizer.apply_chat_template(pair.prompt + pair.chosen)) - len(prompt)
        r = len(tokenizer.apply_chat_template(pair.prompt + pair.rejected)) - len(prompt)
        out.append((len(prompt), c, r))
    return out


def test_validate_with_model_reports_token_stats_and_truncation(tmp_path, capsys, tiny_model):
    from mlx_lm.utils import load_tokenizer

    story = "Once upon a time there was a little cat who lived in a small house."
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "hi", "chosen": "Paris.", "rejected": "No."},                        # short: fits
        {"prompt": "Tell me a story.", "chosen": story, "rejected": "No."},             # truncated, kept
        {"prompt": "Tell me a story.", "chosen": story + " The end.", "rejected": story + " Bye."},  # dropped
    ])
    lengths = _expected_lengths(load_tokenizer(tiny_model), load_pairs(p).pairs)
    max_length = 40
    totals = [pl + max(c, r) for pl, c, r in lengths]
    assert totals[0] <= max_length < min(totals[1:])  # the rows do what the comments say

    assert main(["validate", str(p), "--model", str(tiny_model), "--max-length", str(max_length), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "Traceback" not in out + err
    assert report["tokens"]["prompt"]["max"] == max(pl for pl, _, _ in lengths)
    assert report["tokens"]["prompt"]["min"] == min(pl for pl, _, _ in lengths)
    assert report["tokens"]["chosen"]["max"] == max(c for _, c, _ in lengths)
    assert report["tokens"]["rejected"]["min"] == min(r for _, _, r in lengths)
    assert report["tokens"]["total"]["max"] == max(totals)
    assert report["tokens"]["total"]["mean"] == pytest.approx(sum(totals) / 3)
    assert report["truncated"] == 2
    assert report["dropped"] == 1
    assert report["trainable_pairs"] == 2
    assert report["boundary_repaired"] == 0

    # A limit above every row: nothing truncated, same raw statistics.
    assert main(["validate", str(p), "--model", str(tiny_model), "--max-length", str(max(totals)), "--json"]) == 0
    roomy = json.loads(capsys.readouterr().out)
    assert (roomy["truncated"], roomy["dropped"], roomy["trainable_pairs"]) == (0, 0, 3)
    assert roomy["tokens"] == report["tokens"]


def test_validate_with_model_prints_a_table(tmp_path, capsys, tiny_model):
    p = write_jsonl(tmp_path / "d.jsonl", GOOD_ROWS)
    assert main(["validate", str(p), "--model", str(tiny_model), "--max-length", "30",
                 "--max-prompt-length", "20"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[1].split() == ["tokens", "min", "mean", "p50", "p95", "max"]
    assert [ln.split()[0] for ln in lines[2:6]] == ["prompt", "chosen", "rejected", "total"]
    assert "limits max_length=30, max_prompt_length=20:" in out
    assert "token statistics: pass --model" not in out


def test_validate_with_model_reports_tokenizing_progress(tmp_path, capsys, tiny_model, monkeypatch):
    """A 200 MB file once tokenized for 10 minutes without a word: validate reports the tokenize task."""
    from mlx_dpo.cli.output import ConsoleReporter
    from mlx_dpo.data.template import CHUNK

    events = []
    monkeypatch.setattr(ConsoleReporter, "task", lambda self, *a: events.append(a))
    n = CHUNK + 10
    p = write_jsonl(tmp_path / "big.jsonl", [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(n)])
    assert main(["validate", str(p), "--model", str(tiny_model)]) == 0
    capsys.readouterr()
    assert events == [("tokenize", CHUNK, n, "tokenizing big.jsonl"), ("tokenize", n, n, "tokenizing big.jsonl")]


def test_without_a_terminal_a_long_task_logs_a_progress_line_now_and_then(capsys):
    from mlx_dpo.cli.output import ConsoleReporter

    now = [0.0]
    r = ConsoleReporter(show_progress=False, clock=lambda: now[0])
    for t, done in ((0, 256), (10, 512), (31, 768), (40, 1024), (62, 1280), (63, 1500)):
        now[0] = t
        r.task("tokenize", done, 1500, "tokenizing big.jsonl")
    for t, done in ((100, 10), (129, 20), (131, 20)):  # a task that ends within TASK_EVERY says nothing
        now[0] = t
        r.task("eval", done, 20, "evaluating")
    assert capsys.readouterr().err.splitlines() == ["tokenizing big.jsonl: 768/1500 pairs (51%)",
                                                    "tokenizing big.jsonl: 1280/1500 pairs (85%)"]


def test_validate_rejects_prompt_limit_not_below_max_length(tmp_path, capsys):
    p = write_jsonl(tmp_path / "d.jsonl", GOOD_ROWS)
    assert main(["validate", str(p), "--max-length", "10", "--max-prompt-length", "10"]) == 2
    out, err = capsys.readouterr()
    assert "max_prompt_length" in err and "Traceback" not in out + err


def _run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mlx_dpo", "validate", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def test_validate_subprocess_bad_file(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS)
    proc = _run_cli(str(p))
    assert proc.returncode == 2
    for line in load_pairs(p).errors:
        assert str(line) in proc.stderr.splitlines()
    assert "Traceback" not in proc.stdout + proc.stderr


def test_validate_subprocess_good_file_json(tmp_path):
    p = write_jsonl(tmp_path / "good.jsonl", GOOD_ROWS)
    proc = _run_cli(str(p), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid_pairs"] == 3
    assert "Traceback" not in proc.stdout + proc.stderr
