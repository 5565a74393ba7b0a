"""Render pairs to token ids with a checked prompt/completion boundary, and truncate them.

With a chat template the boundary rule is, for each pair (prompt messages, chosen, rejected):

1. The prompt is what chat generates from: the template's render of the prompt messages with the
   generation prompt. A template that refuses a system message (Gemma) gets the system text at the
   start of the first user turn instead, here and in chat alike.
2. Each completion is exactly what the full render (prompt + answer) adds after that prompt, so
   every full render must start with it; the completion keeps the template's end-of-turn token.
3. Where a full render does not start with it, the rows are rendered again in ways that cannot
   shift the boundary, in this order:
   - a system message put into the last user turn (Mistral-Nemo renders it there only while that
     turn is last), accepted only if chat's prompt is unchanged by the move;
   - the prompt the template renders when an answer follows (found with two placeholder answers, so
     it never depends on the answers' text, unlike TRL's common prefix of chosen and rejected):
     reasoning templates open a `<think>` block in the generation prompt that history turns never
     show. These rows train on the template's render, and the difference from chat is reported.
   Anything else is a row error; the boundary is never moved silently.
4. A `<think>` block in an answer (render option think="keep", the default) is trained as part of
   the answer: templates that drop reasoning from past turns (DeepSeek-R1) are rendered with the
   block shielded, so what the model learns is what it generates after chat's `<think>` opener.
   think="strip" drops the block from each answer first (as those templates do for history).

Without a chat template (base models) see `_plain_text`: HH transcripts keep their Human:/Assistant:
markers, a single prompt is followed by the answer after a blank line, and EOS ends each answer.

Tokenizers may merge tokens across the boundary (BPE), so the prompt's tokens are not always a prefix
of the full render's tokens; such rows are tokenized as two parts instead (reported once).

Token ids are int32 arrays (ids_array), tokenized a chunk of pairs per tokenizer call (render_pairs).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import Problem
from .pairs import PreferencePair

SEP = "\n\n"  # between messages (and before an answer) when the tokenizer has no chat template
THINK_MODES = ("keep", "strip")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Private-use characters: they stand in for think tags a template would strip, and for the answer when
# locating where the template puts it. Rows that contain them are rendered without these tricks.
_SHIELDS = ((THINK_OPEN, "\U000F0E01"), (THINK_CLOSE, "\U000F0E02"))
_PLACEHOLDERS = ("\U000F0E10", "\U000F0E11")
_OPTIONS_ATTR = "_mlx_dpo_render_options"
_STRFTIME = re.compile(r"""strftime_now\(\s*(['"])(.*?)\1\s*\)""")


@dataclass(frozen=True)
class RenderOptions:
    date: str | None = None  # YYYY-MM-DD that templates' strftime_now() sees; None = today
    think: str = "keep"      # a <think> block in an answer: "keep" (trained) or "strip"
    # Extra template variables (--chat-template-kwargs) as canonical JSON: part of repr(), so of the
    # tokenized-data cache key; "" = none.
    template_kwargs: str = ""

    @property
    def kwargs(self) -> dict:
        return json.loads(self.template_kwargs) if self.template_kwargs else {}


def set_render_options(tokenizer, date: str | None = None, think: str = "keep",
                       template_kwargs: dict | None = None) -> None:
    """Attach the options to the tokenizer, so every render of it (train, eval, validate, chat) uses them."""
    if think not in THINK_MODES:
        raise ValueError(f"think must be one of {', '.join(THINK_MODES)}, got {think!r}")
    if date is not None:
        datetime.date.fromisoformat(date)  # fail here, not inside a template
    extra = json.dumps(template_kwargs, sort_keys=True) if template_kwargs else ""
    setattr(tokenizer, _OPTIONS_ATTR, RenderOptions(date, think, extra))


def render_options(tokenizer) -> RenderOptions:
    return getattr(tokenizer, _OPTIONS_ATTR, None) or RenderOptions()


def uses_date(tokenizer) -> bool:
    """Whether the chat template prints today's date (Llama 3.2, Mistral Small, Granite, gpt-oss ...)."""
    return "strftime_now" in str(getattr(tokenizer, "chat_template", None) or "")


def ids_array(ids) -> np.ndarray:
    """Token ids in the form every stage holds them: a 1-D int32 array (4 bytes a token; a Python list of
    ints costs about 36), so 60k UltraFeedback pairs take ~0.3 GB instead of ~3 GB. Join them with
    np.concatenate and compare them with np.array_equal: `+` and `==` work elementwise on arrays."""
    a = np.asarray(ids, dtype=np.int32)
    return a if a.ndim == 1 else a.reshape(-1)


@dataclass(eq=False)
class TokenizedPair:
    prompt: np.ndarray    # int32 token ids (lists are converted)
    chosen: np.ndarray    # completion tokens only
    rejected: np.ndarray  # completion tokens only
    source: str

    def __post_init__(self):
        self.prompt, self.chosen, self.rejected = (ids_array(x) for x in (self.prompt, self.chosen, self.rejected))

    def __eq__(self, other) -> bool:
        if not isinstance(other, TokenizedPair):
            return NotImplemented
        return self.source == other.source and all(
            np.array_equal(a, b) for a, b in zip((self.prompt, self.chosen, self.rejected),
                                                 (other.prompt, other.chosen, other.rejected)))

    @property
    def length(self) -> int:
        """Tokens of the longer of the two sequences (prompt + completion)."""
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))


# What a note means, said once per file with its count and one example (see RenderResult.warnings).
NOTES = {
    "system_first_user": "the chat template does not accept a system message; its text was put at the start "
                         "of the first user turn (the model's own guidance, e.g. Gemma's), as chat does",
    "system_last_user": "the chat template renders the system message only inside the last user turn while "
                        "that turn is last; trained with it there, exactly as chat renders the prompt",
    "think_kept": "the chat template drops <think> blocks from answers; they were kept and trained as part "
                  "of the answer (render option think='strip' trains the answer alone)",
    "chat_prompt_differs": "chat's generation prompt differs from the prompt the template renders before an "
                           "answer; these rows train on the latter, which the model will not see at chat time",
    "no_end_token": "the completion does not end with an end-of-turn token the model stops at, and the model "
                    "has none (no EOS, no generation-config eos_token_id), so it will not learn to stop",
    "end_token_added": "the chat template writes no end-of-turn token after the answer (GLM-4.6, Apertus, ...); "
                       "the model's stop token was appended to the completion, so the model learns to stop",
}


@dataclass
class RenderResult:
    pairs: list[TokenizedPair] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    repaired: int = 0    # rows whose boundary needed two-part tokenization
    truncated: int = 0   # rows shortened by the length limits
    dropped: list[str] = field(default_factory=list)  # "source: reason" for rows not fed to the loss
    raw_lengths: dict = field(default_factory=lambda: {"prompt": [], "chosen": [], "rejected": []})
    notes: dict = field(default_factory=dict)  # NOTES key -> [rows, first example "source: detail"]

    def note(self, kind: str, example: str) -> None:
        entry = self.notes.setdefault(kind, [0, example])
        entry[0] += 1

    def warnings(self) -> list[str]:
        out = []
        if self.repaired:
            out.append(f"{self.repaired} row(s): prompt tokens were not a prefix of prompt+answer tokens; "
                       "tokenized prompt and answer separately to keep the boundary exact")
        for kind, (count, example) in self.notes.items():
            out.append(f"{count} row(s): {NOTES[kind]} (e.g. {example})")
        if self.dropped:
            out.append(f"{len(self.dropped)} pair(s) dropped by the length limits (e.g. {self.dropped[0]})")
        return out


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _encode(tokenizer, text: str, special: bool) -> np.ndarray:
    return ids_array(tokenizer.encode(text, add_special_tokens=special))


def _batch_encoder(tokenizer):
    """The tokenizer's batch call when it gives exactly what `encode` gives text by text (a transformers
    fast tokenizer whose encode/__call__ are not overridden: both run the same `_encode_plus`), else None.
    One call per chunk of pairs saves the per-call overhead, and the Rust tokenizer spreads it over cores."""
    inner = getattr(tokenizer, "_tokenizer", tokenizer)
    try:
        from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
    except ImportError:  # pragma: no cover - transformers comes with mlx-lm
        return None
    cls = type(inner)
    if not isinstance(inner, PreTrainedTokenizerFast) or cls.encode is not PreTrainedTokenizerBase.encode \
            or cls.__call__ is not PreTrainedTokenizerBase.__call__:
        return None
    if type(tokenizer) is not cls and getattr(type(tokenizer), "encode", None) is not None:
        return None  # a wrapper with its own encode (mlx-lm's TokenizerWrapper has none)
    return inner


def _encode_many(tokenizer, texts: list[str], special: bool) -> list[np.ndarray]:
    batch = _batch_encoder(tokenizer) if len(texts) > 1 else None
    if batch is None:
        return [_encode(tokenizer, t, special) for t in texts]
    ids = batch(texts, add_special_tokens=special, return_attention_mask=False,
                return_token_type_ids=False)["input_ids"]
    return [ids_array(x) for x in ids]


# ---------------------------------------------------------------- the chat template

def _apply(tokenizer, messages: list[dict], generation: bool) -> str:
    options = render_options(tokenizer)
    kwargs = options.kwargs  # --chat-template-kwargs: the template's own variables (enable_thinking, tools, ...)
    date, template = options.date, getattr(tokenizer, "chat_template", None)
    if date and isinstance(template, str) and "strftime_now" in template:
        # A run keeps the date it started with, so a resumed run renders (and its reference cache matches)
        # the same prompts on any later day. transformers passes no callables into templates, so each
        # strftime_now("FORMAT") call becomes its result for that date.
        day = datetime.datetime.combine(datetime.date.fromisoformat(date), datetime.time())
        kwargs["chat_template"] = _STRFTIME.sub(lambda m: json.dumps(day.strftime(m.group(2))), template)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False, **kwargs)


