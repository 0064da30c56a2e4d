"""Calibration from a queue's finished jobs, and the actual cost of a job's attempts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nblaunch.api import store
from nblaunch.jobs.calibration import calibrate
from nblaunch.jobs.estimate import estimate
from nblaunch.jobs.hardware import PROBE_FILE, _probe_key
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue import views
from nblaunch.queue.config import get_queue
from nblaunch.queue.states import State
from nblaunch.queue.store import JobRow, Store
from nblaunch.runners import QueueOptions, Slots
from nblaunch.runtime.contract import Cost
from nblaunch.snapshots import JobSnapshot
from tests.conftest import write_queues

PEAK_TFLOPS = 0.1


@pytest.fixture
def cpu_home(nbl_home: Path) -> Path:
    """A CPU-only local queue whose measured peak is a round 0.1 TFLOP/s."""
    write_queues(nbl_home, "[queues.local]\ngpus = 0\nprice_per_gpu_hour = 1.0\n")
    key, backend = _probe_key()
    (nbl_home / PROBE_FILE).write_text(
        json.dumps({key: {"tflops": PEAK_TFLOPS, "backend": backend}})
    )
    return nbl_home


def _job(db: Store, tmp: Path, job_id: str, queue: str = "local", gpus: int = 0) -> JobRow:
    spec = JobSpec.build(
        name=job_id, queue=queue, gpus=gpus, notebook=str(tmp / "nb.ipynb"), submit_dir=str(tmp)
    )
    return db.insert_job(job_id, spec, tmp / job_id)


def actual_cost(db: Store, job: JobRow, queue: QueueOptions, now: float | None = None) -> Cost:
    """The cost every face shows: the job's snapshot's."""
    cost = JobSnapshot.of(views.job_view(db, job.id), queue, now).cost
    assert cost is not None
    return cost


def _run(db: Store, job_id: str, queue: str, gpus: int, running_at: float) -> None:
    slots = Slots(tuple(str(i) for i in range(gpus)), 1)
    claimed = db.claim(queue, slots, [queue], os.getpid())
    assert claimed is not None and claimed[0].id == job_id
    db.transition(
        job_id,
        State.RUNNING,
        "started",
        attempt_state=State.RUNNING,
        attempt_fields={"running_at": running_at},
    )


def _finished_job(
    db: Store, tmp: Path, job_id: str, wall_s: float, metrics: dict[str, float]
) -> None:
    _job(db, tmp, job_id)
    start = time.time() - 1000
    _run(db, job_id, "local", 0, start)
    db.transition(
        job_id,
        State.SUCCEEDED,
        "exit 0",
        attempt_state=State.SUCCEEDED,
        attempt_fields={"finished_at": start + wall_s},
    )
    db.add_metrics(
        (job_id, 1, None, name, value, start + wall_s) for name, value in metrics.items()
    )


def test_one_finished_job_calibrates_the_estimate(cpu_home: Path, tmp_path: Path) -> None:
    # Tokens for 160 s of training at the calibrated 2e10 FLOP/s: 160 × 2e10 / (6 × 1e6)
    tokens = 160 * 2e10 / 6e6
    before = estimate(params=1e6, tokens=tokens, queue="local")
    assert before.mfu == 0.30 and before.mfu_source.startswith("default for CPU")
    assert before.overhead_s == 0

    # One job: 2e10 FLOP/s achieved on a 0.1 TFLOP/s CPU (MFU 0.2), 80 s of training in 100 s
    _finished_job(
        store(),
        tmp_path,
        "job1",
        100.0,
        {
            "perf/achieved_flops_per_s": 2e10,
            "perf/train_runtime_s": 80.0,
            "perf/model_params": 1e6,
        },
    )
    after = estimate(params=1e6, tokens=tokens, queue="local")
    assert after.mfu == pytest.approx(0.2)
    assert after.mfu_source == "calibrated from 1 finished job on queue local"
    assert after.overhead_s == pytest.approx(20.0)
    assert after.hours == pytest.approx((160 + 20) / 3600)
    assert after.hours != before.hours

    # A different device than the queue's own is not calibrated by its jobs.
    other = estimate(params=1e6, tokens=tokens, queue="local", gpu="T4")
    assert other.mfu_source.startswith("default for T4")


def test_tokens_and_params_give_throughput_in_the_estimates_convention(
    cpu_home: Path, tmp_path: Path
) -> None:
    db = store()
    # HF-style FLOPs (non-embedding params) say 1e10, but 6 × 2e6 params × 1e5 tokens / 60 s = 2e10
    _finished_job(
        db,
        tmp_path,
        "a",
        70.0,
        {
            "perf/achieved_flops_per_s": 1e10,
            "perf/train_runtime_s": 60.0,
            "perf/model_params": 2e6,
            "perf/train_tokens": 1e5,
        },
    )
    _finished_job(
        db,
        tmp_path,
        "b",
        50.0,
        {
            "perf/achieved_flops_per_s": 4e10,
            "perf/train_runtime_s": 40.0,
        },
    )
    _job(db, tmp_path, "never-ran")
    cal = calibrate(db, "local", cpu=True, peak_tflops=PEAK_TFLOPS)
    assert cal is not None
    assert cal.mfu == pytest.approx((0.2 + 0.4) / 2)  # median of two
    assert cal.overhead_s == pytest.approx(10.0)
    assert set(cal.jobs) == {"a", "b"}
    assert calibrate(db, "local", cpu=False, peak_tflops=312) is None


def test_actual_cost_sums_attempts_and_counts_a_running_one_live(
    nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, '[queues.gpu]\ngpus = 2\ngpu_type = "L4"\nprice_per_gpu_hour = 2.5\n')
    db = store()
    config = get_queue(nbl_home, "gpu")
    job = _job(db, tmp_path, "j", queue="gpu", gpus=2)
    assert actual_cost(db, job, config) == Cost(0.0, 0.0, 2.5, running=False)
    t0 = 1_000_000.0
    _run(db, "j", "gpu", 2, t0)  # attempt 1: preempted after an hour
    db.transition(
        "j",
        State.QUEUED,
        "preempted",
        attempt_state=State.PREEMPTED,
        attempt_fields={"finished_at": t0 + 3600},
    )
    _run(db, "j", "gpu", 2, t0 + 4000)  # attempt 2: running for half an hour so far
    live = actual_cost(db, db.job("j"), config, now=t0 + 4000 + 1800)
    # (1 h + 0.5 h) × 2 GPUs = 3 GPU-hours × $2.50
    assert live.gpu_hours == pytest.approx(3.0)
    assert live.usd == pytest.approx(7.5)
    assert live.running is True
    later = actual_cost(db, db.job("j"), config, now=t0 + 4000 + 3600)
    assert later.gpu_hours == pytest.approx(4.0)
    db.transition(
        "j",
        State.SUCCEEDED,
        "exit 0",
        attempt_state=State.SUCCEEDED,
        attempt_fields={"finished_at": t0 + 4000 + 3600},
    )
    done = actual_cost(db, db.job("j"), config)
    assert done.gpu_hours == pytest.approx(4.0) and done.running is False
    assert done.wall_hours == pytest.approx(2.0)


def test_actual_cost_without_price_or_gpus(cpu_home: Path, tmp_path: Path) -> None:
    write_queues(cpu_home, "[queues.local]\ngpus = 0\n")
    db = store()
    _finished_job(db, tmp_path, "cpu", 100.0, {})
    cost = actual_cost(db, db.job("cpu"), get_queue(cpu_home, "local"))
    assert cost.usd is None and cost.gpu_hours == 0.0
    assert cost.wall_hours == pytest.approx(100 / 3600)
