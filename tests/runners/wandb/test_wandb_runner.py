"""The wandb runner against a fake W&B server on 127.0.0.1 (``fake_server``): the fake
stands in for W&B's GraphQL and file servers, which cannot be reached from here; the
real wandb client talks to it over HTTP and no wandb function is patched. The team's
Launch agent is played by wandb's own launch code (``launch_agent``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.conftest import make_notebook, run_cli, wait_until, write_queues
from tests.runners.wandb.fake_server import FakeWandb
from tests.runners.wandb.launch_agent import run_item

QUEUE = """\
[queues.wandb-a100]
runner = "wandb"
entity = "team"
project = "proj"
queue = "gpu-queue"
resource = "local-process"
poll_interval_s = 0.2
"""

TRAIN = """\
import wandb
run = wandb.init()
for i in range(steps):
    wandb.log({"loss": 1.0 / (i + 1)})
print("lr", lr, "tag", repr(tag), "notes", len(notes), "steps", steps)
run.finish()
"""
PARAMS = "lr = 0.01\ntag = 'x'\nnotes = ''\nsteps = 3\n"


def submit_to_wandb(tmp_path: Path, cells: str = TRAIN, *flags: str) -> str:
    """Submit a notebook of ``cells`` (in its own folder) to the wandb queue; its job id."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    notebook = make_notebook(folder / "train.ipynb", cells, params=PARAMS)
    done = run_cli("submit", str(notebook), "-q", "wandb-a100", *flags, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def job_json(job_id: str) -> dict[str, Any]:
    done = run_cli("show", job_id, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def one_item(server: FakeWandb) -> dict[str, Any]:
    items = wait_until(lambda: server.queue_items("team", "gpu-queue"), 90, "the queue item")
    assert len(items) == 1, items
    return items[0]


def test_a_job_goes_through_a_wandb_launch_queue_and_comes_back(
    nbl_home: Path, tmp_path: Path, fake_wandb: FakeWandb, python_on_path: None
) -> None:
    write_queues(nbl_home, QUEUE)
    notes = "n" * 40_000  # the run config outgrows one variable: WANDB_CONFIG_0, _1
    job_id = submit_to_wandb(
        tmp_path, TRAIN,
        "--priority", "high", "-p", "lr", "0.1", "-r", "tag", "a b'c", "-r", "notes", notes,
    )  # fmt: skip

    item = one_item(fake_wandb)
    spec = item["run_spec"]
    assert spec["job"] == "team/proj/nblaunch-train:v0"
    assert spec["overrides"]["run_config"] == {"lr": 0.1, "tag": "a b'c", "notes": notes}
    assert spec["resource"] == "local-process"
    assert spec["run_id"] == f"nbl-{job_id}"
    assert item["priority"] == 1
    waiting = wait_until(
        lambda: job_json(job_id)["pending_reason"], 30, "the job to show it waits in W&B"
    )
    assert waiting == "waiting in W&B Launch queue 'gpu-queue'"

    project = run_item(item, "team", "gpu-queue")

    from wandb.sdk.launch.api import LaunchApi
    from wandb.sdk.launch.utils import MAX_ENV_LENGTHS

    env = project.get_env_vars_dict(LaunchApi(), MAX_ENV_LENGTHS["LocalProcessRunner"])
    assert "WANDB_CONFIG" not in env and {"WANDB_CONFIG_0", "WANDB_CONFIG_1"} <= set(env)
    final = wait_until(
        lambda: job_json(job_id)["state"] in ("succeeded", "failed", "lost") and job_json(job_id),
        60,
        "the job to end",
    )
    assert final["state"] == "succeeded", final
    run = fake_wandb.run("team", "proj", f"nbl-{job_id}")
    assert run["summary"]["nblaunch/result"]["outcome"] == "succeeded"
    output = nbformat.reads(run["files"]["output.ipynb"].decode(), as_version=4)
    printed = "".join(o.get("text", "") for c in output.cells for o in c.get("outputs", []))
    assert 'lr 0.1 tag "a b\'c" notes 40000 steps 3' in printed
    metrics = json.loads(run_cli("metrics", job_id, "--name", "loss", "--json").stdout)
    assert [m["value"] for m in metrics] == [1.0, 0.5, pytest.approx(1 / 3)]


def test_a_queued_job_is_a_wandb_job_and_cancelling_it_deletes_the_queue_item(
    nbl_home: Path, tmp_path: Path, fake_wandb: FakeWandb
) -> None:
    import wandb
    from wandb.apis.public.jobs import Job

    write_queues(nbl_home, QUEUE)
    job_id = submit_to_wandb(tmp_path)
    item = one_item(fake_wandb)

    # wandb's own job reader loads it (downloading wandb-job.json from the server) ...
    reader = Job(wandb.Api(), "team/proj/nblaunch-train:latest", path=str(tmp_path / "reader"))
    assert reader._entrypoint == ["python", "-m", "nblaunch.runtime", "."]
    assert not reader._notebook_job
    assert set(reader._input_types.to_json()["params"]["type_map"]) == {
        "lr", "tag", "notes", "steps",
    }  # fmt: skip
    ours = reader._job_info
    # ... and it has the shape of the job `wandb job create` builds from the same folder.
    exported = tmp_path / "exported"
    assert run_cli("export", job_id, "--wandb-job", str(exported)).returncode == 0
    created = run_cli_wandb(
        "job", "create", "code", str(exported), "-e", "team", "-p", "proj", "-n", "reference",
        "--entry-point", "python -m nblaunch.runtime .",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    reference = json.loads(
        fake_wandb.artifact("team", "proj", "reference:latest")["files"]["wandb-job.json"]
    )
    assert ours.keys() == reference.keys()
    assert ours["source"].keys() == reference["source"].keys()
    for key in ("_version", "source_type", "runtime", "output_types"):
        assert ours[key] == reference[key], key
    assert ours["source"]["entrypoint"] == reference["source"]["entrypoint"]
    assert ours["input_types"]["wb_type"] == reference["input_types"]["wb_type"] == "typedDict"

    done = run_cli("cancel", job_id, "--json")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: job_json(job_id)["state"] == "cancelled", 30, "the job to be cancelled")
    assert fake_wandb.queue_items("team", "gpu-queue") == []
    deleted = [v for name, v in fake_wandb.operations if name == "DeleteFromRunQueue"]
    assert [v["runQueueItemId"] for v in deleted] == [item["id"]]


def test_a_running_job_streams_its_history_and_cancelling_it_stops_the_run(
    nbl_home: Path, tmp_path: Path, fake_wandb: FakeWandb
) -> None:
    write_queues(nbl_home, QUEUE)
    job_id = submit_to_wandb(tmp_path)
    item = one_item(fake_wandb)
    run_id = f"nbl-{job_id}"
    # The team's Launch agent takes the item; the job's process logs into its run.
    fake_wandb.claim(item["id"], run_id)
    fake_wandb.set_run_state("team", "proj", run_id, "running")
    fake_wandb.log_rows("team", "proj", run_id, [{"loss": 2.0}, {"loss": 1.5}])

    def losses() -> list[float]:
        rows = json.loads(run_cli("metrics", job_id, "--name", "loss", "--json").stdout)
        return [r["value"] for r in rows]

    assert wait_until(lambda: losses() == [2.0, 1.5] and losses(), 30, "the live loss")
    assert job_json(job_id)["state"] == "running"
    fake_wandb.log_rows("team", "proj", run_id, [{"loss": 1.0}])
    wait_until(lambda: losses() == [2.0, 1.5, 1.0], 30, "the next point")

    assert run_cli("cancel", job_id).returncode == 0
    wait_until(lambda: run_id in fake_wandb.stop_requested, 30, "W&B's stop of the run")
    fake_wandb.set_run_state("team", "proj", run_id, "killed")  # the run's process stops
    wait_until(lambda: job_json(job_id)["state"] == "cancelled", 30, "the job to be cancelled")


def test_a_failing_notebook_fails_the_job_with_its_own_error(
    nbl_home: Path, tmp_path: Path, fake_wandb: FakeWandb, python_on_path: None
) -> None:
    write_queues(nbl_home, QUEUE)
    job_id = submit_to_wandb(tmp_path, "raise ValueError('bad lr ' + str(lr))")
    run_item(one_item(fake_wandb), "team", "gpu-queue")
    final = wait_until(
        lambda: job_json(job_id)["state"] != "running" and job_json(job_id)["state"] in
        ("succeeded", "failed", "lost") and job_json(job_id),
        60,
        "the job to end",
    )  # fmt: skip
    assert final["state"] == "failed", final
    assert final["error"]["ename"] == "ValueError"
    assert final["error"]["evalue"] == "bad lr 0.01"


def test_a_wandb_queue_without_credentials_refuses_jobs_in_one_line(
    nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    write_queues(nbl_home, QUEUE)
    notebook = make_notebook(tmp_path / "train.ipynb", TRAIN, params=PARAMS)
    done = run_cli("submit", str(notebook), "-q", "wandb-a100")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "nblaunch: error: queue 'wandb-a100' sends jobs to W&B Launch, which needs W&B "
        "credentials; run `wandb login` (or set WANDB_API_KEY) and submit again"
    ]
    assert not (nbl_home / "jobs").exists() or not any((nbl_home / "jobs").iterdir())


def run_cli_wandb(*args: str) -> subprocess.CompletedProcess[str]:
    # wandb's CLI keeps its debug logs in ./wandb: not in the checkout
    return subprocess.run(
        [sys.executable, "-m", "wandb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.environ["WANDB_DIR"],
    )
