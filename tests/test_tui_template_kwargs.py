"""The chat template's variables in the app (issue #26): the Model tab's "Template variables" field reaches
everything the app does with the model — the training and iterate commands it starts, chat and A/B answers,
the Data tab's rendered pair — and a value the engine refuses leaves the previous one in effect.

The render tests use a tiny model carrying Qwen3's real template (tests/real_material.py), which reads
`enable_thinking`: with `{"enable_thinking": false}` the generation prompt ends in an empty think block."""

from __future__ import annotations

import json
import shlex
import threading
import time

import pytest
from textual.widgets import DataTable, Input, Static

import real_material
from tui.app import MlxDpoApp
from tui.engine import Engine
from tui.messages import ABAnswers, ChatDone, ChatLoaded, JobFailed
from tui.panes.chat_pane import ChatPane
from tui.panes.train_pane import TrainPane

from conftest import write_jsonl
from test_tui import focus_on, text_of, use_stand_in_trainer, wait_for

SIZE = (120, 40)
NO_THINK = '{"enable_thinking": false}'
# Qwen3's generation prompt with enable_thinking false: the assistant's turn opens with an empty think block.
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


class StandInEngine:
    """The engine thread's interface without MLX: it records what the app hands it."""

    def __init__(self):
        self.template_kwargs: list[dict] = []  # each set_template_kwargs, in order
        self.inspected: list[dict] = []        # the template_kwargs of each data inspection

    def start(self):
        pass

    def stop(self):
        pass

    def set_template_kwargs(self, kwargs):
        self.template_kwargs.append(kwargs)

    def inspect_data(self, reply_to, path, *a, **kw):
        self.inspected.append(kw.get("template_kwargs"))

    def estimate_memory(self, *a, **kw):
        pass

    def load_chat(self, reply_to, model, adapter):
        self.template_kwargs.append(("load", adapter))
        reply_to.post_message(ChatLoaded("chat-load", f"{model} (stand-in)"))


ARGV_TRAINER = '''
os.makedirs(out, exist_ok=True)
with open(os.path.join(os.path.dirname(out), "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
event(event="done", step=1, loss=0.6, accuracy=1.0, output=out)
'''


async def type_template_kwargs(pilot, app, text: str) -> None:
    """On the Model tab: replace the field's text with `text` and press Enter."""
    await pilot.press("f2")
    field = app.query_one("#model-template-kwargs", Input)
    await focus_on(pilot, field)
    field.value = ""
    await pilot.press(*text, "enter")
    await pilot.pause()


def train_config_of(argv: list[str]):
    """The TrainConfig `mlx-dpo train` builds from these arguments (the CLI's own parser and rules)."""
    from mlx_dpo.cli.parser import build_parser
    from mlx_dpo.cli.train import train_config

    return train_config(build_parser().parse_args(["train", *argv]))


async def test_template_variables_typed_on_the_model_tab_reach_the_training_and_iterate_commands(
        tiny_model, pairs_file, tmp_path, monkeypatch):
    from mlx_dpo.cli.iterate import iterate_config
    from mlx_dpo.cli.parser import build_parser

    use_stand_in_trainer(tmp_path, monkeypatch, ARGV_TRAINER)
    engine = StandInEngine()
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await type_template_kwargs(pilot, app, NO_THINK)
        assert app.chat_template_kwargs == NO_THINK
        assert engine.template_kwargs == [{"enable_thinking": False}]  # chat and A/B render with them from now on

        # The Data tab renders its pairs with them.
        await pilot.press("f1")
        await pilot.click("#data-load")
        await wait_for(pilot, lambda: engine.inspected, timeout=10)
        assert engine.inspected[-1] == {"enable_thinking": False}

        # The next training run the app starts carries them as --chat-template-kwargs.
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        run = tmp_path / "runs" / "r"
        pane.query_one("#train-output", Input).value = str(run)
        await pilot.press("ctrl+s")
        argv_file = tmp_path / "runs" / "argv.json"
        await wait_for(pilot, argv_file.exists, timeout=30)
        cfg = train_config_of(json.loads(argv_file.read_text()))
        assert cfg.template_kwargs == {"enable_thinking": False}
        await wait_for(pilot, lambda: not pane.running, timeout=30)

        # In iterate mode every round trains (and answers) with them.
        pane.set_mode("iterate")
        await pilot.pause()
        pane.query_one("#train-judge", Input).value = "python:my_judge:judge"
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "it")
        line = pane.form.command_line(pane.output)
        it = iterate_config(build_parser().parse_args(shlex.split(line)[1:]))
        assert it.train["chat_template_kwargs"] == NO_THINK


async def test_bad_template_variables_are_refused_on_the_field_and_the_previous_ones_stay(tiny_model, pairs_file,
                                                                                          tmp_path):
    engine = StandInEngine()
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"), engine=engine)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one("#model-template-kwargs", Input)
        error = app.query_one("#model-template-error", Static)
        assert not error.display
        await type_template_kwargs(pilot, app, NO_THINK)
        for bad, says in (("{enable_thinking: false}", "not valid JSON"),
                          ("[1, 2]", "expected a JSON object, got '[1, 2]'"),
                          ('{"add_generation_prompt": true}', "add_generation_prompt is set by the renderer")):
            await type_template_kwargs(pilot, app, bad)
            shown = text_of(app, "#model-template-error")
            assert shown.startswith("template variables not changed: ") and says in shown, shown
            assert f"(still in use: {NO_THINK})" in shown and error.display
            assert error.region.height > 0 and error.region.bottom <= 23  # on screen at 80x24
            assert field.has_class("-invalid-field") and field.value == bad  # kept to be corrected
            assert app.chat_template_kwargs == NO_THINK
            pane = app.query_one(TrainPane)
            assert pane.form.flags(str(tmp_path / "r"))["chat_template_kwargs"] == NO_THINK
        assert engine.template_kwargs == [{"enable_thinking": False}]  # the engine never saw a refused value

        # Leaving the field applies it too; an empty field means no variables.
        await focus_on(pilot, field)
        field.value = ""
        await pilot.press("f3")
        await pilot.pause()
        assert app.chat_template_kwargs is None and not error.display and not field.has_class("-invalid-field")
        assert "chat_template_kwargs" not in app.query_one(TrainPane).form.flags(str(tmp_path / "r"))
        assert engine.template_kwargs[-1] == {}


