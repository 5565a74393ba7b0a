"""Ground-truth reward for answers to the demo tasks (`mlx_dpo.demo.tasks`).

`score(prompt, answer)` parses the task from the prompt (the corpus templates), checks the answer,
and returns a `RewardBreakdown`; `reward(prompt, answer)` is its total, in [0, 1]:

    total = 0.5 * correct + 0.2 * polite + 0.2 * concise + 0.1 * civil     (if the answer answers)
    total = 0                                                              (if it gives no answer)

* answered — the answer states some value: a number (numeric tasks) or any table entry (facts).
  Empty, off-topic or garbled answers get 0 whatever their tone.
* correct — the answer states the true value *and answers this question, not another one*:
  - the value: numeric tasks — the *last* number equals the true value ("7 plus 8 is 15" → 15);
    fact tasks — the true fact is named and no other entry of the same table is ("Paris or Berlin"
    is not correct);
  - the question: every entity the answer mentions that could belong to a demo question must be
    the asked one. Arithmetic: every number is an operand or the result; a restated expression
    ("7 plus 8") has the asked operands and operation (either order for + and ×); no other
    operation is named. Conversion: every number is the asked amount or the result, every unit one
    of the two asked, each attached to its own number. Letters and letter counts: a quoted word is
    the asked word, a quoted or named letter the asked letter, no other corpus word appears, every
    number is the result. List counts: every number is the result; a restated list ("pen, cup")
    holds only items of the asked list. Capitals, colours, legs: no other country, fruit or animal
    is named ("A ripe lemon is yellow." does not answer "What colour is a ripe banana?"); for legs
    every number is the result. Any kind: a count of another kind's things ("5 letters" to an
    arithmetic question, "4 legs" to a capital question, "3 times" outside a letter count) or a
    quoted word that is not in the question makes an answer not correct. A bare value ("Obviously
    15.") names nothing else and is judged by its value alone.
* polite — starts with a courteous opener (Sure!, Of course!, Happy to help!, Certainly!, ...) or
  contains a courteous phrase (hope that helps, glad, happy to, please, thank).
* concise — 1 for at most 16 words, falling linearly to 0 at 40 words (rambling).
* civil — 1 unless the answer contains a rude marker (obviously, next question, look it up, ...).

Reference points: the preferred "Sure! 7 plus 8 is 15." scores 1.0; correct-but-curt "Obviously 15.
Next question." 0.7; correct rambling 0.6; polite but wrong 0.5; curt and wrong 0.2; no answer 0.
An answer to a different question ("The letter 'a' appears 1 time in 'house'." to "How many times does
the letter 's' appear in 'sun'?") is wrong even when its number matches: 0.5 if polite and concise.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .tasks import (ANIMAL_LEGS, CAPITALS, FRUIT_COLOURS, ITEMS, POLITE_OPENERS, RUDE_MARKERS, UNITS, WORDS,
                    Task, candidates, parse_prompt)

__all__ = ["RewardBreakdown", "score", "reward", "judge", "WEIGHTS", "answers_the_question"]

WEIGHTS = {"correct": 0.5, "polite": 0.2, "concise": 0.2, "civil": 0.1}
CONCISE_WORDS, RAMBLING_WORDS = 16, 40
_POLITE_PHRASES = ("hope that helps", "glad", "happy to", "please", "thank", "my pleasure")
_EXTRA_OPENERS = ("sure", "of course", "certainly", "absolutely", "happy to help", "glad to help", "great question")
_NUM = re.compile(r"(?<!\d)-?\d+")          # "10-3" is 10 and 3; "is -2" is -2

# Things a demo answer counts, and the kind of question that counts them ("5 letters", "3 items", ...).
_UNIT_NAMES = sorted({u for big, small, _ in UNITS for u in (big, small)}, key=len, reverse=True)
_NOUN_KIND = {**{u: "convert" for u in _UNIT_NAMES}, "item": "list_count", "letter": "letters", "leg": "legs",
              "time": "letter_count"}
_QUANTITY = re.compile(r"(?<![\w-])(-?\d+)\s+(" + "|".join(_NOUN_KIND) + r")s?(?![A-Za-z])(?!\s*\d)", re.IGNORECASE)
_UNIT_WORD = re.compile(r"(?<![A-Za-z])(" + "|".join(_UNIT_NAMES) + r")s?(?![A-Za-z])", re.IGNORECASE)
# Quoted words: the quote must not touch a letter on its outer side (so "don't ... it's" is no quote).
_QUOTED = re.compile(r"(?<![A-Za-z])['\"‘“]([A-Za-z]+(?: [A-Za-z]+)*)['\"’”](?![A-Za-z])")
_NAMED_LETTER = re.compile(r"(?<![A-Za-z])letter\s+['\"‘“]?([A-Za-z])(?![A-Za-z])", re.IGNORECASE)

# Operations of the arithmetic tasks (and division, which no task asks, so naming it is always wrong).
_OPS = {"add": ("plus", "+"), "sub": ("minus", "-", "−"), "mul": ("times", "×", "x", "*", "multiplied by"),
        "div": ("divided by", "÷", "/")}
_OP_OF = {sym: kind for kind, syms in _OPS.items() for sym in syms}
_OP_RX = "|".join(re.escape(s) for s in sorted(_OP_OF, key=len, reverse=True))
_EXPRESSION = re.compile(r"(?<!\d)(\d+)\s*(" + _OP_RX + r")\s*(\d+)(?!\d)", re.IGNORECASE)
# Operation words named outside an expression ("the product", "multiplied"): only the asked one may appear.
_OP_WORDS = {"add": ("plus", "added", "sum"), "sub": ("minus", "subtracted", "difference"),
             "mul": ("times", "multiplied", "product"), "div": ("divided", "quotient")}
_ARITH = ("add", "sub", "mul")
_ITEM = "(?:" + "|".join(ITEMS) + ")"
_ITEM_LIST = re.compile(r"(?<![A-Za-z])(" + _ITEM + r"(?:(?:,\s*|\s+and\s+)" + _ITEM + r")+)(?![A-Za-z])",
                        re.IGNORECASE)


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


def _mention_rx(word: str) -> re.Pattern:
    """`word` as a whole word, case-insensitive, with its plural ("dogs", "cherries", "fish")."""
    w = re.escape(word.lower())
    plural = w[:-1] + "ies" if w.endswith("y") else w + "es" if w.endswith(("s", "sh", "ch", "x", "o")) else w + "s"
    return re.compile(r"(?<![A-Za-z])(?:" + w + "|" + plural + r")(?![A-Za-z])", re.IGNORECASE)


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<![A-Za-z])" + re.escape(word.lower()) + r"(?![A-Za-z])", text.lower()) is not None


def _named(text: str, names) -> set[str]:
    return {n for n in names if _mention_rx(n).search(text)}


def _mask(text: str, names) -> str:
    """`text` with every mention of `names` blanked (so "Mexico City" does not also name Mexico)."""
    for n in sorted(names, key=len, reverse=True):
        text = re.sub(r"(?<![A-Za-z])" + re.escape(n) + r"(?![A-Za-z])", " ", text, flags=re.IGNORECASE)
    return text


def _numbers(text: str) -> list[int]:
    return [int(n) for n in _NUM.findall(text)]


def answers_the_question(task: Task, answer: str) -> bool:
    """False if `answer` mentions an entity of a demo question other than `task` (see the module docstring)."""
    f, kind, low = dict(task.fields), task.kind, answer.lower()
    nums = _numbers(answer)
    # Counts of things: only this kind's things, and (for single-value kinds) only the true count.
    for n, noun in _QUANTITY.findall(answer):
        noun = noun.lower()
        if _NOUN_KIND[noun] != kind:     # ("7 times 8" is no count: a number follows)
            return False
        elif kind == "convert":
            if not ((noun == f["big"] and int(n) == f["n"]) or (noun == f["small"] and int(n) == task.answer)):
                return False
    # Quoted words: only the question's own (and in a letter count, the letter and the word in their roles).
    own = {str(v).lower() for k, v in f.items() if k != "items"} | set(f.get("items", "").split(", ")) - {""}
    if task.kind in ("capital", "colour"):
        own.add(str(task.answer).lower())
    for q in (q.lower() for q in _QUOTED.findall(answer)):
        if kind == "letter_count":
            if q != (f["ch"] if len(q) == 1 else f["word"]):
                return False
        elif q not in own:
            return False
    if kind in _ARITH:
        if not set(nums) <= {f["a"], f["b"], task.answer}:
            return False
        for x, op, y in _EXPRESSION.findall(answer):
            if _OP_OF[op.lower()] != kind:
                return False
            if (int(x), int(y)) != (f["a"], f["b"]) and not (kind != "sub" and (int(y), int(x)) == (f["a"], f["b"])):
                return False
        if any(_has_word(low, w) for k, ws in _OP_WORDS.items() if k != kind for w in ws):
            return False
    elif kind == "convert":
        if not set(nums) <= {f["n"], task.answer}:
            return False
        if any(u.lower() not in (f["big"], f["small"]) for u in _UNIT_WORD.findall(answer)):
            return False
    elif kind in ("letters", "letter_count", "list_count", "legs"):
        if any(n != task.answer for n in nums):
            return False
    if kind in ("letters", "letter_count"):
        if kind == "letter_count" and any(c.lower() != f["ch"] for c in _NAMED_LETTER.findall(answer)):
            return False
        if _named(answer, set(WORDS) - {"letter"}) - {f["word"]}:
            return False
    if kind == "list_count":   # a list restated ("pen, cup, key") names only the asked items
        for run in _ITEM_LIST.findall(answer):
            if set(re.split(r",\s*|\s+and\s+", run.lower())) - set(f["items"].split(", ")):
                return False
    if kind == "capital" and _named(_mask(answer, CAPITALS.values()), CAPITALS) - {f["country"]}:
        return False
    if kind == "colour" and _named(answer, FRUIT_COLOURS) - {f["fruit"]}:
        return False
    if kind == "legs" and _named(answer, ANIMAL_LEGS) - {f["animal"]}:
        return False
    return True


def _check(task: Task, answer: str) -> tuple[bool, bool]:
    """(answered, correct)."""
    if task.numeric:
        nums = _numbers(answer)
        right = bool(nums) and nums[-1] == task.answer
    else:
        named = [c for c in candidates(task) if _has_word(answer, c)]
        nums, right = named, named == [task.answer]
    return bool(nums), right and answers_the_question(task, answer)


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


def judge(messages, answer: str) -> float:
    """`reward` as a judge of `mlx-dpo iterate` (`--judge python:mlx_dpo.demo.reward:judge`): the prompt is
    the conversation's last user message. A prompt that is not a demo task raises ValueError."""
    text = messages if isinstance(messages, str) else [m for m in messages if m["role"] == "user"][-1]["content"]
    return reward(text, answer)
