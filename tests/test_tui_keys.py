"""The app as keyboard users expect it (issue #15): safe controls, every action on a key, a defined
first focus per tab, the `?` screen and the command palette, layouts that fit 80×24 and 100×30.

Most tests use a stand-in engine (no MLX, no tokenizer) and a stand-in trainer that speaks the
trainer's JSON events; those that need the engine's real answers (data rendering, model checks)
use the tiny model."""

from __future__ import annotations


import pytest

from mlx_dpo.errors import UsageError
import yaml
from textual.widgets import DataTable, Input, Label, TabbedContent, Tabs
from textual.widgets._footer import FooterKey

from tui.app import MlxDpoApp
from tui.confirm import Confirm, ConfirmQuit, PathPrompt
from tui.help_screen import HelpScreen
from tui.messages import ChatDone, ChatLoaded, JobFailed, TrainingMetrics
from tui.panes.chat_pane import AB, ChatPane, Transcript
from tui.panes.train_pane import EtaClock, ProgressBox, TrainPane, friendly
from tui.widgets.charts import MetricsCharts, TidyFormatter, memory_unit, tidy_label

from test_tui import focus_on, text_of, use_stand_in_trainer, wait_for

SIZE = (120, 40)


class FakeEngine:
    """The engine thread's interface, answering at once (chat) or not at all (data, memory)."""

    def __init__(self):
        self.chats: list[tuple[list[dict], str]] = []
        self.inspected: list[tuple[str, dict]] = []  # (path, source options) of each data inspection

    def start(self):
        pass

    def stop(self):
        pass

    def inspect_data(self, reply_to, path, *a, **kw):
        self.inspected.append((path, kw.get("source")))

    def estimate_memory(self, *a, **kw):
        pass

    def load_chat(self, reply_to, model, adapter):
        reply_to.post_message(ChatLoaded("chat-load", f"{model} (stand-in)"))

    def chat(self, reply_to, messages, sampling, variant="tuned"):
        self.chats.append((messages, variant))
        reply_to.post_message(ChatDone("chat", variant, f"answer {len(self.chats)}"))

    def export(self, reply_to, options):
        reply_to.post_message(JobFailed("export", "stand-in export failed"))


# A trainer that reaches its training loop and then waits; SIGINT makes it stop as the real one does
# before its first checkpoint (the "stopped" event names no checkpoint), once the test says "finish".
WAITING_TRAINER = '''
import signal
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "config.yaml"), "w") as f:
    f.write("iters: 24\\nloss: sigmoid\\nbeta: 0.1\\nlearning_rate: 0.0005\\n")
def on_int(*_):
    if GATED:
        wait_for("finish")
    event(event="stopped", signal="SIGINT", status=130, checkpoint=None)
    sys.exit(130)
signal.signal(signal.SIGINT, on_int)
event(event="phase", phase="load", text="loading the model")
event(event="phase", phase="reference", text="scoring the reference log-probs (16 pairs)")
event(event="task", name="reference", done=16, total=16, label="reference log-probs (train)")
event(event="phase", phase="train", text="training 24 steps")
event(event="start", step=0, total_steps=24, pairs=16, trainable_parameters=1234)
event(event="log", text="ready")
while True:
    time.sleep(0.05)
'''


def waiting_trainer(tmp_path, monkeypatch, gated: bool = False) -> None:
    use_stand_in_trainer(tmp_path, monkeypatch, f"GATED = {gated}\n" + WAITING_TRAINER)


def make_app(tiny_model, pairs_file, tmp_path, **kw) -> MlxDpoApp:
    return MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"), engine=FakeEngine(), **kw)


def notes(app) -> str:
    return " | ".join(n.message for n in app._notifications)


def footer_keys(app) -> dict[str, str]:
    return {k.key: k.description for k in app.screen.query(FooterKey)}


async def ready(pilot, pane) -> None:
    await wait_for(pilot, lambda: pane.process is not None and "ready" in pane.process.tail, timeout=20)


# ---------------------------------------------------------------------- 1. a second Enter never stops a run
async def test_a_second_enter_after_start_does_not_stop_the_run(tiny_model, pairs_file, tmp_path, monkeypatch):
    waiting_trainer(tmp_path, monkeypatch)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "r")
        assert app.focused is pane.query_one("#train-start")
        await pilot.press("enter")
        await ready(pilot, pane)
        assert isinstance(app.focused, ProgressBox)  # not Stop
        await pilot.press("enter", "enter")
        await pilot.pause(0.2)
        assert pane.running and not pane.process.stop_sent
        # Stop has its key; a stop before the first checkpoint says what it left behind.
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
        assert text_of(app, "#train-status") == ("training stopped before its first checkpoint: nothing was saved; "
                                                 "the reference log-probs are cached, a new start is fast")
        assert pane.query_one("#train-settings").collapsed  # the charts keep their room after Stop
        assert app.focused is pane.query_one("#train-start")


# ---------------------------------------------------------------------- 2. first focus, visible focus, dialogs
async def test_question_mark_pressed_first_opens_the_help_and_types_into_no_field(tiny_model, pairs_file, tmp_path):
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("?")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), timeout=10)
        await pilot.press("escape")
        await pilot.pause()
        assert app.query_one("#data-path", Input).value == pairs_file  # what trains is still what the form shows



FIRST_FOCUS = {"f1": "data-load", "f2": "model-path", "f3": "train-start", "f4": "runs-table", "f5": "chat-input",
               "f6": "export-go"}


