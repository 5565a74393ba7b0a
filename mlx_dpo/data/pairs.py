"""Read and validate preference-pair files; normalise every row to (prompt, chosen, rejected) messages.

Accepted per row (JSONL, or a JSON list):
1. explicit prompt, strings:   {"prompt": str, "chosen": str, "rejected": str, "system"?: str}
2. conversational:             {"prompt": [messages], "chosen": [assistant msgs], "rejected": [...]}
3. implicit prompt:            {"chosen": [full conversation] | "\\n\\nHuman: ...\\n\\nAssistant: ...",
                                "rejected": same}; the shared part before the final answer is the prompt.
   A `prompt` string next to full conversations (UltraFeedback, Capybara-DPO) repeats the user turn: the
   conversations are split as in 3.
Files may also be Parquet, gzipped, a dataset folder or a hub dataset id (sources.py); other column layouts
are mapped by schemas.py. Every problem is reported as `SOURCE:LINE: field: what is wrong` (Parquet:
`FILE:ROW`, the 0-based row index as `datasets`/pandas number rows); nothing is silently skipped (with
--skip-invalid the invalid rows are left out, counted and listed).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import chain, islice
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, Problem, UsageError, first_line
from .schemas import CHOSEN_NAMES, PAIRWISE, REJECTED_NAMES, DataKeys, detect, unknown_schema_message

ROLES = ("system", "user", "assistant")
# One pair is a few thousand tokens; a row this long is a broken export (or not a pairs file at all),
# and tokenizing it would take minutes. Reported as an error instead.
MAX_ROW_CHARS = 8_000_000
FORMATS = ("explicit", "conversational", "implicit")


@dataclass
class PreferencePair:
    prompt: list[dict]    # messages before the answer (system/user/assistant turns)
    chosen: list[dict]    # the preferred assistant message(s)
    rejected: list[dict]  # the dispreferred assistant message(s)
    source: str           # "FILE:LINE", for error messages downstream
    format: str           # one of FORMATS, or "unpaired"
    label: bool | None = None  # unpaired rows (completion in chosen and rejected): desirable or not


class PairRecord:
    """What is kept of a pair once it is tokenized: its source, format and label, not its messages (the
    messages of 60k UltraFeedback rows are ~0.25 GB that nothing reads after rendering)."""
    __slots__ = ("source", "format", "label")

    def __init__(self, source: str, format: str, label: bool | None = None):
        self.source, self.format, self.label = source, format, label

    def __repr__(self) -> str:
        return f"PairRecord({self.source!r}, {self.format!r}, {self.label!r})"


@dataclass
class LoadResult:
    pairs: list[PreferencePair] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    rows: int = 0
    source: object = None    # sources.Source: the files that were read
    schema: object = None    # schemas.Schema: the column mapping used (None: unknown)
    filtered: int = 0        # pairs left out by --min-score-margin (not errors)
    ties: int = 0            # pairwise rows that prefer neither answer (HelpSteer2 strength 0), left out
    first_of_kind: dict = field(default_factory=dict)  # unpaired? -> source of the first such row
    hints: list[Problem] = field(default_factory=list)  # e.g. an unknown schema: its columns and the flags to map them

    def release(self, start: int, stop: int, keep: int = 0) -> None:
        """Replace pairs[start:stop] by PairRecords (their messages are tokenized and no longer needed),
        except the first `keep` pairs of the source (the app's preview shows them)."""
        for i in range(max(start, keep), stop):
            p = self.pairs[i]
            if isinstance(p, PreferencePair):
                self.pairs[i] = PairRecord(p.source, p.format, p.label)


class _RowError(Exception):
    def __init__(self, fieldname: str, message: str):
        self.fieldname, self.message = fieldname, message


class _Tie(Exception):
    """A pairwise row that prefers neither answer (HelpSteer2 strength 0): skipped and counted, not an error."""


# ---------------------------------------------------------------- file level

def read_rows(path: Path, name: str | None = None) -> tuple[list[tuple[int, object]], list[Problem]]:
    """Return [(line_number, parsed_value)] and file-level errors; JSON list or JSONL is sniffed.

    `name` is how messages name the file (default: the path); a .gz file is decompressed first."""
    rows, errors = iter_rows(path, name)
    rows = list(rows)
    return rows, errors


def iter_rows(path: Path, name: str | None = None):
    """read_rows as (an iterator of rows, the error list): JSONL rows are parsed as they are consumed, and
    their errors are appended while the iterator runs. A JSONL file is read in blocks, never whole (the
    text of 60k UltraFeedback rows is 0.34 GB); a gzipped file or a JSON list is read whole."""
    path = Path(path)
    name = str(path) if name is None else name
    if not path.exists():
        raise UsageError(f"{name}: no such file")
    if path.is_dir():
        raise UsageError(f"{name}: is a directory, expected a .jsonl or .json file")
    try:
        if path.name.lower().endswith(".gz"):
            return _rows_of_bytes(name, path.read_bytes(), gz=True)
        with open(path, "rb") as f:
            first, errors = _scan(name, f)
        if errors:
            return iter(()), errors
        if first == "[":  # a JSON list is parsed whole
            return _rows_of_bytes(name, path.read_bytes())
        if not path.name.lower().endswith(JSON_SUFFIXES):
            not_json = _not_json(name, path)
            if not_json:  # e.g. a CSV named .txt: one line that says what is read, not an error per line
                return iter(()), [not_json]
    except OSError as e:
        raise UsageError(f"{name}: cannot read: {e.strerror or e}") from None
    errors: list[Problem] = []
    return _iter_jsonl_file(name, path, errors), errors


JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def _not_json(name: str, path: Path) -> Problem | None:
    """The file-level error of a file (not named .jsonl/.json) whose first line is not JSON; None if it is."""
    from .sources import FORMATS_READ

    with open(path, "rb") as f:
        head = f.read(1 << 20)
    lines = _LINE_END.split(head.decode("utf-8-sig", errors="replace"))
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if n == len(lines) and len(head) == 1 << 20:
            return None  # a first line longer than what was read: left to the row parser
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            return Problem(name, f"not JSON Lines (line {n} is not JSON)", n, "file", fix=FORMATS_READ)
        return None
    return None


BLOCK = 8 << 20  # bytes read at a time; a block is cut after its last newline (never inside a character)


def _pieces(f):
    """(byte offset, bytes) of the file in blocks that end with a newline (the last one may not)."""
    carry, offset = b"", 0
    for block in iter(lambda: f.read(BLOCK), b""):
        cut = block.rfind(b"\n") + 1
        if not cut:
            carry += block
            continue
        piece, carry = carry + block[:cut], block[cut:]
        yield offset, piece
        offset += len(piece)
    if carry:
        yield offset, carry


def _decode(offset: int, piece: bytes) -> str:
    return piece.decode("utf-8-sig" if offset == 0 else "utf-8")  # a UTF-8 byte-order mark is fine


def _scan(name: str, f) -> tuple[str, list[Problem]]:
    """Check a whole JSONL/JSON file before any row is parsed, block by block: (its first character that is
    not whitespace, "" if none; the file-level errors, which refuse it whole)."""
    head = f.read(4)
    if head == b"PAR1":
        return "", [Problem(name, "starts like a Parquet file but is not a readable one (expected JSON text)", 1, "file")]
    f.seek(0)
    first, lines, nul = "", 0, None
    for offset, piece in _pieces(f):
        try:
            text = _decode(offset, piece)
        except UnicodeDecodeError as e:
            line = lines + piece.count(b"\n", 0, e.start) + 1
            return "", [Problem(name, f"not UTF-8 text (bad byte 0x{piece[e.start]:02x} at offset "
                                      f"{offset + e.start})", line, "file")]
        if nul is None and "\x00" in text:
            nul = lines + text.count("\n", 0, text.index("\x00")) + 1
        if not first:
            first = text.lstrip()[:1]
        lines += piece.count(b"\n")
    if nul is not None:  # after the UTF-8 check: a bad byte anywhere is reported first, as for a whole read
        return "", [Problem(name, "binary data (NUL byte), expected JSON text", nul, "file")]
    if not first:
        return "", [Problem(name, "empty, expected preference pairs as JSONL or a JSON list", 1, "file")]
    return first, []


def _iter_jsonl_file(name: str, path: Path, errors: list[Problem]):
    """The rows of a checked JSONL file (see _scan), block by block, numbered by line."""
    i = 1
    with open(path, "rb") as f:
        for offset, piece in _pieces(f):
            text = _decode(offset, piece)
            pos = 0
            for m in _LINE_END.finditer(text):
                line = text[pos:m.start()]
                if line.strip():
                    row = _parse_line(name, i, line, errors)
                    if row is not None:
                        yield row
                pos, i = m.end(), i + 1
            line = text[pos:]  # the last line of the file when it has no newline
            if line.strip():
                row = _parse_line(name, i, line, errors)
                if row is not None:
                    yield row


def _rows_of_bytes(name: str, raw: bytes, gz: bool = False):
    """(rows, errors) of a file read whole (gzipped, or a JSON list)."""
    if gz:
        import gzip
        import zlib

        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            return iter(()), [Problem(name, f"not a readable gzip file ({first_line(e)})", 1, "file")]
    if raw[:4] == b"PAR1":
        return iter(()), [Problem(name, "starts like a Parquet file but is not a readable one (expected JSON text)", 1, "file")]
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return iter(()), [Problem(name, f"not UTF-8 text (bad byte 0x{raw[e.start]:02x} at offset {e.start})", line, "file")]
    del raw
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return iter(()), [Problem(name, "binary data (NUL byte), expected JSON text", line, "file")]
    stripped = text.lstrip()
    if not stripped:
        return iter(()), [Problem(name, "empty, expected preference pairs as JSONL or a JSON list", 1, "file")]
    if stripped[0] == "[":
        rows, errors = _read_json_list(name, text)
        return iter(rows), errors
    errors: list[Problem] = []
    return _iter_jsonl(name, text, errors), errors


# Not str.splitlines(): it also splits at U+2028/U+2029/U+0085, which JSON allows raw inside strings.
_LINE_END = re.compile(r"\r\n?|\n")


def _iter_jsonl(name: str, text: str, errors: list[Problem]):
    pos, i, end = 0, 1, len(text)
    while pos <= end:
        m = _LINE_END.search(text, pos)
        stop = m.start() if m else end
        line = text[pos:stop]
        if line.strip():
            row = _parse_line(name, i, line, errors)
            if row is not None:
                yield row
        if m is None:
            break
        pos, i = m.end(), i + 1


def _parse_line(name: str, i: int, line: str, errors: list[Problem]):
    if len(line) > MAX_ROW_CHARS:
        errors.append(_too_long(name, i, len(line)))
        return None
    try:
        return i, json.loads(line)
    except json.JSONDecodeError as e:
        errors.append(Problem(name, f"invalid JSON: {e.msg} (column {e.colno})", i, "json"))
    except RecursionError:
        errors.append(Problem(name, "nested too deeply", i, "json"))
    except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
        errors.append(Problem(name, f"invalid JSON: {first_line(e)}", i, "json"))
    return None


def _too_long(name: str, line: int, chars: int) -> Problem:
    return Problem(name, f"{chars / 1e6:.1f} million characters, over the limit of "
                         f"{MAX_ROW_CHARS / 1e6:.0f} million per row", line, "row")


def _read_json_list(name: str, text: str):
    """Parse a top-level JSON list element by element so each row keeps its line number."""
    decoder = json.JSONDecoder()
    rows = []
    i = text.index("[") + 1
    ws = re.compile(r"\s*")

    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    try:
        i = ws.match(text, i).end()
        if i < len(text) and text[i] == "]":
            i += 1
        else:
            while True:
                obj, end = decoder.raw_decode(text, i)
                if end - i > MAX_ROW_CHARS:
                    return rows, [_too_long(name, line_of(i), end - i)]
                rows.append((line_of(i), obj))
                i = ws.match(text, end).end()
                if i < len(text) and text[i] == ",":
                    i = ws.match(text, i + 1).end()
                    continue
                if i < len(text) and text[i] == "]":
                    i += 1
                    break
                raise json.JSONDecodeError("expected ',' or ']' after a list element", text, i)
        i = ws.match(text, i).end()
        if i != len(text):
            raise json.JSONDecodeError("extra data after the JSON list", text, i)
    except json.JSONDecodeError as e:
        return rows, [Problem(name, f"invalid JSON: {e.msg} (column {e.colno})", e.lineno, "json")]
    except RecursionError:
        return rows, [Problem(name, "nested too deeply", line_of(i), "json")]
    except ValueError as e:  # not a JSONDecodeError: e.g. an integer literal over the digit limit
        return rows, [Problem(name, f"invalid JSON: {first_line(e)}", line_of(i), "json")]
    return rows, []


# ---------------------------------------------------------------- row level

def _messages(value, fieldname: str) -> list[dict]:
    if not isinstance(value, list):
        raise _RowError(fieldname, f"expected a list of messages, got {_kind(value)}")
    if not value:
        raise _RowError(fieldname, "empty list of messages")
    out = []
    for j, m in enumerate(value):
        where = f"{fieldname}[{j}]"
        if not isinstance(m, dict):
            raise _RowError(where, f"expected a message object with role and content, got {_kind(m)}")
        if "role" not in m:
            raise _RowError(f"{where}.role", "missing")
        if "content" not in m:
            raise _RowError(f"{where}.content", "missing")
        role, content = m["role"], m["content"]
        if not isinstance(role, str):
            raise _RowError(f"{where}.role", f"expected a string, got {_kind(role)}")
        if role not in ROLES:
            raise _RowError(f"{where}.role", f"unknown role {role!r} (expected system, user or assistant)")
        if not isinstance(content, str):
            raise _RowError(f"{where}.content", f"expected a string, got {_kind(content)}")
        out.append({"role": role, "content": content})
    return out


def _completion(value, fieldname: str) -> list[dict]:
    """A completion: a string, or a list of assistant message(s)."""
    if isinstance(value, str):
        msgs = [{"role": "assistant", "content": value}]
    else:
        msgs = _messages(value, fieldname)
    for j, m in enumerate(msgs):
        if m["role"] != "assistant":
            raise _RowError(f"{fieldname}[{j}].role", f"expected 'assistant' in a completion, got {m['role']!r}")
    if not "".join(m["content"] for m in msgs).strip():
        raise _RowError(fieldname, "empty completion")
    return msgs


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def parse_hh_transcript(text: str, fieldname: str) -> list[dict]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> [{user: hi}, {assistant: hello}]."""
    if not _HH_TURN.match(text):
        raise _RowError(fieldname, "expected a message list or an Anthropic-HH transcript starting with '\\n\\nHuman:'")
    parts = _HH_TURN.split(text)[1:]  # [role, content, role, content, ...]
    return [{"role": "user" if r == "Human" else "assistant", "content": c}
            for r, c in zip(parts[0::2], parts[1::2])]


def _split_final_answer(msgs: list[dict], fieldname: str) -> tuple[list[dict], list[dict]]:
    """Conversation -> (prompt = everything before the trailing assistant turns, those turns)."""
    k = len(msgs)
    while k > 0 and msgs[k - 1]["role"] == "assistant":
        k -= 1
    if k == len(msgs):
        raise _RowError(fieldname, "missing assistant turn: the conversation must end with the answer")
    if k == 0:
        raise _RowError(fieldname, "no prompt: the conversation has only assistant turns")
    return msgs[:k], msgs[k:]


def _full_conversation(v) -> bool:
    """A message list that starts with a user/system turn and ends with the assistant's answer."""
    return (isinstance(v, list) and len(v) >= 2 and isinstance(v[0], dict) and isinstance(v[-1], dict)
            and v[0].get("role") in ("user", "system") and v[-1].get("role") == "assistant")


def _same_answer(chosen: list[dict], rejected: list[dict]) -> bool:
    """Identical answers (up to whitespace around each message): a pair that teaches nothing."""
    def norm(msgs):
        return [(m["role"], m["content"].strip()) for m in msgs]
    return norm(chosen) == norm(rejected)


def row_problem(row: dict, source: str = "row") -> Problem | None:
    """What `train` would refuse in this one row (a pair or an unpaired row), None if it would take it: the
    check a collector runs before it appends, so it never writes a row the trainer refuses."""
    try:
        if _is_unpaired(row):
            normalize_unpaired(row, DataKeys(), source)
        else:
            normalize_row(row, DataKeys())
    except _RowError as e:
        return Problem.at_row(source, e.fieldname, e.message)
    return None


def normalize_row(row, keys: DataKeys, repeated_prompt: bool = False) -> PreferencePair:
    """Validate one parsed row and return its normalised pair (source filled in by the caller).

    `repeated_prompt`: the file's schema says chosen/rejected are full conversations and the prompt
    column only repeats their user turn (UltraFeedback, Capybara-DPO), so it is not read."""
    if not isinstance(row, dict):
        raise _RowError("row", f"expected a JSON object, got {_kind(row)}")
    for key in (keys.chosen, keys.rejected):
        if key not in row:
            raise _RowError(key, "missing (expected a string or a list of messages)")
    system = row.get(keys.system)
    if system is not None and not isinstance(system, str):
        raise _RowError(keys.system, f"expected a string, got {_kind(system)}")
    if system is not None and not system.strip():
        system = None  # exported datasets often carry "system": "" meaning no system message

    p = None if repeated_prompt else row.get(keys.prompt)
    if isinstance(p, str) and _full_conversation(row[keys.chosen]) and _full_conversation(row[keys.rejected]):
        # UltraFeedback / Capybara-DPO: the prompt string repeats the user turn the conversations start with;
        # the conversations are the truth, split before their final answer as in the implicit form.
        p = None
    if p is not None:
        if isinstance(p, str):
            if not p.strip():
                raise _RowError(keys.prompt, "empty prompt")
            prompt, fmt = [{"role": "user", "content": p}], "explicit"
        elif isinstance(p, list):
            prompt, fmt = _messages(p, keys.prompt), "conversational"
            if prompt[-1]["role"] == "assistant":
                raise _RowError(f"{keys.prompt}[{len(prompt) - 1}].role",
                                "the prompt ends with an assistant turn; the answer belongs in chosen/rejected")
        else:
            raise _RowError(keys.prompt, f"expected a string or a list of messages, got {_kind(p)}")
        chosen = _completion(row[keys.chosen], keys.chosen)
        rejected = _completion(row[keys.rejected], keys.rejected)
    else:
        fmt = "implicit"
        convs = []
        for key in (keys.chosen, keys.rejected):
            v = row[key]
            if isinstance(v, str):
                v = parse_hh_transcript(v, key)
            elif not isinstance(v, list):
                raise _RowError(key, f"expected a conversation (message list or HH transcript), got {_kind(v)}")
            convs.append(_split_final_answer(_messages(v, key), key))
        (prompt, chosen), (prompt_r, rejected) = convs
        if prompt != prompt_r:
            j = next((i for i, (a, b) in enumerate(zip(prompt, prompt_r)) if a != b), min(len(prompt), len(prompt_r)))
            raise _RowError(keys.rejected, f"prompt differs from chosen's at message {j}: "
                            "in implicit form both must share everything before the final answer")
        for key, msgs in ((keys.chosen, chosen), (keys.rejected, rejected)):
            if not "".join(m["content"] for m in msgs).strip():
                raise _RowError(key, "empty completion")

    if system is not None and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}] + prompt
    if _same_answer(chosen, rejected):
        raise _RowError(f"{keys.chosen},{keys.rejected}", "chosen and rejected are identical")
    return PreferencePair(prompt, chosen, rejected, source="", format=fmt)


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


