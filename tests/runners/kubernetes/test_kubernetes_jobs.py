"""The Kubernetes runner's whole state machine, driven by a real agent process against
an API server on 127.0.0.1 (kmock's emulator, ``cluster.py``) through the official
client: nothing in the client or the runner is patched. The emulator's Job controller
and kubelet run each pod's command as a local process, so the bundle really travels
in its ConfigMap, the runtime really runs in the "pod", and its metrics, output
notebook and result really come back through the followed log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import nblaunch
from nblaunch.queue.states import State
from tests.agent.test_reliability import kill_agent, running
from tests.conftest import CHECKPOINTING, make_notebook, resumed_from, run_cli, wait_until
from tests.runners.kubernetes.conftest import configure

LOGGING_UNTIL_RELEASED = """\
import json, os, time, nblaunch
json.dump(msg, open("msg.json", "w"))
print("hello from pod", os.environ.get("JOB_COMPLETION_INDEX"), flush=True)
step = 0
while not os.path.exists(release):
    nblaunch.log({"loss": 1.0 / (step + 1)}, step=step)
    step += 1
    time.sleep(0.1)
print("released after", step, "steps", flush=True)
"""


def logging_job(tmp_path: Path, **submit: Any) -> tuple[nblaunch.Job, Path]:
    nb = make_notebook(
        tmp_path / "train.ipynb", LOGGING_UNTIL_RELEASED, params="msg = ''\nrelease = ''"
    )
    release = tmp_path / "release"
    params = {"msg": 'it\'s "quoted" $HOME `id`', "release": str(release)}
    return nblaunch.submit(nb, queue="k8s", params=params, **submit), release


def job_name(job: nblaunch.Job) -> str:
    name = job.snapshot(metrics=False).external_id
    assert name is not None
    return name


def lead_pod(cluster: Any, job: nblaunch.Job, nth: int = 0) -> dict[str, Any] | None:
    """The ``nth`` index-0 pod of the job's Kubernetes Job (oldest first), once running."""
    pods = [
        p
        for p in cluster.pods(job_name(job))
        if p["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") == "0"
    ]
    pods.sort(
        key=lambda p: (
            p["metadata"]["creationTimestamp"] + p["metadata"]["resourceVersion"].zfill(12)
        )
    )
    if len(pods) <= nth or pods[nth]["status"].get("phase") != "Running":
        return None
    return pods[nth]


def checkpointed(cluster: Any, job: nblaunch.Job, at_least: int) -> bool:
    assert not job.row.final, job.status_line()
    path = cluster.root / "pvc" / "checkpoints" / job.id / "step.json"
    try:
        return json.loads(path.read_text())["step"] >= at_least
    except (OSError, ValueError):
        return False


def checkpointed_trainer(cluster: Any, tmp_path: Path, steps: int, **submit: Any) -> nblaunch.Job:
    """A training job on the cluster that has checkpointed step 40 (on its PVC)."""
    nb = make_notebook(tmp_path / "train.ipynb", CHECKPOINTING, params="steps = 10")
    job = nblaunch.submit(nb, queue="k8s", params={"steps": steps}, **submit)
    wait_until(lambda: checkpointed(cluster, job, 40), 120, "a first checkpoint")
    return job


