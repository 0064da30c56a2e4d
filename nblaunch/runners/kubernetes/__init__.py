"""The Kubernetes backend: each attempt is an Indexed batch/v1 Job (the official
client; the ``kubernetes`` extra), its bundle an immutable ConfigMap."""

from nblaunch.runners.kubernetes.options import KubernetesOptions
from nblaunch.runners.kubernetes.runner import KubernetesRunner

__all__ = ["KubernetesOptions", "KubernetesRunner"]