def _fold_system(messages: list[dict], into: str) -> list[dict] | None:
    """The leading system text moved to the start of the first or last user turn (None: nothing to move)."""
    if not messages or messages[0]["role"] != "system":
        return None
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    users = [i for i, m in enumerate(rest) if m["role"] == "user"]
    if not users:
        return None
    i = users[0] if into == "first" else users[-1]
    rest[i]["content"] = system + SEP + rest[i]["content"] if system else rest[i]["content"]
    return rest


def _chat_prompt(tokenizer, messages: list[dict]) -> tuple[list[dict], str, bool]:
    """(the messages as rendered, the generation-prompt render, whether the system text was folded)."""
    try:
        return messages, _apply(tokenizer, messages, True), False
    except Exception as refused:
        folded = _fold_system(messages, "first")
        if folded is None:
            raise
        try:
            return folded, _apply(tokenizer, folded, True), True
        except Exception:
            raise refused from None


def chat_prompt_text(tokenizer, messages: list[dict]) -> str:
    """What chat generates from: the same rule as training's prompt (plain text without a template)."""
    if has_chat_template(tokenizer):
        return _chat_prompt(tokenizer, messages)[1]
    return _plain_text(messages, None, transcript=False)


def render_text(tokenizer, prompt: list[dict], answer: list[dict] | None, transcript: bool = False) -> str:
    """The text the model sees: prompt with generation prompt (answer None), or prompt + answer."""
    if has_chat_template(tokenizer):
        messages, generation, _ = _chat_prompt(tokenizer, prompt)
        return generation if answer is None else _apply(tokenizer, messages + answer, False)
    return _plain_text(prompt, answer, transcript)