def test_a_notebook_job_runs_as_a_kubernetes_job_with_live_metrics_and_logs(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job, release = logging_job(tmp_path, timeout_s=600)
    wait_until(lambda: running(job), 120, "the job to run")
    name = job_name(job)
    assert re.fullmatch(rf"nbl-{job.id}-1", name)
    # The job's time limit becomes the Job's deadline once its pod runs (queue grace 5 s).
    deadline = wait_until(
        lambda: cluster.job(name)["spec"].get("activeDeadlineSeconds"), 30, "a deadline"
    )
    assert 605 <= deadline <= 605 + 120
    # Metrics reach the store while it runs: they travel in the pod's log.
    wait_until(lambda: len(job.metrics("loss")) >= 3, 120, "metrics in the store while it runs")
    follow = subprocess.Popen(
        [sys.executable, "-m", "nblaunch", "logs", job.id, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: "hello from pod 0" in job.logs(), 60, "the pod's log in the attempt")
    release.touch()
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()
    out, _ = follow.communicate(timeout=60)
    assert "hello from pod 0" in out and "released after" in out
    # Records are parsed, not shown; the output notebook came back whole.
    assert "@@nblaunch:" not in job.logs()
    output = job.output_notebook
    assert output is not None
    nb = nbformat.read(output, as_version=4)
    assert any(
        "released after" in o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
    )
    snap = job.snapshot()
    assert snap.external_id == name and snap.attempts[0].external_id == name
    assert [p["step"] for p in job.metrics("loss")][:3] == [0, 1, 2]
    # The cluster ran exactly one pod; the Job and what it owns are the runner's.
    k8s_job = cluster.job(name)
    assert any(c["type"] == "Complete" for c in k8s_job["status"]["conditions"])
    assert len(cluster.pods(name)) == 1
    configmap = cluster.core.read_namespaced_config_map(f"{name}-bundle", "default")
    assert configmap.immutable is True
    assert configmap.metadata.owner_references[0].uid == k8s_job["metadata"]["uid"]


def test_a_waiting_job_says_what_the_scheduler_says_and_cancel_ends_it(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job, _ = logging_job(tmp_path, gpus=4)  # the cluster's one node has 2
    wait_until(
        lambda: "Insufficient" in (job.snapshot(metrics=False).pending_reason or ""),
        120,
        "the scheduler's reason",
    )
    reason = job.snapshot(metrics=False).pending_reason
    assert reason == "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    listing = run_cli("jobs")
    assert "Insufficient nvidia.com/gpu" in listing.stdout
    assert job.cancel() in (State.CANCELLED, State.RUNNING, State.QUEUED, State.STARTING)
    assert job.wait(timeout=60) is State.CANCELLED
    name = job_name(job)
    wait_until(lambda: not cluster.pods(name), 30, "the Job's pods to go")
    assert name not in [j.metadata.name for j in cluster.batch.list_namespaced_job("default").items]


def test_a_cell_error_fails_the_kubernetes_job_at_once_without_retry(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    nb = make_notebook(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('bad lr')")
    job = nblaunch.submit(nb, queue="k8s")
    assert job.wait(timeout=120) is State.FAILED
    snap = job.snapshot(metrics=False)
    assert snap.error is not None
    assert (snap.error.ename, snap.error.evalue, snap.error.cell_index) == (
        "ValueError",
        "bad lr",
        1,
    )
    assert len(snap.attempts) == 1
    name = job_name(job)
    failed = [c for c in cluster.job(name)["status"]["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["reason"] == "PodFailurePolicy"
    # The exit code the podFailurePolicy acts on; the Job controller made no second pod.
    (pod,) = cluster.pods(name)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 86
    # The partial notebook came back with the failing cell's traceback.
    output = job.output_notebook
    assert output is not None and "bad lr" in output.read_text()


@pytest.mark.slow
def test_a_disrupted_pod_becomes_a_preempted_attempt_and_the_next_resumes(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job = checkpointed_trainer(cluster, tmp_path, steps=300)
    first = wait_until(lambda: lead_pod(cluster, job), 30, "the running pod")
    cluster.disrupt(first["metadata"]["name"], reason="PreemptionByScheduler")
    assert job.wait(timeout=240) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert [a.failure_class for a in attempts] == ["preempted", None], attempts
    # The Job controller replaced the pod; the next attempt is that pod, in the same Job.
    name = job_name(job)
    assert [a.external_id for a in attempts] == [name, name]
    assert len(cluster.pods(name)) == 2
    assert resumed_from(job, 2) >= 40
    assert "stopped at" in job.logs(1) and "preempted: True" in job.logs(1)
    steps = [m["step"] for m in job.metrics("step_done")]
    assert max(steps) == 300


@pytest.mark.slow
def test_kueue_admission_and_preemption(nbl_home: Path, cluster: Any, tmp_path: Path) -> None:
    configure(nbl_home, cluster, kueue_queue='"team-a"', kueue_priority_classes='{high = "prod"}')
    nb = make_notebook(tmp_path / "train.ipynb", CHECKPOINTING, params="steps = 10")
    job = nblaunch.submit(nb, queue="k8s", params={"steps": 200}, priority="high")
    reason = wait_until(lambda: job.snapshot(metrics=False).pending_reason, 60, "waiting")
    assert reason == "suspended: waiting for Kueue to admit it"
    name = job_name(job)
    labels = cluster.job(name)["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert labels["kueue.x-k8s.io/priority-class"] == "prod"

    def admit(suspend: bool) -> None:  # what Kueue does: flip spec.suspend
        cluster.batch.patch_namespaced_job(name, "default", {"spec": {"suspend": suspend}})

    admit(False)
    wait_until(lambda: checkpointed(cluster, job, 40), 120, "a first checkpoint")
    admit(True)  # preempted by a workload of higher priority
    wait_until(lambda: job.snapshot(metrics=False).pending_reason == reason, 120, "waiting again")
    assert [a.failure_class for a in job.snapshot(metrics=False).attempts][:1] == ["preempted"]
    admit(False)
    assert job.wait(timeout=240) is State.SUCCEEDED, job.logs()
    attempts = job.snapshot(metrics=False).attempts
    assert [a.failure_class for a in attempts] == ["preempted", None]
    assert resumed_from(job, 2) >= 40


def test_a_dropped_watch_resumes_from_its_last_resource_version(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job, release = logging_job(tmp_path)
    wait_until(lambda: running(job), 120, "the job to run")
    wait_until(lambda: len(job.metrics("loss")) >= 2, 60, "metrics")

    def runner_calls(watch: bool) -> list[dict[str, Any]]:
        """The runner's requests for the queue's Jobs (the test cluster makes its own)."""
        return [
            r
            for r in cluster.requests("/jobs")
            if "nblaunch.dev/queue=k8s" in r["params"].get("labelSelector", "")
            and (r["params"].get("watch") == "true") == watch
        ]

    lists = len(runner_calls(watch=False))
    cluster.drop_connections()
    release.touch()  # the job ends while the runner reconnects
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()
    watches = runner_calls(watch=True)
    assert len(watches) >= 2
    resumed = watches[-1]["params"].get("resourceVersion")
    assert resumed is not None and int(resumed) > 0
    # Resumed, not started over: no new list of the queue's Jobs.
    assert len(runner_calls(watch=False)) == lists
    # The log follow resumed too: every line once, the result and notebook intact.
    log = job.logs()
    assert log.count("hello from pod 0") == 1 and log.count("released after") == 1
    assert job.output_notebook is not None


def test_preempt_evicts_the_pod_and_the_job_resumes(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job = checkpointed_trainer(cluster, tmp_path, steps=200)
    job.preempt()
    assert job.wait(timeout=240) is State.SUCCEEDED, job.logs()
    assert [a.failure_class for a in job.snapshot(metrics=False).attempts] == ["preempted", None]
    evictions = cluster.requests("/eviction")
    assert len(evictions) == 1 and evictions[0]["method"] == "POST"
    assert resumed_from(job, 2) >= 40


def test_an_agent_restarted_mid_job_resumes_the_log_where_it_stopped(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    job, release = logging_job(tmp_path)
    wait_until(lambda: len(job.metrics("loss")) >= 3, 120, "metrics while it runs")
    kill_agent(k8s_home)
    release.touch()
    assert job.wait(timeout=120) is State.SUCCEEDED, job.logs()  # a new agent took over
    log = job.logs()
    assert log.count("hello from pod 0") == 1 and log.count("released after") == 1
    steps = [m["step"] for m in job.metrics("loss")]
    assert steps == sorted(set(steps)) and steps[0] == 0  # every metric once
    assert job.output_notebook is not None


@pytest.mark.slow
def test_two_nodes_rendezvous_through_pod_zero(
    k8s_home: Path, cluster: Any, tmp_path: Path
) -> None:
    body = (
        "import os, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([dist.get_rank() + 1.0])\n"
        "dist.all_reduce(t)\n"
        "print('world', dist.get_world_size(), 'sum', t.item(), "
        "'index', os.environ['JOB_COMPLETION_INDEX'], flush=True)\n"
        "dist.destroy_process_group()"
    )
    nb = make_notebook(tmp_path / "ddp.ipynb", "import torch", body)
    job = nblaunch.submit(nb, queue="k8s", nodes=2, strategy="ddp")
    assert job.wait(timeout=240) is State.SUCCEEDED, job.logs()
    assert "world 2 sum 3.0 index 0" in job.logs()
    name = job_name(job)
    # Every index ran a pod (the kubelet keeps a folder per pod; the Job controller may
    # remove index 1's pod once index 0 has met the success policy).
    ran = sorted(p.name.split("-")[3] for p in (cluster.root / "pods").iterdir())
    assert ran == ["0", "1"], ran
    service = cluster.core.read_namespaced_service(name, "default")
    assert service.spec.cluster_ip == "None"
