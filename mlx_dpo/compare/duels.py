"""Duels: one prompt, side A's answer and side B's, shown in a blind order; their verdicts and record files.

A verdict is A's score: 1 (A better), 0 (B better), ½ (a tie); a judge model asked in both orders that
disagrees with itself gives ¾ or ¼. Which side is shown first is balanced over the duels (exactly half,
in a seeded random order), so a judge that always prefers the first answer ends at exactly 50% instead of
favouring a side. Identical answers are a tie without asking.

Each verdict is one line of RUN_DIR/compare-*.jsonl, appended as it is made (a person's verdicts survive
a crash); nothing here ever writes training data. This module loads no MLX (the app's UI thread uses it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..fileio import append_line, read_jsonl_tolerant
from ..iterate.prompts import Prompt

PICKS = {"a": 1.0, "b": 0.0, "tie": 0.5}  # a pick names the answer *shown* first (a) or second (b)
BASE = "base"


@dataclass
class Duel:
    index: int
    prompt: Prompt
    sample: int         # which of the K samples per prompt (0 for greedy answers)
    answer_a: str
    answer_b: str
    a_first: bool       # the blind order: is side A's answer shown first?
    tokens_a: int = 0
    tokens_b: int = 0

    @property
    def first(self) -> str:
        return self.answer_a if self.a_first else self.answer_b

    @property
    def second(self) -> str:
        return self.answer_b if self.a_first else self.answer_a

    @property
    def identical(self) -> bool:
        return self.answer_a.strip() == self.answer_b.strip()

    def score_of_pick(self, pick: str) -> float:
        """A's score from a pick of the blind view: "a" (the first answer shown), "b" (the second) or "tie"."""
        try:
            v = PICKS[pick]
        except KeyError:
            raise ValueError(f"a pick is one of {', '.join(PICKS)}, got {pick!r}") from None
        return v if self.a_first else 1.0 - v


def balanced_order(n: int, seed: int) -> list[bool]:
    """`a_first` for n duels: exactly ⌈n/2⌉ True, in a random order drawn from `seed`."""
    order = [i < (n + 1) // 2 for i in range(n)]
    random.Random(seed).shuffle(order)
    return order


def verdict_row(duel: Duel, score: float, *, a: str, b: str, judge: str, score_a: float | None = None,
                score_b: float | None = None) -> dict:
    """The record of one verdict (a line of compare-*.jsonl). `margin` orders the examples: the difference
    of a scoring judge's two scores, else how far the verdict is from a tie."""
    margin = score_a - score_b if score_a is not None and score_b is not None else score - 0.5
    row = {"a": a, "b": b, "judge": judge, "index": duel.index, "sample": duel.sample,
           "prompt": duel.prompt.messages, "source": duel.prompt.source, "answer_a": duel.answer_a,
           "answer_b": duel.answer_b, "tokens_a": duel.tokens_a, "tokens_b": duel.tokens_b,
           "shown_first": "a" if duel.a_first else "b", "score": score, "margin": margin}
    if score_a is not None:
        row["score_a"], row["score_b"] = score_a, score_b
    if duel.identical:
        row["identical"] = True
    return row


def side_name(side: str) -> str:
    """How a side is named in the records: "base", or the adapter folder's absolute path."""
    return BASE if side == BASE else str(Path(side).expanduser().resolve())


def record_path(adapter: str, against: str) -> Path:
    """RUN_DIR/compare-vs-<base|other run's folder name>-<date-time>.jsonl"""
    other = BASE if against == BASE else Path(side_name(against)).name
    return Path(adapter) / f"compare-vs-{other}-{datetime.now():%Y%m%d-%H%M%S}.jsonl"


class VerdictLog:
    """compare-*.jsonl, a verdict per line appended as it is made."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, row)


def read_verdicts(path: str | Path) -> list[dict]:
    """The verdict lines of one compare-*.jsonl (a torn last line is skipped)."""
    return [r for r in read_jsonl_tolerant(path) if "score" in r and "a" in r and "b" in r]


def compare_files(run_dir: str | Path) -> list[Path]:
    """A run's compare records, oldest first."""
    return sorted(Path(run_dir).glob("compare-*.jsonl"))