# ---------------------------------------------------------------- Parquet

def parquet_columns(path: Path, name: str) -> tuple[list[str], list[Problem]]:
    """(column names, file-level errors) of a Parquet file."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise UsageError(f"{name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return list(pq.ParquetFile(path).schema_arrow.names), []
    except Exception as e:  # ArrowInvalid, OSError: not Parquet, truncated, corrupt footer
        return [], [Problem(name, f"not a readable Parquet file ({first_line(e)})", None, "file")]


def read_parquet_rows(path: Path, name: str, columns: list[str] | None = None, batch_rows: int = 2048):
    """Yield (row index, row dict) of the given columns (all if None); errors as `FILE: file: ...` rows of
    (None, message)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        have = set(pf.schema_arrow.names)
        cols = [c for c in columns if c in have] if columns is not None else None
        i = 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            for row in batch.to_pylist():
                yield i, row
                i += 1
    except Exception as e:  # a corrupt page part-way through
        yield None, Problem(name, f"cannot read Parquet data ({first_line(e)})", None, "file")


def is_parquet(path: Path) -> bool:
    if path.name.lower().endswith(".parquet"):
        return True
    try:  # Parquet starts and ends with PAR1 (and holds a footer length between)
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0, 2)
            if f.tell() < 12 or head != b"PAR1":
                return False
            f.seek(-4, 2)
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _table_rows(path: Path, name: str, table: str, columns: list[str] | None = None, batch_rows: int = 2048,
                numeric: tuple[str, str] | None = None):
    """(row number, row) of a Parquet or CSV/TSV file; a read error as (None, message). `numeric`: score
    columns named by --score-keys (CSV cells are text; these are read as numbers, like the known ones)."""
    if table == "parquet":
        return read_parquet_rows(path, name, columns, batch_rows)
    from .schemas import PAIRWISE, SCORE_PAIRS
    from .tables import read_csv_rows

    known = tuple(c for pair in SCORE_PAIRS for c in pair) + PAIRWISE[2:]
    return read_csv_rows(path, name, numeric=known + tuple(numeric or ()))