async def test_each_tab_has_a_defined_visible_first_focus_never_the_tab_bar(tiny_model, pairs_file, tmp_path):
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "data-load"  # a button, not the path, at start
        for _ in range(2):  # and again, coming back to a tab
            for key, widget_id in FIRST_FOCUS.items():
                await pilot.press(key)
                await pilot.pause()
                assert app.focused is not None and app.focused.id == widget_id, (key, app.focused)
                assert not isinstance(app.focused, Tabs)
        # Tab cycles through controls, never through the tab bar.
        for _ in range(12):
            await pilot.press("tab")
            assert not isinstance(app.focused, Tabs)
        # Clicking a tab gives it the same first focus.
        await pilot.click("#tabs Tab#--content-tab-tab-runs")
        await pilot.pause()
        assert app.focused.id == "runs-table"
        # A transcript that takes the focus shows it (its border turns to the accent colour).
        await pilot.press("f5")
        tuned = app.query_one("#chat-tuned", Transcript)
        before = tuned.styles.border_top
        await focus_on(pilot, tuned)
        await pilot.pause()
        assert tuned.styles.border_top != before
        # Dialogs: the safe answer first, Left/Right between the buttons, Escape cancels.
        app.training_running = True  # so that quitting asks
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit) and app.focused.id == "confirm-no"
        await pilot.press("left")
        assert app.focused.id == "confirm-yes"
        await pilot.press("right")
        assert app.focused.id == "confirm-no"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuit) and app.is_running
        app.training_running = False


async def test_after_export_the_focus_is_on_the_output_folder_not_a_checkbox(tiny_model, tmp_path):
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=FakeEngine())
    app.run_dir = str(tmp_path / "some-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        assert app.focused.id == "export-go"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "stand-in export failed" in text_of(app, "#export-result"), timeout=10)
        assert app.focused.id == "export-output"


# ---------------------------------------------------------------------- 3. keys, footer, help, palette
TAB_KEYS = {"f1": {"ctrl+l": "Load"}, "f2": {"ctrl+l": "Use model", "ctrl+t": "Estimate memory"},
            "f3": {"ctrl+s": "Start", "ctrl+b": "Stop", "ctrl+r": "Resume", "ctrl+g": "Show command"},
            "f4": {"o": "Overlay", "r": "Resume", "n": "New from it", "d": "Delete"},
            "f5": {"ctrl+l": "Load model", "ctrl+n": "New chat", "ctrl+t": "Compare"},
            "f6": {"ctrl+s": "Export"}}


async def test_each_tab_shows_its_keys_in_the_footer_and_the_help_screen(tiny_model, pairs_file, tmp_path):
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        for tab_key, keys in TAB_KEYS.items():
            await pilot.press(tab_key)
            await pilot.pause()
            shown = footer_keys(app)
            assert keys.items() <= shown.items(), (tab_key, shown)
            assert shown.get("ctrl+q") == "Quit" and shown.get("ctrl+p") == "palette"
            await pilot.press("escape")  # out of a text field, where "?" would be text
            await pilot.pause()
            assert not isinstance(app.focused, Input)
            shown = footer_keys(app)
            assert shown.get("question_mark") == "Keys" and keys.items() <= shown.items(), (tab_key, shown)
            for key in app.screen.query(FooterKey):  # the footer is not cut at 80 columns
                assert key.region.right <= 80 and key.region.width > 0, (tab_key, key.key)
            await pilot.press("?")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            table = app.screen.query_one(DataTable)
            rows = [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
            for description in keys.values():
                assert any(description in row[2] for row in rows), (tab_key, description, rows)
            assert any("command palette" in row[2] for row in rows)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
        # In a field being typed into, "?" is text.
        await pilot.press("f1")
        app.query_one("#data-path", Input).value = "a"
        app.query_one("#data-path", Input).focus()
        await pilot.press("end", "?")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen) and app.query_one("#data-path", Input).value == "a?"


async def test_the_command_palette_offers_the_apps_commands(tiny_model, pairs_file, tmp_path, monkeypatch):
    from textual.command import CommandList, CommandPalette

    waiting_trainer(tmp_path, monkeypatch)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(TrainPane).query_one("#train-output", Input).value = str(tmp_path / "runs" / "p")

        async def palette(query: str) -> list[str]:
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), timeout=5)
            await pilot.press(*query)
            commands = app.screen.query_one(CommandList)
            await wait_for(pilot, lambda: commands.option_count > 0, timeout=5)
            await pilot.pause(0.3)
            return [str(commands.get_option_at_index(i).hit.text) for i in range(commands.option_count)]

        found = await palette("train")
        assert {"Train: start training", "Train: stop training", "Train: resume training",
                "Go to the Train tab"} <= set(found), found
        await pilot.press("escape")
        found = await palette("start training")
        assert found[0] == "Train: start training"
        await pilot.press("enter")
        pane = app.query_one(TrainPane)
        await ready(pilot, pane)
        assert app.query_one(TabbedContent).active == "tab-train"
        found = await palette("stop training")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
        # A command that cannot run now says why.
        await palette("stop training")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "no training run is going" in notes(app), timeout=5)
        found = await palette("open run")
        assert any(f.startswith("Open run p") for f in found), found


# ---------------------------------------------------------------------- 11. a background stop stays in the background
async def test_a_stop_that_ends_on_another_tab_does_not_switch_tabs(tiny_model, pairs_file, tmp_path, monkeypatch):
    waiting_trainer(tmp_path, monkeypatch, gated=True)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "bg")
        await pilot.press("ctrl+s")
        await ready(pilot, pane)
        await pilot.press("ctrl+b")  # it is checkpointing (held until "finish") …
        await pilot.press("f4")  # … while the user looks at Runs
        assert app.focused.id == "runs-table"
        (tmp_path / "runs" / "finish").touch()
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
        await pilot.pause(0.2)
        assert app.query_one(TabbedContent).active == "tab-runs" and app.focused.id == "runs-table"


