"""What the faces read: one transaction per snapshot; a queue view loads only what it shows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nblaunch import api
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.widgets import render

from .conftest import add_job, finish, log_metrics, start


def test_queue_snapshot_counts_in_the_store_and_loads_only_what_it_shows(
    nbl_home: Path, store: Store
) -> None:
    jobs = [add_job(nbl_home, f"j{i}") for i in range(12)]
    ends = (State.SUCCEEDED, State.FAILED, State.LOST)
    for i, job in enumerate(jobs[:9]):
        start(store, job)
        finish(store, job, ends[i % 3])
    start(store, jobs[9])
    queue = api.Queue("local", root=nbl_home)
    ids = [j.id for j in jobs]

    snap = queue.snapshot("all", limit=4)
    assert [r.id for r in snap.jobs] == ids[:7:-1]  # newest first
    assert snap.counts == {"running": 1, "queued": 2, "succeeded": 3, "failed": 3, "lost": 3}
    assert (len(snap.jobs), snap.total) == (4, 12)
    assert "(newest 4 of 12 shown)" in render.queue_header_html(snap)

    snap = queue.snapshot("failed", limit=4)
    assert [r.id for r in snap.jobs] == [ids[8], ids[7], ids[5], ids[4]]  # failed and lost
    assert snap.total == 6
    snap = queue.snapshot("active", limit=2)
    assert [r.id for r in snap.jobs] == [ids[11], ids[10]] and snap.total == 3
    snap = queue.snapshot("running", limit=4)
    assert [r.state for r in snap.jobs] == [State.RUNNING] and snap.total == 1
    with pytest.raises(ValueError, match="unknown filter"):
        queue.snapshot("stuck")


def test_a_job_snapshot_is_one_read_transaction(
    nbl_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = add_job(nbl_home, "one-moment")
    start(store, job)
    log_metrics(store, job, "max_steps", [10])
    log_metrics(store, job, "loss", [2.0, 1.5, 1.2])
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        snap = job.snapshot()
    finally:
        store._db.set_trace_callback(None)
    begins = [s for s in statements if s.strip().upper().startswith("BEGIN")]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(begins) == 1 and len(selects) >= 4, statements
    first_select = statements.index(selects[0])
    last_select = statements.index(selects[-1])
    assert statements.index(begins[0]) < first_select
    assert "COMMIT" in statements[last_select + 1 :]
    assert snap.progress.step == 2 and snap.progress.max_steps == 10
    assert snap.latest == {"max_steps": 10.0, "loss": 1.2}
    assert snap.to_dict()["state"] == "running"
    assert isinstance(store._db, sqlite3.Connection)


def test_sweep_jobs_span_queues_oldest_first(nbl_home: Path) -> None:
    (nbl_home / "queues.toml").write_text("[queues.local]\n[queues.big]\ngpus = 8\n")
    first = add_job(nbl_home, "a", sweep_id="s", queue="big")
    add_job(nbl_home, "other", sweep_id="t")
    second = add_job(nbl_home, "b", sweep_id="s")
    third = add_job(nbl_home, "c", sweep_id="s", queue="gone")  # its queue was removed since
    found = api.sweep_jobs("s", nbl_home)
    assert [j.id for j in found] == [first.id, second.id, third.id]


def test_job_on_a_vanished_queue_still_snapshots(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home, "orphan", queue="gone")
    start(store, job)
    snap = job.snapshot()
    assert snap.cost is None and snap.to_dict()["cost_usd"] is None
    assert render.job_text(snap).startswith(f"job {job.id} (orphan) running")
    rows, cursor = job.metrics_since(0)
    assert rows == [] and cursor >= 0
