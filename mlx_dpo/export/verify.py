"""Inputs for export verification: a few prompt + answer sequences from the run's own training data."""

from __future__ import annotations

from pathlib import Path

from ..data.pairs import load_pairs
from ..data.template import tokenize_pair

FALLBACK_PROMPTS = ("Hello! Can you help me plan a short trip?", "What is 17 times 3?",
                    "Explain in one sentence why the sky is blue.")
MAX_TOKENS = 128


def _first_pairs(data_path: str | None, n: int) -> list:
    """Up to `n` valid pairs of the run's data file; none if it is gone or unreadable (the caller falls back)."""
    if not (data_path and Path(data_path).is_file()):
        return []
    try:
        return load_pairs(data_path).pairs[:n]
    except Exception:
        return []


def verification_inputs(tokenizer, data_path: str | None, n: int = 3) -> list[list[int]]:
    """Token ids of up to `n` prompt + chosen sequences (or built-in prompts if the data is gone)."""
    seqs: list[list[int]] = []
    for pair in _first_pairs(data_path, n):
        try:
            tp, _ = tokenize_pair(tokenizer, pair)
        except Exception:
            continue
        seqs.append((tp.prompt.tolist() + tp.chosen.tolist())[-MAX_TOKENS:])  # ids are int32 arrays
    if not seqs:
        from ..model.generate import prompt_tokens
        seqs = [prompt_tokens(tokenizer, [{"role": "user", "content": p}])[-MAX_TOKENS:] for p in FALLBACK_PROMPTS]
    return seqs


def verification_conversations(tokenizer, data_path: str | None, n: int = 3) -> list[tuple[list[dict], str]]:
    """Up to `n` (prompt messages, rendered prompt + chosen text) from the training data, rendered exactly
    as training renders them (chat template, or plain text without one), for tokenizer comparisons."""
    from ..data.template import render_text

    convs: list[tuple[list[dict], str]] = []
    for pair in _first_pairs(data_path, n):
        try:
            convs.append((pair.prompt, render_text(tokenizer, pair.prompt, pair.chosen)))
        except Exception:
            continue
    if not convs:
        for p in FALLBACK_PROMPTS:
            messages = [{"role": "user", "content": p}]
            convs.append((messages, render_text(tokenizer, messages, None)))
    return convs
