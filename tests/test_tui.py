"""The Textual app, driven with Pilot: every pane, with the real engine on a tiny model end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from textual.widgets import Button, DataTable, Input, Static, TabbedContent

from tui.app import MlxDpoApp
from tui.confirm import ConfirmQuit
from tui.panes.chat_pane import ChatPane, Transcript
from tui.panes.train_pane import TrainPane
from tui.widgets.charts import MetricsCharts


SIZE = (120, 45)


async def wait_for(pilot, predicate, timeout=120.0, step=0.2):
    """Let the app run until `predicate()` holds (engine jobs and the trainer run concurrently)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        await pilot.pause(step)
        if predicate():
            return
    raise AssertionError("timed out waiting for the app")


def text_of(app, selector) -> str:
    return str(app.query_one(selector, Static).render())


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


async def test_data_pane_good_and_broken_file(tiny_model, pairs_file, tmp_path, hf_home):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "x", "rejected": "x"}\n{nope\n')
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "valid pairs" in text_of(app, "#data-summary"))
        assert "16 rows · 16 valid pairs (explicit 16) · 0 error(s)" in text_of(app, "#data-summary")
        assert "prompt" in text_of(app, "#data-summary") and "pairs will train" in text_of(app, "#data-summary")
        assert app.query_one("#data-preview", DataTable).row_count == 16
        example = text_of(app, "#data-example")
        assert "▌Sure! Here is a short note" in example  # the boundary marker before the completion
        # A broken file: errors by line, and the app stays usable.
        app.query_one("#data-path", Input).value = str(bad)
        await pilot.click("#data-load")
        await wait_for(pilot, lambda: "2 error(s)" in text_of(app, "#data-summary"))
        errors = text_of(app, "#data-errors")
        assert f"{bad}:1: chosen,rejected: chosen and rejected are identical" in errors
        assert f"{bad}:2: json: invalid JSON" in errors
        # A missing file is reported, not raised.
        app.query_one("#data-path", Input).value = str(tmp_path / "missing.jsonl")
        await pilot.click("#data-load")
        await wait_for(pilot, lambda: "no such file" in text_of(app, "#data-errors"))
        await pilot.press("f2")
        await pilot.pause(0.3)
        assert app.query_one(TabbedContent).active == "tab-model"


