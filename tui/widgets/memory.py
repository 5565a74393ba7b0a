"""The engine's memory estimate as the app shows it (Model tab, and the Train tab's "does not fit" dialog).

Reads the fields of `mlx_dpo.estimate_run(...).as_dict()` (or of a refused run's error event, whose details
carry the same dict): peak and budget in bytes, where the budget and the token lengths came from, and the
settings that fit. The figures and the verdict are the engine's; this only lays them out.
"""

from __future__ import annotations

from rich.text import Text

from mlx_dpo import human_bytes


def verdict(estimate: dict) -> Text:
    """"fits: 2.1 GB to spare (budget 14.0 GB: a 16 GB Mac)" in green, or the overshoot in red."""
    peak, budget = estimate.get("peak_bytes"), estimate.get("available_bytes")
    source = estimate.get("available_source") or "unknown"
    if estimate.get("fits") is None or peak is None or budget is None:
        return Text("machine memory unknown: the estimate cannot say whether it fits", style="yellow")
    where = f"(budget {human_bytes(budget)}: {source})"
    if estimate["fits"]:
        return Text(f"fits: {human_bytes(budget - peak)} to spare {where}", style="green")
    return Text(f"WILL NOT FIT: {human_bytes(peak - budget)} over {where}", style="bold red")


def lengths(estimate: dict) -> str:
    """Where the estimate's token lengths came from: the data, or the worst case at max length."""
    batch = estimate.get("batch") or {}
    worst = f"worst micro-batch {batch.get('tokens', '?')} tokens"
    if batch.get("source") == "data":
        return f"lengths: the data's ({estimate.get('pairs')} pairs), {worst}"
    if estimate.get("data_problem"):
        return f"lengths: every pair at max length ({worst}): the data could not be read: {estimate['data_problem']}"
    return f"lengths: every pair at max length, {worst} (load data on the Data tab to use its own lengths)"


def suggestions(estimate: dict, n: int = 2) -> str:
    """The first `n` settings that fit, as flags with their peaks ("" when the run fits)."""
    if estimate.get("fits") is not False:
        return ""
    found = estimate.get("suggestions") or []
    if not found:
        return "no setting tried fits: a smaller model, or a 4-bit one, is needed"
    return "settings that fit: " + " · ".join(f"{' '.join(s['flags'])} (peak {human_bytes(s['peak_bytes'])})"
                                              for s in found[:n])
