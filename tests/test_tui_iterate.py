"""Iterative DPO in the app (issue #17): the Train tab's iterate mode and its per-round views, the Runs
tab's rounds and its Evaluate action.

One test runs the real `mlx-dpo iterate` on the bundled demo model end to end (stop, resume, evaluate);
the others use a stand-in iterator that speaks the iterate events, and the stand-in engine."""

from __future__ import annotations

import json
import sys

import pytest
from textual.widgets import Button, DataTable, Input, Select
from textual.widgets._footer import FooterKey

from tui.app import MlxDpoApp
from tui.help_screen import HelpScreen
from tui.panes.iterate_form import IterateForm
from tui.panes.runs_pane import RunsPane
from tui.panes.train_pane import TrainPane
from tui.widgets.charts import MetricsCharts, RoundCharts
from tui.widgets.rounds import RoundsTable

from test_tui import STAND_IN_TRAINER, focus_on, text_of, wait_for
from test_tui_keys import footer_keys, make_app, notes

SIZE = (120, 45)

# An iteration of one round as `mlx-dpo iterate --events` reports it; it waits for the test's "go" files.
STAND_IN_ITERATOR = r'''
rd = os.path.join(out, "round_1")
os.makedirs(rd, exist_ok=True)
with open(os.path.join(out, "iterate.yaml"), "w") as f:
    f.write("rounds: 1\njudge: python:x:y\n")
event(event="phase", phase="evaluate", text="round 0: answering 3 held-out prompts")
event(event="round", report={"round": 0, "heldout/prompts": 3, "heldout/score_mean": 0.4, "heldout/score_median": 0.5,
                             "heldout/kl_to_base": 0.0, "heldout/answer_tokens": 7.0})
event(event="phase", phase="generate", text="round 1: 2 answers to each of 4 prompts")
event(event="task", name="generate", done=2, total=4, label="round 1: sampling answers")
wait_for("go")
event(event="phase", phase="train", text="round 1: training on 3 pairs")
event(event="phase", phase="load", text="loading the model")
event(event="start", step=0, total_steps=4, pairs=3, trainable_parameters=10)
row = {"step": 1, "loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.0, "tokens_per_second": 500.0,
       "peak_memory_gb": 0.01}
with open(os.path.join(rd, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")
event(event="progress", step=1, total_steps=4)
event(event="metrics", row=row)
wait_for("go2")
open(os.path.join(rd, "adapters.safetensors"), "w").close()
event(event="phase", phase="evaluate", text="round 1: answering 3 held-out prompts")
event(event="round", report={"round": 1, "adapter": rd, "pairs": 3, "skipped/tie": 1, "train/steps": 4,
                             "train/loss": 0.61, "heldout/prompts": 3, "heldout/score_mean": 0.6,
                             "heldout/score_median": 0.7, "heldout/win_rate_vs_start": 0.67,
                             "heldout/win_rate_vs_previous": 0.67, "heldout/kl_to_base": 0.01,
                             "heldout/answer_tokens": 7.5})
event(event="done", rounds=1, output=out)
'''


def use_stand_in_iterator(tmp_path, monkeypatch) -> None:
    import tui.training

    script = tmp_path / "iterator.py"
    script.write_text(STAND_IN_TRAINER + STAND_IN_ITERATOR)
    monkeypatch.setattr(tui.training, "ITERATOR", [sys.executable, str(script)])


def table_rows(table: DataTable) -> list[tuple[str, ...]]:
    return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def on_screen(app, widget, bottom: int) -> bool:
    region = widget.region
    return region.height > 0 and region.y >= 3 and region.bottom <= bottom and app.screen.region.contains_region(region)


async def choose_iterate(pilot, pane) -> None:
    """The mode Select, with the keyboard: Enter opens it, ↓ Enter picks "iterate"."""
    mode = pane.query_one("#train-mode", Select)
    await focus_on(pilot, mode)
    await pilot.press("enter", "down", "enter")
    await wait_for(pilot, lambda: pane.mode == "iterate" and pane.has_class("-iterate"))


