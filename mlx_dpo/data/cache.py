"""A cache of tokenized pairs, so a second run on the same data starts at once (like the reference cache).

Tokenizing is the slow part of reading a large dataset (the chat template and the tokenizer run three
times per pair: about 6.5 minutes for 60k UltraFeedback rows on two busy CPU cores, 19 s from the cache;
BENCHMARKS.md, "Data at scale"). The result of `template.render_pairs` is stored under
CACHE/data/<key>.npz (all ids as one flat int32 array with offsets), keyed by everything it depends on:

    the bytes of every source file, the split/subset/revision, the key flags and --min-score-margin,
    the tokenizer (its serialized vocabulary and merges, the chat template, special tokens),
    max_length and the prompt limit, and the code of template.py itself

so any change misses. Small inputs (fewer than MIN_PAIRS pairs) are not cached. A cache that cannot be
read or written is ignored (the pairs are tokenized as before); it is never an error.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..errors import Problem
from ..fileio import cache_root
from .template import RenderResult, TokenizedPair

VERSION = 3  # 2: one flat int32 ids array with offsets; 3: errors as Problem records
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


PARTS = ("prompt", "chosen", "rejected")


def _write_npy(zf: zipfile.ZipFile, name: str, arrays, n: int, dtype) -> None:
    """One .npz member holding `arrays` back to back (n elements in all), written array by array so the
    dataset's ids are never copied into one big array first."""
    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                 "shape": (n,)})
        for a in arrays:
            f.write(np.ascontiguousarray(a, dtype=dtype).tobytes())


def save(path: Path, r: RenderResult) -> None:
    """The pairs' ids as one flat int32 array, pair by pair (prompt, chosen, rejected), with 3n+1 offsets."""
    from ..fileio import atomic_write

    lengths = np.fromiter((len(getattr(p, part)) for p in r.pairs for part in PARTS), dtype=np.int64,
                          count=3 * len(r.pairs))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # Every other field of RenderResult (errors, counts, notes, ...), so a new field is kept as well.
    meta = {f.name: getattr(r, f.name) for f in fields(r) if f.name not in ("pairs", "raw_lengths")}
    meta["sources"] = [p.source for p in r.pairs]
    meta["errors"] = [e.as_dict() for e in r.errors]
    small = {"offsets": offsets, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    small |= {f"raw_{part}": np.asarray(r.raw_lengths[part], dtype=np.int32) for part in PARTS}

    def write(tmp: Path):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            ids = (getattr(p, part) for p in r.pairs for part in PARTS)
            _write_npy(zf, "ids", ids, int(offsets[-1]), np.int32)
            for name, a in small.items():
                _write_npy(zf, name, [a], len(a), a.dtype)

    atomic_write(path, write)


def load(path: Path, expect: int | None = None, before_ids=None) -> RenderResult | None:
    """The cached result, or None (missing, torn, from another version, or not `expect` rows).

    `before_ids()` runs once the small parts have checked out, before the ids are read (the caller drops
    the rows' messages there). The pairs are views into one flat array: no per-pair lists are built."""
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            raw = {k: z[f"raw_{k}"].tolist() for k in PARTS}
            if expect is not None and len(raw["prompt"]) + len(meta["errors"]) != expect:
                return None
            if before_ids is not None:
                before_ids()
            flat, offsets = z["ids"], z["offsets"].tolist()
    except Exception:
        return None
    sources = meta.pop("sources")
    try:
        meta["errors"] = [Problem.from_dict(e) for e in meta["errors"]]
    except (TypeError, KeyError):  # not this version's records
        return None
    pairs = [TokenizedPair(flat[offsets[3 * i]:offsets[3 * i + 1]], flat[offsets[3 * i + 1]:offsets[3 * i + 2]],
                           flat[offsets[3 * i + 2]:offsets[3 * i + 3]], s) for i, s in enumerate(sources)]
    known = {f.name for f in fields(RenderResult)}
    return RenderResult(pairs=pairs, raw_lengths=raw, **{k: v for k, v in meta.items() if k in known})


def entry(source, options: dict, tokenizer, max_length: int, prompt_limit: int,
          cache_dir: str | None = None) -> Path | None:
    """The cache file of this input, whether or not it exists (None: not cacheable, e.g. a tokenizer
    that cannot be fingerprinted)."""
    if source is None:
        return None
    try:
        return cache_root(cache_dir) / "data" / f"{cache_key(source, options, tokenizer, max_length, prompt_limit)}.npz"
    except Exception:
        return None


def cached_render(render, path: Path | None, tokenizer, pairs, max_length: int, prompt_limit: int, progress=None,
                  log=None, release=None, reload=None, messages: bool = True) -> RenderResult:
    """`render(tokenizer, pairs, max_length, prompt_limit, progress, release=release)` through the cache
    file `path` (see entry(); None: no cache).

    `messages=False`: `pairs` are PairRecords (read so because the file existed), so a miss renders
    `reload()`'s pairs. `release(start, stop)` drops the messages of pairs[start:stop] once they are not
    needed; on a hit that happens before the ids are read, so both are never held at once (and should the
    ids then be unreadable, `reload()` gives the pairs again; without it the release waits)."""
    def fresh(rows):
        return render(tokenizer, rows, max_length, prompt_limit, progress, release=release)

    if path is None or len(pairs) < MIN_PAIRS:
        return fresh(pairs if messages else reload())
    released = []

    def before_ids():
        if messages and release is not None and reload is not None:
            release(0, len(pairs))
            released.append(True)

    hit = load(path, len(pairs), before_ids) if path.exists() else None
    if hit is not None:
        if messages and release is not None and not released:
            release(0, len(pairs))
        if log:
            log(f"data: tokenized pairs from the cache ({path})")
        if progress is not None:
            progress(len(pairs), len(pairs))
        return hit
    result = fresh(reload() if released or not messages else pairs)
    try:
        save(path, result)
    except OSError:
        pass  # a full or read-only cache only costs the next run the tokenizing time
    return result
