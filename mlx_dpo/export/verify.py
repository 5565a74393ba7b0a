"""Inputs for export verification: a few prompt + answer sequences from the run's own training data."""

from __future__ import annotations

from pathlib import Path

from ..data.pairs import load_pairs
from ..data.template import tokenize_pair

FALLBACK_PROMPTS = ("Hello! Can you help me plan a short trip?", "What is 17 times 3?",
                    "Explain in one sentence why the sky is blue.")
MAX_TOKENS = 128


def verification_inputs(tokenizer, data_path: str | None, n: int = 3) -> list[list[int]]:
    """Token ids of up to `n` prompt + chosen sequences (or built-in prompts if the data is gone)."""
    seqs: list[list[int]] = []
    if data_path and Path(data_path).is_file():
        try:
            pairs = load_pairs(data_path).pairs[:n]
        except Exception:
            pairs = []
        for pair in pairs:
            try:
                tp, _ = tokenize_pair(tokenizer, pair)
            except Exception:
                continue
            seqs.append((tp.prompt + tp.chosen)[-MAX_TOKENS:])
    if not seqs:
        from ..model.generate import prompt_tokens
        seqs = [prompt_tokens(tokenizer, [{"role": "user", "content": p}])[-MAX_TOKENS:] for p in FALLBACK_PROMPTS]
    return seqs
