"""The fake W&B server against the real installed wandb: every flow the wandb runner
and the team's Launch agent use, end to end over HTTP (see ``fake_server``)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.runners.wandb.fake_server import FakeWandb

wandb = pytest.importorskip("wandb")

JOB = "team/proj/nblaunch-job-abc:latest"


def _settings() -> Any:
    return wandb.Settings(silent=True, disable_job_creation=True, x_disable_stats=True)


def _publish(tmp_path: Path) -> tuple[Any, Any, Path]:
    """What nblaunch's submit does: a short run logging a code and a job artifact."""
    from wandb.sdk.artifacts._internal_artifact import InternalArtifact

    code_dir = tmp_path / "code"
    (code_dir / "pkg").mkdir(parents=True)
    (code_dir / "train.py").write_text("print('train')\n")
    (code_dir / "pkg" / "data.bin").write_bytes(bytes(range(256)) * 8)
    run = wandb.init(
        entity="team", project="proj", job_type="nblaunch-submit", settings=_settings()
    )
    code = wandb.Artifact("nblaunch-code-abc", type="code")
    code.add_dir(str(code_dir))
    run.log_artifact(code)
    code.wait()
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    description = {
        "_version": "v0",
        "source_type": "artifact",
        "source": {
            "entrypoint": ["python", "train.py"],
            "notebook": False,
            "artifact": f"wandb-artifact://_id/{code.id}",
        },
        "input_types": {
            "wb_type": "typedDict",
            "params": {"type_map": {"lr": {"wb_type": "number"}}},
        },
        "output_types": {"wb_type": "typedDict", "params": {"type_map": {}}},
        "runtime": "3.11",
    }
    (job_dir / "wandb-job.json").write_text(json.dumps(description))
    (job_dir / "requirements.frozen.txt").write_text("numpy==2.0.0\n")
    # wandb reserves the "job" type for its own (InternalArtifact) job artifacts
    job = InternalArtifact("nblaunch-job-abc", type="job")
    job.add_file(str(job_dir / "wandb-job.json"))
    job.add_file(str(job_dir / "requirements.frozen.txt"))
    run.log_artifact(job, aliases=["latest"])
    job.wait()
    run.finish()
    return code, job, code_dir


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_online_run_logs_code_and_job_artifacts(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    code, job, code_dir = _publish(tmp_path)

    stored_code = fake_wandb.artifact("team", "proj", "nblaunch-code-abc:latest")
    assert stored_code["id"] == code.id and stored_code["state"] == "COMMITTED"
    assert stored_code["type"] == "code" and stored_code["files"] == _files(code_dir)
    stored_job = fake_wandb.artifact("team", "proj", "nblaunch-job-abc:v0")
    assert stored_job["id"] == job.id and stored_job["aliases"] == ["latest"]
    assert set(stored_job["files"]) == {"wandb-job.json", "requirements.frozen.txt"}
    assert stored_job["run"] == stored_code["run"]
    (submit,) = fake_wandb.runs.values()
    assert submit["job_type"] == "nblaunch-submit" and submit["state"] == "finished"
    assert (fake_wandb.unknown, fake_wandb.errors) == ([], [])


def test_reading_artifacts_back(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    from wandb.apis.public.jobs import Job

    code, _, code_dir = _publish(tmp_path)
    api = wandb.Api()

    root = Path(api.artifact(JOB, type="job").download(str(tmp_path / "dl")))
    assert _files(root) == fake_wandb.artifact("team", "proj", "nblaunch-job-abc:latest")["files"]

    reader = Job(api, JOB, path=str(tmp_path / "job-dl"))
    assert reader._job_info["source"]["artifact"] == f"wandb-artifact://_id/{code.id}"
    assert str(reader._input_types) == "{'lr': Number}"
    by_id = reader._get_code_artifact(reader._job_info["source"]["artifact"])
    assert by_id.id == code.id
    assert _files(Path(by_id.download(str(tmp_path / "code-dl")))) == _files(code_dir)
    assert api._artifact_from_id(code.id).name == "nblaunch-code-abc:v0"
    assert (fake_wandb.unknown, fake_wandb.errors) == ([], [])


def test_launch_add_and_the_agent_side(fake_wandb: FakeWandb, tmp_path: Path) -> None:
    from wandb.sdk.launch import launch_add
    from wandb.sdk.launch.api import LaunchApi

    _publish(tmp_path)
    queued = launch_add(
        job=JOB,
        queue_name="gpu-queue",
        entity="team",
        project="proj",
        config={"overrides": {"run_config": {"lr": 0.1}}},
        resource="local-process",
        resource_args={"local-process": {"env": ["A=1"]}},
        template_variables={"gpus": 2},
        priority=1,
        run_id="nbl-xyz",
    )
    (item,) = fake_wandb.queue_items("team", "gpu-queue")
    assert item["id"] == queued.id and item["state"] == "PENDING"
    assert item["run_spec"]["job"] == JOB and item["run_spec"]["run_id"] == "nbl-xyz"
    assert item["run_spec"]["overrides"] == {"run_config": {"lr": 0.1}}
    assert item["run_spec"]["resource_args"] == {"local-process": {"env": ["A=1"]}}
    assert (item["priority"], item["template_variables"]) == (1, {"gpus": 2})
    assert item["associated_run_id"] is None
    assert queued.state == "pending"

    fake_wandb.claim(item["id"], "nbl-xyz")
    assert queued.state == "claimed"
    assert fake_wandb.queue_items("team", "gpu-queue")[0]["associated_run_id"] == "nbl-xyz"
    fake_wandb.fail_item(item["id"])
    assert queued.state == "failed"
    queued.delete()
    assert fake_wandb.queue_items("team", "gpu-queue") == []
    with pytest.raises(ValueError, match="Could not find QueuedRunItem"):
        _ = queued.state  # wandb's answer for a deleted item

    # the agent's own calls: pop (lease), ack (claim with the run), fail
    second = launch_add(job=JOB, queue_name="gpu-queue", entity="team", project="proj")
    agent = LaunchApi()
    popped = agent.pop_from_run_queue("gpu-queue", "team", "model-registry")
    assert popped is not None and popped["runQueueItemId"] == second.id
    assert agent.ack_run_queue_item(second.id, "nbl-2")
    assert fake_wandb.queue_items("team", "gpu-queue")[0]["state"] == "CLAIMED"
    assert agent.fail_run_queue_item(second.id, "boom", "agent")
    assert second.state == "failed"
    assert (fake_wandb.unknown, fake_wandb.errors) == ([], [])


def test_online_run_logs_resumes_and_reads_back(fake_wandb: FakeWandb) -> None:
    run = wandb.init(
        id="nbl-xyz", project="proj", entity="team", resume="allow", settings=_settings()
    )
    run.config["lr"] = 0.1
    run.log({"loss": 1.0}, step=5)
    run.summary["x"] = 1
    run.finish(exit_code=0)
    assert [row["_step"] for row in fake_wandb.history("team", "proj", "nbl-xyz")] == [5]
    assert fake_wandb.run("team", "proj", "nbl-xyz")["state"] == "finished"

    run = wandb.init(
        id="nbl-xyz", project="proj", entity="team", resume="allow", settings=_settings()
    )
    run.log({"loss": 0.5})
    run.log({"loss": 0.25})
    run.finish(exit_code=1)
    rows = fake_wandb.history("team", "proj", "nbl-xyz")
    assert [(row["_step"], row["loss"]) for row in rows] == [(5, 1), (6, 0.5), (7, 0.25)]
    stored = fake_wandb.run("team", "proj", "nbl-xyz")
    assert stored["state"] == "failed" and stored["config"] == {"lr": 0.1}

    read = wandb.Api().run("team/proj/nbl-xyz")
    assert read.state == "failed"
    assert read.summary["loss"] == 0.25 and read.summary["x"] == 1
    assert read.config == {"lr": 0.1}
    assert [row["loss"] for row in read.scan_history(min_step=6)] == [0.5, 0.25]
    assert [row["_step"] for row in read.history(pandas=False, samples=2)] == [5, 6]
    assert [row["loss"] for row in read.history(keys=["loss"], pandas=False)] == [1, 0.5, 0.25]

    fake_wandb.log_rows("team", "proj", "nbl-xyz", [{"loss": 0.125}])
    fake_wandb.set_run_state("team", "proj", "nbl-xyz", "running")
    read = wandb.Api().run("team/proj/nbl-xyz")
    assert read.state == "running"
    assert [row["_step"] for row in read.scan_history(min_step=7)] == [7, 8]
    from wandb.sdk.launch.api import LaunchApi

    assert not LaunchApi().check_stop_requested("proj", "team", "nbl-xyz")
    read.stop()
    assert fake_wandb.stop_requested == {"nbl-xyz"}
    assert LaunchApi().check_stop_requested("proj", "team", "nbl-xyz")
    assert (fake_wandb.unknown, fake_wandb.errors) == ([], [])


def test_wandb_sync_of_offline_runs(fake_wandb: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(id="nbl-off", project="proj", entity="team", settings=_settings())
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.summary["done"] = True
    run.finish()
    folder = Path(run.settings.sync_dir)
    monkeypatch.delenv("WANDB_MODE")
    assert fake_wandb.operations == []  # offline: nothing reached the server

    sync = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    rows = fake_wandb.history("team", "proj", "nbl-off")
    assert [(row["_step"], row["loss"]) for row in rows] == [(0, 1), (1, 0.5), (2, 1 / 3)]
    stored = fake_wandb.run("team", "proj", "nbl-off")
    assert stored["state"] == "finished" and stored["summary"]["done"] is True
    assert (fake_wandb.unknown, fake_wandb.errors) == ([], [])


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
        return json.load(response)


def test_file_stream_rows_retries_and_states(fake_wandb: FakeWandb) -> None:
    url = f"{fake_wandb.url}/files/team/proj/nbl-fs/file_stream"
    lines = [json.dumps({"_step": step, "loss": step}) for step in range(3)]
    chunk = {"files": {"wandb-history.jsonl": {"offset": 0, "content": lines[:2]}}}
    _post(url, chunk)
    _post(url, chunk)  # a retried request: the same lines at the same offsets
    assert fake_wandb.run("team", "proj", "nbl-fs")["state"] == "running"
    _post(url, {"files": {"wandb-history.jsonl": {"offset": 2, "content": lines[2:]}}})
    _post(url, {"files": {"wandb-summary.json": {"offset": 0, "content": ['{"loss": 2}']}}})
    _post(url, {"preempting": True})
    assert fake_wandb.run("team", "proj", "nbl-fs")["state"] == "preempting"
    _post(url, {"complete": True, "exitcode": 1})
    stored = fake_wandb.run("team", "proj", "nbl-fs")
    assert [row["_step"] for row in stored["history"]] == [0, 1, 2]
    assert (stored["state"], stored["summary"]) == ("failed", {"loss": 2})


def test_unknown_operation_answers_a_graphql_error(fake_wandb: FakeWandb) -> None:
    body = {"query": "query NoSuchThing { nothing }", "variables": {"a": 1}}
    answer = _post(f"{fake_wandb.url}/graphql", body)
    assert answer == {"errors": [{"message": "fake W&B server: unknown operation NoSuchThing"}]}
    assert fake_wandb.unknown == ["NoSuchThing"]
    assert fake_wandb.operations == [("NoSuchThing", {"a": 1})]
