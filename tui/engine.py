"""The engine thread: one long-lived thread that owns every MLX array of the UI process.

Since mlx 0.31.2 arrays belong to the thread that created them, and Textual's thread workers start a
new thread per call, so all in-process MLX work (data statistics, chat, export) runs here, in order,
taken from a queue; the A/B chat (ABChat, which holds the chat model) lives here too, and the preference
file's appends, undo and counts run here, in order with the picks that produce them. Results go back
with `post_message`, which is thread-safe. Training does not run here: it is a child process (see
training.py). This is the only tui module that imports MLX code, and only inside the jobs: `mlx_dpo`'s
public names load their module on first use, so the UI thread never loads MLX.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from textual.message_pump import MessagePump

from mlx_dpo import DataError, TrainingStopped, UsageError

from .messages import (ABAnswers, ABChunk, ABRevealed, ABStarted, ChatChunk, ChatDone, ChatLoaded, CompareProgress,
                       CompareReady, DataInspected, EvalDone, EvalProgress, ExportDone, ExportLog, JobFailed, MemoryEstimated, PrefsUpdated)

FLUSH_SECONDS = 0.05  # batch streamed tokens: one UI message per ~50 ms, not one per token



def chat_target(model: str, adapter: str | None) -> str:
    """What Chat talks to, the adapter first (a narrow header cuts the end, and the adapter is what changes)."""
    name = Path(model).name or model
    return f"adapter {adapter} on {name}" if adapter else f"{name} (no adapter)"

class Engine:
    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._chat = None  # (model, tokenizer, switch, description)
        self._ab = None  # the ABChat of A/B mode (it holds the chat model: it lives on this thread only)
        self._saved: list[tuple] = []  # rows this app appended, newest last: (path, row, A/B state before it)
        self._cancel_chat = threading.Event()  # set by stop(): a streaming answer ends early
        self._template_kwargs: dict = {}  # the chat template's variables (the Model tab's), for every chat render

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._cancel_chat.set()
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, fn, reply_to = item
            try:
                fn(reply_to)
            except Exception as e:  # a failed job is shown, never fatal to the app
                if isinstance(e, DataError):
                    text = "\n".join(e.errors[:20])
                elif isinstance(e, (UsageError, TrainingStopped)):
                    text = str(e)
                else:
                    text = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=3))
                reply_to.post_message(JobFailed(job, text, getattr(e, "key", None)))

    def submit(self, job: str, fn: Callable[[MessagePump], None], reply_to: MessagePump) -> None:
        """Queue `fn(reply_to)`; its results and any failure are posted to `reply_to`."""
        self._jobs.put((job, fn, reply_to))

    # ---------------------------------------------------------------- jobs
    def inspect_data(self, reply_to: MessagePump, path: str, model: str | None, keys: dict, max_length: int,
                     prompt_limit: int, job_name: str = "data", example: int = 0, source: dict | None = None,
                     template_kwargs: dict | None = None) -> None:
        """`source`: split / subset / revision / skip_invalid, as data.preview.inspect_data takes them;
        `template_kwargs`: the chat template's variables the pairs are rendered with (as training will)."""
        def job(to):
            from mlx_dpo import DataKeys, inspect_data, load_tokenizer_only, set_render_options
            tok = load_tokenizer_only(model) if model else None
            if tok is not None and template_kwargs:
                set_render_options(tok, template_kwargs=template_kwargs)
            result = inspect_data(path, DataKeys(**keys), tok, max_length, prompt_limit, example=example,
                                  **(source or {}))
            result["example_index"] = example
            to.post_message(DataInspected(job_name, result))
        self.submit(job_name, job, reply_to)

    def estimate_memory(self, reply_to: MessagePump, model: str, flags: dict, config: dict, processes: int) -> None:
        """The memory a run of the Train form's `flags` (over its --config values `config`) would need, on the
        data's token lengths when `flags` name data (the engine's own check: what the trainer would refuse)."""
        def job(to):
            from mlx_dpo import build_config, estimate_run, human_bytes as human
            cfg = build_config(config, {**flags, "model": model})
            fit = estimate_run(cfg, processes)
            est = fit.estimate
            text = (f"weights {human(est.weights)} + adapter/optimizer {human(est.adapter)} + "
                    f"activations {human(est.blocks)} + workspace {human(est.workspace)} + LM head "
                    f"{human(est.head)} = {human(est.peak)} of {human(est.available)} available")
            to.post_message(MemoryEstimated("memory", text, est.fits, model, fit.as_dict()))
        self.submit("memory", job, reply_to)

    def load_chat(self, reply_to: MessagePump, model: str, adapter: str | None) -> None:
        def job(to):
            from mlx_dpo import load_for_generation
            self._chat, self._ab = None, None
            m, tok, switch = load_for_generation(model, adapter, log=lambda s: None,
                                                 template_kwargs=self._template_kwargs or None)
            desc = chat_target(model, adapter)
            self._chat = (m, tok, switch, desc)
            to.post_message(ChatLoaded("chat-load", desc))
        self.submit("chat-load", job, reply_to)

    def set_template_kwargs(self, kwargs: dict) -> None:
        """The chat template's variables (the Model tab's) for every later chat and A/B answer: set on the loaded
        model's tokenizer too, so no reload is needed; queued, so answers asked before the change keep the old."""
        def job(to):
            from mlx_dpo import set_render_options
            self._template_kwargs = dict(kwargs)
            if self._chat is not None:  # the A/B chat renders with the same tokenizer
                set_render_options(self._chat[1], template_kwargs=self._template_kwargs or None)
        self.submit("template", job, None)

    def chat(self, reply_to: MessagePump, messages: list[dict], sampling: dict, variant: str = "tuned") -> None:
        """Answer `messages`; variant 'base' answers with the adapter switched off."""
        self._cancel_chat.clear()

        def job(to):
            from mlx_dpo import Sampling, stream_answer
            if self._chat is None:
                raise RuntimeError("no model loaded for chat")
            model, tok, switch, _ = self._chat
            if switch is not None:
                switch.set(variant != "base")
            pieces, pending, last = [], [], time.monotonic()
            for piece in stream_answer(model, tok, messages, Sampling(**sampling)):
                if self._cancel_chat.is_set():
                    break
                pieces.append(piece)
                pending.append(piece)
                if time.monotonic() - last >= FLUSH_SECONDS:
                    to.post_message(ChatChunk("chat", variant, "".join(pending)))
                    pending, last = [], time.monotonic()
            if pending:
                to.post_message(ChatChunk("chat", variant, "".join(pending)))
            to.post_message(ChatDone("chat", variant, "".join(pieces)))
        self.submit("chat", job, reply_to)

    def export(self, reply_to: MessagePump, options: dict) -> None:
        def job(to):
            from mlx_dpo import ExportConfig, run_export
            self._chat, self._ab = None, None  # free the chat model's memory before loading another copy
            result = run_export(ExportConfig(**options), log=lambda line: to.post_message(ExportLog("export", line)))
            to.post_message(ExportDone("export", f"exported {options['format']} to {result.output}: {result.verdict()}"))
        self.submit("export", job, reply_to)

    def evaluate_run(self, reply_to: MessagePump, run_dir: str, data: str, model: str | None = None) -> None:
        """`mlx-dpo eval` of a run's adapter on the held-out pairs `data`: its loss and reward metrics.

        As the CLI's eval: the reference is the one the run trained against (base + its init adapter,
        unless it trained against the base); the loss settings and lengths are the run's own."""
        def job(to):
            from mlx_dpo import Reporter, build_config, eval_flags_for_run, run_eval

            flags = eval_flags_for_run(run_dir, {"data": data},
                                       also=("batch_size", "cache_dir", "share_prompt", "tokens_per_batch"))
            if model and not flags.get("model"):
                flags["model"] = model
            if not flags.get("model"):
                raise UsageError(f"{run_dir}: its config names no model")
            cfg = build_config({}, flags)

            class Progress(Reporter):  # the eval's phases and tasks, as one line for the Runs tab
                def phase(self, phase, text):
                    to.post_message(EvalProgress("eval", run_dir, text))

                last = 0.0

                def task(self, name, done, total, label=""):
                    if done < total and time.monotonic() - self.last < 0.25:
                        return  # a few updates a second, not one per batch
                    self.last = time.monotonic()
                    to.post_message(EvalProgress("eval", run_dir, f"{label or name} {done}/{total}"))

            metrics = run_eval(cfg, run_dir, Progress())
            to.post_message(EvalDone("eval", run_dir, data, metrics))
        self.submit("eval", job, reply_to)

    def prepare_compare(self, reply_to: MessagePump, options: dict) -> None:
        """Both sides of a blind compare answer the held-out prompts (`options`: CompareConfig's fields, judge
        "human"); the Comparison comes back to be judged on the UI thread (its picks load no MLX)."""
        def job(to):
            from mlx_dpo import CompareConfig, Reporter, prepare_comparison

            self._chat, self._ab = None, None  # free the chat model's memory: each side loads its own copy

            class Progress(Reporter):
                last = 0.0

                def phase(self, phase, text):
                    to.post_message(CompareProgress("compare", text))

                def task(self, name, done, total, label=""):
                    if done < total and time.monotonic() - self.last < 0.25:
                        return
                    self.last = time.monotonic()
                    to.post_message(CompareProgress("compare", f"{label or name} {done}/{total}"))

            comparison = prepare_comparison(CompareConfig(**options, judge="human"), Progress())
            to.post_message(CompareReady("compare", comparison))
        self.submit("compare", job, reply_to)

    # ---------------------------------------------------------------- A/B answers and the preference file
    def ab_start(self, reply_to: MessagePump, source: str, sampling: dict, system: str | None, history: list[dict],
                 meta: dict, seed: int = 0) -> None:
        """A/B mode on the loaded chat model: `source` is "base", "samples" or another adapter's folder; the
        conversation goes on from `history`."""
        def job(to):
            from mlx_dpo import ABChat, Sampling
            if self._chat is None:
                raise UsageError("load a model first (ctrl+l)")
            model, tok, switch, _ = self._chat
            self._ab = None
            ab = ABChat(model, tok, switch, Sampling(**sampling), source, system, seed=seed, meta=meta)
            if history:
                ab.messages = [dict(m) for m in history]
            self._ab = ab
            what = {"base": "tuned vs base", "samples": "two samples"}.get(source, f"tuned vs {source}")
            to.post_message(ABStarted("ab-start", what))
        self.submit("ab-start", job, reply_to)

    def ab_stop(self) -> None:
        def job(to):
            self._ab = None
        self.submit("ab-stop", job, None)

    def _ab_chat(self):
        if self._ab is None:
            raise UsageError("A/B mode is off (ctrl+b turns it on)")
        return self._ab

    def _ab_answer(self, to, fn, sides) -> None:
        """Run `fn(on_piece)` (ask or regenerate), streaming each side's pieces in ~50 ms batches."""
        self._cancel_chat.clear()
        pending, last = {"A": [], "B": []}, [time.monotonic()]

        def flush():
            for side, pieces in pending.items():
                if pieces:
                    to.post_message(ABChunk("ab", side, "".join(pieces)))
                    pieces.clear()
            last[0] = time.monotonic()

        def on_piece(side, piece):
            pending[side].append(piece)
            if time.monotonic() - last[0] >= FLUSH_SECONDS:
                flush()

        turn = fn(on_piece)
        flush()
        answered = tuple(s for s in ("A", "B") if s in sides or s in turn.retried)  # a side answered again too
        to.post_message(ABAnswers("ab", turn.texts, answered, turn.problem,
                                  {s: why[0] for s, why in turn.retried.items()}))

    def ab_ask(self, reply_to: MessagePump, text: str) -> None:
        def job(to):
            ab = self._ab_chat()
            self._ab_answer(to, lambda on_piece: ab.ask(text, on_piece=on_piece), ("A", "B"))
        self.submit("ab", job, reply_to)

    def ab_regenerate(self, reply_to: MessagePump, side: str | None = None) -> None:
        """Both answers again ("both bad"), or only `side`'s."""
        def job(to):
            ab = self._ab_chat()
            self._ab_answer(to, lambda on_piece: ab.regenerate(side, on_piece=on_piece), (side,) if side else ("A", "B"))
        self.submit("ab", job, reply_to)

    def ab_pick(self, reply_to: MessagePump, side: str, path: str, edited: str | None = None) -> None:
        """Pick `side` (its text replaced by `edited`): the pair is appended to `path` at once; the conversation
        goes on with the chosen text whether or not the file could be written."""
        def job(to):
            ab = self._ab_chat()
            before = ([dict(m) for m in ab.messages], ab.pending)
            turn = ab.pending
            row = ab.pair(side, edited)  # checked as train checks rows (UsageError: the answers wait)
            if not self._save_row(to, path, row, before, f"saved: {side} preferred"):
                return  # not written (another kind of file, a full disk): the answers wait for a pick
            ab.commit(row)
            to.post_message(ABRevealed("ab-pick", side, turn.sources, ab.messages[-1]["content"],
                                       [dict(m) for m in ab.messages]))
        self.submit("ab-pick", job, reply_to)

    def ab_tie(self, reply_to: MessagePump) -> None:
        """No preference: nothing is saved, the conversation goes on with answer A."""
        def job(to):
            ab = self._ab_chat()
            turn = ab.tie()
            to.post_message(ABRevealed("ab-tie", None, turn.sources, ab.messages[-1]["content"],
                                       [dict(m) for m in ab.messages]))
        self.submit("ab-tie", job, reply_to)

    def save_thumb(self, reply_to: MessagePump, path: str, prompt: list[dict], answer: str, good: bool,
                   meta: dict) -> None:
        """A thumbs up/down on a single answer: an unpaired row appended to `path`."""
        def job(to):
            from mlx_dpo import unpaired_row
            row = unpaired_row(prompt, answer, good, **meta)
            self._save_row(to, path, row, None, "saved: thumbs " + ("up" if good else "down"))
        self.submit("prefs", job, reply_to)

    def _save_row(self, to, path: str, row: dict, before, text: str) -> bool:
        """Append `row` to the preference file (checked first: the kind of file, the trainer's row rules);
        remember it for undo (with the A/B state `before` it, if any). False: not written, and said why."""
        from mlx_dpo import PreferenceFile
        try:
            PreferenceFile(path).append(row)
        except UsageError as e:
            self._post_counts(to, path, error=f"not saved: {e}", unsaved=True)
            return False
        self._saved.append((path, row, before))
        self._post_counts(to, path, text=text, change=1)
        return True

    def undo_last(self, reply_to: MessagePump) -> None:
        """Remove the last row this app appended (if it is still its file's last line); an undone pick brings
        its two answers back to be picked again."""
        def job(to):
            from mlx_dpo import PreferenceFile
            if not self._saved:
                raise UsageError("nothing to undo: no row saved in this session")
            path, row, before = self._saved[-1]
            if not PreferenceFile(path).undo(row):
                self._saved.clear()
                raise UsageError(f"cannot undo: the last row of {path} is no longer this chat's")
            self._saved.pop()
            if before is not None and self._ab is not None:
                self._ab.messages, self._ab.pending = before
                to.post_message(ABAnswers("ab-undo", before[1].texts, ("A", "B")))
            self._post_counts(to, path, text="removed the last row", change=-1)
        self.submit("prefs", job, reply_to)

    def count_prefs(self, reply_to: MessagePump, path: str) -> None:
        self.submit("prefs", lambda to: self._post_counts(to, path), reply_to)

    @staticmethod
    def _post_counts(to, path: str, text: str = "", error: str = "", change: int = 0, unsaved: bool = False) -> None:
        """Count the file's rows (all, and unpaired thumbs rows) and post them (plain file reading, no MLX)."""
        import json
        from mlx_dpo import PreferenceFile
        try:
            rows = PreferenceFile(path).count()
            unpaired = 0
            if rows:
                with open(path, "rb") as fh:
                    unpaired = sum(1 for raw in fh if raw.strip() and "label" in json.loads(raw))
        except UsageError as e:
            to.post_message(PrefsUpdated("prefs", path, 0, 0, text, error or str(e), unsaved=unsaved))
            return
        to.post_message(PrefsUpdated("prefs", path, rows, unpaired, text, error, change, unsaved))
