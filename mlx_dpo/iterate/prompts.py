"""Prompts to answer: a JSONL (or JSON list, or CSV/TSV) of prompts, or any pairs file whose prompts are used.

A row is a JSON string (one user message), an object with `prompt` (a string or a message list) and an
optional `system`, or an object with `messages` (a conversation ending with a user turn). Rows of a
pairs file (`prompt` plus `chosen`/`rejected`, any format `train` reads) give their prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, Problem, UsageError


@dataclass
class Prompt:
    messages: list[dict]  # the conversation before the answer (system optional), ending with a user turn
    source: str           # "FILE:LINE", named in errors (a judge that fails on this prompt)

    @property
    def text(self) -> str:
        """The last user message (what a reward function of the demo tasks reads)."""
        return [m for m in self.messages if m["role"] == "user"][-1]["content"]

    def as_row(self) -> dict:
        return {"prompt": self.messages, "source": self.source}


class _BadPrompt(ValueError):
    """A row that is not a prompt: the field at fault (None: the row itself) and what is wrong."""

    def __init__(self, fieldname: str | None, message: str):
        super().__init__(f"{fieldname}: {message}" if fieldname else message)
        self.fieldname, self.message = fieldname, message


def _messages(value, where: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise _BadPrompt(where, "empty prompt")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _BadPrompt(where, "expected a string or a non-empty list of messages")
    out = []
    for j, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _BadPrompt(f"{where}[{j}]", "expected a message object with string role and content")
        if m["role"] not in ("system", "user", "assistant"):
            raise _BadPrompt(f"{where}[{j}].role", f"unknown role {m['role']!r} (expected system, user or assistant)")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "user":
        raise _BadPrompt(where, "the conversation must end with a user message (the turn to answer)")
    return out


def _row_prompt(row) -> list[dict]:
    if isinstance(row, str):
        return _messages(row, "prompt")
    if not isinstance(row, dict):
        raise _BadPrompt(None, "expected a string or an object with a prompt")
    if "messages" in row and "prompt" not in row:
        return _messages(row["messages"], "messages")
    if "prompt" not in row:
        raise _BadPrompt("prompt", "missing (expected a prompt string or message list, or messages)")
    msgs = _messages(row["prompt"], "prompt")
    system = row.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise _BadPrompt("system", "expected a string")
        if system.strip() and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}] + msgs
    return msgs


def _is_pairs_file(rows) -> bool:
    return any(isinstance(r, dict) and ("chosen" in r or "rejected" in r or "completion" in r) for _, r in rows)


def load_prompts(path: str | Path, limit: int | None = None, what: str = "--prompts") -> list[Prompt]:
    """The prompts of `path`; every bad row is reported by line (DataError), nothing is guessed."""
    from ..data.pairs import is_parquet, read_rows
    from ..data.tables import is_csv, read_csv

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what}: {path}: no such file")
    if is_parquet(path) or path.is_dir():
        return _pairs_prompts(path, limit)
    rows, errors = read_csv(path) if is_csv(path) else read_rows(path)
    if errors:
        raise DataError(errors)
    if _is_pairs_file(rows):
        return _pairs_prompts(path, limit)
    prompts, problems = [], []
    for line, row in rows:
        try:
            prompts.append(Prompt(_row_prompt(row), f"{path}:{line}"))
        except _BadPrompt as e:
            problems.append(Problem(str(path), e.message, line, e.fieldname))
    if problems:
        raise DataError(problems)
    if not prompts:
        raise UsageError(f"{what}: {path}: no prompts")
    return prompts[:limit] if limit else prompts


def _pairs_prompts(path: Path, limit: int | None) -> list[Prompt]:
    """A pairs file (or Parquet / dataset folder) read as `train` reads it: its distinct prompts, in order."""
    from ..data.pairs import load_pairs_strict

    seen, prompts = set(), []
    for p in load_pairs_strict(path):
        key = tuple((m["role"], m["content"]) for m in p.prompt)
        if key in seen or not p.prompt or p.prompt[-1]["role"] != "user":
            continue
        seen.add(key)
        prompts.append(Prompt([dict(m) for m in p.prompt], p.source))
    if not prompts:
        raise UsageError(f"{path}: no prompts ending with a user message")
    return prompts[:limit] if limit else prompts
