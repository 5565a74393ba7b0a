"""Messages the engine thread and the training process send to the app (posted thread-safely).

The Training* messages carry the trainer's structured events (see training.py), never its log text."""

from __future__ import annotations

from textual.message import Message


class EngineMessage(Message):
    """Base class: every engine result names the job that produced it."""

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job


class JobFailed(EngineMessage):
    """A job failed: `error` is its message; `key` the setting a usage error concerns (None: none named)."""

    def __init__(self, job: str, error: str, key: str | None = None) -> None:
        super().__init__(job)
        self.error, self.key = error, key


class DataInspected(EngineMessage):
    def __init__(self, job: str, result: dict) -> None:
        super().__init__(job)
        self.result = result


class MemoryEstimated(EngineMessage):
    """The memory a training run would need; `model` is the model it was estimated for (found and readable);
    `estimate`: the engine's figures as data (mlx_dpo.estimate_run(...).as_dict(): peak, budget and its
    source, the worst micro-batch and where its lengths came from, suggestions that fit)."""

    def __init__(self, job: str, text: str, fits: bool | None, model: str | None = None,
                 estimate: dict | None = None) -> None:
        super().__init__(job)
        self.text, self.fits, self.model = text, fits, model
        self.estimate = estimate or {}


class ChatLoaded(EngineMessage):
    def __init__(self, job: str, description: str) -> None:
        super().__init__(job)
        self.description = description


class ChatChunk(EngineMessage):
    """A batch of streamed text (sent about every 50 ms, not per token)."""

    def __init__(self, job: str, variant: str, text: str) -> None:
        super().__init__(job)
        self.variant, self.text = variant, text


class ChatDone(EngineMessage):
    def __init__(self, job: str, variant: str, text: str) -> None:
        super().__init__(job)
        self.variant, self.text = variant, text


class ExportLog(EngineMessage):
    def __init__(self, job: str, line: str) -> None:
        super().__init__(job)
        self.line = line


class ExportDone(EngineMessage):
    def __init__(self, job: str, summary: str) -> None:
        super().__init__(job)
        self.summary = summary


class TrainingLog(Message):
    """A line for the Train log: the trainer's "log" events, or raw output (tracebacks, the launcher's lines)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class TrainingPhase(Message):
    """What the run does before and while it trains: load, data, reference, train."""

    def __init__(self, phase: str, text: str) -> None:
        super().__init__()
        self.phase, self.text = phase, text


class TrainingSamples(Message):
    """The model's greedy answers to the sample prompts after `step` (0: the starting model): the trainer's
    `samples` event, each {"prompt", "answer", ...; "base": the start's answer}."""

    def __init__(self, step: int, samples: list[dict]) -> None:
        super().__init__()
        self.step, self.samples = step, [dict(s) for s in samples]


class TrainingWarning(Message):
    """A health warning of the trainer (`warning` event): what went wrong, and the fix."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__()
        self.kind, self.message = kind, message


class TrainingTask(Message):
    """Progress of a long step before or beside training: tokenize, reference or eval; `done` of `total`."""

    def __init__(self, name: str, done: int, total: int, label: str) -> None:
        super().__init__()
        self.name, self.done, self.total, self.label = name, done, total, label


class TrainingStarted(Message):
    """The training loop begins at `step` (0, or the step a resumed run continues after)."""

    def __init__(self, total_steps: int, step: int) -> None:
        super().__init__()
        self.total_steps, self.step = total_steps, step


class TrainingProgress(Message):
    """Optimizer step `step` of `total_steps` is done."""

    def __init__(self, step: int, total_steps: int) -> None:
        super().__init__()
        self.step, self.total_steps = step, total_steps


class TrainingMetrics(Message):
    """New rows of the run's metrics.jsonl (training rows have "loss", eval rows "eval/loss")."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.rows = rows


class TrainingEnded(Message):
    def __init__(self, returncode: int, message: str) -> None:
        super().__init__()
        self.returncode, self.message = returncode, message


class ABStarted(EngineMessage):
    """A/B mode is ready: every next message is answered twice (`description` names the two sources)."""

    def __init__(self, job: str, description: str) -> None:
        super().__init__(job)
        self.description = description


class ABChunk(EngineMessage):
    """Streamed text of side A or B (batched like ChatChunk)."""

    def __init__(self, job: str, side: str, text: str) -> None:
        super().__init__(job)
        self.side, self.text = side, text


class ABAnswers(EngineMessage):
    """Both answers to the last user message (or one side answered again); `sides` were (re)generated;
    `retried`: side -> why it was answered again (an empty answer, the same as the other side); `problem`:
    why these answers still cannot make a pair (the person edits one, or ties)."""

    def __init__(self, job: str, texts: dict, sides: tuple = ("A", "B"), problem: str | None = None,
                 retried: dict | None = None) -> None:
        super().__init__(job)
        self.texts, self.sides, self.problem, self.retried = dict(texts), tuple(sides), problem, dict(retried or {})


class ABRevealed(EngineMessage):
    """A pick (side "A"/"B") or a tie (side None): which source each side was, and the conversation now."""

    def __init__(self, job: str, side: str | None, sources: dict, chosen: str, messages: list[dict]) -> None:
        super().__init__(job)
        self.side, self.sources, self.chosen, self.messages = side, dict(sources), chosen, messages


class PrefsUpdated(EngineMessage):
    """The preference file after a write, an undo or a count: `rows` in all, `unpaired` of them thumbs rows;
    `error` is a one-line message when the file could not be read or written (nothing else changed);
    `change`: +1 a row was saved, -1 the last one removed, 0 a count; `unsaved`: a row could not be written."""

    def __init__(self, job: str, path: str, rows: int, unpaired: int, text: str = "", error: str = "",
                 change: int = 0, unsaved: bool = False) -> None:
        super().__init__(job)
        self.path, self.rows, self.unpaired, self.text, self.error = path, rows, unpaired, text, error
        self.change, self.unsaved = change, unsaved


class IterationRound(Message):
    """`mlx-dpo iterate`: a round ended; `report` is its line of DIR/rounds.jsonl (round 0: the start model)."""

    def __init__(self, report: dict) -> None:
        super().__init__()
        self.report = dict(report)


class EvalProgress(EngineMessage):
    """What the Runs tab's evaluation of a run does now (loading, scoring the reference, evaluating)."""

    def __init__(self, job: str, run: str, text: str) -> None:
        super().__init__(job)
        self.run, self.text = run, text


class EvalDone(EngineMessage):
    """A run's adapter evaluated on held-out pairs (`data`): the DPO metrics of `mlx-dpo eval`."""

    def __init__(self, job: str, run: str, data: str, metrics: dict) -> None:
        super().__init__(job)
        self.run, self.data, self.metrics = run, data, dict(metrics)


class CompareProgress(EngineMessage):
    """What the blind compare's preparation does now (loading a side, answering the held-out prompts)."""

    def __init__(self, job: str, text: str) -> None:
        super().__init__(job)
        self.text = text


class CompareReady(EngineMessage):
    """Both sides answered every prompt: the engine's Comparison (its duels hold text only, no MLX; its
    record_pick appends a verdict to RUN_DIR/compare-*.jsonl from the UI thread)."""

    def __init__(self, job: str, comparison) -> None:
        super().__init__(job)
        self.comparison = comparison
