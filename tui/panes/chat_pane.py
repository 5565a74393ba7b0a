"""Chat: base + adapter, streaming, multi-turn; compare answers the same prompt with base and tuned.

Lines starting with "/" are the app's commands, never sent to the model: /help, /reset, /system TEXT,
/compare (on/off). Turning compare on keeps the conversation: the base side continues from it.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from ..messages import ChatChunk, ChatDone, ChatLoaded, JobFailed
from ..widgets.toggle import Toggle

COMMANDS = {"/help": "list these commands", "/reset": "start a new conversation (both sides)",
            "/system TEXT": "set the system message and start a new conversation",
            "/compare": "answer with the base model too (again: off)"}


class Transcript(VerticalScroll):
    """One side of the conversation; the last assistant message grows as chunks arrive.

    It takes the focus (to scroll it with the keys) and shows that it has it (see app.tcss)."""

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

    def add_note(self, text: str) -> None:
        """A line from the app (not the model): command help, what a reset did."""
        self.mount(Static(Text(text, style="dim italic"), classes="msg-note"))
        self.scroll_end(animate=False)

    def replay(self, history: list[dict]) -> None:
        """Show an earlier conversation (the base side joining it when compare is turned on)."""
        for m in history:
            if m["role"] == "user":
                self.mount(Static(Text(f"you: {m['content']}", style="bold cyan"), classes="msg-user"))
            elif m["role"] == "assistant":
                self.mount(Static(Text(m["content"], style="dim"), classes="msg-assistant"))
        self.current = None
        self.scroll_end(animate=False)

    def clear_all(self) -> None:
        self.remove_children()
        self.current, self.text = None, ""


class ChatPane(Vertical):
    KEYS_EXTRA = [("enter", "send the message"), ("/help", "the chat's commands (/reset, /system TEXT, /compare)")]
    BINDINGS = [Binding("ctrl+l", "load", "Load model"), Binding("ctrl+n", "new", "New chat"),
                Binding("ctrl+t", "compare", "Compare")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: dict[str, list[dict]] = {"tuned": [], "base": []}
        self.pending: set[str] = set()
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Button("Load", id="chat-load", variant="primary", compact=True)
            yield Static("nothing loaded", id="chat-model", markup=False)
        with Horizontal(id="chat-options"):
            yield Toggle("compare with base", False, id="chat-compare", compact=True)
            yield Label("temperature", classes="chat-label")
            yield Input("0.7", id="chat-temperature", classes="small-input", compact=True)
            yield Label("max tokens", classes="chat-label")
            yield Input("256", id="chat-max-tokens", classes="small-input", compact=True)
        yield Input("", id="chat-system", compact=True,
                    placeholder="system message (optional; applies from the next conversation, ctrl+n)")
        with Horizontal(id="chat-transcripts"):
            yield Transcript("tuned (base + adapter)", id="chat-tuned")
            yield Transcript("base", id="chat-base")
        yield Input(id="chat-input", placeholder="Type a message, Enter sends · /help lists the commands")

    def on_mount(self) -> None:
        self.query_one("#chat-base").display = False

    def focus_first(self) -> None:
        self.app.focus_if_shown(self.query_one("#chat-input"))

    # ------------------------------------------------------------------ keys
    def action_load(self) -> None:
        self.load()

    def action_new(self) -> None:
        self.reset(note="new conversation")

    def action_compare(self) -> None:
        switch = self.query_one("#chat-compare", Toggle)
        switch.value = not switch.value

    @on(Toggle.Changed, "#chat-compare")
    def toggle_compare(self, event: Toggle.Changed) -> None:
        base = self.query_one("#chat-base", Transcript)
        base.display = event.value
        if event.value:
            # The base side joins the conversation as it stands (nothing is cleared): it answers the next
            # message with the same history the tuned side has.
            self.history["base"] = [dict(m) for m in self.history["tuned"]]
            base.clear_all()
            if len(self.history["base"]) > (1 if self.history["base"][:1] and
                                            self.history["base"][0]["role"] == "system" else 0):
                base.replay(self.history["base"])
                base.add_note("(the conversation so far, as the tuned model answered it)")

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
        self.focus_first()

    def sampling(self) -> dict:
        try:
            return {"temperature": float(self.query_one("#chat-temperature", Input).value),
                    "max_tokens": int(self.query_one("#chat-max-tokens", Input).value)}
        except ValueError:
            self.app.notify("temperature and max tokens must be numbers", severity="error")
            return {}

    def reset(self, note: str = "") -> None:
        system = self.query_one("#chat-system", Input).value.strip()
        start = [{"role": "system", "content": system}] if system else []
        self.history = {"tuned": list(start), "base": list(start)}
        for t in self.query(Transcript):
            t.clear_all()
            if note:
                t.add_note(note + (f" (system: {system})" if system else ""))

    def command(self, text: str) -> None:
        """An app command typed in the message line (never sent to the model)."""
        name, _, rest = text.partition(" ")
        tuned = self.query_one("#chat-tuned", Transcript)
        if name == "/help":
            tuned.add_note("commands: " + " · ".join(f"{c} {what}" for c, what in COMMANDS.items())
                           + " · keys: ctrl+l load, ctrl+n new conversation, ctrl+t compare")
        elif name == "/reset":
            self.reset(note="new conversation")
        elif name == "/system":
            self.query_one("#chat-system", Input).value = rest.strip()
            self.reset(note="new conversation")
        elif name == "/compare":
            self.action_compare()
        else:
            self.app.notify(f"unknown command {name}: /help lists the commands", severity="warning")

    @on(Input.Submitted, "#chat-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text.startswith("/"):
            self.command(text)
            return
        if not self.loaded:
            self.app.notify("Load a model first (ctrl+l)", severity="warning")
            return
        if self.pending:
            self.app.notify("still answering …", severity="warning")
            return
        sampling = self.sampling()
        if not sampling:
            return
        variants = ["tuned", "base"] if self.query_one("#chat-compare", Toggle).value else ["tuned"]
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
