"""The iteration: rounds of generate -> judge -> pairs -> train -> held-out report, resumable at any point.

    DIR/iterate.yaml        the settings the iteration started with (a re-run must agree on what makes a round)
    DIR/rounds.jsonl        one report per finished round (round 0: the start model), rewritten atomically
    DIR/round_0/            held-out answers of the start model (base, or base + --init-adapter)
    DIR/round_N/            a normal run dir (config.yaml, adapters.safetensors, metrics.jsonl, checkpoints/)
        answers.jsonl       K samples per prompt, appended one prompt per line
        judged.jsonl        the judge's score of each sample, appended one prompt per line
        pairs.jsonl         best vs worst per prompt, in the pairs format `train` reads
        trained.json        written when the round's training ended (its last metrics)
        heldout.jsonl, report.json

Round N samples from the policy of round N-1 (base + its adapter) and trains from that adapter. The
reference is the base (default) or the previous round's policy (`reference: previous`). A stage whose
file is complete is never redone; an append-only file keeps its complete lines and continues after them.
"""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import UsageError
from ..fileio import append_line, atomic_write_json, atomic_write_text, read_jsonl_tolerant
from ..model.generate import Sampling
from ..train.events import Reporter
from .judges import JUDGE_TIMEOUT, Judge, JudgeFailed, make_judge
from .prompts import Prompt, load_prompts
from .report import heldout_summary, round_line, score_summary

REFERENCES = ("base", "previous")
SETTINGS_FILE = "iterate.yaml"


@dataclass
class IterateConfig:
    model: str | None = None
    prompts: str | None = None           # JSONL of prompts, or a pairs file whose prompts are used
    judge: str | None = None             # python:MODULE:FUNCTION | FILE.py:FUNCTION | model:PATH_OR_ID | human
    output: str | None = None
    rounds: int = 3
    samples: int = 4                     # answers per prompt and round
    valid_prompts: str | None = None     # held-out prompts answered and judged after every round
    reference: str = "base"              # base | previous
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 128
    min_spread: float = 0.0              # skip a prompt whose best and worst scores differ by less
    judge_prompt: str | None = None      # a model judge's prompt (a text file with {prompt} {answer_a} {answer_b})
    judge_timeout: float = JUDGE_TIMEOUT  # seconds a python judge's call may take (0: no limit)
    seed: int = 0
    limit: int | None = None             # only the first N prompts of the file
    prompts_per_round: int | None = None # round r answers the next N prompts (wrapping around); default: all
    valid_limit: int | None = None
    init_adapter: str | None = None      # round 1 starts from this adapter
    kl_samples: int = 1                  # samples per held-out prompt for the KL estimate (0: none)
    eval_temperature: float = 0.0        # held-out answers: greedy (0) or sampled at this temperature
    quantize: int | None = None
    train: dict = field(default_factory=dict)  # TrainConfig values for every round's training

    # What a round depends on: a re-run of the same DIR must not change them.
    IDENTITY = ("model", "prompts", "judge", "samples", "valid_prompts", "reference", "temperature", "top_p",
                "max_tokens", "min_spread", "judge_prompt", "seed", "limit", "prompts_per_round", "valid_limit",
                "init_adapter", "quantize", "eval_temperature", "kl_samples")

    def validate(self) -> "IterateConfig":
        def bad(key, msg):
            raise UsageError(f"--{key.replace('_', '-')}: {msg}")

        for key in ("prompts", "judge", "output"):
            if not getattr(self, key):
                bad(key, "is required")
        if self.rounds < 1:
            bad("rounds", f"must be at least 1, got {self.rounds}")
        if self.samples < 2:
            bad("samples", f"must be at least 2 (a pair needs two answers), got {self.samples}")
        if self.temperature <= 0:
            bad("temperature", "must be > 0: greedy answers to one prompt would all be the same")
        if not 0 < self.top_p <= 1:
            bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            bad("max_tokens", f"must be a positive integer, got {self.max_tokens}")
        if self.min_spread < 0:
            bad("min_spread", f"must not be negative, got {self.min_spread}")
        if self.reference not in REFERENCES:
            bad("reference", f"expected one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if self.eval_temperature < 0:
            bad("eval_temperature", f"must not be negative, got {self.eval_temperature}")
        if self.kl_samples < 0:
            bad("kl_samples", f"must not be negative, got {self.kl_samples}")
        if self.judge_timeout < 0:
            bad("judge_timeout", f"must not be negative (0: no limit), got {self.judge_timeout}")
        for key in ("limit", "valid_limit", "prompts_per_round"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                bad(key, f"must be a positive integer, got {getattr(self, key)}")
        for key in ("model", "data", "output", "init_adapter", "resume", "valid_data"):
            if key in self.train:
                raise UsageError(f"iterate sets {key} of each round itself; it cannot be a training setting here")
        return self

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in self.IDENTITY}

    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_tokens)