# ---------------------------------------------------------------- public API

def _sharegpt_turns(value, fieldname: str) -> list[dict]:
    """ShareGPT turns ({"from": "human"|"gpt"|..., "value": str}, one or a list) as role/content messages."""
    from .schemas import SHAREGPT_ROLES

    one = isinstance(value, dict)
    if not one and not isinstance(value, list):
        raise _RowError(fieldname, f"expected a from/value turn or a list of them, got {_kind(value)}")
    if not value:
        raise _RowError(fieldname, "empty list of turns")
    out = []
    for j, t in enumerate([value] if one else value):
        where = fieldname if one else f"{fieldname}[{j}]"
        if not isinstance(t, dict):
            raise _RowError(where, f"expected a turn object with from and value, got {_kind(t)}")
        for key in ("from", "value"):
            if key not in t:
                raise _RowError(f"{where}.{key}", "missing")
        role, text = t["from"], t["value"]
        if not isinstance(role, str) or role.lower() not in SHAREGPT_ROLES:
            raise _RowError(f"{where}.from", f"unknown role {role!r} (expected human/user, gpt/assistant or system)")
        if not isinstance(text, str):
            raise _RowError(f"{where}.value", f"expected a string, got {_kind(text)}")
        out.append({"role": SHAREGPT_ROLES[role.lower()], "content": text})
    return out


