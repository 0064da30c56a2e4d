"""Telling an out-of-memory failure from other failures.

A cell that runs out of memory raises ``MemoryError`` (host) or torch's
``OutOfMemoryError`` (CUDA; older torch: a ``RuntimeError`` saying "CUDA out
of memory"). A kernel the kernel's OOM killer SIGKILLs says nothing at all
(papermill reports only a dead kernel); the cgroup's ``oom_kill`` counter
going up while the attempt ran tells it apart.
"""

from __future__ import annotations

from pathlib import Path

OOM_ERRORS = frozenset({"MemoryError", "OutOfMemoryError", "ResourceExhaustedError"})
OOM_TEXT = ("out of memory", "RESOURCE_EXHAUSTED")


def is_oom_error(ename: str | None, evalue: str | None) -> bool:
    """Whether a cell's exception is the framework saying memory ran out."""
    if ename in OOM_ERRORS:
        return True
    text = evalue or ""
    return any(marker in text for marker in OOM_TEXT)


def oom_kills(proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """How many processes the OOM killer has killed in this process's cgroup
    (v2 ``memory.events``, v1 ``memory.oom_control``); None where unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            counter = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events"
        elif "memory" in controllers.split(","):
            counter = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control"
        else:
            continue
        try:
            for entry in counter.read_text().splitlines():
                key, _, value = entry.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None
