"""The Train tab's "iterate" mode: the settings of `mlx-dpo iterate` (iterative DPO) beside the training form.

Each round samples answers from the current policy, has a judge score them, trains on best vs worst
(with the Train form's hyper-parameters, every round) and reports on held-out prompts. The iteration
runs as a child process like training (`mlx-dpo iterate --events`, see training.py); its folder holds a
run dir per round and `rounds.jsonl`. Running the same command again continues it: Resume rebuilds that
command from the folder's `iterate.yaml` (the settings it started with), so it works after a restart too.

A person as the judge is not run here: the Chat tab's A/B picks are this loop with you as the judge.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static

from mlx_dpo import DEMO_JUDGE, UsageError, is_demo_model, read_iteration_settings, read_rounds

CUSTOM = "custom"  # the judge Select's value when the judge is the text field's
# (flag, label, default): the iteration's own numbers
NUMBERS = [("rounds", "rounds", "3"), ("samples", "samples/prompt", "4"), ("prompts_per_round", "prompts/round", ""),
           ("temperature", "temperature", "0.8"), ("max_tokens", "max tokens", "128")]
FLOATS = ("temperature",)
LABELS = {name: label for name, label, _ in NUMBERS} | {
    "prompts": "prompts", "valid_prompts": "held-out prompts", "judge": "judge", "reference": "reference"}
HUMAN_NOTE = ("A person as the judge: the Chat tab's A/B mode (F5, ctrl+b) is this loop with you judging — "
              "each pick is a pair, and Ctrl+S there trains on them.")
JUDGE_HELP = "python:MODULE:FUNCTION, FILE.py:FUNCTION or model:PATH_OR_ID"
# iterate.yaml keys that are not flags of `mlx-dpo iterate`
NOT_FLAGS = ("prompts_digest", "valid_digest", "rounds", "train")


def flag_args(values: dict) -> list[str]:
    """`--key value` for each setting (True: the switch alone, False: --no-key, a list: its items)."""
    args = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


def iteration_settings(folder: str | Path) -> dict:
    """What the iteration in `folder` started with (its iterate.yaml), {} for a folder that is not one."""
    return read_iteration_settings(folder) if folder else {}


def rounds_done(folder: str | Path) -> int:
    """The last finished round of the iteration in `folder` (0: none, or only the start model's report)."""
    return max((int(r.get("round", 0)) for r in read_rounds(folder)), default=0) if folder else 0


def resume_args(folder: str, rounds: int | None = None) -> tuple[list[str], int]:
    """The command that continues the iteration in `folder` (its own settings; `rounds` may raise the number
    of rounds), and the round it starts with (0 when the start model answers held-out prompts)."""
    saved = iteration_settings(folder)
    if not saved:
        raise UsageError(f"{folder}: not an iteration folder (no iterate.yaml)")
    own = {k: v for k, v in saved.items() if k not in NOT_FLAGS}
    train = {k: v for k, v in (saved.get("train") or {}).items() if k != "seed"}  # --seed is iterate's own
    total = max(int(saved.get("rounds") or 1), int(rounds or 0))
    args = flag_args({**own, "output": folder, "rounds": total}) + flag_args(train)
    return args, 0 if own.get("valid_prompts") else 1


class IterateForm(Vertical):
    """The iterate mode's fields (shown in place of the processes / hosts / eval fields of train mode)."""

    def compose(self) -> ComposeResult:
        with Grid(id="iterate-form"):
            for name, label, default in NUMBERS:
                yield Label(label, classes="form-label")
                yield Input(default, id=f"train-{name}", classes="form-input",
                            placeholder="all" if name == "prompts_per_round" else "")
            yield Label("reference", classes="form-label")
            yield Select([("base", "base"), ("previous round", "previous")], value="base", allow_blank=False,
                         id="train-reference")
            yield Label("judge", classes="form-label")
            yield Select(self.judge_options(), value=self.default_judge(), allow_blank=False, id="train-judge-choice")
        with Horizontal(classes="train-wide-row"):
            yield Label("judge spec", classes="form-label")
            yield Input(id="train-judge", classes="train-wide", placeholder=JUDGE_HELP)
        with Horizontal(classes="train-wide-row"):
            yield Label("prompts", classes="form-label")
            yield Input(id="train-prompts", classes="train-wide")
        with Horizontal(classes="train-wide-row"):
            yield Label("held-out", classes="form-label")
            yield Input(id="train-valid_prompts", classes="train-wide")
        yield Static(HUMAN_NOTE, id="iterate-human", markup=False)

    def on_mount(self) -> None:
        self.refresh_defaults()

    def judge_options(self) -> list[tuple[str, str]]:
        """The demo's ground-truth reward is offered with the bundled demo model (its tasks are what it scores)."""
        options = [("demo reward", DEMO_JUDGE)] if is_demo_model(self.app.model) else []
        return options + [("the judge spec below", CUSTOM)]

    def default_judge(self) -> str:
        return DEMO_JUDGE if is_demo_model(self.app.model) else CUSTOM

    def refresh_defaults(self) -> None:
        """The placeholders name the Data tab's files (the defaults); the judge choices follow the model."""
        data, valid = self.app.data_path, self.app.valid_path
        self.query_one("#train-prompts", Input).placeholder = (
            f"default: {data} (the Data tab's file; a pairs file's prompts are used)" if data
            else "a JSONL of prompts, or a pairs file (or open one on the Data tab)")
        self.query_one("#train-valid_prompts", Input).placeholder = (
            f"default: {valid} (the Data tab's held-out file)" if valid
            else "optional: held-out prompts judged after every round")
        choice = self.query_one("#train-judge-choice", Select)
        options = self.judge_options()
        if [v for _, v in options] != [v for _, v in getattr(self, "_judge_options", [])]:
            keep = choice.value if choice.value in [v for _, v in options] else self.default_judge()
            choice.set_options(options)
            choice.value = keep
            self._judge_options = options

    def judge(self) -> str:
        choice = self.query_one("#train-judge-choice", Select).value
        spec = self.query_one("#train-judge", Input).value.strip()
        if choice != CUSTOM and not spec:
            return str(choice)
        if not spec:
            raise UsageError(f"judge: choose one, or write its spec ({JUDGE_HELP})", key="judge")
        if spec == "human":
            raise UsageError("judge: a person judges in the Chat tab's A/B mode (F5, ctrl+b), not in a child "
                             "process; choose a python or model judge here", key="judge")
        return spec

    def flags(self) -> dict:
        """The iteration's own flags from the form (the training settings come from the Train form)."""
        flags: dict = {}
        for name, label, _ in NUMBERS:
            raw = self.query_one(f"#train-{name}", Input).value.strip()
            if not raw:
                continue
            try:
                flags[name] = float(raw) if name in FLOATS else int(raw)
            except ValueError:
                raise UsageError(f"{name}: expected a number, got {raw!r}", key=name) from None
        flags["reference"] = self.query_one("#train-reference", Select).value
        flags["prompts"] = self.query_one("#train-prompts", Input).value.strip() or self.app.data_path
        flags["valid_prompts"] = self.query_one("#train-valid_prompts", Input).value.strip() or self.app.valid_path
        if not flags["prompts"]:
            raise UsageError("prompts: write a prompts file here, or open a pairs file on the Data tab", key="prompts")
        flags["judge"] = self.judge()
        if flags.get("rounds", 1) < 1:
            raise UsageError(f"rounds: must be at least 1, got {flags['rounds']}", key="rounds")
        if flags.get("samples", 2) < 2:
            raise UsageError(f"samples: must be at least 2 (a pair needs two answers), got {flags['samples']}",
                             key="samples")
        return flags

    def show_settings(self, saved: dict) -> None:
        """Fill the fields with an iteration's saved settings (what Resume continues with)."""
        for name, _, _ in NUMBERS:
            if saved.get(name) is not None:
                self.query_one(f"#train-{name}", Input).value = str(saved[name])
        if saved.get("reference") in ("base", "previous"):
            self.query_one("#train-reference", Select).value = saved["reference"]
        for name in ("prompts", "valid_prompts"):
            self.query_one(f"#train-{name}", Input).value = str(saved.get(name) or "")
        judge = str(saved.get("judge") or "")
        choice = self.query_one("#train-judge-choice", Select)
        if judge and judge in [v for _, v in self.judge_options()]:
            choice.value, self.query_one("#train-judge", Input).value = judge, ""
        elif judge:
            choice.value, self.query_one("#train-judge", Input).value = CUSTOM, judge
