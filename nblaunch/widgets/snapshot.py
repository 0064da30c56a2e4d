"""What the widgets read, in one place: plain-dict snapshots of jobs and queues.

Everything goes through ``nblaunch.client`` (``Job``, ``Queue``, and the
store's per-queue counts and sweep look-up); no SQL. A tick reads what it
shows, not the queue's whole history. The dicts are what ``render`` draws.
"""

from __future__ import annotations

import time
from collections.abc import Container, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nblaunch.queue.states import ACTIVE, FINAL, State

if TYPE_CHECKING:
    from nblaunch.client import Job, Queue

__all__ = [
    "FILTERS",
    "LIVE",
    "MetricRow",
    "job_estimate",
    "job_params",
    "job_snapshot",
    "log_tail",
    "metrics_since",
    "queue_job",
    "queue_snapshot",
    "sweep_jobs",
]

MetricRow = tuple[int, "int | None", str, float, float]  # attempt, step, name, value, time

#: states in which a job may still change: waiting for a slot, or holding one
LIVE = frozenset({State.QUEUED}) | ACTIVE

#: the queue table's filters and the states each shows (None: every state)
FILTERS: dict[str, frozenset[State] | None] = {
    "all": None,
    "active": LIVE,
    "queued": frozenset({State.QUEUED}),
    "running": ACTIVE,
    "succeeded": frozenset({State.SUCCEEDED}),
    "failed": frozenset({State.FAILED, State.LOST, State.PREEMPTED}),
    "cancelled": frozenset({State.CANCELLED}),
}

#: order of the per-state counts in the queue's header
_COUNT_ORDER = (
    State.RUNNING,
    State.STARTING,
    State.QUEUED,
    State.SUCCEEDED,
    State.FAILED,
    State.PREEMPTED,
    State.LOST,
    State.CANCELLED,
)


def metrics_since(job: Job, cursor: int) -> tuple[list[MetricRow], int]:
    """Metric rows logged after ``cursor`` and the next cursor (start at 0).

    ``Job.metrics_since`` is one indexed seek: a poll costs only what is new.
    """
    return job.metrics_since(cursor)


def job_estimate(job: Job) -> dict[str, Any] | None:
    """The estimate recorded at submission (``spec.options["estimate"]``), if any."""
    try:
        est = job.spec.options.get("estimate")
    except (OSError, ValueError):
        return None
    return dict(est) if isinstance(est, Mapping) else None


def job_params(job: Job) -> dict[str, Any]:
    try:
        return dict(job.spec.params)
    except (OSError, ValueError):
        return {}


def job_snapshot(
    job: Job,
    *,
    latest: Mapping[str, float] | None = None,
    progress: Mapping[str, Any] | None = None,
    cost: Mapping[str, Any] | None = None,
    estimate: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """``Job.to_dict()`` plus what the card shows; pieces not given are read now."""
    snap = job.to_dict()
    snap["progress"] = dict(progress) if progress is not None else job.progress()
    if latest is None:
        latest = {name: value for _a, _s, name, value, _t in metrics_since(job, 0)[0]}
    snap["latest"] = dict(latest)
    snap["cost"] = dict(cost) if cost is not None else _cost(snap)
    snap["estimate"] = dict(estimate) if estimate is not None else job_estimate(job)
    snap["now"] = time.time() if now is None else now
    return snap


def log_tail(job: Job, max_bytes: int = 12_000, max_lines: int = 60) -> str:
    """The end of the current attempt's stdout and stderr, without reading whole files."""
    log_dir = job.log_dir
    if log_dir is None:
        return ""
    parts: list[str] = []
    for name in ("stdout.log", "stderr.log"):
        path = Path(log_dir) / name
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode(errors="replace")
        if size > max_bytes:
            text = text.split("\n", 1)[-1]
        if text.strip():
            parts.append(text if len(parts) == 0 else f"--- {name} ---\n{text}")
    lines = "".join(parts).splitlines()
    return "\n".join(lines[-max_lines:])


def queue_snapshot(
    queue: Queue,
    state_filter: str = "all",
    limit: int = 50,
    now: float | None = None,
    final_rows: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The queue's summary and its newest ``limit`` jobs passing ``state_filter``.

    The summary counts in the store (``state_counts``, ``gpus_in_use``); only
    the jobs shown are loaded. ``final_rows`` caches the rows of jobs that
    ended (a final state is never left, so they never change again); it keeps
    only the rows shown this time.
    """
    from nblaunch.client import store

    now = time.time() if now is None else now
    db = store(queue._root)
    counts = db.state_counts(queue.name)
    states = FILTERS.get(state_filter)
    out = []
    for job in _newest_jobs(queue, states, limit):
        d = final_rows.get(job.id) if final_rows is not None else None
        if d is None:
            d = job.to_dict()
            d["cost"] = None if d["started_at"] is None else _cost(d)
            if final_rows is not None and d["state"] in FINAL:
                final_rows[job.id] = d
        out.append(d)
    if final_rows is not None:
        for job_id in final_rows.keys() - {d["id"] for d in out}:
            del final_rows[job_id]
    order = {s.value: n for n, s in enumerate(_COUNT_ORDER)}
    summary = {
        "name": queue.name,
        "runner": queue.config.runner,
        "gpu_slots": queue.gpu_slots(),
        "gpus_used": db.gpus_in_use(queue.name),
        "counts": {s: counts[s] for s in sorted(counts, key=lambda s: order.get(s, len(order)))},
        "shown": len(out),
        "total": sum(n for s, n in counts.items() if states is None or s in states),
        "filter": state_filter,
        "now": now,
    }
    return summary, out


def _newest_jobs(queue: Queue, states: frozenset[State] | None, limit: int) -> list[Job]:
    """The queue's newest ``limit`` jobs in ``states`` (any state when None)."""
    if states is None or len(states) == 1:
        state = None if states is None else next(iter(states)).value
        return queue.jobs(state=state, limit=limit)
    # The newest ``limit`` of each state hold the newest ``limit`` of them all
    # (by id: a job that moved between the reads shows once).
    found = {job.id: job for s in states for job in queue.jobs(state=s.value, limit=limit)}
    return sorted(found.values(), key=lambda job: job.row.seq, reverse=True)[:limit]


def _cost(d: Mapping[str, Any]) -> dict[str, Any]:
    """The cost ``Job.to_dict()`` already holds, in the snapshot's ``cost`` shape."""
    return {"cost_usd": d["cost_usd"], "gpu_hours": d["gpu_hours"]}


def queue_job(queue: Queue, job_id: str) -> Job:
    """A handle on one of the queue's jobs (same ``NBLAUNCH_HOME`` as the queue)."""
    from nblaunch.client import Job

    return Job(job_id, root=queue._root)


def sweep_jobs(sweep_id: str, root: Path | None = None, *, known: Container[str] = ()) -> list[Job]:
    """Every job submitted with ``sweep_id``, oldest first, across all queues.

    Jobs whose ids are in ``known`` (the caller holds them already) are left out.
    """
    from nblaunch.client import Job, store

    rows = store(root).jobs(sweep_id=sweep_id)  # newest first
    return [Job(row.id, root=root) for row in reversed(rows) if row.id not in known]
