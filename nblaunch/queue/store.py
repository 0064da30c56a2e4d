"""The store: one SQLite file in WAL mode, the single source of truth.

Every state change is a guarded ``UPDATE … WHERE id=? AND state IN (…)`` plus
one row in ``events``, in one transaction. Claims take the write lock first
(``BEGIN IMMEDIATE``) so any number of kernels and agents can share the file.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.errors import NBLaunchError, TransitionError, UnknownJobError
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue import schema
from nblaunch.queue.states import ACTIVE, FINAL, State, sources_of


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
    max_retries: int
    retry_backoff_s: float
    max_preemptions: int
    attempt: int
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

    @property
    def bundle(self) -> Path:
        return self.job_dir / "bundle"

    def run_dir(self, attempt: int | None = None) -> Path | None:
        n = self.attempt if attempt is None else attempt
        return self.job_dir / "attempts" / str(n) if n > 0 else None

    @property
    def final(self) -> bool:
        return self.state in FINAL


@dataclass(frozen=True)
class AttemptRow:
    job_id: str
    n: int
    state: State
    run_dir: Path
    gpu_ids: tuple[int, ...]
    handle: dict[str, Any] | None
    agent_pid: int | None
    started_at: float
    running_at: float | None
    finished_at: float | None
    exit_code: int | None
    outcome: str | None
    error: dict[str, Any] | None
    metrics_offset: int


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


def _job(row: sqlite3.Row) -> JobRow:
    d = dict(row)
    d["state"] = State(d["state"])
    d["job_dir"] = Path(d["job_dir"])
    d["error"] = json.loads(d["error"]) if d["error"] else None
    return JobRow(**d)


def _attempt(row: sqlite3.Row) -> AttemptRow:
    d = dict(row)
    d["state"] = State(d["state"])
    d["run_dir"] = Path(d["run_dir"])
    d["gpu_ids"] = tuple(int(g) for g in d["gpu_ids"].split(",") if g)
    d["handle"] = json.loads(d["handle"]) if d["handle"] else None
    d["error"] = json.loads(d["error"]) if d["error"] else None
    return AttemptRow(**d)


def _agent(row: sqlite3.Row) -> AgentRow:
    d = dict(row)
    d["queues"] = tuple(q for q in d["queues"].split(",") if q)
    return AgentRow(**d)


class Store:
    """Open (creating and migrating as needed) the store at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # One connection may serve a kernel's main thread and its widget poller.
        self._lock = threading.RLock()
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a process crash; only an OS crash can lose the last commits.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _one(self, sql: str, args: Any = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()  # type: ignore[no-any-return]

    def _all(self, sql: str, args: Any = ()) -> list[sqlite3.Row]:
        """Reads hold the connection's lock too: a kernel thread and the widget
        poller share one connection, and neither may read inside the other's
        open transaction."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > schema.VERSION:
            raise NBLaunchError(
                f"store {self.path} has schema version {version}, newer than this nblaunch "
                f"({schema.VERSION}); upgrade nblaunch"
            )
        if version == schema.VERSION:
            return
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, schema.VERSION):
                for statement in schema.MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {schema.VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its first statement."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- jobs -------------------------------------------------------------

    def insert_job(self, job_id: str, spec: JobSpec, job_dir: Path) -> JobRow:
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                """INSERT INTO jobs (id, name, queue, state, priority, gpus, job_dir, sweep_id,
                   max_retries, retry_backoff_s, max_preemptions, submitted_at, updated_at)
                   VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
                (
                    job_id,
                    spec.name,
                    spec.queue,
                    spec.priority,
                    spec.gpus * spec.nodes,
                    str(job_dir),
                    spec.sweep_id,
                    spec.max_retries,
                    spec.retry_backoff_s,
                    spec.max_preemptions,
                    now,
                    now,
                ),
            ).fetchone()
            self._event(db, job_id, 0, None, State.QUEUED, "submitted", now)
        return _job(row)

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
        return _job(row)

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
        return [_job(r) for r in rows]

    def queue_position(self, job: JobRow) -> int | None:
        """1-based place among the queue's waiting jobs, in the order they will be picked."""
        if job.state is not State.QUEUED:
            return None
        ahead = self._one(
            """SELECT COUNT(*) FROM jobs WHERE queue = ? AND state = 'queued'
               AND (priority > ? OR (priority = ? AND seq < ?))""",
            (job.queue, job.priority, job.priority, job.seq),
        )[0]
        return int(ahead) + 1

    def state_counts(self, queue: str) -> dict[str, int]:
        rows = self._all(
            "SELECT state, COUNT(*) FROM jobs WHERE queue = ? GROUP BY state", (queue,)
        )
        return {state: int(n) for state, n in rows}

    def gpus_in_use(self, queue: str) -> int:
        row = self._one(
            """SELECT COALESCE(SUM(gpus), 0) FROM jobs
               WHERE queue = ? AND state IN ('starting', 'running')""",
            (queue,),
        )
        return int(row[0]) if row else 0

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
        return row[0]

    # -- the agent's moves -------------------------------------------------

    def claim(
        self,
        queue: str,
        gpu_slots: int,
        cpu_slots: int,
        agent_pid: int,
        *,
        gpu_ids: list[int] | None = None,
        gpu_pool: list[str] | None = None,
    ) -> tuple[JobRow, AttemptRow] | None:
        """Move the best queued job that fits free resources to ``starting``.

        Higher priority first, then older. A GPU job that does not fit blocks
        the GPU jobs behind it (no starvation of large jobs); jobs that need no
        GPU still start while CPU slots are free. ``gpu_ids`` are the physical
        devices behind the slots (default ``0..gpu_slots-1``); ``gpu_pool`` the
        queues sharing those devices, so two queues never hand out one GPU.
        """
        now = time.time()
        devices = list(gpu_ids) if gpu_ids is not None else list(range(gpu_slots))
        pool = list(gpu_pool or [queue])
        marks = ",".join("?" * len(pool))
        with self.transaction() as db:
            active = db.execute(
                f"""SELECT j.queue, j.gpus, a.gpu_ids FROM jobs j JOIN attempts a
                   ON a.job_id = j.id AND a.n = j.attempt
                   WHERE j.queue IN ({marks}) AND j.state IN ('starting', 'running')""",
                pool,
            ).fetchall()
            used = {int(g) for _, _, ids in active for g in ids.split(",") if g}
            cpu_busy = sum(1 for q, gpus, _ in active if gpus == 0 and q == queue)
            free_ids = [i for i in devices if i not in used]
            # Stepped, not fetched: the first fitting job is usually the first row.
            candidates = db.execute(
                """SELECT id, gpus FROM jobs WHERE queue = ? AND state = 'queued'
                   AND not_before <= ? ORDER BY priority DESC, seq""",
                (queue, now),
            )
            chosen: tuple[str, list[int]] | None = None
            gpu_blocked = False
            for job_id, gpus in candidates:
                if cpu_busy >= cpu_slots and (gpu_blocked or not free_ids):
                    break  # nothing further down can fit either
                if gpus == 0:
                    if cpu_busy < cpu_slots:
                        chosen = (job_id, [])
                        break
                elif not gpu_blocked and gpus <= len(free_ids):
                    chosen = (job_id, free_ids[:gpus])
                    break
                else:
                    gpu_blocked = True
            candidates.close()
            if chosen is None:
                return None
            job_id, gpu_ids = chosen
            row = db.execute(
                """UPDATE jobs SET state = 'starting', attempt = attempt + 1,
                   started_at = COALESCE(started_at, ?), updated_at = ?
                   WHERE id = ? AND state = 'queued' RETURNING *""",
                (now, now, job_id),
            ).fetchone()
            job = _job(row)
            run_dir = job.run_dir()
            assert run_dir is not None
            attempt = db.execute(
                """INSERT INTO attempts (job_id, n, state, run_dir, gpu_ids, agent_pid, started_at)
                   VALUES (?, ?, 'starting', ?, ?, ?, ?) RETURNING *""",
                (job_id, job.attempt, str(run_dir), ",".join(map(str, gpu_ids)), agent_pid, now),
            ).fetchone()
            self._event(db, job_id, job.attempt, State.QUEUED, State.STARTING, "claimed", now)
        return job, _attempt(attempt)

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
            before = db.execute(
                "SELECT state, attempt FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if before is None:
                raise UnknownJobError(f"no job {job_id!r}; list jobs with `nblaunch jobs`")
            row = db.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ? AND state IN ({marks}) RETURNING *",
                (*values, job_id, *sources),
            ).fetchone()
            if row is None:
                raise TransitionError(f"job {job_id} is {before['state']}; it cannot become {to}")
            fields = dict(attempt_fields or {})
            if attempt_state is not None:
                fields["state"] = attempt_state.value
                if attempt_state in FINAL or attempt_state in (State.PREEMPTED, State.LOST):
                    fields.setdefault("finished_at", now)
            if fields and before["attempt"] > 0:
                self._update_attempt(db, job_id, before["attempt"], fields)
            self._event(db, job_id, before["attempt"], State(before["state"]), to, reason, now)
        return _job(row)

    def request_cancel(self, job_id: str) -> JobRow:
        """Cancel a queued job now; ask the agent to stop one that has started."""
        now = time.time()
        job = self.job(job_id)
        if job.final:
            return job
        if job.state is State.QUEUED:
            try:
                return self.transition(job.id, State.CANCELLED, "cancelled before start")
            except TransitionError:
                job = self.job(job.id)  # an agent claimed it meanwhile
                if job.final:
                    return job
        with self.transaction() as db:
            db.execute(
                """UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?),
                   updated_at = ? WHERE id = ?""",
                (now, now, job.id),
            )
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
        return [_attempt(r) for r in rows]

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
                out.append((job, _attempt(attempt)))
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

    def latest_step(self, job_id: str) -> int | None:
        row = self._one("SELECT MAX(step) FROM metrics WHERE job_id = ?", (job_id,))
        return None if row[0] is None else int(row[0])

    def first_step(self, job_id: str, attempt: int) -> tuple[int, float] | None:
        """``(step, time)`` of the first stepped metric of an attempt, for rates."""
        row = self._one(
            """SELECT step, time FROM metrics WHERE job_id = ? AND attempt = ? AND step IS NOT NULL
               ORDER BY rowid LIMIT 1""",
            (job_id, attempt),
        )
        return None if row is None else (int(row[0]), float(row[1]))

    # -- agents ------------------------------------------------------------

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

    def latest_agent(self) -> AgentRow | None:
        row = self._one("SELECT * FROM agents ORDER BY id DESC LIMIT 1")
        return _agent(row) if row else None

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
