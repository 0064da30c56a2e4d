"""What the widgets read, in one place: plain-dict snapshots of jobs and queues.

Everything goes through ``nblaunch.client`` (``Job``, ``Queue``) and the cost
and estimate modules; no SQL. The dicts are what ``render`` draws.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nblaunch.client import Job, Queue

__all__ = [
    "MetricRow",
    "job_cost",
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

ACTIVE = ("queued", "starting", "running")
FILTERS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "active": ACTIVE,
    "queued": ("queued",),
    "running": ("starting", "running"),
    "succeeded": ("succeeded",),
    "failed": ("failed", "lost", "preempted"),
    "cancelled": ("cancelled",),
}


def metrics_since(job: Job, cursor: int) -> tuple[list[MetricRow], int]:
    """Metric rows logged after ``cursor`` and the next cursor (start at 0).

    Uses ``Job.metrics_since`` (one indexed seek; a poll costs only what is
    new). Until the client has it, the job's store answers the same call.
    """
    method = getattr(job, "metrics_since", None)
    if method is not None:
        rows, cursor = method(cursor)
    else:
        rows, cursor = job._store.metrics_since(job.id, cursor)
    return [tuple(r) if not isinstance(r, Mapping) else _row(r) for r in rows], cursor  # type: ignore[misc]


def _row(r: Mapping[str, Any]) -> MetricRow:
    return (r["attempt"], r["step"], r["name"], r["value"], r["time"])


def job_cost(job: Job) -> dict[str, Any] | None:
    """``{"cost_usd", "gpu_hours"}`` so far, or None when the queue has no price."""
    method = getattr(job, "cost", None)
    if callable(method):
        return method()  # type: ignore[no-any-return]
    try:
        from nblaunch.jobs.cost import actual_cost
    except ImportError:
        return None
    from nblaunch.client import Queue
    from nblaunch.errors import NBLaunchError

    row = job.row
    try:
        config = Queue(row.queue, root=job._root).config
    except NBLaunchError:
        return None
    return dict(actual_cost(job._store, row, config))


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
    snap["cost"] = dict(cost) if cost is not None else job_cost(job)
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
    final_costs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The queue's summary and its newest ``limit`` jobs passing ``state_filter``.

    ``final_costs`` caches the cost of jobs that ended (it never changes again).
    """
    now = time.time() if now is None else now
    jobs = queue.jobs()
    rows = [j.row for j in jobs]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    used = sum(r.gpus for r in rows if r.state.value in ("starting", "running"))
    states = FILTERS.get(state_filter)
    chosen = [
        j for j, r in zip(jobs, rows, strict=True) if states is None or r.state.value in states
    ]
    out = []
    for job in chosen[:limit]:
        d = job.to_dict()
        if d["started_at"] is None:
            d["cost"] = None
        elif final_costs is not None and d["id"] in final_costs:
            d["cost"] = final_costs[d["id"]]
        else:
            d["cost"] = job_cost(job)
            if final_costs is not None and d["state"] not in ACTIVE:
                final_costs[d["id"]] = d["cost"]
        out.append(d)
    summary = {
        "name": queue.name,
        "runner": queue.config.runner,
        "gpu_slots": queue.gpu_slots(),
        "gpus_used": used,
        "counts": {s: counts[s] for s in sorted(counts, key=_state_order)},
        "shown": len(out),
        "total": len(chosen),
        "filter": state_filter,
        "now": now,
    }
    return summary, out


def queue_job(queue: Queue, job_id: str) -> Job:
    """A handle on one of the queue's jobs (same ``NBLAUNCH_HOME`` as the queue)."""
    from nblaunch.client import Job

    return Job(job_id, root=queue._root)


def _state_order(state: str) -> int:
    order = (
        "running",
        "starting",
        "queued",
        "succeeded",
        "failed",
        "preempted",
        "lost",
        "cancelled",
    )
    return order.index(state) if state in order else len(order)


def sweep_jobs(sweep_id: str, root: Path | None = None) -> list[Job]:
    """Every job submitted with ``sweep_id``, oldest first, across all queues."""
    from nblaunch.client import Queue

    found: list[Job] = []
    for queue in Queue.all(root):
        found.extend(j for j in queue.jobs() if j.row.sweep_id == sweep_id)
    found.sort(key=lambda j: j.row.submitted_at)
    return found
