"""Seeded, offline benchmark workload: HF-format Qwen2 models (random weights) and synthetic pairs.

Everything here is a pure function of its arguments (and the seed), so two runs of the benchmark
train on byte-identical models and data. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib

import numpy as np

# Model shapes: Qwen2 layout (GQA, q/k/v biases, untied head), scaled down so a 2-core CPU can
# train them (every dimension divisible by 128, the group size of mlx-lm-lora's --load-in-4bits): 4-bit matmul on MLX-CPU runs at ~2 GFLOP/s (no BLAS path). "large" has >= 50M parameters,
# most of them in the (untied) embedding and LM head, whose compute only the head pays.
MODELS = {
    "small": dict(arch="qwen2", hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                  intermediate_size=384, vocab_size=4096),
    "large": dict(arch="qwen2", hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=2,
                  intermediate_size=1024, vocab_size=40960),
    # Qwen2.5-0.5B's shapes (hidden 896, 14 heads, 2 KV heads, MLP 4864, tied 151,936-token vocabulary)
    # with 2 of its 24 blocks: the head is what a real vocabulary costs. The tokenizer trains on a smaller
    # corpus and learns 43,343 tokens (a full 151,936-token BPE takes too long here); the head still
    # computes all 151,936 logits, which is the cost that matters.
    "realvocab": dict(arch="qwen2", hidden_size=896, num_layers=2, num_heads=14, num_kv_heads=2,
                      intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
                      tokenizer_vocab=8192),
    # A Llama-2/Mistral-sized vocabulary (32,000, untied head) on a 2-block, 512-wide Llama with GQA 4:1: small
    # enough that mlx-lm-lora (full-vocabulary logits over every position, on the quantized_matmul kernel)
    # finishes the realistic workload here. The blocks and the embedding are 4-bit; the LM head stays float32
    # (`float_head`): MLX-CPU's 4-bit kernel runs at ~2 GFLOP/s, and a 4-bit 32,000 x 512 head over every
    # position of mlx-lm-lora's 4 forwards per step would take hours on this box.
    "vocab32k": dict(arch="llama", hidden_size=512, num_layers=2, num_heads=8, num_kv_heads=2,
                     intermediate_size=1408, vocab_size=32000, tokenizer_vocab=8192, float_head=True),
}

_CONS = list("bcdfghjklmnprstvwz") + ["ch", "sh", "th", "qu"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]


def _lexicon(rng, n_words):
    """Pseudo-words (1-4 syllables) so BPE can learn as many merges as the vocab asks for."""
    syl = [c + v for c in _CONS for v in _VOWELS]
    words = set()
    while len(words) < n_words:
        k = rng.integers(1, 5)
        words.add("".join(syl[j] for j in rng.integers(0, len(syl), k)))
    return sorted(words)


def _sentence_stream(rng, words, n_words):
    out = []
    for i in range(n_words):
        w = words[rng.integers(0, len(words))]
        if i == 0 or out[-1].endswith("."):
            w = w.capitalize()
        if rng.random() < 0.08:
            w += "."
        elif rng.random() < 0.05:
            w += ","
        out.append(w)
    return " ".join(out)


def tokenizer_corpus(vocab_size, seed=0):
    """A corpus big enough that a byte-level BPE reaches ``vocab_size`` tokens (checked by the caller)."""
    rng = np.random.default_rng([seed, 1])
    words = _lexicon(rng, max(4000, vocab_size * 2))
    # Each line repeats words so that frequent pairs exist at every merge level.
    lines = [_sentence_stream(rng, words, 200) for _ in range(max(200, vocab_size // 8))]
    return lines + [" ".join(words[i:i + 100]) for i in range(0, len(words), 100)]


def build_model(root: pathlib.Path, size: str, quantize_bits, seed=0) -> pathlib.Path:
    """Build (once; reused when its stamp matches) the HF folder for ``size`` in float or 4-bit form."""
    import sys

    # The test suite's offline model builder (tests/tiny_models.py), not part of the product.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from tiny_models import build_tiny_model

    spec = dict(MODELS[size], quantize_bits=quantize_bits, seed=seed)
    stamp = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = root / f"{size}-{'q4' if quantize_bits else 'f32'}"
    if (path / ".stamp").exists() and (path / ".stamp").read_text() == stamp:
        return path
    s = dict(spec)
    arch = s.pop("arch")
    corpus = tokenizer_corpus(s.pop("tokenizer_vocab", s["vocab_size"]), seed)
    float_head = s.pop("float_head", False)
    if float_head and quantize_bits:
        _build_float_head(path, arch, corpus, s)
    else:
        build_tiny_model(path, arch, corpus=corpus, **s)
    (path / ".stamp").write_text(stamp)
    return path


def _build_float_head(path: pathlib.Path, arch: str, corpus, s: dict):
    """A 4-bit checkpoint (mlx-lm's quantize_model) whose lm_head is left in float32 (per-layer config)."""
    import contextlib
    import io
    import shutil
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from mlx_lm.utils import load, quantize_model, save_config, save_model
    from tiny_models import build_tiny_model

    bits = s.pop("quantize_bits")
    tmp = path.with_name(path.name + "-float")
    build_tiny_model(tmp, arch, corpus=corpus, **s)
    model, _tok, config = load(str(tmp), return_config=True)
    with contextlib.redirect_stdout(io.StringIO()):
        model, qconfig = quantize_model(model, config, 64, bits,
                                        quant_predicate=lambda p, m: not p.endswith("lm_head"))
    path.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        if f.name not in ("model.safetensors", "config.json"):
            shutil.copy(f, path / f.name)
    save_model(path, model)
    save_config(qconfig, path / "config.json")


def model_stats(path: pathlib.Path) -> dict:
    """Parameter counts from config.json (float-equivalent), and the tokenizer's real vocab."""
    from tokenizers import Tokenizer

    cfg = json.loads((path / "config.json").read_text())
    h, L, V, I = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * I + (h + 2 * kv) + 2 * h  # q,o; k,v; mlp; biases; norms
    emb = V * h
    head = 0 if cfg.get("tie_word_embeddings") else V * h
    return {"params": L * per_layer + emb + head + h, "params_blocks": L * per_layer, "params_embedding": emb,
            "params_head": V * h, "layers": L, "hidden": h, "vocab": V,
            "tokenizer_vocab": Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab_size()}


def _clipped_lognormal(rng, mean, lo, hi, n, sigma=0.7):
    mu = math.log(mean) - sigma ** 2 / 2
    return np.clip(np.round(rng.lognormal(mu, sigma, n)), lo, hi).astype(int)


def make_pairs(tokenizer_path: pathlib.Path, n_pairs: int, seed: int, prompt_mean=150, completion_mean=200,
               lo=32, hi=512):
    """Explicit-prompt string pairs with token lengths drawn from clipped log-normals in [lo, hi].

    prompt_mean=150 and completion_mean=200 (before clipping) give prompt ≈ 40% of each prompt+completion sequence.
    Lengths are measured with the model's own tokenizer (text is cut at the token boundary), and
    chosen answers draw from one half of the lexicon, rejected ones from the other, so the preference
    is learnable and held-out accuracy means something.
    """
    rng = np.random.default_rng([seed, 2])
    P = _clipped_lognormal(rng, prompt_mean, lo, hi, n_pairs)
    C = _clipped_lognormal(rng, completion_mean, lo, hi, n_pairs)
    R = _clipped_lognormal(rng, completion_mean, lo, hi, n_pairs)
    return _pairs_of_lengths(tokenizer_path, rng, P, C, R)


def _pairs_of_lengths(tokenizer_path: pathlib.Path, rng, P, C, R) -> list[dict]:
    """Pairs whose prompt / chosen / rejected texts are P[i] / C[i] / R[i] tokens long (cut at a token
    boundary by the model's own tokenizer); chosen and rejected draw from the two halves of the lexicon."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path / "tokenizer.json"))
    words = _lexicon(np.random.default_rng([0, 1]), 4000)
    half = len(words) // 2
    pools = {"prompt": words, "chosen": words[:half], "rejected": words[half:]}

    def text_of(pool, n_tok):
        s = _sentence_stream(rng, pools[pool], n_tok)  # >= 1 token per word: long enough
        enc = tok.encode(s)
        return s[: enc.offsets[min(n_tok, len(enc.offsets)) - 1][1]]

    return [{"prompt": text_of("prompt", p), "chosen": text_of("chosen", c), "rejected": text_of("rejected", r)}
            for p, c, r in zip(P, C, R)]


def write_jsonl(rows, path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def length_summary(model_path: pathlib.Path, data_path: pathlib.Path, max_length: int) -> dict:
    """Token lengths of the rendered pairs as mlx-dpo sees them (chat template included)."""
    from mlx_dpo.data.pairs import DataKeys
    from mlx_dpo.model.load import load_tokenizer_only
    from mlx_dpo.data.prepare import prepare_strict

    tok = load_tokenizer_only(str(model_path))
    pairs = prepare_strict(str(data_path), DataKeys(), tok, max_length, max_length // 2, lambda *_: None).pairs
    p = np.array([len(x.prompt) for x in pairs])
    c = np.array([len(x.chosen) for x in pairs])
    r = np.array([len(x.rejected) for x in pairs])
    tokens = int((2 * p + c + r).sum())  # the two sequences of every pair, prompt counted twice
    return {"pairs": len(pairs), "prompt_mean": float(p.mean()), "prompt_min": int(p.min()), "prompt_max": int(p.max()),
            "completion_mean": float(np.concatenate([c, r]).mean()),
            "completion_min": int(min(c.min(), r.min())), "completion_max": int(max(c.max(), r.max())),
            "prompt_share": float((2 * p).sum() / tokens), "tokens": tokens, "tokens_per_pair": tokens / len(pairs)}


def make_longtail_pairs(tokenizer_path: pathlib.Path, n_pairs: int, seed: int, lo=16, hi=1024, median=48,
                        sigma=1.0):
    """Pairs with UltraFeedback-like lengths: prompts and answers log-normal around `median` tokens,
    clipped to [lo, hi] — most short, a long tail up to `hi` (sigma 1.0: ~5% above 4.9x the median)."""
    mean = median * math.exp(sigma ** 2 / 2)
    rng = np.random.default_rng([seed, 3])
    P, C, R = (_clipped_lognormal(rng, mean, lo, hi, n_pairs, sigma) for _ in range(3))
    return _pairs_of_lengths(tokenizer_path, rng, P, C, R)
