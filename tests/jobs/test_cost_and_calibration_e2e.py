"""Actual cost and calibrated estimates against real jobs on the local queue."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import nblaunch
from nblaunch.jobs.estimate import estimate
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
    workload, the same model's training steps in a session of its own like each
    job's, runs beside both jobs; its step rate during each job is the machine's
    speed then, measured in this run. The prediction is scaled by the ratio of the
    two before the ±25% check, so a load that comes or goes between the runs is
    measured instead of blamed on the calibration. On a steady machine the ratio
    is 1 and the check is the plain one.

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

    def span(job: nblaunch.Job) -> tuple[float, float]:
        attempt = job._store.attempts(job.id)[-1]
        assert attempt.running_at is not None and attempt.finished_at is not None
        return attempt.running_at, attempt.finished_at

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
        speed_then = reference.rate(*span(first))
        speed_now = reference.rate(*span(second))
    assert "calibrat" in before.mfu_source, before.mfu_source
    start, end = span(second)
    measured_s = end - start
    predicted_s = before.hours * 3600
    # The prediction at the speed the machine had during the measured run.
    expected_s = predicted_s * speed_then / speed_now
    assert abs(expected_s - measured_s) <= 0.25 * measured_s, {
        "predicted_s": predicted_s,
        "reference_steps_per_s": (speed_then, speed_now),
        "expected_s": expected_s,
        "measured_s": measured_s,
        "estimate": before.to_dict(),
    }