def _map_row(row, schema):
    """Apply a schema's column mapping that keys alone cannot express (instruction + input, ShareGPT turns,
    HelpSteer2's answer order by the strength's sign; a tie raises _Tie)."""
    if schema is None or not isinstance(row, dict):
        return row
    if schema.pairwise:
        a, b, strength = schema.pairwise
        s = row.get(strength)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s != s:
            raise _RowError(strength, f"expected a number (negative: {a} preferred, positive: {b}), got {_kind(s)}")
        if s == 0:
            raise _Tie()
        first, second = (a, b) if s < 0 else (b, a)
        for key in (a, b):
            if key not in row:
                raise _RowError(key, "missing (expected a string)")
        k = schema.keys
        return {**row, k.chosen: row[first], k.rejected: row[second]}
    if schema.sharegpt:
        k = schema.keys
        if k.prompt not in row:
            raise _RowError(k.prompt, "missing (expected a list of from/value turns)")
        return {**row, **{key: _sharegpt_turns(row[key], key) for key in (k.prompt, k.chosen, k.rejected)
                          if key in row}}
    if not schema.instruction_input:
        return row
    ins, inp = schema.instruction_input
    a, b = row.get(ins), row.get(inp)
    if a is not None and not isinstance(a, str):
        raise _RowError(ins, f"expected a string, got {_kind(a)}")
    if b is not None and not isinstance(b, str):
        raise _RowError(inp, f"expected a string, got {_kind(b)}")
    if isinstance(a, str) and isinstance(b, str) and b.strip():
        row = {**row, ins: f"{a}\n\n{b}"}
    return row


