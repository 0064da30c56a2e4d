"""Slurm ends an allocation three ways short of the job's end: ``scontrol requeue``,
a node going DOWN, and the time limit (after ``--signal`` gave the job its
warning). Each becomes a new nblaunch attempt that resumes from the checkpoint
and finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nblaunch
from nblaunch.queue.states import State
from tests.agent.test_reliability import kill_agent
from tests.conftest import CHECKPOINTING, make_notebook, resumed_from, wait_until
from tests.runners.slurm.conftest import configure, slurm, slurm_job


def checkpointed(job: nblaunch.Job, at_least: int) -> bool:
    assert not job.row.final, job.status_line()
    path = job.row.job_dir / "checkpoints" / "step.json"
    try:
        return json.loads(path.read_text())["step"] >= at_least
    except (OSError, ValueError):
        return False


def submit_trainer(tmp_path: Path, steps: int) -> nblaunch.Job:
    nb = make_notebook(tmp_path / "train.ipynb", CHECKPOINTING, params="steps = 10")
    return nblaunch.submit(nb, queue="slurm", params={"steps": steps})


def checkpointed_trainer(tmp_path: Path, steps: int, at: int = 40) -> tuple[nblaunch.Job, str]:
    """A training job running in Slurm that has checkpointed step ``at``; its Slurm id."""
    job = submit_trainer(tmp_path, steps)
    wait_until(lambda: checkpointed(job, at), 180, "a first checkpoint")
    slurm_id = job.snapshot(metrics=False).external_id
    assert slurm_id is not None
    return job, slurm_id


@pytest.mark.slow
def test_a_slurm_requeue_becomes_a_new_attempt_that_resumes(
    slurm_home: Path, tmp_path: Path
) -> None:
    job, slurm_id = checkpointed_trainer(tmp_path, steps=600)
    slurm("scontrol", "requeue", slurm_id)
    assert job.wait(timeout=300) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert [a.failure_class for a in attempts] == ["preempted", None], attempts
    # Slurm restarted its own job; the restart is the new attempt.
    assert [a.external_id for a in attempts] == [slurm_id, slurm_id]
    assert slurm_job(slurm_id)["Restarts"] == "1"
    assert resumed_from(job, 2) >= 40


@pytest.mark.slow
def test_a_node_going_down_becomes_a_new_attempt_that_resumes(
    slurm_home: Path, tmp_path: Path
) -> None:
    job, slurm_id = checkpointed_trainer(tmp_path, steps=600)
    node = slurm_job(slurm_id)["NodeList"]
    slurm("scontrol", "update", f"nodename={node}", "state=down", "reason=nblaunch-test")
    assert job.wait(timeout=300) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert len(attempts) == 2 and attempts[0].failure_class in ("lost", "preempted"), attempts
    assert attempts[1].failure_class is None
    assert resumed_from(job, 2) >= 40
    other = slurm_job(attempts[1].external_id or "")["NodeList"]
    assert other != node, other


@pytest.mark.slow
def test_a_time_limit_ends_the_allocation_after_a_checkpoint_and_the_next_one_resumes(
    slurm_home: Path, tmp_path: Path
) -> None:
    # SIGTERM 50 s before the 1-minute limit; Slurm looks every ~30 s, so it comes 10-40 s in.
    configure(slurm_home, tmp_path, time_limit="1m", signal_grace_s=50)
    job = submit_trainer(tmp_path, steps=1400)  # 70 s of steps: more than one allocation
    assert job.wait(timeout=480) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert len(attempts) >= 2, attempts
    assert all(a.failure_class == "preempted" for a in attempts[:-1]), attempts
    first = json.loads((job.row.job_dir / "attempts" / "1" / "result.json").read_text())
    assert first["outcome"] == "preempted", first  # the runtime checkpointed on the signal
    # On a loaded machine the first signal can come before the kernel is up: that
    # allocation then ran nothing, and a later one is the first to checkpoint.
    assert any("preempted: True" in job.logs(a.n) for a in attempts[:-1]), job.logs()
    assert resumed_from(job, len(attempts)) > 0
    assert slurm_job(attempts[0].external_id or "")["JobState"] != "TIMEOUT"


@pytest.mark.slow
def test_a_restart_that_finished_while_no_agent_watched_is_adopted_not_rerun(
    slurm_home: Path, tmp_path: Path
) -> None:
    job, slurm_id = checkpointed_trainer(tmp_path, steps=200)
    kill_agent(slurm_home)
    slurm("scontrol", "requeue", slurm_id)
    wait_until(
        lambda: (
            slurm_job(slurm_id)["JobState"] == "COMPLETED"
            and slurm_job(slurm_id)["Restarts"] == "1"
        ),
        180,
        "Slurm's restart to finish with no agent",
    )
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()  # waiting starts an agent
    attempts = job.snapshot(metrics=False).attempts
    assert [a.external_id for a in attempts] == [slurm_id, slurm_id], attempts
    assert [a.failure_class for a in attempts] == ["preempted", None], attempts
    assert resumed_from(job, 2) >= 40


@pytest.mark.slow
def test_a_requeue_past_the_preemption_cap_is_cancelled_in_slurm(
    slurm_home: Path, tmp_path: Path
) -> None:
    configure(slurm_home, tmp_path, retry={"max_preemptions": 0})
    job, slurm_id = checkpointed_trainer(tmp_path, steps=600, at=20)
    slurm("scontrol", "requeue", slurm_id)
    assert job.wait(timeout=120) is State.PREEMPTED, job.status_line()
    wait_until(
        lambda: slurm_job(slurm_id)["JobState"] == "CANCELLED", 60, "Slurm to drop its restart"
    )
    assert len(job.snapshot(metrics=False).attempts) == 1
