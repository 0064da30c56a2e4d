"""The objects one attempt creates: a ``batch/v1`` Job, the bundle it runs (an
immutable ConfigMap, or a file on the queue's bundle volume), and for several
nodes a headless Service through which pod 0 is the rendezvous.

Pure functions of the job's spec and the queue's options: ``--dry-run`` prints
exactly what the runner creates. Kubernetes' own controllers do the rest: the
Job controller replaces a pod the cluster took away (``DisruptionTarget``:
spot reclaim, preemption, eviction) without counting it as a failure, fails the
Job at once when the notebook itself failed, and Kueue admits it when one is
configured.
"""

from __future__ import annotations

import base64
import io
import math
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.errors import SpecError
from nblaunch.options import priority_level
from nblaunch.runners.kubernetes.options import KubernetesOptions
from nblaunch.runtime.contract import USER_ERROR_EXIT_CODE, Env

MANAGED_BY = "app.kubernetes.io/managed-by"
JOB_LABEL = "nblaunch.dev/job-id"
ATTEMPT_LABEL = "nblaunch.dev/attempt"
QUEUE_LABEL = "nblaunch.dev/queue"
#: set by the Job controller on every pod of a Job
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
CONTAINER = "runtime"
ARCHIVE = "bundle.tar.gz"
#: a ConfigMap holds at most 1 MiB; leave room for its metadata
CONFIGMAP_LIMIT = 1024 * 1024 - 8 * 1024
RENDEZVOUS_PORT = 29500
#: what the runtime exits with when SIGTERM stopped it (it checkpointed: resumable)
PREEMPTED_EXIT_CODE = 143
#: the ownerReference a dry run shows: the API server assigns the Job's uid
UID_PLACEHOLDER = "(the Job's uid, assigned when it is created)"

_ROOT = "/nblaunch"
_WORK = f"{_ROOT}/work"
_BUNDLES = f"{_ROOT}/bundles"
_CHECKPOINTS = f"{_ROOT}/checkpoints"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")
#: the agent's own variables that mean nothing inside a pod
_AGENT_ONLY = (Env.HOME, Env.CHECKPOINT_DIR)


@dataclass(frozen=True)
class Attempt:
    """What the objects of one attempt are made from."""

    job_id: str
    attempt: int
    spec: dict[str, Any]
    env: dict[str, str]

    @property
    def name(self) -> str:
        """The Job's name, also its Service's and (with a suffix) its ConfigMap's."""
        return f"nbl-{self.job_id}-{self.attempt}"

    @property
    def nodes(self) -> int:
        return int(self.spec["nodes"])

    @property
    def gpus(self) -> int:
        return int(self.spec["gpus"])


def queue_selector(options: KubernetesOptions) -> str:
    """The label selector of every object this queue's runner creates."""
    return f"{MANAGED_BY}=nblaunch,{QUEUE_LABEL}={label_value(options.name)}"


def label_value(text: str) -> str:
    """``text`` as a label value may hold it (63 characters, alphanumeric at both ends)."""
    return _LABEL_VALUE.sub("-", text)[:63].strip("-_.") or "x"


def bundle_archive(bundle: Path) -> bytes:
    """The bundle folder as one tar.gz, owned by nobody in particular."""

    def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(bundle.iterdir()):
            tar.add(path, arcname=path.name, filter=anonymous)
    return buffer.getvalue()


def check_archive(archive: bytes, options: KubernetesOptions) -> None:
    """One line with the fix when a bundle cannot travel in a ConfigMap."""
    encoded = math.ceil(len(archive) / 3) * 4
    if options.bundle_volume is None and encoded > CONFIGMAP_LIMIT:
        raise SpecError(
            f"the job's bundle is {encoded / 2**20:.2f} MiB as a ConfigMap, above the 1 MiB "
            f"Kubernetes allows; make the workspace smaller (list large files in "
            f".nblaunchignore) or set bundle_volume in [queues.{options.name}] of queues.toml"
        )