def _score_margin(row, schema) -> float:
    c, r = schema.scores
    vals = []
    for key in (c, r):
        v = row.get(key) if isinstance(row, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise _RowError(key, f"expected a number (for --min-score-margin), got {_kind(v)}")
        vals.append(float(v))
    return vals[0] - vals[1]


def load_pairs(path, keys: DataKeys = DataKeys(), *, split: str = "train", subset: str | None = None,
               revision: str | None = None, min_score_margin: float | None = None,
               keep_messages: int | None = None) -> LoadResult:
    """Read every row of a file, dataset folder or hub dataset (see sources.py); recognise its schema;
    collect pairs and all errors (does not raise for bad rows). `path` may also be a sources.DataSpec, or
    the sources.Source it resolved to.

    `keep_messages=N`: every row is checked as usual, but only the first N pairs keep their messages, the
    others are PairRecords (for data whose tokenized pairs are cached: its messages are not needed)."""
    from .sources import DataSpec, Source, resolve

    if isinstance(path, Source):
        spec, source = path.spec, path
    else:
        spec = path if isinstance(path, DataSpec) else DataSpec(str(path), split, subset, revision)
        source = resolve(spec)
    result = LoadResult(source=source)
    order = {f.label: i for i, f in enumerate(source.files)}
    for f in source.files:
        _load_file(f, keys, result, min_score_margin, keep_messages)
    if len(result.first_of_kind) == 2:  # paired and unpaired rows cannot train together
        result.errors.append(Problem.at_row(
            result.first_of_kind[True], "row", "an unpaired row (prompt, completion, label) in a file of pairs (the "
            f"first pair is {result.first_of_kind[False]})", fix="keep each kind in its own file"))
    result.errors.sort(key=lambda e: (order.get(e.source, len(order)), e.line or 0))  # by file, then line
    if not result.errors and not result.pairs:
        where = source.files[0].label if len(source.files) == 1 else spec.path
        if result.filtered:
            result.errors.append(Problem(where, f"every pair is below --min-score-margin {min_score_margin}", None,
                                         "scores"))
        elif result.ties:
            result.errors.append(Problem(where, f"every row is a tie ({result.ties} with preference strength 0)",
                                         None, "preference_strength"))
        else:
            result.errors.append(Problem(where, "no preference pairs found", 1, "file"))
    return result


def _load_file(f, keys: DataKeys, result: "LoadResult", min_score_margin, keep_messages: int | None) -> None:
    from .tables import BadRow, csv_columns, is_csv

    name = f.label
    table = "parquet" if is_parquet(f.path) else "csv" if is_csv(f.path) else None  # read by pyarrow
    if table:
        columns, errors = (parquet_columns if table == "parquet" else csv_columns)(f.path, name)
        rows = None
        if errors:
            result.errors += errors
            return
    else:
        rows, json_errors = iter_rows(f.path, name)  # json_errors fills while the rows are consumed
        head = list(islice(rows, 200))
        rows = chain(head, rows)
        columns = list(dict.fromkeys(k for _, r in head if isinstance(r, dict) for k in r))
    if result.schema is None or result.schema.name == "unknown":
        if table:
            sample = next((r for _, r in _table_rows(f.path, name, table, batch_rows=1) if isinstance(r, dict)), None)
        else:
            sample = next((r for _, r in head if isinstance(r, dict)), None)
        schema = detect(columns, sample, keys)
        first_line_no = {"parquet": 0, "csv": 1}.get(table) if table else (head[0][0] if head else 1)
        # Unknown: neither answer column. (With one of them, each row's error names the missing one.)
        # Unpaired rows (prompt, completion, label) have neither by design: nothing to map.
        if schema is None and (table or head) and not (set(columns) & {*CHOSEN_NAMES, *REJECTED_NAMES}) \
                and not _is_unpaired(dict.fromkeys(columns)):
            # A hint, not an error: every row still gets its own error (one per bad row).
            result.hints.append(Problem(name, unknown_schema_message(columns, keys), first_line_no, "columns"))
        result.schema = schema
    schema = result.schema
    if schema is not None and schema.name == "flags" and set(PAIRWISE) <= set(columns) \
            and {keys.chosen, keys.rejected} & set(PAIRWISE[:2]):
        raise UsageError(f"{name}: a HelpSteer2 pairwise file ({', '.join(PAIRWISE)}): which answer is preferred "
                         f"depends on each row's {PAIRWISE[2]}, so --chosen-key/--rejected-key would train some rows "
                         "backwards; drop those flags and the sign of the strength picks chosen", key="chosen_key")
    if keys.scores and columns and not set(keys.scores) <= set(columns):
        missing = ", ".join(c for c in keys.scores if c not in columns)
        raise UsageError(f"{name}: --score-keys names no such column: {missing}; columns found: {', '.join(columns)}",
                         key="score_keys")
    if min_score_margin is not None and schema is not None and schema.scores is None:
        raise UsageError(f"{name}: --min-score-margin needs score columns (score_chosen/score_rejected, "
                         f"rating_chosen/rating_rejected, chosen-rating/rejected-rating, ...; or name them with "
                         f"--score-keys CHOSEN,REJECTED); columns found: {', '.join(columns)}")
    row_keys = schema.keys if schema is not None else keys
    repeated = schema is not None and schema.repeated_prompt
    if table:
        wanted = schema.columns() if schema is not None else None
        rows = _table_rows(f.path, name, table, wanted, numeric=schema.scores if schema is not None else None)
    for line, row in rows:
        if line is None:  # a Parquet or CSV read error part-way through
            result.errors.append(row)
            break
        result.rows += 1
        try:
            if isinstance(row, BadRow):  # a CSV row whose cells do not match the header
                raise _RowError("row", row.message)
            if min_score_margin is not None and schema is not None and _score_margin(row, schema) < min_score_margin:
                result.filtered += 1
                continue
            if _is_unpaired(row):
                pair = as_pair(normalize_unpaired(row, row_keys, f"{name}:{line}"))
            else:
                pair = normalize_row(_map_row(row, schema), row_keys, repeated)
        except _RowError as e:
            result.errors.append(Problem(name, e.message, line, e.fieldname))
            continue
        except _Tie:
            result.ties += 1
            continue
        pair.source = f"{name}:{line}"
        if keep_messages is not None and len(result.pairs) >= keep_messages:
            pair = PairRecord(pair.source, pair.format, pair.label)
        result.pairs.append(pair)
        result.formats[pair.format] += 1
        result.first_of_kind.setdefault(pair.format == "unpaired", pair.source)
    if not table:
        result.errors += json_errors
        # Rows that are not even valid JSON still count as rows of the file.
        result.rows += sum(e.field == "json" for e in json_errors)


# ---------------------------------------------------------------- unpaired rows (KTO; see unpaired.py)

LABEL_KEY, COMPLETION_KEY = "label", "completion"


@dataclass
class UnpairedExample:
    prompt: list[dict]
    completion: list[dict]  # assistant message(s)
    label: bool             # True: desirable
    source: str             # "FILE:LINE"


def normalize_unpaired(row: dict, keys: DataKeys, source: str) -> UnpairedExample:
    """Validate one unpaired row; _RowError(field, message) if it is bad."""
    label = row[LABEL_KEY]
    if not isinstance(label, bool):
        raise _RowError(LABEL_KEY, f"expected true (desirable) or false (undesirable), got {label!r}")
    p = row.get(keys.prompt)
    if isinstance(p, str):
        if not p.strip():
            raise _RowError(keys.prompt, "empty prompt")
        prompt = [{"role": "user", "content": p}]
    elif isinstance(p, list):
        prompt = _messages(p, keys.prompt)
        if prompt[-1]["role"] == "assistant":
            raise _RowError(f"{keys.prompt}[{len(prompt) - 1}].role",
                            "the prompt ends with an assistant turn; the answer belongs in completion")
    else:
        raise _RowError(keys.prompt, "missing (expected a string or a list of messages)")
    system = row.get(keys.system)
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}] + prompt
    return UnpairedExample(prompt, _completion(row[COMPLETION_KEY], COMPLETION_KEY), label, source)


def as_pair(e: UnpairedExample) -> PreferencePair:
    """An example as the loader's pair, with the completion on both sides and the label beside."""
    return PreferencePair(e.prompt, e.completion, e.completion, e.source, "unpaired", e.label)


def _is_unpaired(row) -> bool:
    """TRL's unpaired format: one completion and a label (see unpaired.py)."""
    return isinstance(row, dict) and "completion" in row and "label" in row and "chosen" not in row


def load_pairs_strict(path, keys: DataKeys = DataKeys(), **kw) -> list[PreferencePair]:
    """Load pairs or raise DataError listing every bad row."""
    result = load_pairs(path, keys, **kw)
    if result.errors:
        raise DataError(result.errors)
    return result.pairs
