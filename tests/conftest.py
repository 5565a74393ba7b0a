"""Shared fixtures: tiny models built offline, synthetic preference data, an isolated cache."""

from __future__ import annotations

import json
import random

import pytest

from tiny_models import build_tiny_model

TOPICS = ["the sea", "a cat", "bread", "rain", "the moon", "music", "a river", "trains", "coffee", "snow",
          "a garden", "the wind", "books", "a city", "the sun", "apples", "a bridge", "stars", "tea", "clouds"]
VERBS = ["describe", "explain", "tell me about", "write about", "talk about"]


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def S(text):
    return {"role": "system", "content": text}


def synthetic_pairs(n: int, seed: int) -> list[dict]:
    """A learnable preference: polite, on-topic answers beat curt refusals."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic, verb = rng.choice(TOPICS), rng.choice(VERBS)
        rows.append({
            "prompt": f"Please {verb} {topic}.",
            "chosen": f"Sure! Here is a short note about {topic}: it is lovely.",
            "rejected": rng.choice(["No.", "Go away.", "I will not do that.", "Ask someone else."]),
        })
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_DPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "llama"))


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "qwen2", arch="qwen2", tie_word_embeddings=True))


@pytest.fixture(scope="session")
def tiny_model_4bit(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "llama4", quantize_bits=4))


@pytest.fixture
def pairs_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(16, seed=1))


@pytest.fixture
def valid_file(tmp_path):
    return write_jsonl(tmp_path / "valid.jsonl", synthetic_pairs(12, seed=2))