# ---------------------------------------------------------------------- 10. chat
async def test_chat_commands_stay_in_the_app_and_compare_keeps_the_conversation(tiny_model, tmp_path):
    engine = FakeEngine()
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        compare = chat.query_one("#chat-compare")
        assert "X" not in str(compare.render()) and "✓" not in str(compare.render())  # off looks off
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: chat.loaded, timeout=5)

        async def say(text):
            chat.query_one("#chat-input", Input).value = text
            await pilot.press("enter")
            await pilot.pause(0.1)

        await say("hello")
        await say("/help")
        assert [m for m, _ in engine.chats] == [[{"role": "user", "content": "hello"}]]  # /help never sent
        assert "/reset" in str(chat.query_one("#chat-tuned").children[-1].render())
        await say("/nonsense")
        assert "unknown command /nonsense" in notes(app) and len(engine.chats) == 1
        # Compare on: nothing is cleared; the base side continues the same conversation.
        await pilot.press("ctrl+t")
        await pilot.pause(0.1)
        assert compare.value and "✓" in str(compare.render())
        assert [m["content"] for m in chat.history["tuned"]] == ["hello", "answer 1"]
        assert chat.history["base"] == chat.history["tuned"]
        await say("and now?")
        base_messages = [m for m, v in engine.chats if v == "base"][-1]
        assert [m["content"] for m in base_messages] == ["hello", "answer 1", "and now?"]
        await say("/reset")
        assert chat.history == {"tuned": [], "base": []}


# ---------------------------------------------------------------------- 8. validation names the field
async def test_a_bad_setting_is_named_by_its_label_and_focused(tiny_model, pairs_file, tmp_path):
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-iters", Input).value = "0"
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert pane.process is None
        assert "steps: must be a positive integer, got 0" in notes(app) and "config:" not in notes(app)
        assert app.focused is pane.query_one("#train-iters") and app.focused.has_class("-invalid-field")
        pane.query_one("#train-iters", Input).value = "5"
        await pilot.pause()
        assert not pane.query_one("#train-iters").has_class("-invalid-field")
        pane.query_one("#train-learning_rate", Input).value = "fast"
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert "learning rate: expected a number, got 'fast'" in notes(app)
        assert app.focused is pane.query_one("#train-learning_rate")


def test_engine_messages_get_the_forms_labels():
    from mlx_dpo.config import build_config
    from mlx_dpo.errors import config_error

    assert friendly(config_error("batch_size", "must be a positive integer, got 0")) == (
        "batch size: must be a positive integer, got 0", "batch_size")
    assert friendly(config_error("lora_dropout", "must be in [0, 1)")) == (
        "config: lora_dropout: must be in [0, 1)", "lora_dropout")  # no field of that name: as the engine says
    with pytest.raises(UsageError) as e:  # the engine's own error, read by its key
        build_config({}, {"model": "m", "data": "d", "output": "o", "beta": 0})
    assert friendly(e.value) == ("beta: must be a positive number, got 0", "beta")


# ---------------------------------------------------------------------- 4. the Train tab while it trains
ROWS = [{"step": s, "loss": 0.69 - 0.01 * s, "rewards/accuracies": min(1.0, s / 10), "rewards/margins": 0.05 * s,
         "rewards/chosen": 0.02 * s - 0.05, "rewards/rejected": -0.03 * s, "tokens_per_second": 900.0,
         "peak_memory_gb": 0.012 + 0.00001 * s} for s in range(1, 13)]


async def test_at_100x30_progress_and_the_loss_and_margin_charts_show_while_training(tiny_model, pairs_file,
                                                                                    tmp_path, monkeypatch):
    waiting_trainer(tmp_path, monkeypatch)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        charts = pane.query_one(MetricsCharts)
        charts.query_one("#chart-loss").set_xlimits(0, 500)  # as a zoom would leave it
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "big")
        await pilot.press("ctrl+s")
        await ready(pilot, pane)
        loss = charts.query_one("#chart-loss")
        assert loss._auto_x_max and not charts.rows  # a new run starts with fresh axes
        pane.post_message(TrainingMetrics(ROWS + [{"step": 10, "eval/loss": 0.6, "eval/rewards/margins": 0.4}]))
        await pilot.pause(0.3)
        screen = app.screen.region
        for selector in ("#train-progress", "#train-status", "#chart-loss", "#chart-margin"):
            region = pane.query_one(selector).region
            assert screen.contains_region(region) and region.bottom <= 29, (selector, region)  # above the footer
        assert pane.scroll_y == 0
        assert "raw" in loss.border_subtitle and "smoothed" in loss.border_subtitle and "● eval" in loss.border_subtitle
        assert "chosen" in charts.query_one("#chart-rewards").border_subtitle
        assert "rejected" in charts.query_one("#chart-rewards").border_subtitle
        assert charts.query_one("#chart-memory").border_title == "peak memory (MB)"
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
        assert pane.query_one("#train-settings").collapsed


def test_ticks_are_short_and_never_minus_zero():
    assert tidy_label(-1e-17, 1) == "0" and tidy_label(-0.0, 2) == "0" and tidy_label(0.123456, 5) == "0.123"
    f = TidyFormatter()
    ticks, labels = f.get_ticks_and_labels(-0.55, 0.25)
    assert "0" in labels and not any(l in ("-0", "-0.0") for l in labels)
    assert all(len(l.split(".")[-1]) <= 3 for l in labels)
    steps = TidyFormatter(integer=True)
    assert all(float(l).is_integer() for l in steps.get_ticks_and_labels(1, 7)[1])
    crowded = TidyFormatter(room=lambda: 3)
    assert len(crowded.get_ticks(0, 1)) <= 3  # two ticks never share a text row
    assert memory_unit([{"peak_memory_gb": 0.0121}]) == ("MB", 1024.0)
    assert memory_unit([{"peak_memory_gb": 3.5}]) == ("GB", 1.0)


