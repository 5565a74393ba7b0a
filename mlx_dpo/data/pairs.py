"""Read and validate preference-pair files; normalise every row to (prompt, chosen, rejected) messages.

Accepted per row (JSONL, or a JSON list):
1. explicit prompt, strings:   {"prompt": str, "chosen": str, "rejected": str, "system"?: str}
2. conversational:             {"prompt": [messages], "chosen": [assistant msgs], "rejected": [...]}
3. implicit prompt:            {"chosen": [full conversation] | "\\n\\nHuman: ...\\n\\nAssistant: ...",
                                "rejected": same}; the shared part before the final answer is the prompt.
Every problem is reported as `FILE:LINE: field: what is wrong`; nothing is silently skipped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError, first_line

ROLES = ("system", "user", "assistant")
# One pair is a few thousand tokens; a row this long is a broken export (or not a pairs file at all),
# and tokenizing it would take minutes. Reported as an error instead.
MAX_ROW_CHARS = 8_000_000
FORMATS = ("explicit", "conversational", "implicit")


@dataclass(frozen=True)
class DataKeys:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    system: str = "system"


@dataclass
class PreferencePair:
    prompt: list[dict]    # messages before the answer (system/user/assistant turns)
    chosen: list[dict]    # the preferred assistant message(s)
    rejected: list[dict]  # the dispreferred assistant message(s)
    source: str           # "FILE:LINE", for error messages downstream
    format: str           # one of FORMATS


@dataclass
class LoadResult:
    pairs: list[PreferencePair] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    rows: int = 0


class _RowError(Exception):
    def __init__(self, fieldname: str, message: str):
        self.fieldname, self.message = fieldname, message


# ---------------------------------------------------------------- file level

def read_rows(path: Path) -> tuple[list[tuple[int, object]], list[str]]:
    """Return [(line_number, parsed_value)] and file-level errors; JSON list or JSONL is sniffed."""
    name = str(path)
    if not path.exists():
        raise UsageError(f"{name}: no such file")
    if path.is_dir():
        raise UsageError(f"{name}: is a directory, expected a .jsonl or .json file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"{name}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return [], [f"{name}:{line}: file: not UTF-8 text (bad byte 0x{raw[e.start]:02x} at offset {e.start})"]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return [], [f"{name}:{line}: file: binary data (NUL byte), expected JSON text"]
    stripped = text.lstrip()
    if not stripped:
        return [], [f"{name}:1: file: empty, expected preference pairs as JSONL or a JSON list"]
    if stripped[0] == "[":
        return _read_json_list(name, text)
    return _read_jsonl(name, text)


def _read_jsonl(name: str, text: str):
    rows, errors = [], []
    # Not str.splitlines(): it also splits at U+2028/U+2029/U+0085, which JSON allows raw inside strings.
    for i, line in enumerate(re.split(r"\r\n?|\n", text), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_ROW_CHARS:
            errors.append(_too_long(name, i, len(line)))
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            errors.append(f"{name}:{i}: json: invalid JSON: {e.msg} (column {e.colno})")
        except RecursionError:
            errors.append(f"{name}:{i}: json: nested too deeply")
        except ValueError as e:  # e.g. an integer literal longer than Python's digit limit
            errors.append(f"{name}:{i}: json: invalid JSON: {first_line(e)}")
    return rows, errors


def _too_long(name: str, line: int, chars: int) -> str:
    return (f"{name}:{line}: row: {chars / 1e6:.1f} million characters, over the limit of "
            f"{MAX_ROW_CHARS / 1e6:.0f} million per row")


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
        return rows, [f"{name}:{e.lineno}: json: invalid JSON: {e.msg} (column {e.colno})"]
    except RecursionError:
        return rows, [f"{name}:{line_of(i)}: json: nested too deeply"]
    except ValueError as e:  # not a JSONDecodeError: e.g. an integer literal over the digit limit
        return rows, [f"{name}:{line_of(i)}: json: invalid JSON: {first_line(e)}"]
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


def normalize_row(row, keys: DataKeys) -> PreferencePair:
    """Validate one parsed row and return its normalised pair (source filled in by the caller)."""
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

    if keys.prompt in row and row[keys.prompt] is not None:
        p = row[keys.prompt]
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
    if chosen == rejected:
        raise _RowError(f"{keys.chosen},{keys.rejected}", "chosen and rejected are identical")
    return PreferencePair(prompt, chosen, rejected, source="", format=fmt)


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


# ---------------------------------------------------------------- public API

def load_pairs(path: str | Path, keys: DataKeys = DataKeys()) -> LoadResult:
    """Read every row; collect pairs and all errors (does not raise for bad rows)."""
    path = Path(path)
    rows, errors = read_rows(path)
    # Rows that are not even valid JSON still count as rows of the file.
    result = LoadResult(errors=errors, rows=len(rows) + sum(": json: " in e for e in errors))
    for line, row in rows:
        try:
            pair = normalize_row(row, keys)
        except _RowError as e:
            result.errors.append(f"{path}:{line}: {e.fieldname}: {e.message}")
            continue
        pair.source = f"{path}:{line}"
        result.pairs.append(pair)
        result.formats[pair.format] += 1
    result.errors.sort(key=_line_of_error)
    if not result.errors and not result.pairs:
        result.errors.append(f"{path}:1: file: no preference pairs found")
    return result


def _line_of_error(msg: str) -> int:
    m = re.match(r".*?:(\d+): ", msg)
    return int(m.group(1)) if m else 0


def load_pairs_strict(path: str | Path, keys: DataKeys = DataKeys()) -> list[PreferencePair]:
    """Load pairs or raise DataError listing every bad row."""
    result = load_pairs(path, keys)
    if result.errors:
        raise DataError(result.errors)
    return result.pairs
