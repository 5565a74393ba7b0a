"""Chat: base + adapter, streaming, multi-turn; compare answers the same prompt with base and tuned.

Lines starting with "/" are the app's commands, never sent to the model: /help, /reset, /system TEXT,
/compare (on/off). Turning compare on keeps the conversation: the base side continues from it.

A/B mode (ctrl+b) collects preferences: every message is answered twice, sides A and B shuffled per
message by the engine's ABChat (tuned vs base, two samples, or tuned vs another run's adapter). The focus
moves to the answers, where one key picks (a, b), ties (t), answers again (x both, r the focused side),
or edits the focused side before saving it (e). Each pick is appended at once to the preference file
(prefs/chat-DATE.jsonl beside the runs folder, changeable), ctrl+z takes the last row back; then the sides
are revealed and the conversation goes on with the picked answer. Outside A/B mode ctrl+g / ctrl+r rate the
last answer (thumbs: unpaired rows in the same file). ctrl+o opens the file on Data, ctrl+s prepares a run
on it on Train that continues from the adapter chatted with; when it finishes, Chat offers its adapter.
The ABChat holds the model, so it lives on the engine thread; the pane only sends jobs and shows replies.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from mlx_dpo import is_demo_model, list_runs

from ..confirm import EditAnswer
from ..engine import chat_target
from ..messages import (ABAnswers, ABChunk, ABRevealed, ABStarted, ChatChunk, ChatDone, ChatLoaded, JobFailed,
                        PrefsUpdated)
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

    def restart_answer(self) -> None:
        """The side's answer is generated again: its last answer starts over."""
        self.text = ""
        if self.current is None:
            self.current = Static("…", classes="msg-assistant", markup=False)
            self.mount(self.current)
        else:
            self.current.update("…")

    def set_answer(self, text: str) -> None:
        self.text = text
        if self.current is not None:
            self.current.update(Text(text) if text else Text("(empty answer)", style="dim"))
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


AB_SOURCES = [("A/B: tuned vs base", "base"), ("A/B: two samples", "samples"),
              ("A/B: vs adapter typed →", "other")]
AB_KEYS = ("pick", "tie", "both_bad", "again", "edit")
AB_SAMPLE_TEMPERATURE = 0.7  # A/B of two samples while the chat is greedy (the demo's default) samples this warm
# What the app says where the engine's message names a command-line flag (the error's key) the app has no field for.
APP_WORDS = {"temperature": "A/B of two samples needs a temperature > 0 (greedy answers would be the same)",
             "adapter": "A/B needs a loaded adapter first (pick a run on Runs, then Load)"}
JOBS_SHOWN_HERE = ("ab", "ab-start", "ab-stop", "ab-pick", "ab-tie", "prefs")  # failures this tab reports


class AB(Enum):
    """Where A/B collection stands: one state, so "answering / picking / saving" can never disagree."""
    OFF = "off"              # A/B mode is off (the transcripts are tuned and base)
    STARTING = "starting"    # the engine makes its ABChat (loading the model first if needed)
    READY = "ready"          # type a message
    ANSWERING = "answering"  # both answers (or one side again) are being generated
    PICKING = "picking"      # both answers are shown and wait for a pick (a, b, t, x, r, e)
    SAVING = "saving"        # a pick or a tie was sent: waiting for it to be saved and the sides revealed


RETRY_WORDS = {"empty": "empty", "same": "the same as the other side"}  # why the engine answered a side again


def why_words(why: str) -> str:
    return RETRY_WORDS.get(why, why)


def default_prefs(runs_root: str) -> str:
    """prefs/chat-DATE.jsonl beside the runs folder."""
    return str(Path(runs_root).parent / "prefs" / f"chat-{datetime.now():%Y%m%d}.jsonl")


