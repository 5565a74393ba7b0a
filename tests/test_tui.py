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


async def focus_on(pilot, widget) -> None:
    """Focus `widget` and wait until it has the focus: `focus()` is applied later, and a key pressed
    before that goes to whatever held the focus (under load, an Enter that reloads the Data tab)."""
    widget.focus()
    await wait_for(pilot, lambda: pilot.app.focused is widget)


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
        assert text_of(app, "#data-example").startswith("row 1 (")
        assert "▌Sure! Here is a short note" in text_of(app, "#data-chosen")  # the boundary before the completion
        assert text_of(app, "#data-rejected").startswith("▌")
        summary = text_of(app, "#data-summary")
        assert "0 pair(s) cut to max length 1024 tokens" in summary and "max length on the Train tab" in summary
        # Any row chosen in the preview is rendered, chosen and rejected both.
        table = app.query_one("#data-preview", DataTable)
        assert "training rows of" in str(table.border_title)
        await focus_on(pilot, table)
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: table.cursor_row == 2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: text_of(app, "#data-example").startswith("row 3 ("))
        assert text_of(app, "#data-example").startswith(f"row 3 ({pairs_file}:3)")
        assert text_of(app, "#data-chosen").startswith("▌Sure!") and text_of(app, "#data-rejected") != "▌"
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


async def test_data_pane_reads_a_hub_dataset_and_a_folder_with_its_split_and_skips_invalid_rows(tiny_model, tmp_path,
                                                                                                  monkeypatch):
    """The three source forms (issue #13): a hub id from the offline cache, a dataset folder, a file; the
    schema mapping shown; the problems listed, and what Skip invalid rows does with them."""
    import hf_datasets as hfd

    uf = "HuggingFaceH4/ultrafeedback_binarized"
    hub = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = hfd.ultrafeedback_folder(tmp_path / "uf-repo")
    hfd.add_to_hub_cache(hub, uf, folder)
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "x", "rejected": "y"}\n{"prompt": "b", "chosen": "z", "rejected": "z"}\n')
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        app.query_one("#data-split", Input).value = "test_prefs"
        app.query_one("#data-path", Input).value = uf
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: "valid pairs" in text_of(app, "#data-summary"))
        summary = text_of(app, "#data-summary")
        assert f"{uf}: 2 rows · 2 valid pairs" in summary and "(local cache), split test_prefs" in summary
        assert "UltraFeedback" in summary and "prompt = the chosen/rejected conversation" in summary
        assert "split: train = split test_prefs" in summary and text_of(app, "#data-errors") == "no errors"
        # The same repository as a local folder.
        app.query_one("#data-split", Input).value = "train_prefs"
        app.query_one("#data-path", Input).value = str(folder)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: f"{folder}: 4 rows" in text_of(app, "#data-summary"))
        # A file with an invalid row: refused unless Skip invalid rows is on; the reason is listed either way.
        app.query_one("#data-split", Input).value = ""
        app.query_one("#data-path", Input).value = str(bad)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: "1 error(s)" in text_of(app, "#data-summary"))
        errors = text_of(app, "#data-errors")
        assert "training refuses this data; turn on Skip invalid rows" in errors
        assert f"{bad}:2: chosen,rejected: chosen and rejected are identical" in errors
        app.query_one("#data-skip-invalid").value = True  # inspects again
        await wait_for(pilot, lambda: "skipped" in text_of(app, "#data-errors"))
        errors = text_of(app, "#data-errors")
        assert "1 invalid row(s) skipped" in errors and "uses the 1 valid pair(s)" in errors
        assert f"{bad}:2: chosen,rejected" in errors
        # Bad input is an error on the tab, never a traceback.
        app.query_one("#data-path", Input).value = "no-such-org/no-such-set"
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: "not in the local Hugging Face cache" in text_of(app, "#data-errors"))


