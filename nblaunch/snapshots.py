"""What every face renders: typed, frozen snapshots of a job and of a queue.

``Job.snapshot()`` and ``Queue.snapshot()`` build them from one read
transaction each; the CLI, the magics and the widgets only render them, so
mypy checks every face against these classes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nblaunch.options import priority_name
from nblaunch.queue import views
from nblaunch.queue.config import runner_for
from nblaunch.queue.rows import EventRow, held_spans
from nblaunch.queue.states import ACTIVE, FINAL, State
from nblaunch.queue.views import JobView
from nblaunch.retry import RetryPolicy
from nblaunch.runners.base import QueueOptions
from nblaunch.runtime.contract import Cost, RunDir, job_cost

if TYPE_CHECKING:
    from nblaunch.queue.store import Store

__all__ = [
    "FILTERS",
    "LIVE",
    "JobError",
    "JobSnapshot",
    "Progress",
    "QueueDepth",
    "QueueSnapshot",
    "desired_workers",
]

#: states in which a job may still change: waiting for a slot, or holding one
LIVE = frozenset({State.QUEUED}) | ACTIVE

#: states whose snapshot shows the job's error (queued: a retry is waiting)
SHOWS_ERROR = frozenset({State.FAILED, State.LOST, State.PREEMPTED, State.QUEUED})

#: the queue views' filters and the states each shows (None: every state)
FILTERS: dict[str, frozenset[State] | None] = {
    "all": None,
    "active": LIVE,
    "queued": frozenset({State.QUEUED}),
    "running": ACTIVE,
    "succeeded": frozenset({State.SUCCEEDED}),
    "failed": frozenset({State.FAILED, State.LOST, State.PREEMPTED}),
    "cancelled": frozenset({State.CANCELLED}),
}


@dataclass(frozen=True)
class Progress:
    """Newest step, the run's length when it reported one, fraction done and ETA."""

    step: int | None = None
    max_steps: int | None = None
    fraction: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class JobError:
    """Why the job (or its last attempt) did not succeed: papermill's fields."""

    ename: str | None
    evalue: str | None
    cell_index: int | None

    def __str__(self) -> str:
        text = f"{self.ename or 'Error'}: {self.evalue or ''}".rstrip(": ")
        return text if self.cell_index is None else f"{text} (cell {self.cell_index})"


@dataclass(frozen=True)
class AttemptSnapshot:
    """One attempt: how it ended and why (its failure class)."""

    n: int
    state: State
    outcome: str | None
    failure_class: str | None
    gpu_ids: tuple[str, ...]
    started_at: float
    finished_at: float | None
    error: JobError | None
    #: the engine's name for it (a Slurm job id), when its runner has an engine
    external_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "external_id": self.external_id,
            "state": self.state.value,
            "outcome": self.outcome,
            "class": self.failure_class,
            "gpu_ids": list(self.gpu_ids),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": None if self.error is None else self.error.__dict__,
        }


def _error(err: Mapping[str, Any] | None) -> JobError | None:
    return None if not err else JobError(err.get("ename"), err.get("evalue"), err.get("cell_index"))