def _think_answer(answer: list[dict], think: str) -> list[dict]:
    """think='strip': each message keeps only what follows its last </think> (as reasoning templates do)."""
    if think != "strip":
        return answer
    return [{**m, "content": m["content"].split(THINK_CLOSE)[-1].lstrip("\n")} if THINK_CLOSE in m["content"]
            else m for m in answer]


def _reasoning(content: str) -> str:
    start = content.find(THINK_OPEN)
    return content[start + len(THINK_OPEN): content.rfind(THINK_CLOSE)].strip() if start >= 0 else ""


def _full_render(tokenizer, messages: list[dict], answer: list[dict], generation: str, think: str) -> tuple[str, bool]:
    """The render of prompt + answer; with think='keep', reasoning the template would drop stays in."""
    text = _apply(tokenizer, messages + answer, False)
    if think != "keep" or not any(THINK_CLOSE in m["content"] for m in answer):
        return text, False  # nothing a template could drop (skips the character-by-character prefix scan)
    tail = text[len(os.path.commonprefix([text, generation])):]
    lost = [r for r in (_reasoning(m["content"]) for m in answer if THINK_CLOSE in m["content"]) if r and r not in tail]
    if not lost or any(s in m["content"] for _, s in _SHIELDS for m in answer):
        return text, False
    shielded = [{**m, "content": _swap(m["content"], 0, 1)} for m in answer]
    return _swap(_apply(tokenizer, messages + shielded, False), 1, 0), True


def _swap(text: str, a: int, b: int) -> str:
    for pair in _SHIELDS:
        text = text.replace(pair[a], pair[b])
    return text


def _answer_start(tokenizer, messages: list[dict]) -> str | None:
    """The prompt as the template renders it when an answer follows (independent of the answer's text)."""
    try:
        a, b = (_apply(tokenizer, messages + [{"role": "assistant", "content": p}], False) for p in _PLACEHOLDERS)
    except Exception:
        return None
    return os.path.commonprefix([a, b])


def _snippet(text: str, at: int) -> str:
    return repr(("…" if at > 24 else "") + text[max(0, at - 24): at + 24] + ("…" if len(text) > at + 24 else ""))


def _difference(chat: str, template: str) -> str:
    k = len(os.path.commonprefix([chat, template]))
    if k == len(template):
        return f"chat adds {chat[k:]!r} after it"
    return f"from character {k}: chat renders {_snippet(chat, k)}, the template before an answer {_snippet(template, k)}"


class BoundaryError(Exception):
    pass


def _chat_texts(tokenizer, pair: PreferencePair, answers, found: list) -> tuple[str, list[str]]:
    """(prompt text, full texts) for a templated pair; appends (note kind, detail) to `found`."""
    think = render_options(tokenizer).think
    messages, generation, folded = _chat_prompt(tokenizer, pair.prompt)
    if folded:
        found.append(("system_first_user", "system text moved into the first user turn"))

    def fulls_for(msgs, gen):
        rendered = [_full_render(tokenizer, msgs, a, gen, think) for a in answers]
        return [t for t, _ in rendered], any(kept for _, kept in rendered)

    fulls, kept = fulls_for(messages, generation)
    prompt = generation if all(f.startswith(generation) for f in fulls) else None
    if prompt is None and not folded:
        last = _fold_system(messages, "last")
        if last is not None and _apply(tokenizer, last, True) == generation:
            last_fulls, last_kept = fulls_for(last, generation)
            if all(f.startswith(generation) for f in last_fulls):
                prompt, fulls, kept = generation, last_fulls, last_kept
                found.append(("system_last_user", "system text kept in the last user turn"))
    if prompt is None:
        start = _answer_start(tokenizer, messages)
        bad = next((f for f in fulls if start is None or not f.startswith(start)), None)
        if bad is not None:
            k = len(os.path.commonprefix([generation, bad]))
            raise BoundaryError(
                "the chat template renders the prompt differently when an answer follows (generation prompt "
                f"{_snippet(generation, k)}, with the answer {_snippet(bad, k)}), so the prompt/completion "
                "boundary is undefined; fix the model's chat_template or rewrite this row")
        prompt = start
        found.append(("chat_prompt_differs", _difference(generation, start)))
    if kept:
        found.append(("think_kept", "<think> block kept in the answer"))
    return prompt, fulls


# ---------------------------------------------------------------- no chat template

def _plain_text(prompt: list[dict], answer: list[dict] | None, transcript: bool) -> str:
    """Base-model text. A conversation (an HH transcript, or a prompt with assistant turns) is laid out as
    Anthropic-HH text, `\\n\\nHuman: …\\n\\nAssistant: …`, the prompt ending with `\\n\\nAssistant:`: HH rows
    train on exactly their own text. A single prompt is followed by its answer after a blank line, unless
    either side already has whitespace there (a continuation such as "The weather is" + " sunny")."""
    if transcript or any(m["role"] == "assistant" for m in prompt):
        head = "".join(m["content"] if m["role"] == "system" else
                       SEP + ("Human: " if m["role"] == "user" else "Assistant: ") + m["content"]
                       for m in prompt if m["content"] or m["role"] != "system")
        if answer is None:
            return head + SEP + "Assistant:"
        return head + "".join(SEP + "Assistant: " + m["content"] for m in answer)
    text = SEP.join(m["content"] for m in prompt if m["content"] or m["role"] != "system")
    if answer is None:
        return text
    body = SEP.join(m["content"] for m in answer)
    return text + ("" if text[-1:].isspace() or body[:1].isspace() else SEP) + body


# ---------------------------------------------------------------- tokens

def _end_ids(tokenizer) -> set:
    ids = set(getattr(tokenizer, "eos_token_ids", None) or ())
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return ids - {None}


