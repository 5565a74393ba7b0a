"""The demo reward's correctness: an answer to a different question never scores as correct, and the
behaviour report splits the reward into correctness and style. Pure Python (no model is loaded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mlx_dpo.demo import tasks as demo_tasks
from mlx_dpo.demo.reward import answers_the_question, reward, score

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "sample_data" / "demo_pairs.jsonl"
VALID = ROOT / "sample_data" / "demo_valid.jsonl"


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_issues_example_is_not_correct():
    p = "How many times does the letter 's' appear in 'sun'?"
    s = score(p, "The letter 'a' appears 1 time in 'house'.")
    assert s.answered and not s.correct and s.total == pytest.approx(0.3)
    assert score(p, "Sure! The letter 's' appears 1 time in 'sun'.").total == 1.0


# One answer per kind that states the true value but for another question (or another entity).
@pytest.mark.parametrize("prompt,good,others", [
    ("What is 7 plus 8?", "Sure! 7 plus 8 is 15.",
     ["Sure! 6 plus 9 is 15.", "Sure! 7 plus 9 is 15.", "Sure! 5 times 3 is 15.", "Sure! 7 minus 8 is 15.",
      "Sure! The word 'blanket' has 15 letters.", "Sure! There are 15 items in the list.",
      "Sure! The letter 'a' appears 15 times in 'banana'.", "Sure! 15 hours is 15 minutes.",
      "Sure! 3 and 15.", "Sure! 7 + 9 = 15."]),
    ("What is 10 minus 3?", "Of course! 10 minus 3 is 7.",
     ["Of course! 3 minus 10 is 7.", "Of course! 10 plus 3 is 7.", "Of course! 9 minus 2 is 7.",
      "Of course! A dog has 7 legs."]),
    ("Multiply 6 by 7.", "Certainly! 6 times 7 is 42.", ["Certainly! 7 times 6 is 41.", "Certainly! 6 plus 7 is 42.",
                                                          "Certainly! 6 times 8 is 42.", "Certainly! 6 divided by 7 is 42."]),
    ("Convert 3 kilometers to meters.", "Of course! 3 kilometers is 3000 meters.",
     ["Of course! 3 kilograms is 3000 grams.", "Of course! 30 kilometers is 3000 meters.",
      "Of course! 3 meters is 3000 meters.", "Of course! 3 kilometers is 3000 centimeters.",
      "Of course! 3000 meters is 3 kilometers."]),
    ("How many letters are in the word 'house'?", "Sure! The word 'house' has 5 letters.",
     ["Sure! The word 'apple' has 5 letters.", "Sure! The letter 'o' appears 5 times in 'house'.",
      "Sure! The word house has 5 letters, like apple.", "Sure! 5 or 6 letters."]),
    ("How many times does the letter 'a' appear in 'banana'?", "Sure! The letter 'a' appears 3 times in 'banana'.",
     ["Sure! The letter 'n' appears 3 times in 'banana'.", "Sure! The letter 'a' appears 3 times in 'cabbage'.",
      "Sure! The letter n appears 3 times.", "Sure! The word 'banana' has 3 letters."]),
    ("How many items are in this list: pen, cup, key?", "Sure! There are 3 items in the list.",
     ["Sure! There are 3 items in the list: hat, cup, key.", "Sure! A ripe banana has 3 letters.",
      "Sure! There are 3 items, not 4."]),
    ("What is the capital of Peru?", "Certainly! The capital of Peru is Lima.",
     ["Certainly! The capital of Chile is Lima.", "Certainly! The capital of Peru is Lima, like Mexico.",
      "Certainly! 'Lima' has 4 letters."]),
    ("What colour is a ripe banana?", "Happy to help! A ripe banana is yellow.",
     ["Happy to help! A ripe lemon is yellow.", "Happy to help! Lemons are yellow."]),
    ("How many legs does a dog have?", "Sure! A dog has 4 legs.",
     ["Sure! A cat has 4 legs.", "Sure! The word 'dog' has 4 letters.", "Sure! A frog has 4 legs."]),
])
def test_an_answer_to_another_question_is_not_correct(prompt, good, others):
    assert score(prompt, good).correct and reward(prompt, good) == 1.0
    for other in others:
        s = score(prompt, other)
        assert not s.correct, other
        assert reward(prompt, other) <= 0.5, other


@pytest.mark.parametrize("prompt,answer", [
    ("What is 7 plus 8?", "Obviously 15. Next question."),        # a bare value names nothing else
    ("What is 10 plus 12?", "Sure! 12 plus 10 is 22."),           # + and × may be restated in either order
    ("What is 6 × 6?", "Sure! 6 times 6 is 36."),
    ("What is 15 - 7?", "Sure! 15 - 7 = 8."),
    ("Which city is the capital of Mexico?", "Certainly! The capital of Mexico is Mexico City."),
    ("What color is a cherry?", "Sure! Ripe cherries are red."),
    ("How many legs has a fly?", "Sure! Flies have 6 legs."),
    ("How many items are in this list: brush, sock?",             # "an old book" is filler, not a list
     "Well, it reminds me of a puzzle in an old book. Anyway, there are 2 items in the list."),
    ("How many seconds are in 2 minutes?", "Obviously 120 seconds. Don't bother me, it's easy."),
])
def test_answers_to_the_asked_question_stay_correct(prompt, answer):
    assert score(prompt, answer).correct, answer


def test_demo_pairs_chosen_are_correct_and_wrong_value_rejections_are_not():
    wrong = 0
    for r in _rows(PAIRS) + _rows(VALID):
        task = demo_tasks.parse_prompt(r["prompt"])
        chosen = score(r["prompt"], r["chosen"])
        assert chosen.correct and chosen.total == 1.0, r
        rejected = score(r["prompt"], r["rejected"])
        # The rejected answer states the true value unless it is a "wrong value" rejection.
        states_truth = (task.numeric and str(task.answer) in r["rejected"].replace(".", " ").split()) or (
            not task.numeric and str(task.answer) in r["rejected"])
        if not states_truth:
            wrong += 1
            assert not rejected.correct, r
        else:
            assert rejected.correct, r
    assert wrong > 50  # the files do hold wrong-value rejections (REJECT_MIX: 30%)


def test_corpus_answers_are_correct_only_for_their_own_task():
    tasks = demo_tasks.all_tasks(random.Random(0))
    rng = random.Random(0)
    for t in tasks[::7]:
        for style in ("polite", "curt", "rambling"):
            assert score(demo_tasks.make_prompt(t), demo_tasks.render_answer(t, style, rng)).correct
            wrong = demo_tasks.render_answer(t, style, rng, demo_tasks.wrong_value(t, rng))
            assert not score(demo_tasks.make_prompt(t), wrong).correct, wrong
    # A polite statement names its task's entities: it is never correct for a different task instance,
    # except for restating + or × with the operands swapped, or a list count of another list (the
    # statement "There are 3 items in the list." does not name the list).
    for _ in range(3000):
        t, u = rng.choice(tasks), rng.choice(tasks)
        if t.key == u.key or (t.kind == u.kind == "list_count"):
            continue
        if t.kind == u.kind and t.kind in ("add", "mul") and dict(t.fields) == {"a": u.get("b"), "b": u.get("a")}:
            continue
        a = f"Sure! {demo_tasks.statement(u, u.answer)}"
        assert not answers_the_question(t, a) or not score(demo_tasks.make_prompt(t), a).correct, (t, a)


# ------------------------------------------------------------------ the behaviour report
class _Switch:
    def __init__(self):
        self.enabled = True

    def set(self, on):
        self.enabled = on


def _fake_eval(monkeypatch, answers, **kw):
    import mlx_dpo.demo.behaviour as behaviour

    switch = _Switch()
    monkeypatch.setattr(behaviour, "answer", lambda model, tok, msgs, s: answers[(msgs[-1]["content"], switch.enabled)])
    prompts = sorted({p for p, _ in answers})
    return behaviour.behaviour_eval(object(), object(), switch, prompts, kl_samples=0, **kw)


ANSWERS = {("What is 7 plus 8?", False): "Obviously 15. Next question.",
           ("What is 7 plus 8?", True): "Sure! 7 plus 8 is 16.",
           ("How many times does the letter 's' appear in 'sun'?", False): "Obviously 1. Next question.",
           ("How many times does the letter 's' appear in 'sun'?", True): "Sure! The letter 'a' appears 1 time in 'house'."}


def test_behaviour_report_scores_correctness_and_style_separately(monkeypatch, capsys):
    from mlx_dpo.cli.behaviour import print_behaviour

    res = _fake_eval(monkeypatch, ANSWERS)
    assert res.n == 2
    assert res.components == {"correct": (1.0, 0.0), "polite": (0.0, 1.0), "concise": (1.0, 1.0),
                              "civil": (0.0, 1.0)}
    assert res.reward_base == pytest.approx(0.7) and res.reward_tuned == pytest.approx(0.5)
    d = res.as_dict(rows=True)
    assert d["correct_base"] == 1.0 and d["correct_tuned"] == 0.0 and d["polite_tuned"] == 1.0
    assert d["rows"][0]["score_tuned"]["correct"] == 0.0
    json.dumps(d)
    print_behaviour(res, show=1)
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["correct"] == ["1.000", "0.000", "-1.000"]
    assert lines["polite"] == ["0.000", "1.000", "+1.000"]
    assert lines["civil"][:2] == ["0.000", "1.000"] and lines["concise"][:2] == ["1.000", "1.000"]
    assert "mean reward" in out and "0.700" in out and "0.500" in out


def test_behaviour_report_with_a_float_reward_has_no_breakdown(monkeypatch, capsys):
    from mlx_dpo.cli.behaviour import print_behaviour

    res = _fake_eval(monkeypatch, ANSWERS, reward_fn=lambda p, a: 0.25 if "Sure" in a else 0.0)
    assert res.components is None and res.correct_base is None
    assert res.reward_base == 0.0 and res.reward_tuned == 0.25
    d = res.as_dict()
    assert d["correct_base"] is None and d["civil_tuned"] is None
    print_behaviour(res, show=0)
    out = capsys.readouterr().out
    assert "mean reward  base 0.000  tuned 0.250" in out and "correct" not in out
