"""The wandb runner against a fake W&B server on 127.0.0.1 (``fake_server``): the fake
stands in for W&B's GraphQL and file servers, which cannot be reached from here; the
real wandb client talks to it over HTTP and no wandb function is patched. The team's
Launch agent is played by wandb's own launch code (``launch_agent``)."""

from __future__ import annotations

import json
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
    folder = tmp_path / "project"
    folder.mkdir()
    notebook = make_notebook(folder / "train.ipynb", TRAIN, params=PARAMS)
    notes = "n" * 40_000  # the run config outgrows one variable: WANDB_CONFIG_0, _1
    done = run_cli(
        "submit", str(notebook), "-q", "wandb-a100", "--priority", "high",
        "-p", "lr", "0.1", "-r", "tag", "a b'c", "-r", "notes", notes, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]

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
