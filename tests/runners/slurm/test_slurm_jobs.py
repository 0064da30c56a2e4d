"""Jobs on a real Slurm cluster: they run and succeed with their Slurm job id, live
metrics and followed logs; parameters arrive intact; cancel keeps the partial
notebook; a failed cell is reported; priorities become nice values Slurm honours;
fake GPUs reach the job; a waiting job says why."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat

import nblaunch
from nblaunch import api
from nblaunch.queue.states import State
from tests.agent.test_reliability import kill_agent, running
from tests.conftest import make_notebook, run_cli, wait_until
from tests.runners.slurm.conftest import configure, slurm, slurm_job

LOGGING_UNTIL_RELEASED = """\
import json, os, time, nblaunch
json.dump(msg, open("msg.json", "w"))
print("hello from Slurm job", os.environ.get("SLURM_JOB_ID"), flush=True)
step = 0
while not os.path.exists(release):
    nblaunch.log({"loss": 1.0 / (step + 1)}, step=step)
    step += 1
    time.sleep(0.1)
"""


def logging_notebook(tmp_path: Path) -> tuple[Path, Path]:
    """A notebook logging a loss until its ``release`` file exists; that file's path."""
    nb = make_notebook(
        tmp_path / "train.ipynb", LOGGING_UNTIL_RELEASED, params="msg = ''\nrelease = ''"
    )
    return nb, tmp_path / "release"


#: quotes, expansions, command substitution, separators, a backslash and a newline
TRICKY = 'it\'s "quoted" $HOME `id` $(echo hi); rm -rf / && echo \\ done\nsecond line'


