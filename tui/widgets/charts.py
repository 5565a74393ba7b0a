"""Live training curves: loss (raw and smoothed), reward margin, accuracy, chosen vs rejected, memory."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual_plot import HiResMode, PlotWidget

# (chart id, title, [(metric key, label, colour)])
CHARTS = [
    ("loss", "loss", [("loss", "loss", "grey50"), ("loss~", "smoothed", "bright_white"),
                      ("eval/loss", "eval", "orange1")]),
    ("margin", "reward margin", [("rewards/margins", "margin", "green"), ("eval/rewards/margins", "eval", "orange1")]),
    ("accuracy", "reward accuracy", [("rewards/accuracies", "accuracy", "cyan"),
                                     ("eval/rewards/accuracies", "eval", "orange1")]),
    ("rewards", "chosen vs rejected reward", [("rewards/chosen", "chosen", "green"),
                                              ("rewards/rejected", "rejected", "red")]),
    ("memory", "peak memory (GB)", [("peak_memory_gb", "memory", "magenta")]),
]
EVAL_PREFIX = "eval/"


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing."""
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


class MetricsCharts(Grid):
    """A grid of PlotWidgets fed with metrics rows; `overlay` draws a second run dimmed."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows: list[dict] = []
        self.overlay_rows: list[dict] = []

    def compose(self) -> ComposeResult:
        for chart_id, title, _ in CHARTS:
            plot = PlotWidget(id=f"chart-{chart_id}", classes="chart")
            plot.border_title = title
            plot.can_focus = False  # keep keys (r, arrows) for the panes, not zoom/pan
            yield plot

    def reset(self, rows: list[dict] | None = None, overlay: list[dict] | None = None) -> None:
        self.rows = list(rows or [])
        self.overlay_rows = list(overlay or [])
        self.redraw()

    def add_rows(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        self.redraw()

    def points(self, key: str, rows: list[dict] | None = None) -> tuple[list[float], list[float]]:
        rows = self.rows if rows is None else rows
        if key == "loss~":
            xs, ys = self.points("loss", rows)
            return xs, smooth(ys)
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        return [p[0] for p in pts], [p[1] for p in pts]

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        for chart_id, _, series in CHARTS:
            plot = self.query_one(f"#chart-{chart_id}", PlotWidget)
            plot.clear()
            for key, label, colour in series:
                if self.overlay_rows:
                    xs, ys = self.points(key, self.overlay_rows)
                    if xs and not key.startswith(EVAL_PREFIX):
                        plot.plot(xs, ys, line_style="grey37", hires_mode=HiResMode.BRAILLE, label=f"{label} (other)")
                xs, ys = self.points(key)
                if not xs:
                    continue
                if key.startswith(EVAL_PREFIX) or len(xs) == 1:
                    plot.scatter(xs, ys, marker_style=colour, label=label)
                else:
                    plot.plot(xs, ys, line_style=colour, hires_mode=HiResMode.BRAILLE, label=label)
            # A legend covers the curves on a narrow chart; the border title names the chart there.
            plot.show_legend(is_visible=bool(self.rows) and plot.size.width >= 70)
