"""Actual cost and calibrated estimates against real jobs on the local queue."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import nblaunch
from nblaunch.jobs.estimate import estimate
from nblaunch.runtime.contract import MAX_STEPS_METRIC, PERF_RUNTIME_S
from tests.conftest import make_notebook, run_cli, write_queues
from tests.jobs.reference_workload import ReferenceWorkload

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_cost_is_stored_shown_and_written_to_the_wandb_summary(
    nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 1\nprice_per_gpu_hour = 3600.0\n")
    nb = make_notebook(
        tmp_path / "cost.ipynb",
        "import time, wandb\nrun = wandb.init(project='cost')\ntime.sleep(1.0)\nwandb.finish()",
    )
    job = nblaunch.submit(nb, gpus=1)
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    data = job.to_dict()
    # $3600 per GPU-hour is $1 per GPU-second: the cost in dollars is the seconds the GPU was held.
    assert (
        1.0 <= data["cost_usd"] < 30.0 and abs(data["cost_usd"] - data["gpu_hours"] * 3600.0) < 1e-9
    )
    shown = run_cli("show", job.id)
    assert f"${data['cost_usd']:.2f}" in shown.stdout
    run_dir = job.run_dir
    assert run_dir is not None
    # wandb 0.31 keeps an offline run's summary inside its binary .wandb file; the
    # summary it prints at finish is the readable record.
    log = re.sub(r"\x1b\[[0-9;]*m", "", (run_dir / "logs" / "stderr.log").read_text())
    summary = {
        k: float(v)
        for k, v in re.findall(r"wandb:\s+(compute_cost_usd|gpu_hours) ([0-9.e-]+)", log)
    }
    assert summary["gpu_hours"] > 0 and summary["compute_cost_usd"] >= 1.0
    assert summary["compute_cost_usd"] <= data["cost_usd"]


def test_calibration_predicts_a_run_with_twice_the_steps(
    nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One calibration run on ``local``, then a run with twice the steps, predicted.

    The prediction is made at the machine's speed during the calibration run, and
    the measured run may meet another load (other tests, other users). A reference
    workload, the same model's training steps in a session of its own, runs beside
    both jobs; its step rate is the machine's speed, measured in this run. Each
    part of the prediction is scaled by the ratio of that speed between the two
    runs over the part of the run it comes from: the training time over the
    training loops, the per-job overhead over the rest (start-up, evaluation, the
    notebook's save). Only then is it checked to ±25% of the measured run, so a
    load that comes or goes between the runs is measured instead of blamed on the
    calibration. On a steady machine both ratios are 1 and the check is the plain
    one.

    A warm-up job runs first on a queue of its own (calibration is per queue, so
    it does not count): the first torch + transformers job on a fresh machine
    pays a cold file cache that no later job pays, and would skew the overhead
    the calibration measures by seconds."""
    # Jobs and reference compute on one thread each, so the scheduler's fair share
    # slows them alike. With more, torch's threads wait for each other at every
    # operation: when load takes a core away the job stalls far beyond its share,
    # and no reference tracks that.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    write_queues(nbl_home, "[queues.warmup]\nrunner = 'local'\n")
    folder = tmp_path / "nb"
    folder.mkdir()
    shutil.copytree(NOTEBOOKS / "data", folder / "data")
    nb = shutil.copy(NOTEBOOKS / "01_quickstart.ipynb", folder / "01_quickstart.ipynb")
    common = {
        "report_to": "",
        "logging_steps": 20,
        "save_steps": 10_000,
        "batch_size": 8,
        "seq_len": 64,
    }

    def tokens(steps: int) -> int:
        return steps * common["batch_size"] * common["seq_len"]

    def speeds(job: nblaunch.Job) -> tuple[float, float]:
        """The reference's step rate during the job's training loop (from the trainer
        callback's first metric to its last) and during the rest of its attempt."""
        attempt = job._store.attempts(job.id)[-1]
        assert attempt.running_at is not None and attempt.finished_at is not None
        begin = job.metrics(MAX_STEPS_METRIC)[-1]["time"]
        end = job.metrics(PERF_RUNTIME_S)[-1]["time"]
        rest = ((attempt.running_at, begin), (end, attempt.finished_at))
        return reference.rate((begin, end)), reference.rate(*rest)

    with ReferenceWorkload(tmp_path / "reference.txt") as reference:
        warmup = nblaunch.submit(nb, params={**common, "max_steps": 20}, queue="warmup")
        assert warmup.wait(timeout=600).value == "succeeded", warmup.logs()
        reference.wait_steady()
        first = nblaunch.submit(nb, params={**common, "max_steps": 300}, name="calibrate")
        assert first.wait(timeout=600).value == "succeeded", first.logs()
        params = int(first.metrics("perf/model_params")[-1]["value"])
        before = estimate(
            params=params, tokens=tokens(600), gpus=0, queue="local", root=nbl_home, mfu=None
        )
        second = nblaunch.submit(nb, params={**common, "max_steps": 600}, name="measured")
        assert second.wait(timeout=600).value == "succeeded", second.logs()
        (loop_then, rest_then), (loop_now, rest_now) = speeds(first), speeds(second)
    assert "calibrat" in before.mfu_source, before.mfu_source
    attempt = second._store.attempts(second.id)[-1]
    assert attempt.running_at is not None and attempt.finished_at is not None
    measured_s = attempt.finished_at - attempt.running_at
    training_s = before.compute_hours * 3600
    assert before.hours * 3600 == pytest.approx(training_s + before.overhead_s)
    # The prediction at the speeds the machine had during the measured run.
    expected_s = training_s * loop_then / loop_now + before.overhead_s * rest_then / rest_now
    assert abs(expected_s - measured_s) <= 0.25 * measured_s, {
        "predicted_s": before.hours * 3600,
        "reference_steps_per_s": {
            "training": (loop_then, loop_now),
            "rest": (rest_then, rest_now),
        },
        "expected_s": expected_s,
        "measured_s": measured_s,
        "estimate": before.to_dict(),
    }
