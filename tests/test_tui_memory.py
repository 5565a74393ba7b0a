"""The app and the memory check: the Model tab shows the engine's estimate of the Train form's run on the
Data tab's data (peak, budget, verdict, settings that fit), and the Train tab, when the trainer refuses a
run that does not fit, offers the suggested settings or --force instead of leaving it at an error."""

from __future__ import annotations

import pytest
from textual.widgets import Button, Input

from test_tui import SIZE, hf_home, text_of, wait_for  # noqa: F401  (hf_home: a fixture)
from tui.app import MlxDpoApp
from tui.confirm import TooBig
from tui.panes.train_pane import TrainPane


def run_peak(model: str, data: str) -> float:
    """The engine's peak for the Train form's defaults on this data (batch 4, max length 1024)."""
    from mlx_dpo import TrainConfig, estimate_run

    return estimate_run(TrainConfig(model=model, data=data, batch_size=4)).estimate.peak


async def test_the_model_tab_estimates_the_data_loaded_and_says_it_does_not_fit(tiny_model, pairs_file, tmp_path,
                                                                               hf_home, monkeypatch):
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", str(int(0.8 * run_peak(tiny_model, pairs_file))))
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.click("#model-estimate")
        await wait_for(pilot, lambda: "WILL NOT FIT" in text_of(app, "#model-memory"))
        text = text_of(app, "#model-memory")
        assert "(budget" in text and "MLX_DPO_MEMORY_BUDGET" in text
        assert "lengths: the data's (16 pairs)" in text
        assert "settings that fit: --" in text
        monkeypatch.delenv("MLX_DPO_MEMORY_BUDGET")
        await pilot.click("#model-estimate")
        await wait_for(pilot, lambda: "fits:" in text_of(app, "#model-memory"))
        assert "to spare" in text_of(app, "#model-memory")


async def test_without_data_the_model_tab_says_it_assumed_every_pair_at_max_length(tiny_model, tmp_path, hf_home):
    app = MlxDpoApp(model=tiny_model, runs_root=str(tmp_path / "runs"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.click("#model-estimate")
        await wait_for(pilot, lambda: "lengths:" in text_of(app, "#model-memory"))
        assert "every pair at max length" in text_of(app, "#model-memory")


async def start_refused_run(pilot, app, run_dir) -> TrainPane:
    await pilot.press("f3")
    pane = app.query_one(TrainPane)
    pane.query_one("#train-output", Input).value = str(run_dir)
    pane.query_one("#train-iters", Input).value = "2"
    await pilot.click("#train-start")
    # The dialog is up, with the focus on its first choice (it is composed after it is pushed).
    await wait_for(pilot, lambda: isinstance(app.screen, TooBig) and isinstance(app.focused, Button))
    assert not run_dir.exists()  # refused before anything was written
    return pane


@pytest.mark.parametrize("answer", ["suggested", "force"])
async def test_the_train_tab_offers_the_suggested_settings_or_force_for_a_run_too_big(
        answer, tiny_model, pairs_file, tmp_path, hf_home, monkeypatch):
    # The trainer (a child process) reads the same budget: its own refusal is what the app answers.
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", str(int(0.8 * run_peak(tiny_model, pairs_file))))
    app = MlxDpoApp(model=tiny_model, data=pairs_file, runs_root=str(tmp_path / "runs"))
    run_dir = tmp_path / "runs" / "big"
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_refused_run(pilot, app, run_dir)
        dialog = app.screen
        suggestion = dialog.estimate["suggestions"][0]
        assert app.focused is dialog.query_one("#toobig-suggested", Button)  # the safe way on has the focus
        await pilot.click(f"#toobig-{answer}")
        await wait_for(pilot, lambda: (run_dir / "adapters.safetensors").exists() and not app.training_running)
        assert pane.process.proc.returncode == 0
        if answer == "force":
            assert "--force" in pane.process.args
        else:
            assert "--force" not in pane.process.args
            for key, value in suggestion["settings"].items():  # into the form: its fields, the Model tab's, or extra
                field = app.query(f"#train-{key}")
                shown = field.first(Input).value if field else app.quantize if key == "quantize" else pane.form.extra[key]
                assert str(shown) == str(value), key
            assert all(flag in pane.process.args for flag in suggestion["flags"])
