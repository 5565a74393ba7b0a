"""From a data source to tokenized, truncated pairs (used by train, eval and validate).

A source is a file, a dataset folder or a hub dataset id (sources.py); its rows are mapped by the schema
recognised (schemas.py), validated (pairs.py) and rendered (template.py). Problems are kept as
errors.Problem records (printed `SOURCE:LINE: field: message`; as dicts in `problems` for JSON). By default any problem
refuses the source; with `skip_invalid` the invalid rows are left out, counted and listed (`skipped`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..errors import DataError, Problem
from . import cache
from .pairs import DataKeys, LoadResult, load_pairs
from .template import RenderResult, length_stats, render_pairs

# Problems that are not one bad row: the whole source is unusable, --skip-invalid does not apply.
FATAL_FIELDS = ("file", "scores")
SHOWN_REASONS = 3  # skipped rows whose reasons are printed (all are in skipped.jsonl)


@dataclass
class PreparedData:
    path: str
    load: LoadResult
    render: RenderResult | None = None
    errors: list[Problem] = field(default_factory=list)
    skip_invalid: bool = False

    @property
    def pairs(self):
        return self.render.pairs if self.render else []

    @property
    def labels(self) -> list[str]:
        src = self.load.source
        return [f.label for f in src.files] if src is not None else [self.path]

    @property
    def problems(self) -> list[dict]:
        """Every error as {file, line, field, message, fix} (line None where the problem has no line)."""
        return [e.as_dict() for e in self.errors]

    @property
    def fatal(self) -> list[Problem]:
        """Errors --skip-invalid cannot skip (the file or its schema, not one row)."""
        return [e for e in self.errors if e.field in FATAL_FIELDS]

    @property
    def valid_pairs(self) -> int:
        """Pairs that passed every check: the rows' structure and, when tokenized, the chat template."""
        return len(self.load.pairs) - (len(self.render.errors) if self.render else 0)

    def formats(self) -> dict:
        """Row formats of the valid pairs."""
        counts = dict(self.load.formats)
        if self.render:
            failed = {e.row for e in self.render.errors}
            for p in self.load.pairs:
                if p.source in failed:
                    counts[p.format] -= 1
        return {k: v for k, v in counts.items() if v}

    def report(self) -> dict:
        """Counts and token-length statistics, for `validate` and the UI.

        Keys that carry nothing are left out: `problems` (when there are errors), `schema` (a recognised
        layout other than plain prompt/chosen/rejected), `source` (a folder or hub dataset), `filtered`
        (--min-score-margin), `skipped` (--skip-invalid)."""
        out = {"file": self.path, "rows": self.load.rows, "valid_pairs": self.valid_pairs,
               "errors": len(self.errors), "formats": self.formats()}
        if self.errors:
            out["problems"] = self.problems
        if self.load.hints:
            out["hints"] = [str(h) for h in self.load.hints]
        schema, src = self.load.schema, self.load.source
        if schema is not None and schema.named:
            out["schema"] = {"name": schema.name, "mapping": schema.describe(), "ignored": list(schema.ignored)}
        if src is not None and src.kind != "file":
            out["source"] = {"kind": src.kind, "split": src.spec.split, "subset": src.spec.subset,
                             "revision": src.revision, "files": self.labels, "description": src.describe()}
        if self.load.filtered:
            out["filtered"] = self.load.filtered
        if self.load.ties:
            out["ties"] = self.load.ties
        if self.skip_invalid:
            out["skipped"] = len(self.errors)
        if self.render is not None:
            r = self.render
            total = [p + max(c, j) for p, c, j in zip(r.raw_lengths["prompt"], r.raw_lengths["chosen"],
                                                        r.raw_lengths["rejected"])]
            out.update({
                "tokens": {k: length_stats(v) for k, v in r.raw_lengths.items()} | {"total": length_stats(total)},
                "truncated": r.truncated, "dropped": len(r.dropped), "boundary_repaired": r.repaired,
                "trainable_pairs": len(r.pairs),
            })
        return out

    def summary_lines(self) -> list[str]:
        """What was read and how it was mapped (one line each; none for a plain prompt/chosen/rejected file)."""
        out = []
        src, schema = self.load.source, self.load.schema
        if src is not None and src.kind != "file":
            out.append(f"data: {src.describe()}")
        if schema is not None and schema.named:
            out.append(f"data: {self.path}: {schema.describe()}")
        if self.load.filtered:
            out.append(f"data: {self.load.filtered} pair(s) below --min-score-margin left out")
        if self.load.ties:
            out.append(f"data: {self.load.ties} tie(s) left out (preference strength 0: neither answer preferred)")
        return out

    def skipped_lines(self) -> list[str]:
        """The --skip-invalid summary: how many rows were left out and the first few reasons."""
        if not self.errors:
            return []
        n = len(self.errors)
        out = [f"warning: {self.path}: skipped {n} invalid row(s) of {self.load.rows} (--skip-invalid); "
               f"{len(self.pairs)} pairs kept" + (":" if n else "")]
        out += [f"  {e}" for e in self.errors[:SHOWN_REASONS]]
        if n > SHOWN_REASONS:
            out.append(f"  ... and {n - SHOWN_REASONS} more")
        return out


