"""A cache of tokenized pairs, so a second run on the same data starts at once (like the reference cache).

Tokenizing is the slow part of reading a large dataset (the chat template and the tokenizer run three
times per pair: about 7 minutes for 60k UltraFeedback rows on two CPU cores). The result of
`template.render_pairs` is stored under CACHE/data/<key>.npz, keyed by everything it depends on:

    the bytes of every source file, the split/subset/revision, the key flags and --min-score-margin,
    the tokenizer (its serialized vocabulary and merges, the chat template, special tokens),
    max_length and the prompt limit, and the code of template.py itself

so any change misses. Small inputs (fewer than MIN_PAIRS pairs) are not cached. A cache that cannot be
read or written is ignored (the pairs are tokenized as before); it is never an error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..fileio import cache_root
from .template import RenderResult, TokenizedPair

VERSION = 1
MIN_PAIRS = 512



def _file_digest(path: Path, h) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    inner = getattr(tokenizer, "_tokenizer", tokenizer)
    backend = getattr(inner, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        vocab = inner.get_vocab() if hasattr(inner, "get_vocab") else {}
        h.update(json.dumps(sorted(vocab.items())).encode())
    for attr in ("chat_template", "bos_token_id", "eos_token_id", "pad_token_id"):
        h.update(repr(getattr(tokenizer, attr, None)).encode())
    h.update(repr(sorted(getattr(tokenizer, "eos_token_ids", None) or [])).encode())
    return h.hexdigest()


def cache_key(source, options: dict, tokenizer, max_length: int, prompt_limit: int) -> str:
    from . import template

    h = hashlib.sha256(f"v{VERSION}".encode())
    for f in source.files:
        h.update(f.label.encode() + b"\0")
        _file_digest(f.path, h)
    h.update(json.dumps({**options, "split": source.spec.split, "subset": source.spec.subset,
                         "revision": source.revision or source.spec.revision, "max_length": max_length,
                         "prompt_limit": prompt_limit}, sort_keys=True, default=str).encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    _file_digest(Path(template.__file__), h)
    options_of = getattr(template, "render_options", None)  # date / think options of the render
    if options_of is not None:
        opts = options_of(tokenizer)
        h.update(repr(opts).encode())
        uses_date = getattr(template, "uses_date", lambda t: False)
        if getattr(opts, "date", None) is None and uses_date(tokenizer):
            import datetime
            h.update(datetime.date.today().isoformat().encode())  # the template prints today's date
    return h.hexdigest()[:32]


def _pack(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.fromiter((t for x in lists for t in x), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def save(path: Path, r: RenderResult) -> None:
    from ..fileio import atomic_write

    arrays = {}
    for part in ("prompt", "chosen", "rejected"):
        arrays[f"{part}_ids"], arrays[f"{part}_off"] = _pack([getattr(p, part) for p in r.pairs])
        arrays[f"raw_{part}"] = np.asarray(r.raw_lengths[part], dtype=np.int32)
    # Every other field of RenderResult (errors, counts, notes, ...), so a new field is kept as well.
    meta = {f.name: getattr(r, f.name) for f in fields(r) if f.name not in ("pairs", "raw_lengths")}
    meta["sources"] = [p.source for p in r.pairs]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp: Path):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp.write_bytes(buf.getvalue())

    atomic_write(path, write)


def load(path: Path) -> RenderResult | None:
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            parts = {k: _unpack(z[f"{k}_ids"], z[f"{k}_off"]) for k in ("prompt", "chosen", "rejected")}
            raw = {k: z[f"raw_{k}"].tolist() for k in ("prompt", "chosen", "rejected")}
    except Exception:  # missing, torn or from another version: tokenize again
        return None
    pairs = [TokenizedPair(p, c, j, s) for p, c, j, s in zip(parts["prompt"], parts["chosen"], parts["rejected"],
                                                            meta.pop("sources"))]
    known = {f.name for f in fields(RenderResult)}
    return RenderResult(pairs=pairs, raw_lengths=raw, **{k: v for k, v in meta.items() if k in known})


def cached_render(render, source, options: dict, tokenizer, pairs, max_length: int, prompt_limit: int,
                  progress=None, cache_dir: str | None = None, log=None) -> RenderResult:
    """`render(tokenizer, pairs, max_length, prompt_limit, progress)` through the cache."""
    if len(pairs) < MIN_PAIRS or source is None:
        return render(tokenizer, pairs, max_length, prompt_limit, progress)
    try:
        path = cache_root(cache_dir) / "data" / f"{cache_key(source, options, tokenizer, max_length, prompt_limit)}.npz"
    except Exception:  # a tokenizer we cannot fingerprint: no cache
        return render(tokenizer, pairs, max_length, prompt_limit, progress)
    hit = load(path) if path.exists() else None
    if hit is not None and len(hit.raw_lengths["prompt"]) + len(hit.errors) == len(pairs):
        if log:
            log(f"data: tokenized pairs from the cache ({path})")
        if progress is not None:
            progress(len(pairs), len(pairs))
        return hit
    result = render(tokenizer, pairs, max_length, prompt_limit, progress)
    try:
        save(path, result)
    except OSError:
        pass  # a full or read-only cache only costs the next run the tokenizing time
    return result
