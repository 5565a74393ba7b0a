"""The tokenizer of a GGUF file, written from the model's tokenizer.json so that llama.cpp tokenizes as we do.

Two kinds of vocabulary, as llama.cpp knows them (`tokenizer.ggml.model`):

- "gpt2": byte-level BPE (Llama 3, Qwen2): the tokens, the merges, and the pre-tokenizer by llama.cpp's name
  for its split regex (`tokenizer.ggml.pre`).
- "llama": SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma 2/3, Phi-3). llama.cpp's SPM
  tokenizer keeps merging the adjacent pair whose joined piece has the highest *score*, where Hugging Face's
  BPE merges the pair of lowest *rank*. A tokenizer.json converted from SentencePiece lists its merges in
  score order, so a piece's score is minus the rank of the first merge that makes it. This reproduces the
  tokenizer we trained with (tokenizer.json) rather than tokenizer.model, and the check in llama.cpp
  confirms it. The other knob is the space prefix ("▁" before a text): see `_space_prefix`.

Everything is decided before any work (`vocab_plan`), so an unsupported tokenizer is refused up front.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

# Split regexes of byte-level BPE pre-tokenizers -> llama.cpp's `tokenizer.ggml.pre` names.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {_LLAMA3_SPLIT: "llama-bpe", _QWEN2_SPLIT: "qwen2"}

# Tokens llama.cpp itself treats as end-of-generation by their text (besides eos/eot/eom ids; llama-vocab.cpp).
LLAMA_CPP_EOG_TEXTS = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
                       "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"}

SPACE = "\u2581"  # SentencePiece's visible space
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass
class VocabPlan:
    model: str                          # tokenizer.ggml.model: "gpt2" or "llama"
    pre: str                            # tokenizer.ggml.pre
    space_prefix: bool | None = None    # "llama" only: tokenizer.ggml.add_space_prefix


def read_tokenizer(folder: Path) -> dict:
    path = folder / "tokenizer.json"
    if not path.exists():
        raise UsageError(f"--format gguf: {folder} has no tokenizer.json (a fast tokenizer file is needed "
                         "for the GGUF vocabulary)")
    return json.loads(path.read_text(encoding="utf-8"))


def _parts(step: dict | None) -> list[dict]:
    if not step:
        return []
    return step.get("pretokenizers") or step.get("normalizers") or [step]


def _pre_tokenizer(tok: dict) -> str | None:
    """llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json, or None when unknown."""
    parts = _parts(tok.get("pre_tokenizer"))
    splits = [p.get("pattern", {}).get("Regex") for p in parts if p.get("type") == "Split"]
    if not splits:
        if any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
            return "gpt-2"
        return None
    return PRE_TOKENIZERS.get(splits[0]) if len(splits) == 1 else None


def _space_prefix(tok: dict, templated: bool) -> bool | None:
    """Whether llama.cpp must put "▁" before each text, or None when its SPM tokenizer cannot match ours.

    llama.cpp prefixes the start of a text and every text after a special token (tokenizer.ggml.add_space_prefix).
    Hugging Face's legacy `Prepend("▁")` normalizer and Metaspace's "always" scheme do the same (each text
    between special tokens is normalized alone); "never" and a bare `Replace(" ", "▁")` (Gemma) prefix nothing.
    Metaspace's "first" prefixes only a text at the very start: a chat render begins with a special token
    (bos), where "first" prefixes nothing, and a plain prompt begins with text after bos, where it prefixes
    once -- so the prefix follows whether the model has a chat template."""
    norms = _parts(tok.get("normalizer"))
    pres = _parts(tok.get("pre_tokenizer"))
    kinds = [n.get("type") for n in norms]
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    if any(n.get("type") == "Replace" and n != replace for n in norms):
        return None
    if any(k not in ("Prepend", "Replace") for k in kinds):
        return None
    prepend = any(n.get("type") == "Prepend" and n.get("prepend") == SPACE for n in norms)
    if "Prepend" in kinds and (not prepend or kinds != ["Prepend", "Replace"]):
        return None
    for p in pres:
        if p.get("type") == "Metaspace":
            if p.get("replacement", SPACE) != SPACE or p.get("split", False) or norms:
                return None
            scheme = p.get("prepend_scheme") or ("always" if p.get("add_prefix_space", True) else "never")
            return {"always": True, "never": False, "first": not templated}.get(scheme)
        # a split on " " after spaces became "▁" never matches (Gemma's tokenizer.json carries one)
        if not (p.get("type") == "Split" and p.get("pattern") == {"String": " "} and replace in norms):
            return None
    if not norms:
        return None
    return prepend


def vocab_plan(folder: Path, templated: bool) -> VocabPlan:
    """Which GGUF vocabulary the tokenizer.json in `folder` becomes; refuses what llama.cpp cannot reproduce."""
    tok = read_tokenizer(folder)
    model = tok.get("model", {})
    if model.get("type") != "BPE":
        raise UsageError(f"--format gguf: tokenizer model {model.get('type')!r} is not supported (BPE only)")
    if model.get("byte_fallback"):
        prefix = _space_prefix(tok, templated)
        if prefix is None:
            raise UsageError("--format gguf: this SentencePiece-style tokenizer's normalizer / pre-tokenizer "
                             "is not one llama.cpp reproduces (known: Llama 2 / Mistral's Prepend + Replace or "
                             "Metaspace, Gemma's Replace)")
        return VocabPlan("llama", "default", prefix)
    pre = _pre_tokenizer(tok)
    if pre is None:
        raise UsageError("--format gguf: the tokenizer's pre-tokenizer is not one llama.cpp is known to "
                         f"reproduce (known: {', '.join(sorted(set(PRE_TOKENIZERS.values()) | {'gpt-2'}))})")
    return VocabPlan("gpt2", pre)


def _bpe_vocab(tok: dict, n_vocab: int):
    """(tokens, token types) in id order, padded to the embedding's rows, as convert_hf_to_gguf does."""
    import gguf

    by_id: dict[int, tuple[str, int]] = {i: (t, gguf.TokenType.NORMAL) for t, i in tok["model"]["vocab"].items()}
    for added in tok.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    _check_size(by_id, n_vocab)
    tokens, types = [], []
    for i in range(n_vocab):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(kind)
    return tokens, types


