"""Live training curves: loss (raw and smoothed), reward margin, accuracy, chosen vs rejected, memory.

Each chart names its series in its bottom border in the series' colours (a legend inside the plot
would cover the curves of a small chart): raw vs smoothed, ● eval points, chosen vs rejected.
"""

from __future__ import annotations

from math import floor, log10
from typing import Sequence

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Grid
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import NumericAxisFormatter

# (chart id, title, [(metric key, label, colour)])
CHARTS = [
    ("loss", "loss", [("loss", "raw", "grey50"), ("loss~", "smoothed", "bright_white"),
                      ("eval/loss", "eval", "orange1")]),
    ("margin", "reward margin", [("rewards/margins", "train", "green"), ("eval/rewards/margins", "eval", "orange1")]),
    ("accuracy", "reward accuracy", [("rewards/accuracies", "train", "cyan"),
                                     ("eval/rewards/accuracies", "eval", "orange1")]),
    ("rewards", "chosen vs rejected reward", [("rewards/chosen", "chosen", "green"),
                                              ("rewards/rejected", "rejected", "red")]),
    ("memory", "peak memory", [("peak_memory_gb", "peak", "magenta")]),
]
EVAL_PREFIX = "eval/"


def smooth(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average, as TensorBoard's smoothing."""
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def tidy_label(value: float, decimals: int) -> str:
    """A tick label with at most 3 decimals and never "-0" (a tick at -1e-17 is a tick at zero)."""
    text = f"{value:.{min(decimals, 3)}f}"
    return "0" if float(text) == 0 else text


class TidyFormatter(NumericAxisFormatter):
    """Nice ticks with short labels; `integer` ticks (steps) are whole numbers only.

    `room()` says how many labels fit along the axis: on a small chart two ticks would share a text
    row, and the plot writes one label over the other ("-0.2" under "0" reads "-0.0")."""

    def __init__(self, integer: bool = False, room=lambda: 8):
        self.integer, self.room = integer, room

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        if max_ <= min_:
            return [min_]
        ticks = super().get_ticks(min_, max_, max_ticks)
        if self.integer:
            ticks = sorted({float(round(t)) for t in ticks if abs(t - round(t)) < 1e-9})
        room = max(2, self.room())
        while len(ticks) > room:
            ticks = ticks[::2]
        return ticks

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        if not ticks:
            return []
        step = ticks[1] - ticks[0] if len(ticks) >= 2 else 1.0
        decimals = -min(0, floor(log10(step))) if step > 0 else 0
        return [tidy_label(t, 0 if self.integer else decimals) for t in ticks]


def memory_unit(rows: list[dict]) -> tuple[str, float]:
    """MB below 1 GB, so a small model's memory is "12.3", not "0.01201"."""
    peak = max((r["peak_memory_gb"] for r in rows if isinstance(r.get("peak_memory_gb"), (int, float))), default=0)
    return ("GB", 1.0) if peak >= 1 else ("MB", 1024.0)


class ChartGrid(Grid):
    """A grid of PlotWidgets fed with rows (CHARTS: which keys, X_KEY: the x value); `overlay` draws a
    second run dimmed."""

    CHARTS = CHARTS
    X_KEY = "step"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows: list[dict] = []
        self.overlay_rows: list[dict] = []

    def compose(self) -> ComposeResult:
        for chart_id, title, _ in self.CHARTS:
            plot = PlotWidget(id=f"chart-{chart_id}", classes="chart")
            plot.border_title = title
            plot.can_focus = False  # keep keys (r, arrows) for the panes, not zoom/pan
            plot.set_reactive(PlotWidget.margin_top, 0)  # no axis labels: the rows go to the curves
            plot.set_reactive(PlotWidget.margin_bottom, 1)
            # Room for labels: one per 2 rows of the plot area, one per 8 columns.
            plot.set_x_formatter(TidyFormatter(integer=True, room=lambda p=plot: (p.size.width - 12) // 8))
            plot.set_y_formatter(TidyFormatter(room=lambda p=plot: (p.size.height - 2) // 2))
            yield plot

    def reset(self, rows: list[dict] | None = None, overlay: list[dict] | None = None) -> None:
        """New data from scratch: fresh axes (autoscaled again), not the last run's limits."""
        self.rows = list(rows or [])
        self.overlay_rows = list(overlay or [])
        if self.is_mounted:
            for plot in self.query(PlotWidget):
                plot.set_xlimits(None, None)
                plot.set_ylimits(None, None)
        self.redraw()

    def add_rows(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        self.redraw()

    def points(self, key: str, rows: list[dict] | None = None) -> tuple[list[float], list[float]]:
        rows = self.rows if rows is None else rows
        if key == "loss~":
            xs, ys = self.points("loss", rows)
            return xs, smooth(ys)
        pts = [(r[self.X_KEY], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and self.X_KEY in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    def legend(self, chart_id: str, drawn: list[tuple[str, str, bool]]) -> str:
        """The border's legend: ━ for a curve, ● for points, each in its colour."""
        parts = [f"[{colour}]{'●' if dots else '━'} {escape(label)}[/]" for label, colour, dots in drawn]
        if self.overlay_rows and drawn:
            parts.append("[grey37]━ other run[/]")
        return " ".join(parts)

    def redraw(self) -> None:
        if not self.is_mounted:
            return
        unit, scale = memory_unit(self.rows + self.overlay_rows)
        for chart_id, title, series in self.CHARTS:
            plot = self.query_one(f"#chart-{chart_id}", PlotWidget)
            plot.clear()
            drawn = []
            if chart_id == "memory":
                plot.border_title = f"{title} ({unit})"
            for key, label, colour in series:
                factor = scale if chart_id == "memory" else 1.0
                if self.overlay_rows:
                    xs, ys = self.points(key, self.overlay_rows)
                    if xs and not key.startswith(EVAL_PREFIX):
                        plot.plot(xs, [y * factor for y in ys], line_style="grey37", hires_mode=HiResMode.BRAILLE)
                xs, ys = self.points(key)
                if not xs:
                    continue
                ys = [y * factor for y in ys]
                dots = key.startswith(EVAL_PREFIX) or len(xs) == 1
                if dots:
                    plot.scatter(xs, ys, marker_style=colour, marker="●")
                else:
                    plot.plot(xs, ys, line_style=colour, hires_mode=HiResMode.BRAILLE)
                drawn.append((label, colour, dots))
            plot.border_subtitle = self.legend(chart_id, drawn)


# Iterative DPO, one point per round (its DIR/rounds.jsonl reports; round 0 is the start model).
ROUND_CHARTS = [
    ("score", "held-out judge score", [("heldout/score_mean", "mean", "bright_white"),
                                       ("heldout/score_median", "median", "grey50")]),
    ("win", "held-out win rate", [("heldout/win_rate_vs_start", "vs start", "green"),
                                  ("heldout/win_rate_vs_previous", "vs previous", "cyan")]),
]


class MetricsCharts(ChartGrid):
    """The training curves of a run, by step."""


class RoundCharts(ChartGrid):
    """The per-round curves of an iteration: the held-out score and the win rates, by round."""

    CHARTS = ROUND_CHARTS
    X_KEY = "round"
