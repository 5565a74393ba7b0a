"""The data path at dataset scale (issue #13): compact token ids, a cache read without per-pair lists,
messages dropped once tokenized, JSONL read in blocks, and batched tokenizing that gives exactly the
ids of one-by-one tokenizing. Sizes are small here; benchmarks/data_scale.py measures 60k rows."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mlx_dpo.data import cache, pairs as pairs_mod, template
from mlx_dpo.data.pairs import DataKeys, PairRecord, PreferencePair, load_pairs
from mlx_dpo.data.prepare import prepare
from mlx_dpo.data.template import TokenizedPair, render_pairs, tokenize_pair, truncate_pair
from mlx_dpo.train.batching import make_batch
from mlx_dpo.train.prompt_sharing import make_shared_batch

from conftest import A, U
from test_template import chat_tok, plain_tok  # noqa: F401  (the same tokenizer fixtures)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rows(n: int) -> list[dict]:
    """Pairs of varied lengths, some with a system message and some multi-turn."""
    out = []
    for i in range(n):
        q = f"Question {i}: " + "why is the sky blue " * (i % 7)
        row = {"prompt": q, "chosen": f"Because of Rayleigh scattering ({i}).", "rejected": "No idea " * (1 + i % 4)}
        if i % 5 == 0:
            row["system"] = "Be brief."
        if i % 6 == 0:
            row = {"chosen": [U("hi"), A("hello"), U(q), A(row["chosen"])],
                   "rejected": [U("hi"), A("hello"), U(q), A(row["rejected"])]}
        out.append(row)
    return out


def write_jsonl(path, data) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return str(path)


def as_lists(tp: TokenizedPair) -> tuple:
    return tp.prompt.tolist(), tp.chosen.tolist(), tp.rejected.tolist(), tp.source


# ======================================================================= compact ids

def test_token_ids_are_int32_arrays_and_pairs_compare_by_value():
    tp = TokenizedPair([1, 2], [3], [4, 5], "f:1")
    assert all(isinstance(x, np.ndarray) and x.dtype == np.int32 for x in (tp.prompt, tp.chosen, tp.rejected))
    assert tp == TokenizedPair(np.array([1, 2]), [3], [4, 5], "f:1")
    assert tp != TokenizedPair([1, 2], [3], [4, 6], "f:1")
    assert tp.length == 4


def test_batches_join_array_ids_end_to_end_not_elementwise():
    # Same-length prompt and completion: `prompt + completion` on arrays would add them silently.
    pairs = [TokenizedPair([5, 6], [7, 8], [9, 10], "f:1")]
    batch = make_batch(pairs, [0], 1, 4)
    assert batch.inputs[0, :4].tolist() == [5, 6, 7, 8] and batch.inputs[1, :4].tolist() == [5, 6, 9, 10]
    shared = make_shared_batch(pairs, [0], 1, 4)
    assert shared.prompts[0, -2:].tolist() == [5, 6] and shared.targets[:, :2].tolist() == [[7, 8], [9, 10]]


def test_truncation_keeps_bos_and_copies_what_it_keeps():
    tp = TokenizedPair([0] + list(range(10, 20)), [1, 2, 3], [4, 5], "s:1")
    kept, truncated, _ = truncate_pair(tp, max_length=8, prompt_limit=4, bos_id=0)
    assert truncated and kept.prompt.tolist() == [0, 17, 18, 19]
    assert kept.chosen.base is None  # its own memory: the untruncated arrays can be freed


# ======================================================================= batched tokenizing is exact

@pytest.mark.parametrize("which", ["chat", "plain"])
def test_batched_render_equals_one_by_one_tokenizing(which, chat_tok, plain_tok, tmp_path, monkeypatch):
    tok = chat_tok if which == "chat" else plain_tok
    assert template._batch_encoder(tok) is not None  # the batch path really runs
    monkeypatch.setattr(template, "CHUNK", 7)  # several chunks, one of them short
    loaded = load_pairs(write_jsonl(tmp_path / "d.jsonl", rows(30))).pairs
    result = render_pairs(tok, loaded, 10_000, 5_000)
    assert result.errors == [] and len(result.pairs) == 30
    one_by_one = [tokenize_pair(tok, p)[0] for p in loaded]
    assert [as_lists(p) for p in result.pairs] == [as_lists(p) for p in one_by_one]
    assert result.raw_lengths["prompt"] == [len(p.prompt) for p in one_by_one]


def test_a_tokenizer_without_the_stock_batch_call_is_tokenized_one_by_one(chat_tok):
    class Custom:  # a wrapper with its own encode (as NewlineTokenizer has): never batched
        def __init__(self, inner):
            self._tokenizer = inner

        def encode(self, text, **kw):
            return self._tokenizer.encode(text, **kw)

    assert template._batch_encoder(Custom(chat_tok._tokenizer)) is None


def test_a_row_the_template_refuses_is_an_error_and_the_others_render(chat_tok):
    good = PreferencePair([U("q")], [A("yes")], [A("no")], "f:1", "explicit")
    bad = PreferencePair([U("q")], [A("yes")], [A("no")], "f:2", "explicit")
    bad.prompt = [{"role": "user", "content": None}]  # the template's `+` fails on it
    result = render_pairs(chat_tok, [good, bad, good], 100, 50)
    assert [p.source for p in result.pairs] == ["f:1", "f:1"]
    assert len(result.errors) == 1 and str(result.errors[0]).startswith("f:2: template: rendering failed")


# ======================================================================= messages are not kept

def test_prepare_keeps_only_records_of_tokenized_pairs(chat_tok, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", rows(12))
    prepared = prepare(path, DataKeys(), chat_tok, 1000, 500)
    assert all(isinstance(p, PairRecord) for p in prepared.load.pairs)
    assert prepared.formats() == {"explicit": 10, "implicit": 2} and prepared.valid_pairs == 12
    kept = prepare(path, DataKeys(), chat_tok, 1000, 500, keep_messages=3)
    assert [type(p) for p in kept.load.pairs[:4]] == [PreferencePair] * 3 + [PairRecord]
    # Without a tokenizer nothing is rendered, so the messages stay (validate's structure check).
    assert all(isinstance(p, PreferencePair) for p in prepare(path, DataKeys()).load.pairs)


def test_the_cache_holds_one_flat_array_and_a_hit_needs_no_messages(chat_tok, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MIN_PAIRS", 0)
    path = write_jsonl(tmp_path / "d.jsonl", rows(20))
    cold = prepare(path, DataKeys(), chat_tok, 40, 20)
    logs = []
    warm = prepare(path, DataKeys(), chat_tok, 40, 20, log=logs.append)
    assert any("from the cache" in line for line in logs)
    assert warm.pairs == cold.pairs and warm.report() == cold.report()
    flat = warm.pairs[0].prompt.base
    assert flat is not None and all(p.chosen.base is flat for p in warm.pairs)  # views, no per-pair copies
    assert all(isinstance(p, PairRecord) for p in warm.load.pairs)
    # A preview (the app's Data tab) still gets the messages of its first rows from a warm cache.
    preview = prepare(path, DataKeys(), chat_tok, 40, 20, keep_messages=2)
    assert [type(p) for p in preview.load.pairs[:3]] == [PreferencePair, PreferencePair, PairRecord]


def test_ids_unreadable_after_the_messages_are_dropped_are_tokenized_again(chat_tok, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MIN_PAIRS", 0)
    path = write_jsonl(tmp_path / "d.jsonl", rows(8))
    cold = prepare(path, DataKeys(), chat_tok, 1000, 500)
    real = np.lib.npyio.NpzFile.__getitem__

    def broken_ids(self, key):
        if key == "ids":
            raise OSError("bad block")
        return real(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", broken_ids)
    again = prepare(path, DataKeys(), chat_tok, 1000, 500)
    assert again.pairs == cold.pairs and again.errors == []


# ======================================================================= JSONL in blocks

def test_jsonl_read_in_blocks_matches_a_whole_read(tmp_path, monkeypatch):
    lines = [json.dumps({"prompt": f"p{i} \u2028 \u00e9", "chosen": f"c{i}", "rejected": "r"}) for i in range(40)]
    lines[7] = "{not json"
    lines[20] = json.dumps({"prompt": "x", "chosen": "same", "rejected": "same"})
    body = "\ufeff" + "\r\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:30]) + "\r" + "\n".join(lines[30:])
    f = tmp_path / "d.jsonl"
    f.write_bytes(body.encode("utf-8"))  # no newline at the end
    whole_rows, whole_errors = pairs_mod._rows_of_bytes(str(f), f.read_bytes())
    whole_rows = list(whole_rows)
    monkeypatch.setattr(pairs_mod, "BLOCK", 64)  # many blocks, some inside a line
    rows_, errors = pairs_mod.iter_rows(f)
    assert list(rows_) == whole_rows and errors == whole_errors
    assert len(errors) == 1 and (errors[0].line, errors[0].field) == (8, "json")


@pytest.mark.parametrize("raw, expected", [
    (b'{"a": 1}\n' * 30 + b'{"b": "\xff"}\n', ":31: file: not UTF-8 text (bad byte 0xff at offset 277)"),
    (b'{"a": 1}\n' * 30 + b'{"b": "\x00"}\n{"c": "\xff"}\n', ":32: file: not UTF-8 text"),  # UTF-8 first
    (b'{"a": 1}\n' * 30 + b'{"b": "\x00"}\n', ":31: file: binary data (NUL byte)"),
    (b"  \n\n \t\n" * 20, ":1: file: empty"),
], ids=["bad-byte", "bad-byte-after-nul", "nul", "empty"])
def test_file_level_errors_in_blocks_refuse_the_whole_file(tmp_path, monkeypatch, raw, expected):
    f = tmp_path / "d.jsonl"
    f.write_bytes(raw)
    monkeypatch.setattr(pairs_mod, "BLOCK", 16)
    rows_, errors = pairs_mod.iter_rows(f)
    assert list(rows_) == [] and len(errors) == 1 and expected in str(errors[0])
    assert errors == pairs_mod._rows_of_bytes(str(f), raw)[1]


def test_a_json_list_is_still_read(tmp_path, monkeypatch):
    f = tmp_path / "d.json"
    f.write_text("  \n" + json.dumps([{"prompt": "a", "chosen": "b", "rejected": "c"}] * 3), encoding="utf-8")
    monkeypatch.setattr(pairs_mod, "BLOCK", 8)
    assert len(load_pairs(f).pairs) == 3
