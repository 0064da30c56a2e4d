"""The store: one SQLite file in WAL mode, the single source of truth.

Every state change is a guarded ``UPDATE … WHERE id=? AND state IN (…)`` plus
one row in ``events``, in one transaction. Claims take the write lock first
(``BEGIN IMMEDIATE``) so any number of kernels and agents can share the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nblaunch.errors import TransitionError, UnknownJobError
from nblaunch.queue import scheduling
from nblaunch.queue.connection import open_store, raise_fault
from nblaunch.queue.rows import (
    AgentRow,
    AttemptRow,
    EventRow,
    JobRow,
    Submission,
    agent_row,
    attempt_row,
    job_row,
)
from nblaunch.queue.states import ACTIVE, FINAL, State, sources_of
from nblaunch.retry import RetryPolicy
from nblaunch.runners.base import Slots
from nblaunch.runtime.contract import JobDir

#: the queued jobs of a queue that may start now, in the order they are served
#: (``scheduling.Waiting``'s fields)
_WAITING = """SELECT id, priority, gpus, timeout_s FROM jobs WHERE queue = ?
   AND state = 'queued' AND not_before <= ? ORDER BY priority DESC, seq"""


def already_ended(job: JobRow) -> TransitionError:
    return TransitionError(
        f"job {job.id} already ended ({job.state}); nothing was cancelled "
        f"(`nblaunch show {job.id}` shows how it ended)"
    )


class Store:
    """Open (creating and migrating as needed) the store at ``path``."""

    def __init__(self, path: Path) -> None:
        """Raises ``StoreError`` when ``path`` is not a readable nblaunch store
        (``connection.open_store``); such a file is left exactly as it was."""
        self.path = path
        self._db = open_store(path)
        # One connection may serve a kernel's main thread and its widget poller.
        self._lock = threading.RLock()

    def _one(self, sql: str, args: Any = ()) -> sqlite3.Row | None:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchone()  # type: ignore[no-any-return]
            except sqlite3.DatabaseError as exc:
                raise_fault(self.path, exc)

    def _all(self, sql: str, args: Any = ()) -> list[sqlite3.Row]:
        """Reads hold the connection's lock too: a kernel thread and the widget
        poller share one connection, and neither may read inside the other's
        open transaction."""
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise_fault(self.path, exc)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise_fault(self.path, exc)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query in the block sees the same moment."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                try:
                    yield self._db
                finally:
                    if self._db.in_transaction:
                        self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise_fault(self.path, exc)

    # -- jobs -------------------------------------------------------------

    def insert_job(
        self,
        job_id: str,
        spec: Submission,
        job_dir: Path,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = None,
    ) -> JobRow:
        """Queue a job under ``retry`` (its queue's policy with its own overrides,
        resolved at submission) and with its attempts limited to ``timeout_s``."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                """INSERT INTO jobs (id, name, queue, state, priority, gpus, job_dir, sweep_id,
                   retry_policy, timeout_s, submitted_at, updated_at)
                   VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                (
                    job_id,
                    spec.name,
                    spec.queue,
                    spec.priority,
                    spec.gpus * spec.nodes,
                    str(job_dir),
                    spec.sweep_id,
                    (retry or RetryPolicy()).model_dump_json(),
                    timeout_s,
                    now,
                    now,
                ),
            ).fetchone()
            self._event(db, job_id, 0, None, State.QUEUED, "submitted", now)
        return job_row(row)

    def job(self, job_id: str) -> JobRow:
        """The job with this id, or the one job whose id starts with it."""
        row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None and job_id:
            rows = self._all(
                "SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                (job_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
            )
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise UnknownJobError(
                f"no job {job_id!r} in {self.path}; list jobs with `nblaunch jobs` "
                "(or check NBLAUNCH_HOME)"
            )
        return job_row(row)

    def jobs(
        self,
        queue: str | None = None,
        state: str | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
    ) -> list[JobRow]:
        clauses, args = [], []
        for column, value in (("queue", queue), ("state", state), ("sweep_id", sweep_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = f"LIMIT {int(limit)}" if limit else ""
        rows = self._all(f"SELECT * FROM jobs {where} ORDER BY seq DESC {tail}", args)
        return [job_row(r) for r in rows]

    def has_work(self, queues: Iterable[str]) -> bool:
        names = list(queues)
        marks = ",".join("?" * len(names))
        row = self._one(
            f"""SELECT 1 FROM jobs WHERE queue IN ({marks})
                AND state IN ('queued', 'starting', 'running') LIMIT 1""",
            names,
        )
        return row is not None

    def next_wakeup(self, queues: Iterable[str]) -> float | None:
        """Earliest time a backed-off queued job becomes eligible, if any."""
        names = list(queues)
        marks = ",".join("?" * len(names))
        row = self._one(
            f"""SELECT MIN(not_before) FROM jobs WHERE queue IN ({marks}) AND state = 'queued'
                AND not_before > ?""",
            (*names, time.time()),
        )
        return None if row is None else row[0]

    # -- the agent's moves -------------------------------------------------

    def claim(
        self, queue: str, slots: Slots, pool: Sequence[str], agent_pid: int
    ) -> tuple[JobRow, AttemptRow] | None:
        """Move the job ``scheduling.pick`` chooses to ``starting`` with its devices.

        ``slots`` are the queue's devices and CPU-job slots; ``pool`` the queues
        sharing those devices, so two queues never hand out one GPU.
        """
        now = time.time()
        with self.transaction() as db:
            # Stepped, not fetched: the first fitting job is usually the first row.
            candidates = db.execute(_WAITING, (queue, now))
            waiting = (scheduling.Waiting(*row) for row in candidates)
            if slots.engine:
                head = next(waiting, None)
                chosen = None if head is None else scheduling.Pick(head.job_id, ())
            else:
                running, free, cpu_free = self._holdings(db, queue, slots, pool, now)
                chosen = scheduling.pick(waiting, free, cpu_free, running, now)
            candidates.close()
            if chosen is None:
                return None
            row = db.execute(
                """UPDATE jobs SET state = 'starting', attempt = attempt + 1,
                   started_at = COALESCE(started_at, ?), updated_at = ?
                   WHERE id = ? AND state = 'queued' RETURNING *""",
                (now, now, chosen.job_id),
            ).fetchone()
            job = job_row(row)
            attempt = db.execute(
                """INSERT INTO attempts (job_id, n, state, run_dir, gpu_ids, agent_pid, started_at)
                   VALUES (?, ?, 'starting', ?, ?, ?, ?) RETURNING *""",
                (
                    job.id,
                    job.attempt,
                    str(JobDir(job.job_dir).attempt(job.attempt).path),
                    ",".join(chosen.gpu_ids),
                    agent_pid,
                    now,
                ),
            ).fetchone()
            self._event(db, job.id, job.attempt, State.QUEUED, State.STARTING, "claimed", now)
        return job, attempt_row(attempt)

    def preemption_plan(
        self, queue: str, slots: Slots, pool: Sequence[str], min_runtime_s: float
    ) -> list[tuple[str, str]]:
        """``(victim_id, for_job_id)`` pairs: running jobs of lower priority to preempt
        so the first blocked job of each kind (GPU, CPU) in ``queue`` can start."""
        if slots.engine:
            return []  # the engine preempts by its own rules
        now = time.time()
        with self.reading() as db:
            running, free, cpu_free = self._holdings(db, queue, slots, pool, now)
            rows = db.execute(_WAITING, (queue, now)).fetchall()
        plan: list[tuple[str, str]] = []
        heads: dict[str, scheduling.Waiting] = {}
        for row in rows:
            job = scheduling.Waiting(*row)
            heads.setdefault(job.kind, job)
        for kind, head in heads.items():
            available = len(free) if kind == scheduling.GPU else cpu_free
            if head.need <= available:
                continue
            chosen = scheduling.victims(head, available, running, now, min_runtime_s)
            plan.extend((r.job_id, head.job_id) for r in chosen)
        return plan

    @staticmethod
    def _holdings(
        db: sqlite3.Connection, queue: str, slots: Slots, pool: Sequence[str], now: float
    ) -> tuple[list[scheduling.Running], list[str], int]:
        """What runs now on ``queue``'s devices (GPU jobs of every queue in ``pool``,
        counted by the devices of ``queue`` they hold, and CPU jobs of ``queue``),
        its free device ids, and its free CPU slots."""
        pool = list(pool) or [queue]
        marks = ",".join("?" * len(pool))
        rows = db.execute(
            f"""SELECT j.id, j.queue, j.priority, j.gpus, j.timeout_s, a.gpu_ids,
                   COALESCE(a.running_at, a.started_at), a.stop_reason
               FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.n = j.attempt
               WHERE j.queue IN ({marks}) AND j.state IN ('starting', 'running')""",
            pool,
        ).fetchall()
        running: list[scheduling.Running] = []
        used: set[str] = set()
        cpu_busy = 0
        mine = set(slots.gpu_ids)
        for job_id, job_queue, priority, gpus, limit, ids, since, stop in rows:
            held = [g for g in ids.split(",") if g in mine]
            if (gpus == 0 and job_queue != queue) or (gpus and not held):
                continue  # CPU slots are each queue's own; other devices free nothing here
            used.update(held)
            cpu_busy += gpus == 0
            ends = since + limit if limit else None
            running.append(
                scheduling.Running(
                    job_id,
                    priority,
                    len(held),
                    ends,
                    since,
                    stopping=stop is not None,
                    # another queue's jobs follow that queue's preemption settings
                    preemptible=job_queue == queue,
                )
            )
        free = [g for g in slots.gpu_ids if g not in used]
        return running, free, slots.cpu_slots - cpu_busy

    def record_pending(
        self, job_id: str, attempt: int, handle: dict[str, Any], reason: str
    ) -> None:
        """Record that the runner's engine holds a starting attempt (by ``handle``) and
        why it has not started it; an event only when the reason changes."""
        now = time.time()
        with self.transaction() as db:
            before = db.execute(
                "SELECT pending_reason FROM attempts WHERE job_id = ? AND n = ? "
                "AND state = 'starting'",
                (job_id, attempt),
            ).fetchone()
            if before is None:
                return
            db.execute(
                "UPDATE attempts SET handle = ?, pending_reason = ? WHERE job_id = ? AND n = ?",
                (json.dumps(handle), reason, job_id, attempt),
            )
            if before[0] != reason:
                note = f"pending: {reason}"
                self._event(db, job_id, attempt, State.STARTING, State.STARTING, note, now)

    def mark_stop(self, job_id: str, attempt: int, reason: str, note: str) -> bool:
        """Record that the agent is stopping the attempt, and why (``timeout``,
        ``kernel_start``, ``priority``); False when it is no longer running or
        already being stopped."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                """UPDATE attempts SET stop_reason = ?, stop_requested_at = ?
                   WHERE job_id = ? AND n = ? AND stop_reason IS NULL
                   AND state IN ('starting', 'running') RETURNING state""",
                (reason, now, job_id, attempt),
            ).fetchone()
            if row is None:
                return False
            state = State(row[0])
            self._event(db, job_id, attempt, state, state, note, now)
        return True

    def transition(
        self,
        job_id: str,
        to: State,
        reason: str,
        *,
        attempt_state: State | None = None,
        attempt_fields: dict[str, Any] | None = None,
        job_fields: dict[str, Any] | None = None,
    ) -> JobRow:
        """Guarded move of a job to ``to``; raises ``TransitionError`` if not allowed now.

        ``attempt_state`` / ``attempt_fields`` update the job's current attempt
        in the same transaction (the attempt keeps its own outcome even when the
        job goes back to ``queued`` for a retry).
        """
        now = time.time()
        sources = sources_of(to)
        marks = ",".join("?" * len(sources))
        sets = {"state": to.value, "updated_at": now, **(job_fields or {})}
        if to in FINAL:
            sets["finished_at"] = now
        assignments = ", ".join(f"{k} = ?" for k in sets)
        values = [json.dumps(v) if isinstance(v, dict) else v for v in sets.values()]
        with self.transaction() as db:
            # With one possible source the state before is known: no read needed.
            source = sources[0] if len(sources) == 1 else None
            if source is None:
                before = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                source = None if before is None else before[0]
            row = db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND state IN ({marks}) RETURNING *",
                (*values, job_id, *sources),
            ).fetchone()
            if row is None:
                now_in = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if now_in is None:
                    raise UnknownJobError(f"no job {job_id!r}; list jobs with `nblaunch jobs`")
                raise TransitionError(f"job {job_id} is {now_in[0]}; it cannot become {to}")
            attempt = row["attempt"]
            fields = dict(attempt_fields or {})
            if attempt_state is not None:
                fields["state"] = attempt_state.value
                if attempt_state in FINAL or attempt_state in (State.PREEMPTED, State.LOST):
                    fields.setdefault("finished_at", now)
            if fields and attempt > 0:
                self._update_attempt(db, job_id, attempt, fields)
            self._event(db, job_id, attempt, State(source), to, reason, now)
        return job_row(row)

    def request_cancel(self, job_id: str) -> JobRow:
        """Cancel a queued job now; ask the agent to stop one that has started.
        Raises ``TransitionError`` for a job that has already ended."""
        while True:  # the job may move between the read and the write: read again
            job = self.job(job_id)
            if job.final:
                raise already_ended(job)
            if job.state is State.QUEUED:
                with contextlib.suppress(TransitionError):  # an agent claimed it meanwhile
                    return self.transition(job.id, State.CANCELLED, "cancelled before start")
                continue
            now = time.time()
            with self.transaction() as db:
                asked = db.execute(
                    """UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?),
                       updated_at = ? WHERE id = ? AND state IN ('starting', 'running')
                       RETURNING id""",
                    (now, now, job.id),
                ).fetchone()
            if asked is not None:
                return self.job(job.id)

    def request_preempt(self, job_id: str) -> JobRow:
        """Ask the agent to preempt a running job exactly as a spot reclaim would."""
        job = self.job(job_id)
        if job.state not in ACTIVE:
            raise TransitionError(
                f"job {job.id} is {job.state}; only a running job can be preempted"
            )
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET preempt_requested_at = ?, updated_at = ? WHERE id = ?",
                (now, now, job.id),
            )
        return self.job(job.id)

    def clear_preempt_request(self, job_id: str, requested_at: float) -> None:
        """Mark the request served, unless a newer one arrived meanwhile."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET preempt_requested_at = NULL "
                "WHERE id = ? AND preempt_requested_at = ?",
                (job_id, requested_at),
            )

    def ingest_metrics(
        self,
        job_id: str,
        attempt: int,
        rows: list[tuple[int | None, str, float, float]],
        offset: int,
    ) -> None:
        """Add an attempt's new metric rows and move its read offset, in one transaction."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                [(job_id, attempt, step, name, value, t) for step, name, value, t in rows],
            )
            db.execute(
                "UPDATE attempts SET metrics_offset = ? WHERE job_id = ? AND n = ?",
                (offset, job_id, attempt),
            )

    def attempts(self, job_id: str) -> list[AttemptRow]:
        rows = self._all("SELECT * FROM attempts WHERE job_id = ? ORDER BY n", (job_id,))
        return [attempt_row(r) for r in rows]

    def active_attempts(self, queues: Iterable[str]) -> list[tuple[JobRow, AttemptRow]]:
        names = list(queues)
        marks = ",".join("?" * len(names))
        states = ",".join(f"'{s.value}'" for s in ACTIVE)
        rows = self._all(
            f"""SELECT j.id FROM jobs j WHERE j.queue IN ({marks}) AND j.state IN ({states})
                ORDER BY j.seq""",
            names,
        )
        out = []
        for (job_id,) in rows:
            job = self.job(job_id)
            attempt = self._one(
                "SELECT * FROM attempts WHERE job_id = ? AND n = ?", (job_id, job.attempt)
            )
            if attempt is not None:
                out.append((job, attempt_row(attempt)))
        return out

    def events(self, job_id: str) -> list[EventRow]:
        rows = self._all(
            """SELECT job_id, attempt, time, from_state, to_state, reason FROM events
               WHERE job_id = ? ORDER BY id""",
            (job_id,),
        )
        return [EventRow(**dict(r)) for r in rows]

    # -- metrics -----------------------------------------------------------

    def add_metrics(self, rows: Iterable[tuple[str, int, int | None, str, float, float]]) -> int:
        """Insert ``(job_id, attempt, step, name, value, time)`` rows; returns how many."""
        batch = list(rows)
        if batch:
            with self.transaction() as db:
                db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", batch)
        return len(batch)

    def metrics(
        self, job_id: str, name: str | None = None
    ) -> list[tuple[int, int | None, str, float, float]]:
        """``(attempt, step, name, value, time)`` rows in logging order."""
        if name is None:
            rows = self._all(
                """SELECT attempt, step, name, value, time FROM metrics
                   WHERE job_id = ? ORDER BY rowid""",
                (job_id,),
            )
        else:
            rows = self._all(
                """SELECT attempt, step, name, value, time FROM metrics
                   WHERE job_id = ? AND name = ? ORDER BY rowid""",
                (job_id, name),
            )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def metrics_since(
        self, job_id: str, cursor: int = 0
    ) -> tuple[list[tuple[int, int | None, str, float, float]], int]:
        """Metric rows logged after ``cursor``, and the cursor to pass next time.

        Rows are ``(attempt, step, name, value, time)`` in logging order; start
        with ``cursor=0``. The scan seeks by rowid (``+job_id`` keeps SQLite off
        the ``metrics_job`` index), so a poll costs what is new, not the history.
        """
        rows = self._all(
            """SELECT rowid, attempt, step, name, value, time FROM metrics
               WHERE rowid > ? AND +job_id = ? ORDER BY rowid""",
            (cursor, job_id),
        )
        if not rows:
            # Nothing new for this job: later rows get higher rowids (the table
            # is append-only), so the next poll may start at today's end.
            top = self._one("SELECT MAX(rowid) FROM metrics")
            return [], max(cursor, int(top[0] or 0)) if top else cursor
        return [tuple(r)[1:] for r in rows], int(rows[-1][0])  # type: ignore[misc]

    def register_agent(self, queues: Iterable[str]) -> int:
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                """INSERT INTO agents (pid, host, queues, started_at, heartbeat_at)
                   VALUES (?, ?, ?, ?, ?) RETURNING id""",
                (os.getpid(), socket.gethostname(), ",".join(queues), now, now),
            ).fetchone()
        return int(row[0])

    def heartbeat(self, agent_id: int, stopped: bool = False) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE agents SET heartbeat_at = ?, stopped_at = ? WHERE id = ?",
                (now, now if stopped else None, agent_id),
            )

    def agent_heartbeat(self, pid: int) -> float | None:
        """Last heartbeat of the newest agent registered with ``pid``."""
        row = self._one(
            "SELECT heartbeat_at FROM agents WHERE pid = ? ORDER BY id DESC LIMIT 1", (pid,)
        )
        return None if row is None else float(row[0])

    def has_active_jobs(self) -> bool:
        """Whether any job, on any queue, is queued or running."""
        row = self._one(
            "SELECT 1 FROM jobs WHERE state IN ('queued', 'starting', 'running') LIMIT 1"
        )
        return row is not None

    def latest_agent(self) -> AgentRow | None:
        row = self._one("SELECT * FROM agents ORDER BY id DESC LIMIT 1")
        return agent_row(row) if row else None

    # -- helpers -----------------------------------------------------------

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        job_id: str,
        attempt: int,
        src: State | None,
        dst: State,
        reason: str,
        now: float,
    ) -> None:
        db.execute(
            """INSERT INTO events (job_id, attempt, time, from_state, to_state, reason)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (job_id, attempt, now, src.value if src else None, dst.value, reason),
        )

    @staticmethod
    def _update_attempt(
        db: sqlite3.Connection, job_id: str, n: int, fields: dict[str, Any]
    ) -> None:
        if not fields:
            return
        assignments = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if isinstance(v, dict) else v for v in fields.values()]
        db.execute(
            f"UPDATE attempts SET {assignments} WHERE job_id = ? AND n = ?", (*values, job_id, n)
        )