# ---------------------------------------------------------------------- the form and the child's events
async def test_iterate_mode_follows_the_rounds_of_the_iteration(tiny_model, pairs_file, valid_file, tmp_path,
                                                                monkeypatch):
    use_stand_in_iterator(tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    runs.mkdir()
    folder = runs / "it"
    app = make_app(tiny_model, pairs_file, tmp_path, valid=valid_file)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        await choose_iterate(pilot, pane)
        # The train-only fields give way to the iteration's; the human judge is pointed to Chat's A/B mode.
        assert not pane.query_one("#train-processes").display and not pane.query_one("#train-hostfile").parent.display
        assert pane.query_one("#train-iterate").display and "A/B" in text_of(app, "#iterate-human")
        assert str(pairs_file) in pane.query_one("#train-prompts", Input).placeholder  # the Data tab's file
        assert str(valid_file) in pane.query_one("#train-valid_prompts", Input).placeholder
        # No demo model here: no demo reward offered, and a judge must be written.
        assert [v for _, v in pane.query_one(IterateForm).judge_options()] == ["custom"]
        assert pane.query_one("#train-judge-choice", Select).value == "custom"
        pane.query_one("#train-output", Input).value = str(folder)
        pane.query_one("#train-judge", Input).value = "human"
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert not app.training_running and "Chat tab's A/B mode" in notes(app)
        assert app.focused is pane.query_one("#train-judge")  # the field named is focused
        pane.query_one("#train-judge", Input).value = "python:mlx_dpo.demo.reward:judge"
        pane.query_one("#train-rounds", Input).value = "1"
        pane.query_one("#train-samples", Input).value = "2"
        await pilot.press("escape")
        await pilot.press("ctrl+g")  # the equivalent command is `mlx-dpo iterate …`
        await pilot.pause(0.2)
        assert "mlx-dpo iterate" in notes(app) and "--judge python:mlx_dpo.demo.reward:judge" in notes(app)
        await pilot.press("ctrl+s")
        # Round 0's report, then round 1's generate stage with its task progress.
        table = pane.query_one("#train-round-table", RoundsTable)
        bar = pane.query_one("#train-progress")
        await wait_for(pilot, lambda: table.row_count == 1 and bar.total == 4 and bar.progress == 2)
        assert text_of(app, "#train-status") == "round 1: sampling answers 2/4 …"
        stage = text_of(app, "#train-stage")
        assert stage.startswith("round 1/1 · ") and "generate › judge › train › evaluate" in stage
        assert pane.stage == "generate" and table_rows(table)[0][:2] == ("0 (start)", "")
        # At 80×24 the status, the round's stage and the round table are on the first screen.
        for selector in ("#train-status", "#train-stage", "#train-round-table", "#train-stop"):
            assert on_screen(app, pane.query_one(selector), 23), (selector, pane.query_one(selector).region)
        # The round's training: its own curves, from its run dir's metrics.
        (runs / "go").touch()
        charts = pane.query_one(MetricsCharts)
        await wait_for(pilot, lambda: charts.rows and pane.stage == "train")
        assert charts.rows[0]["step"] == 1
        await wait_for(pilot, lambda: text_of(app, "#train-status").startswith("step 1/4 · ETA"))
        (runs / "go2").touch()
        await wait_for(pilot, lambda: not app.training_running)
        assert text_of(app, "#train-status").startswith(f"iteration finished: 1 round(s) in {folder}")
        rows = table_rows(table)
        assert [r[0] for r in rows] == ["0 (start)", "1"]
        assert rows[1][1:5] == ("3", "1", "4", "0.6100") and rows[1][5:] == ("0.600", "0.67", "0.67", "0.010", "7.5")
        assert len(pane.query_one(RoundCharts).rows) == 2
        assert app.run_dir == str(folder / "round_1")  # the last round's adapter is the app's run (Chat, Export)
        assert pane.query_one("#train-output", Input).value == str(folder)  # kept: more rounds resume there


async def test_an_iteration_folder_is_resumed_not_started_again(tiny_model, pairs_file, tmp_path, monkeypatch):
    use_stand_in_iterator(tmp_path, monkeypatch)
    folder = tmp_path / "runs" / "it"
    folder.mkdir(parents=True)
    (folder / "iterate.yaml").write_text("model: m\nprompts: p.jsonl\njudge: python:x:y\nsamples: 2\nrounds: 2\n"
                                         "valid_prompts: null\nseed: 0\ntrain:\n  iters: 4\n  seed: 0\n"
                                         "  share_prompt: false\nprompts_digest: abc\n")
    (folder / "rounds.jsonl").write_text(json.dumps({"round": 1, "pairs": 2}) + "\n")
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        pane.set_mode("iterate")
        pane.query_one("#train-judge", Input).value = "python:x:y"
        pane.query_one("#train-output", Input).value = str(folder)
        await pilot.pause(0.2)
        assert table_rows(pane.query_one("#train-round-table", RoundsTable))[0][0] == "1"  # its rounds so far
        assert pane.query_one("#train-resume", Button).disabled is False  # 1 of 2 rounds done
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert not app.training_running and "holds an iteration: Resume (ctrl+r) continues it" in notes(app)
        # Resume runs the iteration's own command again (from iterate.yaml), the training flags after.
        pane.query_one("#train-rounds", Input).value = "1"
        pane.resume_iteration(str(folder))
        await wait_for(pilot, lambda: pane.process is not None)
        args = pane.process.args
        assert args[:args.index("--output")] == ["--model", "m", "--prompts", "p.jsonl", "--judge", "python:x:y",
                                                 "--samples", "2", "--seed", "0"]
        assert args[args.index("--output"):] == ["--output", str(folder), "--rounds", "2", "--iters", "4",
                                                 "--no-share-prompt"]
        assert pane.process.first_round == 1 and pane.process.current_round == 2
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: not app.training_running)
        assert "iteration stopped in round" in text_of(app, "#train-status")


