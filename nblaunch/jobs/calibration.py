"""Calibrated MFU and per-job overhead from a queue's finished jobs.

At the end of training the runtime logs, into the store's ``metrics`` table:

``perf/achieved_flops_per_s``
    FLOPs per second the run achieved (HF: ``total_flos / train_runtime``).
``perf/train_runtime_s``
    Seconds spent in the training loop.
``perf/model_params``
    The model's parameter count.
``perf/train_tokens`` (optional)
    Tokens trained on. With ``perf/model_params`` it gives the achieved FLOPs
    as ``6·N·T / runtime`` in the same convention :func:`estimate` uses
    (all parameters); HF's ``total_flos`` counts only non-embedding
    parameters, which for a small model is a large difference.

A job's MFU is achieved FLOP/s over its devices × peak; its overhead is its
wall time (``running_at`` → ``finished_at`` of the attempt that succeeded)
minus the training loop: kernel start, imports, data loading, saving. The
queue's calibration is the median of both over its newest succeeded jobs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from nblaunch.queue.rows import JobRow
from nblaunch.queue.store import Store
from nblaunch.runtime.contract import (
    PERF_ACHIEVED_FLOPS,
    PERF_MODEL_PARAMS,
    PERF_RUNTIME_S,
    PERF_TRAIN_TOKENS,
)

__all__ = ["Calibration", "calibrate", "job_throughput"]


@dataclass(frozen=True)
class Calibration:
    """What a queue's finished jobs say about the next one."""

    mfu: float
    overhead_s: float
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class JobThroughput:
    achieved_flops_per_s: float
    train_runtime_s: float | None
    wall_s: float | None


def _last(store: Store, job: JobRow, name: str) -> float | None:
    rows = store.metrics(job.id, name)
    mine = [r for r in rows if r[0] == job.attempt] or rows
    return float(mine[-1][3]) if mine else None


def job_throughput(store: Store, job: JobRow) -> JobThroughput | None:
    """Achieved FLOP/s, training-loop seconds and wall seconds of one finished job."""
    runtime = _last(store, job, PERF_RUNTIME_S)
    params = _last(store, job, PERF_MODEL_PARAMS)
    tokens = _last(store, job, PERF_TRAIN_TOKENS)
    if params and tokens and runtime:
        achieved: float | None = 6.0 * params * tokens / runtime
    else:
        achieved = _last(store, job, PERF_ACHIEVED_FLOPS)
    if not achieved or achieved <= 0:
        return None
    wall = None
    for attempt in store.attempts(job.id):
        if attempt.n == job.attempt and attempt.finished_at is not None:
            wall = attempt.finished_at - (attempt.running_at or attempt.started_at)
    return JobThroughput(achieved, runtime, wall)


def calibrate(
    store: Store, queue: str, *, cpu: bool, peak_tflops: float, limit: int = 10
) -> Calibration | None:
    """Median MFU and overhead over the queue's newest ``limit`` usable succeeded jobs.

    Parameters
    ----------
    store
        The store holding the jobs and their metrics.
    queue
        Queue name.
    cpu
        Calibrate from jobs that asked for no GPU (True) or for GPUs (False);
        the two run on different devices and do not mix.
    peak_tflops
        Peak of one device of the queue (a GPU, or the whole CPU).
    limit
        Newest jobs to use; older ones may have run older code or hardware.

    Returns
    -------
    Calibration or None
        None when no succeeded job logged its throughput.
    """
    mfus: list[float] = []
    overheads: list[float] = []
    used: list[str] = []
    # Jobs that never logged throughput are skipped; look at a bounded window of them.
    for job in store.jobs(queue=queue, state="succeeded", limit=limit * 10):
        if (job.gpus == 0) != cpu:
            continue
        measured = job_throughput(store, job)
        if measured is None:
            continue
        devices = max(job.gpus, 1)
        mfus.append(measured.achieved_flops_per_s / (devices * peak_tflops * 1e12))
        if measured.train_runtime_s is not None and measured.wall_s is not None:
            overheads.append(max(0.0, measured.wall_s - measured.train_runtime_s))
        used.append(job.id)
        if len(used) >= limit:
            break
    if not mfus:
        return None
    overhead = statistics.median(overheads) if overheads else 0.0
    return Calibration(statistics.median(mfus), overhead, tuple(used))