async def test_chatting_with_a_run_from_runs_brings_the_template_variables_it_trained_with(tiny_model, tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model: {tiny_model}\ndata: d.jsonl\niters: 2\n"
                                     f"chat_template_kwargs: '{NO_THINK}'\n")
    engine = StandInEngine()
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"), engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, timeout=10)
        await focus_on(pilot, table)
        await pilot.press("c")
        await wait_for(pilot, lambda: app.query_one(ChatPane).loaded, timeout=10)
        # As `mlx-dpo chat --adapter RUN` renders: the run's variables, set before the model loads; shown on Model.
        assert engine.template_kwargs == [{"enable_thinking": False}, ("load", str(run))]
        assert app.chat_template_kwargs == NO_THINK
        assert app.query_one("#model-template-kwargs", Input).value == NO_THINK


# ---------------------------------------------------------------------- real renders (Qwen3's template)
@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    try:
        real_material.material_dir()
    except real_material.Unavailable as e:
        pytest.skip(f"real templates unavailable (the package index cannot be reached): {e}")
    return str(real_material.build_real_model("qwen3", tmp_path_factory.mktemp("qwen3") / "m"))


@pytest.fixture
def rendered_prompts(monkeypatch) -> list[str]:
    """Every prompt chat and A/B generate from, as text (they all go through generate.prompt_tokens)."""
    import mlx_dpo.model.generate as generate

    seen, real = [], generate.prompt_tokens

    def spy(tokenizer, messages):
        ids = real(tokenizer, messages)
        seen.append(tokenizer.decode(ids))
        return ids

    monkeypatch.setattr(generate, "prompt_tokens", spy)
    return seen


async def test_chat_and_the_data_tabs_rendered_pair_use_the_template_variables(qwen3, tmp_path, rendered_prompts):
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "What is 7 x 8?", "chosen": "56.", "rejected": "54."}] * 2)
    app = MlxDpoApp(model=qwen3, data=data, runs_root=str(tmp_path / "runs"), engine=Engine())
    async with app.run_test(size=SIZE) as pilot:
        await type_template_kwargs(pilot, app, NO_THINK)

        await pilot.press("f1")  # the file was inspected at start, without them: loaded again, it renders with them
        await pilot.click("#data-load")
        await wait_for(pilot, lambda: EMPTY_THINK in text_of(app, "#data-example"), timeout=120)

        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        chat.query_one("#chat-temperature", Input).value = "0"
        chat.query_one("#chat-max-tokens", Input).value = "3"
        await pilot.click("#chat-load")
        await wait_for(pilot, lambda: chat.loaded, timeout=120)
        chat.query_one("#chat-input", Input).value = "What is 7 x 8?"
        await focus_on(pilot, chat.query_one("#chat-input", Input))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not chat.pending, timeout=120)
        assert rendered_prompts and rendered_prompts[-1].endswith(EMPTY_THINK), rendered_prompts


class Inbox:
    """What an engine job posts (a pane's stand-in); post_message is called from the engine thread."""

    def __init__(self):
        self.messages: list = []
        self.lock = threading.Lock()

    def post_message(self, message) -> bool:
        with self.lock:
            self.messages.append(message)
        return True

    def wait(self, kind, timeout: float = 120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                failed = [m for m in self.messages if isinstance(m, JobFailed)]
                found = [m for m in self.messages if isinstance(m, kind)]
            assert not failed, failed[0].error
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no {kind.__name__} within {timeout} s")


def test_template_variables_set_after_the_chat_model_loaded_reach_its_next_chat_and_ab_answers(qwen3,
                                                                                              rendered_prompts):
    engine, inbox = Engine(), Inbox()
    engine.start()
    try:
        engine.load_chat(inbox, qwen3, None)
        inbox.wait(ChatLoaded)
        sampling = {"temperature": 0.0, "max_tokens": 2}
        question = [{"role": "user", "content": "What is 7 x 8?"}]
        engine.chat(inbox, question, sampling)
        inbox.wait(ChatDone)
        assert len(rendered_prompts) == 1 and "<think>" not in rendered_prompts[0]  # none set yet

        engine.set_template_kwargs({"enable_thinking": False})  # no reload
        engine.chat(inbox, question, sampling)
        engine.ab_start(inbox, "samples", {"temperature": 0.8, "max_tokens": 2}, None, [], {})
        engine.ab_ask(inbox, "What is 7 x 8?")
        inbox.wait(ABAnswers)
        assert len(rendered_prompts) >= 4  # the chat answer, then A and B (and any answer asked again)
        assert all(p.endswith(EMPTY_THINK) for p in rendered_prompts[1:]), rendered_prompts

        engine.set_template_kwargs({})  # cleared: the template's own default again
        before = len(rendered_prompts)
        inbox.messages.clear()
        engine.ab_regenerate(inbox, "A")
        inbox.wait(ABAnswers)
        assert len(rendered_prompts) > before
        assert not any("<think>" in p for p in rendered_prompts[before:]), rendered_prompts[before:]
    finally:
        engine.stop()
