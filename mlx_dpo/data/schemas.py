"""Recognise the column layout of a pairs file and map it to prompt / chosen / rejected (/ system).

Recognised without flags (the mapping used is printed as one line):

    columns                                              mapping
    prompt, chosen, rejected (strings or messages)       as they are (explicit / conversational)
    prompt (str) + chosen/rejected full conversations    the conversations, split before the final answer;
      UltraFeedback (HuggingFaceH4/ultrafeedback_binarized: prompt_id, messages, score_*)
      Capybara-DPO (argilla/distilabel-capybara-dpo-7k-binarized: rating_*, *_model, conversation)
    chosen, rejected conversations (no prompt)           implicit prompt: the shared turns (trl-lib, Capybara)
    chosen, rejected "\\n\\nHuman: ..." transcripts        Anthropic/hh-rlhf
    system, question, chosen, rejected                   Intel/orca_dpo_pairs: prompt = question
    instruction, input, chosen, rejected                 prompt = instruction + "\\n\\n" + input
    chosen_response / rejected_response                  aliases of chosen / rejected
    conversations (from/value turns), chosen, rejected   ShareGPT (LLaMA-Factory, Axolotl): the turns are the
      prompt; chosen/rejected a from/value object or list; roles human/user, gpt/assistant, system
    prompt, response_1, response_2, preference_strength  HelpSteer2 pairwise (nvidia/HelpSteer2 preference):
      negative strength = response_1 preferred, positive = response_2; 0 is a tie, skipped and counted

Anything else is an unknown schema: one line lists the columns found and the flags that would map them.
Key flags (--prompt-key ...) always win over recognition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace



@dataclass(frozen=True)
class DataKeys:
    """Column names of the prompt, the answers and the system message (the --*-key flags)."""
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    system: str = "system"
    scores: tuple[str, str] | None = None  # (chosen score, rejected score) columns (--score-keys); None: recognised

    @property
    def mapped(self) -> bool:
        """A column of the pair is named by a flag (the score columns alone keep the layout's recognition)."""
        return replace(self, scores=None) != DataKeys()


CHOSEN_NAMES = ("chosen", "chosen_response", "response_chosen")
REJECTED_NAMES = ("rejected", "rejected_response", "response_rejected")
_SCORE_NAMES = (("score_chosen", "score_rejected"), ("rating_chosen", "rating_rejected"),
                ("chosen_rating", "rejected_rating"), ("chosen_score", "rejected_score"),
                ("chosen_avg_rating", "rejected_avg_rating"))
# Each also spelled with hyphens, as argilla's exports name them (chosen-rating, rejected-rating, ...).
SCORE_PAIRS = _SCORE_NAMES + tuple((c.replace("_", "-"), r.replace("_", "-")) for c, r in _SCORE_NAMES)
FULL_CONVERSATIONS = ("ultrafeedback", "capybara", "full-conversations")
# Column-name hints for an unknown schema's suggestion.
_GUESS = {
    "prompt": ("prompt", "question", "instruction", "query", "input", "context", "user", "request"),
    "chosen": ("chosen", "good", "preferred", "accepted", "winner", "win", "positive", "better", "response_a"),
    "rejected": ("rejected", "bad", "dispreferred", "rejection", "loser", "lose", "negative", "worse", "response_b"),
    "system": ("system", "sys", "system_prompt"),
}


@dataclass(frozen=True)
class Schema:
    name: str                         # "native", "flags", "ultrafeedback", "capybara", "orca", "hh", ...
    title: str                        # for the mapping line
    keys: DataKeys
    instruction_input: tuple[str, str] | None = None  # (instruction column, input column): prompt built from both
    scores: tuple[str, str] | None = None             # (chosen score, rejected score) columns
    ignored: tuple[str, ...] = ()
    pairwise: tuple[str, str, str] | None = None      # (answer 1, answer 2, strength): the sign picks chosen

    @property
    def sharegpt(self) -> bool:
        """Messages are ShareGPT's {"from", "value"} turns (see pairs._map_row)."""
        return self.name == "sharegpt"

    @property
    def repeated_prompt(self) -> bool:
        """chosen/rejected are whole conversations; the prompt column repeats their user turn."""
        return self.name in FULL_CONVERSATIONS

    @property
    def named(self) -> bool:
        """Worth a mapping line (the plain prompt/chosen/rejected layout is not)."""
        return self.name != "native"

    def columns(self) -> list[str]:
        """Columns a reader needs (the others are not read from Parquet)."""
        k = self.keys
        cols = [k.prompt, k.chosen, k.rejected, k.system]
        if self.instruction_input:
            cols += list(self.instruction_input)
        if self.scores:
            cols += list(self.scores)
        if self.pairwise:
            cols += list(self.pairwise)
        return list(dict.fromkeys(cols))

    def describe(self) -> str:
        k = self.keys
        if self.repeated_prompt:
            what = (f"prompt = the {k.chosen}/{k.rejected} conversation before its final answer (the '{k.prompt}' "
                    f"column repeats the user turn), chosen = {k.chosen}[-1], rejected = {k.rejected}[-1]")
        elif self.name in ("implicit", "hh"):
            what = (f"prompt = the turns {k.chosen} and {k.rejected} share before the final answer, "
                    f"chosen/rejected = the final assistant turn")
        elif self.pairwise:
            a, b, s = self.pairwise
            what = (f"prompt = {k.prompt}, chosen/rejected = {a}/{b} by the sign of {s} (negative: {a} preferred, "
                    f"positive: {b}; 0: a tie, skipped and counted)")
        elif self.sharegpt:
            what = (f"prompt = the {k.prompt} turns (from/value; human/user, gpt/assistant, system), "
                    f"chosen = {k.chosen}, rejected = {k.rejected} (a from/value turn or list)")
        elif self.instruction_input:
            ins, inp = self.instruction_input
            what = f"prompt = {ins} + \"\\n\\n\" + {inp} (when not empty), chosen = {k.chosen}, rejected = {k.rejected}"
        else:
            what = f"prompt = {k.prompt}, chosen = {k.chosen}, rejected = {k.rejected}"
        if self.name not in ("implicit", "hh", *FULL_CONVERSATIONS) or k.system != "system":
            what += f", system = {k.system} (if present)"
        if self.scores:
            what += f"; scores {self.scores[0]} - {self.scores[1]} (--min-score-margin)"
        if self.ignored:
            what += f"; ignored: {', '.join(self.ignored)}"
        return f"schema {self.title}: {what}"


def _first(names, columns):
    return next((n for n in names if n in columns), None)


def _scores(columns) -> tuple[str, str] | None:
    return next((p for p in SCORE_PAIRS if p[0] in columns and p[1] in columns), None)


def _is_messages(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) for m in v)


