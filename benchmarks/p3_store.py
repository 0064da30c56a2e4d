"""P3: store throughput for submit + claim + finish of 1,000 no-op jobs (target >= 1,000
jobs/s), against the same three transactions as bare sqlite3 statements."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.harness import report
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
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
    db = sqlite3.connect(folder / "bare.db", isolation_level=None)
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
    report("P3", "store submit+claim+finish", ours, "jobs/s", bare,
           "bare sqlite3, same transactions", ">= 1000 jobs/s", ours >= 1000,
           higher_is_better=True)  # fmt: skip


if __name__ == "__main__":
    main()
