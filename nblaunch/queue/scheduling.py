"""Which queued job starts next, and which running jobs make way for a higher priority.

Jobs come in the order they should be served: higher priority first, then
older (a retried job keeps its place). A job needs GPUs, or one CPU slot when
it asks for none; the two are scheduled apart. Per kind, the first job that
does not fit gets a reservation: the earliest moment enough devices come free,
from the running jobs' time limits (EASY backfill). A later job starts now
only if it fits and cannot delay that moment: it ends before it (by its own
time limit), or it uses devices the reserved job will not need. Where a
running job has no time limit the moment is unknown, and nothing passes the
blocked job (it is never starved by a stream of small ones).

Devices are assigned best-fit: the smallest run of consecutive free device
ids that holds the job, so larger runs stay whole for larger jobs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CPU = "cpu"
GPU = "gpu"


@dataclass(frozen=True)
class Pick:
    job_id: str
    gpu_ids: tuple[str, ...]


class _Demand:
    """What a job holds or asks for: GPUs, or one CPU slot when it asks for none."""

    gpus: int

    @property
    def kind(self) -> str:
        return GPU if self.gpus else CPU

    @property
    def need(self) -> int:
        return self.gpus or 1


@dataclass(frozen=True)
class Waiting(_Demand):
    """A queued job that may start now."""

    job_id: str
    priority: int
    gpus: int
    time_limit_s: float | None = None


@dataclass(frozen=True)
class Running(_Demand):
    """A job holding devices (or a CPU slot) now."""

    job_id: str
    priority: int
    gpus: int
    #: when it is expected to end at the latest (None: unknown)
    ends_at: float | None
    running_since: float
    #: already told to stop (its devices come free soon)
    stopping: bool = False
    #: may be preempted for the queue being scheduled (it is one of its jobs)
    preemptible: bool = True


def pick(
    candidates: Iterable[Waiting],
    free_gpus: Sequence[str],
    free_cpu_slots: int,
    running: Sequence[Running],
    now: float,
) -> Pick | None:
    """The first candidate that may start now without delaying a reserved one."""
    free = {GPU: len(free_gpus), CPU: free_cpu_slots}
    reserved: dict[str, tuple[float, int]] = {}
    for job in candidates:
        if all(n <= 0 for n in free.values()):
            return None  # nothing further down can fit either
        kind = job.kind
        if job.need > free[kind]:
            if kind not in reserved:
                reserved[kind] = _shadow(kind, job.need, free[kind], running, now)
            continue
        if kind in reserved:
            shadow, extra = reserved[kind]
            if shadow == math.inf:
                continue  # when the reserved job starts is unknown: nothing may pass it
            ends = now + job.time_limit_s if job.time_limit_s else math.inf
            if not (ends <= shadow or job.need <= extra):
                continue
        return Pick(job.job_id, best_fit(free_gpus, job.gpus) if kind == GPU else ())
    return None


def _shadow(
    kind: str, need: int, free: int, running: Sequence[Running], now: float
) -> tuple[float, int]:
    """When ``need`` of ``kind`` come free (inf: unknown), and how many beyond
    ``need`` are free then (devices a backfilled job may keep)."""
    ends = sorted(
        (now if r.stopping else (r.ends_at if r.ends_at is not None else math.inf), r.need)
        for r in running
        if r.kind == kind
    )
    available = free
    for at, amount in ends:
        if at == math.inf:
            break
        available += amount
        if available >= need:
            return max(at, now), available - need
    return math.inf, 0


def best_fit(free_gpus: Sequence[str], n: int) -> tuple[str, ...]:
    """``n`` of ``free_gpus``: from the smallest run of consecutive ids that holds
    them, else the first ``n`` (ids that are not indexes count as one run)."""
    if n == 0:
        return ()
    runs: list[list[str]] = []
    for gid in free_gpus:
        if runs and _adjacent(runs[-1][-1], gid):
            runs[-1].append(gid)
        else:
            runs.append([gid])
    fitting = [r for r in runs if len(r) >= n]
    if not fitting:
        return tuple(free_gpus[:n])
    return tuple(min(fitting, key=len)[:n])


def _adjacent(prev: str, gid: str) -> bool:
    if prev.isdigit() and gid.isdigit():
        return int(gid) == int(prev) + 1
    return not (prev.isdigit() or gid.isdigit())


def victims(
    head: Waiting,
    free: int,
    running: Sequence[Running],
    now: float,
    min_runtime_s: float,
) -> list[Running]:
    """The running jobs to preempt so ``head`` (blocked, ``free`` of its kind
    free now) can start: lowest priority first, the most recently started
    first among equals; never one of equal or higher priority, another
    queue's, nor one that has run for less than ``min_runtime_s``. Empty when
    jobs already stopping will free enough, or when preempting every eligible
    job would not."""
    same = [r for r in running if r.kind == head.kind]
    freeing = free + sum(r.need for r in same if r.stopping)
    if freeing >= head.need:
        return []
    eligible = sorted(
        (
            r
            for r in same
            if r.preemptible
            and not r.stopping
            and r.priority < head.priority
            and now - r.running_since >= min_runtime_s
        ),
        key=lambda r: (r.priority, -r.running_since),
    )
    chosen = []
    for r in eligible:
        chosen.append(r)
        freeing += r.need
        if freeing >= head.need:
            return chosen
    return []
