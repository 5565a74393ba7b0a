"""Judges: who says which of a prompt's answers is better.

    python:MODULE:FUNCTION   (or python:FILE.py:FUNCTION, or FILE.py:FUNCTION)
        FUNCTION(prompt_messages, answer_text) -> a finite number; higher is better.
        The demo tasks' ground-truth reward is one: python:mlx_dpo.demo.reward:judge
    model:PATH_OR_ID
        a local judge LLM run with MLX, asked which of two answers is better; every comparison is
        asked in both orders (A/B and B/A) to cancel position bias, and ties are allowed.
    human
        a person picks the better of two answers (in the terminal: a, b or t for a tie).

`rank(prompt, answers)` gives one score per answer: the function's values for python judges; for the
pairwise judges (model, human) the fraction of the other answers it beats (ties count one half).
A judge is resolved (modules imported, files checked) before any answer is generated.

A python judge's call that has not returned after `--judge-timeout` seconds (default 300; 0: no limit) is
stopped and reported against its prompt. The call runs on the main thread, as before, and a timer
signal (SIGALRM) interrupts it there: a thread left running the judge's code could go on using MLX beside
the training that follows (MLX arrays belong to their thread), and a child process would change what a
judge is (module state, a reward model loaded twice). What a signal cannot interrupt is a call stuck in
native code that never returns to Python; elsewhere than on the main thread there is no limit.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..errors import UsageError, first_line
from .prompts import Prompt

DEFAULT_JUDGE_PROMPT = """You compare two answers to the same request. Decide which answer is better: \
correct first, then helpful, polite and to the point.

[Request]
{prompt}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Which answer is better? Reply with exactly one word: A, B or TIE."""

DEMO_JUDGE = "python:mlx_dpo.demo.reward:judge"  # the demo tasks' ground-truth reward
JUDGE_TIMEOUT = 300.0  # seconds a python judge's call may take (--judge-timeout)
JUDGE_SPECS = "python:MODULE:FUNCTION, python:FILE.py:FUNCTION, model:PATH_OR_ID or human"


class JudgeFailed(UsageError):
    """The judge raised or returned something that is not a score, on a named prompt."""


class Judge:
    """Scores the answers of one prompt. Subclasses implement `rank` and, where it is natural, `compare`."""

    pairwise = False   # compares two answers (model, human) instead of scoring one
    scalar = True      # its scores mean the same across prompts and rounds (a held-out mean is meaningful)
    judges_heldout = True  # also judges the held-out answers of every round (a person is not asked to)

    def __init__(self, spec: str):
        self.spec = spec

    def rank(self, prompt: Prompt, answers: list[str]) -> list[float]:
        raise NotImplementedError

    def compare(self, prompt: Prompt, a: str, b: str) -> float:
        """1.0 when `a` is better, 0.0 when `b` is, 0.5 for a tie."""
        sa, sb = self.rank(prompt, [a, b])
        return 1.0 if sa > sb else 0.0 if sa < sb else 0.5

    def judge_once(self, prompt: Prompt, first: str, second: str) -> float:
        """The verdict for `first` with the answers shown in this order (`mlx-dpo compare` balances the
        order itself). Judges that have no position (python) or ask both orders (model) ignore it."""
        return self.compare(prompt, first, second)

    def close(self) -> None:
        """Free what the judge holds (a judge model)."""


# ---------------------------------------------------------------------- python:
class PythonJudge(Judge):
    def __init__(self, spec: str, fn: Callable, timeout: float | None = JUDGE_TIMEOUT):
        super().__init__(spec)
        self.fn, self.timeout = fn, timeout

    def score(self, prompt: Prompt, answer: str, which: str = "") -> float:
        try:
            with time_limit(self.timeout):
                value = self.fn([dict(m) for m in prompt.messages], answer)
        except _Overdue:
            raise JudgeFailed(f"judge {self.spec} gave no score within {self.timeout:g} s (--judge-timeout) on the "
                              f"prompt at {prompt.source}{which} ({_short(prompt.text)!r}); make it return sooner or "
                              "raise --judge-timeout (0: no limit)") from None
        except Exception as e:  # the user's code: any failure is reported against the prompt
            raise JudgeFailed(f"judge {self.spec} raised {type(e).__name__}: {first_line(e)} — on the prompt at "
                              f"{prompt.source}{which} ({_short(prompt.text)!r})") from None
        return checked_score(value, self.spec, prompt, which)

    def rank(self, prompt, answers):
        return [self.score(prompt, a, f", answer {i + 1} of {len(answers)}") for i, a in enumerate(answers)]


class _Overdue(BaseException):
    """Raised inside a judge's call when its time is up: not an Exception, so the judge's own
    `except Exception` cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None):
    """Raise _Overdue in the code run inside after `seconds` (None or 0: no limit; see the module notes)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def overdue(signum, frame):
        raise _Overdue

    previous = signal.signal(signal.SIGALRM, overdue)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even if the signal came just before the timer was stopped
            signal.signal(signal.SIGALRM, previous)


def checked_score(value, spec: str, prompt: Prompt, which: str = "") -> float:
    """`value` as a float, or JudgeFailed saying what came back and for which prompt."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:  # numpy and MLX scalars (0-d arrays) are numbers too
            import numpy as np
            if isinstance(value, np.generic) or getattr(value, "shape", None) == ():
                value = float(value.item())
            else:
                raise TypeError
        except (TypeError, ValueError, AttributeError):
            raise JudgeFailed(f"judge {spec} returned {_short(repr(value))} ({type(value).__name__}) for the prompt "
                              f"at {prompt.source}{which}; expected a number (higher is better)") from None
    value = float(value)
    if not math.isfinite(value):
        raise JudgeFailed(f"judge {spec} returned {value} for the prompt at {prompt.source}{which}; "
                          "expected a finite number")
    return value