def _spm_vocab(tok: dict, n_vocab: int):
    """(tokens, scores, token types) of a SentencePiece-style tokenizer.json, scores from the merge ranks."""
    import gguf

    model = tok["model"]
    rank: dict[str, int] = {}
    for r, merge in enumerate(model.get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, r)
    by_id: dict[int, tuple[str, float, int]] = {}
    for piece, i in model["vocab"].items():
        kind = gguf.TokenType.NORMAL
        if piece == model.get("unk_token"):
            kind = gguf.TokenType.UNKNOWN
        elif _BYTE_PIECE.fullmatch(piece):
            kind = gguf.TokenType.BYTE
        # single characters are never a merge's result; their score is never compared
        by_id[i] = (piece, -float(rank.get(piece, 0)), kind)
    for added in tok.get("added_tokens", []):
        text, i = added["content"], added["id"]
        if added.get("special"):
            kind = gguf.TokenType.UNKNOWN if text == model.get("unk_token") else gguf.TokenType.CONTROL
        else:
            # llama.cpp matches user-defined tokens in the raw text, before spaces become "▁"
            kind, text = gguf.TokenType.USER_DEFINED, text.replace(SPACE, " ")
        by_id[i] = (text, -1000.0, kind)
    _check_size(by_id, n_vocab)
    tokens, scores, types = [], [], []
    for i in range(n_vocab):
        text, score, kind = by_id.get(i, (f"[PAD{i}]", -1000.0, gguf.TokenType.UNUSED))
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    return tokens, scores, types


def _check_size(by_id: dict, n_vocab: int) -> None:
    if max(by_id) >= n_vocab:
        raise UsageError(f"tokenizer has id {max(by_id)} but the embedding has only {n_vocab} rows")


def _adds_bos(tok: dict) -> bool | None:
    """Whether encoding a text adds a leading special token (the post-processor's template), None if unknown."""
    post = tok.get("post_processor") or {}
    if post.get("type") != "TemplateProcessing":
        return None
    single = post.get("single") or [{}]
    return "SpecialToken" in single[0]


def add_vocab(w, plan: VocabPlan, folder: Path, n_vocab: int, stop_ids: list[int]) -> list[str]:
    """Write the vocabulary, special tokens, chat template and stop tokens; returns the token texts."""
    import gguf

    tok = read_tokenizer(folder)
    w.add_tokenizer_model(plan.model)
    w.add_tokenizer_pre(plan.pre)
    if plan.model == "llama":
        tokens, scores, types = _spm_vocab(tok, n_vocab)
        w.add_token_scores(scores)
        w.add_add_space_prefix(plan.space_prefix)
    else:
        tokens, types = _bpe_vocab(tok, n_vocab)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=plan.model == "gpt2", n_vocab=n_vocab)
    if (bos := _adds_bos(tok)) is not None:
        # gguf reads this from a template of two or more items only; llama.cpp's SPM default is to add bos
        special.add_special_token.setdefault("bos", bos)
    special.add_to_gguf(w, quiet=True)
    eos = special.special_token_ids.get("eos")
    extra = [i for i in stop_ids if i != eos]
    if eos is None and stop_ids:
        w.add_eos_token_id(stop_ids[0])
        extra = stop_ids[1:]
    # llama.cpp stops on eos, eot, eom and on the end-of-turn tokens it knows by their text; a further stop
    # token of ours that it would not know becomes the eot token (the check in llama.cpp confirms all).
    unknown = [i for i in extra if i < len(tokens) and tokens[i] not in LLAMA_CPP_EOG_TEXTS]
    if unknown:
        w.add_eot_token_id(unknown[0])
    return tokens
