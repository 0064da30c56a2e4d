"""The one API every face uses: ``submit()``, ``Job`` and ``Queue``.

Faces (the CLI, the magics, the widgets) render ``Job.snapshot()`` and
``Queue.snapshot()``, each read in one transaction, and ask for changes
through ``Job.cancel()`` / ``Job.preempt()``; none of them opens the store.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nblaunch.errors import (
    AgentStartError,
    ConfigError,
    JobFailedError,
    SpecError,
    TransitionError,
    UnknownQueueError,
)
from nblaunch.home import home, jobs_dir, objects_dir, store_path
from nblaunch.jobs.bundle import check_kernel, check_notebook, read_notebook, write_bundle
from nblaunch.jobs.spec import JobSpec
from nblaunch.jobs.workspace import WorkspaceFile, check_size, list_workspace
from nblaunch.options import parse_priority
from nblaunch.queue import views
from nblaunch.queue.config import get_queue, load_queues, runner_for
from nblaunch.queue.rows import EventRow, JobRow
from nblaunch.queue.states import FINAL, State
from nblaunch.queue.store import Store, already_ended
from nblaunch.runners.base import Launch, QueueOptions, Runner, job_env
from nblaunch.runtime.contract import JobDir, Result, RunDir
from nblaunch.snapshots import FILTERS, JobSnapshot, QueueDepth, QueueSnapshot

if TYPE_CHECKING:
    from nblaunch.runners.wandb.sync import SyncReport

__all__ = ["Job", "Queue", "jobs", "submit", "submit_spec", "sweep_jobs"]

MetricRow = tuple[int, "int | None", str, float, float]  # attempt, step, name, value, time


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
        The notebook's folder travels with the job as its working directory.
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
        Further ``JobSpec`` fields: ``nodes``, ``strategy``, ``retry`` (keys of
        ``nblaunch.retry.RetryPolicy`` overriding the queue's, e.g.
        ``{"retry_on": ["failed"], "max_retries": 2}``), ``timeout_s``,
        ``sweep_id``, ``workspace_limit_mb``.

    Raises
    ------
    NBLaunchError
        Anything wrong with the request, in one line saying what and how to fix
        it; nothing is written then.
    """
    return submit_spec(*notebook_spec(notebook, params, queue, gpus, priority, name, **options))


def _check_submit_args(notebook: Any, params: Any) -> None:
    if not isinstance(notebook, (str, os.PathLike)):
        raise SpecError(
            f"notebook must be the path of an .ipynb file (a str or pathlib.Path), "
            f"not {type(notebook).__name__}; e.g. nblaunch.submit('train.ipynb')"
        )
    if params is not None and not isinstance(params, Mapping):
        raise SpecError(
            f"params must be a dict of name: value, not {type(params).__name__} "
            f"{params!r:.60}; e.g. params={{'lr': 0.001}}"
        )


def notebook_spec(
    notebook: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    queue: str = "local",
    gpus: int = 0,
    priority: str | int = "normal",
    name: str | None = None,
    **options: Any,
) -> tuple[JobSpec, dict[str, Any]]:
    """The spec and notebook ``submit`` would queue, from its arguments."""
    _check_submit_args(notebook, params)
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
    return spec, nb


def check_submission(
    spec: JobSpec, notebook: dict[str, Any], root: Path
) -> tuple[QueueOptions, list[WorkspaceFile]]:
    """Everything that can be wrong with a job before anything is written: the
    notebook, the queue, whether the job can ever fit, and the workspace's size.
    Returns the queue's options and the workspace's files."""
    check_notebook(notebook, spec.notebook)
    options = get_queue(root, spec.queue)
    runner = runner_for(options)
    check_kernel(notebook, spec.notebook, here=runner.runs_here, parameters=bool(spec.params))
    runner.check_capacity(spec.gpus, spec.nodes)
    runner.check_ready()
    folder = Path(spec.submit_dir)
    # $NBLAUNCH_HOME or the queue's job folder may sit inside the notebook's folder:
    # neither travels.
    files = list_workspace(folder, exclude=(root, runner.storage(root)))
    limit = spec.workspace_limit_mb or options.workspace_limit_mb
    check_size(folder, files, int(limit * 1e6))
    return options, files


