"""Ground-truth reward for answers to the demo tasks (`mlx_dpo.demo.tasks`).

`score(prompt, answer)` parses the task from the prompt (the corpus templates), checks the answer,
and returns a `RewardBreakdown`; `reward(prompt, answer)` is its total, in [0, 1]:

    total = 0.5 * correct + 0.2 * polite + 0.2 * concise + 0.1 * civil     (if the answer answers)
    total = 0                                                              (if it gives no answer)

* correct — numeric tasks: the *last* number in the answer equals the true value ("7 plus 8 is 15"
  → 15); fact tasks: the true fact is named and no other entry of the same table is (so "Paris or
  Berlin" is not correct); legs: last number.
* answered — the answer states some value: a number (numeric tasks) or any table entry (facts).
  Empty, off-topic or garbled answers get 0 whatever their tone.
* polite — starts with a courteous opener (Sure!, Of course!, Happy to help!, Certainly!, ...) or
  contains a courteous phrase (hope that helps, glad, happy to, please, thank).
* concise — 1 for at most 16 words, falling linearly to 0 at 40 words (rambling).
* civil — 1 unless the answer contains a rude marker (obviously, next question, look it up, ...).

Reference points: the preferred "Sure! 7 plus 8 is 15." scores 1.0; correct-but-curt "Obviously 15.
Next question." 0.7; correct rambling 0.6; polite but wrong 0.5; curt and wrong 0.2; no answer 0.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .tasks import POLITE_OPENERS, RUDE_MARKERS, Task, candidates, parse_prompt

__all__ = ["RewardBreakdown", "score", "reward", "WEIGHTS"]

WEIGHTS = {"correct": 0.5, "polite": 0.2, "concise": 0.2, "civil": 0.1}
CONCISE_WORDS, RAMBLING_WORDS = 16, 40
_POLITE_PHRASES = ("hope that helps", "glad", "happy to", "please", "thank", "my pleasure")
_EXTRA_OPENERS = ("sure", "of course", "certainly", "absolutely", "happy to help", "glad to help", "great question")
_NUM = re.compile(r"-?\d+")


@dataclass
class RewardBreakdown:
    total: float
    answered: bool
    correct: bool
    polite: bool
    concise: float
    civil: bool
    kind: str

    def as_dict(self) -> dict:
        return asdict(self)


def _words(text: str) -> int:
    return len(text.split())


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<![A-Za-z])" + re.escape(word.lower()) + r"(?![A-Za-z])", text.lower()) is not None


def _check(task: Task, answer: str) -> tuple[bool, bool]:
    """(answered, correct)."""
    if task.numeric:
        nums = _NUM.findall(answer)
        return bool(nums), bool(nums) and int(nums[-1]) == task.answer
    named = [c for c in candidates(task) if _has_word(answer, c)]
    return bool(named), named == [task.answer]


def score(prompt: str, answer: str) -> RewardBreakdown:
    """Score `answer` to the demo-task `prompt`; ValueError if the prompt is not a demo task."""
    task = parse_prompt(prompt)
    if task is None:
        raise ValueError(f"not a demo-task prompt: {prompt!r}")
    answered, correct = _check(task, answer)
    low = answer.strip().lower()
    polite = (any(low.startswith(o.lower()) for o in (*POLITE_OPENERS, *_EXTRA_OPENERS))
              or any(p in low for p in _POLITE_PHRASES))
    n = _words(answer)
    concise = 1.0 if n <= CONCISE_WORDS else max(0.0, (RAMBLING_WORDS - n) / (RAMBLING_WORDS - CONCISE_WORDS))
    civil = not any(_has_word(low, m) for m in RUDE_MARKERS)
    if not answered:
        return RewardBreakdown(0.0, False, False, polite, concise, civil, task.kind)
    total = (WEIGHTS["correct"] * correct + WEIGHTS["polite"] * polite + WEIGHTS["concise"] * concise
             + WEIGHTS["civil"] * civil)
    return RewardBreakdown(round(total, 6), True, correct, polite, concise, civil, task.kind)


def reward(prompt: str, answer: str) -> float:
    """The total of `score` in [0, 1]."""
    return score(prompt, answer).total
