"""Preference files written by people: A/B picks and thumbs from a chat, appended one row at a time.

Rows use the formats `validate` and `train` read: a pick is a conversational pair (the conversation so
far as `prompt`, system message included; the picked answer as `chosen`, the other as `rejected`), a
thumb is TRL's unpaired row (`prompt`, `completion`, `label`). Extra keys record where the answers came
from (model, adapters, sides, sampling, whether the chosen text was edited, the time); readers ignore them.

Appends never tear a line and never lose what is there: each row is one `write` of one line under an
exclusive lock (two app windows may collect into one file), then fsync; an append that fails part way
(a full disk) cuts the file back to its size before, so it is byte for byte as it was. A file that exists but is not a
preference file is reported by line and left as it is.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UsageError
from ..fileio import write_all, write_failure


def pair_row(prompt: list[dict], chosen: str, rejected: str, **meta) -> dict:
    return {"prompt": [dict(m) for m in prompt], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], **meta, "time": _now()}


def unpaired_row(prompt: list[dict], completion: str, label: bool, **meta) -> dict:
    return {"prompt": [dict(m) for m in prompt], "completion": [{"role": "assistant", "content": completion}],
            "label": bool(label), **meta, "time": _now()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PreferenceFile:
    """A JSONL file of collected preferences (created on the first append)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def count(self) -> int:
        """Rows in the file; UsageError naming the first bad line if it is not a preference file."""
        if not self.path.exists():
            return 0
        if not self.path.is_file():
            raise UsageError(f"{self.path}: is not a file; choose another preference file")
        n = 0
        try:
            with open(self.path, "rb") as fh:
                for i, raw in enumerate(fh, start=1):
                    if not raw.strip():
                        continue
                    try:
                        row = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError):
                        row = None
                    if not isinstance(row, dict) or "prompt" not in row:
                        raise UsageError(f"{self.path}:{i}: not a preference row (expected a JSON object with "
                                         "a prompt); the file was left as it is — choose another file")
                    n += 1
        except OSError as e:
            raise UsageError(f"{self.path}: cannot read: {write_failure(e)}") from None
        return n

    @contextmanager
    def _locked(self, mode: str):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, mode)
        except OSError as e:
            raise UsageError(f"{self.path}: cannot write the preference file: {write_failure(e)}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield fh
        finally:
            fh.close()  # closing releases the lock

    def kind(self) -> str | None:
        """"pairs" or "thumbs": the kind of the file's first row (None: no rows yet). One file holds one kind,
        as one run trains on one (pairs with DPO, thumbs with KTO)."""
        if not self.path.is_file():
            return None
        try:
            with open(self.path, "rb") as fh:
                for raw in fh:
                    if raw.strip():
                        return _kind_of(json.loads(raw.decode("utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None  # count() names what is wrong with the file
        return None

    def check(self, row: dict) -> None:
        """UsageError if `row` is one `train` would refuse, or of the other kind than the file's rows: what a
        collector writes, the trainer must accept."""
        from .pairs import row_problem

        problem = row_problem(row, str(self.path))
        if problem is not None:
            raise UsageError(f"{problem.field}: {problem.message} (train would refuse this row)", key="row")
        have, new = self.kind(), _kind_of(row)
        if have is not None and have != new:
            raise UsageError(f"{self.path} holds {have}; a {KIND_WORDS[new]} goes in a file of its own (e.g. "
                             f"{self.path.with_name(self.path.stem + '-' + new + self.path.suffix)}); the file was "
                             "left as it is", key="prefs")

    def append(self, row: dict) -> None:
        """Add one row (checked first, see `check`); UsageError if the file cannot be written, which is then left
        byte for byte as it was."""
        self.check(row)
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        with self._locked("ab") as fh:
            fd, size = fh.fileno(), None
            try:
                size = os.fstat(fd).st_size
                if size > 0 and not _ends_with_newline(self.path):
                    line = b"\n" + line  # a torn last line from another writer must not swallow this row
                write_all(fd, line)  # one write per row (a disk that fills up may take part of it)
                os.fsync(fd)
            except OSError as e:
                if size is not None:
                    self._cut_back(fd, size)
                raise UsageError(f"{self.path}: cannot write the preference file: {write_failure(e)}; "
                                 "the row was not added") from None

    def _cut_back(self, fd: int, size: int) -> None:
        """Remove what a failed append wrote (part of a row): the file must not end in a torn line."""
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            raise UsageError(f"{self.path}: the row was cut off by a failed write and cannot be removed "
                             f"({write_failure(e)}); delete the last line by hand before adding rows") from None
        try:
            os.fsync(fd)
        except OSError:
            pass  # readers already see the file as it was; the system writes the size back later

    def undo(self, row: dict) -> bool:
        """Remove `row` if it is still the file's last line (another writer may have appended since)."""
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        if not self.path.exists():
            return False
        with self._locked("r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(line):
                return False
            fh.seek(size - len(line))
            if fh.read() != line:
                return False
            try:
                fh.truncate(size - len(line))
                os.fsync(fh.fileno())
            except OSError as e:
                raise UsageError(f"{self.path}: cannot undo the last row: {write_failure(e)}") from None
            return True


KIND_WORDS = {"pairs": "A/B pick", "thumbs": "thumbs row"}


def _kind_of(row) -> str:
    return "thumbs" if isinstance(row, dict) and "label" in row and "chosen" not in row else "pairs"


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