def submit_spec(spec: JobSpec, notebook: dict[str, Any], root: Path | None = None) -> Job:
    """Queue a built spec with its notebook; nothing is written unless all checks pass."""
    root = root or home()
    options, files = check_submission(spec, notebook, root)
    retry = options.retry.merged(spec.retry)
    db = store(root)
    job_id = secrets.token_hex(4)
    # Attempts read their bundle where they run: a runner may keep jobs in a shared folder.
    storage = runner_for(options).storage(root)
    job_dir = jobs_dir(storage) / job_id
    write_bundle(job_dir, spec, notebook, files, objects_dir(storage))
    try:
        db.insert_job(job_id, spec, job_dir, retry, spec.timeout_s or options.timeout_s)
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    from nblaunch.agent.spawn import ensure_agent

    ensure_agent(root, db)
    _supervised[root] = time.monotonic()
    return Job(job_id, root=root)


@dataclass(frozen=True)
class DryRun:
    """One job as ``--dry-run`` shows it: its bundle (in a folder of the caller's) and
    the documents its first attempt would create on the queue's engine."""

    spec: JobSpec
    bundle: Path
    documents: list[dict[str, Any]]


def dry_run(
    items: Sequence[tuple[JobSpec, dict[str, Any]]], folder: Path, root: Path | None = None
) -> list[DryRun]:
    """Check each job as ``submit_spec`` does and build its bundle under ``folder``;
    nothing is queued and nothing written to the home, and no engine is asked."""
    root = root or home()
    checked = [check_submission(spec, nb, root) for spec, nb in items]
    runs = []
    for (spec, nb), (options, files) in zip(items, checked, strict=True):
        job_id = secrets.token_hex(4)
        job = JobDir(folder / job_id)
        bundle = write_bundle(job.path, spec, nb, files, folder / "objects")
        env = job_env(root, job_id, 1, job.checkpoints, options, 0.0)
        launch = Launch(job_id, 1, bundle, job.attempt(1), job.checkpoints, (), env)
        runs.append(DryRun(spec, bundle, runner_for(options).manifests(launch)))
    return runs


#: when each home was last checked for a live agent, so reads stay cheap
_supervised: dict[Path, float] = {}
SUPERVISE_EVERY_S = 1.0
#: homes whose agent could not start, already reported
_unsupervised: set[Path] = set()


def supervise(root: Path, *, force: bool = False) -> None:
    """Start an agent for ``root`` if its jobs wait or run without one (at most one
    check a second per process unless ``force``): every call that touches a home
    does this, so a killed agent comes back without anyone asking."""
    now = time.monotonic()
    last = _supervised.get(root)
    if not force and last is not None and now - last < SUPERVISE_EVERY_S:
        return
    _supervised[root] = now
    from nblaunch.agent.spawn import supervise as start_if_needed

    try:
        start_if_needed(root, store(root))
    except AgentStartError as exc:
        # Reading the queue must still work (a typo in queues.toml stops agents
        # from starting); say it once, and submitting gives the error itself.
        if root not in _unsupervised:
            _unsupervised.add(root)
            print(f"nblaunch: no agent could start, so jobs wait: {exc}", file=sys.stderr)


def _queue_options(root: Path, name: str) -> QueueOptions | None:
    """The queue's options; None once the queue is gone from the file (history stays
    readable)."""
    try:
        return get_queue(root, name)
    except (UnknownQueueError, ConfigError):
        return None