def round_dir(out: Path, r: int) -> Path:
    return out / f"round_{r}"


# ---------------------------------------------------------------------- append-only files
def read_lines(path: Path) -> list[dict]:
    """The complete lines of an append-only JSONL file; a torn last line (a killed writer) is cut off."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(end)
        raw = raw[:end]
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def prompts_digest(prompts: list[Prompt]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps(p.messages, sort_keys=True).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- the iteration
class Iteration:
    def __init__(self, cfg: IterateConfig, report: Reporter | None = None, judge: Judge | None = None,
                 ask=None):
        self.cfg = cfg.validate()
        self.report = report or Reporter()
        self.out = Path(cfg.output)
        # Everything that can fail without generating is checked first: the judge, the prompts, the
        # training settings, the model, and what an earlier run of this DIR started with.
        self.judge = judge or make_judge(cfg.judge, cfg.judge_prompt, cfg.seed, ask,
                                         trust_remote_code=bool(cfg.train.get("trust_remote_code")),
                                         timeout=cfg.judge_timeout)
        self.prompts = load_prompts(cfg.prompts, cfg.limit)
        self.valid = load_prompts(cfg.valid_prompts, cfg.valid_limit, "--valid-prompts") if cfg.valid_prompts else []
        self._check_training_settings()
        self._open_dir()

    # ------------------------------------------------------------------ setup
    def _check_training_settings(self) -> None:
        from ..config import build_config
        from ..demo import model_or_default
        from ..model.load import refuse_code, resolve_model_path

        self.cfg.model = model_or_default(self.cfg.model)
        refuse_code(resolve_model_path(self.cfg.model), bool(self.cfg.train.get("trust_remote_code")))
        if self.cfg.init_adapter:
            from ..model.adapters import read_adapter_config
            read_adapter_config(self.cfg.init_adapter)
        cfg = build_config({}, {**self.cfg.train, "model": self.cfg.model, "data": "pairs.jsonl",
                                "output": str(self.out / "round_1")})
        cfg.validate()

    def _open_dir(self) -> None:
        settings = {**self.cfg.identity(), "prompts_digest": prompts_digest(self.prompts),
                    "valid_digest": prompts_digest(self.valid)}
        path = self.out / SETTINGS_FILE
        if path.exists():
            try:
                saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as e:
                raise UsageError(f"{path}: cannot read the iteration's settings ({e})") from None
            differ = [k for k, v in settings.items() if k in saved and saved[k] != v]
            if differ:
                what = ", ".join(f"{k} {saved[k]!r} (now {settings[k]!r})" for k in differ)
                raise UsageError(f"{self.out}: this iteration was started with {what}; run it with the same "
                                 f"settings to continue, or choose another --output")
            self._check_training_unchanged(saved.get("train"))
            self.report.log(f"continuing the iteration in {self.out}")
        elif self.out.exists() and any(self.out.iterdir()):
            raise UsageError(f"{self.out}: exists and is not an iteration folder (no {SETTINGS_FILE}); "
                             "choose another --output")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump({**settings, "rounds": self.cfg.rounds, "train": self.cfg.train},
                                               sort_keys=False))

    def _check_training_unchanged(self, saved_train) -> None:
        """A continued iteration trains its rounds as the earlier ones were trained: its training settings
        may change only as a resumed run's may (config.RESUME_MAY_CHANGE), compared as resolved values."""
        from ..config import RESUME_MAY_CHANGE, build_config

        if not isinstance(saved_train, dict):
            return  # an iteration from before the training settings were recorded

        def resolved(train: dict) -> dict:
            return build_config({}, {**train, "model": "m", "data": "d", "output": "o"}).to_dict()

        try:
            old = resolved(saved_train)
        except UsageError:
            return  # settings this version no longer reads: nothing to compare with
        new = resolved(self.cfg.train)
        differ = [k for k in old if k not in RESUME_MAY_CHANGE and old[k] != new[k]]
        if not differ:
            return
        what = ", ".join(f"{k} {old[k]!r} (now {new[k]!r})" for k in differ)
        flags = ", ".join("--" + k.replace("_", "-") for k in differ)
        last = self.policy_adapter(1 + max((int(p.name.split("_")[1]) for p in self.out.glob("round_*")
                                            if p.name.split("_")[1].isdigit()), default=0))
        start = f" (--init-adapter {last} starts it from this iteration's last policy)" if last else ""
        raise UsageError(f"{self.out}: this iteration's rounds were trained with {what}; only how far a round "
                         "goes and when it logs, evaluates and saves may change (iters, epochs, log_every, "
                         f"eval_every, save_every). To continue it, leave out {flags} (or give its values); for "
                         f"new training settings start a new iteration in another --output{start}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[dict]:
        try:
            reports = []
            if self.valid:
                reports.append(self._round_zero())
            for r in range(1, self.cfg.rounds + 1):
                reports.append(self._round(r))
            self._write_rounds()  # a kill may have come between a round's report.json and rounds.jsonl
            return reports
        finally:
            self.judge.close()

    def _round_zero(self) -> dict:
        rd = round_dir(self.out, 0)
        if (rd / "report.json").exists():
            rep = json.loads((rd / "report.json").read_text())
            self.report.round(rep)
            return rep
        self.report.round_start(0, self.cfg.rounds)
        self.report.phase("evaluate", "answering the held-out prompts with the start model")
        rep = {"round": 0, "adapter": self.cfg.init_adapter, **self._evaluate(rd, 0, self.cfg.init_adapter)}
        return self._finish(rd, rep)

    def _round(self, r: int) -> dict:
        rd = round_dir(self.out, r)
        if (rd / "report.json").exists():
            rep = json.loads((rd / "report.json").read_text())
            self.report.log(round_line(rep) + " (done before)")
            self.report.round(rep)  # a reader that joins now gets every round
            return rep
        self.report.round_start(r, self.cfg.rounds)
        rd.mkdir(parents=True, exist_ok=True)
        adapter_in = self.policy_adapter(r)
        self.report.log(f"round {r}/{self.cfg.rounds}: policy {adapter_in or 'the base model'}")
        answers = self._generate(rd, r, adapter_in, self.round_prompts(r))
        judged = self._judge(rd, r, answers)
        n_pairs, skipped = self._pairs(rd, r, answers, judged)
        trained, train = self._train(rd, r, adapter_in, n_pairs)
        adapter_out = str(rd) if trained else adapter_in
        rep = {"round": r, "adapter": adapter_out, "pairs": n_pairs, **{f"skipped/{k}": v for k, v in skipped.items()},
               **train}
        if self.judge.scalar:  # the mean score of the policy's own samples: the round's starting point
            rep["samples/score_mean"] = score_summary([s for j in judged for s in j["scores"]],
                                                      "samples")["samples/score_mean"]
        if self.valid:
            rep.update(self._evaluate(rd, r, adapter_out))
        return self._finish(rd, rep)

    def round_prompts(self, r: int) -> list[Prompt]:
        """The prompts of round `r`: all of them, or the round's slice of --prompts-per-round (wrapping)."""
        n = self.cfg.prompts_per_round
        if not n or n >= len(self.prompts):
            return self.prompts
        start = ((r - 1) * n) % len(self.prompts)
        return [self.prompts[(start + k) % len(self.prompts)] for k in range(n)]

    def policy_adapter(self, r: int) -> str | None:
        """The adapter round `r` starts from: the last earlier round that trained, else --init-adapter."""
        for prev in range(r - 1, 0, -1):
            done = round_dir(self.out, prev) / "trained.json"
            if done.exists() and json.loads(done.read_text()).get("trained"):
                return str(round_dir(self.out, prev))
        return self.cfg.init_adapter

    def _finish(self, rd: Path, rep: dict) -> dict:
        atomic_write_json(rd / "report.json", rep)
        self._write_rounds()
        self.report.log(round_line(rep))
        self.report.round(rep)
        return rep

    def _write_rounds(self) -> None:
        """rounds.jsonl: every finished round's report.json, in order (rewritten whole, when it changed)."""
        reports = [json.loads((d / "report.json").read_text()) for d in sorted(
            (d for d in self.out.glob("round_*") if (d / "report.json").exists()),
            key=lambda d: int(d.name.split("_")[1]))]
        text, path = "".join(json.dumps(x) + "\n" for x in reports), self.out / "rounds.jsonl"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)

    # ------------------------------------------------------------------ stages
    def _load_policy(self, adapter: str | None):
        from .sampling import Policy

        from ..config import parse_template_kwargs

        extra = self.cfg.train.get("chat_template_kwargs")  # the rounds answer as they train
        return Policy.load(self.cfg.model, adapter, self.cfg.quantize, bool(self.cfg.train.get("trust_remote_code")),
                           parse_template_kwargs(extra) if extra else None)

    def _stage(self, path: Path, total: int, r: int, phase: str, text: str) -> list[dict]:
        """The complete lines an append-only stage file holds; the stage is announced if lines are missing."""
        rows = read_lines(path)[:total]
        if len(rows) < total:
            self.report.phase(phase, text)
            if rows:
                self.report.log(f"round {r}: {path.name} continuing after {len(rows)} of {total} prompts")
        return rows

    def _generate(self, rd: Path, r: int, adapter: str | None, prompts: list[Prompt]) -> list[dict]:
        from .sampling import prompt_seed, sample_answers

        path, total = rd / "answers.jsonl", len(prompts)
        rows = self._stage(path, total, r, "generate", f"round {r}: {self.cfg.samples} answers to each of {total} prompts")
        if len(rows) == total:
            return rows
        policy = self._load_policy(adapter)
        sampling = self.cfg.sampling()
        try:
            for i in range(len(rows), total):
                p = prompts[i]
                seed = prompt_seed(self.cfg.seed, r, i)
                row = {"index": i, "source": p.source, "prompt": p.messages, "seed": seed,
                       "answers": sample_answers(policy, p, self.cfg.samples, sampling, seed)}
                append_line(path, row)
                rows.append(row)
                self.report.task("generate", i + 1, total, f"round {r}: sampling answers")
        finally:
            del policy
            _free_memory()
        return rows

    def _judge(self, rd: Path, r: int, answers: list[dict]) -> list[dict]:
        path, total = rd / "judged.jsonl", len(answers)
        rows = self._stage(path, total, r, "judge", f"round {r}: judging with {self.judge.spec}")
        if len(rows) == total:
            return rows
        for i in range(len(rows), total):
            a = answers[i]
            prompt = Prompt(a["prompt"], a["source"])
            try:
                scores = self.judge.rank(prompt, a["answers"])
            except JudgeFailed as e:
                raise JudgeFailed(f"{e}. Round {r} stopped; the {i} prompt(s) judged so far are kept in {path} "
                                  "and a re-run continues from this prompt") from None
            row = {"index": i, "scores": scores}
            append_line(path, row)
            rows.append(row)
            self.report.task("judge", i + 1, total, f"round {r}: judging")
        self.judge.close()  # a judge model is not kept in memory while the round trains
        return rows

    def _pairs(self, rd: Path, r: int, answers: list[dict], judged: list[dict]) -> tuple[int, dict]:
        from ..data.preferences import pair_row

        skipped = {"tie": 0, "spread": 0, "empty": 0}
        rows = []
        for a, j in zip(answers, judged):
            scored = [(s, t) for s, t in zip(j["scores"], a["answers"]) if t.strip()]
            if len(scored) < 2:
                skipped["empty"] += 1
                continue
            best = max(range(len(scored)), key=lambda k: scored[k][0])
            worst = min(range(len(scored)), key=lambda k: scored[k][0])
            spread = scored[best][0] - scored[worst][0]
            if spread <= 0 or scored[best][1] == scored[worst][1]:
                skipped["tie"] += 1
                continue
            if spread < self.cfg.min_spread:
                skipped["spread"] += 1
                continue
            rows.append(pair_row(a["prompt"], scored[best][1], scored[worst][1], source=a["source"], round=r,
                                 judge=self.judge.spec, score_chosen=scored[best][0],
                                 score_rejected=scored[worst][0]))
        path = rd / "pairs.jsonl"
        if not path.exists():
            atomic_write_text(path, "".join(json.dumps(x) + "\n" for x in rows))
        else:
            rows = read_lines(path)  # written before (perhaps edited by hand): train on what is there
        self.report.log(f"round {r}: {len(rows)} pairs from {len(answers)} prompts"
                        + "".join(f", {v} {k}" for k, v in skipped.items() if v) + f" -> {path}")
        return len(rows), skipped

    def _train(self, rd: Path, r: int, adapter_in: str | None, n_pairs: int) -> tuple[bool, dict]:
        """(whether the round trained an adapter, its last training metrics).

        trained.json is written after the trainer's last checkpoint; a kill between the two leaves a
        finished run dir, which the trainer resumes at its end: the metrics then come from its log.
        """
        from ..config import build_config
        from ..train import checkpoint as ckpt
        from ..train.resume import NothingToDo
        from ..train.trainer import Trainer

        done = rd / "trained.json"
        if done.exists():
            state = json.loads(done.read_text())
            return bool(state.get("trained")), state["metrics"]
        if n_pairs == 0:
            self.report.log(f"round {r}: no pairs, nothing to train; the next round samples the same policy")
            atomic_write_json(done, {"trained": False, "metrics": {}})
            return False, {}
        flags = {**self.cfg.train, "model": self.cfg.model, "data": str(rd / "pairs.jsonl"), "output": str(rd),
                 "init_adapter": adapter_in, "resume": ckpt.latest(rd) is not None}
        if self.cfg.quantize:
            flags["quantize"] = self.cfg.quantize
        # --reference base: the base model, also when the round continues from an adapter.
        flags["reference"] = "base" if self.cfg.reference == "base" else "start"
        cfg = build_config({}, flags).validate()
        self.report.phase("train", f"round {r}: training on {n_pairs} pairs"
                          + (f" from {adapter_in}" if adapter_in else ""))
        try:
            trainer = Trainer(cfg, self.report).setup()
        except NothingToDo as e:  # a lower --iters than the round's checkpoint: the round ends there
            self.report.log(f"round {r}: {e}")
            rows = [row for row in read_jsonl_tolerant(rd / "metrics.jsonl")
                    if "loss" in row and row.get("step", 0) <= (e.step or 0)]
            last = rows[-1] if rows else {}
        else:
            # Nothing is returned when the trainer resumed at its end: the round's last row is then in its log.
            last = trainer.train() or next((row for row in reversed(read_jsonl_tolerant(rd / "metrics.jsonl"))
                                            if "loss" in row), {})
            del trainer
        _free_memory()
        metrics = {"train/steps": last.get("step"), "train/loss": last.get("loss"),
                   "train/accuracy": last.get("rewards/accuracies"), "train/margin": last.get("rewards/margins")}
        metrics = {k: v for k, v in metrics.items() if v is not None}
        atomic_write_json(done, {"trained": True, "metrics": metrics})
        return True, metrics

    def _evaluate(self, rd: Path, r: int, adapter: str | None) -> dict:
        """Answers to the held-out prompts (greedy by default), judged; win rates against round 0 and round r-1."""
        from .sampling import answer_tokens, heldout_answers, kl_to_base, prompt_seed

        rd.mkdir(parents=True, exist_ok=True)
        path = rd / "heldout.jsonl"
        if path.exists():
            return heldout_summary(read_lines(path))
        self.report.phase("evaluate", f"round {r}: answering {len(self.valid)} held-out prompts")
        policy = self._load_policy(adapter)
        try:
            # The same seed every round: rounds differ by their policy, not by their luck.
            texts = heldout_answers(policy, self.valid, self.cfg.max_tokens, self.cfg.eval_temperature,
                                    prompt_seed(self.cfg.seed, 0, 0, 13))
            rows = []
            for i, (p, text) in enumerate(zip(self.valid, texts)):
                row = {"index": i, "source": p.source, "prompt": p.messages, "answer": text,
                       "tokens": answer_tokens(policy, text)}
                if self.cfg.kl_samples:
                    row["kl_to_base"] = kl_to_base(policy, p, self.cfg.max_tokens, prompt_seed(self.cfg.seed, r, i, 7),
                                                   self.cfg.kl_samples)
                rows.append(row)
                self.report.task("evaluate", i + 1, len(self.valid), f"round {r}: held-out answers")
        finally:
            del policy
            _free_memory()
        self._judge_heldout(rows, r)
        self.judge.close()
        atomic_write_text(path, "".join(json.dumps(x) + "\n" for x in rows))
        return heldout_summary(rows)

    def _judge_heldout(self, rows: list[dict], r: int) -> None:
        if not self.judge.judges_heldout:
            return
        start = read_lines(round_dir(self.out, 0) / "heldout.jsonl") if r > 0 else []
        previous = read_lines(round_dir(self.out, r - 1) / "heldout.jsonl") if r > 1 else start
        for i, row in enumerate(rows):
            p = Prompt(row["prompt"], row["source"])
            if self.judge.scalar:
                row["score"] = self.judge.rank(p, [row["answer"]])[0]
            for key, other in (("win_rate_vs_start", start), ("win_rate_vs_previous", previous)):
                if i < len(other):
                    if self.judge.scalar and "score" in other[i]:
                        s, o = row["score"], other[i]["score"]
                        row[key] = 1.0 if s > o else 0.0 if s < o else 0.5
                    else:
                        row[key] = 0.5 if row["answer"] == other[i]["answer"] else \
                            self.judge.compare(p, row["answer"], other[i]["answer"])


def _free_memory() -> None:
    """Drop a model before the next stage loads another (the trainer, a judge model)."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


def run_iterate(cfg: IterateConfig, report: Reporter | None = None, judge: Judge | None = None, ask=None) -> list[dict]:
    return Iteration(cfg, report, judge, ask).run()


def config_from_dict(values: dict) -> IterateConfig:
    names = {f.name for f in fields(IterateConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"unknown iterate setting(s): {', '.join(unknown)}")
    return IterateConfig(**values)


