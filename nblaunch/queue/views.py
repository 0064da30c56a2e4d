"""What the faces show, read from the store in one transaction each.

A job view is the job row, its attempts, its place in the queue and its
newest metrics as of one moment, so a card never mixes a state from before
an attempt ended with metrics from after. A queue view counts its jobs per
state in SQL and loads only the jobs it shows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field

from nblaunch.queue.rows import AttemptRow, EventRow, JobRow, attempt_row, job_row
from nblaunch.queue.states import ACTIVE, State
from nblaunch.queue.store import Store
from nblaunch.runtime.contract import MAX_STEPS_METRIC


@dataclass(frozen=True)
class JobView:
    """One job as of one moment."""

    job: JobRow
    attempts: tuple[AttemptRow, ...]
    queue_position: int | None
    #: newest value of every metric (empty when not read)
    latest: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    max_steps: int | None = None
    #: ``(step, time)`` of the current attempt's first stepped metric, for the rate
    first_step: tuple[int, float] | None = None
    #: every state change, oldest first (empty when not read)
    events: tuple[EventRow, ...] = ()


@dataclass(frozen=True)
class QueueView:
    """One queue as of one moment: counts per state, GPUs held, the jobs shown."""

    counts: dict[str, int]
    gpus_used: int
    jobs: tuple[JobView, ...]


def job_view(store: Store, job_id: str, *, metrics: bool = True) -> JobView:
    """The job (by id or unique prefix) with its attempts and, if ``metrics``, its progress."""
    with store.reading() as db:
        job = store.job(job_id)
        attempts = _attempts(db, [job.id]).get(job.id, ())
        events = tuple(
            EventRow(**dict(r))
            for r in db.execute(
                """SELECT job_id, attempt, time, from_state, to_state, reason FROM events
                   WHERE job_id = ? ORDER BY id""",
                (job.id,),
            )
        )
        if not metrics:
            return JobView(job, attempts, _position(db, job), events=events)
        latest = {
            name: float(value)
            for name, value in db.execute(
                """SELECT name, value FROM metrics WHERE rowid IN
                   (SELECT MAX(rowid) FROM metrics WHERE job_id = ? GROUP BY name)""",
                (job.id,),
            )
        }
        step = db.execute("SELECT MAX(step) FROM metrics WHERE job_id = ?", (job.id,)).fetchone()
        first = db.execute(
            """SELECT step, time FROM metrics WHERE job_id = ? AND attempt = ?
               AND step IS NOT NULL ORDER BY rowid LIMIT 1""",
            (job.id, job.attempt),
        ).fetchone()
        max_steps = latest.get(MAX_STEPS_METRIC)
        return JobView(
            job,
            attempts,
            _position(db, job),
            latest,
            None if step[0] is None else int(step[0]),
            None if max_steps is None else int(max_steps),
            None if first is None else (int(first[0]), float(first[1])),
            events,
        )


def queue_view(store: Store, queue: str, states: Collection[State] | None, limit: int) -> QueueView:
    """The queue's counts and its newest ``limit`` jobs in ``states`` (all when None)."""
    with store.reading() as db:
        counts = {
            s: int(n)
            for s, n in db.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE queue = ? GROUP BY state", (queue,)
            )
        }
        active = ",".join(f"'{s.value}'" for s in ACTIVE)
        used = db.execute(
            f"SELECT COALESCE(SUM(gpus), 0) FROM jobs WHERE queue = ? AND state IN ({active})",
            (queue,),
        ).fetchone()[0]
        views = _newest(db, queue, states, limit)
    return QueueView(counts, int(used), views)


@dataclass(frozen=True)
class DepthView:
    """How deep one queue is as of one moment, for autoscalers."""

    #: jobs per state (states without jobs are absent)
    counts: dict[str, int]
    #: GPUs the jobs in each state ask for (per node × nodes)
    gpus: dict[str, int]
    #: when the longest-waiting queued job (re-)entered the queue; None when none waits
    oldest_queued_since: float | None


#: per state: jobs, their GPUs, and (queued only) when the longest-waiting one was last
#: queued (a retry re-enters the queue when its attempt ends)
_DEPTH = """SELECT state, COUNT(*), COALESCE(SUM(gpus), 0),
       MIN(CASE WHEN state = 'queued' THEN COALESCE(
           (SELECT MAX(e.time) FROM events e WHERE e.job_id = jobs.id AND e.to_state = 'queued'),
           submitted_at) END)
   FROM jobs WHERE queue = ? GROUP BY state"""


def depth_view(store: Store, queue: str) -> DepthView:
    """The queue's jobs and GPUs per state and its oldest wait, in one query."""
    with store.reading() as db:
        rows = db.execute(_DEPTH, (queue,)).fetchall()
    since = [float(r[3]) for r in rows if r[3] is not None]
    return DepthView(
        counts={r[0]: int(r[1]) for r in rows},
        gpus={r[0]: int(r[2]) for r in rows},
        oldest_queued_since=min(since) if since else None,
    )


def jobs_view(
    store: Store, queue: str | None, states: Collection[State] | None, limit: int | None
) -> tuple[JobView, ...]:
    """The newest ``limit`` jobs (of ``queue``, in ``states``; all when None), newest first."""
    with store.reading() as db:
        return _newest(db, queue, states, limit)


def _newest(
    db: sqlite3.Connection,
    queue: str | None,
    states: Collection[State] | None,
    limit: int | None,
) -> tuple[JobView, ...]:
    clauses: list[str] = []
    args: list[object] = []
    if queue is not None:
        clauses.append("queue = ?")
        args.append(queue)
    if states is not None:
        clauses.append(f"state IN ({','.join('?' * len(states))})")
        args += [s.value for s in states]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = [
        job_row(r)
        for r in db.execute(
            f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?",
            (*args, -1 if limit is None else limit),
        )
    ]
    attempts = _attempts(db, [j.id for j in rows])
    return tuple(JobView(j, attempts.get(j.id, ()), _position(db, j)) for j in rows)


def sweep_job_ids(store: Store, sweep_id: str) -> list[str]:
    """Ids of the jobs submitted with ``sweep_id``, oldest first, across queues."""
    with store.reading() as db:
        rows = db.execute("SELECT id FROM jobs WHERE sweep_id = ? ORDER BY seq", (sweep_id,))
        return [r[0] for r in rows]


def _position(db: sqlite3.Connection, job: JobRow) -> int | None:
    """1-based place among the queue's waiting jobs, in the order they will be picked."""
    if job.state is not State.QUEUED:
        return None
    ahead = db.execute(
        """SELECT COUNT(*) FROM jobs WHERE queue = ? AND state = 'queued'
           AND (priority > ? OR (priority = ? AND seq < ?))""",
        (job.queue, job.priority, job.priority, job.seq),
    ).fetchone()[0]
    return int(ahead) + 1


def _attempts(db: sqlite3.Connection, job_ids: list[str]) -> dict[str, tuple[AttemptRow, ...]]:
    if not job_ids:
        return {}
    marks = ",".join("?" * len(job_ids))
    found: dict[str, list[AttemptRow]] = {}
    for row in db.execute(
        f"SELECT * FROM attempts WHERE job_id IN ({marks}) ORDER BY job_id, n", job_ids
    ):
        attempt = attempt_row(row)
        found.setdefault(attempt.job_id, []).append(attempt)
    return {k: tuple(v) for k, v in found.items()}
