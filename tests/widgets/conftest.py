"""Jobs in a real store for widget tests, moved through their states as the agent would."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nblaunch import api
from nblaunch.home import jobs_dir, objects_dir
from nblaunch.jobs.bundle import write_bundle
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue.states import State
from nblaunch.queue.store import Store
from nblaunch.runners import Slots
from nblaunch.widgets.poller import poller


@pytest.fixture
def store(nbl_home: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    # These tests move jobs through their states by hand: no agent may take them.
    monkeypatch.setenv("NBLAUNCH_AGENT_AUTOSTART", "0")
    return api.store(nbl_home)


@pytest.fixture(autouse=True)
def _quiet_poller() -> Iterator[None]:
    """Each test starts and ends with nothing registered on the kernel's poller."""
    yield
    for view in poller().views:
        poller().unregister(view)
    poller().wake()
    assert poller().join(5)


def add_job(
    root: Path,
    name: str = "train",
    *,
    queue: str = "local",
    params: dict[str, Any] | None = None,
    sweep_id: str | None = None,
    gpus: int = 0,
    options: dict[str, Any] | None = None,
) -> api.Job:
    """Queue a job without an agent (its bundle is real; nothing will run it)."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    spec = JobSpec.build(
        name=name,
        queue=queue,
        notebook=str(root / f"{name}.ipynb"),
        submit_dir=str(root),
        params=params or {},
        sweep_id=sweep_id,
        gpus=gpus,
        options=options or {},
    )
    job_id = secrets.token_hex(4)
    job_dir = jobs_dir(root) / job_id
    write_bundle(job_dir, spec, nb, [], objects_dir(root))
    api.store(root).insert_job(job_id, spec, job_dir)
    return api.Job(job_id, root=root)


def start(store: Store, job: api.Job, gpu_slots: int = 8, running_for: float = 0.0) -> None:
    """Claim the job and mark it running (``running_for`` seconds ago), as the agent does."""
    slots = Slots(tuple(str(i) for i in range(gpu_slots)), 64)
    claimed = store.claim(job.row.queue, slots, [job.row.queue], os.getpid())
    assert claimed is not None and claimed[0].id == job.id
    store.transition(
        job.id,
        State.RUNNING,
        "test",
        attempt_state=State.RUNNING,
        attempt_fields={"running_at": time.time() - running_for},
    )


def finish(
    store: Store,
    job: api.Job,
    state: State = State.SUCCEEDED,
    error: dict[str, Any] | None = None,
) -> None:
    store.transition(
        job.id,
        state,
        "test",
        attempt_state=state,
        job_fields={"error": error} if error else None,
    )


def log_metrics(
    store: Store,
    job: api.Job,
    name: str,
    values: list[float],
    start_step: int = 0,
    attempt: int = 1,
) -> None:
    now = time.time()
    store.add_metrics(
        (job.id, attempt, start_step + i, name, float(v), now) for i, v in enumerate(values)
    )
