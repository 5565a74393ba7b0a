"""The rounds of an iteration (`mlx-dpo iterate`) as a table: one row per round report of DIR/rounds.jsonl.

Round 0 is the start model (reported when the iteration has held-out prompts). The columns are the ones
that tell whether iterating helps: the held-out judge score, the win rates against the start and the
previous round, the KL to the base, the answer length (length exploitation shows there), and the pairs
the round made (and skipped)."""

from __future__ import annotations

from textual.widgets import DataTable

COLUMNS = ("round", "pairs", "skipped", "steps", "loss", "score", "win/start", "win/prev", "KL", "tokens")


def _num(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def round_cells(rep: dict) -> tuple[str, ...]:
    r = rep.get("round", "?")
    skipped = sum(int(rep.get(f"skipped/{k}") or 0) for k in ("tie", "spread", "empty"))
    first = r == 0
    return ("0 (start)" if first else str(r), "" if first else str(rep.get("pairs", 0)),
            "" if first else str(skipped), "" if first else str(rep.get("train/steps") or 0),
            _num(rep.get("train/loss"), 4), _num(rep.get("heldout/score_mean"), 3),
            _num(rep.get("heldout/win_rate_vs_start"), 2), _num(rep.get("heldout/win_rate_vs_previous"), 2),
            _num(rep.get("heldout/kl_to_base"), 3), _num(rep.get("heldout/answer_tokens"), 1))


class RoundsTable(DataTable):
    """A read-only table of round reports, round 0 first."""

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.reports: list[dict] = []

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)
        self.show(self.reports)

    def show(self, reports: list[dict]) -> None:
        self.reports = sorted(reports, key=lambda r: r.get("round", 0))
        if not self.is_mounted or not self.columns:
            return
        self.clear()
        for rep in self.reports:
            self.add_row(*round_cells(rep), key=str(rep.get("round")))
        if self.reports:
            self.move_cursor(row=len(self.reports) - 1, animate=False)
