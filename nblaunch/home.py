"""Where nblaunch keeps its store, jobs and agent files for one user."""

from __future__ import annotations

import os
from pathlib import Path

from nblaunch.runtime.contract import Env


def home() -> Path:
    """``$NBLAUNCH_HOME``, else the platform's user data dir; created on first use."""
    configured = os.environ.get(Env.HOME)
    if configured:
        path = Path(configured).expanduser()
    else:
        from platformdirs import user_data_path

        path = user_data_path("nblaunch", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def store_path(root: Path) -> Path:
    return root / "nblaunch.db"


def queues_file(root: Path) -> Path:
    return root / "queues.toml"


def jobs_dir(root: Path) -> Path:
    return root / "jobs"


def objects_dir(root: Path) -> Path:
    """The content-addressed store of workspace files that bundles link to."""
    return root / "objects"