async def test_runs_evaluate_needs_held_out_pairs_and_shows_an_iterations_rounds(tiny_model, pairs_file, tmp_path):
    folder = tmp_path / "runs" / "it"
    rd = folder / "round_1"
    rd.mkdir(parents=True)
    (folder / "iterate.yaml").write_text("rounds: 1\n")
    (folder / "rounds.jsonl").write_text(json.dumps({"round": 0, "heldout/score_mean": 0.4}) + "\n"
                                         + json.dumps({"round": 1, "pairs": 3, "heldout/score_mean": 0.5}) + "\n")
    (rd / "config.yaml").write_text("iters: 3\nloss: sigmoid\nbeta: 0.1\nlearning_rate: 0.001\nmodel: m\ndata: d\n")
    (rd / "adapters.safetensors").write_bytes(b"")
    app = make_app(tiny_model, pairs_file, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f4")
        table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.get_row_at(0)[0] == "it/round_1"
        await focus_on(pilot, table)
        await pilot.press("enter")
        rounds = app.query_one("#runs-rounds", RoundsTable)
        await wait_for(pilot, lambda: rounds.display and rounds.row_count == 2)
        await pilot.press("v")  # no valid_data in its config, no held-out file on Data
        await pilot.pause(0.2)
        assert "no held-out pairs to evaluate on" in notes(app)
        assert app.query_one(RunsPane).evaluating is None
        # Evaluate has its key in the footer (within 80 columns) and on the `?` screen.
        assert footer_keys(app).get("v") == "Evaluate"
        assert all(key.region.right <= 80 for key in app.screen.query(FooterKey))
        await pilot.press("?")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = table_rows(app.screen.query_one(DataTable))
        assert ("Runs", "v", "Evaluate the highlighted run's adapter on held-out pairs") in rows


# ---------------------------------------------------------------------- end to end, on the demo model
@pytest.mark.slow
async def test_iterate_on_the_demo_model_stop_resume_and_evaluate_a_round(tmp_path, monkeypatch):
    from mlx_dpo import DEMO_MODEL, DEMO_PAIRS, DEMO_VALID

    if not (DEMO_MODEL / "config.json").exists():
        pytest.skip("this installation has no demo model")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MLX_DPO_CACHE", str(tmp_path / "cache"))
    prompts, valid = tmp_path / "prompts.jsonl", tmp_path / "valid.jsonl"
    prompts.write_text("".join(DEMO_PAIRS.read_text().splitlines(keepends=True)[:4]))
    valid.write_text("".join(DEMO_VALID.read_text().splitlines(keepends=True)[:3]))
    runs = tmp_path / "runs"
    folder = runs / "it"
    app = MlxDpoApp(data=str(prompts), valid=str(valid), runs_root=str(runs))  # the demo model
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        pane = app.query_one(TrainPane)
        await choose_iterate(pilot, pane)
        assert pane.query_one("#train-judge-choice", Select).value == "python:mlx_dpo.demo.reward:judge"
        for name, value in (("output", str(folder)), ("rounds", "2"), ("samples", "2"), ("max_tokens", "8"),
                            ("iters", "2"), ("batch_size", "2"), ("save_every", "1")):
            pane.query_one(f"#train-{name}", Input).value = value
        await pilot.press("ctrl+s")
        table = pane.query_one("#train-round-table", RoundsTable)
        # Round 0 (the start model) and round 1 reported; stop in round 2, then Resume continues it.
        await wait_for(pilot, lambda: table.row_count == 2, timeout=300)
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: not app.training_running, timeout=120)
        status = text_of(app, "#train-status")
        if not status.startswith("iteration finished"):  # the stop came before the last round ended
            assert status.startswith("iteration stopped in round 2") and "Resume (ctrl+r) continues it" in status
            assert pane.query_one("#train-resume", Button).disabled is False
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: pane.process.proc is not None)
            await wait_for(pilot, lambda: not app.training_running, timeout=300)
        assert text_of(app, "#train-status").startswith(f"iteration finished: 2 round(s) in {folder}")
        rows = table_rows(table)
        assert [r[0] for r in rows] == ["0 (start)", "1", "2"]
        assert all(r[5] for r in rows) and all(r[9] for r in rows)  # held-out score and answer length per round
        reports = [json.loads(line) for line in (folder / "rounds.jsonl").read_text().splitlines()]
        assert [r["round"] for r in reports] == [0, 1, 2]
        assert pane.query_one(MetricsCharts).rows  # the last trained round's curves

        # Runs: the rounds are listed; Evaluate one on the Data tab's held-out pairs.
        await pilot.press("f4")
        runs_table = app.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: runs_table.row_count >= 1)
        names = [str(runs_table.get_row_at(i)[0]) for i in range(runs_table.row_count)]
        assert "it/round_1" in names
        await focus_on(pilot, runs_table)
        runs_table.move_cursor(row=names.index("it/round_1"), animate=False)
        await pilot.press("enter")
        rounds = app.query_one("#runs-rounds", RoundsTable)
        await wait_for(pilot, lambda: rounds.display and rounds.row_count == 3)
        await pilot.press("v")
        await wait_for(pilot, lambda: text_of(app, "#runs-eval").startswith("eval of it/round_1"), timeout=180)
        line = text_of(app, "#runs-eval")
        assert f"on {valid}: loss " in line and " · accuracy " in line and " · margin " in line
