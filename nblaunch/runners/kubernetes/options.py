"""A Kubernetes queue's options: where its Jobs go, what each pod asks for, how
priorities map onto PriorityClasses or Kueue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nblaunch.options import check_levels
from nblaunch.runners.base import ClusterOptions

#: a DNS-1123 label: namespaces, PriorityClasses, LocalQueues, claims, service accounts
_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: what a pod's environment variable may be called
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class Toleration(BaseModel):
    """One pod toleration, as the Kubernetes API spells it (spot pools taint their nodes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # noqa: N815 - the API's own spelling


class BundleVolume(BaseModel):
    """A PersistentVolumeClaim this machine also sees as a folder (NFS, a shared disk):
    bundles go there instead of into a ConfigMap, so they may exceed 1 MiB."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: str = Field(pattern=_LABEL)
    #: where this machine sees the claim's root
    path: Path

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError(f"bundle_volume.path {str(path)!r} must be an absolute path")
        return path


class KubernetesOptions(ClusterOptions):
    """``[queues.NAME]`` with ``runner = "kubernetes"``."""

    runner: Literal["kubernetes"] = "kubernetes"
    namespace: str = Field(default="default", pattern=_LABEL, max_length=63)
    #: the container image: Python with nblaunch and the job's training stack installed
    image: str = Field(min_length=1)
    #: the interpreter inside the image that runs ``python -m nblaunch.runtime``
    python: str = "python"
    gpu_resource: str = "nvidia.com/gpu"
    #: e.g. ``{"cloud.google.com/gke-accelerator" = "nvidia-tesla-a100"}``
    node_selector: dict[str, str] = {}
    #: e.g. GKE spot: ``[{key = "cloud.google.com/gke-spot", operator = "Equal",
    #: value = "true", effect = "NoSchedule"}]``
    tolerations: list[Toleration] = []
    #: pod requests per GPU (or for the whole pod when it asks for none), e.g. ``"8"``, ``"32Gi"``
    cpu_per_gpu: str | None = None
    memory_per_gpu: str | None = None
    #: priority level → PriorityClass of the pods
    priority_classes: dict[str, str] = {}
    #: a Kueue LocalQueue: Jobs are created suspended and Kueue admits them
    kueue_queue: str | None = Field(default=None, pattern=_LABEL)
    #: priority level → Kueue WorkloadPriorityClass
    kueue_priority_classes: dict[str, str] = {}
    service_account: str | None = Field(default=None, pattern=_LABEL)
    #: seconds a pod has between SIGTERM and SIGKILL (spot pools give 30 s or less)
    termination_grace_s: int = Field(default=120, ge=1)
    #: finished Jobs (with their pods and logs) are deleted this long after they end; an
    #: agent away longer finds no trace of how a job ended
    ttl_after_finished_s: int | None = Field(default=86400, ge=0)
    #: a PersistentVolumeClaim holding the job's checkpoints, so a new pod resumes; without
    #: one, checkpoints live and die with their pod
    checkpoint_volume: str | None = Field(default=None, pattern=_LABEL)
    bundle_volume: BundleVolume | None = None
    #: the uid (and gid) the job's processes run as: the pod runs as non-root
    run_as_user: int = Field(default=1000, ge=1)
    #: environment variables read from Secrets, ``{WANDB_API_KEY = "wandb/api-key"}``
    #: (secret name / key): values never appear in a manifest
    secret_env: dict[str, str] = {}
    #: one shell line run in the pod before the runtime (e.g. installing the bundle's
    #: requirements: ``pip install -r "$NBLAUNCH_BUNDLE/requirements.txt"``)
    setup: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    #: the longest one API call may take before it is given up
    client_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("priority_classes", "kueue_priority_classes")
    @classmethod
    def _check_levels(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        return check_levels(mapping)

    @field_validator("secret_env")
    @classmethod
    def _check_secrets(cls, mapping: dict[str, str]) -> dict[str, str]:
        for name, ref in mapping.items():
            secret, _, key = ref.partition("/")
            if not _ENV_NAME.match(name) or not secret or not key:
                raise ValueError(f'secret_env {name} = {ref!r}: write VARIABLE = "secret-name/key"')
        return mapping

    @model_validator(mode="after")
    def _check_kueue(self) -> KubernetesOptions:
        if self.kueue_priority_classes and not self.kueue_queue:
            raise ValueError("kueue_priority_classes needs kueue_queue (the LocalQueue)")
        return self