def test_the_eta_is_a_moving_average():
    clock = EtaClock()
    clock.update(1, 0.0)
    assert clock.eta(1, 10) == "…"
    clock.update(2, 1.0)  # 1 s/step
    assert clock.eta(2, 12) == "0m10s"
    clock.update(3, 11.0)  # one slow step (10 s) moves the estimate, it does not replace it
    assert clock.per_step == pytest.approx(0.3 * 10 + 0.7 * 1)


async def test_the_loading_phase_drives_the_progress_bar(tiny_model, pairs_file, tmp_path, monkeypatch):
    use_stand_in_trainer(tmp_path, monkeypatch, '''
event(event="phase", phase="reference", text="scoring")
event(event="task", name="reference", done=3, total=16, label="reference log-probs (train)")
wait_for("finish")
''')
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        (tmp_path / "runs").mkdir()
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "t")
        await pilot.press("ctrl+s")
        bar = pane.query_one("#train-progress")
        await wait_for(pilot, lambda: bar.total == 16 and bar.progress == 3, timeout=20)
        assert text_of(app, "#train-status") == "starting: reference log-probs (train) 3/16 …"
        (tmp_path / "runs" / "finish").touch()
        await wait_for(pilot, lambda: not app.training_running, timeout=20)


# ---------------------------------------------------------------------- 9. 80×24
MAIN = {"f1": ("#data-load", "#data-summary"), "f2": ("#model-use", "#model-memory"),
        "f3": ("#train-start", "#train-status"), "f4": ("#runs-table", "#runs-help"),
        "f5": ("#chat-input", "#chat-tuned"), "f6": ("#export-go", "#export-result")}


async def test_at_80x24_each_tabs_main_action_and_result_are_on_screen(tiny_model, pairs_file, tmp_path):
    runs = tmp_path / "runs" / "a-run"
    runs.mkdir(parents=True)
    (runs / "config.yaml").write_text("iters: 3\nloss: sigmoid\nbeta: 0.1\nlearning_rate: 0.001\nmodel: m\ndata: d\n")
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, selectors in MAIN.items():
            await pilot.press(key)
            await pilot.pause()
            for selector in selectors:
                region = app.screen.query_one(selector).region
                assert region.height > 0 and region.y >= 3 and region.bottom <= 23, (key, selector, region)
                assert region.right <= 80, (key, selector, region)
        # Chat: at least 10 lines of conversation.
        await pilot.press("f5")
        await pilot.pause()
        tuned = app.query_one("#chat-tuned", Transcript)
        assert tuned.content_region.height >= 10
        # Runs: the status column is on screen without scrolling sideways.
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        x = 0
        for column in table.ordered_columns:
            if str(column.label) == "status":
                break
            x += column.get_render_width(table)
        assert x + column.get_render_width(table) <= table.content_region.width
        assert table.get_row_at(0)[1] == "incomplete"


# ---------------------------------------------------------------------- 5. runs
async def test_runs_refresh_by_themselves_and_show_a_live_run(tiny_model, pairs_file, tmp_path, monkeypatch):
    waiting_trainer(tmp_path, monkeypatch)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        assert table.row_count == 0
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "live")
        await pilot.press("ctrl+s")
        await ready(pilot, pane)
        await pilot.press("f4")
        await wait_for(pilot, lambda: table.row_count == 1, timeout=10)  # no ctrl+r
        row = table.get_row_at(0)
        header = [str(c.label) for c in table.ordered_columns]
        assert header[:9] == ["run", "status", "steps", "loss", "acc", "eval acc", "loss kind", "β", "lr"]
        assert row[0] == "live" and row[1] == "training" and row[6] == "sigmoid" and row[8] == "0.0005"
        await pilot.press("f3", "ctrl+b")
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
        assert table.get_row_at(0)[1] == "incomplete"


def finished_run(path):
    """A run dir as a finished 3-step run leaves it (no MLX needed to read it)."""
    import json

    (path / "checkpoints" / "step_0000003").mkdir(parents=True)
    (path / "checkpoints" / "step_0000003" / "state.json").write_text("{}")
    (path / "adapters.safetensors").write_bytes(b"")
    (path / "config.yaml").write_text("iters: 3\nloss: ipo\nbeta: 0.2\nlearning_rate: 0.001\nbatch_size: 2\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 0.7 - 0.1 * s,
                                                            "rewards/accuracies": 0.5}) + "\n" for s in (1, 2, 3)))


async def test_a_finished_run_offers_one_way_on_and_delete_asks_first(tiny_model, pairs_file, tmp_path):
    done = tmp_path / "runs" / "done"
    finished_run(done)
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        assert table.get_row_at(0)[1] == "finished" and table.get_row_at(0)[2] == "3/3"
        # Resume on a finished run: the form holds a new run continuing from its adapter, ready to start.
        await pilot.press("r")
        await pilot.pause(0.2)
        pane = app.query_one(TrainPane)
        assert app.query_one(TabbedContent).active == "tab-train"
        assert pane.query_one("#train-init_adapter", Input).value == str(done)
        assert pane.query_one("#train-output", Input).value == str(tmp_path / "runs" / "done-cont")
        assert pane.query_one("#train-loss").value == "ipo" and pane.query_one("#train-beta", Input).value == "0.2"
        assert "ctrl+s starts it" in notes(app) and app.focused.id == "train-start"
        assert "--init-adapter" in pane.args_for(pane.form_flags())
        # Start on a used run dir: a fresh folder is filled in (never "press Resume" for a finished run).
        pane.query_one("#train-output", Input).value = str(done)
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        assert pane.process is None and pane.query_one("#train-output", Input).value != str(done)
        assert "holds a finished run" in notes(app)
        # Delete asks; the safe answer is focused.
        await pilot.press("f4", "d")
        await pilot.pause(0.1)
        assert isinstance(app.screen, Confirm) and app.focused.id == "confirm-no"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert done.exists()
        await pilot.press("d")
        await pilot.pause(0.1)
        await pilot.press("left", "enter")
        await wait_for(pilot, lambda: not done.exists(), timeout=5)
        await wait_for(pilot, lambda: table.row_count == 0, timeout=5)


