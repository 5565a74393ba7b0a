"""A/B answers for preference collection: every message answered twice, the sides shuffled per message.

Sources of the two answers:
- "base":    base + adapter vs the base alone (the adapter switched off in place, exactly the base)
- "samples": two samples of the same model (temperature > 0, different seeds)
- a folder:  base + adapter vs base + another adapter of the same shape (swapped in place)

Which side holds which source is drawn per message, so the person judges answers, not labels; the
sides are recorded with each pick. A pick makes a preference pair (see data/preferences.py) and the
conversation goes on with the picked (or edited) answer as the assistant turn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.preferences import pair_row, unpaired_row
from ..errors import UsageError
from .adapters import read_adapter_config
from .generate import Sampling, TemplateRefused, stream_answer

SIDES = ("A", "B")
# A side whose answer makes a pair `train` refuses (empty, or the same as the other side) is answered again,
# at most this many times, sampled at least this warm (a greedy answer would only repeat itself).
MAX_RETRIES = 3
RETRY_TEMPERATURE = 0.7


@dataclass
class ABTurn:
    """The two answers to the last user message."""
    texts: dict = field(default_factory=dict)    # side -> answer text
    sources: dict = field(default_factory=dict)  # side -> source label ("tuned", "base", "sample 2", a folder)
    seeds: dict = field(default_factory=dict)    # side -> sampling seed
    retried: dict = field(default_factory=dict)  # side -> ["empty" | "same", ...]: answered again (ABChat._mend)
    problem: str | None = None                   # why these answers still cannot make a pair (edit or tie)


class ABChat:
    """A conversation answered A/B. `on_piece(side, text)` receives streamed pieces (for printing)."""

    def __init__(self, model, tokenizer, switch, sampling: Sampling, source: str = "base",
                 system: str | None = None, seed: int = 0, meta: dict | None = None):
        self.model, self.tokenizer, self.switch, self.sampling = model, tokenizer, switch, sampling
        self.source, self.system, self.meta = source, system, dict(meta or {})
        self.rng = random.Random(seed)
        self.seed = seed
        self.turns = 0
        self._sources = self._make_sources(source)
        self.reset()

    # ------------------------------------------------------------------ sources
    def _make_sources(self, source: str) -> dict[str, Callable[[], None]]:
        """Source label -> a function that puts the model in that state."""
        sw = self.switch
        if source == "base":
            if sw is None:
                raise UsageError("A/B against the base needs --adapter (it answers with and without it)", key="adapter")
            return {"tuned": lambda: sw.set(True), "base": lambda: sw.set(False)}
        if source == "samples":
            if self.sampling.temperature <= 0:
                raise UsageError("--ab-source samples needs --temperature > 0 (greedy answers would be the same)",
                                 key="temperature")
            keep = (lambda: sw.set(True)) if sw is not None else (lambda: None)
            return {"sample 1": keep, "sample 2": keep}
        if sw is None:
            raise UsageError("A/B against another adapter needs --adapter for the first one", key="adapter")
        read_adapter_config(source)  # a clear error for a folder that is not an adapter
        sw.add(source, source)
        self.meta.setdefault("other_adapter", str(Path(source)))
        return {"tuned": lambda: sw.use("on"), str(source): lambda: sw.use(source)}

    # ------------------------------------------------------------------ the conversation
    def reset(self) -> None:
        self.messages: list[dict] = [{"role": "system", "content": self.system}] if self.system else []
        self.pending: ABTurn | None = None
        self.last_single: str | None = None

    def ask(self, text: str, on_piece=None) -> ABTurn:
        """Add the user's message and answer it on both sides."""
        if self.pending is not None:
            raise UsageError("pick an answer first (/a, /b, /tie or /both-bad)")
        self.messages.append({"role": "user", "content": text})
        try:
            return self.regenerate(on_piece=on_piece)
        except TemplateRefused:  # nothing was answered: the conversation stays as it was
            self.messages.pop()
            self.pending = None
            raise

    def regenerate(self, side: str | None = None, on_piece=None) -> ABTurn:
        """(Re)generate both answers, or only `side`'s, to the last user message."""
        if not self.messages or self.messages[-1]["role"] != "user":
            raise UsageError("nothing to answer yet: type a message first")
        if side is None:
            labels = list(self._sources)
            if self.rng.random() < 0.5:
                labels.reverse()
            self.pending = ABTurn(sources=dict(zip(SIDES, labels)))
        else:
            self.pending.retried.pop(side, None)
        for s in ([side] if side else SIDES):
            self._answer(s, self.sampling.temperature, on_piece)
        self._mend()
        return self.pending

    def _answer(self, s: str, temperature: float, on_piece=None) -> None:
        self.turns += 1
        seed = self.seed * 1_000_003 + self.turns
        self._sources[self.pending.sources[s]]()
        pieces = []
        sampling = Sampling(temperature, self.sampling.top_p, self.sampling.max_tokens, seed)
        for piece in stream_answer(self.model, self.tokenizer, self.messages, sampling):
            pieces.append(piece)
            if on_piece:
                on_piece(s, piece)
        self.pending.texts[s], self.pending.seeds[s] = "".join(pieces), seed

    def _mend(self) -> None:
        """Answer a side again while the two answers make a pair `train` would refuse (the engine's own row
        check decides: an empty answer, or both the same); after MAX_RETRIES of a side, `problem` says why."""
        turn = self.pending
        turn.problem = None
        while (problem := self.pair_problem()) is not None:
            # A pair_row is well formed, so train refuses it for an empty side or for both sides the same.
            side = {"chosen": "A", "rejected": "B"}.get(problem.field or "", "B")  # the same: B answers again
            why = "same" if problem.field == "chosen,rejected" else "empty"
            if len(turn.retried.get(side, [])) >= MAX_RETRIES:
                what = "both answers are the same" if why == "same" else f"{side}'s answer is empty"
                turn.problem = f"{what}, also after {MAX_RETRIES} more tries: edit one side (e), or skip (t)"
                return
            turn.retried.setdefault(side, []).append(why)
            self._answer(side, max(self.sampling.temperature, RETRY_TEMPERATURE))

    def pair_problem(self):
        """The problem `train` would find in the pair of the pending answers (A as chosen), or None."""
        from ..data.pairs import row_problem

        turn = self.pending
        return row_problem(pair_row(self.messages, turn.texts["A"], turn.texts["B"]))

    def pair(self, side: str, edited: str | None = None) -> dict:
        """The pair for picking `side` (its text replaced by `edited`, if given), checked as `train` checks rows;
        the chat does not move on (see `commit`). UsageError (key "row") if train would refuse it."""
        from ..data.pairs import row_problem

        turn = self._pending()
        other = "B" if side == "A" else "A"
        chosen = edited if edited is not None else turn.texts[side]
        row = pair_row(self.messages, chosen, turn.texts[other], **self._meta(turn), picked=side,
                       chosen_source=turn.sources[side], edited=edited is not None,
                       **({"original": turn.texts[side]} if edited is not None else {}))
        if (problem := row_problem(row)) is not None:  # nothing saved, the chat waits: edit, again or tie
            raise UsageError(f"{problem.field}: {problem.message} (train would refuse this pair); edit an answer, "
                             "answer again or tie", key="row")
        return row

    def commit(self, row: dict) -> None:
        """The pick `row` is kept: the conversation goes on with its chosen answer."""
        self._continue(row["chosen"][-1]["content"])

    def pick(self, side: str, edited: str | None = None) -> dict:
        """`pair` and `commit` at once."""
        row = self.pair(side, edited)
        self.commit(row)
        return row

    def tie(self) -> ABTurn:
        """No preference: nothing is saved; the conversation goes on with answer A."""
        turn = self._pending()
        self._continue(turn.texts["A"])
        return turn

    def thumb(self, good: bool) -> dict:
        """An unpaired row for the last single answer (thumbs up or down)."""
        if self.last_single is None:
            raise UsageError("no answer to rate yet")
        prompt = self.messages[:-1]  # the conversation before that answer
        return unpaired_row(prompt, self.last_single, good, **self.meta,
                            sampling=self._sampling_meta())

    def _pending(self) -> ABTurn:
        if self.pending is None or set(self.pending.texts) != set(SIDES):
            raise UsageError("no A/B answers to pick from yet: type a message first")
        return self.pending

    def _continue(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})
        self.pending = None

    def _meta(self, turn: ABTurn) -> dict:
        meta = {**self.meta, "ab_source": self.source, "sides": dict(turn.sources),
                "sampling": {**self._sampling_meta(), "seeds": dict(turn.seeds)}}
        if turn.retried:  # those sides were sampled again, at RETRY_TEMPERATURE at least (why: empty / same)
            meta["sampling"]["answered_again"] = {s: list(why) for s, why in turn.retried.items()}
        return meta

    def _sampling_meta(self) -> dict:
        s = self.sampling
        return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
