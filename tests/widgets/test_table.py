"""QueueStatus: the table lists the queue's jobs, filters, counts GPUs, cancels per row."""

from __future__ import annotations

from pathlib import Path

from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.widgets.table import QueueStatus

from .conftest import add_job, finish, start


def row_ids(status: QueueStatus) -> list[str]:
    return [
        box.children[0].value.split('data-job="')[1].split('"')[0] for box in status.table.children
    ]


def test_table_lists_jobs_with_gpu_usage_and_filters(nbl_home: Path, store: Store) -> None:
    (nbl_home / "queues.toml").write_text("[queues.local]\ngpus = 4\n")
    done = add_job(nbl_home, "done", gpus=1)
    start(store, done)
    finish(store, done)
    running = add_job(nbl_home, "running", gpus=3)
    start(store, running, gpu_slots=4)
    waiting = add_job(nbl_home, "waiting", gpus=2)
    status = QueueStatus("local", live=False)
    assert row_ids(status) == [waiting.id, running.id, done.id]  # newest first
    assert "GPUs <b>3/4</b> in use" in status.header.value
    assert "1 running · 1 queued · 1 succeeded" in status.header.value
    assert "#1" in status.table.children[0].children[0].value
    assert [box.children[1].disabled for box in status.table.children] == [False, False, True]
    status.filter.value = "active"
    assert row_ids(status) == [waiting.id, running.id]
    status.filter.value = "cancelled"
    assert row_ids(status) == [] and "no cancelled jobs" in status.empty.value
    assert "queue local (local), GPUs 3/4 in use" in status.text()


def test_rows_are_reused_and_a_new_job_appears_on_refresh(nbl_home: Path, store: Store) -> None:
    first = add_job(nbl_home, "first")
    status = QueueStatus("local", live=False)
    box = status.table.children[0]
    second = add_job(nbl_home, "second")
    status.refresh(force=True)
    assert row_ids(status) == [second.id, first.id] and status.table.children[1] is box


def test_row_cancel_asks_once_more(nbl_home: Path, store: Store) -> None:
    job = add_job(nbl_home, "victim")
    status = QueueStatus("local", live=False)
    button = status.table.children[0].children[1]
    button.click()
    assert button.description == "confirm?" and job.state is State.QUEUED
    button.click()
    assert job.state is State.CANCELLED
    assert (
        'data-state="cancelled"' in status.table.children[0].children[0].value and button.disabled
    )