# ---------------------------------------------------------------------- 7. model (no engine needed)
def test_a_model_is_listed_once_whatever_its_spelling(tmp_path, monkeypatch):
    from tui.panes import model_pane

    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    for name, model in (("a", "m"), ("b", str(tmp_path / "m")), ("c", "./m/")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text(f"model: {model}\n")
    monkeypatch.setattr(model_pane, "bundled_models", lambda: [])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert model_pane.cached_models("m", str(runs)) == ["m"]


# ---------------------------------------------------------------------- extras: config file, command line
async def test_the_form_saves_and_loads_the_yaml_config_train_reads(tiny_model, pairs_file, tmp_path):
    from mlx_dpo import build_config, load_config_file

    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-iters", Input).value = "7"
        pane.query_one("#train-beta", Input).value = "0.25"
        path = tmp_path / "my.yaml"
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert isinstance(app.screen, PathPrompt)
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: path.exists(), timeout=5)
        values = load_config_file(path)  # what `mlx-dpo train --config` reads: TrainConfig keys
        cfg = build_config(values, {})
        assert cfg.iters == 7 and cfg.beta == 0.25 and cfg.model == tiny_model and cfg.data == pairs_file
        assert "output" not in values
        # Load another file: the form follows, and the file travels as --config (keys without a field).
        other = tmp_path / "other.yaml"
        other.write_text(yaml.safe_dump({"iters": 11, "loss": "hinge", "lora_dropout": 0.1}))
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one(Input).value = str(other)
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.query_one("#train-iters", Input).value == "11", timeout=5)
        assert pane.query_one("#train-loss").value == "hinge"
        args = pane.args_for(pane.form_flags())
        assert args[:2] == ["--config", str(other)]
        # A bad file is reported, the form keeps its values.
        bad = tmp_path / "bad.yaml"
        bad.write_text("itres: 3\n")
        pane.load_config(str(bad))
        await pilot.pause()
        assert "itres: unknown config key" in notes(app)
        # The equivalent command line.
        await pilot.press("ctrl+g")
        await pilot.pause()
        shown = [n.message for n in app._notifications if n.message.startswith("mlx-dpo train")]
        assert shown and f"--config {other}" in shown[-1] and "--iters 11" in shown[-1]
        assert "--loss hinge" in shown[-1] and f"--model {tiny_model}" in shown[-1]


# ---------------------------------------------------------------------- the Data tab's source options (issue #13)
async def test_the_data_tabs_source_options_reach_the_inspection_and_the_training_command(tiny_model, pairs_file,
                                                                                          tmp_path):
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        box = app.query_one("#data-source")
        assert box.collapsed and "split train · invalid rows refuse the data" in box.title
        await pilot.press("ctrl+o")  # from the path field: ctrl+o is not one of a text field's keys
        await wait_for(pilot, lambda: app.focused is app.query_one("#data-split"), timeout=10)
        await pilot.press("ctrl+u", *"train_prefs")
        await focus_on(pilot, app.query_one("#data-subset"))
        await pilot.press(*"harmless-base")
        await focus_on(pilot, app.query_one("#data-skip-invalid"))
        await pilot.press("enter")  # toggles the switch, which inspects the data again
        await wait_for(pilot, lambda: app.data_options["skip_invalid"], timeout=10)
        assert app.data_options == {"split": "train_prefs", "data_config": "harmless-base", "data_revision": None,
                                    "skip_invalid": True}
        assert "subset harmless-base · invalid rows skipped" in box.title
        await wait_for(pilot, lambda: app.engine.inspected[-1][1]["skip_invalid"], timeout=10)
        assert app.engine.inspected[-1] == (pairs_file, {"split": "train_prefs", "subset": "harmless-base",
                                                         "revision": None, "skip_invalid": True})
        # The Train tab passes the same choices to the trainer, as the CLI names them.
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "r")
        args = pane.args_for(pane.checked_flags())  # the engine's own validation accepts them
        assert args[args.index("--split") + 1] == "train_prefs" and "--skip-invalid" in args
        assert args[args.index("--data-config") + 1] == "harmless-base" and "--data-revision" not in args
        assert args[args.index("--skip-invalid") + 1].startswith("--")  # a switch: no value follows
        # Back to the defaults: no data flags at all (a --config file's own values are not overridden).
        await pilot.press("f1", "ctrl+o")
        await pilot.pause()
        for wid in ("#data-split", "#data-subset"):
            app.query_one(wid, Input).value = ""
        app.query_one("#data-skip-invalid").value = False
        await wait_for(pilot, lambda: not app.data_options["skip_invalid"], timeout=10)
        args = pane.args_for(pane.form_flags())
        assert not {"--split", "--data-config", "--data-revision", "--skip-invalid"} & set(args)


async def test_the_data_tab_lists_the_cached_hub_datasets_and_enter_uses_one(tiny_model, pairs_file, tmp_path,
                                                                             monkeypatch):
    import hf_datasets as hfd

    hub = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    hfd.add_to_hub_cache(hub, "HuggingFaceH4/ultrafeedback_binarized", hfd.ultrafeedback_folder(tmp_path / "uf"))
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+o")
        cached = app.query_one("#data-cached")
        await wait_for(pilot, lambda: cached.option_count == 1, timeout=10)
        await focus_on(pilot, cached)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.engine.inspected[-1][0] == "HuggingFaceH4/ultrafeedback_binarized",
                       timeout=10)
        assert app.query_one("#data-path", Input).value == app.data_path == "HuggingFaceH4/ultrafeedback_binarized"


