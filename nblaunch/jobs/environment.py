"""The submitting environment: installed distributions and git state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nblaunch.home import home


def requirements() -> str:
    """Installed distributions as ``name==version`` lines.

    Reading every distribution's metadata costs most of a second with a
    training stack installed, so the result is cached on disk, keyed by the
    metadata folders on ``sys.path``: any install, upgrade or removal changes
    that listing and so the key (a ``%pip install`` in a long-lived kernel is
    seen by its next submit).
    """
    cache = home() / "cache" / f"requirements-{_installed_fingerprint()}.txt"
    try:
        return cache.read_text()
    except FileNotFoundError:
        pass
    text = _read_requirements()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, cache)
    return text


def _installed_fingerprint() -> str:
    digest = hashlib.sha1(sys.version.encode())
    for entry in sys.path:
        try:
            names = sorted(
                n for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info"))
            )
        except OSError:
            continue
        digest.update(("\0".join([entry, *names]) + "\n").encode())
    return digest.hexdigest()[:16]


def _read_requirements() -> str:
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
        "remote": _without_credentials(_git(folder, "remote", "get-url", "origin")),
        "branch": _git(folder, "rev-parse", "--abbrev-ref", "HEAD"),
        "commit": commit,
        "dirty": bool(diff),
        "diff": diff or None,
    }


def _without_credentials(url: str | None) -> str | None:
    """``https://user:token@host/repo`` → ``https://host/repo``: tokens never travel in a bundle."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


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