class ChatPane(Vertical):
    KEYS_EXTRA = [("enter", "send the message"), ("/help", "the chat's commands (/reset, /system TEXT, /compare)"),
                  ("a b t x r e", "A/B mode, on the answers: pick A, pick B, tie, both bad (again), the focused "
                   "side again, edit the focused side")]
    # The pick keys come first: while two answers wait for a pick they are what the footer shows.
    BINDINGS = [Binding("a", "pick('A')", "Pick A"), Binding("b", "pick('B')", "Pick B"),
                Binding("t", "tie", "Tie", tooltip="tie / skip: nothing saved, the chat goes on with A"),
                Binding("x", "both_bad", "Both bad", tooltip="both bad: answer both sides again"),
                Binding("r", "again", "Again", tooltip="answer the focused side (A or B) again"),
                Binding("e", "edit", "Edit", tooltip="edit the focused side's answer, then save it as chosen"),
                Binding("ctrl+l", "load", "Load model"), Binding("ctrl+n", "new", "New chat"),
                Binding("ctrl+t", "compare", "Compare"),
                Binding("ctrl+b", "ab", "A/B", tooltip="A/B mode: answer twice, pick the better (on/off)"),
                Binding("ctrl+z", "undo", "Undo", tooltip="remove the last saved row (a pick comes back to pick again)"),
                Binding("ctrl+g", "thumb(True)", "Good", tooltip="thumbs up on the last answer (an unpaired row)"),
                Binding("ctrl+r", "thumb(False)", "Bad", tooltip="thumbs down on the last answer (an unpaired row)"),
                Binding("ctrl+o", "open_prefs", "Open in Data", tooltip="open the preference file on the Data tab"),
                Binding("ctrl+s", "train_prefs", "Train on it",
                        tooltip="prepare a run on the preference file on Train, from the adapter chatted with")]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.history: dict[str, list[dict]] = {"tuned": [], "base": []}
        self.pending: set[str] = set()
        self.loaded = False
        self.loading_adapter: str | None = None
        self.chat_adapter: str | None = None  # the adapter of the loaded model (None: the base alone)
        self.ab = AB.OFF
        self.ab_note = ""  # how A/B samples, where it differs from the chat's settings
        self.ab_texts: dict[str, str] = {}
        self.last_single: tuple[list[dict], str] | None = None  # (prompt, answer) for the thumbs
        self.rating: tuple[list[dict], str] | None = None  # the answer whose thumb is being saved
        self.prefs_rows = 0
        self.prefs_unpaired = 0
        self.undoable = 0
        self.offered: str | None = None  # a run trained on this chat's picks, offered for the next chat
        self.queued: str | None = None  # the first message, typed before anything was loaded (sent once it is)
        self.loading = False  # a model (and adapter) is being loaded

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Button("Load", id="chat-load", variant="primary", compact=True)
            yield Static("nothing loaded", id="chat-model", markup=False)
        with Horizontal(id="chat-options"):
            yield Toggle("compare with base", False, id="chat-compare", compact=True)
            yield Toggle("A/B", False, id="chat-ab", compact=True)
            yield Label("temperature", classes="chat-label")
            # The demo model babbles when sampled: greedy answers show what training changed.
            yield Input("0" if is_demo_model(self.app.model) else "0.7", id="chat-temperature",
                        classes="small-input", compact=True)
            yield Label("max tokens", classes="chat-label")
            yield Input("256", id="chat-max-tokens", classes="small-input", compact=True)
        yield Input("", id="chat-system", compact=True,
                    placeholder="system message (optional; applies from the next conversation, ctrl+n)")
        with Horizontal(id="chat-ab-row"):
            yield Select(AB_SOURCES, value="base", allow_blank=False, id="chat-ab-source", compact=True)
            yield Input("", id="chat-ab-other", compact=True, placeholder="adapter run dir")
            yield Input(default_prefs(self.app.runs_root), id="chat-prefs", compact=True)
            yield Static("", id="chat-prefs-count", markup=False)
        with Horizontal(id="chat-transcripts"):
            yield Transcript("tuned (base + adapter)", id="chat-tuned")
            yield Transcript("base", id="chat-base")
        yield Input(id="chat-input", placeholder="Type a message, Enter sends · /help lists the commands")

    def on_mount(self) -> None:
        self.query_one("#chat-base").display = False
        self.query_one("#chat-ab-row").display = False
        self.query_one("#chat-ab-other").display = False

    def focus_first(self) -> None:
        self.app.focus_if_shown(self.query_one("#chat-input"))

    # ------------------------------------------------------------------ keys
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows what can be done now: the pick keys while two answers wait for a pick, the
        thumbs after a single answer, the file's keys once it holds rows."""
        if action in AB_KEYS:
            return True if self.ab is AB.PICKING else False
        if action in ("load", "new") and self.ab is AB.PICKING:
            return False  # pick first (the footer keeps its room for the pick keys)
        if action == "compare":
            return False if self.ab_on else True
        if action == "thumb":
            return True if (self.last_single and not self.ab_on and not self.compare_on) else False
        if action == "undo":
            return True if self.undoable else False
        if action in ("open_prefs", "train_prefs"):
            return True if self.prefs_rows else False
        return True

    def why_not(self, action: str) -> str:
        if action in AB_KEYS:
            return "no A/B answers to pick from: turn A/B on (ctrl+b) and send a message"
        if action in ("open_prefs", "train_prefs"):
            return "the preference file holds no rows yet"
        return "not available now"

    @property
    def ab_on(self) -> bool:
        return self.query_one("#chat-ab", Toggle).value

    @property
    def compare_on(self) -> bool:
        return self.query_one("#chat-compare", Toggle).value

    def action_load(self) -> None:
        self.load()

    def action_new(self) -> None:
        self.reset(note="new conversation")
        if self.ab_on and self.loaded:
            self.start_ab()

    def action_compare(self) -> None:
        switch = self.query_one("#chat-compare", Toggle)
        switch.value = not switch.value

    def action_ab(self) -> None:
        switch = self.query_one("#chat-ab", Toggle)
        switch.value = not switch.value

    @on(Toggle.Changed, "#chat-compare")
    def toggle_compare(self, event: Toggle.Changed) -> None:
        base = self.query_one("#chat-base", Transcript)
        base.display = event.value
        if event.value:
            if self.ab_on:
                self.query_one("#chat-ab", Toggle).value = False
            # The base side joins the conversation as it stands (nothing is cleared): it answers the next
            # message with the same history the tuned side has.
            self.history["base"] = [dict(m) for m in self.history["tuned"]]
            base.clear_all()
            if len(self.history["base"]) > (1 if self.history["base"][:1] and
                                            self.history["base"][0]["role"] == "system" else 0):
                base.replay(self.history["base"])
                base.add_note("(the conversation so far, as the tuned model answered it)")
        self.refresh_bindings()

    # ------------------------------------------------------------------ A/B mode
    @on(Toggle.Changed, "#chat-ab")
    def toggle_ab(self, event: Toggle.Changed) -> None:
        tuned, base = self.query_one("#chat-tuned", Transcript), self.query_one("#chat-base", Transcript)
        self.query_one("#chat-ab-row").display = event.value
        if event.value:
            if self.compare_on:
                self.query_one("#chat-compare", Toggle).value = False
            self.refresh_sources()
            tuned.border_title, base.border_title = "A", "B"
            base.display = True
            for t in (tuned, base):
                t.clear_all()
                if self.conversation_started():
                    t.replay(self.history["tuned"])
                t.add_note("A/B: every message is answered twice; pick the better answer (a / b)")
            self.app.engine.count_prefs(self, self.prefs_path())
            if self.loaded:
                self.start_ab()
            else:  # A/B before anything is loaded: load what the header names; A/B starts once it is there
                self.set_ab(AB.STARTING)
                self.load()
        elif self.ab is not AB.OFF:
            self.set_ab(AB.OFF)
            self.app.engine.ab_stop()
            tuned.border_title, base.border_title = "tuned (base + adapter)", "base"
            base.display = self.compare_on
            tuned.add_note("A/B off: the conversation goes on with the picked answers")
            self.query_one("#chat-ab-row").display = bool(self.prefs_rows)
        self.refresh_bindings()

    def conversation_started(self) -> bool:
        return any(m["role"] != "system" for m in self.history["tuned"])

    def refresh_sources(self) -> None:
        """The A/B sources: tuned vs base, two samples, a typed adapter, and every other run with an adapter."""
        select = self.query_one("#chat-ab-source", Select)
        keep = select.value
        runs = [(f"A/B: tuned vs {r.name}", str(r.path)) for r in list_runs(self.app.runs_root)
                if (Path(r.path) / "adapters.safetensors").exists()
                and (self.chat_adapter is None or Path(r.path) != Path(self.chat_adapter))]
        options = AB_SOURCES + runs
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = keep if keep in [v for _, v in options] else "base"
            if select.value == "base" and not self.chat_adapter:
                select.value = "samples"  # without an adapter there is no tuned side

    def ab_source(self) -> str | None:
        value = self.query_one("#chat-ab-source", Select).value
        if value == "other":
            typed = self.query_one("#chat-ab-other", Input).value.strip()
            if not typed:
                self.app.notify("type the run dir of the other adapter (or choose a run in the list)",
                                severity="warning")
                self.app.focus_if_shown(self.query_one("#chat-ab-other"))
                return None
            return typed
        if value == "base" and not self.chat_adapter:
            self.app.notify("tuned vs base needs an adapter: pick a run on Runs (F4) and Load it, or choose "
                            "two samples", severity="warning", timeout=8)
            return None
        return str(value)

    def start_ab(self) -> None:
        """(Re)start the engine's ABChat on the conversation as it stands."""
        self.set_ab(AB.STARTING)
        source, sampling = self.ab_source(), self.sampling()
        if source is None or not sampling:
            return
        warm = ""
        if source == "samples" and sampling["temperature"] <= 0:  # greedy answers to one message are one answer
            sampling["temperature"] = AB_SAMPLE_TEMPERATURE
            warm = f", sampled at temperature {AB_SAMPLE_TEMPERATURE}: greedy samples would be the same"
        self.ab_note = warm
        self.query_one("#chat-model", Static).update(f"A/B: starting ({source}{warm}) …")
        meta = {"model": self.app.model, "adapter": self.chat_adapter}
        self.app.engine.ab_start(self, source, sampling, None, [dict(m) for m in self.history["tuned"]], meta)

    @on(Select.Changed, "#chat-ab-source")
    def source_changed(self, event: Select.Changed) -> None:
        self.query_one("#chat-ab-other").display = event.value == "other"
        if self.ab_on and event.value != "other":
            self.start_ab()

    @on(Input.Submitted, "#chat-ab-other")
    def other_typed(self) -> None:
        if self.ab_on:
            self.start_ab()

    def set_ab(self, state: AB) -> None:
        self.ab = state
        self.refresh_bindings()

    def on_abstarted(self, message: ABStarted) -> None:
        self.set_ab(AB.READY)
        self.query_one("#chat-model", Static).update(f"A/B ({message.description}{self.ab_note}): type a message")
        self.focus_first()
        self.send_queued()

    def on_abchunk(self, message: ABChunk) -> None:
        self.side(message.side).add_chunk(message.text)

    def on_abanswers(self, message: ABAnswers) -> None:
        self.ab_texts.update(message.texts)
        if message.job == "ab-undo":
            for t in self.sides():
                t.add_note("(pick undone: its row was removed; pick again)")
        else:
            for side in message.sides:
                self.side(side).set_answer(message.texts[side])
            for side, why in message.retried.items():
                self.side(side).add_note(f"(answered again: the first answer was {why_words(why)})")
        if message.problem:  # only an edit or a tie can go on from these answers
            self.query_one("#chat-model", Static).update(Text(f"{message.problem} · x both again", style="yellow"))
        else:
            self.query_one("#chat-model", Static).update("pick the better answer: a / b · t tie · x both bad · "
                                                         "r again · e edit")
        self.set_ab(AB.PICKING)
        self.app.focus_if_shown(self.query_one("#chat-tuned"))  # the letter keys work there

    def side(self, side: str) -> Transcript:
        return self.query_one("#chat-tuned" if side == "A" else "#chat-base", Transcript)

    def sides(self) -> list[Transcript]:
        return [self.side("A"), self.side("B")]

    def focused_side(self) -> str:
        return "B" if self.app.focused is self.side("B") else "A"

    def prefs_path(self) -> str:
        return self.query_one("#chat-prefs", Input).value.strip() or default_prefs(self.app.runs_root)

    def action_pick(self, side: str) -> None:
        if self.ab is not AB.PICKING:
            return
        self.set_ab(AB.SAVING)
        self.app.engine.ab_pick(self, side, self.prefs_path())

    def action_tie(self) -> None:
        if self.ab is AB.PICKING:
            self.set_ab(AB.SAVING)
            self.app.engine.ab_tie(self)

    def action_both_bad(self) -> None:
        self.regenerate(None)

    def action_again(self) -> None:
        self.regenerate(self.focused_side())

    def regenerate(self, side: str | None) -> None:
        if self.ab is not AB.PICKING:
            return
        self.set_ab(AB.ANSWERING)
        for s in ([side] if side else ["A", "B"]):
            self.side(s).restart_answer()
        self.query_one("#chat-model", Static).update("answering again …")
        self.app.engine.ab_regenerate(self, side)

    def action_edit(self) -> None:
        if self.ab is not AB.PICKING:
            return
        side = self.focused_side()

        def edited(text: str | None) -> None:
            if text is None or self.ab is not AB.PICKING:
                return
            self.side(side).set_answer(text)
            self.set_ab(AB.SAVING)
            self.app.engine.ab_pick(self, side, self.prefs_path(), edited=text)

        self.app.push_screen(EditAnswer(side, self.ab_texts.get(side, "")), edited)

    def on_abrevealed(self, message: ABRevealed) -> None:
        src = message.sources
        reveal = f"A was {src['A']}, B was {src['B']}"
        if message.side is None:
            for t in self.sides():
                t.add_note(f"(tie: nothing saved; the chat goes on with A · {reveal})")
        else:
            for t in self.sides():
                t.add_note(f"(picked {message.side} · {reveal})")
        self.history["tuned"] = [dict(m) for m in message.messages]
        self.history["base"] = [dict(m) for m in message.messages]
        self.ab_texts = {}
        self.query_one("#chat-model", Static).update(f"{reveal} · type the next message")
        self.set_ab(AB.READY)
        self.focus_first()

    def on_prefs_updated(self, message: PrefsUpdated) -> None:
        count = self.query_one("#chat-prefs-count", Static)
        self.query_one("#chat-ab-row").display = True
        if message.error:
            count.update(Text("file not writable" if message.unsaved else "bad file", style="red"))
            self.app.notify(message.error.splitlines()[0] + " — the conversation is kept; change the file name",
                            severity="error", timeout=10)
            if message.unsaved:
                self.rows_known(message)
                if self.ab is AB.SAVING:  # the pick was not written: its answers wait for another try
                    self.set_ab(AB.PICKING)
                if self.rating is not None:  # the thumb was not written: the answer can be rated again
                    self.last_single, self.rating = self.rating, None
                    self.refresh_bindings()
            return
        if message.change > 0:
            self.rating = None
        self.rows_known(message)
        self.undoable = max(0, self.undoable + message.change)
        if message.text:
            self.app.notify(f"{message.text} — {message.rows} row(s) in {message.path}")
        self.refresh_bindings()

    def rows_known(self, message: PrefsUpdated) -> None:
        if message.path != self.prefs_path():
            return
        self.prefs_rows, self.prefs_unpaired = message.rows, message.unpaired
        thumbs = f", {message.unpaired} thumbs" if message.unpaired else ""
        if not message.error:
            self.query_one("#chat-prefs-count", Static).update(f"{message.rows} row(s){thumbs}")

    @on(Input.Changed, "#chat-prefs")
    def prefs_changed(self) -> None:
        self.prefs_rows = self.prefs_unpaired = 0
        self.undoable = 0
        if self.query_one("#chat-ab-row").display:  # counted when shown (A/B on, or after a first save)
            self.app.engine.count_prefs(self, self.prefs_path())
        self.refresh_bindings()

    # ------------------------------------------------------------------ thumbs, and on to Data and Train
    def action_thumb(self, good: bool) -> None:
        if not self.last_single:
            self.app.notify("no answer to rate yet", severity="warning")
            return
        prompt, answer = self.last_single
        meta = {"model": self.app.model, "adapter": self.chat_adapter}
        self.app.engine.save_thumb(self, self.prefs_path(), prompt, answer, good, meta)
        self.query_one("#chat-tuned", Transcript).add_note("(👍 good)" if good else "(👎 bad)")
        self.rating, self.last_single = self.last_single, None  # one rating per answer (again if not saved)
        self.refresh_bindings()

    def action_undo(self) -> None:
        if self.ab in (AB.STARTING, AB.ANSWERING, AB.SAVING):
            self.app.notify("wait for the answers (or the save) first", severity="warning")
            return
        self.app.engine.undo_last(self)  # an undone pick brings its answers back to pick again (ABAnswers)

    def action_open_prefs(self) -> None:
        self.app.open_data(self.prefs_path())

    def action_train_prefs(self) -> None:
        path = self.prefs_path()
        if not self.prefs_rows:
            self.app.notify("the preference file holds no rows yet", severity="warning")
            return
        if 0 < self.prefs_unpaired < self.prefs_rows:
            self.app.notify(f"{path} mixes A/B picks and {self.prefs_unpaired} thumbs row(s): one run trains on one "
                            "kind — collect each kind in a file of its own (change the file name)",
                            severity="warning", timeout=12)
            return
        # Thumbs alone are unpaired rows: they train with KTO; A/B picks are pairs for DPO.
        self.app.train_on_prefs(path, self.chat_adapter, loss="kto" if self.prefs_unpaired else None)

    def offer(self, run_dir: str) -> None:
        """A run trained on this chat's picks finished: its adapter is the next chat's target."""
        self.offered = run_dir
        self.app.run_dir = run_dir
        self.query_one("#chat-model", Static).update(f"new adapter from your picks: {run_dir} — Load (ctrl+l) "
                                                     "chats with it")

    # ------------------------------------------------------------------ loading and the single chat
    def unload(self) -> None:
        self.loaded = False
        if self.ab_on:
            self.query_one("#chat-ab", Toggle).value = False
        self.query_one("#chat-model", Static).update("unloaded (an export needed the memory): press Load")

    def show_target(self) -> None:
        if self.offered and self.app.run_dir == self.offered:
            self.offer(self.offered)
        elif not self.loaded:
            target = chat_target(self.app.model, self.app.run_dir) if self.app.model else "(no model)"
            hint = "" if self.app.run_dir else " (pick a run on Runs)"
            self.query_one("#chat-model", Static).update(f"Load will use {target}{hint}")

    @on(Button.Pressed, "#chat-load")
    def load(self) -> None:
        if not self.app.model:
            self.app.notify("Choose a model on the Model tab first", severity="warning")
            return
        if self.app.training_running and self.app.run_dir:
            self.app.notify("that run is still training: chatting with its last checkpoint", severity="warning")
        self.query_one("#chat-model", Static).update(f"loading {chat_target(self.app.model, self.app.run_dir)} …")
        self.loading = True
        self.loading_adapter = self.app.run_dir
        if self.ab is not AB.OFF:
            self.set_ab(AB.STARTING)
        self.app.engine.load_chat(self, self.app.model, self.app.run_dir)

    def on_chat_loaded(self, message: ChatLoaded) -> None:
        self.loaded, self.loading = True, False
        self.chat_adapter = self.loading_adapter
        self.offered = None
        self.reset()
        self.query_one("#chat-model", Static).update(message.description)
        if self.ab_on:
            self.refresh_sources()
            self.start_ab()  # a queued message goes out once A/B is ready (on_abstarted)
        else:
            self.send_queued()
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
        self.last_single = None
        if self.ab in (AB.ANSWERING, AB.PICKING):
            self.set_ab(AB.READY)
        for t in self.query(Transcript):
            t.clear_all()
            if note:
                t.add_note(note + (f" (system: {system})" if system else ""))
        self.refresh_bindings()

    def command(self, text: str) -> None:
        """An app command typed in the message line (never sent to the model)."""
        name, _, rest = text.partition(" ")
        tuned = self.query_one("#chat-tuned", Transcript)
        if name == "/help":
            tuned.add_note("commands: " + " · ".join(f"{c} {what}" for c, what in COMMANDS.items())
                           + " · keys: ctrl+l load, ctrl+n new conversation, ctrl+t compare, ctrl+b A/B, "
                           "ctrl+g / ctrl+r good / bad, ctrl+o open the preference file on Data, ctrl+s train on it")
        elif name == "/reset":
            self.action_new()
        elif name == "/system":
            self.query_one("#chat-system", Input).value = rest.strip()
            self.action_new()
        elif name == "/compare":
            self.action_compare()
        else:
            self.app.notify(f"unknown command {name}: /help lists the commands", severity="warning")

    @on(Input.Submitted, "#chat-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if text.startswith("/"):
            event.input.value = ""
            self.command(text)
            return
        if not self.loaded:  # the first message loads what the header names, then goes out
            if not self.loading:
                self.load()
            if self.loading:
                self.queued = text
                event.input.value = ""
                self.query_one("#chat-tuned", Transcript).add_note(f"(loading the model first; then: {text})")
            return
        if self.ab_on:
            self.send_ab(event.input, text)
            return
        if self.send_single(text):
            event.input.value = ""

    def send_queued(self) -> None:
        """The message typed before the model was there: sent now that it is (and A/B, if on, is ready)."""
        text, self.queued = self.queued, None
        if text is None:
            return
        if self.ab_on:
            self.send_ab(None, text)
        else:
            self.send_single(text)

    def send_single(self, text: str) -> bool:
        """Send `text` to the tuned model (and the base, comparing); False if it cannot go now."""
        if self.pending:
            self.app.notify("still answering …", severity="warning")
            return False
        sampling = self.sampling()
        if not sampling:
            return False
        self.last_single = None
        variants = ["tuned", "base"] if self.compare_on else ["tuned"]
        for v in variants:
            self.history[v].append({"role": "user", "content": text})
            self.query_one(f"#chat-{v}", Transcript).add_user(text)
            self.pending.add(v)
            self.app.engine.chat(self, list(self.history[v]), sampling, variant=v)
        self.refresh_bindings()
        return True

    def send_ab(self, field: Input | None, text: str) -> None:
        if self.ab is AB.PICKING:
            self.app.notify("pick an answer first: a / b, t for a tie (the focus is on the answers)",
                            severity="warning")
            self.app.focus_if_shown(self.query_one("#chat-tuned"))
            return
        if self.ab is not AB.READY:
            self.app.notify({AB.ANSWERING: "still answering …", AB.SAVING: "saving the pick …"}.get(
                self.ab, "A/B is starting …"), severity="warning")
            return
        if field is not None:
            field.value = ""
        self.ab_texts = {}
        self.set_ab(AB.ANSWERING)
        for t in self.sides():
            t.add_user(text)
        self.query_one("#chat-model", Static).update("answering A and B …")
        self.app.engine.ab_ask(self, text)

    def on_chat_chunk(self, message: ChatChunk) -> None:
        self.query_one(f"#chat-{message.variant}", Transcript).add_chunk(message.text)

    def on_chat_done(self, message: ChatDone) -> None:
        self.history[message.variant].append({"role": "assistant", "content": message.text})
        self.pending.discard(message.variant)
        t = self.query_one(f"#chat-{message.variant}", Transcript)
        if t.current is not None and not message.text:
            t.current.update(Text("(empty answer)", style="dim"))
        if message.variant == "tuned" and not self.compare_on:
            self.last_single = ([dict(m) for m in self.history["tuned"][:-1]], message.text)
        self.refresh_bindings()

    def on_job_failed(self, message: JobFailed) -> None:
        first = message.error.splitlines()[0]
        if message.job == "ab-start" and message.key in APP_WORDS:  # the engine's message names CLI flags
            first = APP_WORDS[message.key]
        if message.job in JOBS_SHOWN_HERE:
            self.app.notify(first, severity="error", timeout=10)
            if message.job == "ab-start" and self.ab_on:
                self.query_one("#chat-ab", Toggle).value = False
            elif message.job in ("ab", "ab-pick", "ab-tie"):
                both = bool(self.ab_texts) and set(self.ab_texts) == {"A", "B"}
                self.set_ab(AB.PICKING if both else AB.READY)
            self.query_one("#chat-model", Static).update(Text(first, style="red"))
            return
        self.pending.clear()
        if message.job == "chat-load":
            self.loading, self.queued = False, None
            if self.ab_on:
                self.query_one("#chat-ab", Toggle).value = False
        self.query_one("#chat-model", Static).update(Text(first, style="red"))
        self.app.notify(first, severity="error")
