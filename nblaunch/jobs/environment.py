"""The submitting environment: installed distributions and git state."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def requirements() -> str:
    """Installed distributions as ``name==version`` lines, read once per process."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pins.setdefault(name.lower(), f"{name}=={dist.version}")
    return "".join(f"{pins[key]}\n" for key in sorted(pins))


def git_state(folder: Path) -> dict[str, Any]:
    """Remote, branch, commit and dirty diff of the repository holding ``folder``.

    Outside a repository (or without git) the result says so instead of failing:
    a notebook does not have to live in git to be launched.
    """
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return {"repository": False}
    commit = _git(folder, "rev-parse", "HEAD")
    diff = _git(folder, "diff", "HEAD", "--no-color") if commit else None
    return {
        "repository": True,
        "root": top,
        "remote": _git(folder, "remote", "get-url", "origin"),
        "branch": _git(folder, "rev-parse", "--abbrev-ref", "HEAD"),
        "commit": commit,
        "dirty": bool(diff),
        "diff": diff or None,
    }


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.rstrip("\n")