# ---------------------------------------------------------------------- 11. the preference loop (issue #16)
class StandInSwitch:
    """AdapterSwitch's interface: which adapter the stand-in model answers with."""

    def __init__(self):
        self.current = "on"

    def set(self, enabled: bool) -> None:
        self.current = "on" if enabled else "off"

    def add(self, name, adapter_dir) -> None:
        pass

    def use(self, name) -> None:
        self.current = name


class ABEngine:
    """The real engine thread and its A/B and preference-file jobs (the real ABChat), over a stand-in model
    whose answers name the adapter state and the seed they were sampled with."""

    def __new__(cls):
        from tui.engine import Engine

        class _Engine(Engine):
            def __init__(self):
                super().__init__()
                self.loads: list[str | None] = []
                self.switch = StandInSwitch()

            def load_chat(self, reply_to, model, adapter):
                self.loads.append(adapter)

                def job(to):
                    self._chat, self._ab = (None, None, self.switch if adapter else None, "stand-in"), None
                    to.post_message(ChatLoaded("chat-load", f"{model} + {adapter} (stand-in)"))
                self.submit("chat-load", job, reply_to)

            def chat(self, reply_to, messages, sampling, variant="tuned"):
                reply_to.post_message(ChatDone("chat", variant, f"single answer to {messages[-1]['content']}"))

        return _Engine()


def stand_in_stream(engine):
    def stream(model, tokenizer, messages, sampling):
        yield from [f"{engine.switch.current} ", f"says {messages[-1]['content']} ", f"#{sampling.seed}"]
    return stream


def rows_of(path) -> list[dict]:
    import json

    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


ARGV_TRAINER = '''
import json
os.makedirs(out, exist_ok=True)
with open(os.path.join(os.path.dirname(out), "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
with open(os.path.join(out, "config.yaml"), "w") as f:
    f.write("iters: 2\\n")
event(event="start", step=0, total_steps=2, pairs=2, trainable_parameters=1)
event(event="done", step=2, loss=0.6, accuracy=1.0, output=out)
'''


async def test_the_preference_loop_chat_ab_pick_train_chat(tiny_model, tmp_path, monkeypatch):
    import mlx_dpo.model.ab
    from textual.widgets import TextArea

    from mlx_dpo import load_pairs
    from tui.confirm import EditAnswer

    engine = ABEngine()
    monkeypatch.setattr(mlx_dpo.model.ab, "stream_answer", stand_in_stream(engine))
    use_stand_in_trainer(tmp_path, monkeypatch, ARGV_TRAINER)
    runs = tmp_path / "runs"
    adapter = runs / "r0"
    adapter.mkdir(parents=True)
    (adapter / "config.yaml").write_text(f"model: {tiny_model}\nloss: sigmoid\n")
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        app.run_dir = str(adapter)
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: chat.loaded, timeout=10)
        assert chat.chat_adapter == str(adapter)

        async def say(text):
            chat.query_one("#chat-input", Input).value = text
            await focus_on(pilot, chat.query_one("#chat-input", Input))
            await pilot.press("enter")

        # A/B on: the conversation goes on, answered twice, sides A and B.
        await say("hello")
        await wait_for(pilot, lambda: chat.last_single is not None, timeout=10)
        assert "ctrl+b" in footer_keys(app) and "ctrl+g" in footer_keys(app)
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: chat.ab is AB.READY, timeout=10)
        a, b = chat.query_one("#chat-tuned", Transcript), chat.query_one("#chat-base", Transcript)
        assert (a.border_title, b.border_title) == ("A", "B") and b.display
        prefs = tmp_path / "prefs" / chat.query_one("#chat-prefs", Input).value.rsplit("/", 1)[-1]
        assert str(prefs) == chat.prefs_path() and prefs.name.startswith("chat-")
        await say("which?")
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        keys = footer_keys(app)
        assert {"a", "b", "t", "x", "r", "e"} <= set(keys) and keys["a"] == "Pick A" and "ctrl+l" not in keys
        texts = dict(chat.ab_texts)
        assert {texts["A"].split()[0], texts["B"].split()[0]} == {"on", "off"}  # tuned vs base, shuffled
        assert a.text == texts["A"] and b.text == texts["B"]
        assert app.focused is a  # the letter keys pick, not type
        # Pick A: one row at once, its prompt the conversation; the sides are revealed.
        await pilot.press("a")
        await wait_for(pilot, lambda: chat.prefs_rows == 1, timeout=10)
        row = rows_of(prefs)[0]
        assert row["prompt"] == [{"role": "user", "content": "hello"},
                                 {"role": "assistant", "content": "single answer to hello"},
                                 {"role": "user", "content": "which?"}]
        assert row["chosen"][0]["content"] == texts["A"] and row["rejected"][0]["content"] == texts["B"]
        assert row["picked"] == "A" and set(row["sides"].values()) == {"tuned", "base"}
        assert "A was " in str(a.children[-1].render()) and "row(s)" in text_of(app, "#chat-prefs-count")
        assert chat.history["tuned"][-1] == {"role": "assistant", "content": texts["A"]}
        # Undo: the row goes, the two answers wait for a pick again; a tie saves nothing.
        await pilot.press("ctrl+z")
        await wait_for(pilot, lambda: chat.prefs_rows == 0 and chat.ab is AB.PICKING, timeout=10)
        assert rows_of(prefs) == []
        await pilot.press("t")
        await wait_for(pilot, lambda: "tie: nothing saved" in str(a.children[-1].render()), timeout=10)
        assert rows_of(prefs) == [] and chat.history["tuned"][-1]["content"] == texts["A"]
        # Both bad: both answered again; r: only the focused side.
        await say("again?")
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        first = dict(chat.ab_texts)
        await pilot.press("x")
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        second = dict(chat.ab_texts)
        assert second["A"] != first["A"] and second["B"] != first["B"]
        await focus_on(pilot, b)
        await pilot.press("r")
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        assert chat.ab_texts["A"] == second["A"] and chat.ab_texts["B"] != second["B"]
        # Edit B: the edited text is chosen, A rejected.
        await focus_on(pilot, b)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditAnswer), timeout=5)
        area = app.screen.query_one("#edit-text", TextArea)
        assert area.text == chat.ab_texts["B"]
        shown = dict(chat.ab_texts)
        area.text = "my better answer"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: chat.prefs_rows == 1, timeout=10)
        row = rows_of(prefs)[-1]
        assert row["chosen"][0]["content"] == "my better answer" and row["edited"] is True
        assert row["rejected"][0]["content"] == shown["A"]
        assert [m["content"] for m in row["prompt"]][-1] == "again?"
        loaded = load_pairs(prefs)
        assert not loaded.errors and len(loaded.pairs) == 1

        # Train on it: the Train form continues from the chatted adapter (--init-adapter).
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert app.query_one(TabbedContent).active == "tab-train"
        train = app.query_one(TrainPane)
        assert train.query_one("#train-init_adapter", Input).value == str(adapter)
        assert "reference is then base + that adapter" in notes(app) and "clear" in notes(app)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: train.process is not None and not app.training_running, timeout=20)
        import json
        argv = json.loads((runs / "argv.json").read_text())
        assert argv[argv.index("--init-adapter") + 1] == str(adapter)
        assert argv[argv.index("--data") + 1] == str(prefs)
        new_run = argv[argv.index("--output") + 1]
        # Chat offers the new adapter: Load chats with it.
        assert app.run_dir == new_run and new_run in text_of(app, "#chat-model")
        await pilot.press("f5")
        assert new_run in text_of(app, "#chat-model")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: engine.loads[-1] == new_run and chat.loaded and chat.ab is AB.READY, timeout=10)

        # Thumbs outside A/B mode: unpaired rows, refused in a file of pairs (one kind per file, the file as it
        # was, a file name suggested); the answer can be rated again into a file of thumbs.
        await pilot.press("ctrl+b")
        await pilot.pause(0.1)
        await say("rate me")
        await wait_for(pilot, lambda: chat.last_single is not None, timeout=10)
        before = prefs.read_bytes()
        await pilot.press("ctrl+r")
        thumbs = prefs.with_name(prefs.stem + "-thumbs.jsonl")
        await wait_for(pilot, lambda: str(thumbs) in notes(app), timeout=10)
        assert prefs.read_bytes() == before and "holds pairs" in notes(app) and chat.last_single is not None
        chat.query_one("#chat-prefs", Input).value = str(thumbs)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: chat.prefs_unpaired == 1, timeout=10)
        thumb = rows_of(thumbs)[-1]
        assert thumb["label"] is False and thumb["completion"][0]["content"] == "single answer to rate me"
        assert thumb["prompt"][-1] == {"role": "user", "content": "rate me"} and thumb["adapter"] == new_run
        chat.query_one("#chat-prefs", Input).value = str(prefs)
        await wait_for(pilot, lambda: chat.prefs_rows == 1, timeout=10)
        # ctrl+o opens the file on Data.
        await pilot.press("ctrl+o")
        await pilot.pause(0.1)
        assert app.query_one(TabbedContent).active == "tab-data"
        assert app.query_one("#data-path", Input).value == str(prefs)