PAIRWISE = ("response_1", "response_2", "preference_strength")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


def _is_sharegpt_turns(v) -> bool:
    """A ShareGPT turn ({"from", "value"}) or a list of them."""
    turns = v if isinstance(v, list) else [v]
    return bool(turns) and all(isinstance(t, dict) and "from" in t and "value" in t for t in turns)


def detect(columns: list[str], sample: dict | None, keys: DataKeys) -> Schema | None:
    """The schema of a file with these columns (in order), judged by one sample row; None if unknown.

    Non-default `keys` (flags) are used as given."""
    cols = list(dict.fromkeys(columns))
    colset = set(cols)
    sample = sample or {}
    scores = keys.scores or _scores(colset)
    if keys.mapped:
        used = {keys.prompt, keys.chosen, keys.rejected, keys.system, *(scores or ())}
        # The user's mapping: a key missing from a row is that row's error, not an unknown schema.
        return Schema("flags", "from flags", keys, scores=scores, ignored=tuple(c for c in cols if c not in used))
    chosen, rejected = _first(CHOSEN_NAMES, colset), _first(REJECTED_NAMES, colset)
    if not (chosen or rejected) and set(PAIRWISE) <= colset and "prompt" in colset:
        used = {"prompt", "system", *PAIRWISE}
        return Schema("helpsteer2", "HelpSteer2 pairwise (nvidia/HelpSteer2 preference)", DataKeys(),
                      ignored=tuple(c for c in cols if c not in used), pairwise=PAIRWISE)
    if not chosen or not rejected:
        return None

    def make(name, title, k: DataKeys, instruction_input=None):
        used = {k.prompt, k.chosen, k.rejected, k.system, *(scores or ()), *(instruction_input or ())}
        if name in FULL_CONVERSATIONS:
            used.discard(k.prompt)  # read (to tell the layout) but not used
        return Schema(name, title, k, instruction_input, scores, tuple(c for c in cols if c not in used))

    k = replace(DataKeys(), chosen=chosen, rejected=rejected)
    if "conversations" in colset and (_is_sharegpt_turns(sample.get("conversations"))
                                      or _is_sharegpt_turns(sample.get(chosen))):
        return make("sharegpt", "ShareGPT (LLaMA-Factory, Axolotl)", replace(k, prompt="conversations"))
    if "prompt" in colset:
        p, c = sample.get("prompt"), sample.get(chosen)
        if isinstance(p, str) and _is_messages(c) and c[0].get("role") != "assistant":
            if "prompt_id" in colset or "messages" in colset:
                return make("ultrafeedback", "UltraFeedback (HuggingFaceH4/ultrafeedback_binarized)", k)
            if "rating_chosen" in colset or "chosen_model" in colset:
                return make("capybara", "Capybara-DPO (argilla/distilabel-capybara-dpo-7k-binarized)", k)
            return make("full-conversations", "prompt + full conversations", k)
        if chosen == "chosen" and rejected == "rejected" and colset <= {"prompt", "chosen", "rejected", "system"}:
            return make("native", "prompt/chosen/rejected", k)
        return make("explicit", "prompt/chosen/rejected", k)
    if "question" in colset:
        return make("orca", "Orca DPO pairs (Intel/orca_dpo_pairs)", replace(k, prompt="question"))
    if "instruction" in colset:
        inp = "input" if "input" in colset else ""
        return make("instruction", "instruction/input", replace(k, prompt="instruction"),
                    ("instruction", inp) if inp else None)
    c = sample.get(chosen)
    if isinstance(c, str) and c.lstrip(" ").startswith("\n\nHuman:") or isinstance(c, str) and c.startswith("Human:"):
        return make("hh", "Anthropic HH-RLHF transcripts (Anthropic/hh-rlhf)", k)
    if colset <= {"chosen", "rejected", "system"}:
        return make("native", "chosen/rejected", k)
    return make("implicit", "conversations with an implicit prompt (trl-lib, Capybara)", k)


def unknown_schema_message(columns: list[str], keys: DataKeys) -> str:
    """`columns: ...` text for a file whose layout is not recognised: the columns and the flags to map them."""
    cols = list(dict.fromkeys(columns))
    lowered = {c: c.lower() for c in cols}
    picks: dict[str, str] = {}
    for role in ("chosen", "rejected", "prompt", "system"):
        for hint in _GUESS[role]:
            hit = next((c for c in cols if c not in picks.values() and (lowered[c] == hint or
                                                                          hint in lowered[c].split("_"))), None)
            if hit:
                picks[role] = hit
                break
    flags = " ".join(f"--{role}-key {picks.get(role, 'COLUMN')}" for role in ("prompt", "chosen", "rejected")
                     if role in picks or role != "prompt")
    if "system" in picks:
        flags += f" --system-key {picks['system']}"
    looked = f"{keys.chosen}/{keys.rejected}" if keys.mapped else "chosen/rejected"
    found = ", ".join(cols) if cols else "none (rows are not objects)"
    return (f"unknown schema: no {looked} columns; columns found: {found}; map them with {flags} "
            f"(--prompt-key, --chosen-key, --rejected-key, --system-key)")
