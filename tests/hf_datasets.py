"""Rows in the exact column layouts of real preference datasets (a few hand-written rows each), and a fake
Hugging Face cache holding a dataset snapshot in the layout huggingface_hub writes:

    HF_HUB_CACHE/datasets--ORG--NAME/
        refs/main                          the commit hash
        blobs/<sha256>                     file contents
        snapshots/<commit>/README.md       -> ../../blobs/<sha256>   (symlinks, as huggingface_hub makes them)
        snapshots/<commit>/data/train_prefs-00000-of-00001.parquet -> ...
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path


def U(t):
    return {"content": t, "role": "user"}


def A(t):
    return {"content": t, "role": "assistant"}


# HuggingFaceH4/ultrafeedback_binarized (train_prefs / test_prefs): prompt, prompt_id, chosen, rejected, messages,
# score_chosen, score_rejected; chosen/rejected are whole conversations starting with the user turn.
def ultrafeedback_rows(n: int = 3, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        q = f"How can I develop a habit of drawing daily? ({i})"
        good = f"Start small: one five-minute sketch every morning, same time, same place. Tip {i}."
        bad = "As an AI language model, I cannot draw."
        rows.append({"prompt": q, "prompt_id": hashlib.sha256(q.encode()).hexdigest(),
                     "chosen": [U(q), A(good)], "rejected": [U(q), A(bad)], "messages": [U(q), A(good)],
                     "score_chosen": 8.5 - (i % 3), "score_rejected": 6.0 if i % 2 else 7.5})
    return rows


# argilla/distilabel-capybara-dpo-7k-binarized: multi-turn; chosen/rejected share every turn but the last.
def capybara_rows() -> list[dict]:
    turns = [U("What is the capital of France?"), A("Paris."), U("And its population?")]
    return [{
        "source": "Airoboros",
        "conversation": [{"input": "What is the capital of France?", "output": "Paris."},
                         {"input": "And its population?", "output": "About 2.1 million in the city proper."}],
        "original_response": "About 2.1 million in the city proper.",
        "generation_prompt": ["<|system|>\n</s>\n<|user|>\nWhat is the capital of France?</s>\n"],
        "raw_generation_responses": ["About 2.1 million."],
        "new_generations": ["About 2.1 million.", "Many people."],
        "prompt": "What is the capital of France?",
        "chosen": turns + [A("About 2.1 million in the city proper, 12 million in the metro area.")],
        "rejected": turns + [A("Many people live there.")],
        "rating_chosen": 5, "rating_rejected": 2,
        "chosen_model": "gpt-4-1106-preview", "rejected_model": "argilla/notus-7b-v1",
    }, {
        "source": "GOAT",
        "conversation": [{"input": "2+2?", "output": "4"}],
        "original_response": "4", "generation_prompt": ["2+2?"], "raw_generation_responses": ["4"],
        "new_generations": ["4", "22"], "prompt": "2+2?",
        "chosen": [U("2+2?"), A("4")], "rejected": [U("2+2?"), A("22")],
        "rating_chosen": 5, "rating_rejected": 1, "chosen_model": "gpt-4", "rejected_model": "notus",
    }]


# Intel/orca_dpo_pairs (orca_rlhf.jsonl): system, question, chosen, rejected (strings; system may be "").
ORCA_ROWS = [
    {"system": "", "question": "You will be given a definition of a task first. Translate 'hello' to French.",
     "chosen": "Bonjour.", "rejected": "Hello in French is hola."},
    {"system": "You are an AI assistant. You will be given a task. You must generate a detailed answer.",
     "question": "What is the boiling point of water at sea level?",
     "chosen": "100 degrees Celsius (212 degrees Fahrenheit).", "rejected": "It depends on the pot."},
]

# Anthropic/hh-rlhf (<subset>/train.jsonl.gz): chosen, rejected full transcripts.
HH_ROWS = [
    {"chosen": "\n\nHuman: What are some cuss words in english?\n\nAssistant: I'd rather not list those.",
     "rejected": "\n\nHuman: What are some cuss words in english?\n\nAssistant: Here is a list: ..."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Fine, thanks.",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Go away."},
]

# trl-lib/ultrafeedback_binarized: conversational, implicit prompt, with scores.
TRL_IMPLICIT_ROWS = [
    {"chosen": [U("Name a primary color."), A("Red.")], "rejected": [U("Name a primary color."), A("Green.")],
     "score_chosen": 9.0, "score_rejected": 4.0},
    {"chosen": [U("Say hi."), A("Hi!")], "rejected": [U("Say hi."), A("No.")], "score_chosen": 7.0,
     "score_rejected": 2.0},
]

INSTRUCTION_ROWS = [
    {"instruction": "Summarise the text.", "input": "The cat sat on the mat all day.",
     "chosen": "A cat spent the day on a mat.", "rejected": "Dogs are great."},
    {"instruction": "Name a prime number.", "input": "", "chosen": "7", "rejected": "8"},
]

UF_README = """---
license: mit
configs:
- config_name: default
  data_files:
  - split: train_prefs
    path: data/train_prefs-*
  - split: test_prefs
    path: data/test_prefs-*
dataset_info:
  features:
  - name: prompt
    dtype: string
---
# Dataset Card for UltraFeedback Binarized
"""


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def ultrafeedback_folder(root: Path, train: int = 4, test: int = 2) -> Path:
    """The repository as it is on the hub: README.md with configs, data/<split>-00000-of-00001.parquet."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(UF_README)
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    write_parquet(root / "data/train_prefs-00000-of-00001.parquet", ultrafeedback_rows(train))
    write_parquet(root / "data/test_prefs-00000-of-00001.parquet", ultrafeedback_rows(test, offset=100))
    return root


def add_to_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40, ref: str | None = "main") -> Path:
    """Copy `folder` into the cache as snapshot `commit` of dataset `repo_id` (blobs + relative symlinks)."""
    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap
