"""`mlx-dpo compare`: answer every prompt with both sides, let the judge decide, report and record.

    side A  base + the adapter (--adapter RUN)
    side B  the base alone (--against base, the default) or base + another adapter (--against RUN2)

Each side is loaded, answers every prompt and is freed before the other loads (one model in memory).
Answers are greedy by default; with --samples K each side draws K answers per prompt at --temperature,
both sides with the same seed per prompt (identical models then give identical answers: a tie). The
judge is resolved before anything is generated. Verdicts are appended to RUN_DIR/compare-*.jsonl as
they are made (duels.py); the report is computed from them (stats.py).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..iterate.judges import Judge, JudgeFailed, make_judge
from ..iterate.prompts import Prompt, load_prompts
from ..train.events import Reporter
from .duels import BASE, Duel, VerdictLog, balanced_order, record_path, side_name, verdict_row
from .stats import summarize


@dataclass
class CompareConfig:
    adapter: str | None = None       # side A: a run dir or adapter folder
    against: str = BASE              # side B: "base" or another run dir / adapter folder
    prompts: str | None = None       # what iterate --prompts takes; default: the run's held-out data
    judge: str | None = None         # python:MODULE:FUNCTION | FILE.py:FUNCTION | model:PATH_OR_ID | human
    judge_prompt: str | None = None  # a model judge's prompt
    model: str | None = None         # the base; default: the one the run trained (config.yaml), else the demo
    samples: int = 1                 # answers per prompt and side
    temperature: float | None = None # default: 0 (greedy) for one sample, 0.8 for several
    top_p: float = 1.0
    max_tokens: int = 128
    limit: int | None = None         # the first N prompts only
    seed: int = 0                    # sampling and the blind order
    output: str | None = None        # the verdicts file; default RUN_DIR/compare-vs-<B>-<time>.jsonl
    quantize: int | None = None
    show: int = 3                    # largest wins and losses reported

    def validate(self) -> "CompareConfig":
        def bad(key, msg):
            raise UsageError(f"--{key.replace('_', '-')}: {msg}", key=key)

        if not self.adapter:
            bad("adapter", "is required (the run dir or adapter folder to compare)")
        if not self.judge:
            bad("judge", "is required (python:MODULE:FUNCTION, FILE.py:FUNCTION, model:PATH_OR_ID or human)")
        if self.samples < 1:
            bad("samples", f"must be at least 1, got {self.samples}")
        if self.temperature is None:
            self.temperature = 0.0 if self.samples == 1 else 0.8
        if self.temperature < 0:
            bad("temperature", f"must not be negative, got {self.temperature}")
        if self.samples > 1 and self.temperature == 0:
            bad("temperature", f"must be > 0 with --samples {self.samples}: greedy answers to a prompt are all the same")
        if not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}")
        for key in ("max_tokens", "limit"):
            v = getattr(self, key)
            if v is not None and v < 1:
                bad(key, f"must be a positive integer, got {v}")
        if self.show < 0:
            bad("show", f"must not be negative, got {self.show}")
        return self


@dataclass
class Side:
    name: str            # "base" or the adapter folder's absolute path (as the records name it)
    model: str
    adapter: str | None
    quantize: int | None
    trust_remote_code: bool
    template_kwargs: dict | None = None  # the chat template's variables its run trained with (--chat-template-kwargs)


def resolve_sides(cfg: CompareConfig) -> tuple[Side, Side]:
    """Both sides, each with the base its run trained on (or --model) and the template variables it rendered its
    prompts with (the base side: side A's run's, so both answer the same prompts); adapters checked before any work."""
    from ..config import parse_template_kwargs
    from ..demo import model_or_default
    from ..model.adapters import read_adapter_config
    from ..model.load import resolve_model_path

    run = run_settings(cfg.adapter)  # A's settings, which the base side shares

    def side(path: str | None) -> Side:
        if path:
            read_adapter_config(path)
        saved = run_settings(path) if path else run
        model = model_or_default(cfg.model or saved.get("model"))
        resolve_model_path(model)
        quantize = cfg.quantize if cfg.quantize is not None else saved.get("quantize")
        extra = saved.get("chat_template_kwargs")
        return Side(side_name(path) if path else BASE, model, path, quantize, bool(saved.get("trust_remote_code")),
                    parse_template_kwargs(extra) if extra else None)

    a = side(cfg.adapter)
    b = side(None if cfg.against == BASE else cfg.against)
    if a.name == b.name:
        raise UsageError(f"--against {cfg.against}: the same adapter as --adapter; compare it with base or "
                         "another run", key="against")
    return a, b


def run_settings(adapter: str) -> dict:
    """The config.yaml of the run an adapter folder belongs to: the folder's own, or for a checkpoint
    (RUN/checkpoints/step_N, e.g. the last healthy one --stop-on-collapse names) its run's; {} for none."""
    from ..config import load_run_config

    p = Path(adapter)
    saved = load_run_config(p)
    if not saved and p.parent.name == "checkpoints":
        saved = load_run_config(p.parent.parent)
    return saved


def default_prompts(cfg: CompareConfig) -> str:
    """--prompts, else the held-out data the run was trained with."""
    if cfg.prompts:
        return cfg.prompts
    valid = run_settings(cfg.adapter).get("valid_data")
    if not valid:
        raise UsageError("--prompts is required: the run has no held-out data (valid_data) to take prompts from",
                         key="prompts")
    return valid


def generate_answers(side: Side, prompts: list[Prompt], cfg: CompareConfig,
                     report: Reporter) -> list[list[tuple[str, int]]]:
    """Each prompt's `cfg.samples` answers of one side, as (text, tokens)."""
    from ..iterate.sampling import Policy, answer_tokens, heldout_answers, prompt_seed, sample_answers
    from ..model.generate import Sampling

    label = "the base" if side.adapter is None else side.adapter
    report.phase("generate", f"answering {len(prompts)} prompts with {label}")
    policy = Policy.load(side.model, side.adapter, side.quantize, side.trust_remote_code, side.template_kwargs)
    try:
        if cfg.samples == 1:
            texts = heldout_answers(policy, prompts, cfg.max_tokens, cfg.temperature, prompt_seed(cfg.seed, 0, 0, 13))
            out = [[(t, answer_tokens(policy, t))] for t in texts]
            report.task("generate", len(prompts), len(prompts), f"answers of {label}")
            return out
        sampling = Sampling(cfg.temperature, cfg.top_p, cfg.max_tokens)
        out = []
        for i, p in enumerate(prompts):
            # The same seed for both sides: identical models give identical answers (a tie, not noise).
            texts = sample_answers(policy, p, cfg.samples, sampling, prompt_seed(cfg.seed, 0, i))
            out.append([(t, answer_tokens(policy, t)) for t in texts])
            report.task("generate", i + 1, len(prompts), f"answers of {label}")
        return out
    finally:
        del policy
        _free_memory()


def make_duels(prompts: list[Prompt], answers_a, answers_b, seed: int) -> list[Duel]:
    """One duel per prompt and sample, with a balanced blind order."""
    flat = [(i, k) for i in range(len(prompts)) for k in range(len(answers_a[i]))]
    order = balanced_order(len(flat), seed)
    return [Duel(n, prompts[i], k, answers_a[i][k][0], answers_b[i][k][0], order[n],
                 answers_a[i][k][1], answers_b[i][k][1]) for n, (i, k) in enumerate(flat)]


def judge_duel(judge: Judge, duel: Duel, a: str, b: str) -> dict:
    """The verdict row of one duel: a scoring judge scores both answers; a pairwise judge (model, human)
    is shown the blind order (a model judge then asks both orders itself); identical answers tie."""
    if judge.scalar:
        sa, sb = judge.rank(duel.prompt, [duel.answer_a, duel.answer_b])
        score = 1.0 if sa > sb else 0.0 if sa < sb else 0.5
        return verdict_row(duel, score, a=a, b=b, judge=judge.spec, score_a=sa, score_b=sb)
    if duel.identical:
        return verdict_row(duel, 0.5, a=a, b=b, judge=judge.spec)
    shown = judge.judge_once(duel.prompt, duel.first, duel.second)
    return verdict_row(duel, shown if duel.a_first else 1.0 - shown, a=a, b=b, judge=judge.spec)


@dataclass
class Comparison:
    """Answers of both sides, ready to be judged: the duels in their blind order, and the verdicts file.

    `record*` append a verdict line (no MLX: the app's UI thread may call them, e.g. for a person's pick in
    the blind view, which shows `duel.first` and `duel.second` and nothing else)."""
    a: Side
    b: Side
    duels: list[Duel]
    path: Path
    decoding: str
    show: int = 3

    def __post_init__(self):
        self.rows: list[dict] = []
        self._log = VerdictLog(self.path)

    def judge(self, judge: Judge, duel: Duel) -> dict:
        return self._record(judge_duel(judge, duel, self.a.name, self.b.name))

    def record_pick(self, duel: Duel, pick: str, judge: str = "human") -> dict:
        """A person's pick of the blind view: "a" (the answer shown first), "b" (second) or "tie"."""
        return self._record(verdict_row(duel, duel.score_of_pick(pick), a=self.a.name, b=self.b.name, judge=judge))

    def _record(self, row: dict) -> dict:
        self._log.write(row)
        self.rows.append(row)
        return row

    def result(self) -> dict:
        """stats.summarize of the verdicts so far, with the verdicts file and how the answers were made."""
        return {**summarize(self.rows, self.show), "file": str(self.path), "decoding": self.decoding}


def prepare_comparison(cfg: CompareConfig, report: Reporter | None = None) -> Comparison:
    """Check everything, then answer the prompts with both sides (MLX: call it on the thread that owns MLX)."""
    report = report or Reporter()
    cfg.validate()
    prompts = load_prompts(default_prompts(cfg), cfg.limit)
    a, b = resolve_sides(cfg)
    path = Path(cfg.output) if cfg.output else record_path(cfg.adapter, cfg.against)
    if path.exists():
        raise UsageError(f"--output {path}: exists; choose another file", key="output")
    answers_a = generate_answers(a, prompts, cfg, report)
    answers_b = generate_answers(b, prompts, cfg, report)
    decoding = "greedy" if cfg.temperature == 0 else f"{cfg.samples} sample(s) at T={cfg.temperature:g}"
    return Comparison(a, b, make_duels(prompts, answers_a, answers_b, cfg.seed), path, decoding, cfg.show)


def run_compare(cfg: CompareConfig, report: Reporter | None = None, judge: Judge | None = None,
                ask=None) -> dict:
    """The whole comparison with an automatic judge (or the terminal's person); returns Comparison.result()."""
    report = report or Reporter()
    cfg.validate()
    judge = judge or make_judge(cfg.judge, cfg.judge_prompt, cfg.seed, ask)  # before any answer is generated
    try:
        comparison = prepare_comparison(cfg, report)
        report.phase("judge", f"judging {len(comparison.duels)} pairs of answers with {judge.spec}"
                     + (" (blind: the sides are shuffled; which was which is shown at the end)"
                        if judge.spec == "human" else ""))
        for n, duel in enumerate(comparison.duels):
            try:
                comparison.judge(judge, duel)
            except JudgeFailed as e:
                raise JudgeFailed(f"{e}. The {n} verdict(s) so far are in {comparison.path}") from None
            report.task("judge", n + 1, len(comparison.duels), "judging")
    finally:
        judge.close()
    return comparison.result()


def _free_memory() -> None:
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