def _load_function(spec: str, target: str) -> Callable:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--judge {spec}: expected python:MODULE:FUNCTION or python:FILE.py:FUNCTION")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise UsageError(f"--judge {spec}: {path}: no such file")
            mod_spec = importlib.util.spec_from_file_location(f"mlx_dpo_judge_{path.stem}", path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_spec.name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except UsageError:
        raise
    except Exception as e:  # ImportError, or any error the module raises while it is imported
        raise UsageError(f"--judge {spec}: cannot import {module_name} ({type(e).__name__}: {first_line(e)})") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise UsageError(f"--judge {spec}: {module_name} has no {attr!r}")
    if not callable(fn):
        raise UsageError(f"--judge {spec}: {module_name}.{attr} is not a function")
    return fn


# ---------------------------------------------------------------------- pairwise judges
class PairwiseJudge(Judge):
    pairwise = True
    scalar = False

    def verdict(self, prompt: Prompt, first: str, second: str) -> float:
        """1.0 first better, 0.0 second better, 0.5 tie — for one order of presentation."""
        raise NotImplementedError

    def compare(self, prompt, a, b):
        # Both orders: a judge that always says "A" ends at 0.5 for every pair instead of preferring slot A.
        return (self.verdict(prompt, a, b) + 1.0 - self.verdict(prompt, b, a)) / 2

    def rank(self, prompt, answers):
        k = len(answers)
        wins = [0.0] * k
        for i in range(k):
            for j in range(i + 1, k):
                if answers[i] == answers[j]:
                    w = 0.5
                else:
                    w = self.compare(prompt, answers[i], answers[j])
                wins[i] += w
                wins[j] += 1.0 - w
        return [w / (k - 1) for w in wins] if k > 1 else [0.5] * k


def conversation_text(prompt: Prompt) -> str:
    """The request as the judge reads it: the user message, or the whole conversation with speakers."""
    if len(prompt.messages) == 1:
        return prompt.text
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt.messages)


def parse_verdict(text: str) -> float | None:
    """'A' -> 1.0, 'B' -> 0.0, 'TIE' -> 0.5: the first such word in the judge's reply; None if none."""
    import re

    m = re.search(r"(?<![A-Za-z])(TIE|A|B)(?![A-Za-z])", text.strip(), re.IGNORECASE)
    if m is None:
        return None
    return {"A": 1.0, "B": 0.0, "TIE": 0.5}[m.group(1).upper()]


class ModelJudge(PairwiseJudge):
    """A judge LLM (greedy, a few tokens). `generate(messages) -> text` may be given (tests); by default
    the model is loaded with MLX on first use and freed by `close()`."""

    def __init__(self, spec: str, model: str, template: str = DEFAULT_JUDGE_PROMPT, max_tokens: int = 8,
                 generate: Callable[[list[dict]], str] | None = None, trust_remote_code: bool = False):
        super().__init__(spec)
        self.model, self.template, self.max_tokens = model, template, max_tokens
        self.trust_remote_code = trust_remote_code
        self._generate = generate
        self._loaded = None
        self.unparsed = 0   # replies with no A, B or TIE in them (counted as ties)
        self.asked = 0

    def _reply(self, messages: list[dict]) -> str:
        if self._generate is not None:
            return self._generate(messages)
        if self._loaded is None:
            from ..model.generate import load_for_generation
            self._loaded = load_for_generation(self.model, None, trust_remote_code=self.trust_remote_code,
                                               log=lambda s: None)
        from ..model.generate import Sampling, answer

        model, tokenizer, _ = self._loaded
        return answer(model, tokenizer, messages, Sampling(temperature=0.0, max_tokens=self.max_tokens))

    def verdict(self, prompt, first, second):
        text = self.template.format(prompt=conversation_text(prompt), answer_a=first, answer_b=second)
        self.asked += 1
        v = parse_verdict(self._reply([{"role": "user", "content": text}]))
        if v is None:
            self.unparsed += 1
            return 0.5
        return v

    def close(self):
        self._loaded = None