def attempt_objects(
    attempt: Attempt, options: KubernetesOptions, archive: bytes
) -> list[dict[str, Any]]:
    """The Job first (the others name it as their owner), then the bundle's ConfigMap
    (none with a bundle volume) and, for several nodes, the Service."""
    objects = [job_manifest(attempt, options)]
    if options.bundle_volume is None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _metadata(attempt, options, f"{attempt.name}-bundle"),
                "immutable": True,
                "binaryData": {ARCHIVE: base64.b64encode(archive).decode()},
            }
        )
    if attempt.nodes > 1:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(attempt, options, attempt.name),
                "spec": {
                    "clusterIP": "None",
                    "selector": {JOB_NAME_LABEL: attempt.name},
                    # Ranks find pod 0 before any pod is ready.
                    "publishNotReadyAddresses": True,
                    "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
                },
            }
        )
    return objects


def owned_by(obj: dict[str, Any], job_name: str, uid: str) -> dict[str, Any]:
    """``obj`` collected with the Job when the Job is deleted."""
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "uid": uid,
        "controller": False,
        "blockOwnerDeletion": True,
    }
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [reference]}}


def _labels(attempt: Attempt, options: KubernetesOptions) -> dict[str, str]:
    labels = {
        MANAGED_BY: "nblaunch",
        QUEUE_LABEL: label_value(options.name),
        JOB_LABEL: attempt.job_id,
        ATTEMPT_LABEL: str(attempt.attempt),
    }
    priority = int(attempt.spec["priority"])
    if options.kueue_queue:
        labels[KUEUE_QUEUE_LABEL] = options.kueue_queue
        level = priority_level(priority)
        if level in options.kueue_priority_classes:
            labels[KUEUE_PRIORITY_LABEL] = options.kueue_priority_classes[level]
    return labels


def _metadata(attempt: Attempt, options: KubernetesOptions, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace,
        "labels": _labels(attempt, options),
        "annotations": {"nblaunch.dev/name": str(attempt.spec["name"])},
    }


def job_manifest(attempt: Attempt, options: KubernetesOptions) -> dict[str, Any]:
    nodes = attempt.nodes
    retry = options.retry
    # The engine's own restarts, for pods that died without saying why (OOMKilled, a
    # lost node): the agent ends each such attempt and decides on the next by policy.
    backoff = retry.max_lost + (retry.max_retries if retry.retry_on else 0)
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": backoff,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [USER_ERROR_EXIT_CODE],
                    },
                },
                {
                    # SIGTERM without a DisruptionTarget condition (a node drained by
                    # hand): the runtime checkpointed, the replacement resumes.
                    "action": "Ignore",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [PREEMPTED_EXIT_CODE],
                    },
                },
            ]
        },
        "successPolicy": {"rules": [{"succeededIndexes": "0"}]},
        "template": {
            "metadata": {"labels": _labels(attempt, options)},
            "spec": _pod_spec(attempt, options),
        },
    }
    if options.ttl_after_finished_s is not None:
        spec["ttlSecondsAfterFinished"] = options.ttl_after_finished_s
    if options.kueue_queue:
        spec["suspend"] = True  # Kueue unsuspends it on admission
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(attempt, options, attempt.name),
        "spec": spec,
    }


def _pod_spec(attempt: Attempt, options: KubernetesOptions) -> dict[str, Any]:
    uid = options.run_as_user
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": options.termination_grace_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(attempt, options)],
        "volumes": _volumes(attempt, options),
    }
    if attempt.nodes > 1:
        pod["subdomain"] = attempt.name
    level = priority_level(int(attempt.spec["priority"]))
    if level in options.priority_classes:
        pod["priorityClassName"] = options.priority_classes[level]
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in options.tolerations]
    return pod


