"""SVG snapshots of every tab at 80×24 and 200×50, so layout regressions show up in review.

Regenerate after an intended layout change with `pytest tests/test_snapshots.py --snapshot-update`
and look at the report before committing the new SVGs.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from tui.app import MlxDpoApp

from conftest import synthetic_pairs, write_jsonl

TABS = ["data", "model", "train", "runs", "chat", "export"]
SIZES = [(80, 24), (200, 50)]


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_model):
    """Relative paths only, so the screens do not show a temporary folder's name."""
    import shutil

    import tui.panes.model_pane

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tui.panes.model_pane, "bundled_models", lambda: [])  # no demo model of the checkout
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    shutil.copytree(tiny_model, tmp_path / "model")
    write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(16, seed=1))
    return tmp_path


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("tab", TABS)
def test_tab_snapshot(snap_compare, workdir, tab, size):
    app = MlxDpoApp(model="model", data="train.jsonl", runs_root="runs")

    async def prepare(pilot):
        for widget in app.query(Input):
            widget.cursor_blink = False  # a blinking cursor makes screenshots depend on timing
        await pilot.press(f"f{TABS.index(tab) + 1}")
        app.query_one("#train-output", Input).value = "runs/run-1"  # instead of a timestamp
        for _ in range(200):  # wait for the data inspection on the engine thread
            await pilot.pause(0.05)
            if "valid pairs" in str(app.query_one("#data-summary", Static).render()):
                break
        await pilot.wait_for_scheduled_animations()
        # Settle: wait until two screenshots 0.2 s apart are identical (engine replies arrive async).
        last = None
        for _ in range(50):
            await pilot.pause(0.2)
            shot = app.export_screenshot()
            if shot == last:
                break
            last = shot

    assert snap_compare(app, terminal_size=size, run_before=prepare)
