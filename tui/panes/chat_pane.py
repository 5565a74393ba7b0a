"""Chat: base + adapter, streaming, multi-turn; compare answers the same prompt with base and tuned."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, Static

from ..messages import ChatChunk, ChatDone, ChatLoaded, JobFailed


class Transcript(VerticalScroll):
    """One side of the conversation; the last assistant message grows as chunks arrive."""

    def __init__(self, title: str, **kw):
        super().__init__(**kw)
        self.border_title = title
        self.current: Static | None = None
        self.text = ""

    def add_user(self, text: str) -> None:
        self.mount(Static(Text(f"you: {text}", style="bold cyan"), classes="msg-user"))
        self.current, self.text = Static("…", classes="msg-assistant", markup=False), ""
        self.mount(self.current)
        self.scroll_end(animate=False)

    def add_chunk(self, text: str) -> None:
        self.text += text
        if self.current is not None:
            self.current.update(Text(self.text))  # model output is text, never markup
            self.scroll_end(animate=False)

    def clear_all(self) -> None:
        self.remove_children()
        self.current, self.text = None, ""


class ChatPane(Vertical):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: dict[str, list[dict]] = {"tuned": [], "base": []}
        self.pending: set[str] = set()
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Button("Load model + adapter", id="chat-load", variant="primary")
            yield Static("nothing loaded", id="chat-model", markup=False)
        with Horizontal(classes="row"):
            yield Checkbox("compare with base", id="chat-compare")
            yield Label("temperature", classes="form-label")
            yield Input("0.7", id="chat-temperature", classes="small-input")
            yield Label("max tokens", classes="form-label")
            yield Input("256", id="chat-max-tokens", classes="small-input")
        yield Input("", id="chat-system", placeholder="system message (optional; applies after /reset or Load)")
        with Horizontal(id="chat-transcripts"):
            yield Transcript("tuned (base + adapter)", id="chat-tuned")
            yield Transcript("base", id="chat-base")
        yield Input(id="chat-input", placeholder="Type a message and press Enter · /reset clears")

    def on_mount(self) -> None:
        self.query_one("#chat-base").display = False

    @on(Checkbox.Changed, "#chat-compare")
    def toggle_compare(self, event: Checkbox.Changed) -> None:
        self.query_one("#chat-base").display = event.value
        if event.value:
            self.reset()  # both sides start from the same conversation

    def unload(self) -> None:
        self.loaded = False
        self.query_one("#chat-model", Static).update("unloaded (an export needed the memory): press Load")

    def show_target(self) -> None:
        if not self.loaded:
            adapter = self.app.run_dir or "no adapter (pick a run on Runs)"
            self.query_one("#chat-model", Static).update(f"Load will use {self.app.model or '(no model)'} + {adapter}")

    @on(Button.Pressed, "#chat-load")
    def load(self) -> None:
        if not self.app.model:
            self.app.notify("Choose a model on the Model tab first", severity="warning")
            return
        if self.app.training_running and self.app.run_dir:
            self.app.notify("that run is still training: chatting with its last checkpoint", severity="warning")
        self.query_one("#chat-model", Static).update("loading …")
        self.app.engine.load_chat(self, self.app.model, self.app.run_dir)

    def on_chat_loaded(self, message: ChatLoaded) -> None:
        self.loaded = True
        self.reset()
        self.query_one("#chat-model", Static).update(message.description)
        self.query_one("#chat-input", Input).focus()

    def sampling(self) -> dict:
        try:
            return {"temperature": float(self.query_one("#chat-temperature", Input).value),
                    "max_tokens": int(self.query_one("#chat-max-tokens", Input).value)}
        except ValueError:
            self.app.notify("temperature and max tokens must be numbers", severity="error")
            return {}

    def reset(self) -> None:
        system = self.query_one("#chat-system", Input).value.strip()
        start = [{"role": "system", "content": system}] if system else []
        self.history = {"tuned": list(start), "base": list(start)}
        for t in self.query(Transcript):
            t.clear_all()

    @on(Input.Submitted, "#chat-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text == "/reset":
            self.reset()
            return
        if not self.loaded:
            self.app.notify("Load a model first", severity="warning")
            return
        if self.pending:
            self.app.notify("still answering …", severity="warning")
            return
        sampling = self.sampling()
        if not sampling:
            return
        variants = ["tuned", "base"] if self.query_one("#chat-compare", Checkbox).value else ["tuned"]
        for v in variants:
            self.history[v].append({"role": "user", "content": text})
            self.query_one(f"#chat-{v}", Transcript).add_user(text)
            self.pending.add(v)
            self.app.engine.chat(self, list(self.history[v]), sampling, variant=v)

    def on_chat_chunk(self, message: ChatChunk) -> None:
        self.query_one(f"#chat-{message.variant}", Transcript).add_chunk(message.text)

    def on_chat_done(self, message: ChatDone) -> None:
        self.history[message.variant].append({"role": "assistant", "content": message.text})
        self.pending.discard(message.variant)
        t = self.query_one(f"#chat-{message.variant}", Transcript)
        if t.current is not None and not message.text:
            t.current.update(Text("(empty answer)", style="dim"))

    def on_job_failed(self, message: JobFailed) -> None:
        self.pending.clear()
        self.query_one("#chat-model", Static).update(Text(message.error.splitlines()[0], style="red"))
        self.app.notify(message.error.splitlines()[0], severity="error")
