"""Collecting preferences by hand: the preference file, A/B answers, and `mlx-dpo chat --ab --collect`."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_dpo.cli import main
from mlx_dpo.data.pairs import load_pairs
from mlx_dpo.data.preferences import PreferenceFile, pair_row, unpaired_row
from mlx_dpo.errors import UsageError

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- the file

def test_rows_are_in_the_formats_the_loader_reads(tmp_path):
    prefs = PreferenceFile(tmp_path / "prefs" / "p.jsonl")
    assert prefs.count() == 0
    prefs.append(pair_row(PROMPT, "Hello!", "Go away.", model="m", picked="A"))
    prefs.append(pair_row(PROMPT + [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
                          "Goodbye!", "Whatever."))
    assert prefs.count() == 2
    loaded = load_pairs(prefs.path)
    assert not loaded.errors and len(loaded.pairs) == 2 and loaded.formats == {"conversational": 2}
    assert loaded.pairs[0].prompt == PROMPT and loaded.pairs[0].chosen == [{"role": "assistant", "content": "Hello!"}]
    thumb = unpaired_row(PROMPT, "Hello!", True)
    assert thumb["completion"] == [{"role": "assistant", "content": "Hello!"}] and thumb["label"] is True


def test_undo_removes_only_its_own_last_row(tmp_path):
    prefs = PreferenceFile(tmp_path / "p.jsonl")
    first, second = pair_row(PROMPT, "a", "b"), pair_row(PROMPT, "c", "d")
    prefs.append(first)
    prefs.append(second)
    assert not prefs.undo(first)  # not the last line any more: left alone
    assert prefs.undo(second) and prefs.count() == 1
    assert rows_of(prefs.path) == [first]


def test_a_file_that_is_not_a_preference_file_is_refused_and_kept(tmp_path):
    p = tmp_path / "notes.jsonl"
    p.write_text('{"prompt": [], "chosen": "x", "rejected": "y"}\nnot json at all\n', encoding="utf-8")
    before = p.read_bytes()
    with pytest.raises(UsageError, match=r"notes.jsonl:2: not a preference row"):
        PreferenceFile(p).count()
    assert p.read_bytes() == before
    with pytest.raises(UsageError, match="is not a file"):
        PreferenceFile(tmp_path).count()


def test_a_full_disk_is_a_clear_error_and_nothing_is_lost(tmp_path, monkeypatch):
    import errno

    from mlx_dpo.data import preferences

    prefs = PreferenceFile(tmp_path / "p.jsonl")
    prefs.append(pair_row(PROMPT, "a", "b"))
    before = prefs.path.read_bytes()

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(preferences.os, "write", full)
    with pytest.raises(UsageError, match="cannot write the preference file: the disk is full"):
        prefs.append(pair_row(PROMPT, "c", "d"))
    monkeypatch.undo()
    assert prefs.path.read_bytes() == before


def _disk_with_room(monkeypatch, room: int, how: str):
    """os.write on a disk with `room` bytes left. "short": as the system does it, the write that does not
    fit writes what fits and returns that count, the next one raises ENOSPC; "raise": part written, then
    ENOSPC from the same call; "fsync": every byte written, the fsync reports ENOSPC (delayed allocation)."""
    import errno

    from mlx_dpo.data import preferences

    real_write, left = os.write, [room]

    def write(fd, data):
        if how == "fsync" or len(data) <= left[0]:
            left[0] -= len(data)
            return real_write(fd, data)
        if left[0] == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[:left[0]]))
        left[0] = 0
        if how == "raise":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return n

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(preferences.os, "write", write)
    if how == "fsync":
        monkeypatch.setattr(preferences.os, "fsync", fsync)


@pytest.mark.parametrize("how", ["short", "raise", "fsync"])
@pytest.mark.parametrize("torn_tail", [False, True])
def test_a_disk_that_fills_up_mid_row_leaves_the_file_byte_for_byte_as_it_was(tmp_path, monkeypatch, how,
                                                                              torn_tail):
    prefs = PreferenceFile(tmp_path / "p.jsonl")
    prefs.append(pair_row(PROMPT, "a", "b"))
    if torn_tail:  # another writer's torn last line: the append writes a newline first, which must go too
        with open(prefs.path, "ab") as fh:
            fh.write(b'{"prompt": [')
    before = prefs.path.read_bytes()
    _disk_with_room(monkeypatch, 7, how)
    try:
        prefs.append(pair_row(PROMPT, "c " * 500, "d"))
    except UsageError as e:
        error = str(e)
    else:
        error = None
    monkeypatch.undo()
    assert prefs.path.read_bytes() == before
    assert error == f"{prefs.path}: cannot write the preference file: the disk is full; the row was not added"
    if not torn_tail:
        assert prefs.count() == 1  # still a preference file, and the next append works
        prefs.append(pair_row(PROMPT, "e", "f"))
        assert prefs.count() == 2


def test_a_folder_in_the_way_is_a_clear_error(tmp_path):
    (tmp_path / "p.jsonl").mkdir()
    with pytest.raises(UsageError, match="cannot write the preference file"):
        PreferenceFile(tmp_path / "p.jsonl").append(pair_row(PROMPT, "a", "b"))


def _append_many(path: str, tag: str, n: int) -> None:
    prefs = PreferenceFile(path)
    for i in range(n):
        prefs.append(pair_row(PROMPT, f"{tag} {i} " + "x" * 3000, "no"))  # long rows: a torn write would show


def test_two_writers_never_tear_a_line(tmp_path):
    path = str(tmp_path / "shared.jsonl")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, tag, 60)) for tag in ("one", "two")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    rows = rows_of(Path(path))  # every line parses
    assert len(rows) == 120
    assert sorted(r["chosen"][0]["content"].split()[0] for r in rows) == ["one"] * 60 + ["two"] * 60


# ---------------------------------------------------------------- the chat

def chat(args, lines, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mlx_dpo", "chat", *args], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_scripted_ab_chat_collects_pairs_that_train_reads(tiny_model, tmp_path):
    out = tmp_path / "prefs.jsonl"
    r = chat(["--model", tiny_model, "--ab", "--ab-source", "samples", "--temperature", "1.0", "--max-tokens", "8",
              "--system", "Be brief.", "--collect", str(out), "--seed", "3"],
             ["Hi", "/a", "Tell me more", "/edit b Sure, here is more.", "/undo", "Thanks", "/help", "/b",
              "/b", "/quit"])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout.count("A: ") == 3 and r.stdout.count("B: ") == 3
    assert "/both-bad" in r.stdout  # /help printed the commands instead of asking the model
    assert "no A/B answers to pick from yet" in r.stdout  # the second /b had nothing to pick
    rows = rows_of(out)
    assert [row["picked"] for row in rows] == ["A", "B"]  # the edited pick was undone
    first, second = rows
    assert first["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert first["edited"] is False and set(first["sides"].values()) == {"sample 1", "sample 2"}
    # The conversation went on with each picked (or edited) answer.
    assert second["prompt"][2] == {"role": "assistant", "content": first["chosen"][0]["content"]}
    assert second["prompt"][4] == {"role": "assistant", "content": "Sure, here is more."}
    assert second["prompt"][-1] == {"role": "user", "content": "Thanks"}
    assert first["sampling"]["temperature"] == 1.0 and first["sampling"]["seeds"]["A"] != first["sampling"]["seeds"]["B"]
    assert main(["validate", str(out), "--model", tiny_model]) == 0


def test_chat_commands_never_reach_the_model(tiny_model, tmp_path):
    r = chat(["--model", tiny_model, "--max-tokens", "4"], ["/help", "/quit"])
    assert r.returncode == 0, r.stderr
    assert "assistant>" not in r.stdout and "/reset" in r.stdout


def test_ab_sides_are_shuffled_and_recorded(tiny_model, tmp_path):
    from mlx_dpo.model.ab import ABChat
    from mlx_dpo.model.generate import Sampling, load_for_generation

    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", str(_pairs(tmp_path)), "--output", str(run),
                 "--iters", "2", "--learning-rate", "5e-3"]) == 0
    model, tok, switch = load_for_generation(tiny_model, str(run), log=lambda s: None)
    ab = ABChat(model, tok, switch, Sampling(temperature=0.0, max_tokens=6), "base", seed=1)
    orders = set()
    for i in range(8):
        turn = ab.ask(f"Question {i}?")
        orders.add(turn.sources["A"])
        # Greedy answers of each source are what that source alone answers.
        switch.set(turn.sources["A"] == "tuned")
        from mlx_dpo.model.generate import answer
        assert turn.texts["A"] == answer(model, tok, ab.messages, Sampling(temperature=0.0, max_tokens=6))
        row = ab.pick("A")
        assert row["chosen_source"] == turn.sources["A"] and row["sides"] == turn.sources
    assert orders == {"tuned", "base"}


def _pairs(tmp_path: Path) -> Path:
    from conftest import synthetic_pairs, write_jsonl

    return Path(write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(8, seed=4)))


def test_thumbs_chat_undo_removes_its_last_thumb(tiny_model, tmp_path):
    """/undo once worked only in A/B mode; in a thumbs chat it printed the help and the row stayed."""
    out = tmp_path / "thumbs.jsonl"
    args = ["--model", tiny_model, "--temperature", "0", "--max-tokens", "4", "--collect", str(out)]
    r = chat(args, ["Hi", "/good", "Again", "/bad", "/undo", "/quit"])
    assert r.returncode == 0, r.stderr
    assert [row["label"] for row in rows_of(out)] == [True]  # the /bad row is gone, the /good one kept
    assert f"(removed the last row: 1 row(s) in {out})" in r.stdout
    r = chat(args, ["/undo", "/quit"])  # another chat: the file's rows are not its own
    assert "(nothing to undo: no row of this chat is the file's last)" in r.stdout
    assert [row["label"] for row in rows_of(out)] == [True]
