"""The engine thread: one long-lived thread that owns every MLX array of the UI process.

Since mlx 0.31.2 arrays belong to the thread that created them, and Textual's thread workers start a
new thread per call, so all in-process MLX work (data statistics, chat, export) runs here, in order,
taken from a queue. Results go back with `post_message`, which is thread-safe. Training does not run
here: it is a child process (see training.py). This is the only tui module that imports MLX code, and
only inside the jobs: `mlx_dpo`'s public names load their module on first use, so the UI thread never
loads MLX.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Callable

from textual.message_pump import MessagePump

from mlx_dpo import DataError, TrainingStopped, UsageError

from .messages import (ChatChunk, ChatDone, ChatLoaded, DataInspected, ExportDone, ExportLog, JobFailed,
                       MemoryEstimated)

FLUSH_SECONDS = 0.05  # batch streamed tokens: one UI message per ~50 ms, not one per token


class Engine:
    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._chat = None  # (model, tokenizer, switch, description)
        self._cancel_chat = threading.Event()  # set by stop(): a streaming answer ends early

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
                reply_to.post_message(JobFailed(job, text))

    def submit(self, job: str, fn: Callable[[MessagePump], None], reply_to: MessagePump) -> None:
        """Queue `fn(reply_to)`; its results and any failure are posted to `reply_to`."""
        self._jobs.put((job, fn, reply_to))

    # ---------------------------------------------------------------- jobs
    def inspect_data(self, reply_to: MessagePump, path: str, model: str | None, keys: dict, max_length: int,
                     prompt_limit: int, job_name: str = "data", example: int = 0) -> None:
        def job(to):
            from mlx_dpo import DataKeys, inspect_data, load_tokenizer_only
            tok = load_tokenizer_only(model) if model else None
            result = inspect_data(path, DataKeys(**keys), tok, max_length, prompt_limit, example=example)
            result["example_index"] = example
            to.post_message(DataInspected(job_name, result))
        self.submit(job_name, job, reply_to)

    def estimate_memory(self, reply_to: MessagePump, model: str, batch_size: int, max_length: int, lora_rank: int,
                        quantize: int | None, grad_checkpoint: bool) -> None:
        def job(to):
            from mlx_dpo import estimate_memory, human_bytes as human, resolve_model_path
            est = estimate_memory(resolve_model_path(model), batch_size=batch_size, max_length=max_length,
                                  lora_rank=lora_rank, quantize=quantize, grad_checkpoint=grad_checkpoint)
            text = (f"weights {human(est.weights)} + adapter/optimizer {human(est.adapter_and_optimizer)} + "
                    f"activations {human(est.activations)} + logits {human(est.logits)} = {human(est.total)} "
                    f"of {human(est.available)} available")
            to.post_message(MemoryEstimated("memory", text, est.fits, model))
        self.submit("memory", job, reply_to)

    def load_chat(self, reply_to: MessagePump, model: str, adapter: str | None) -> None:
        def job(to):
            from mlx_dpo import load_for_generation
            self._chat = None
            m, tok, switch = load_for_generation(model, adapter, log=lambda s: None)
            desc = f"{model}" + (f" + {adapter}" if adapter else " (no adapter)")
            self._chat = (m, tok, switch, desc)
            to.post_message(ChatLoaded("chat-load", desc))
        self.submit("chat-load", job, reply_to)

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
            self._chat = None  # free the chat model's memory before loading another copy
            result = run_export(ExportConfig(**options), log=lambda line: to.post_message(ExportLog("export", line)))
            to.post_message(ExportDone("export", f"exported {options['format']} to {result.output}: {result.verdict()}"))
        self.submit("export", job, reply_to)