async def test_model_pane_memory_estimate(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=None, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        app.query_one("#model-path", Input).value = tiny_model
        await pilot.click("#model-use")
        await wait_for(pilot, lambda: "available" in text_of(app, "#model-memory"))
        assert app.model == tiny_model
        assert "fits" in text_of(app, "#model-memory")


async def test_train_stop_runs_chat_export_end_to_end(tiny_model, pairs_file, valid_file, tmp_path, hf_home):
    runs = tmp_path / "runs"
    app = MlxDpoApp(model=tiny_model, data=pairs_file, valid=valid_file, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        run_dir = runs / "r1"
        pane.query_one("#train-output", Input).value = str(run_dir)
        pane.query_one("#train-iters", Input).value = "100000"
        pane.query_one("#train-batch_size", Input).value = "2"
        pane.query_one("#train-learning_rate", Input).value = "5e-3"
        pane.query_one("#train-save_every", Input).value = "100000"
        pane.query_one("#train-eval_every", Input).value = "2"
        await pilot.click("#train-start")
        charts = pane.query_one(MetricsCharts)
        # Live curves receive training rows and eval points while the child process runs.
        await wait_for(pilot, lambda: len([r for r in charts.rows if "loss" in r]) >= 3
                       and any("eval/loss" in r for r in charts.rows))
        assert app.training_running and pane.query_one("#train-stop", Button).disabled is False
        assert "ETA" in text_of(app, "#train-status")
        xs, ys = charts.points("loss")
        assert xs[:3] == [1, 2, 3] and abs(ys[0] - 0.6931) < 1e-3
        # Quitting while training asks first.
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.click("#confirm-no")
        await pilot.pause(0.2)
        # Stop: the trainer checkpoints and exits 130.
        await pilot.click("#train-stop")
        await wait_for(pilot, lambda: not app.training_running, timeout=60)
        assert "checkpoint saved" in text_of(app, "#train-status")
        assert list((run_dir / "checkpoints").iterdir())
        assert pane.query_one("#train-resume", Button).disabled is False

        # Runs: the run is listed; Enter shows its curves.
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.run_dir == str(run_dir)
        assert app.query_one("#runs-charts", MetricsCharts).rows

        # Chat two turns with base + adapter, then compare.
        await pilot.press("f5")
        chat = app.query_one(ChatPane)
        chat.query_one("#chat-temperature", Input).value = "0"
        chat.query_one("#chat-max-tokens", Input).value = "6"
        await pilot.click("#chat-load")
        await wait_for(pilot, lambda: chat.loaded)
        for msg in ("hello", "tell me more"):
            chat.query_one("#chat-input", Input).value = msg
            chat.query_one("#chat-input", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.pending)
        assert [m["role"] for m in chat.history["tuned"]] == ["user", "assistant", "user", "assistant"]
        assert chat.history["tuned"][1]["content"]
        chat.query_one("#chat-compare").value = True
        chat.query_one("#chat-input", Input).value = "compare this"
        chat.query_one("#chat-input", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not chat.pending)
        assert chat.history["base"][-1]["role"] == "assistant"
        assert chat.query_one("#chat-base", Transcript).display

        # Export and see the verification result.
        await pilot.press("f6")
        out = tmp_path / "exported"
        app.query_one("#export-output", Input).value = str(out)
        await pilot.click("#export-go")
        await wait_for(pilot, lambda: "exported" in text_of(app, "#export-result")
                       or "failed" in text_of(app, "#export-result"))
        assert "verified: max |logit difference|" in text_of(app, "#export-result")
        assert (out / "model.safetensors").exists()


async def test_runs_overlay_and_resume_button(tiny_model, pairs_file, tmp_path, hf_home):
    from mlx_dpo.cli import main

    runs = tmp_path / "runs"
    for name, lr in (("a", "1e-3"), ("b", "5e-3")):
        assert main(["train", "--model", tiny_model, "--data", pairs_file, "--output", str(runs / name),
                     "--iters", "3", "--learning-rate", lr]) == 0
    app = MlxDpoApp(model=tiny_model, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        table.focus()
        await pilot.press("enter")
        await pilot.press("down")
        await pilot.press("o")
        await pilot.pause(0.2)
        charts = app.query_one("#runs-charts", MetricsCharts)
        assert len(charts.rows) == 3 and len(charts.overlay_rows) == 3
        assert "(grey)" in text_of(app, "#runs-help")


async def test_export_failure_is_shown_not_fatal(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    app.run_dir = str(tmp_path / "not-a-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        app.query_one("#export-output", Input).value = str(tmp_path / "out")
        await pilot.click("#export-go")
        await wait_for(pilot, lambda: "adapter folder not found" in text_of(app, "#export-result"))
        assert not (tmp_path / "out").exists()
        assert app.query_one("#export-go", Button).disabled is False


def test_launcher_without_a_terminal_points_to_the_cli():
    r = subprocess.run([sys.executable, "-m", "tui.launcher"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "needs a terminal" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tui.launcher", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "validate" in r.stdout


async def test_heldout_file_is_checked_too(tiny_model, pairs_file, tmp_path, hf_home):
    bad = tmp_path / "valid.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "x"}\n')
    app = MlxDpoApp(model=tiny_model, data=pairs_file, valid=str(bad), runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "error(s)" in text_of(app, "#valid-summary"))
        assert f"{bad}:1: rejected: missing" in text_of(app, "#valid-summary")


async def test_model_output_with_brackets_is_not_markup(tiny_model, tmp_path, hf_home):
    from tui.messages import ChatChunk

    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        side = app.query_one("#chat-tuned", Transcript)
        side.add_user("hi")
        app.query_one(ChatPane).on_chat_chunk(ChatChunk("chat", "tuned", "see [1] and [bold]x[/] ]["))
        await pilot.pause(0.1)
        assert "see [1] and [bold]x[/] ][" in str(side.current.render())


async def test_resume_button_without_checkpoint_explains(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-resume", Button).disabled = False
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "none")
        await pilot.click("#train-resume")
        await pilot.pause(0.2)
        assert not app.training_running
        assert any("no checkpoint to resume" in n.message for n in app._notifications)


async def test_paths_with_brackets_are_text_not_markup(tiny_model, tmp_path, hf_home):
    odd = tmp_path / "d[v2]" / "[/]x.jsonl"
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#data-path", Input).value = str(odd)
        await pilot.click("#data-load")
        await wait_for(pilot, lambda: "no such file" in text_of(app, "#data-errors"))
        assert "[/]x.jsonl" in text_of(app, "#data-errors")


async def test_quit_while_training_waits_for_the_checkpoint(tiny_model, pairs_file, tmp_path, hf_home):
    runs = tmp_path / "runs"
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(runs / "q")
        pane.query_one("#train-iters", Input).value = "100000"
        pane.query_one("#train-save_every", Input).value = "100000"
        await pilot.click("#train-start")
        charts = pane.query_one(MetricsCharts)
        await wait_for(pilot, lambda: len(charts.rows) >= 2)
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        await pilot.click("#confirm-yes")
        assert app.is_running  # still up: it quits only after the trainer has checkpointed
        await wait_for(pilot, lambda: pane.process.proc.returncode is not None, timeout=60)
        await pilot.pause(0.5)
    assert pane.process.proc.returncode == 130
    assert list((runs / "q" / "checkpoints").glob("step_*/state.json"))
    assert app.return_code is not None  # the app exited by itself
