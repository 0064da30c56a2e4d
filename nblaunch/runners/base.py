"""The runner interface: where a claimed job runs.

A runner is a small class with four methods. Built-ins register first;
third-party runners load from the ``nblaunch.runners`` entry-point group, and a
broken plug-in is logged and skipped.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from nblaunch.queue.config import QueueConfig
from nblaunch.queue.states import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """What a runner needs to start one attempt."""

    job_id: str
    attempt: int
    bundle: Path
    run_dir: Path
    checkpoint_dir: Path
    gpu_ids: tuple[int, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the runner saw it."""

    state: State
    exit_code: int | None
    outcome: str
    error: dict[str, Any] | None


class Runner(ABC):
    """Start, watch, stop and read the logs of attempts on one kind of backend."""

    name: ClassVar[str]

    def __init__(self, queue: QueueConfig) -> None:
        self.queue = queue

    @abstractmethod
    def submit(self, launch: Launch) -> dict[str, Any]:
        """Start the attempt; return a JSON-serializable handle for ``poll``/``cancel``."""

    @abstractmethod
    def poll(self, handle: dict[str, Any], run_dir: Path) -> Outcome | None:
        """``None`` while the attempt runs, else how it ended."""

    @abstractmethod
    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        """Stop the attempt: ask politely, then force after ``grace_s`` seconds."""

    def preempt(self, handle: dict[str, Any]) -> None:
        """Send what a spot reclaim sends: SIGTERM to the attempt's main process."""
        raise NotImplementedError(f"the {self.name} runner cannot preempt jobs")

    @abstractmethod
    def logs(self, handle: dict[str, Any], run_dir: Path) -> list[Path]:
        """Files holding the attempt's output, most useful first."""


_REGISTRY: dict[str, type[Runner]] = {}


def register(cls: type[Runner]) -> type[Runner]:
    _REGISTRY[cls.name] = cls
    return cls


def runner_class(name: str) -> type[Runner]:
    if not _REGISTRY:
        _load()
    return _REGISTRY[name]


def _load() -> None:
    from nblaunch.runners.local import LocalRunner

    register(LocalRunner)
    for ep in entry_points(group="nblaunch.runners"):
        try:
            register(ep.load())
        except Exception:  # a broken plug-in must not take the agent down
            log.exception("skipping runner plug-in %s", ep.name)
