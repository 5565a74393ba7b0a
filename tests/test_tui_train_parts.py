"""The Train tab's parts: the settings form (train_form.py) and the run's views (run_monitor.py) live in their
own modules, TrainPane only coordinates them; each of the tab's ids (#train-*) names one widget."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tui.panes.run_monitor import RunMonitor
from tui.panes.train_form import TrainForm

from test_tui_keys import SIZE, make_app

PANE = Path(__file__).resolve().parent.parent / "tui" / "panes" / "train_pane.py"


def test_the_train_pane_module_holds_neither_the_form_nor_the_run_views():
    tree = ast.parse(PANE.read_text(encoding="utf-8"))
    classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert classes == ["TrainPane"]
    # the form's fields and files, the monitor's views: built and drawn in their own modules
    assert not names & {"Grid", "Collapsible", "ProgressBar", "RichLog", "MetricsCharts", "RoundCharts",
                        "RoundsTable", "SamplesPanel", "IterateForm", "yaml", "shlex", "build_config"}
    assert TrainForm.__module__ == "tui.panes.train_form" and RunMonitor.__module__ == "tui.panes.run_monitor"


async def test_each_train_id_names_one_widget(tmp_path, pairs_file):
    """A second widget with an id (the samples panel beside iterate's samples field) hides the first from
    query_one and takes its CSS."""
    app = make_app("model", pairs_file, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        ids = Counter(widget.id for widget in app.query("*") if widget.id and widget.id.startswith("train-"))
        assert [i for i, n in ids.items() if n > 1] == []
