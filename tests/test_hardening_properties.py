"""Property tests of the data loader: on any JSON structure and any bytes it returns errors, never raises,
and every error is one line of the form `FILE:LINE: field: message`."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_dpo.data.pairs import DataKeys, PreferencePair, _RowError, load_pairs, normalize_row

KEYS = ["prompt", "chosen", "rejected", "system", "role", "content", "messages", "x"]
ROLES = ["system", "user", "assistant", "bot", "", "USER"]
TEXT = st.text(max_size=12) | st.sampled_from(["", " ", "\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q",
                                                 "\u2028", "\x00", "\ud800", "\r\n"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT | st.sampled_from(ROLES)
MESSAGE = st.fixed_dictionaries({}, optional={"role": SCALARS, "content": SCALARS, "name": SCALARS})
JSON = st.recursive(SCALARS | MESSAGE,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner,
                                                                               max_size=5),
                    max_leaves=20)
ROW = st.fixed_dictionaries({}, optional={k: JSON | st.lists(MESSAGE, max_size=3) for k in
                                         ("prompt", "chosen", "rejected", "system")}) | JSON

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(path: Path, result, n_lines: int | None = None) -> None:
    line_re = re.compile(rf"^{re.escape(str(path))}:(\d+): ([\w\[\].,]+): (\S.*)$")
    for problem in result.errors:
        e = str(problem)
        assert "\n" not in e and "\r" not in e, e
        m = line_re.match(e)
        assert m, f"not FILE:LINE: field: message: {e!r}"
        if n_lines is not None:
            assert 1 <= int(m.group(1)) <= max(n_lines, 1), e
    assert result.errors or result.pairs
    for p in result.pairs:
        assert isinstance(p, PreferencePair) and p.chosen != p.rejected
        for msgs in (p.prompt, p.chosen, p.rejected):
            assert msgs and all(isinstance(m["content"], str) for m in msgs)


@SETTINGS
@given(row=ROW)
def test_normalize_row_returns_a_pair_or_a_row_error(row):
    try:
        pair = normalize_row(row, DataKeys())
    except _RowError as e:
        assert e.fieldname and e.message and "\n" not in e.message
    else:
        assert pair.prompt and pair.chosen and pair.rejected and pair.chosen != pair.rejected


@SETTINGS
@given(rows=st.lists(ROW, max_size=6), as_list=st.booleans(), crlf=st.booleans(), bom=st.booleans())
def test_load_pairs_on_random_json_structures(rows, as_list, crlf, bom):
    nl = "\r\n" if crlf else "\n"
    if as_list:
        text = "[" + ("," + nl).join(json.dumps(r) for r in rows) + "]" + nl
    else:
        text = "".join(json.dumps(r) + nl for r in rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("d.json" if as_list else "d.jsonl")
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
        result = load_pairs(path)
        _check(path, result, text.count(nl) + 1)
        if not as_list and not (rows and isinstance(rows[0], list)):  # a leading list reads as a JSON list
            assert result.rows == len(rows)
            assert len(result.pairs) + len(result.errors) == len(rows) or (not rows and len(result.errors) == 1)


@SETTINGS
@given(data=st.binary(max_size=400) | st.lists(st.sampled_from([
    b'{"prompt": "a", "chosen": "x", "rejected": "y"}', b"{", b"[", b"]", b",", b"\n", b"\r", b"\x00", b"\xff",
    b'"', b"\xef\xbb\xbf", b"\\", b"null", b"{}", b"[]", b"9" * 5000, b"\xe2\x80\xa8"]), max_size=12).map(b"".join))
def test_load_pairs_on_random_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        for name in ("d.jsonl", "d.json"):
            path = Path(d) / name
            path.write_bytes(data)
            _check(path, load_pairs(path), data.count(b"\n") + data.count(b"\r") + 1)


@SETTINGS
@given(row=ROW, keys=st.tuples(*[st.sampled_from(KEYS) for _ in range(4)]))
def test_remapped_keys_never_crash(row, keys):
    try:
        normalize_row(row, DataKeys(*keys))
    except _RowError as e:
        assert e.fieldname and "\n" not in e.message
