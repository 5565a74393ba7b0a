"""A checkbox that shows its state plainly: ✓ when on, an empty box when off.

Textual's Checkbox draws an X in both states (dimmed when off), which reads as "on" in a screenshot,
a monochrome terminal or to a quick glance."""

from __future__ import annotations

from textual.widgets import Checkbox


class Toggle(Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "✓" if self.value else " "
