"""Preemption drill on the tiny GPT-2 notebook (an unmodified HF notebook, no nblaunch
imports): preempted twice mid-training, three attempts, and the resumed attempts
log exactly the losses an uninterrupted run logs at the same steps."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nblaunch
from tests.conftest import run_cli

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PARAMS = {"max_steps": 300, "logging_steps": 10, "save_steps": 1000, "learning_rate": 1e-3}


def _losses(job: nblaunch.Job, attempt: int | None = None) -> dict[int, float]:
    return {
        r["step"]: r["value"]
        for r in job.metrics("loss")
        if attempt is None or r["attempt"] == attempt
    }


def _wait_for_step(job: nblaunch.Job, attempt: int, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["attempt"] == attempt and r["step"] >= step for r in job.metrics("loss")):
            return
        assert not job.row.final, job.status_line()
        time.sleep(0.1)
    raise AssertionError(f"attempt {attempt} did not reach step {step}: {job.status_line()}")


def test_preempted_twice_resumes_to_identical_losses(nbl_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "nb"
    folder.mkdir()
    shutil.copytree(NOTEBOOKS / "data", folder / "data")
    nb = shutil.copy(NOTEBOOKS / "01_quickstart.ipynb", folder / "01_quickstart.ipynb")

    drilled = nblaunch.submit(nb, params=PARAMS, name="drilled")
    baseline = nblaunch.submit(nb, params=PARAMS, name="baseline")

    _wait_for_step(drilled, 1, 60)
    done = run_cli("preempt", drilled.id)
    assert done.returncode == 0, done.stderr
    _wait_for_step(drilled, 2, max(_losses(drilled, 1)) + 40)
    assert run_cli("preempt", drilled.id).returncode == 0

    assert drilled.wait(timeout=600).value == "succeeded", drilled.logs()
    assert baseline.wait(timeout=600).value == "succeeded", baseline.logs()

    row = drilled.row
    assert row.attempt == 3 and row.preemptions == 2
    attempts = drilled._store.attempts(drilled.id)
    assert [a.state.value for a in attempts] == ["preempted", "preempted", "succeeded"]
    assert max(_losses(drilled)) == PARAMS["max_steps"]

    reference = _losses(baseline)
    for attempt in (2, 3):
        resumed = _losses(drilled, attempt)
        assert resumed, f"attempt {attempt} logged no loss"
        for step, value in resumed.items():
            assert value == reference[step], (attempt, step, value, reference[step])
    # Each resumed attempt started where the previous one stopped, not from scratch.
    assert min(_losses(drilled, 2)) > 10 and min(_losses(drilled, 3)) > min(_losses(drilled, 2))

    # The same wandb run id across attempts; checkpoints logged as model artifacts.
    run_ids = {
        p.name.rsplit("-", 2)[-1]
        for a in attempts
        for p in (a.run_dir / "wandb").glob("offline-run-*")
    }
    assert run_ids == {drilled.id}, run_ids
    manifest = drilled.row.job_dir / "checkpoints" / "tiny-gpt2" / "artifacts.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    preempt_saves = [r for r in records if r["attempt"] in (1, 2)]
    assert len(preempt_saves) == 2
    for record in records:
        assert record["aliases"] == ["latest", f"step-{record['step']}"]
        assert record["artifact"] == f"model-nbl-{drilled.id}"
    staged = [
        p
        for a in attempts
        for p in (a.run_dir / "wandb-data" / "artifacts" / "staging").rglob("*")
        if p.is_file()
    ]
    assert staged, "no artifact files staged for wandb sync"
