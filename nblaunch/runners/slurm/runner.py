"""The Slurm runner: each nblaunch job is one Slurm batch job, and each start of
it one attempt."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from nblaunch.errors import EngineError
from nblaunch.runners.base import AttemptEnd, ClusterRunner, Launch, Pending
from nblaunch.runners.result import end_from_result
from nblaunch.runners.slurm.client import SlurmClient, SlurmJob
from nblaunch.runners.slurm.options import SlurmOptions
from nblaunch.runners.slurm.script import (
    BatchJob,
    batch_script,
    comment,
    first_attempt,
    sbatch_args,
)
from nblaunch.runtime.contract import (
    BUNDLE_SPEC,
    JobDir,
    Outcome,
    Result,
    RunDir,
    make_private_dir,
    open_private,
)

#: Slurm states of a job that has not started (again)
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
#: Slurm states of a job that holds its nodes
HOLDING = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "RESIZING"})
#: Slurm states of a job that ended for good (any other state: Slurm still has it)
ENDED = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL",
    "OUT_OF_MEMORY", "DEADLINE", "REVOKED",
})  # fmt: skip
#: how a Slurm job that ended without the runtime's ``result.json`` is classed
_ENDED_BY_SLURM: dict[str, tuple[Outcome, str]] = {
    # A time limit or preemption ends one allocation; the next resumes from the checkpoint.
    "TIMEOUT": (Outcome.PREEMPTED, "reached the queue's time limit"),
    "PREEMPTED": (Outcome.PREEMPTED, "was preempted by Slurm"),
    "NODE_FAIL": (Outcome.LOST, "lost its node (NODE_FAIL)"),
    "BOOT_FAIL": (Outcome.LOST, "could not boot its node (BOOT_FAIL)"),
    "OUT_OF_MEMORY": (Outcome.OOM, "ran out of memory (OUT_OF_MEMORY)"),
    "DEADLINE": (Outcome.TIMEOUT, "missed its deadline (DEADLINE)"),
    "CANCELLED": (Outcome.RUNNER_ERROR, "was cancelled in Slurm (scancel)"),
}
#: how often the agent's view of the cluster is refreshed (one ``squeue`` per pass)
LISTING_AGE_S = 1.0


class SlurmRunner(ClusterRunner):
    """Submits ``sbatch`` jobs that run ``python -m nblaunch.runtime`` on the node.

    Slurm schedules: every job is handed over at once, with its priority as a
    nice value or QOS. Bundles, checkpoints and attempt folders live under the
    queue's ``run_root``, which the compute nodes see too, so metrics and
    results are read from there while the job runs. Slurm requeues a job
    itself (``--requeue``: node failure, preemption, ``scontrol requeue``); the
    agent sees its restart count rise, ends the attempt, and the next attempt
    adopts the restarted job, which runs in that attempt's folder.
    """

    name = "slurm"
    Options = SlurmOptions
    options: SlurmOptions

    def __init__(self, options: SlurmOptions) -> None:
        super().__init__(options)
        self.client = SlurmClient(options.client_timeout_s)

    def storage(self, home: Path) -> Path:
        return self.options.run_root

    def kernel_started(self, run: RunDir) -> bool:
        return run.kernel_ready.exists()  # run_root is shared by definition

    def log_files(self, run: RunDir) -> list[Path]:
        job_dir = JobDir.of_run(run.path).path
        slurm = sorted(job_dir.glob("slurm-*.out")) + sorted(job_dir.glob("slurm-*.err"))
        return [*run.log_files(), *slurm]

    def _batch_job(self, launch: Launch) -> BatchJob:
        spec = json.loads((launch.bundle / BUNDLE_SPEC).read_text())
        job_dir = JobDir.of_run(launch.run.path).path
        return BatchJob.from_spec(spec, launch.job_id, launch.attempt, job_dir, launch.env)

    def manifests(self, launch: Launch) -> list[dict[str, Any]]:
        job = self._batch_job(launch)
        args, script = sbatch_args(job, self.options), batch_script(job, self.options)
        return [{"kind": "SlurmBatchJob", "sbatch": args, "script": script}]

    def submit(self, launch: Launch) -> dict[str, Any]:
        adopted = self._adopt(launch)
        if adopted is not None:
            return adopted
        job = self._batch_job(launch)
        job_dir = job.job_dir
        script = job_dir / f"slurm-{launch.attempt}.sh"
        make_private_dir(script.parent)
        with os.fdopen(open_private(script, os.O_WRONLY | os.O_TRUNC), "w") as fh:
            fh.write(batch_script(job, self.options))
        try:
            slurm_id = self.client.sbatch(sbatch_args(job, self.options), str(script))
        except EngineError:
            # sbatch may time out after slurmctld took the job: never submit it twice.
            found = self.client.find(comment(launch.job_id, launch.attempt))
            if found is None:
                raise
            slurm_id = found.id
        self.client.forget()
        return _handle(slurm_id, launch.attempt, 0, job.nodes)

    def _adopt(self, launch: Launch) -> dict[str, Any] | None:
        """The previous attempt's Slurm job when Slurm restarted it into this attempt
        (running, waiting, or even done while no agent watched); None when a new Slurm
        job is needed. Restarts the agent never saw each end their own attempt."""
        previous = launch.previous
        if not previous or "external_id" not in previous:
            return None
        slurm_id, base = previous["external_id"], previous["base"]
        job = self.client.job(slurm_id, 0)
        if job is None:
            return None
        if base + job.restarts >= launch.attempt:
            return _handle(slurm_id, base, launch.attempt - base, previous.get("nodes", 1))
        if job.state not in ENDED:
            self.client.cancel(slurm_id)  # not restarted, yet alive: never run twice
        return None

    def recover(self, run: RunDir, job_id: str, attempt: int) -> dict[str, Any] | None:
        spec = json.loads((JobDir.of_run(run.path).bundle / BUNDLE_SPEC).read_text())
        for job in self.client.jobs(0).values():
            base = first_attempt(job.comment, job_id)
            if base is not None and base <= attempt <= base + job.restarts:
                return _handle(job.id, base, attempt - base, int(spec["nodes"]))
        return None

    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | Pending | None:
        job = self.client.job(handle["external_id"], LISTING_AGE_S)
        if job is None:  # Slurm forgot it (past MinJobAge): the run folder tells
            return end_from_result(run, None)
        if job.restarts > handle["restarts"]:
            # Requeued; while COMPLETING the old run may still be saving its checkpoint.
            return None if job.state == "COMPLETING" else _requeued(job, run)
        if job.state in HOLDING:
            return None
        if job.state in ENDED:
            return _ended(job, run)
        if job.state in WAITING:
            return Pending(job.reason if job.reason not in ("", "None") else "waiting for Slurm")
        return Pending(job.state)  # a state this release added: Slurm still has the job

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        args = (handle, grace_s, self.options.client_timeout_s)
        threading.Thread(target=_cancel, args=args, daemon=True).start()

    def preempt(self, handle: dict[str, Any]) -> None:
        # SIGTERM, as a spot reclaim: the runtime checkpoints and ends preempted, and
        # the next attempt resumes. (A requeue would SIGKILL a multi-node job's ranks:
        # srun answers a SIGTERM of its own by killing its tasks.)
        _terminate(self.client, handle)


def _handle(slurm_id: str, base: int, restarts: int, nodes: int) -> dict[str, Any]:
    """A Slurm attempt: the job, the attempt its first start was, its restart count, and
    its nodes (a multi-node job is signalled through its steps, never its srun)."""
    return {"external_id": slurm_id, "base": base, "restarts": restarts, "nodes": nodes}


def _terminate(client: SlurmClient, handle: dict[str, Any]) -> None:
    """SIGTERM every process of the attempt's runtime: the batch shell, which is the
    runtime on one node; the srun step's tasks on several."""
    client.signal(handle["external_id"], "TERM", batch=handle.get("nodes", 1) == 1)


def _requeued(job: SlurmJob, run: RunDir) -> AttemptEnd:
    """An attempt whose Slurm job was requeued: preempted, or lost with its node."""
    result = Result.read(run.result)
    if result is not None:
        return AttemptEnd(result.outcome, result.error, None, engine_kept=True)
    node = "Node" in job.reason or job.state == "NODE_FAIL"
    outcome = Outcome.LOST if node else Outcome.PREEMPTED
    error = None
    if node:
        error = _error(job, f"lost its node and was requeued by Slurm ({job.reason})")
    return AttemptEnd(outcome, error, None, engine_kept=True)


def _ended(job: SlurmJob, run: RunDir) -> AttemptEnd:
    """A Slurm job that ended for good: the runtime's result, else Slurm's account."""
    code = None
    if job.exit is not None:
        code = -job.exit[1] if job.exit[1] else job.exit[0]
    if Result.read(run.result) is None and job.state in _ENDED_BY_SLURM:
        outcome, why = _ENDED_BY_SLURM[job.state]
        error = None if outcome is Outcome.PREEMPTED else _error(job, why)
        return AttemptEnd(outcome, error, code)
    return end_from_result(run, code)


def _error(job: SlurmJob, why: str) -> dict[str, Any]:
    return {"ename": f"Slurm{job.state.title()}", "evalue": f"Slurm job {job.id} {why}",
            "cell_index": None}  # fmt: skip


def _cancel(handle: dict[str, Any], grace_s: float, timeout_s: float) -> None:
    """SIGTERM the attempt (the runtime checkpoints and keeps its partial notebook),
    then ``scancel`` the job for good once it ended or the grace ran out; a job that
    has not started is cancelled at once."""
    client = SlurmClient(timeout_s)
    slurm_id = handle["external_id"]
    try:
        job = client.job(slurm_id, 0)
        if grace_s > 0 and job is not None and job.state in HOLDING:
            _terminate(client, handle)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                job = client.job(slurm_id, 0.5)
                if job is None or job.state not in HOLDING:
                    break
                time.sleep(0.5)
    finally:
        client.cancel(slurm_id)
