"""Reference log-probs: computed once before training with the starting model, cached on disk.

A fresh LoRA adapter starts with B = 0, so the model about to be trained *is* the reference
(base, or base + init adapter). Scoring the data with it before the first update gives exact
reference log-probs without a second copy of the weights and without a reference forward per step.

The cache key is a fingerprint of everything that changes the numbers: the weight files' contents,
on-the-fly quantization, the init adapter, the tokenizer and chat template files, the rendered token
ids of every row (which also captures the length limits), and the MLX version.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import mlx.core as mx
import numpy as np

from .distributed import SINGLE, World
from ..fileio import atomic_write, atomic_write_json
from ..data.template import TokenizedPair

REF_KEYS = ("chosen", "rejected", "ntok_chosen", "ntok_rejected")  # the arrays of a scored file
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt")


def _file_digest(path: Path, memo_dir: Path | None) -> str:
    """Content hash of a (possibly multi-GB) file, memoised by (path, size, mtime) so reruns are instant."""
    st = path.stat()
    memo_key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = memo_dir / f"{memo_key}.txt" if memo_dir else None
    if memo is not None and memo.exists():
        return memo.read_text().strip()
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    digest = h.hexdigest()
    if memo is not None:
        atomic_write(memo, lambda p: p.write_text(digest))
    return digest


def model_fingerprint(model_path: Path, quantize: int | None, init_adapter: str | None,
                      cache_dir: Path, compute: str = "") -> str:
    memo = cache_dir / "file-digests"
    h = hashlib.sha256()
    h.update((model_path / "config.json").read_bytes())
    for f in sorted(model_path.glob("model*.safetensors")):
        h.update(f"{f.name}:{_file_digest(f, memo)}".encode())
    for name in TOKENIZER_FILES:
        f = model_path / name
        if f.exists():
            h.update(f"{name}:{_file_digest(f, None)}".encode())
    h.update(f"quantize={quantize}".encode())
    if init_adapter:
        for name in ("adapter_config.json", "adapters.safetensors"):
            h.update(f"{name}:{_file_digest(Path(init_adapter) / name, None)}".encode())
    h.update(f"mlx={mx.__version__}|{compute}".encode())  # device and matmul path: last-bit differences
    return h.hexdigest()


def data_fingerprint(pairs: list[TokenizedPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        for ids in (p.prompt, p.chosen, p.rejected):
            h.update(np.asarray(ids, dtype=np.int32).tobytes())
            h.update(b"|")
    return h.hexdigest()


def score_pairs(model, pairs: list[TokenizedPair], batch_size: int, pad_multiple: int,
                pad_id: int = 0, progress=None, world: World = SINGLE, layout=None) -> dict[str, np.ndarray]:
    """Forward-only scoring of every pair: summed log-probs and token counts of chosen and rejected.

    With several ranks each scores its share of the batches (the same batches as one rank would, so
    the numbers are identical) and a sum in which the others contribute zeros gathers them.
    """
    from .layout import UNSHARED

    layout = layout or UNSHARED
    n = len(pairs)
    out = {k: np.zeros(n, dtype=np.float32) for k in REF_KEYS}
    every = layout.groups(pairs, batch_size)
    rounds = -(-len(every) // world.size)
    batches = world.shard(every)
    for r in range(rounds):
        if r > 0:  # heartbeat: the watchdog then bounds a wait by one batch, not by a whole shard
            world.any(False, f"scoring batch round {r + 1}/{rounds} of the other ranks")
        if r >= len(batches):
            continue  # a round in which this rank has no batch left
        for batch in layout.parts(pairs, batches[r], batch_size, pad_multiple, pad_id):
            logps, ntok = layout.logps(model, batch.to_mx())
            mx.eval(logps, ntok)  # sync point: one batch at a time keeps memory flat
            logps, ntok = np.array(logps), np.array(ntok)
            # Real pairs come first; rows [0, B) are chosen, [B, 2B) rejected (B = the batch's pair slots).
            B, k = len(batch.pair_mask), batch.n_pairs
            idx = batch.indices[:k]
            out["chosen"][idx] = logps[:k]
            out["rejected"][idx] = logps[B: B + k]
            out["ntok_chosen"][idx] = ntok[:k]
            out["ntok_rejected"][idx] = ntok[B: B + k]
        if progress:
            progress(r + 1, len(batches))
    if world.distributed:
        with world.waiting("gathering log-probs scored by the other ranks"):
            gathered = world.all_sum({k: mx.array(v) for k, v in out.items()})
            mx.eval(gathered)
        out = {k: np.array(v) for k, v in gathered.items()}
    return out


def _load_cached(path: Path, n_pairs: int) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        loaded = {k: np.array(v) for k, v in mx.load(str(path)).items()}
    except Exception:
        return None  # unreadable cache entry: recompute and overwrite it
    if len(loaded) == len(REF_KEYS) and all(len(v) == n_pairs for v in loaded.values()):
        return loaded
    return None


def reference_logps(model, pairs: list[TokenizedPair], *, model_key: str, cache_dir: Path,
                    batch_size: int, pad_multiple: int, pad_id: int = 0, log=print,
                    label: str = "train", world: World = SINGLE, layout=None,
                    progress=None) -> dict[str, np.ndarray]:
    """Load the reference log-probs from the cache, or compute and store them.

    With several ranks, rank 0's cache decides: a hit is broadcast to the others; a miss is scored
    by all ranks together and written by rank 0 alone.
    """
    key = hashlib.sha256(f"{model_key}|{data_fingerprint(pairs)}".encode()).hexdigest()[:40]
    path = cache_dir / "reference" / f"{key}.safetensors"
    cached = _load_cached(path, len(pairs)) if world.is_main else None
    if world.any(cached is not None, "checking the reference cache"):
        if world.distributed:
            zeros = {k: np.zeros(len(pairs), np.float32) for k in REF_KEYS}
            with world.waiting("receiving the cached reference from rank 0"):
                sent = world.broadcast({k: mx.array(v) for k, v in (cached or zeros).items()})
                mx.eval(sent)
            cached = {k: np.array(v) for k, v in sent.items()}
        log(f"reference log-probs ({label}, {len(pairs)} pairs): reused from cache {path.name}")
        return cached
    was_training = model.training
    model.eval()  # dropout off: the reference is the deterministic starting model
    t0 = time.perf_counter()
    ref = score_pairs(model, pairs, batch_size, pad_multiple, pad_id, progress=progress, world=world,
                      layout=layout)
    if was_training:
        model.train()
    if not world.is_main:
        return ref
    atomic_write(path, lambda p: mx.save_safetensors(str(p), {k: mx.array(v) for k, v in ref.items()},
                                                     metadata={"format": "mlx-dpo-reference"}))
    atomic_write_json(path.with_suffix(".json"), {"pairs": len(pairs), "created": time.time(),
                                                  "label": label, "pid": os.getpid()})
    log(f"reference log-probs ({label}, {len(pairs)} pairs): computed in {time.perf_counter() - t0:.1f}s, "
        f"cached as {path.name}")
    return ref