async def test_model_pane_memory_estimate(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=None, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        before = app.model
        # A model that is not there does not become current.
        app.query_one("#model-path", Input).value = str(tmp_path / "no-such-model")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: "is not available" in text_of(app, "#model-memory"))
        assert app.model == before and f"current model stays {before}" in text_of(app, "#model-memory")
        app.query_one("#model-path", Input).value = tiny_model
        await pilot.click("#model-use")
        await wait_for(pilot, lambda: "available" in text_of(app, "#model-memory"))
        assert app.model == tiny_model
        memory = text_of(app, "#model-memory")
        assert "fits" in memory
        # The estimate says what it assumes: the Train form's figures (the demo's, when it opened on it).
        s = app.train_settings()
        assert (f"assuming batch {s.batch_size}, max length {s.max_length}, LoRA rank {s.lora_rank}, "
                "weights as stored") in memory


@pytest.mark.slow
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
        await wait_for(pilot, lambda: not app.training_running)
        assert "checkpoint saved" in text_of(app, "#train-status")
        assert list((run_dir / "checkpoints").iterdir())
        assert pane.query_one("#train-resume", Button).disabled is False

        # Runs: the run is listed; Enter shows its curves.
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await focus_on(pilot, table)
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
            await focus_on(pilot, chat.query_one("#chat-input", Input))
            await pilot.press("enter")
            await wait_for(pilot, lambda: not chat.pending)
        assert [m["role"] for m in chat.history["tuned"]] == ["user", "assistant", "user", "assistant"]
        assert chat.history["tuned"][1]["content"]
        chat.query_one("#chat-compare").value = True
        chat.query_one("#chat-input", Input).value = "compare this"
        await focus_on(pilot, chat.query_one("#chat-input", Input))
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
        await focus_on(pilot, table)
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
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "none")
        await pilot.pause(0.1)
        assert pane.query_one("#train-resume", Button).disabled  # nothing there to resume
        pane.resume(str(tmp_path / "runs" / "none"))  # as Runs' r does for a highlighted run
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


@pytest.mark.slow
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
        # What the trainer was doing when the app exited: it must quit only after the trainer has ended
        # (checkpointed). Recorded at exit, not asserted right after the click: a tiny model on an idle
        # machine checkpoints faster than the next line of this test runs.
        at_exit, exit_app = [], app.exit
        app.exit = lambda *a, **k: (at_exit.append(pane.process.proc.returncode), exit_app(*a, **k))[1]
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: pane.process.proc.returncode is not None or not app.is_running)
        await pilot.pause(0.5)
    assert at_exit and at_exit[0] == 130  # the app exited after the trainer did, not before
    assert pane.process.proc.returncode == 130
    assert list((runs / "q" / "checkpoints").glob("step_*/state.json"))
    assert app.return_code is not None  # the app exited by itself


# ---------------------------------------------------------------------- the trainer's events, with a stand-in
STAND_IN_TRAINER = r'''
import json, os, sys, time
out = sys.argv[sys.argv.index("--output") + 1]
def event(**fields):  # as `mlx-dpo train --events` writes them on stdout
    print(json.dumps(fields), flush=True)
def wait_for(name):  # the test creates the file once it has seen what came before
    while not os.path.exists(os.path.join(os.path.dirname(out), name)):
        time.sleep(0.02)
'''


def use_stand_in_trainer(tmp_path, monkeypatch, body: str) -> None:
    """Make the app run `body` (after STAND_IN_TRAINER's helpers) where it would run `mlx-dpo train --events`."""
    import tui.training

    script = tmp_path / "trainer.py"
    script.write_text(STAND_IN_TRAINER + body)
    monkeypatch.setattr(tui.training, "TRAINER", [sys.executable, str(script)])


