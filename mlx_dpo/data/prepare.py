"""From a pairs file to tokenized, truncated pairs (used by train, eval and validate)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .pairs import DataKeys, LoadResult, load_pairs
from ..errors import DataError
from .template import RenderResult, length_stats, render_pairs


@dataclass
class PreparedData:
    path: str
    load: LoadResult
    render: RenderResult | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def pairs(self):
        return self.render.pairs if self.render else []

    def report(self) -> dict:
        """Counts and token-length statistics, for `validate` and the UI."""
        out = {"file": self.path, "rows": self.load.rows, "valid_pairs": len(self.load.pairs),
               "errors": len(self.errors), "formats": dict(self.load.formats)}
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


def prepare(path: str, keys: DataKeys, tokenizer=None, max_length: int = 1024,
            prompt_limit: int = 512, progress=None) -> PreparedData:
    """Load and validate rows; with a tokenizer, render and truncate them (`progress(done, total)` per
    pair). Never raises for bad rows."""
    loaded = load_pairs(path, keys)
    prepared = PreparedData(str(path), loaded, errors=list(loaded.errors))
    if tokenizer is not None and loaded.pairs:
        prepared.render = render_pairs(tokenizer, loaded.pairs, max_length, prompt_limit, progress)
        prepared.errors += prepared.render.errors
    return prepared


def prepare_strict(path: str, keys: DataKeys, tokenizer, max_length: int, prompt_limit: int, log=print,
                   progress=None):
    """Tokenized pairs ready for training, or DataError listing every bad row."""
    prepared = prepare(path, keys, tokenizer, max_length, prompt_limit, progress)
    if prepared.errors:
        raise DataError(prepared.errors)
    for w in prepared.render.warnings():
        log(f"warning: {path}: {w}")
    if not prepared.pairs:
        raise DataError([f"{path}: no pairs left after the length limits (max_length={max_length})"])
    return prepared
