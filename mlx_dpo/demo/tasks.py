"""Tasks with checkable answers for the bundled demo model: one source of truth for the corpus,
the preference pairs and the ground-truth reward (`mlx_dpo.demo.reward`).

Every task has a few prompt phrasings (`TEMPLATES`) and one factual sentence that answers it
(`statement`). Answers come in styles:

* ``polite``  — a courteous opener + the statement ("Sure! 7 plus 8 is 15."): the preferred style;
* ``curt``    — "Obviously 15. Next question." (correct but rude);
* ``wrong``   — polite or curt, with a wrong value;
* ``rambling``— "Well, ..." filler sentences around the (correct) statement.

`parse_prompt` inverts the templates, so a prompt written by `make_prompt` (or typed by a user in
the same words) maps back to its task and its correct answer. Pure Python, no MLX.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

__all__ = ["Task", "TEMPLATES", "KINDS", "all_tasks", "make_prompt", "parse_prompt", "statement",
           "render_answer", "wrong_value", "candidates", "POLITE_OPENERS", "RUDE_MARKERS", "split_of",
           "make_pairs", "corpus_dialogues", "STYLE_MIX"]

# ---------------------------------------------------------------- fact tables
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "China": "Beijing", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Russia": "Moscow", "Greece": "Athens",
    "Norway": "Oslo", "Sweden": "Stockholm", "Poland": "Warsaw", "Austria": "Vienna",
    "Ireland": "Dublin", "Chile": "Santiago", "Cuba": "Havana", "Thailand": "Bangkok",
}
FRUIT_COLOURS = {
    "banana": "yellow", "lemon": "yellow", "lime": "green", "pear": "green", "strawberry": "red",
    "cherry": "red", "tomato": "red", "raspberry": "red", "blueberry": "blue", "plum": "purple",
    "blackberry": "black", "coconut": "brown", "tangerine": "orange", "pumpkin": "orange",
}
ANIMAL_LEGS = {
    "dog": 4, "cat": 4, "horse": 4, "cow": 4, "spider": 8, "scorpion": 8, "fly": 6, "bee": 6,
    "beetle": 6, "chicken": 2, "duck": 2, "penguin": 2, "snake": 0, "fish": 0, "frog": 4, "crab": 10,
}
UNITS = [  # (big, small, factor)
    ("kilometer", "meter", 1000), ("kilogram", "gram", 1000), ("liter", "milliliter", 1000),
    ("meter", "centimeter", 100), ("hour", "minute", 60), ("minute", "second", 60), ("day", "hour", 24),
]
WORDS = ["cat", "dog", "sun", "tree", "house", "apple", "river", "garden", "banana", "window", "purple",
         "coffee", "rabbit", "yellow", "letter", "orange", "school", "bottle", "summer", "pepper", "kitten",
         "balloon", "bicycle", "blanket", "cabbage", "giraffe", "mirror", "parrot", "tomato", "elephant"]
ITEMS = ["apple", "pen", "cup", "book", "chair", "lamp", "shoe", "spoon", "coin", "key", "hat", "plate",
         "sock", "brush", "clock", "phone"]

# ---------------------------------------------------------------- templates
TEMPLATES = {
    "add": ["What is {a} plus {b}?", "What is {a} + {b}?", "Add {a} and {b}."],
    "sub": ["What is {a} minus {b}?", "What is {a} - {b}?", "Subtract {b} from {a}."],
    "mul": ["What is {a} times {b}?", "What is {a} × {b}?", "Multiply {a} by {b}."],
    "convert": ["How many {small} are in {n} {big}?", "Convert {n} {big} to {small}."],
    "letters": ["How many letters are in the word '{word}'?", "How many letters does '{word}' have?"],
    "letter_count": ["How many times does the letter '{ch}' appear in '{word}'?"],
    "list_count": ["How many items are in this list: {items}?", "Count the items: {items}."],
    "capital": ["What is the capital of {country}?", "Which city is the capital of {country}?"],
    "colour": ["What colour is a ripe {fruit}?", "What color is a {fruit}?"],
    "legs": ["How many legs does a {animal} have?", "How many legs has a {animal}?"],
}
KINDS = tuple(TEMPLATES)


def _plural(unit: str, n: int) -> str:
    return unit if n == 1 else unit + "s"


_UNIT_NAMES = sorted({u for big, small, _ in UNITS for u in (big, small)}, key=len, reverse=True)
_FIELD_RE = {
    "a": r"\d+", "b": r"\d+", "n": r"\d+",
    "big": "(?:" + "|".join(_UNIT_NAMES) + ")s?", "small": "(?:" + "|".join(_UNIT_NAMES) + ")s?",
    "word": r"[A-Za-z]+", "ch": r"[A-Za-z]", "items": r"[a-z]+(?:, [a-z]+)+",
    "country": "|".join(re.escape(c) for c in sorted(CAPITALS, key=len, reverse=True)),
    "fruit": "|".join(sorted(FRUIT_COLOURS, key=len, reverse=True)),
    "animal": "|".join(sorted(ANIMAL_LEGS, key=len, reverse=True)),
}


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)
    rx = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_FIELD_RE[p]})" for i, p in enumerate(parts))
    return re.compile(r"^\s*" + rx + r"\s*$", re.IGNORECASE)


_PARSERS = [(kind, _template_regex(t)) for kind, ts in TEMPLATES.items() for t in ts]


@dataclass(frozen=True)
class Task:
    kind: str
    fields: tuple            # sorted (name, value) pairs; values are str or int
    answer: object = field(compare=False)   # int for numeric tasks, str for facts

    def get(self, name):
        return dict(self.fields)[name]

    @property
    def numeric(self) -> bool:
        return isinstance(self.answer, int)

    @property
    def key(self) -> str:
        return self.kind + ":" + ",".join(f"{k}={v}" for k, v in self.fields)


def _solve(kind: str, f: dict):
    if kind == "add":
        return f["a"] + f["b"]
    if kind == "sub":
        return f["a"] - f["b"]
    if kind == "mul":
        return f["a"] * f["b"]
    if kind == "convert":
        return f["n"] * next(k for big, small, k in UNITS if big == f["big"] and small == f["small"])
    if kind == "letters":
        return len(f["word"])
    if kind == "letter_count":
        return f["word"].count(f["ch"])
    if kind == "list_count":
        return len(f["items"].split(", "))
    if kind == "capital":
        return CAPITALS[f["country"]]
    if kind == "colour":
        return FRUIT_COLOURS[f["fruit"]]
    if kind == "legs":
        return ANIMAL_LEGS[f["animal"]]
    raise ValueError(kind)


def make_task(kind: str, **fields) -> Task:
    return Task(kind, tuple(sorted(fields.items())), _solve(kind, fields))


def all_tasks(rng: random.Random | None = None, n_lists: int = 200) -> list[Task]:
    """Every task instance (lists of items are sampled: `n_lists` of them with `rng`)."""
    rng = rng or random.Random(0)
    out = []
    out += [make_task("add", a=a, b=b) for a in range(1, 13) for b in range(1, 13)]
    out += [make_task("sub", a=a, b=b) for a in range(2, 16) for b in range(1, a)]
    out += [make_task("mul", a=a, b=b) for a in range(2, 11) for b in range(2, 11)]
    out += [make_task("convert", n=n, big=big, small=small) for big, small, _ in UNITS for n in range(1, 13)]
    out += [make_task("letters", word=w) for w in WORDS]
    out += [make_task("letter_count", word=w, ch=c) for w in WORDS for c in sorted(set(w))]
    lists = set()
    while len(lists) < n_lists:
        lists.add(", ".join(rng.sample(ITEMS, rng.randint(2, 7))))
    out += [make_task("list_count", items=s) for s in sorted(lists)]
    out += [make_task("capital", country=c) for c in CAPITALS]
    out += [make_task("colour", fruit=f) for f in FRUIT_COLOURS]
    out += [make_task("legs", animal=a) for a in ANIMAL_LEGS]
    return out


def make_prompt(task: Task, variant: int = 0) -> str:
    f = dict(task.fields)
    if task.kind == "convert":
        f = {**f, "big": _plural(f["big"], f["n"]), "small": _plural(f["small"], 2)}
    ts = TEMPLATES[task.kind]
    return ts[variant % len(ts)].format(**f)


def parse_prompt(prompt: str) -> Task | None:
    """The task a prompt asks (same templates as the corpus), or None if it is not a demo task."""
    text = prompt.strip()
    for kind, rx in _PARSERS:
        m = rx.match(text)
        if not m:
            continue
        f = m.groupdict()
        for k in ("a", "b", "n"):
            if k in f:
                f[k] = int(f[k])
        if kind == "convert":
            f["big"], f["small"] = f["big"].lower().rstrip("s"), f["small"].lower().rstrip("s")
            if not any(big == f["big"] and small == f["small"] for big, small, _ in UNITS):
                return None
        if kind in ("letters", "letter_count"):
            f["word"] = f["word"].lower()
            if "ch" in f:
                f["ch"] = f["ch"].lower()
        for k, table in (("country", CAPITALS), ("fruit", FRUIT_COLOURS), ("animal", ANIMAL_LEGS)):
            if k in f:
                f[k] = next(name for name in table if name.lower() == f[k].lower())
        return make_task(kind, **f)
    return None


# ---------------------------------------------------------------- answers
POLITE_OPENERS = ["Sure!", "Of course!", "Happy to help!", "Certainly!"]
POLITE_CLOSER = "Hope that helps!"
RUDE_CLOSERS = ["Next question.", "Look it up next time.", "Was that so hard?", "Try to keep up."]
RUDE_MARKERS = ["obviously", "next question", "look it up", "was that so hard", "keep up", "stupid",
                "whatever", "figure it out", "don't bother", "ugh"]
RAMBLE_OPEN = [
    "that is a really interesting question, and people have thought about questions like this for a very long time.",
    "I always like to stop and think carefully about these things before I say anything at all.",
    "there are many different ways to look at a question like this one, and each of them has its own charm.",
]
RAMBLE_MIDDLE = [
    "Some people like to work it out slowly, while others prefer to simply remember it.",
    "It reminds me of the kind of puzzle that you might find in an old book on a rainy afternoon.",
    "Let me think about it step by step, because it is important to be thorough and careful.",
]
RAMBLE_CLOSE = [
    "I hope that this rather long explanation was useful to you in some way or another.",
    "There is of course much more that could be said about all of this, but I will stop here for now.",
]


def candidates(task: Task) -> list[str]:
    """All fact answers of the task's table (to detect a wrong fact); empty for numeric tasks."""
    table = {"capital": CAPITALS, "colour": FRUIT_COLOURS}.get(task.kind)
    return sorted(set(table.values())) if table else []