async def test_the_train_tab_follows_the_trainers_events(tiny_model, pairs_file, tmp_path, hf_home, monkeypatch):
    row = {"step": 5, "loss": 0.61, "rewards/accuracies": 0.75, "rewards/margins": 0.2, "tokens_per_second": 900.0,
           "peak_memory_gb": 0.01}
    use_stand_in_trainer(tmp_path, monkeypatch, f'''
event(event="phase", phase="load", text="loading the model")
wait_for("go")
event(event="task", name="reference", done=3, total=16, label="reference log-probs (train)")
wait_for("go2")
event(event="log", text="16 training pairs, 24 steps")
print("a line of a library, on stderr", file=sys.stderr, flush=True)
event(event="phase", phase="train", text="training 24 steps")
event(event="start", step=0, total_steps=24, pairs=16, trainable_parameters=1234)
event(event="progress", step=5, total_steps=24)
with open(os.path.join(out, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({row!r}) + "\\n")
event(event="metrics", row={row!r})
event(event="checkpoint", step=5, path=os.path.join(out, "checkpoints", "step_0000005"))
event(event="brand-new-kind", step=5)
wait_for("finish")
event(event="done", step=24, loss=0.3, accuracy=1.0, output=out)
''')
    runs = tmp_path / "runs"
    run_dir = runs / "e"
    run_dir.mkdir(parents=True)
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(run_dir)
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: text_of(app, "#train-status") == "starting: loading the model …")
        (runs / "go").touch()
        await wait_for(pilot, lambda: text_of(app, "#train-status") == "starting: reference log-probs (train) 3/16 …",
                       timeout=20)
        (runs / "go2").touch()
        bar = pane.query_one("#train-progress")
        await wait_for(pilot, lambda: bar.total == 24 and bar.progress == 5 and pane.query_one(MetricsCharts).rows,
                       timeout=20)
        assert text_of(app, "#train-status").startswith("step 5/24 · ETA")  # the start event's total, not the form's
        (runs / "finish").touch()
        await wait_for(pilot, lambda: not app.training_running)
        assert text_of(app, "#train-status") == f"training finished: adapter in {run_dir}"
        log = list(pane.process.tail)
        assert "16 training pairs, 24 steps" in log and "a line of a library, on stderr" in log
        assert not any(line.startswith("{") for line in log)  # events are read, not shown as JSON


@pytest.mark.parametrize("ending, status", [
    ('print("error: out of memory at step 3", file=sys.stderr, flush=True)\n'
     'event(event="error", text="out of memory at step 3", status=1)\nsys.exit(1)',
     "training failed (exit status 1): error: out of memory at step 3"),
    ('event(event="stopped", signal="SIGINT", status=130, checkpoint=None)\nsys.exit(130)',
     "training stopped before its first checkpoint: nothing was saved"),
], ids=["error", "stopped-before-a-checkpoint"])
async def test_how_a_run_ended_comes_from_its_events(ending, status, tiny_model, pairs_file, tmp_path, hf_home,
                                                     monkeypatch):
    use_stand_in_trainer(tmp_path, monkeypatch, 'event(event="log", text="training")\n' + ending + "\n")
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(tmp_path / "runs" / "x")
        await pilot.click("#train-start")
        await wait_for(pilot, lambda: pane.process is not None and not app.training_running)
        assert text_of(app, "#train-status") == status
        errors = [line for line in pane.process.tail if line.startswith("error")]
        assert len(errors) <= 1  # printed on stderr and sent as an event: shown once


async def test_plain_tui_uses_the_engines_defaults_on_the_demo_model(tmp_path, hf_home):
    from mlx_dpo import DEMO_MODEL, TrainConfig

    app = MlxDpoApp(runs_root=str(tmp_path / "runs"))  # no model given: the demo model, but not the demo's settings
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        assert app.model == str(DEMO_MODEL)
        assert app.query_one("#train-max_length", Input).value == str(TrainConfig.max_length)
        assert app.query_one("#train-learning_rate", Input).value != "5e-4"


