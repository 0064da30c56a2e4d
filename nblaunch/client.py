"""The Python API every face uses: ``submit()``, ``Job`` and ``Queue``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from nblaunch.errors import CapacityError, ConfigError, JobFailedError, UnknownQueueError
from nblaunch.home import home, jobs_dir, store_path
from nblaunch.jobs.bundle import check_notebook, read_notebook, write_bundle
from nblaunch.jobs.spec import JobSpec, parse_priority, priority_name
from nblaunch.queue.config import LocalQueueConfig, QueueConfig, get_queue, load_queues
from nblaunch.queue.states import State
from nblaunch.queue.store import JobRow, Store

__all__ = ["Job", "Queue", "submit", "submit_spec"]


@lru_cache(maxsize=8)
def _store(root: Path) -> Store:
    return Store(store_path(root))


def store(root: Path | None = None) -> Store:
    """The store of ``root`` (default ``$NBLAUNCH_HOME``), one connection per process."""
    return _store(root or home())


def submit(
    notebook: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    queue: str = "local",
    gpus: int = 0,
    priority: str | int = "normal",
    name: str | None = None,
    **options: Any,
) -> Job:
    """Queue ``notebook`` as a job and return at once with its handle.

    Parameters
    ----------
    notebook
        Path of an ``.ipynb`` file; a cell tagged ``parameters`` holds defaults.
    params
        Values papermill injects after the ``parameters`` cell.
    queue
        A queue from ``$NBLAUNCH_HOME/queues.toml``; ``local`` always exists.
    gpus
        GPUs per node the job needs.
    priority
        ``low``, ``normal``, ``high``, ``critical`` or an integer; higher runs first.
    name
        Shown in listings; defaults to the notebook's file name.
    **options
        Further ``JobSpec`` fields: ``nodes``, ``strategy``, ``max_retries``,
        ``retry_backoff_s``, ``sweep_id``.
    """
    path = Path(notebook).expanduser().resolve()
    nb = read_notebook(path)
    spec = JobSpec.build(
        name=name or path.stem,
        queue=queue,
        priority=parse_priority(priority),
        gpus=gpus,
        params=dict(params or {}),
        notebook=str(path),
        submit_dir=str(path.parent),
        **options,
    )
    return submit_spec(spec, nb)


def submit_spec(spec: JobSpec, notebook: dict[str, Any], root: Path | None = None) -> Job:
    """Queue a built spec with its notebook; nothing is written unless all checks pass."""
    root = root or home()
    check_notebook(notebook, spec.notebook)
    config = get_queue(root, spec.queue)
    _check_capacity(config, spec)
    if spec.max_retries == 0 and config.max_retries:
        spec = spec.model_copy(update={"max_retries": config.max_retries})
    db = store(root)
    job_id = _new_id()
    job_dir = jobs_dir(root) / job_id
    write_bundle(job_dir, spec, notebook)
    try:
        db.insert_job(job_id, spec, job_dir)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    from nblaunch.agent.spawn import ensure_agent

    ensure_agent(root)
    return Job(job_id, root=root)


def _check_capacity(config: QueueConfig, spec: JobSpec) -> None:
    if not isinstance(config, LocalQueueConfig):
        return
    slots = config.gpu_slots()
    if spec.nodes > 1:
        raise CapacityError(
            f"queue {config.name!r} runs on one machine; the job asks for {spec.nodes} nodes "
            "(use --nodes 1 or a Slurm / Kubernetes queue)"
        )
    if spec.gpus > slots:
        raise CapacityError(
            f"queue {config.name!r} has {slots} GPU(s); the job asks for {spec.gpus} "
            f"(lower --gpus to {slots}, or set gpus in [queues.{config.name}] of queues.toml)"
        )


def _new_id() -> str:
    return secrets.token_hex(4)


class Job:
    """A handle on one job; ``Job(id)`` re-attaches from any process."""

    def __init__(self, job_id: str, *, root: Path | None = None) -> None:
        self._root = root or home()
        self._store = store(self._root)
        self.id = self._store.job(job_id).id

    def __repr__(self) -> str:
        row = self.row
        return f"<nblaunch.Job {row.id} {row.name!r} {row.state} on {row.queue}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.status_line())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """A live job card in a widget frontend; text and HTML elsewhere."""
        from nblaunch.widgets import job_mimebundle

        return job_mimebundle(self)

    @property
    def row(self) -> JobRow:
        return self._store.job(self.id)

    @property
    def state(self) -> State:
        return self.row.state

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def run_dir(self) -> Path | None:
        return self.row.run_dir()

    @property
    def output_notebook(self) -> Path | None:
        run_dir = self.run_dir
        return run_dir / "output.ipynb" if run_dir else None

    @property
    def log_dir(self) -> Path | None:
        run_dir = self.run_dir
        return run_dir / "logs" if run_dir else None

    @property
    def spec(self) -> JobSpec:
        return JobSpec.read(self.row.bundle)

    def status_line(self) -> str:
        row = self.row
        where = ""
        if row.state is State.QUEUED:
            where = f", #{self._store.queue_position(row)} in queue {row.queue}"
        elif row.attempt:
            where = f", attempt {row.attempt}"
        err = ""
        if row.error and row.state in (State.FAILED, State.LOST, State.PREEMPTED):
            err = f": {row.error.get('ename')}: {row.error.get('evalue')}"
        return f"job {row.id} ({row.name}) {row.state}{where}{err}"

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> State:
        """Block until the job reaches a final state; return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self.row
            if row.final:
                return row.state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {row.state} after {timeout}s")
            time.sleep(interval)

    def cancel(self) -> State:
        """Cancel now if queued; otherwise ask the agent to stop it (see ``wait``)."""
        row = self._store.request_cancel(self.id)
        if not row.final:
            from nblaunch.agent.lockfile import wake

            wake(self._root)
        return row.state

    def preempt(self) -> None:
        """Send the job what a spot reclaim sends (a drill): it checkpoints, stops and
        is requeued to resume."""
        from nblaunch.agent.lockfile import wake

        self._store.request_preempt(self.id)
        wake(self._root)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait, then return the run's ``result.json``.

        Raises ``JobFailedError`` (papermill's fields, output notebook, logs)
        unless the job succeeded."""
        state = self.wait(timeout)
        row = self.row
        if state is not State.SUCCEEDED:
            raise JobFailedError(row.id, state.value, row.error, self.output_notebook, self.log_dir)
        run_dir = row.run_dir()
        assert run_dir is not None
        return json.loads((run_dir / "result.json").read_text())

    def logs(self, attempt: int | None = None) -> str:
        """Everything the attempt printed (stdout then stderr)."""
        run_dir = self.row.run_dir(attempt)
        if run_dir is None:
            return ""
        parts = []
        for name in ("stdout.log", "stderr.log"):
            path = run_dir / "logs" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def metrics(self, name: str | None = None) -> list[dict[str, Any]]:
        """Logged metric rows ``{attempt, step, name, value, time}`` in logging order."""
        keys = ("attempt", "step", "name", "value", "time")
        return [dict(zip(keys, r, strict=True)) for r in self._store.metrics(self.id, name)]

    def metrics_since(self, cursor: int = 0) -> tuple[list[tuple[Any, ...]], int]:
        """Metric rows logged after ``cursor`` and the cursor for the next call."""
        return self._store.metrics_since(self.id, cursor)

    def cost(self) -> dict[str, Any]:
        """GPU-hours and dollars so far over all attempts (a running one counts live)."""
        from nblaunch.jobs.cost import actual_cost

        try:
            config = get_queue(self._root, self.row.queue)
        except (UnknownQueueError, ConfigError):
            # The queue was renamed or its file broken since: the history stays readable.
            return {"cost_usd": None, "gpu_hours": None, "price_per_gpu_hour": None}
        return actual_cost(self._store, self.row, config)

    def progress(self) -> dict[str, Any]:
        """Newest step, ``max_steps`` when the job reported it, fraction and ETA in seconds.

        The runtime logs ``max_steps`` as a metric when the training loop knows
        it (the HF callback does; ``nblaunch.log({"max_steps": n})`` otherwise).
        """
        row = self.row
        step = self._store.latest_step(self.id)
        max_steps_rows = self._store.metrics(self.id, "max_steps")
        max_steps = int(max_steps_rows[-1][3]) if max_steps_rows else None
        fraction = min(1.0, step / max_steps) if step is not None and max_steps else None
        if row.state is State.SUCCEEDED:
            fraction = 1.0
        eta = None
        run_dir = row.run_dir()
        attempt = self._store.attempts(self.id)[-1] if row.attempt else None
        if fraction and 0 < fraction < 1 and attempt and attempt.running_at and not row.final:
            first = self._store.first_step(self.id, row.attempt)
            if first is not None and step is not None and step > first[0]:
                rate = (step - first[0]) / max(1e-9, time.time() - first[1])
                eta = (max_steps - step) / rate if max_steps else None
        return {
            "step": step,
            "max_steps": max_steps,
            "fraction": fraction,
            "eta_s": eta,
            "run_dir": str(run_dir) if run_dir else None,
        }

    def events(self) -> list[dict[str, Any]]:
        return [e.__dict__ for e in self._store.events(self.id)]

    def to_dict(self) -> dict[str, Any]:
        row = self.row
        output = self.output_notebook
        error = row.error
        return {
            "id": row.id,
            "name": row.name,
            "queue": row.queue,
            "state": row.state.value,
            "priority": priority_name(row.priority),
            "gpus": row.gpus,
            "attempt": row.attempt,
            "run_dir": str(row.run_dir()) if row.attempt else None,
            "output_notebook": str(output) if output else None,
            "error": (
                {k: error.get(k) for k in ("ename", "evalue", "cell_index")} if error else None
            ),
            "queue_position": self._store.queue_position(row),
            "retries": row.retries,
            "max_retries": row.max_retries,
            "preemptions": row.preemptions,
            "sweep_id": row.sweep_id,
            **{k: v for k, v in self.cost().items() if k in ("cost_usd", "gpu_hours")},
            "submitted_at": row.submitted_at,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
        }


class Queue:
    """A named queue: its configuration and its jobs."""

    def __init__(self, name: str = "local", *, root: Path | None = None) -> None:
        self._root = root or home()
        self.config = get_queue(self._root, name)
        self.name = name

    def __repr__(self) -> str:
        return f"<nblaunch.Queue {self.name} ({self.config.runner})>"

    def jobs(
        self, state: str | None = None, limit: int | None = None, sweep_id: str | None = None
    ) -> list[Job]:
        rows = store(self._root).jobs(self.name, state, sweep_id=sweep_id, limit=limit)
        return [Job(r.id, root=self._root) for r in rows]

    def widget(self, **kwargs: Any) -> Any:
        """The live queue table (``nblaunch.widgets.QueueStatus``)."""
        from nblaunch.widgets import queue_status

        return queue_status(self, **kwargs)

    def gpu_slots(self) -> int | None:
        if isinstance(self.config, LocalQueueConfig):
            return self.config.gpu_slots()
        return self.config.gpus

    @staticmethod
    def all(root: Path | None = None) -> list[Queue]:
        root = root or home()
        return [Queue(name, root=root) for name in sorted(load_queues(root))]