def _volumes(attempt: Attempt, options: KubernetesOptions) -> list[dict[str, Any]]:
    if options.bundle_volume is None:
        bundle: dict[str, Any] = {
            "name": "bundle",
            "configMap": {
                "name": f"{attempt.name}-bundle",
                "items": [{"key": ARCHIVE, "path": ARCHIVE}],
            },
        }
    else:
        bundle = {
            "name": "bundle",
            "persistentVolumeClaim": {"claimName": options.bundle_volume.claim, "readOnly": True},
        }
    checkpoints: dict[str, Any] = {"name": "checkpoints", "emptyDir": {}}
    if options.checkpoint_volume:
        checkpoints = {
            "name": "checkpoints",
            "persistentVolumeClaim": {"claimName": options.checkpoint_volume},
        }
    return [
        bundle,
        {"name": "work", "emptyDir": {}},
        checkpoints,
        # PyTorch's data loaders and NCCL need more shared memory than a container's 64 MiB.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]


def archive_path(attempt: Attempt, options: KubernetesOptions) -> str:
    """Where the pod finds the bundle's archive."""
    if options.bundle_volume is None:
        return f"{_BUNDLES}/{ARCHIVE}"
    return f"{_BUNDLES}/{attempt.name}.tar.gz"


def _container(attempt: Attempt, options: KubernetesOptions) -> dict[str, Any]:
    env = {k: v for k, v in sorted(attempt.env.items()) if k not in _AGENT_ONLY}
    env.update(
        {
            "HOME": f"{_WORK}/home",
            "NBLAUNCH_BUNDLE_ARCHIVE": archive_path(attempt, options),
            "NBLAUNCH_BUNDLE": f"{_WORK}/bundle",
            Env.RUN_DIR: f"{_WORK}/run",
            Env.CHECKPOINT_DIR: f"{_CHECKPOINTS}/{attempt.job_id}",
            Env.LOG_RECORDS: "1",
            Env.TERMINATION_LOG: "/dev/termination-log",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if attempt.nodes > 1:
        env.update(
            {
                "PET_NNODES": str(attempt.nodes),
                "MASTER_ADDR": f"{attempt.name}-0.{attempt.name}",
                "MASTER_PORT": str(RENDEZVOUS_PORT),
            }
        )
    variables: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    for name, ref in sorted(options.secret_env.items()):
        secret, _, key = ref.partition("/")
        variables.append(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        )
    lines = [
        "set -e",
        'mkdir -p "$NBLAUNCH_BUNDLE" "$HOME"',
        'tar -xzf "$NBLAUNCH_BUNDLE_ARCHIVE" -C "$NBLAUNCH_BUNDLE"',
        *([options.setup] if options.setup else []),
        f'exec {shlex.quote(options.python)} -m nblaunch.runtime "$NBLAUNCH_BUNDLE" '
        f'"${Env.RUN_DIR}"',
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.image,
        "command": ["/bin/sh", "-c", "\n".join(lines)],
        "env": variables,
        "resources": _resources(attempt, options),
        "volumeMounts": [
            {"name": "bundle", "mountPath": _BUNDLES, "readOnly": True},
            {"name": "work", "mountPath": _WORK},
            {"name": "checkpoints", "mountPath": _CHECKPOINTS},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return container


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$")


def _resources(attempt: Attempt, options: KubernetesOptions) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if attempt.gpus:
        resources["limits"] = {options.gpu_resource: str(attempt.gpus)}
    requests = {}
    for key, per_gpu in (("cpu", options.cpu_per_gpu), ("memory", options.memory_per_gpu)):
        if per_gpu:
            requests[key] = _times(per_gpu, max(1, attempt.gpus))
    if requests:
        resources["requests"] = requests
    return resources


def _times(quantity: str, n: int) -> str:
    """A Kubernetes quantity ``n`` times over (``"16Gi"`` × 2 → ``"32Gi"``)."""
    match = _QUANTITY.match(quantity)
    if match is None:
        raise SpecError(f"{quantity!r} is not a Kubernetes quantity; write e.g. 8, 500m or 32Gi")
    number = float(match.group(1)) * n
    text = f"{number:g}" if number != int(number) else str(int(number))
    return text + match.group(2)
