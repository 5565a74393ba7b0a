"""Errors a user can fix, as data: the CLI prints them as one-line messages (no traceback) and exits 2;
the app reads their fields (the setting a usage error concerns, where a data problem is) instead of
parsing the text."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where it is (`source`, `line`, `field`), what is wrong (`message`)
    and, where one exists, what fixes it (`fix`, e.g. a flag).

    `source` names a file (as the user gave it), a dataset file, a config file or "config" (a flag);
    `line` is the 1-based line or row (None: the problem has no line). Printed as
    `SOURCE[:LINE]: FIELD: MESSAGE[; FIX]`."""

    source: str
    message: str
    line: int | None = None
    field: str | None = None
    fix: str | None = None

    def __str__(self) -> str:
        text = f"{self.message}; {self.fix}" if self.fix else self.message
        return ": ".join(part for part in (self.row, self.field, text) if part)

    @property
    def row(self) -> str:
        """The row's id, `FILE:LINE` (as a pair's `source`), or the source alone."""
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def as_dict(self) -> dict:
        """Plain data for JSON output and the app: {file, line, field, message, fix}."""
        d = asdict(self)
        d["file"] = d.pop("source")
        d["field"] = d["field"] or ""
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Problem":
        return cls(d["file"], d["message"], d.get("line"), d.get("field") or None, d.get("fix"))

    @classmethod
    def at_row(cls, row: str, field: str | None, message: str, fix: str | None = None) -> "Problem":
        """A problem of the row whose id is `FILE:LINE` (a pair's or prompt's `source`)."""
        name, sep, line = row.rpartition(":")
        if sep and line.isdigit():
            return cls(name, message, int(line), field, fix)
        return cls(row, message, None, field, fix)


class UsageError(Exception):
    """Bad flags, config values, or paths: exit status 2.

    `key`: the setting (a config key / flag name in snake_case, or a form field of the app) the error
    concerns, or None; `problem`: the structured form where the error has one (config values do);
    `details`: plain data for programs (the app) beyond the message, e.g. the memory estimate and the
    settings that fit of a run refused for memory (key "force"); sent with the error event."""

    def __init__(self, message: "str | Problem", *, key: str | None = None, details: dict | None = None):
        self.problem = message if isinstance(message, Problem) else None
        self.key = key if key is not None else (self.problem.field if self.problem else None)
        self.details = details
        super().__init__(str(message))

    @property
    def detail(self) -> str:
        """The message without its location: what a form shows beside the field `key`."""
        if self.problem is None:
            return str(self)
        p = self.problem
        return f"{p.message}; {p.fix}" if p.fix else p.message


def config_error(key: str, message: str, source: str = "config", fix: str | None = None) -> UsageError:
    """A bad value of the setting `key` (from a flag, or from the config file `source`)."""
    return UsageError(Problem(source, message, None, key, fix), key=key)


class DataError(UsageError):
    """A data source has bad rows: `problems` holds one Problem per bad row (or per file-level problem),
    `errors` the same as printed lines (`FILE:LINE: field: message`); `skippable`: --skip-invalid would
    train on the valid rows (every problem is one bad row, and some rows are valid)."""

    def __init__(self, problems: "list[Problem]", skippable: bool = False):
        self.problems = list(problems)
        self.skippable = skippable
        self.errors = [str(p) for p in self.problems]
        head = self.errors[0] if self.errors else "invalid data"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(head + more)
        self.problem = self.problems[0] if self.problems else None


class TrainingStopped(Exception):
    """Training stopped on a condition the user must see (non-finite loss, out of memory): exit status 1.

    `reported` is True when the message was already printed where it arose (see distributed.peer_lost).
    """

    reported = False


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
