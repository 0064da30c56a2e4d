"""The test cluster itself, driven only through the official client over HTTP."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

pytest.importorskip("kmock", reason="kmock (the API emulator) needs Python 3.11+")

from kubernetes import client, watch  # noqa: E402

from tests.conftest import wait_until  # noqa: E402
from tests.runners.kubernetes.cluster import NS, UNSCHEDULABLE, Cluster  # noqa: E402

FAIL_CODE = 42
M = TypeVar("M")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, gpus=2) as running:
        add_secret(running)
        yield running
        assert not running.errors, running.errors[0]


def model(cls: type[M], data: dict[str, Any]) -> M:
    """A client model from API JSON (camelCase keys)."""
    made = cls.from_dict(data)  # type: ignore[attr-defined]
    assert made is not None
    return cast(M, made)


def add_secret(cluster: Cluster) -> None:
    """The Secret the pods' ``TOKEN`` comes from: without it they wait, as they would."""
    token = base64.b64encode(b"s3cret").decode()
    body = model(client.V1Secret, {"metadata": {"name": "creds"}, "data": {"token": token}})
    cluster.core.create_namespaced_secret(NS, body)


def indexed_job(
    name: str, script: str, *, nodes: int = 1, gpus: int = 0, suspend: bool = False
) -> dict[str, Any]:
    """A Job shaped like those of nblaunch's runner."""
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {
        "metadata": {"name": name, "labels": {"app": "t"}},
        "spec": {
            "completionMode": "Indexed", "completions": nodes, "parallelism": nodes,
            "backoffLimit": 2, "suspend": suspend,
            "successPolicy": {"rules": [{"succeededIndexes": "0"}]},
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailJob", "onExitCodes": {"containerName": "runtime", "operator": "In", "values": [FAIL_CODE]}},
            ]},
            "template": {
                "metadata": {"labels": {"app": "t"}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "subdomain": name,
                    "containers": [{
                        "name": "runtime", "image": "python:3.11",
                        "command": ["/bin/sh", "-c", script],
                        "env": [
                            {"name": "TERM_LOG", "value": "/dev/termination-log"},
                            {"name": "WORK", "value": "/work/run"},
                            {"name": "CKPT", "value": "/checkpoints"},
                            {"name": "BUNDLE", "value": "/bundles/data.txt"},
                            {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
                            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                        ],
                        "resources": {"limits": limits},
                        "volumeMounts": [
                            {"name": "bundle", "mountPath": "/bundles", "readOnly": True},
                            {"name": "work", "mountPath": "/work"},
                            {"name": "checkpoints", "mountPath": "/checkpoints"},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                        ],
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [
                        {"name": "bundle", "configMap": {"name": f"{name}-bundle", "items": [{"key": "data", "path": "data.txt"}]}},
                        {"name": "work", "emptyDir": {}},
                        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}},
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                    ],
                },
            },
        },
    }  # fmt: skip


def submit(cluster: Cluster, job: dict[str, Any]) -> str:
    """Create ``job`` and its bundle ConfigMap, owned by the Job, as the runner does."""
    name = job["metadata"]["name"]
    made = cluster.batch.create_namespaced_job(NS, model(client.V1Job, job))
    assert made.metadata is not None and made.metadata.uid
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": made.metadata.uid}
    bundle = {
        "metadata": {"name": f"{name}-bundle", "ownerReferences": [owner]},
        "binaryData": {"data": base64.b64encode(b"from the bundle").decode()},
    }
    cluster.core.create_namespaced_config_map(NS, model(client.V1ConfigMap, bundle))
    return str(name)


def true_conditions(cluster: Cluster, job: str) -> list[str]:
    conditions = cluster.job(job).get("status", {}).get("conditions") or []
    return [c["type"] for c in conditions if c["status"] == "True"]


def pod_in(cluster: Cluster, job: str, phase: str, index: int = 0) -> dict[str, Any] | None:
    """The Job's pod for ``index`` that is in ``phase``."""
    for pod in cluster.pods(job):
        ours = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        if ours == str(index) and pod["status"].get("phase") == phase:
            return pod
    return None