async def test_a_preference_file_that_cannot_be_written_keeps_the_conversation(tiny_model, tmp_path, monkeypatch):
    import mlx_dpo.model.ab

    engine = ABEngine()
    monkeypatch.setattr(mlx_dpo.model.ab, "stream_answer", stand_in_stream(engine))
    other = tmp_path / "runs" / "other"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("loss: sigmoid\n")
    (other / "adapters.safetensors").write_bytes(b"")
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: chat.loaded, timeout=10)
        await pilot.press("ctrl+b")  # no adapter: A/B of two samples
        await wait_for(pilot, lambda: chat.ab is AB.READY, timeout=10)
        source = chat.query_one("#chat-ab-source")
        assert source.value == "samples"
        assert str(other) in [value for _, value in source._options]  # another run's adapter, from the Runs list
        (tmp_path / "a-folder").mkdir()
        chat.query_one("#chat-prefs", Input).value = str(tmp_path / "a-folder")
        chat.query_one("#chat-input", Input).value = "hi"
        await focus_on(pilot, chat.query_one("#chat-input", Input))
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        picked = chat.ab_texts["B"]
        await pilot.press("b")
        await wait_for(pilot, lambda: "not saved" in notes(app), timeout=10)
        assert "conversation is kept" in notes(app)
        # Nothing is lost: the answers wait for the pick, which goes through once the file can be written.
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        assert {"role": "assistant", "content": picked} not in chat.history["tuned"]
        prefs = tmp_path / "prefs.jsonl"
        chat.query_one("#chat-prefs", Input).value = str(prefs)
        await focus_on(pilot, chat.query_one("#chat-tuned"))
        await pilot.press("b")
        await wait_for(pilot, lambda: chat.ab is AB.READY, timeout=10)
        assert chat.history["tuned"][-1] == {"role": "assistant", "content": picked}
        assert rows_of(prefs)[-1]["chosen"][0]["content"] == picked


@pytest.mark.parametrize("choice,fmt,gguf_type", [("gguf:q8_0", "gguf", "q8_0"), ("gguf:q4_k_m", "gguf", "q4_k_m"),
                                                   ("gguf-lora", "gguf-lora", None)])
