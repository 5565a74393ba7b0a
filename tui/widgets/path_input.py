"""A path Input with completion of folder entries (Tab or → accepts the suggestion)."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import Input


class PathSuggester(Suggester):
    def __init__(self, suffixes: tuple[str, ...] = ()):
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        p = Path(os.path.expanduser(value))
        folder, stem = (p, "") if value.endswith(os.sep) else (p.parent, p.name)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(stem) and not name.startswith(".") and name != stem:
                full = folder / name
                if full.is_dir() or not self.suffixes or name.endswith(self.suffixes):
                    completed = value[: len(value) - len(stem)] + name
                    return completed + (os.sep if full.is_dir() else "")
        return None


class PathInput(Input):
    def __init__(self, value: str = "", suffixes: tuple[str, ...] = (), **kw):
        super().__init__(value=value, suggester=PathSuggester(suffixes), **kw)