def log_since(cluster: Cluster, pod: str, since: str) -> str:
    """The pod's log from ``since`` on, timestamped. 37.x's ``read_namespaced_pod_log`` has
    no ``since_time``, so the request is built from the client's own parts."""
    request = cluster.api.param_serialize(
        "GET",
        "/api/v1/namespaces/{namespace}/pods/{name}/log",
        path_params={"namespace": NS, "name": pod},
        query_params=[("sinceTime", since), ("timestamps", True)],
        auth_settings=["BearerToken"],
    )
    return str(cluster.api.call_api(*request).read().decode())


def test_job_runs_and_logs(cluster: Cluster, tmp_path: Path) -> None:
    script = (
        'echo hello; sleep 0.3; echo "index=$JOB_COMPLETION_INDEX"; cat "$BUNDLE"; echo;'
        'echo "token=$TOKEN master=$MASTER_ADDR"; mkdir -p "$CKPT/run" "$WORK";'
        'echo saved > "$CKPT/run/state"; printf \'{"x":1}\' > "$TERM_LOG"'
    )
    job = submit(cluster, indexed_job("one", script))
    pod = wait_until(lambda: pod_in(cluster, job, "Running"), 5, "a running pod")
    name, meta = pod["metadata"]["name"], pod["metadata"]
    assert name.startswith("one-0-") and len(name) == len("one-0-abcde")
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    assert meta["labels"]["job-name"] == "one" and meta["labels"]["app"] == "t"
    assert meta["ownerReferences"][0]["uid"] == cluster.job(job)["metadata"]["uid"]
    assert pod["spec"]["hostname"] == "one-0" and pod["spec"]["subdomain"] == "one"
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]

    resp: Any = cluster.core.read_namespaced_pod_log(
        name, NS, container="runtime", follow=True, timestamps=True, _preload_content=False
    )
    lines = list(watch.watch.iter_resp_lines(resp))  # as they come, until the process ends
    resp.release_conn()
    stamps, texts = zip(*(line.split(" ", 1) for line in lines), strict=True)
    assert list(texts) == ["hello", "index=0", "from the bundle", "token=s3cret master=127.0.0.1"]
    assert all(len(stamp) == len("2025-01-01T00:00:00.123456789Z") for stamp in stamps)
    later = log_since(cluster, name, stamps[1]).splitlines()
    assert [line.split(" ", 1)[1] for line in later] == list(texts[1:])

    wait_until(lambda: "Complete" in true_conditions(cluster, job), 5, "the Job complete")
    assert true_conditions(cluster, job) == ["SuccessCriteriaMet", "Complete"]
    status = cluster.job(job)["status"]
    assert status["succeeded"] == 1 and status["active"] == 0 and status["completionTime"]
    ended = cluster.pods(job)[0]
    assert ended["status"]["phase"] == "Succeeded"
    terminated = ended["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["message"] == '{"x":1}'
    assert (tmp_path / "cluster" / "pvc" / "ckpt" / "run" / "state").read_text() == "saved\n"

    cluster.batch.delete_namespaced_job(job, NS, propagation_policy="Background")

    def collected() -> bool:
        return not cluster.pods(job) and not cluster.core.list_namespaced_config_map(NS).items

    wait_until(collected, 5, "the Job's pod and ConfigMap collected")


def test_fail_job_exit_code_and_backoff_limit(cluster: Cluster) -> None:
    failing = submit(cluster, indexed_job("fails", f"echo bad; exit {FAIL_CODE}"))
    wait_until(lambda: "Failed" in true_conditions(cluster, failing), 5, "the Job failed")
    status = cluster.job(failing)["status"]
    assert [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
    assert [c["reason"] for c in status["conditions"]] == ["PodFailurePolicy"] * 2
    assert "exit code 42 matching FailJob rule at index 1" in status["conditions"][0]["message"]
    assert status["failed"] == 1

    crashing = submit(cluster, indexed_job("crashes", "echo oops; exit 3"))
    wait_until(lambda: "Failed" in true_conditions(cluster, crashing), 8, "the Job failed")
    status = cluster.job(crashing)["status"]
    assert status["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert status["failed"] == 3  # backoffLimit 2: the third failure ends it
    terminated = cluster.pods(crashing)[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (3, "oops\n")  # from the log


def test_disrupted_pod_is_replaced(cluster: Cluster) -> None:
    # The first pod waits for its disruption; its replacement finds the checkpoint.
    script = (
        'if [ -f "$CKPT/mark" ]; then echo resumed; exit 0; fi;'
        "trap 'touch \"$CKPT/mark\"; echo checkpointed; exit 143' TERM;"
        "echo training; while true; do sleep 0.1; done"
    )
    job = submit(cluster, indexed_job("spot", script, nodes=2, gpus=1))
    first = wait_until(lambda: pod_in(cluster, job, "Running"), 5, "index 0 running")
    wait_until(lambda: pod_in(cluster, job, "Running", index=1), 5, "index 1 running")
    cluster.disrupt(first["metadata"]["name"], grace_s=5)

    wait_until(lambda: "Complete" in true_conditions(cluster, job), 8, "the Job complete")
    status = cluster.job(job)["status"]
    assert status.get("failed", 0) == 0 and status["succeeded"] == 1
    failed = pod_in(cluster, job, "Failed")
    assert failed is not None and failed["metadata"]["name"] == first["metadata"]["name"]
    disruption = [c for c in failed["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert [(c["status"], c["reason"]) for c in disruption] == [("True", "PreemptionByScheduler")]
    assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    log = cluster.core.read_namespaced_pod_log(failed["metadata"]["name"], NS)
    assert log == "training\ncheckpointed\n"
    replacement = pod_in(cluster, job, "Succeeded")
    assert replacement is not None
    assert cluster.core.read_namespaced_pod_log(replacement["metadata"]["name"], NS) == "resumed\n"
    # index 1 is stopped (not failed) once index 0 succeeded, and its pod deleted
    wait_until(lambda: len(cluster.pods(job)) == 2, 5, "index 1's pod deleted")


def test_suspend_and_eviction(cluster: Cluster) -> None:
    script = "trap 'exit 143' TERM; echo up; while true; do sleep 0.1; done"
    job = submit(cluster, indexed_job("queued", script, suspend=True))
    wait_until(lambda: "Suspended" in true_conditions(cluster, job), 5, "the Job suspended")
    assert cluster.pods(job) == []
    resume = {"spec": {"suspend": False}}
    cluster.batch.patch_namespaced_job(job, NS, resume)  # Kueue admits it
    first = wait_until(lambda: pod_in(cluster, job, "Running"), 5, "a running pod")
    assert cluster.job(job)["metadata"]["generation"] == 2

    cluster.batch.patch_namespaced_job(job, NS, {"spec": {"suspend": True}})  # preempted
    wait_until(lambda: not cluster.pods(job), 5, "the pod deleted")
    assert "Suspended" in true_conditions(cluster, job)
    cluster.batch.patch_namespaced_job(job, NS, resume)
    second = wait_until(lambda: pod_in(cluster, job, "Running"), 5, "a new pod")
    assert second["metadata"]["name"] != first["metadata"]["name"]

    name = second["metadata"]["name"]
    body = model(client.V1Eviction, {"metadata": {"name": name, "namespace": NS}})
    cluster.core.create_namespaced_pod_eviction(name, NS, body)
    conditions = cluster.core.read_namespaced_pod(name, NS).to_dict()["status"]["conditions"]
    disruption = [c["reason"] for c in conditions if c["type"] == "DisruptionTarget"]
    assert disruption == ["EvictionByEvictionAPI"]  # at once, as the real API does
    wait_until(lambda: pod_in(cluster, job, "Running") not in (None, second), 8, "a replacement")
    wait_until(lambda: len(cluster.pods(job)) == 1, 5, "the evicted pod deleted")
    assert cluster.job(job)["status"].get("failed", 0) == 0


def test_watch_resumes_after_dropped_connections(cluster: Cluster) -> None:
    events: list[tuple[str, str, str]] = []  # type, name, resourceVersion
    errors: list[Exception] = []

    def follow(version: str) -> None:
        stream = watch.Watch().stream(
            cluster.core.list_namespaced_config_map,
            NS,
            resource_version=version,
            label_selector="kind=test",
            deserialize=False,
        )
        try:
            for event in stream:
                meta = event["object"]["metadata"]
                assert meta["uid"] and meta["creationTimestamp"]
                events.append((event["type"], meta["name"], meta["resourceVersion"]))
        except Exception as exc:
            errors.append(exc)

    def make(name: str, kind: str) -> None:
        body = model(client.V1ConfigMap, {"metadata": {"name": name, "labels": {"kind": kind}}})
        cluster.core.create_namespaced_config_map(NS, body)

    listed = cluster.core.list_namespaced_config_map(NS)
    assert listed.metadata is not None and listed.metadata.resource_version
    thread = threading.Thread(target=follow, args=(listed.metadata.resource_version,))
    thread.start()
    make("a", "test")
    make("skipped", "other")
    wait_until(lambda: events, 5, "the ADDED event")
    cluster.drop_connections()
    thread.join(timeout=5)
    assert not thread.is_alive() and errors, "the watch ends with its connection"
    assert "Response ended prematurely" in str(errors[0])  # urllib3's ProtocolError

    make("b", "test")
    last = events[-1][2]
    events.clear()
    thread = threading.Thread(target=follow, args=(last,))
    thread.start()
    wait_until(lambda: events, 5, "the events after the last seen one")
    assert [event[:2] for event in events] == [("ADDED", "b")]
    assert int(events[0][2]) > int(last)
    watches = [r for r in cluster.requests("/configmaps") if r["params"].get("watch") == "true"]
    assert watches[-1]["params"]["resourceVersion"] == last
    cluster.drop_connections()
    thread.join(timeout=5)

    # Without a resourceVersion, a watch sends what is there; it ends after timeoutSeconds.
    kinds = cluster.core.list_namespaced_config_map(NS, label_selector="kind=test")
    assert sorted(str(cm.metadata.name) for cm in kinds.items if cm.metadata) == ["a", "b"]
    stream = watch.Watch().stream(
        cluster.core.list_namespaced_config_map,
        NS,
        label_selector="kind=test",
        timeout_seconds=1,
        deserialize=False,
    )
    assert sorted(event["object"]["metadata"]["name"] for event in stream) == ["a", "b"]


def unschedulable(cluster: Cluster, job: str) -> bool:
    """Whether the Job's pod is Pending with the scheduler's message for missing GPUs."""
    pod = pod_in(cluster, job, "Pending")
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return any(
        (c["type"], c["status"], c["reason"], c["message"])
        == ("PodScheduled", "False", "Unschedulable", UNSCHEDULABLE)
        for c in conditions
    )


def test_unschedulable_without_gpus_and_while_held(tmp_path: Path) -> None:
    with Cluster(tmp_path, gpus=0) as cpu_only:
        add_secret(cpu_only)
        gpu = submit(cpu_only, indexed_job("gpu", "echo gpu", gpus=1))
        wait_until(lambda: unschedulable(cpu_only, gpu), 5, "the GPU pod unschedulable")
        cpu_only.hold()
        cpu = submit(cpu_only, indexed_job("cpu", "echo cpu"))
        wait_until(lambda: unschedulable(cpu_only, cpu), 5, "the CPU pod held")
        cpu_only.release()
        wait_until(lambda: "Complete" in true_conditions(cpu_only, cpu), 5, "the CPU Job done")
        assert unschedulable(cpu_only, gpu)
        assert not cpu_only.errors, cpu_only.errors[0]