@dataclass(frozen=True)
class JobSnapshot:
    """One job as of ``taken_at``."""

    id: str
    name: str
    queue: str
    state: State
    priority: int
    gpus: int
    attempt: int
    retries: int
    preemptions: int
    retry_policy: RetryPolicy
    #: when a queued retry may start (0: at once)
    not_before: float
    timeout_s: float | None
    sweep_id: str | None
    queue_position: int | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    run_dir: Path | None
    error: JobError | None
    #: None when the job's queue is no longer configured (its price is unknown)
    cost: Cost | None
    taken_at: float
    progress: Progress = field(default_factory=Progress)
    latest: Mapping[str, float] = field(default_factory=dict)
    estimate: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[EventRow, ...] = ()
    attempts: tuple[AttemptSnapshot, ...] = ()
    #: the runner of its queue (``local``, ``slurm`` …); None once the queue is gone
    runner: str | None = None
    #: the current attempt's name in its engine (a Slurm job id)
    external_id: str | None = None
    #: why its engine has not started the current attempt yet (``Resources``, ``Priority``)
    pending_reason: str | None = None

    @property
    def place(self) -> str:
        """``#3`` in the queue, or why the engine holds it back: ``pending: Priority``."""
        if self.pending_reason is not None:
            return f"pending: {self.pending_reason}"
        return f"#{self.queue_position}" if self.queue_position else ""

    @property
    def priority_name(self) -> str:
        return priority_name(self.priority)

    @property
    def where(self) -> str:
        """Its place in the queue, or which attempt it is on: ``#3 in queue a100``,
        ``attempt 2 (1 preemption)``; empty before anything is known."""
        attempt = ""
        if self.attempt:
            attempt = f"attempt {self.attempt}"
            if self.preemptions:
                plural = "s" if self.preemptions > 1 else ""
                attempt += f" ({self.preemptions} preemption{plural})"
        if self.state is State.QUEUED:
            pos = self.queue_position
            place = f"#{pos} in queue {self.queue}" if pos else f"waiting in {self.queue}"
            wait = self.not_before - self.taken_at
            if attempt and wait > 0:
                return f"{place}, retry after {attempt} in {wait:.0f}s"
            return f"{place}, retry after {attempt}" if attempt else place
        if self.external_id is not None:
            attempt += f", {self.runner} job {self.external_id}"
        if self.pending_reason is not None:
            attempt += f", {self.place}"
        return attempt

    @property
    def shown_error(self) -> JobError | None:
        """The error to show: the job's, once it failed, or the last attempt's while a
        retry waits."""
        return self.error if self.state in SHOWS_ERROR else None

    def status_line(self) -> str:
        """``job ab12 (train) queued, #2 in queue local``: one line for terminals."""
        where = f", {self.where}" if self.where else ""
        error = f": {self.shown_error}" if self.shown_error else ""
        return f"job {self.id} ({self.name}) {self.state}{where}{error}"

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def output_notebook(self) -> Path | None:
        return None if self.run_dir is None else RunDir(self.run_dir).output

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``nblaunch show --json`` and ``jobs --json`` print."""
        error = self.error
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "state": self.state.value,
            "priority": self.priority_name,
            "gpus": self.gpus,
            "attempt": self.attempt,
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "output_notebook": None if self.run_dir is None else str(self.output_notebook),
            "error": None if error is None else error.__dict__,
            "queue_position": self.queue_position,
            "retries": self.retries,
            "max_retries": self.retry_policy.max_retries,
            "retry_policy": self.retry_policy.model_dump(mode="json"),
            "timeout_s": self.timeout_s,
            "not_before": self.not_before or None,
            "attempts": [a.to_dict() for a in self.attempts],
            "external_id": self.external_id,
            "pending_reason": self.pending_reason,
            "preemptions": self.preemptions,
            "sweep_id": self.sweep_id,
            "cost_usd": None if self.cost is None else self.cost.usd,
            "gpu_hours": None if self.cost is None else self.cost.gpu_hours,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def of(
        cls,
        view: JobView,
        queue: QueueOptions | None,
        now: float | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        estimate: Mapping[str, Any] | None = None,
    ) -> JobSnapshot:
        """The snapshot of ``view`` on ``queue`` (None once the queue is gone, and with
        it the price); ``params`` and ``estimate`` come from the job's bundle."""
        now = time.time() if now is None else now
        job = view.job
        current = view.attempts[-1] if view.attempts else None
        pending = None
        if current is not None and current.state is State.STARTING:
            pending = current.pending_reason
        cost = None
        if queue is not None:
            spans, running = held_spans(job, list(view.attempts), now)
            cost = job_cost(spans, job.gpus, queue.price(), running=running)
        return cls(
            id=job.id,
            name=job.name,
            queue=job.queue,
            state=job.state,
            priority=job.priority,
            gpus=job.gpus,
            attempt=job.attempt,
            retries=job.retries + job.lost_retries,
            preemptions=job.preemptions,
            retry_policy=job.retry_policy,
            not_before=job.not_before,
            timeout_s=job.timeout_s,
            sweep_id=job.sweep_id,
            queue_position=view.queue_position,
            submitted_at=job.submitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            run_dir=job.run_dir(),
            error=_error(job.error),
            cost=cost,
            taken_at=now,
            progress=_progress(view, now),
            latest=dict(view.latest),
            estimate=estimate,
            params=dict(params or {}),
            events=view.events,
            attempts=tuple(
                AttemptSnapshot(
                    n=a.n,
                    state=a.state,
                    outcome=a.outcome,
                    failure_class=a.failure_class,
                    gpu_ids=a.gpu_ids,
                    started_at=a.started_at,
                    finished_at=a.finished_at,
                    error=_error(a.error),
                    external_id=a.external_id,
                )
                for a in view.attempts
            ),
            runner=None if queue is None else queue.runner,
            external_id=None if current is None else current.external_id,
            pending_reason=pending,
        )


