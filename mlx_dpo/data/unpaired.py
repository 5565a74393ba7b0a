"""Unpaired preference rows (TRL's format) and KTO examples.

A row is one completion with a label: `{"prompt": str | [messages], "completion": str | [assistant
messages], "label": true | false}` — a thumbs up or down (see preferences.py); pairs.py reads and checks
such rows like pairs. Paired rows can train KTO too: each pair gives one desirable (chosen) and one
undesirable (rejected) example.

For KTO every example also needs a mismatched completion (another example's, for the KL reference
point, see train/kto.py). Examples travel as TokenizedPair(prompt_i, completion_i, completion_j), so the
batch layouts, the log-prob code and the reference cache serve KTO unchanged; the labels ride beside.
"""

from __future__ import annotations

import numpy as np



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