async def test_export_tab_offers_gguf_with_its_type(tiny_model, tmp_path, choice, fmt, gguf_type):
    """GGUF (f16, bf16, q8_0, llama.cpp's k-quants, the LoRA adapter) is a format choice; the fused model's dtype
    and MLX quantization do not apply."""
    from textual.widgets import Select

    class Recording(FakeEngine):
        def export(self, reply_to, options):
            self.options = options
            super().export(reply_to, options)

    engine = Recording()
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=engine)
    app.run_dir = str(tmp_path / "some-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        app.query_one("#export-format", Select).value = choice
        await pilot.pause()
        assert app.query_one("#export-dtype").disabled and app.query_one("#export-quantize").disabled
        assert app.query_one("#export-output").value.endswith("some-run-" + choice.replace(":", "-"))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "stand-in export failed" in text_of(app, "#export-result"), timeout=10)
    assert engine.options["format"] == fmt and engine.options.get("gguf_type") == gguf_type
    assert engine.options["dtype"] is None and engine.options["quantize"] is None


async def test_a_file_of_thumbs_trains_with_kto(tiny_model, tmp_path):
    """Thumbs are unpaired rows: the run Chat prepares on a file of them uses the KTO loss."""
    from textual.widgets import Select

    from tui.panes.chat_pane import ChatPane

    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=FakeEngine())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        chat.prefs_rows, chat.prefs_unpaired = 3, 3
        chat.action_train_prefs()
        await wait_for(pilot, lambda: app.query_one(TabbedContent).active == "tab-train", timeout=10)
        assert app.query_one("#train-loss", Select).value == "kto"
        assert app.data_path == chat.prefs_path()


def scripted_stream(engine, answers: list[str]):
    """A stand-in model that gives `answers` in turn (then answers that name the seed)."""
    def stream(model, tokenizer, messages, sampling):
        yield answers.pop(0) if answers else f"{engine.switch.current} says {messages[-1]['content']} #{sampling.seed}"
    return stream


FAILING_THEN_TRAINING = '''
if "--skip-invalid" not in sys.argv:  # the first start: the data has a bad row, skipping it would train
    event(event="error", text="1 problem(s) in the data; nothing was written", status=2, skippable=True,
          problems=[{"file": "picks.jsonl", "line": 1, "field": "rejected", "message": "empty completion", "fix": None}])
    sys.exit(2)
''' + ARGV_TRAINER


async def test_a_pick_never_writes_a_row_train_refuses_and_a_failed_start_still_ends_in_chat(tiny_model, tmp_path,
                                                                                            monkeypatch):
    """The loop with forced empty and identical answers: no bad row is written, and a start that fails on bad
    rows offers to skip them; the retry's adapter is offered in Chat."""
    import mlx_dpo.model.ab
    from mlx_dpo import load_pairs
    from tui.confirm import BadRows

    engine = ABEngine()
    answers: list[str] = []
    monkeypatch.setattr(mlx_dpo.model.ab, "stream_answer", scripted_stream(engine, answers))
    use_stand_in_trainer(tmp_path, monkeypatch, FAILING_THEN_TRAINING)
    runs, prefs = tmp_path / "runs", tmp_path / "picks.jsonl"
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        chat.query_one("#chat-prefs", Input).value = str(prefs)
        chat.query_one("#chat-temperature", Input).value = "0.7"
        await pilot.press("ctrl+b")  # nothing loaded yet: A/B loads the model first
        await wait_for(pilot, lambda: chat.ab is AB.READY, timeout=10)

        async def say(text):
            chat.query_one("#chat-input", Input).value = text
            await focus_on(pilot, chat.query_one("#chat-input", Input))
            await pilot.press("enter")
            await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)

        # Both sides the same, also each time B is answered again: the chat says why; a pick saves nothing.
        answers += ["same"] * 5
        await say("one")
        assert "both answers are the same" in text_of(app, "#chat-model")
        await pilot.press("a")
        await wait_for(pilot, lambda: "train would refuse this pair" in notes(app), timeout=10)
        await wait_for(pilot, lambda: chat.ab is AB.PICKING, timeout=10)
        assert not prefs.exists()
        # An empty side is answered again before it is shown: the pick then saves a row train accepts.
        answers += ["", "   ", "kept", "other"]
        await focus_on(pilot, chat.query_one("#chat-tuned"))
        await pilot.press("x")  # both again
        await wait_for(pilot, lambda: chat.ab is AB.PICKING and set(chat.ab_texts.values()) == {"kept", "other"},
                       timeout=10)
        await pilot.press("a" if chat.ab_texts["A"] == "kept" else "b")
        await wait_for(pilot, lambda: chat.prefs_rows == 1, timeout=10)
        row = rows_of(prefs)[0]
        assert row["chosen"][0]["content"] == "kept" and row["sampling"]["answered_again"]
        loaded = load_pairs(prefs)
        assert not loaded.errors and len(loaded.pairs) == 1
        # Train on it: the first start fails on bad rows; the fix is offered, and the retry ends in Chat.
        await wait_for(pilot, lambda: chat.ab is AB.READY, timeout=10)
        await focus_on(pilot, chat.query_one("#chat-input", Input))
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        train = app.query_one(TrainPane)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, BadRows), timeout=20)
        assert "1 invalid row(s)" in str(app.screen.query_one(Label).render())
        await pilot.press("enter")  # Skip them and start
        await wait_for(pilot, lambda: (runs / "argv.json").exists() and not app.training_running, timeout=20)
        import json
        argv = json.loads((runs / "argv.json").read_text())
        assert "--skip-invalid" in argv and argv[argv.index("--data") + 1] == str(prefs)
        new_run = argv[argv.index("--output") + 1]
        assert app.run_dir == new_run and new_run in text_of(app, "#chat-model")
        assert train.process.errors == []  # the retry's own process ended well
