"""Checkpoint contents for the tests."""

from __future__ import annotations

from pathlib import Path


class PickledCode:
    """An object whose unpickling would create a file: refusing the checkpoint must not run it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))
