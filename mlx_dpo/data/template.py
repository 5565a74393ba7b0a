"""Render pairs to token ids with a checked prompt/completion boundary, and truncate them.

The prompt is the chat-template render of the prompt messages with the generation prompt; the
completion is whatever the render of prompt + answer adds after it. Tokenizers may merge tokens
across that boundary (BPE), so the prompt's tokens are not always a prefix of the full render's
tokens. We never slice at a shifted boundary: such rows are re-tokenized as two parts (reported once);
rows whose *text* boundary disagrees fail with a row error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pairs import PreferencePair

SEP = "\n\n"  # joins messages when the tokenizer has no chat template


@dataclass
class TokenizedPair:
    prompt: list[int]
    chosen: list[int]    # completion tokens only
    rejected: list[int]  # completion tokens only
    source: str

    @property
    def length(self) -> int:
        """Tokens of the longer of the two sequences (prompt + completion)."""
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


@dataclass
class RenderResult:
    pairs: list[TokenizedPair] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    repaired: int = 0    # rows whose boundary needed two-part tokenization
    truncated: int = 0   # rows shortened by the length limits
    dropped: list[str] = field(default_factory=list)  # "source: reason" for rows not fed to the loss
    raw_lengths: dict = field(default_factory=lambda: {"prompt": [], "chosen": [], "rejected": []})

    def warnings(self) -> list[str]:
        out = []
        if self.repaired:
            out.append(f"{self.repaired} row(s): prompt tokens were not a prefix of prompt+answer tokens; "
                       "tokenized prompt and answer separately to keep the boundary exact")
        if self.dropped:
            out.append(f"{len(self.dropped)} pair(s) dropped by the length limits (e.g. {self.dropped[0]})")
        return out


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _encode(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=special))


def render_text(tokenizer, prompt: list[dict], answer: list[dict] | None) -> str:
    """The text the model sees: prompt with generation prompt, or prompt + answer."""
    if has_chat_template(tokenizer):
        if answer is None:
            return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    text = SEP.join(m["content"] for m in prompt)
    if answer is not None:
        text += SEP.join(m["content"] for m in answer)
    return text


class BoundaryError(Exception):
    pass


def tokenize_pair(tokenizer, pair: PreferencePair) -> tuple[TokenizedPair, bool]:
    """Return the tokenized pair and whether the boundary needed two-part tokenization."""
    templated = has_chat_template(tokenizer)
    # Templates carry their own BOS text; plain text gets the tokenizer's special tokens.
    special = not templated
    prompt_text = render_text(tokenizer, pair.prompt, None)
    prompt_ids = _encode(tokenizer, prompt_text, special)
    completions, repaired = [], False
    for answer in (pair.chosen, pair.rejected):
        full_text = render_text(tokenizer, pair.prompt, answer)
        if not full_text.startswith(prompt_text):
            raise BoundaryError("the chat template renders the prompt differently when an answer follows, "
                                "so the prompt/completion boundary is undefined")
        full_ids = _encode(tokenizer, full_text, special)
        if full_ids[: len(prompt_ids)] == prompt_ids:
            completion = full_ids[len(prompt_ids):]
        else:
            # BPE merged across the boundary: tokenize the answer on its own instead of shifting it.
            completion = _encode(tokenizer, full_text[len(prompt_text):], False)
            repaired = True
        completions.append(completion)
    if not templated and tokenizer.eos_token_id is not None:
        # Plain text has no end-of-turn marker: end each answer with EOS so the model learns to stop.
        completions = [c + [tokenizer.eos_token_id] for c in completions]
    return TokenizedPair(prompt_ids, completions[0], completions[1], pair.source), repaired


def truncate_pair(tp: TokenizedPair, max_length: int, prompt_limit: int, bos_id=None) -> tuple[TokenizedPair | None, bool, str]:
    """Prompt from the left first (to `prompt_limit`), then completions from the right.

    Returns (pair or None if dropped, whether truncated, reason when dropped).
    """
    if tp.length <= max_length:
        return tp, False, ""
    prompt = tp.prompt
    if len(prompt) > prompt_limit:
        # Keep the end of the prompt (the latest turn), and a leading BOS if there is one.
        if bos_id is not None and prompt and prompt[0] == bos_id and prompt_limit > 1:
            prompt = [bos_id] + prompt[len(prompt) - prompt_limit + 1:]
        else:
            prompt = prompt[len(prompt) - prompt_limit:]
    room = max(0, max_length - len(prompt))  # a negative slice bound would keep tokens, not drop them
    chosen, rejected = tp.chosen[:room], tp.rejected[:room]
    if not chosen or not rejected:
        return None, True, "completion would be empty"
    if chosen == rejected:
        return None, True, "chosen and rejected are identical after truncation"
    return TokenizedPair(prompt, chosen, rejected, tp.source), True, ""


def render_pairs(tokenizer, pairs: list[PreferencePair], max_length: int, prompt_limit: int,
                 progress=None) -> RenderResult:
    """Tokenize and truncate every pair; `progress(done, total)` is called after each one."""
    result = RenderResult()
    bos = getattr(tokenizer, "bos_token_id", None)
    for i, pair in enumerate(pairs):
        if progress is not None and i:
            progress(i, len(pairs))
        try:
            tp, repaired = tokenize_pair(tokenizer, pair)
        except BoundaryError as e:
            result.errors.append(f"{pair.source}: template: {e}")
            continue
        except Exception as e:  # a template that raises (e.g. on a role order it rejects)
            result.errors.append(f"{pair.source}: template: rendering failed: {e}")
            continue
        result.repaired += repaired
        for key, ids in (("prompt", tp.prompt), ("chosen", tp.chosen), ("rejected", tp.rejected)):
            result.raw_lengths[key].append(len(ids))
        if not tp.chosen or not tp.rejected:
            result.dropped.append(f"{pair.source}: completion has no tokens")
            continue
        kept, truncated, reason = truncate_pair(tp, max_length, prompt_limit, bos)
        result.truncated += truncated
        if kept is None:
            result.dropped.append(f"{pair.source}: {reason}")
        else:
            result.pairs.append(kept)
    if progress is not None and pairs:
        progress(len(pairs), len(pairs))
    return result


def length_stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    a = np.asarray(values)
    return {"min": int(a.min()), "mean": float(a.mean()), "p50": int(np.percentile(a, 50)),
            "p95": int(np.percentile(a, 95)), "max": int(a.max())}
