"""A collector never writes a row the trainer refuses: A/B answers that would make such a pair are answered
again (then the chat says why), and the preference file checks every row with the loader's own rules and
holds one kind of row."""

from __future__ import annotations

import pytest

import mlx_dpo.model.ab as ab_module
from mlx_dpo.data.pairs import row_problem
from mlx_dpo.data.preferences import PreferenceFile, pair_row, unpaired_row
from mlx_dpo.errors import UsageError
from mlx_dpo.model.ab import MAX_RETRIES, RETRY_TEMPERATURE, ABChat
from mlx_dpo.model.generate import Sampling

U = [{"role": "user", "content": "hi"}]


class Switch:
    def set(self, enabled):
        pass


def scripted(monkeypatch, answers):
    """The model answers `answers` in turn; every call's temperature is recorded."""
    temperatures = []

    def stream(model, tokenizer, messages, sampling):
        temperatures.append(sampling.temperature)
        yield answers.pop(0)
    monkeypatch.setattr(ab_module, "stream_answer", stream)
    return temperatures


def test_identical_answers_are_answered_again_warmer_then_the_chat_says_why(monkeypatch):
    temps = scripted(monkeypatch, ["same"] * (2 + MAX_RETRIES))
    chat = ABChat(None, None, Switch(), Sampling(temperature=0.0, max_tokens=8))
    turn = chat.ask("hi")
    assert turn.retried == {"B": ["same"] * MAX_RETRIES}  # B answered again each time
    assert temps == [0.0, 0.0] + [RETRY_TEMPERATURE] * MAX_RETRIES
    assert "both answers are the same" in turn.problem and "edit" in turn.problem
    with pytest.raises(UsageError) as e:
        chat.pair("A")
    assert e.value.key == "row" and "train would refuse" in str(e.value)
    assert chat.messages[-1] == {"role": "user", "content": "hi"}  # nothing committed: the answers wait


def test_an_empty_side_is_answered_again_and_the_pick_records_it(monkeypatch):
    scripted(monkeypatch, ["  ", "fine", "good"])
    chat = ABChat(None, None, Switch(), Sampling(temperature=0.7, max_tokens=8))
    turn = chat.ask("hi")
    assert turn.texts == {"A": "good", "B": "fine"} and turn.retried == {"A": ["empty"]} and turn.problem is None
    row = chat.pick("A")
    assert row_problem(row) is None and row["sampling"]["answered_again"] == {"A": ["empty"]}
    assert chat.messages[-1] == {"role": "assistant", "content": "good"}


@pytest.mark.parametrize("row", [pair_row(U, "", "no"), pair_row(U, "same ", "same"), unpaired_row(U, " ", True)],
                         ids=["empty", "identical", "empty-thumb"])
def test_the_file_refuses_a_row_train_would_refuse_and_stays_as_it_was(tmp_path, row):
    f = tmp_path / "p.jsonl"
    ok = pair_row(U, "yes", "no") if "chosen" in row else unpaired_row(U, "yes", True)
    PreferenceFile(f).append(ok)
    before = f.read_bytes()
    with pytest.raises(UsageError, match="train would refuse this row"):
        PreferenceFile(f).append(row)
    assert f.read_bytes() == before


def test_a_file_holds_one_kind_and_the_other_is_refused_with_a_name_to_use(tmp_path):
    pairs, thumbs = tmp_path / "chat.jsonl", tmp_path / "chat-thumbs.jsonl"
    PreferenceFile(pairs).append(pair_row(U, "yes", "no"))
    before = pairs.read_bytes()
    with pytest.raises(UsageError) as e:
        PreferenceFile(pairs).append(unpaired_row(U, "yes", True))
    assert str(thumbs) in str(e.value) and e.value.key == "prefs" and pairs.read_bytes() == before
    PreferenceFile(thumbs).append(unpaired_row(U, "yes", True))
    with pytest.raises(UsageError, match="chat-thumbs-pairs.jsonl"):
        PreferenceFile(thumbs).append(pair_row(U, "yes", "no"))
