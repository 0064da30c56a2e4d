"""``nblaunch sync``: a job preempted twice left three offline W&B runs with one run
id, each starting at step 0 again; what reaches W&B (the fake server of
``fake_server``, standing in at the HTTP boundary for W&B's own, which cannot be
reached from here) is one history whose steps only go up."""

from __future__ import annotations

import json
from pathlib import Path

import nblaunch
from tests.conftest import make_notebook, run_cli, wait_until
from tests.runners.wandb.fake_server import FakeWandb

TRAIN = """\
import json, os, time, wandb, nblaunch
run = wandb.init(project="proj")
ckpt = os.path.join(os.environ["NBLAUNCH_CHECKPOINT_DIR"], "step.json")
step = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0

def save(step):
    json.dump({"step": step}, open(ckpt + ".tmp", "w"))
    os.replace(ckpt + ".tmp", ckpt)

while step < steps and not nblaunch.preempted():
    time.sleep(0.05)
    step += 1
    wandb.log({"loss": 1.0 / step, "trained_step": step})
    if step % 10 == 0:
        save(step)
save(step)
run.finish()
"""


def trained(job: nblaunch.Job, attempt: int) -> int:
    assert not job.row.final, job.status_line()
    steps = [r["value"] for r in job.metrics("trained_step") if r["attempt"] == attempt]
    return int(max(steps, default=0))


def test_sync_uploads_three_offline_attempts_as_one_monotone_history(
    nbl_home: Path, tmp_path: Path, wandb_env: dict[str, str], fake_server: FakeWandb
) -> None:
    notebook = make_notebook(tmp_path / "train.ipynb", TRAIN, params="steps = 150")
    job = nblaunch.submit(notebook)  # not logged in: every attempt's run is offline
    wait_until(lambda: trained(job, 1) >= 30, 180, "attempt 1 to train 30 steps")
    assert run_cli("preempt", job.id).returncode == 0
    wait_until(lambda: trained(job, 2) >= 50, 180, "attempt 2 to train past step 50")
    assert run_cli("preempt", job.id).returncode == 0
    assert job.wait(timeout=300).value == "succeeded", job.logs()
    assert job.row.preemptions == 2
    logged = [[r["value"] for r in job.metrics("loss") if r["attempt"] == n] for n in (1, 2, 3)]
    assert all(logged), logged

    done = run_cli("sync", job.id, "--entity", "team", "--json", **wandb_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["how"] for s in report["segments"]] == ["wandb sync", "replayed", "replayed"]

    history = fake_server.history("team", "proj", f"nbl-{job.id}")
    steps = [row["_step"] for row in history]
    assert steps == sorted(set(steps)), steps  # in order, nothing replayed from 0
    assert [row["loss"] for row in history] == [v for values in logged for v in values]

    again = json.loads(run_cli("sync", job.id, "--entity", "team", "--json", **wandb_env).stdout)
    assert {s["how"] for s in again["segments"]} == {"already synced"}
    assert len(fake_server.history("team", "proj", f"nbl-{job.id}")) == len(history)
