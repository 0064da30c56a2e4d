"""The setup cells a kernel has marked with ``%%launch_setup``.

Every later ``%%launch`` from the same kernel puts them, in the order they
were first recorded, between the parameters cell and its own body. A cell is
recorded under a key so that re-running an edited version replaces the old
one instead of adding a second copy: the name given to the magic, else the
frontend's cell id (JupyterLab, VS Code and nbclient send one with each
execute request), else the content itself.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["SetupCell", "SetupCells", "setup_cells"]


@dataclass(frozen=True)
class SetupCell:
    """One recorded setup cell."""

    key: str
    source: str
    name: str | None = None
    cell_id: str | None = None

    @property
    def label(self) -> str:
        """How listings and messages refer to the cell."""
        if self.name:
            return self.name
        if self.cell_id:
            return f"cell {self.cell_id[:8]}"
        return f"content {self.key.rsplit(':', 1)[-1]}"


class SetupCells:
    """The ordered setup cells of one kernel, plus the cell id of the running cell."""

    def __init__(self) -> None:
        self._cells: dict[str, SetupCell] = {}
        self._running: Any = None  # IPython's ExecutionInfo of the cell being run

    def __iter__(self) -> Iterator[SetupCell]:
        return iter(list(self._cells.values()))

    def __len__(self) -> int:
        return len(self._cells)

    def record(self, source: str, name: str | None = None, cell_id: str | None = None) -> SetupCell:
        """Record ``source``, replacing an earlier version with the same key."""
        if name:
            key = f"name:{name}"
        elif cell_id:
            key = f"cell:{cell_id}"
        else:
            key = "content:" + hashlib.sha1(source.encode()).hexdigest()[:12]
        if cell_id:
            # The same frontend cell recorded before under another key (it was
            # named since, or renamed): its new version replaces that one.
            for old in [c for c in self._cells.values() if c.cell_id == cell_id and c.key != key]:
                del self._cells[old.key]
        cell = SetupCell(key=key, source=source, name=name or None, cell_id=cell_id)
        self._cells[key] = cell  # an existing key keeps its place in the order
        return cell

    def clear(self) -> int:
        count = len(self._cells)
        self._cells.clear()
        return count

    # -- the frontend's cell id ---------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        self._running = info

    def post_run_cell(self, _result: Any) -> None:
        self._running = None

    def running_cell_id(self, body: str) -> str | None:
        """The frontend's id of the cell now running, if ``body`` is that cell's body.

        A magic called directly (``shell.run_cell_magic``) runs outside any
        cell; the check keeps it from picking up the id of an unrelated cell.
        """
        info = self._running
        if info is None or not getattr(info, "cell_id", None):
            return None
        raw = getattr(info, "raw_cell", None) or ""
        return str(info.cell_id) if body.strip() in raw else None


_REGISTRIES: weakref.WeakKeyDictionary[Any, SetupCells] = weakref.WeakKeyDictionary()


def setup_cells(shell: Any) -> SetupCells:
    """The registry of ``shell``, created (and hooked to its cell events) on first use.

    It lives beside the shell rather than on the magics object, so
    ``%reload_ext nblaunch`` keeps the cells a kernel has recorded.
    """
    registry = _REGISTRIES.get(shell)
    if registry is None:
        registry = _REGISTRIES[shell] = SetupCells()
        shell.events.register("pre_run_cell", registry.pre_run_cell)
        shell.events.register("post_run_cell", registry.post_run_cell)
    return registry
