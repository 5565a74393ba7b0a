"""SVG snapshots of the tabs in the states that matter, so layout regressions show up in review.

Every tab idle at 80×24 (the smallest terminal the app promises to fit); the bigger 120×36 for the
Data, Train and Chat tabs idle, and for the Train tab while it trains (a stand-in trainer: the
trainer's JSON events and a metrics file, no MLX), after a finished run and after a failed one.
Each snapshot costs seconds, so the set stays small.

Regenerate after an intended layout change with `pytest tests/test_snapshots.py --snapshot-update`
and look at the report before committing the new SVGs.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, Static

from tui.app import MlxDpoApp

from conftest import synthetic_pairs, write_jsonl
from test_tui import use_stand_in_trainer

TABS = ["data", "model", "train", "runs", "chat", "export"]
SMALL, BIG = (80, 24), (120, 36)
CASES = [(tab, "idle", SMALL) for tab in TABS] + [(tab, "idle", BIG) for tab in ("data", "train", "chat")] + [
    ("train", "training", SMALL), ("train", "training", BIG), ("train", "finished", BIG), ("train", "error", BIG)]

ROWS = [{"step": s, "loss": round(0.6931 - 0.02 * s + 0.01 * (s % 3), 4), "rewards/accuracies": min(1.0, s / 8),
         "rewards/margins": round(0.06 * s, 3), "rewards/chosen": round(0.03 * s - 0.04, 3),
         "rewards/rejected": round(-0.03 * s, 3), "tokens_per_second": 900.0,
         "peak_memory_gb": round(0.012 + 0.0001 * s, 5)} for s in range(1, 13)]
EVALS = [{"step": s, "eval/loss": round(0.69 - 0.015 * s, 4), "eval/rewards/margins": round(0.05 * s, 3),
          "eval/rewards/accuracies": 0.5 + 0.1 * (s // 4)} for s in (4, 8, 12)]

# The stand-in: one write of all rows (so the app reads them in one poll and the ETA stays "…"),
# then it waits (training), finishes, or fails.
TRAINER = '''
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "config.yaml"), "w") as f:
    f.write("iters: 24\\n")
event(event="phase", phase="train", text="training 24 steps")
event(event="start", step=0, total_steps=24, pairs=16, trainable_parameters=1234)
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    f.write(ROWS)
event(event="progress", step=12, total_steps=24)
event(event="log", text="ready")
if ENDING == "finished":
    event(event="done", step=24, loss=0.3, accuracy=1.0, output=out)
elif ENDING == "error":
    event(event="error", text="out of memory at step 13: try a smaller batch size", status=1)
    sys.exit(1)
else:
    wait_for("never")
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_model):
    """Relative paths only, so the screens do not show a temporary folder's name."""
    import shutil

    import tui.panes.model_pane

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tui.panes.model_pane, "bundled_models", lambda: [])  # no demo model of the checkout
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MLX_DPO_MEMORY_BUDGET", "16GB")  # the Model tab's estimate: not this machine's RAM
    shutil.copytree(tiny_model, tmp_path / "model")
    write_jsonl(tmp_path / "train.jsonl", synthetic_pairs(16, seed=1))
    return tmp_path


async def settle(pilot, app) -> None:
    """Wait until two screenshots 0.2 s apart are identical (engine replies arrive asynchronously)."""
    await pilot.wait_for_scheduled_animations()
    last = None
    for _ in range(50):
        await pilot.pause(0.2)
        shot = app.export_screenshot()
        if shot == last:
            return
        last = shot


@pytest.mark.parametrize("tab, state, size", CASES, ids=[f"{t}-{s}-{w}x{h}" for t, s, (w, h) in CASES])
def test_tab_snapshot(snap_compare, workdir, monkeypatch, tab, state, size):
    if state != "idle":
        rows = "".join(json.dumps(r) + "\n" for r in ROWS + EVALS)
        use_stand_in_trainer(workdir, monkeypatch, f"ROWS = {rows!r}\nENDING = {state!r}\n" + TRAINER)
    app = MlxDpoApp(model="model", data="train.jsonl", runs_root="runs")

    async def prepare(pilot):
        for widget in app.query(Input):
            widget.cursor_blink = False  # a blinking cursor makes screenshots depend on timing
        await pilot.press(f"f{TABS.index(tab) + 1}")
        output = app.query_one("#train-output", Input)
        output.value = "runs/run-1"  # instead of a timestamp
        for _ in range(200):  # wait for the data inspection on the engine thread
            await pilot.pause(0.05)
            if "valid pairs" in str(app.query_one("#data-summary", Static).render()):
                break
        if state != "idle":
            pane = app.query_one("#pane-train")
            await pilot.press("ctrl+s")
            for _ in range(400):
                await pilot.pause(0.05)
                if pane.process is not None and "ready" in pane.process.tail and len(pane.query_one(
                        "#train-charts").rows) == len(ROWS) + len(EVALS) and (state == "training") != (
                        not app.training_running):
                    break
            output.value = "runs/run-1"  # a finished run fills in a fresh, timestamped folder
            app.clear_notifications()
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=prepare)
