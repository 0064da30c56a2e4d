"""P3: store throughput for submit + claim + run + finish of 1,000 no-op jobs, against
bare sqlite3 doing the same transactions in the same run: the same schema (the
store's own migrations), page size and pragmas, and per job the same statements
in the same four write transactions (insert job + event; claim: read what runs
and the next candidate, update the job, insert the attempt and event; start;
finish). The ratio is the cost of nblaunch's Python layer over SQLite.

Also shown for continuity: the minimal baseline earlier runs used (a 4-column
table, one UPDATE per transaction), which prices the store's schema as well.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.harness import report
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue import schema
from nblaunch.queue.connection import PAGE_SIZE
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.retry import RetryPolicy
from nblaunch.runners import Slots

JOBS = 1000


def nblaunch_store(folder: Path) -> float:
    store = Store(folder / "nblaunch.db")
    spec = JobSpec.build(name="noop", notebook="noop.ipynb", submit_dir=str(folder))
    start = time.perf_counter()
    for i in range(JOBS):
        store.insert_job(f"job{i:05d}", spec, folder / f"job{i:05d}")
    while (claimed := store.claim("local", Slots((), 1 << 20), ["local"], 1)) is not None:
        job, _ = claimed
        store.transition(job.id, State.RUNNING, "started", attempt_state=State.RUNNING)
        store.transition(job.id, State.SUCCEEDED, "done", attempt_state=State.SUCCEEDED)
    elapsed = time.perf_counter() - start
    assert len(store.jobs(state="succeeded")) == JOBS
    return JOBS / elapsed


def bare_sqlite(folder: Path) -> float:
    """The store's transactions as plain sqlite3 statements, no Python layer."""
    db = sqlite3.connect(folder / "bare.db", isolation_level=None)
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    for migration in schema.MIGRATIONS:
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
    policy = RetryPolicy().model_dump_json()
    event = """INSERT INTO events (job_id, attempt, time, from_state, to_state, reason)
               VALUES (?, ?, ?, ?, ?, ?)"""
    start = time.perf_counter()
    for i in range(JOBS):
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            """INSERT INTO jobs (id, name, queue, state, priority, gpus, job_dir, sweep_id,
               retry_policy, timeout_s, submitted_at, updated_at)
               VALUES (?, 'noop', 'local', 'queued', 0, 0, ?, NULL, ?, NULL, ?, ?) RETURNING *""",
            (f"job{i:05d}", f"{folder}/job{i:05d}", policy, now, now),
        ).fetchone()
        db.execute(event, (f"job{i:05d}", 0, now, None, "queued", "submitted"))
        db.execute("COMMIT")
    while True:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            """SELECT j.id, j.queue, j.priority, j.gpus, j.timeout_s, a.gpu_ids,
                  COALESCE(a.running_at, a.started_at), a.stop_reason
               FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.n = j.attempt
               WHERE j.queue IN (?) AND j.state IN ('starting', 'running')""",
            ("local",),
        ).fetchall()
        found = db.execute(
            """SELECT id, priority, gpus, timeout_s FROM jobs WHERE queue = ?
               AND state = 'queued' AND not_before <= ? ORDER BY priority DESC, seq""",
            ("local", now),
        ).fetchone()
        if found is None:
            db.execute("COMMIT")
            break
        job_id = found[0]
        row = db.execute(
            """UPDATE jobs SET state = 'starting', attempt = attempt + 1,
               started_at = COALESCE(started_at, ?), updated_at = ?
               WHERE id = ? AND state = 'queued' RETURNING *""",
            (now, now, job_id),
        ).fetchone()
        db.execute(
            """INSERT INTO attempts (job_id, n, state, run_dir, gpu_ids, agent_pid, started_at)
               VALUES (?, ?, 'starting', ?, '', 1, ?) RETURNING *""",
            (job_id, 1, f"{row[7]}/attempts/1", now),
        ).fetchone()
        db.execute(event, (job_id, 1, now, "queued", "starting", "claimed"))
        db.execute("COMMIT")
        for src, dst in (("starting", "running"), ("running", "succeeded")):
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state IN (?) "
                "RETURNING *",
                (dst, now, job_id, src),
            ).fetchone()
            db.execute(
                "UPDATE attempts SET state = ?, finished_at = ? WHERE job_id = ? AND n = ?",
                (dst, now if dst == "succeeded" else None, job_id, 1),
            )
            db.execute(event, (job_id, 1, now, src, dst, dst))
            db.execute("COMMIT")
    return JOBS / (time.perf_counter() - start)


def minimal_sqlite(folder: Path) -> float:
    db = sqlite3.connect(folder / "minimal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT, priority INT, seq INTEGER)")
    start = time.perf_counter()
    for i in range(JOBS):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO jobs VALUES (?, 'queued', 0, ?)", (f"job{i:05d}", i))
        db.execute("COMMIT")
    for i in range(JOBS):
        for src, dst in (("queued", "starting"), ("starting", "running"), ("running", "succeeded")):
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = ?", (dst, f"job{i:05d}", src)
            )
            db.execute("COMMIT")
    return JOBS / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours = nblaunch_store(Path(tmp))
        bare = bare_sqlite(Path(tmp))
        minimal = minimal_sqlite(Path(tmp))
    print(f"P3   minimal sqlite3 (4-column table, 1 UPDATE per transaction): {minimal:.4g} "
          f"jobs/s; ours / minimal {ours / minimal:.3f}")  # fmt: skip
    report("P3", "store submit+claim+run+finish", ours, "jobs/s", bare,
           "bare sqlite3, same schema and transactions", ">= 0.3x and >= 1000 jobs/s",
           ours >= 0.3 * bare and ours >= 1000, higher_is_better=True)  # fmt: skip


if __name__ == "__main__":
    main()