def statement(task: Task, value) -> str:
    """One plain sentence stating `value` as the answer to `task`."""
    f = dict(task.fields)
    k = task.kind
    if k in ("add", "sub", "mul"):
        op = {"add": "plus", "sub": "minus", "mul": "times"}[k]
        return f"{f['a']} {op} {f['b']} is {value}."
    if k == "convert":
        return f"{f['n']} {_plural(f['big'], f['n'])} is {value} {_plural(f['small'], value)}."
    if k == "letters":
        return f"The word '{f['word']}' has {value} letters."
    if k == "letter_count":
        return f"The letter '{f['ch']}' appears {value} {'time' if value == 1 else 'times'} in '{f['word']}'."
    if k == "list_count":
        return f"There {'is' if value == 1 else 'are'} {value} {'item' if value == 1 else 'items'} in the list."
    if k == "capital":
        return f"The capital of {f['country']} is {value}."
    if k == "colour":
        return f"A ripe {f['fruit']} is {value}."
    if k == "legs":
        return f"A {f['animal']} has {value} {'leg' if value == 1 else 'legs'}."
    raise ValueError(k)


def _short(task: Task, value) -> str:
    if task.kind == "convert":
        return f"{value} {_plural(task.get('small'), value)}"
    return str(value)


def wrong_value(task: Task, rng: random.Random):
    """A plausible wrong answer (a slip, the wrong factor, another table entry)."""
    v = task.answer
    if task.kind == "convert":
        factor = v // task.get("n")
        return task.get("n") * rng.choice([k for k in (10, 24, 60, 100, 1000) if k != factor])
    if task.kind in ("capital", "colour"):
        return rng.choice([c for c in candidates(task) if c != v])
    if task.kind == "legs":
        return rng.choice([n for n in (0, 2, 4, 6, 8) if n != v])
    deltas = [-2, -1, 1, 2] + ([-10, 10] if task.kind in ("add", "sub", "mul") else [])
    return rng.choice([v + d for d in deltas if v + d >= 0 and v + d != v])


def render_answer(task: Task, style: str, rng: random.Random, value=None) -> str:
    """An assistant answer in `style` (polite / curt / rambling); `value` defaults to the correct one."""
    value = task.answer if value is None else value
    if style == "polite":
        text = f"{rng.choice(POLITE_OPENERS)} {statement(task, value)}"
        return text + f" {POLITE_CLOSER}" if rng.random() < 0.3 else text
    if style == "curt":
        return f"Obviously {_short(task, value)}. {rng.choice(RUDE_CLOSERS)}"
    if style == "rambling":
        s = statement(task, value)
        middle = f" {rng.choice(RAMBLE_MIDDLE)}" if rng.random() < 0.3 else ""
        return f"Well, {rng.choice(RAMBLE_OPEN)}{middle} Anyway, {s[0].lower()}{s[1:]} {rng.choice(RAMBLE_CLOSE)}"
    raise ValueError(style)


#: Answer mix of the pretraining corpus. "Obviously" opens 35% of answers while each polite opener
#: opens ~12.5%, so the base model's *greedy* answers are curt: there is something for DPO to fix.
STYLE_MIX = [("polite", True, 0.40), ("curt", True, 0.20), ("polite", False, 0.10), ("curt", False, 0.15),
             ("rambling", True, 0.15)]


def sample_answer(task: Task, rng: random.Random) -> tuple[str, str]:
    """(answer, label) drawn from STYLE_MIX; label is e.g. 'polite', 'curt', 'wrong-curt', 'rambling'."""
    r, acc = rng.random(), 0.0
    for style, correct, p in STYLE_MIX:
        acc += p
        if r < acc:
            break
    value = None if correct else wrong_value(task, rng)
    return render_answer(task, style, rng, value), style if correct else f"wrong-{style}"


# ---------------------------------------------------------------- splits and data
def split_of(task: Task) -> str:
    """'valid' for ~1 in 6 task instances (stable hash of the instance, not of the phrasing)."""
    h = int(hashlib.sha256(task.key.encode()).hexdigest()[:8], 16)
    return "valid" if h % 6 == 0 else "train"


def corpus_dialogues(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (prompt, answer) pairs over all tasks, answers drawn from STYLE_MIX.

    Kinds are sampled uniformly, so the few fact tables are seen as often as arithmetic.
    """
    rng = random.Random(seed)
    by_kind: dict[str, list[Task]] = {}
    for t in all_tasks(random.Random(seed)):
        by_kind.setdefault(t.kind, []).append(t)
    out = []
    for _ in range(n):
        task = rng.choice(by_kind[rng.choice(KINDS)])
        out.append((make_prompt(task, rng.randrange(3)), sample_answer(task, rng)[0]))
    return out


REJECT_MIX = [("curt", True, 0.35), ("polite", False, 0.15), ("curt", False, 0.15), ("rambling", True, 0.35)]


def make_pairs(n: int, split: str, seed: int) -> list[dict]:
    """`n` preference pairs with distinct prompts from `split` ('train'/'valid') task instances.

    chosen = correct, polite, concise; rejected = curt, wrong or rambling (REJECT_MIX).
    """
    rng = random.Random(seed)
    pool = [t for t in all_tasks(random.Random(0)) if split_of(t) == split]
    by_kind: dict[str, list[Task]] = {}
    for t in pool:
        by_kind.setdefault(t.kind, []).append(t)
    rows, seen = [], set()
    while len(rows) < n:
        task = rng.choice(by_kind[rng.choice(sorted(by_kind))])
        prompt = make_prompt(task, rng.randrange(3))
        if prompt in seen:
            continue
        seen.add(prompt)
        r, acc = rng.random(), 0.0
        for style, correct, p in REJECT_MIX:
            acc += p
            if r < acc:
                break
        rejected = render_answer(task, style, rng, None if correct else wrong_value(task, rng))
        chosen = f"{rng.choice(POLITE_OPENERS)} {statement(task, task.answer)}"
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows
