"""What a ``%%launch`` records about the kernel it was run from.

The bundle itself records the installed distributions (``requirements.txt``)
and the git state of the submit folder (``git.json``); this module finds
the notebook's own path and folder, and keeps the distribution list cached
for as long as nothing was installed, so a second ``%%launch`` skips the
scan of every installed distribution.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Origin", "notebook_path", "origin"]

# Where frontends leave the running notebook's path: VS Code's variable,
# ipykernel's ``__session__`` (copied from JPY_SESSION_NAME), then the
# environment variable Jupyter Server sets for the kernel.
_NAMESPACE_KEYS = ("__vsc_ipynb_file__", "__session__")
_ENV_KEY = "JPY_SESSION_NAME"


@dataclass(frozen=True)
class Origin:
    """Where a ``%%launch`` came from."""

    notebook: Path | None
    submit_dir: Path
    cell_id: str | None = None
    python: str = field(default_factory=lambda: sys.version.split()[0])
    executable: str = sys.executable
    launched_at: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        """The spec's ``notebook`` field: the notebook's path, or the cell's folder."""
        return str(self.notebook) if self.notebook else f"%%launch cell in {self.submit_dir}"

    @property
    def stem(self) -> str:
        """Default job name."""
        return self.notebook.stem if self.notebook else "launch"

    def metadata(self) -> dict[str, Any]:
        """The ``nblaunch`` entry of the job notebook's metadata."""
        return {
            "source": "%%launch",
            "notebook": str(self.notebook) if self.notebook else None,
            "cell_id": self.cell_id,
            "submit_dir": str(self.submit_dir),
            "python": self.python,
            "executable": self.executable,
            "launched_at": self.launched_at,
        }


def notebook_path(
    namespace: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> Path | None:
    """The running notebook's path when the frontend exposes it, else ``None``."""
    candidates = [namespace.get(key) for key in _NAMESPACE_KEYS] + [environ.get(_ENV_KEY)]
    for value in candidates:
        if isinstance(value, str) and value.endswith(".ipynb"):
            return Path(value).expanduser().resolve()
    return None


def origin(namespace: Mapping[str, Any], cell_id: str | None = None) -> Origin:
    """The notebook, folder and interpreter a launch comes from.

    The submit folder is the notebook's own when it is known (its git state
    is the one that matters), else the kernel's working folder.
    """
    path = notebook_path(namespace)
    folder = path.parent if path is not None and path.parent.is_dir() else Path.cwd()
    return Origin(notebook=path, submit_dir=folder, cell_id=cell_id)