class Job:
    """A handle on one job; ``Job(id)`` re-attaches from any process."""

    def __init__(self, job_id: str, *, root: Path | None = None) -> None:
        self._root = root or home()
        self._store = store(self._root)
        self.id = self._store.job(job_id).id

    def __repr__(self) -> str:
        snap = self.snapshot(metrics=False)
        return f"<nblaunch.Job {snap.id} {snap.name!r} {snap.state} on {snap.queue}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.status_line())

    @cached_property
    def spec(self) -> JobSpec:
        """The job's request as its bundle records it (immutable, read once)."""
        return JobSpec.read(self._store.job(self.id).bundle)

    def snapshot(self, *, metrics: bool = True) -> JobSnapshot:
        """Everything a face shows of the job, read in one transaction.

        ``metrics=False`` leaves out the newest metrics and the progress (a
        listing does not show them).
        """
        supervise(self._root)
        view = views.job_view(self._store, self.id, metrics=metrics)
        queue = _queue_options(self._root, view.job.queue)
        params: dict[str, Any] = {}
        estimate = None
        with contextlib.suppress(OSError, ValueError):  # a bundle removed by hand: the row shows
            params, estimate = dict(self.spec.params), self.spec.options.get("estimate")
        return JobSnapshot.of(view, queue, params=params, estimate=estimate)

    @property
    def row(self) -> JobRow:
        """The job's raw store row, for tools and tests; faces render ``snapshot()``."""
        return self._store.job(self.id)

    @property
    def run_dir(self) -> Path | None:
        """The latest attempt's folder; None before the first start."""
        run = self.run()
        return None if run is None else run.path

    @property
    def state(self) -> State:
        supervise(self._root)
        return self._store.job(self.id).state

    @property
    def name(self) -> str:
        return self._store.job(self.id).name

    def run(self, attempt: int | None = None) -> RunDir | None:
        """The folder of ``attempt`` (default: the latest); None before the first start."""
        row = self._store.job(self.id)
        path = row.run_dir(attempt)
        return None if path is None else RunDir(path)

    @property
    def output_notebook(self) -> Path | None:
        run = self.run()
        return None if run is None else run.output

    def log_files(self, attempt: int | None = None) -> list[Path]:
        """The files holding an attempt's output, stdout first, as its runner keeps them."""
        run = self.run(attempt)
        if run is None:
            return []
        queue = _queue_options(self._root, self._store.job(self.id).queue)
        return runner_for(queue).log_files(run) if queue else run.log_files()

    def status_line(self) -> str:
        return self.snapshot(metrics=False).status_line()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> State:
        """Block until the job reaches a final state; return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            supervise(self._root)
            row = self._store.job(self.id)
            if row.final:
                return row.state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} still {row.state} after {timeout}s")
            time.sleep(interval)

    def cancel(self) -> State:
        """Cancel now if queued; otherwise ask the agent to stop it (see ``wait``).

        Raises ``TransitionError`` when the job has already ended: there is
        nothing to cancel.
        """
        row = self._store.request_cancel(self.id)
        if not row.final:
            from nblaunch.agent.lockfile import wake

            wake(self._root)
            supervise(self._root, force=True)
        return row.state

    def check_cancel(self) -> None:
        """Raise ``TransitionError`` if the job has already ended (nothing to cancel)."""
        row = self._store.job(self.id)
        if row.final:
            raise already_ended(row)

    def preempt(self) -> None:
        """Send the job what a spot reclaim sends (a drill): it checkpoints, stops and
        is requeued to resume."""
        from nblaunch.agent.lockfile import wake

        self._store.request_preempt(self.id)
        wake(self._root)
        supervise(self._root, force=True)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait, then return the run's ``result.json``.

        Raises ``JobFailedError`` (papermill's fields, output notebook, logs)
        unless the job succeeded."""
        state = self.wait(timeout)
        row = self._store.job(self.id)
        run = self.run()
        if state is not State.SUCCEEDED:
            logs = None if run is None else run.logs
            output = None if run is None else run.output
            raise JobFailedError(row.id, state.value, row.error, output, logs)
        assert run is not None
        result = Result.read(run.result)
        assert result is not None, f"job {self.id} succeeded without a result.json"
        return result.to_dict()

    def logs(self, attempt: int | None = None) -> str:
        """Everything the attempt printed (stdout then stderr)."""
        supervise(self._root)
        return "".join(
            path.read_text(errors="replace") for path in self.log_files(attempt) if path.exists()
        )

    def metrics(self, name: str | None = None) -> list[dict[str, Any]]:
        """Logged metric rows ``{attempt, step, name, value, time}`` in logging order."""
        keys = ("attempt", "step", "name", "value", "time")
        return [dict(zip(keys, r, strict=True)) for r in self._store.metrics(self.id, name)]

    def metrics_since(self, cursor: int = 0) -> tuple[list[MetricRow], int]:
        """Metric rows logged after ``cursor`` and the cursor for the next call (start at 0).

        One indexed seek: a poll costs only what is new."""
        return self._store.metrics_since(self.id, cursor)

    def events(self) -> list[EventRow]:
        """Every state change, oldest first."""
        return self._store.events(self.id)

    def to_dict(self) -> dict[str, Any]:
        return self.snapshot(metrics=False).to_dict()

    def export_wandb_job(self, dest: str | os.PathLike[str]) -> Path:
        """Write the job as a W&B Launch job's files in the new folder ``dest``:
        ``wandb-job.json`` and ``requirements.frozen.txt`` beside the bundle (its
        notebook, spec and workspace). The code artifact's id is filled in when the
        job is logged to W&B, as a ``wandb`` queue does on submit."""
        from nblaunch.runners.wandb.job_files import export_job

        return export_job(self._store.job(self.id).bundle, Path(dest).expanduser().resolve())

    def sync_wandb(self, entity: str | None = None, project: str | None = None) -> SyncReport:
        """Upload the job's offline W&B runs (one per attempt) as one run whose steps
        continue across attempts; see ``nblaunch.runners.wandb.sync`` for what wandb
        lets nblaunch carry. ``entity``/``project`` default to the run's own."""
        from nblaunch.runners.wandb.sync import sync_attempts

        if self.state not in FINAL:
            raise TransitionError(
                f"job {self.id} is {self.state}; sync it once it has ended (more attempts "
                "may follow)"
            )
        attempts = [(a.n, RunDir(a.run_dir)) for a in self._store.attempts(self.id)]
        return sync_attempts(attempts, entity, project)


class Queue:
    """A named queue: its configuration, its runner and its jobs."""

    def __init__(self, name: str = "local", *, root: Path | None = None) -> None:
        self._root = root or home()
        self.options = get_queue(self._root, name)
        self.name = name

    def __repr__(self) -> str:
        return f"<nblaunch.Queue {self.name} ({self.options.runner})>"

    @cached_property
    def runner(self) -> Runner:
        return runner_for(self.options)

    def gpu_slots(self) -> int | None:
        return self.runner.gpu_slots()

    def jobs(
        self, state: str | None = None, limit: int | None = None, sweep_id: str | None = None
    ) -> list[Job]:
        rows = store(self._root).jobs(self.name, state, sweep_id=sweep_id, limit=limit)
        return [Job(r.id, root=self._root) for r in rows]

    def job(self, job_id: str) -> Job:
        """A handle on one of this queue's jobs (same ``$NBLAUNCH_HOME``)."""
        return Job(job_id, root=self._root)

    def snapshot(self, state_filter: str = "all", limit: int = 50) -> QueueSnapshot:
        """The queue's counts and its newest ``limit`` jobs passing ``state_filter``,
        read in one transaction."""
        if state_filter not in FILTERS:
            raise ValueError(f"unknown filter {state_filter!r}; use one of {', '.join(FILTERS)}")
        supervise(self._root)
        view = views.queue_view(store(self._root), self.name, FILTERS[state_filter], limit)
        now = time.time()
        return QueueSnapshot(
            name=self.name,
            runner=self.options.runner,
            gpu_slots=self.gpu_slots(),
            gpus_used=view.gpus_used,
            counts=view.counts,
            jobs=tuple(JobSnapshot.of(v, self.options, now) for v in view.jobs),
            filter=state_filter,
            taken_at=now,
        )

    def depth(self) -> QueueDepth:
        """How deep the queue is, for autoscalers, from one read of the store.

        Jobs per state, GPUs asked for by queued jobs and held by active ones, the
        oldest wait, and ``desired_workers``: ceil((GPUs queued + GPUs in use) /
        GPUs per worker), at least 1 while any job is queued or active, clamped to
        the queue's ``min_workers``/``max_workers`` (``nblaunch.snapshots.desired_workers``).
        """
        supervise(self._root)
        return QueueDepth.read(store(self._root), self.options)

    @staticmethod
    def all(root: Path | None = None) -> list[Queue]:
        root = root or home()
        return [Queue(name, root=root) for name in sorted(load_queues(root))]


def jobs(
    queue: str | None = None,
    state: str | None = None,
    limit: int | None = None,
    root: Path | None = None,
) -> list[JobSnapshot]:
    """Snapshots of the newest jobs (of ``queue``, in ``state``), newest first."""
    root = root or home()
    if queue is not None:
        get_queue(root, queue)  # an unknown queue is an error, not an empty list
    if state is not None and state not in {s.value for s in State}:
        raise SpecError(f"unknown state {state!r}; use one of {', '.join(s.value for s in State)}")
    states = None if state is None else [State(state)]
    supervise(root)
    found = views.jobs_view(store(root), queue, states, limit)
    queues = {name: _queue_options(root, name) for name in {v.job.queue for v in found}}
    now = time.time()
    return [JobSnapshot.of(view, queues[view.job.queue], now) for view in found]


def sweep_jobs(sweep_id: str, root: Path | None = None) -> list[Job]:
    """Every job submitted with ``sweep_id``, oldest first, across all queues."""
    db = store(root)
    return [Job(job_id, root=root) for job_id in views.sweep_job_ids(db, sweep_id)]
