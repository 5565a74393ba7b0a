"""Unpaired preference rows (TRL's format) and KTO examples.

A row is one completion with a label: `{"prompt": str | [messages], "completion": str | [assistant
messages], "label": true | false}` — a thumbs up or down (see preferences.py). Paired rows can train KTO
too: each pair gives one desirable (chosen) and one undesirable (rejected) example.

For KTO every example also needs a mismatched completion (another example's, for the KL reference
point, see train/kto.py). Examples travel as TokenizedPair(prompt_i, completion_i, completion_j), so the
batch layouts, the log-prob code and the reference cache serve KTO unchanged; the labels ride beside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pairs import DataKeys, PreferencePair, _completion, _messages, _RowError

LABEL_KEY, COMPLETION_KEY = "label", "completion"


@dataclass
class UnpairedExample:
    prompt: list[dict]
    completion: list[dict]  # assistant message(s)
    label: bool             # True: desirable
    source: str             # "FILE:LINE"


def normalize_unpaired(row: dict, keys: DataKeys, source: str) -> UnpairedExample:
    """Validate one unpaired row; _RowError(field, message) if it is bad."""
    label = row[LABEL_KEY]
    if not isinstance(label, bool):
        raise _RowError(LABEL_KEY, f"expected true (desirable) or false (undesirable), got {label!r}")
    p = row.get(keys.prompt)
    if isinstance(p, str):
        if not p.strip():
            raise _RowError(keys.prompt, "empty prompt")
        prompt = [{"role": "user", "content": p}]
    elif isinstance(p, list):
        prompt = _messages(p, keys.prompt)
        if prompt[-1]["role"] == "assistant":
            raise _RowError(f"{keys.prompt}[{len(prompt) - 1}].role",
                            "the prompt ends with an assistant turn; the answer belongs in completion")
    else:
        raise _RowError(keys.prompt, "missing (expected a string or a list of messages)")
    system = row.get(keys.system)
    if isinstance(system, str) and system.strip() and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}] + prompt
    return UnpairedExample(prompt, _completion(row[COMPLETION_KEY], COMPLETION_KEY), label, source)


def as_pair(e: UnpairedExample) -> PreferencePair:
    """An example as the loader's pair, with the completion on both sides and the label beside."""
    return PreferencePair(e.prompt, e.completion, e.completion, e.source, "unpaired", e.label)


def kto_examples(pairs, loaded_pairs, seed: int, max_length: int):
    """KTO examples of tokenized pairs: (TokenizedPair(prompt_i, completion_i, completion_j), labels).

    `pairs` are the renderer's TokenizedPairs, `loaded_pairs` the loader's PreferencePairs (for the labels
    of unpaired rows, by source). A pair gives two examples (chosen desirable, rejected undesirable); an
    unpaired row one. The KL completion j is another example's (`mismatch`), cut to fit max_length."""
    from .template import TokenizedPair

    label_of = {p.source: p.label for p in loaded_pairs}
    examples = []
    for tp in pairs:
        label = label_of.get(tp.source)
        if label is None:  # a pair
            examples += [(tp.prompt, tp.chosen, 1.0, tp.source), (tp.prompt, tp.rejected, 0.0, tp.source)]
        else:
            examples.append((tp.prompt, tp.chosen, 1.0 if label else 0.0, tp.source))
    other = mismatch(len(examples), seed)
    out = []
    for (prompt, completion, _, source), j in zip(examples, other):
        kl = examples[j][1][: max(1, max_length - len(prompt))]
        out.append(TokenizedPair(prompt, completion, kl, source))
    return out, np.array([e[2] for e in examples], dtype=np.float32)


def mismatch(n: int, seed: int) -> np.ndarray:
    """For each example, the index of another example whose completion serves as its KL completion.

    A fixed seeded derangement (a shuffled cycle), so the KL completions and their cached reference
    log-probs are the same every run; with one example there is nothing to mismatch."""
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    order = np.random.default_rng([seed, 17]).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)  # each example points at the next one of the cycle
    return out
