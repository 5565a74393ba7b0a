"""Data-path scale check: validate + tokenize N UltraFeedback-shaped rows (time and peak memory).

    python benchmarks/data_scale.py --rows 60000 --out /tmp/uf-scale            # writes the data, then measures
    python benchmarks/data_scale.py --rows 60000 --out /tmp/uf-scale --format parquet

Rows have the exact columns of HuggingFaceH4/ultrafeedback_binarized (prompt, prompt_id, chosen, rejected,
messages, score_chosen, score_rejected) and its sizes (about 6.5 kB of JSON a row: a ~600-character prompt
repeated in four places, ~1400- and ~1200-character answers). Each phase runs in a fresh process so its
peak RSS is its own: `structure` (read + schema + validate, what `mlx-dpo validate FILE` does) and
`tokenize` (the same plus the chat-template render and truncation with the bundled demo model's
tokenizer, what `validate --model` and the start of `train` do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from or "
         "had by hot word but what some we can out other were all there when up use your how said an each she "
         "which do their time if will way about many then them write would like so these her long make thing "
         "see him two has look more day could go come did number sound no most people my over know water than "
         "call first who may down side been now find any new work part take get place made live where after "
         "back little only round man year came show every good me give our under name very through just form "
         "sentence great think say help low line differ turn cause much mean before move right boy old too same "
         "tell does set three want air well also play small end put home read hand port large spell add even "
         "land here must big high such follow act why ask men change went light kind off need house picture try "
         "us again animal point mother world near build self earth father head stand own page should country").split()


def _text(rng: random.Random, mean_words: int) -> str:
    n = max(3, int(rng.lognormvariate(0, 0.5) * mean_words))
    words = [rng.choice(WORDS) for _ in range(n)]
    for i in range(0, n, rng.randint(8, 20)):
        words[i] = words[i].capitalize()
    return " ".join(words) + "."


def make_rows(n: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        q = _text(rng, 90)
        good, bad = _text(rng, 210), _text(rng, 180)
        chosen = [{"content": q, "role": "user"}, {"content": good, "role": "assistant"}]
        yield {"prompt": q, "prompt_id": hashlib.sha256(f"{i}{q}".encode()).hexdigest(), "chosen": chosen,
               "rejected": [{"content": q, "role": "user"}, {"content": bad, "role": "assistant"}],
               "messages": chosen, "score_chosen": float(rng.randint(6, 10)), "score_rejected": float(rng.randint(1, 6))}


def write_data(out: Path, n: int, fmt: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ultrafeedback-{n}.{fmt}"
    if path.exists():
        return path
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in make_rows(n):
                f.write(json.dumps(r) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(list(make_rows(n))), path)
    return path


def _rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def phase(path: str, tokenize: bool, model: str, max_length: int) -> dict:
    """One measurement in this process (call it in a fresh one).

    `rss_before_mb` is the process before the data (Python, numpy, the tokenizer), so `peak_rss_mb` minus
    it is what the data path needed at its peak, and `rss_after_mb` minus it what stays held for training
    (`ids_mb` of it the token ids)."""
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.data.prepare import prepare

    t0 = time.perf_counter()
    tok = None
    if tokenize:
        from mlx_dpo.model.load import load_tokenizer_only
        tok = load_tokenizer_only(model)
    t1 = time.perf_counter()
    before = _rss_mb()
    prepared = prepare(path, DataKeys(), tok, max_length, max_length // 2)
    t2 = time.perf_counter()
    rep = prepared.report()
    ids = sum(getattr(getattr(p, k), "nbytes", 0) for p in prepared.pairs for k in ("prompt", "chosen", "rejected"))
    return {"phase": "tokenize" if tokenize else "structure", "rows": rep["rows"], "valid_pairs": rep["valid_pairs"],
            "errors": rep["errors"], "trainable_pairs": rep.get("trainable_pairs"),
            "seconds": round(t2 - t1, 2), "tokenizer_load_seconds": round(t1 - t0, 2),
            "rows_per_second": round(rep["rows"] / max(t2 - t1, 1e-9)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux: KiB
            "rss_before_mb": round(before), "rss_after_mb": round(_rss_mb()), "ids_mb": round(ids / 2**20),
            "tokens_p50_total": rep.get("tokens", {}).get("total", {}).get("p50"),
            "load_average": round(os.getloadavg()[0], 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--out", default="/tmp/mlx-dpo-data-scale")
    ap.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    ap.add_argument("--model", default=str(REPO / "sample_data" / "demo-model"))
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--cache", help="tokenized-pairs cache folder (default: a fresh one under --out, so the first "
                                    "tokenize run is cold and the second warm)")
    ap.add_argument("--phase", choices=("structure", "tokenize"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.phase:
        print(json.dumps(phase(a.data, a.phase == "tokenize", a.model, a.max_length)))
        return 0
    t = time.perf_counter()
    path = write_data(Path(a.out), a.rows, a.format)
    print(f"data: {path} ({path.stat().st_size / 1e6:.0f} MB, written in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    import shutil

    cache = Path(a.cache or Path(a.out) / f"cache-{a.format}")
    if not a.cache:
        shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "MLX_DPO_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    for name, label in (("structure", "structure"), ("tokenize", "tokenize (cold cache)"),
                        ("tokenize", "tokenize (warm cache)")):
        r = subprocess.run([sys.executable, __file__, "--phase", name, "--data", str(path), "--model", a.model,
                            "--max-length", str(a.max_length)], capture_output=True, text=True, cwd=REPO, env=env)
        if r.returncode:
            print(r.stderr, file=sys.stderr)
            return r.returncode
        print(json.dumps({**json.loads(r.stdout.strip().splitlines()[-1]), "phase": label}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