async def test_the_train_form_starts_from_the_demo_settings(tmp_path, hf_home):
    from mlx_dpo import DEMO_MODEL

    if not (DEMO_MODEL / "config.json").exists():
        pytest.skip("this installation has no demo model")
    app = MlxDpoApp(runs_root=str(tmp_path / "runs"), demo=True)  # `mlx-dpo tui --demo`: the demo model and settings
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        assert app.model == str(DEMO_MODEL)
        form = {name: app.query_one(f"#train-{name}", Input).value
                for name in ("iters", "batch_size", "learning_rate", "beta", "lora_rank", "max_length", "seed")}
        assert form == {"iters": "24", "batch_size": "2", "learning_rate": "5e-4", "beta": "0.5", "lora_rank": "4",
                        "max_length": "64", "seed": "0"}
        assert str(DEMO_MODEL) in [o.id for o in app.query_one("#model-list").options]  # listed as bundled
        assert app.query_one("#train-rpo_alpha", Input).value == "1"  # what keeps these settings from ruining it


async def test_other_tabs_read_the_train_settings(tiny_model, tmp_path, hf_home):
    from tui.panes.train_pane import TrainSettings

    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        for name, value in (("batch_size", "6"), ("max_length", "long"), ("lora_rank", "16"), ("processes", "")):
            app.query_one(f"#train-{name}", Input).value = value
        # A field that does not parse keeps its default, as the memory estimate and token limits expect.
        assert app.train_settings() == TrainSettings(batch_size=6, max_length=1024, lora_rank=16, processes=1)


def test_the_app_loads_no_mlx():
    # The UI thread must not touch MLX: only the engine thread's jobs import it, when they run.
    code = ("import sys, tui.app, tui.launcher; print('mlx.core' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_launcher_demo_opens_the_bundled_demo(monkeypatch):
    """`mlx-dpo tui --demo` (what ./scripts/run.sh opens) needs no paths: they come from mlx_dpo.demo."""
    import tui.app
    from mlx_dpo import DEMO_MODEL, DEMO_PAIRS, DEMO_VALID
    from tui import launcher

    seen = {}
    monkeypatch.setattr(tui.app, "run_app", lambda *a, **kw: seen.update(args=a, kw=kw) or 0)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert launcher.main(["tui", "--demo", "--runs", "elsewhere"]) == 0
    assert seen["args"] == (str(DEMO_MODEL), str(DEMO_PAIRS), str(DEMO_VALID), "elsewhere")
    assert seen["kw"] == {"demo": True}
    assert DEMO_PAIRS.exists() and DEMO_VALID.exists() and (DEMO_MODEL / "config.json").exists()


async def test_sample_answers_and_health_warnings_show_on_the_train_tab(tiny_model, pairs_file, tmp_path, hf_home,
                                                                      monkeypatch):
    """The trainer's samples and warning events: the start's answer beside the answer now, and the warning
    with its fix (in the tab, the log and a notification)."""
    use_stand_in_trainer(tmp_path, monkeypatch, '''
event(event="samples", step=0, samples=[{"prompt": "What is 2+2?", "answer": "4."}])
event(event="samples", step=10, samples=[{"prompt": "What is 2+2?", "answer": "4 4 4 4 4", "base": "4."}])
event(event="warning", kind="repetitive", message="answers repeat themselves; lower the learning rate")
wait_for("finish")
''')
    runs = tmp_path / "runs"
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-output", Input).value = str(runs / "s")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "repetitive" in text_of(app, "#samples-warnings"), timeout=20)
        answers = text_of(app, "#samples-answers")
        assert "start: 4." in answers and "step 10: 4 4 4 4 4" in answers and "What is 2+2?" in answers
        assert "lower the learning rate" in text_of(app, "#samples-warnings")
        assert any("lower the learning rate" in n.message for n in app._notifications)
        assert any(line.startswith("warning: answers repeat") for line in pane.process.tail)
        runs.mkdir(parents=True, exist_ok=True)
        (runs / "finish").touch()
        await wait_for(pilot, lambda: not app.training_running, timeout=20)
