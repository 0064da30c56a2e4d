"""The rows the store hands out: frozen snapshots of jobs, attempts, events and agents."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from nblaunch.queue.states import FINAL, State
from nblaunch.retry import RetryPolicy
from nblaunch.runtime.contract import JobDir, Outcome


class Submission(Protocol):
    """What the store records of a new job (``nblaunch.jobs.spec.JobSpec`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def gpus(self) -> int: ...
    @property
    def nodes(self) -> int: ...
    @property
    def sweep_id(self) -> str | None: ...


@dataclass(frozen=True)
class JobRow:
    """One job as the store holds it."""

    seq: int
    id: str
    name: str
    queue: str
    state: State
    priority: int
    gpus: int
    job_dir: Path
    sweep_id: str | None
    attempt: int
    #: retries of the job's own failures (lost attempts and preemptions count apart)
    retries: int
    preemptions: int
    not_before: float
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested_at: float | None
    error: dict[str, Any] | None
    updated_at: float
    preempt_requested_at: float | None
    retry_policy: RetryPolicy
    lost_retries: int
    timeout_s: float | None

    @property
    def bundle(self) -> Path:
        return JobDir(self.job_dir).bundle

    def run_dir(self, attempt: int | None = None) -> Path | None:
        n = self.attempt if attempt is None else attempt
        return JobDir(self.job_dir).attempt(n).path if n > 0 else None

    @property
    def final(self) -> bool:
        return self.state in FINAL


@dataclass(frozen=True)
class AttemptRow:
    job_id: str
    n: int
    state: State
    run_dir: Path
    gpu_ids: tuple[str, ...]
    handle: dict[str, Any] | None
    agent_pid: int | None
    started_at: float
    running_at: float | None
    finished_at: float | None
    exit_code: int | None
    outcome: str | None
    error: dict[str, Any] | None
    metrics_offset: int
    #: why the agent is stopping the attempt (``timeout``, ``kernel_start``, ``priority``)
    stop_reason: str | None
    stop_requested_at: float | None
    #: why the runner's engine has not started it yet (``Resources``, ``Priority`` …)
    pending_reason: str | None

    @property
    def external_id(self) -> str | None:
        """The engine's name for the attempt (a Slurm job id), when it has one."""
        return None if self.handle is None else self.handle.get("external_id")

    @property
    def failure_class(self) -> str | None:
        """``preempted``, ``lost``, ``failed``, ``oom`` or ``timeout`` once it failed."""
        return None if self.outcome is None else Outcome(self.outcome).failure_class


@dataclass(frozen=True)
class EventRow:
    job_id: str
    attempt: int
    time: float
    from_state: str | None
    to_state: str
    reason: str


@dataclass(frozen=True)
class AgentRow:
    id: int
    pid: int
    host: str
    queues: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    stopped_at: float | None


# Rows are read far more often than their text changes: the same folder and policy
# texts come back on every read, so each is parsed once (all three are immutable).
_STATES = {s.value: s for s in State}
_path = lru_cache(maxsize=4096)(Path)


@lru_cache(maxsize=256)
def _policy(text: str) -> RetryPolicy:
    return RetryPolicy.model_validate_json(text)


def job_row(row: sqlite3.Row) -> JobRow:
    d = dict(zip(row.keys(), row, strict=True))
    d["state"] = _STATES[d["state"]]
    d["job_dir"] = _path(d["job_dir"])
    d["error"] = json.loads(d["error"]) if d["error"] else None
    d["retry_policy"] = _policy(d["retry_policy"])
    return JobRow(**d)


def attempt_row(row: sqlite3.Row) -> AttemptRow:
    d = dict(zip(row.keys(), row, strict=True))
    d["state"] = _STATES[d["state"]]
    d["run_dir"] = _path(d["run_dir"])
    d["gpu_ids"] = tuple(g for g in d["gpu_ids"].split(",") if g)
    d["handle"] = json.loads(d["handle"]) if d["handle"] else None
    d["error"] = json.loads(d["error"]) if d["error"] else None
    return AttemptRow(**d)


def agent_row(row: sqlite3.Row) -> AgentRow:
    d = dict(row)
    d["queues"] = tuple(q for q in d["queues"].split(",") if q)
    return AgentRow(**d)


def held_spans(
    job: JobRow, attempts: list[AttemptRow], now: float
) -> tuple[list[tuple[float, float]], bool]:
    """The ``(start, end)`` spans during which the job held its GPUs, and whether one
    is still open (counted up to ``now``, so cost grows live).

    An attempt holds its GPUs from ``running_at`` to ``finished_at``; attempts
    that never reached ``running`` held nothing worth pricing, and one the agent
    closed without a time ended when its job did.
    """
    spans = []
    running = False
    for attempt in attempts:
        if attempt.running_at is None:
            continue
        end = attempt.finished_at
        if end is None:
            if attempt.state in (State.STARTING, State.RUNNING) and not job.final:
                end, running = now, True
            else:
                end = job.finished_at or job.updated_at
        spans.append((attempt.running_at, end))
    return spans, running