@dataclass(frozen=True)
class QueueSnapshot:
    """One queue as of ``taken_at``: its counts per state and the jobs shown."""

    name: str
    runner: str
    gpu_slots: int | None
    gpus_used: int
    counts: Mapping[str, int]
    jobs: tuple[JobSnapshot, ...]
    filter: str
    taken_at: float

    @property
    def total(self) -> int:
        """Jobs that pass the filter, shown or not."""
        states = FILTERS.get(self.filter)
        return sum(n for s, n in self.counts.items() if states is None or State(s) in states)


def desired_workers(
    gpus_queued: int,
    gpus_in_use: int,
    jobs: int,
    gpus_per_worker: int,
    min_workers: int = 0,
    max_workers: int | None = None,
) -> int:
    """Workers a queue wants now: the rule behind ``desired_workers``.

    Parameters
    ----------
    gpus_queued
        GPUs the queued jobs ask for (each job: GPUs per node × nodes).
    gpus_in_use
        GPUs the active (starting or running) jobs hold: their workers are busy
        and must not be scaled away.
    jobs
        Queued plus active jobs; CPU-only ones count as 0 GPUs.
    gpus_per_worker
        GPUs one worker has (at least 1).
    min_workers, max_workers
        The clamp; ``max_workers`` None is no cap.

    Returns
    -------
    int
        ``ceil((gpus_queued + gpus_in_use) / gpus_per_worker)``, at least 1 when
        any job is queued or active (CPU-only work still needs a worker), then
        clamped to ``[min_workers, max_workers]``.
    """
    wanted = math.ceil((gpus_queued + gpus_in_use) / gpus_per_worker)
    if jobs and not wanted:
        wanted = 1
    wanted = max(min_workers, wanted)
    return wanted if max_workers is None else min(max_workers, wanted)


@dataclass(frozen=True)
class QueueDepth:
    """How deep one queue is as of ``taken_at``: what autoscalers act on
    (``nblaunch queues --json`` / ``--prometheus``, the agent's ``/metrics``)."""

    name: str
    runner: str
    #: jobs per state, every state listed (0 when none)
    counts: Mapping[str, int]
    #: GPUs the queued jobs ask for
    gpus_queued: int
    #: GPUs the active (starting, running) jobs hold
    gpus_in_use: int
    #: how long the longest-waiting queued job has waited (0 when none waits)
    oldest_queued_age_s: float
    gpus_per_worker: int
    min_workers: int
    max_workers: int | None
    #: see :func:`desired_workers`
    desired_workers: int
    taken_at: float

    @classmethod
    def read(cls, store: Store, options: QueueOptions, now: float | None = None) -> QueueDepth:
        """The depth of queue ``options.name`` from one read of ``store``."""
        view = views.depth_view(store, options.name)
        now = time.time() if now is None else now
        active = [s.value for s in ACTIVE]
        queued = view.counts.get(State.QUEUED.value, 0)
        in_use = sum(view.gpus.get(s, 0) for s in active)
        gpus_queued = view.gpus.get(State.QUEUED.value, 0)
        per_worker = runner_for(options).gpus_per_worker()
        since = view.oldest_queued_since
        return cls(
            name=options.name,
            runner=options.runner,
            counts={s.value: view.counts.get(s.value, 0) for s in State},
            gpus_queued=gpus_queued,
            gpus_in_use=in_use,
            oldest_queued_age_s=0.0 if since is None else max(0.0, now - since),
            gpus_per_worker=per_worker,
            min_workers=options.min_workers,
            max_workers=options.max_workers,
            desired_workers=desired_workers(
                gpus_queued,
                in_use,
                queued + sum(view.counts.get(s, 0) for s in active),
                per_worker,
                options.min_workers,
                options.max_workers,
            ),
            taken_at=now,
        )

    def to_dict(self) -> dict[str, Any]:
        """The depth fields ``nblaunch queues --json`` prints for the queue."""
        return {
            "jobs": dict(self.counts),
            "gpus_queued": self.gpus_queued,
            "gpus_in_use": self.gpus_in_use,
            "oldest_queued_age_s": self.oldest_queued_age_s,
            "gpus_per_worker": self.gpus_per_worker,
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "desired_workers": self.desired_workers,
        }


def _progress(view: JobView, now: float) -> Progress:
    job, step, max_steps = view.job, view.step, view.max_steps
    fraction = min(1.0, step / max_steps) if step is not None and max_steps else None
    if job.state is State.SUCCEEDED:
        fraction = 1.0
    eta = None
    current = view.attempts[-1] if view.attempts else None
    if fraction and 0 < fraction < 1 and current and current.running_at and not job.final:
        first = view.first_step
        if first is not None and step is not None and max_steps and step > first[0]:
            rate = (step - first[0]) / max(1e-9, now - first[1])
            eta = (max_steps - step) / rate
    return Progress(step, max_steps, fraction, eta)
