"""What the widgets read: a queue tick loads only the jobs it shows; sweeps span queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nblaunch import api
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.widgets import render, snapshot

from .conftest import add_job, finish, start


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids of the jobs whose ``to_dict`` ran (the per-job cost of a tick)."""
    calls: list[str] = []
    to_dict = api.Job.to_dict

    def counting(job: api.Job) -> dict[str, Any]:
        calls.append(job.id)
        return to_dict(job)

    monkeypatch.setattr(api.Job, "to_dict", counting)
    return calls


def test_queue_tick_counts_in_the_store_and_loads_only_what_it_shows(
    nbl_home: Path, store: Store, loaded: list[str]
) -> None:
    jobs = [add_job(nbl_home, f"j{i}") for i in range(12)]
    ends = (State.SUCCEEDED, State.FAILED, State.LOST)
    for i, job in enumerate(jobs[:9]):
        start(store, job)
        finish(store, job, ends[i % 3])
    start(store, jobs[9])
    queue = client.Queue("local", root=nbl_home)
    ids = [j.id for j in jobs]

    summary, rows = snapshot.queue_snapshot(queue, "all", limit=4)
    assert [r["id"] for r in rows] == ids[:7:-1]  # newest first
    assert summary["counts"] == {"running": 1, "queued": 2, "succeeded": 3, "failed": 3, "lost": 3}
    assert (summary["shown"], summary["total"]) == (4, 12) and sorted(loaded) == sorted(ids[8:])
    assert "(newest 4 of 12 shown)" in render.queue_header_html(summary)

    loaded.clear()
    cache: dict[str, dict[str, Any]] = {}
    summary, rows = snapshot.queue_snapshot(queue, "failed", limit=4, final_rows=cache)
    assert [r["id"] for r in rows] == [ids[8], ids[7], ids[5], ids[4]]  # failed and lost, merged
    assert summary["total"] == 6 and len(loaded) == 4 and set(cache) == {r["id"] for r in rows}
    loaded.clear()
    again = snapshot.queue_snapshot(queue, "failed", limit=4, final_rows=cache)[1]
    assert again == rows and loaded == []  # ended jobs change no more

    summary, rows = snapshot.queue_snapshot(queue, "active", limit=2, final_rows=cache)
    assert [r["id"] for r in rows] == [ids[11], ids[10]] and summary["total"] == 3
    assert cache == {}  # only what is shown stays cached
    summary, rows = snapshot.queue_snapshot(queue, "running", limit=4)
    assert [r["state"] for r in rows] == ["running"] and summary["total"] == 1


def test_sweep_jobs_span_queues_oldest_first(nbl_home: Path) -> None:
    (nbl_home / "queues.toml").write_text("[queues.local]\n[queues.big]\ngpus = 8\n")
    first = add_job(nbl_home, "a", sweep_id="s", queue="big")
    add_job(nbl_home, "other", sweep_id="t")
    second = add_job(nbl_home, "b", sweep_id="s")
    third = add_job(nbl_home, "c", sweep_id="s", queue="gone")  # its queue was removed since
    found = snapshot.sweep_jobs("s", nbl_home)
    assert [j.id for j in found] == [first.id, second.id, third.id]
    assert [j.id for j in snapshot.sweep_jobs("s", nbl_home, known={first.id})] == [
        second.id,
        third.id,
    ]


def test_job_on_a_vanished_queue_still_snapshots(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home, "orphan", queue="gone")
    start(store, job)
    snap = snapshot.job_snapshot(job)
    assert snap["cost"] == {"cost_usd": None, "gpu_hours": None}
    assert render.job_text(snap).startswith(f"job {job.id} (orphan) running")
    rows, cursor = snapshot.metrics_since(job, 0)
    assert rows == [] and cursor >= 0