def _stop_id(tokenizer) -> int | None:
    """The token that ends an answer the template leaves open: EOS where it is a stop token, else the
    lowest of the generation config's stop ids (mlx-lm's eos_token_ids); None if the model has none."""
    ends = _end_ids(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and eos in ends:
        return int(eos)
    return min(ends) if ends else None


def _ends_turn(tokenizer, ids: list[int], ends: set) -> bool:
    """The last token that is not whitespace (ChatML's trailing newline) is an end-of-turn token."""
    i = len(ids)
    while i and ids[i - 1] not in ends and not tokenizer.decode([ids[i - 1]]).strip():
        i -= 1
    return bool(i) and ids[i - 1] in ends


@dataclass
class _Texts:
    """One pair rendered to text, before tokenizing (see tokenize_pair)."""
    prompt: str
    fulls: list[str]  # prompt + chosen, prompt + rejected
    special: bool     # add the tokenizer's special tokens (plain text; templates carry their own BOS text)
    found: list       # (NOTES key, detail) of the rules this row needed


def _pair_texts(tokenizer, pair: PreferencePair) -> _Texts:
    found = []
    templated = has_chat_template(tokenizer)
    answers = [_think_answer(a, render_options(tokenizer).think) for a in (pair.chosen, pair.rejected)]
    if templated:
        prompt_text, fulls = _chat_texts(tokenizer, pair, answers, found)
    else:
        transcript = pair.format == "implicit"
        prompt_text = _plain_text(pair.prompt, None, transcript)
        fulls = [_plain_text(pair.prompt, a, transcript) for a in answers]
    for full_text in fulls:
        assert full_text.startswith(prompt_text)
    return _Texts(prompt_text, fulls, not templated, found)


def _split_ids(tokenizer, pair: PreferencePair, texts: _Texts, prompt_ids: np.ndarray,
               full_ids: list[np.ndarray]) -> tuple[TokenizedPair, bool]:
    """The completions: what each full render's tokens add after the prompt's tokens (exact boundary)."""
    completions, repaired = [], False
    n = len(prompt_ids)
    for full_text, ids in zip(texts.fulls, full_ids):
        if len(ids) >= n and np.array_equal(ids[:n], prompt_ids):
            completion = ids[n:].copy()  # a copy, so the full render's array is freed
        else:
            # BPE merged across the boundary: tokenize the answer on its own instead of shifting it.
            completion = _encode(tokenizer, full_text[len(texts.prompt):], False)
            repaired = True
        completions.append(completion)
    if texts.special and tokenizer.eos_token_id is not None:
        # Plain text has no end-of-turn marker: end each answer with EOS so the model learns to stop.
        eos = np.array([tokenizer.eos_token_id], dtype=np.int32)
        completions = [np.concatenate([c, eos]) for c in completions]
    elif not texts.special:
        ends = _end_ids(tokenizer)
        open_ = [i for i, c in enumerate(completions) if len(c) and not _ends_turn(tokenizer, c.tolist(), ends)]
        if open_:
            tail = tokenizer.decode(completions[open_[0]][-3:].tolist())
            stop = _stop_id(tokenizer)
            if stop is None:
                texts.found.append(("no_end_token", f"ends with {tail!r}"))
            else:
                # Without a stop token at the end, every answer trains "keep going": the adapter would
                # never learn to stop. End it as the model ends a turn at generation time.
                for i in open_:
                    completions[i] = np.concatenate([completions[i], np.array([stop], dtype=np.int32)])
                texts.found.append(("end_token_added", f"ended with {tail!r}, now "
                                                       f"{tokenizer.decode([stop])!r}"))
    return TokenizedPair(prompt_ids, completions[0], completions[1], pair.source), repaired


def tokenize_pair(tokenizer, pair: PreferencePair, notes: list | None = None) -> tuple[TokenizedPair, bool]:
    """Return the tokenized pair and whether the boundary needed two-part tokenization.

    `notes`, if given, receives (NOTES key, detail) for each rule beyond the plain one that this row needed."""
    texts = _pair_texts(tokenizer, pair)
    prompt_ids = _encode(tokenizer, texts.prompt, texts.special)
    full_ids = [_encode(tokenizer, t, texts.special) for t in texts.fulls]
    tp, repaired = _split_ids(tokenizer, pair, texts, prompt_ids, full_ids)
    if notes is not None:
        notes += texts.found
    return tp, repaired


def truncate_pair(tp: TokenizedPair, max_length: int, prompt_limit: int, bos_id=None) -> tuple[TokenizedPair | None, bool, str]:
    """Prompt from the left first (to `prompt_limit`), then completions from the right.

    Returns (pair or None if dropped, whether truncated, reason when dropped).
    """
    if tp.length <= max_length:
        return tp, False, ""
    prompt = tp.prompt
    if len(prompt) > prompt_limit:
        # Keep the end of the prompt (the latest turn), and a leading BOS if there is one.
        if bos_id is not None and len(prompt) and prompt[0] == bos_id and prompt_limit > 1:
            prompt = np.concatenate([prompt[:1], prompt[len(prompt) - prompt_limit + 1:]])
        else:
            prompt = prompt[len(prompt) - prompt_limit:]
    room = max(0, max_length - len(prompt))  # a negative slice bound would keep tokens, not drop them
    chosen, rejected = tp.chosen[:room], tp.rejected[:room]
    if not len(chosen) or not len(rejected):
        return None, True, "completion would be empty"
    if np.array_equal(chosen, rejected):
        return None, True, "chosen and rejected are identical after truncation"
    # Copies, so the cut-off tokens are freed with the untruncated arrays.
    return TokenizedPair(prompt.copy(), chosen.copy(), rejected.copy(), tp.source), True, ""


CHUNK = 256  # pairs tokenized with one batch call: less per-call overhead, and the tokenizer runs in parallel


def _tokenize_chunk(tokenizer, chunk: list[PreferencePair], result: RenderResult) -> list:
    """[(pair, tokenized pair, repaired, notes)] of the chunk's pairs that render; errors go to `result`."""
    rendered = []
    for pair in chunk:
        try:
            rendered.append((pair, _pair_texts(tokenizer, pair)))
        except BoundaryError as e:
            result.errors.append(Problem.at_row(pair.source, "template", str(e)))
        except Exception as e:  # a template that raises (e.g. on a role order it rejects)
            result.errors.append(Problem.at_row(pair.source, "template", f"rendering failed: {e}"))
    out = []
    for special in (True, False):  # plain text adds special tokens, templates do not: one batch call each
        group = [(p, t) for p, t in rendered if t.special == special]
        if not group:
            continue
        try:
            ids = _encode_many(tokenizer, [s for _, t in group for s in (t.prompt, *t.fulls)], special)
        except Exception:
            ids = None  # one text the batch call refuses: tokenize the pairs one by one to name it
        for k, (pair, texts) in enumerate(group):
            try:
                if ids is None:
                    tp, repaired = tokenize_pair(tokenizer, pair)
                else:
                    tp, repaired = _split_ids(tokenizer, pair, texts, ids[3 * k], ids[3 * k + 1: 3 * k + 3])
            except Exception as e:
                result.errors.append(Problem.at_row(pair.source, "template", f"rendering failed: {e}"))
                continue
            out.append((pair, tp, repaired, texts.found))
    order = {id(p): i for i, p in enumerate(chunk)}
    return sorted(out, key=lambda r: order[id(r[0])])


def render_pairs(tokenizer, pairs: list[PreferencePair], max_length: int, prompt_limit: int,
                 progress=None, release=None) -> RenderResult:
    """Tokenize and truncate every pair, CHUNK at a time; `progress(done, total)` after each chunk.

    `release(start, stop)`, if given, is called once pairs[start:stop] are tokenized, so the caller can
    drop their messages while the rest are rendered (the texts and the ids are never all held at once)."""
    result = RenderResult()
    bos = getattr(tokenizer, "bos_token_id", None)
    for start in range(0, len(pairs), CHUNK):
        if progress is not None and start:
            progress(start, len(pairs))
        chunk = pairs[start: start + CHUNK]
        for pair, tp, repaired, found in _tokenize_chunk(tokenizer, chunk, result):
            for kind, detail in found:
                result.note(kind, f"{pair.source}: {detail}")
            result.repaired += repaired
            for key, ids in (("prompt", tp.prompt), ("chosen", tp.chosen), ("rejected", tp.rejected)):
                result.raw_lengths[key].append(len(ids))
            if not len(tp.chosen) or not len(tp.rejected):
                result.dropped.append(f"{pair.source}: completion has no tokens")
                continue
            kept, truncated, reason = truncate_pair(tp, max_length, prompt_limit, bos)
            result.truncated += truncated
            if kept is None:
                result.dropped.append(f"{pair.source}: {reason}")
            else:
                result.pairs.append(kept)
        del chunk
        if release is not None:
            release(start, min(start + CHUNK, len(pairs)))
    if progress is not None and pairs:
        progress(len(pairs), len(pairs))
    return result


def length_stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    a = np.asarray(values)
    return {"min": int(a.min()), "mean": float(a.mean()), "p50": int(np.percentile(a, 50)),
            "p95": int(np.percentile(a, 95)), "max": int(a.max())}