def test_a_notebook_job_runs_on_slurm_with_its_id_live_metrics_and_logs(
    slurm_home: Path, tmp_path: Path
) -> None:
    nb, release = logging_notebook(tmp_path)
    job = nblaunch.submit(
        nb,
        queue="slurm",
        name="it's $(weird) name",
        params={"msg": TRICKY, "release": str(release)},
    )
    wait_until(lambda: running(job), 120, "the job to run")
    wait_until(lambda: len(job.metrics()) >= 3, 120, "metrics in the store while it runs")
    follow = subprocess.Popen(
        [sys.executable, "-m", "nblaunch", "logs", job.id, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    release.touch()
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert "hello from Slurm job" in out, out

    shown = json.loads(run_cli("show", job.id, "--json").stdout)
    slurm_id = shown["external_id"]
    assert slurm_id and slurm_id.isdigit(), shown
    assert shown["attempts"][0]["external_id"] == slurm_id
    assert f"hello from Slurm job {slurm_id}" in job.logs()
    facts = slurm_job(slurm_id)
    assert facts["JobState"] == "COMPLETED", facts
    assert facts["Comment"] == f"nblaunch:{job.id}:1", facts
    assert f"slurm job {slurm_id}" in job.status_line()
    # The parameter reached the notebook exactly as given, through no shell.
    written = json.loads((job.run_dir / "workspace" / "msg.json").read_text())
    assert written == TRICKY
    assert job.metrics()[-1]["name"] == "loss"


def test_cancel_stops_within_the_grace_and_keeps_the_partial_notebook_and_a_failed_cell_is_shown(
    slurm_home: Path, tmp_path: Path
) -> None:
    looping = make_notebook(
        tmp_path / "loop.ipynb",
        "print('partial work done', flush=True)",
        "import time\nwhile True:\n    time.sleep(0.1)",
    )
    failing = make_notebook(
        tmp_path / "fail.ipynb", "x = 1", "raise ValueError('learning rate too high')"
    )
    loop = nblaunch.submit(looping, queue="slurm")
    fail = nblaunch.submit(failing, queue="slurm")
    wait_until(lambda: running(loop), 120, "the looping job to run")
    wait_until(lambda: "partial work done" in loop.logs(), 120, "the looping job's first cell")
    asked = time.monotonic()
    loop.cancel()
    assert loop.wait(timeout=60) is State.CANCELLED
    assert time.monotonic() - asked < 10 + 15  # its queue's grace, plus Slurm's own steps
    slurm_id = loop.snapshot(metrics=False).external_id
    assert slurm_id is not None
    wait_until(
        lambda: slurm_job(slurm_id)["JobState"] not in ("RUNNING", "COMPLETING"),
        30,
        "the Slurm job to end",
    )
    partial = nbformat.read(loop.output_notebook, as_version=4)
    texts = "".join(o.get("text", "") for c in partial.cells for o in c.get("outputs", []))
    assert "partial work done" in texts

    assert fail.wait(timeout=120) is State.FAILED
    shown = run_cli("show", fail.id)
    assert "ValueError: learning rate too high (cell 1)" in shown.stdout, shown.stdout
    error = json.loads(run_cli("show", fail.id, "--json").stdout)["error"]
    assert error == {
        "ename": "ValueError",
        "evalue": "learning rate too high",
        "cell_index": 1,
    }, error


def test_a_high_priority_job_starts_before_an_earlier_low_one_and_waiting_jobs_say_why(
    slurm_home: Path, tmp_path: Path
) -> None:
    # One slot: every job takes node1 whole.
    configure(slurm_home, tmp_path, extra_sbatch_args=["--exclusive", "--nodelist=node1"])
    blocker = slurm(
        "sbatch",
        "--parsable",
        "--exclusive",
        "--nodelist=node1",
        "--output=/dev/null",
        "--wrap",
        "sleep 600",
    ).strip()
    wait_until(lambda: slurm_job(blocker)["JobState"] == "RUNNING", 60, "the blocker to run")
    nb = make_notebook(tmp_path / "quick.ipynb", "print('ran')")
    low = nblaunch.submit(nb, queue="slurm", name="low", priority="low")
    high = nblaunch.submit(nb, queue="slurm", name="high", priority="high")
    for job in (low, high):
        wait_until(
            lambda job=job: job.snapshot(metrics=False).pending_reason, 60, "a pending reason"
        )
    table = run_cli("jobs").stdout
    assert "pending: " in table, table
    shown = {s.name: s for s in api.jobs()}
    assert shown["low"].pending_reason in ("Resources", "Priority"), shown["low"]
    low_id, high_id = shown["low"].external_id, shown["high"].external_id
    assert low_id and high_id
    priority = {i: int(slurm_job(i)["Priority"]) for i in (low_id, high_id)}
    assert priority[high_id] > priority[low_id], priority

    slurm("scancel", blocker)
    assert high.wait(timeout=120) is State.SUCCEEDED, high.logs()
    assert low.wait(timeout=120) is State.SUCCEEDED, low.logs()
    started = {j.name: j._store.attempts(j.id)[-1].running_at for j in (low, high)}
    assert started["high"] < started["low"], started


def test_a_two_gpu_job_sees_two_fake_devices(slurm_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path / "gpus.ipynb",
        "import os\nprint('devices', os.environ['CUDA_VISIBLE_DEVICES'], flush=True)",
    )
    job = nblaunch.submit(nb, queue="slurm", gpus=2, strategy="none")
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()
    assert "devices 0,1" in job.logs()
    facts = slurm_job(job.snapshot(metrics=False).external_id or "")
    assert "gpu:2" in facts.get("TresPerNode", "") + facts.get("TRES", ""), facts


def test_a_slurm_job_outlives_its_agent_and_the_next_agent_follows_it(
    slurm_home: Path, tmp_path: Path
) -> None:
    nb, release = logging_notebook(tmp_path)
    job = nblaunch.submit(nb, queue="slurm", params={"release": str(release)})
    wait_until(lambda: running(job), 120, "the job to run")
    kill_agent(slurm_home)
    release.touch()
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()  # waiting starts an agent
    assert len(job.snapshot(metrics=False).attempts) == 1
