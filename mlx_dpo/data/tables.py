"""CSV and TSV files of pairs (or of unpaired rows), read with pyarrow's streaming CSV reader: a table, like Parquet.

The first line is the header: its column names are recognised as JSONL keys are (schemas.py), and the
--prompt-key ... flags apply. Every cell is read as text (an empty cell is an empty string), so an answer
that looks like a number stays text and no column type is guessed from the first block alone; then a
`label` cell true/false/1/0 (any case) becomes a boolean and a score cell (--min-score-margin) that is a
number a number. Other cells of those columns stay text, which the row check reports (as for JSONL).

Rows are numbered as lines of the file, the header being line 1: a row is named by the line it starts on,
so a quoted answer that spans lines moves the next row's number on by as many lines (counted in the cells
read). A row whose cells are all empty (a blank line, or `,,` as spreadsheets write an empty row) is
skipped, as a blank line of JSONL is.

A row with the wrong number of cells is that row's error; a file that cannot be parsed (empty, not UTF-8,
a quote never closed) is one file-level error.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Problem, first_line

CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")  # .gz is decompressed by pyarrow (from the name)
BLOCK = 16 << 20  # bytes parsed at a time: a row must fit in one block (pyarrow), so larger than any real row
LABEL = "label"   # pairs.LABEL_KEY: true/false cells are booleans


def is_csv(path: Path) -> bool:
    return Path(path).name.lower().endswith(CSV_SUFFIXES)


def _delimiter(path: Path) -> str:
    return "\t" if Path(path).name.lower().endswith((".tsv", ".tsv.gz")) else ","


def _blank_lines_before_header(path: Path) -> int:
    """Blank lines at the start of the file (skipped before the header: the reader would take one for it)."""
    import pyarrow as pa

    with pa.input_stream(str(path), compression="detect") as f:
        head = f.read(1 << 16).decode("utf-8-sig", errors="replace")
    lines = head.split("\n")
    return next((i for i, line in enumerate(lines) if line.strip()), len(lines) - 1)


def _options(path: Path, column_types: dict | None = None, invalid=None, skip: int = 0):
    import pyarrow.csv as pacsv

    return dict(
        # One thread: the reader then numbers the rows it rejects (the handler's `number`).
        read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK, skip_rows=skip),
        # Blank lines kept (as rows of empty cells), so that the line numbers count them.
        parse_options=pacsv.ParseOptions(delimiter=_delimiter(path), newlines_in_values=True,
                                         ignore_empty_lines=False, invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(column_types=column_types or {}, strings_can_be_null=False))


def csv_columns(path: Path, name: str) -> tuple[list[str], list[Problem]]:
    """(the header's column names, file-level errors) of a CSV/TSV file."""
    import pyarrow.csv as pacsv

    try:
        skip = _blank_lines_before_header(path)
        return list(pacsv.open_csv(path, **_options(path, invalid=lambda row: "skip", skip=skip)).schema.names), []
    except Exception as e:  # ArrowInvalid: empty, not UTF-8, unbalanced quotes; OSError
        return [], [_file_error(name, e)]


class BadRow:
    """A row the reader rejected: its cells do not match the header."""

    def __init__(self, message: str):
        self.message = message


def read_csv_rows(path: Path, name: str, numeric: tuple[str, ...] = ()):
    """Yield (line, row dict) of every row: a row with the wrong number of cells as (line, BadRow), a file
    that cannot be read on as (None, Problem). Cells are text; those of `label` that say a
    boolean and those of the `numeric` columns (scores) that are numbers are converted."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    columns, errors = csv_columns(path, name)
    if errors:
        yield None, errors[0]
        return
    types = dict.fromkeys(columns, pa.string())
    convert = {c: _label if c == LABEL else _number for c in columns if c == LABEL or c in numeric}
    skip = _blank_lines_before_header(path)
    rejected: dict[int, object] = {}  # record number (skipped lines and the header counted) -> InvalidRow

    def invalid(row):
        rejected[row.number] = row  # reported below, where it falls among the good rows
        return "skip"

    def bad(row) -> BadRow:
        return BadRow(f"{row.actual_columns} cell(s), expected {row.expected_columns} ({', '.join(columns)})")

    record, line = skip + 2, skip + 2  # the next row's record number (as the reader counts) and first line
    try:
        for batch in pacsv.open_csv(path, **_options(path, types, invalid, skip)):
            # lines each row spans beyond its first: the line breaks inside its quoted cells
            spans = [pc.count_substring(c, "\n").to_pylist() for c in batch.columns if pa.types.is_string(c.type)]
            for i, row in enumerate(batch.to_pylist()):
                while record in rejected:
                    r = rejected.pop(record)
                    yield line, bad(r)
                    record, line = record + 1, line + 1 + r.text.count("\n")
                if any(v != "" for v in row.values()):
                    for c, f in convert.items():
                        row[c] = f(row[c])
                    yield line, row
                record, line = record + 1, line + 1 + sum(s[i] for s in spans)
        for number in sorted(rejected):  # rejected rows after the last good one
            yield line, bad(rejected[number])
            line += 1 + rejected[number].text.count("\n")
    except Exception as e:  # a bad byte or an unclosed quote part-way through
        yield None, _file_error(name, e)


_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _label(cell: str):
    return _BOOLEANS.get(cell.strip().lower(), cell)


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return cell


def read_csv(path: Path, name: str | None = None) -> tuple[list[tuple[int, dict]], list[Problem]]:
    """pairs.read_rows for a CSV/TSV file: ([(line, row)], the bad rows and file errors)."""
    name = str(path) if name is None else name
    rows, errors = [], []
    for line, row in read_csv_rows(Path(path), name):
        if line is None:
            errors.append(row)
        elif isinstance(row, BadRow):
            errors.append(Problem(name, row.message, line, "row"))
        else:
            rows.append((line, row))
    return rows, errors


def _file_error(name: str, e: Exception) -> Problem:
    text = first_line(e)
    if text == "Empty CSV file":
        return Problem(name, "empty, expected a header line (prompt, chosen, rejected, ...) and rows", 1, "file")
    return Problem(name, f"not a readable CSV/TSV file ({text})", None, "file")