class HumanJudge(PairwiseJudge):
    """A person picks. `ask(prompt, first, second) -> "a" | "b" | "tie"`; the sides are shuffled per question.
    Only the round's own samples are asked about; held-out answers are saved for reading, not judged."""

    judges_heldout = False

    def __init__(self, spec: str, ask: Callable[[Prompt, str, str], str], seed: int = 0):
        import random

        super().__init__(spec)
        self.ask, self.rng = ask, random.Random(seed)

    def compare(self, prompt, a, b):
        swap = self.rng.random() < 0.5  # one question per pair, sides drawn: the person judges answers, not slots
        first, second = (b, a) if swap else (a, b)
        v = self.judge_once(prompt, first, second)
        return 1.0 - v if swap else v

    def judge_once(self, prompt, first, second):
        return {"a": 1.0, "b": 0.0, "tie": 0.5}[self.ask(prompt, first, second)]


def terminal_ask(prompt: Prompt, first: str, second: str) -> str:
    """The human judge in a terminal: both answers, then a, b or t (tie)."""
    print(f"\n{conversation_text(prompt)}\n\n[A] {first}\n\n[B] {second}\n", file=sys.stderr)
    while True:
        print("better answer? a / b / t (tie): ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--judge human: no more input (stdin closed) before the round was judged")
        pick = line.strip().lower()
        if pick in ("a", "b"):
            return pick
        if pick in ("t", "tie"):
            return "tie"


# ---------------------------------------------------------------------- parsing
def make_judge(spec: str, judge_prompt: str | None = None, seed: int = 0,
               ask: Callable[[Prompt, str, str], str] | None = None, trust_remote_code: bool = False,
               timeout: float | None = JUDGE_TIMEOUT) -> Judge:
    """The judge `spec` names; every check that can fail without generating anything is done here.
    `trust_remote_code` (iterate's --trust-remote-code) lets a model judge's folder run its own code;
    `timeout`: seconds a python judge's call may take (None or 0: no limit)."""
    spec = (spec or "").strip()
    if spec == "human":
        return HumanJudge(spec, ask or terminal_ask, seed)
    if spec.startswith("model:"):
        from ..model.load import refuse_code, resolve_model_path

        target = spec.removeprefix("model:")
        if not target:
            raise UsageError(f"--judge {spec}: expected model:PATH_OR_ID")
        # clear errors now, before round 1, for a model that is not there or wants to run its own code
        try:
            refuse_code(resolve_model_path(target), trust_remote_code)
        except UsageError as e:
            raise UsageError(f"--judge {spec}: {e}") from None
        template = DEFAULT_JUDGE_PROMPT
        if judge_prompt:
            template = read_judge_prompt(judge_prompt)
        return ModelJudge(spec, target, template, trust_remote_code=trust_remote_code)
    if judge_prompt:
        raise UsageError("--judge-prompt is used by a model judge only (--judge model:PATH_OR_ID)")
    target = spec.removeprefix("python:")
    if target != spec or ".py:" in target:
        return PythonJudge(spec, _load_function(spec, target), timeout)
    raise UsageError(f"--judge {spec or '(empty)'}: expected {JUDGE_SPECS}")


def read_judge_prompt(path: str) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--judge-prompt {path}: cannot read ({e.strerror or e})") from None
    missing = [k for k in ("{prompt}", "{answer_a}", "{answer_b}") if k not in text]
    if missing:
        raise UsageError(f"--judge-prompt {path}: the text must contain {', '.join(missing)}")
    try:
        text.format(prompt="", answer_a="", answer_b="")
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"--judge-prompt {path}: braces other than {{prompt}}, {{answer_a}}, {{answer_b}} must be "
                         f"doubled ({first_line(e)})") from None
    return text


def _short(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"
