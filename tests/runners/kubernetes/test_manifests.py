"""The objects an attempt creates, against Kubernetes' own schemas (1.31 to 1.37, strict,
with ``kubernetes-validate``) and the official client's models; golden files in
``golden/`` (``NBLAUNCH_UPDATE_GOLDEN=1`` rewrites them after a deliberate change)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from nblaunch.errors import SpecError
from nblaunch.runners.kubernetes.manifests import Attempt, attempt_objects, check_archive, owned_by
from nblaunch.runners.kubernetes.options import KubernetesOptions

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = [f"1.{minor}.0" for minor in range(31, 38)]
JOB_UID = "0b6f8a5e-6d0c-4d59-9a43-2f4f1c1f9a10"


def options(**extra: Any) -> KubernetesOptions:
    return KubernetesOptions(
        name="k8s-a100",
        runner="kubernetes",
        image="ghcr.io/acme/train:2026.11",
        namespace="ml",
        gpus_per_node=8,
        tolerations=[
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        ],
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"},
        priority_classes={"high": "train-high", "low": "train-low"},
        checkpoint_volume="checkpoints",
        secret_env={"WANDB_API_KEY": "wandb/api-key"},
        cpu_per_gpu="8",
        memory_per_gpu="64Gi",
        service_account="trainer",
        **extra,
    )


def attempt(gpus: int, nodes: int, strategy: str, priority: int = 0) -> Attempt:
    spec = {
        "name": "finetune llama",
        "gpus": gpus,
        "nodes": nodes,
        "strategy": strategy,
        "priority": priority,
        "timeout_s": 7200,
    }
    env = {
        "NBLAUNCH_HOME": "/home/me/.nblaunch",
        "NBLAUNCH_JOB_ID": "1a2b3c4d",
        "NBLAUNCH_ATTEMPT": "1",
        "NBLAUNCH_CHECKPOINT_DIR": "/home/me/ckpt",
        "NBLAUNCH_PRIOR_GPU_HOURS": "0.0",
    }
    return Attempt("1a2b3c4d", 1, spec, env)


CASES = {
    "one_gpu": (attempt(1, 1, "none", priority=10), {}),
    "ddp_8_gpus": (
        attempt(8, 1, "ddp"),
        {"kueue_queue": "team-a", "kueue_priority_classes": {"normal": "batch"}},
    ),
    "two_nodes": (attempt(8, 2, "ddp", priority=-10), {}),
}


def documents(case: str) -> list[dict[str, Any]]:
    att, extra = CASES[case]
    job, *owned = attempt_objects(att, options(**extra), b"not really a tar.gz")
    return [job, *(owned_by(o, job["metadata"]["name"], JOB_UID) for o in owned)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_file(case: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    text = yaml.safe_dump_all(documents(case), sort_keys=False, width=100)
    if os.environ.get("NBLAUNCH_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_file_is_valid_for_kubernetes_1_31_to_1_37(case: str) -> None:
    # kubernetes-validate --strict's own function, in this process (the CLI takes ~3 s a
    # start here); an unknown kind raises SchemaNotFoundError, where the CLI only warns.
    import kubernetes_validate

    for doc in yaml.safe_load_all((GOLDEN / f"{case}.yaml").read_text()):
        for version in VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_what_it_should() -> None:
    import kubernetes_validate

    job = documents("one_gpu")[0]
    typo = {**job, "spec": {**job["spec"], "backofLimit": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[0], strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({**job, "kind": "PyTorchJob"}, VERSIONS[-1], strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_file_loads_into_the_official_models(case: str) -> None:
    from kubernetes import client

    models = {"Job": client.V1Job, "ConfigMap": client.V1ConfigMap, "Service": client.V1Service}
    api = client.ApiClient()
    for doc in yaml.safe_load_all((GOLDEN / f"{case}.yaml").read_text()):
        model = models[doc["kind"]].from_dict(doc)
        assert api.sanitize_for_serialization(model) == doc


def test_what_each_shape_asks_of_the_cluster() -> None:
    one, ddp, multi = (documents(c) for c in ("one_gpu", "ddp_8_gpus", "two_nodes"))
    assert [d["kind"] for d in one] == ["Job", "ConfigMap"]
    assert [d["kind"] for d in multi] == ["Job", "ConfigMap", "Service"]
    job = multi[0]["spec"]
    pod = job["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert (job["completions"], job["parallelism"], job["completionMode"]) == (2, 2, "Indexed")
    assert env["MASTER_ADDR"]["value"] == "nbl-1a2b3c4d-1-0.nbl-1a2b3c4d-1"
    assert pod["subdomain"] == multi[2]["metadata"]["name"] == "nbl-1a2b3c4d-1"
    assert multi[2]["spec"]["clusterIP"] == "None"
    assert pod["priorityClassName"] == "train-low"
    assert one[0]["spec"]["template"]["spec"]["priorityClassName"] == "train-high"
    limits = one[0]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert limits == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "8", "memory": "64Gi"}}
    # Kueue: created suspended, queue and priority by label.
    assert ddp[0]["spec"]["suspend"] is True
    labels = ddp[0]["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert labels["kueue.x-k8s.io/priority-class"] == "batch"
    rules = one[0]["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [86]
    # The deadline is set when the pod starts (it counts from the Job's start).
    assert "activeDeadlineSeconds" not in one[0]["spec"]
    # The agent's own paths never reach a pod; secrets only by reference.
    assert "NBLAUNCH_HOME" not in env and env["NBLAUNCH_CHECKPOINT_DIR"]["value"].startswith(
        "/nblaunch/"
    )
    assert env["WANDB_API_KEY"] == {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}},
    }
    assert all(doc["metadata"]["ownerReferences"][0]["uid"] == JOB_UID for doc in multi[1:])


def test_a_bundle_too_big_for_a_configmap_is_refused_with_the_fix() -> None:
    big = os.urandom(800 * 1024)  # 1.04 MiB as base64
    with pytest.raises(SpecError) as err:
        check_archive(big, options())
    message = str(err.value)
    assert "\n" not in message and "1 MiB" in message
    assert ".nblaunchignore" in message and "bundle_volume" in message
    check_archive(big, options(bundle_volume={"claim": "bundles", "path": "/mnt/bundles"}))