def prepare(path, keys: DataKeys, tokenizer=None, max_length: int = 1024, prompt_limit: int = 512, progress=None,
            *, split: str = "train", subset: str | None = None, revision: str | None = None,
            min_score_margin: float | None = None, skip_invalid: bool = False, cache_dir: str | None = None,
            log=None, keep_messages: int = 0) -> PreparedData:
    """Load and validate rows; with a tokenizer, render and truncate them (`progress(done, total)` per
    chunk of pairs), through the tokenized-pairs cache (cache.py) for large inputs. Never raises for bad
    rows. `path` is a file, dataset folder, hub id or sources.DataSpec.

    Once tokenized, `load.pairs` keep only their source, format and label (pairs.PairRecord), except the
    first `keep_messages` (a preview): the messages of a large dataset cost more memory than its ids."""
    from .sources import DataSpec, resolve

    spec = path if isinstance(path, DataSpec) else DataSpec(str(path), split, subset, revision)
    source = resolve(spec)
    options = {"keys": asdict(keys), "min_score_margin": min_score_margin}
    entry = cache.entry(source, options, tokenizer, max_length, prompt_limit, cache_dir) if tokenizer else None
    # With the tokenized pairs on disk, the rows are still read and checked, but their messages not kept.
    warm = entry is not None and entry.exists()

    def load(keep: int | None = None):
        return load_pairs(source, keys, min_score_margin=min_score_margin, keep_messages=keep)

    loaded = load(keep_messages if warm else None)
    prepared = PreparedData(str(spec.path), loaded, errors=list(loaded.errors), skip_invalid=skip_invalid)
    if tokenizer is not None and loaded.pairs and not prepared.fatal:
        prepared.render = cache.cached_render(render_pairs, entry, tokenizer, loaded.pairs, max_length, prompt_limit,
                                              progress, log, release=lambda a, b: loaded.release(a, b, keep_messages),
                                              reload=lambda: _fresh_pairs(loaded, load), messages=not warm)
        prepared.errors += prepared.render.errors
    return prepared


def _fresh_pairs(loaded: LoadResult, load) -> list:
    """The rows' pairs with their messages, read again (a cache entry that turned out unusable); they
    replace the records in `loaded`, so releasing them later works as for a first read."""
    loaded.pairs = load().pairs
    return loaded.pairs


def prepare_strict(path, keys: DataKeys, tokenizer, max_length: int, prompt_limit: int, log=print,
                   progress=None, **source) -> PreparedData:
    """Tokenized pairs ready for training, or DataError listing every bad row.

    `source` takes prepare()'s keyword arguments (split, subset, revision, min_score_margin, skip_invalid);
    with skip_invalid=True only problems of the whole source (and an empty result) raise."""
    prepared = prepare(path, keys, tokenizer, max_length, prompt_limit, progress, log=log, **source)
    for line in prepared.summary_lines():
        log(line)
    for hint in prepared.load.hints:
        log(str(hint))
    if prepared.errors and (not prepared.skip_invalid or prepared.fatal):
        usable = prepared.valid_pairs
        if not prepared.fatal and usable > 0:
            log(f"hint: {prepared.path}: {len(prepared.errors)} invalid row(s); pass --skip-invalid to train on "
                f"the {usable} valid pair(s) and list the others in RUN_DIR/skipped.jsonl")
        raise DataError(prepared.errors, skippable=not prepared.fatal and usable > 0)
    for line in prepared.skipped_lines():
        log(line)
    if prepared.render is None:  # --skip-invalid and not one row was valid
        raise DataError(prepared.errors + [Problem(prepared.path, f"no valid pairs: all {prepared.load.rows} "
                                                   "row(s) are invalid")])
    for w in prepared.render.warnings():
        log(f"warning: {prepared.path}: {w}")
    if not prepared.pairs:
        raise DataError([Problem(prepared.path, f"no pairs left after the length limits (max_length={max_length})",
                                 fix="raise --max-length or --max-prompt-length")])
    return prepared


def write_skipped(path, prepared_list: list[PreparedData]) -> int:
    """Append nothing, write all: RUN_DIR/skipped.jsonl, one {source, file, line, field, message} per skipped row."""
    from ..fileio import atomic_write_text

    rows = [{"source": p.path, **prob} for p in prepared_list for prob in p.problems]
    if rows:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)
