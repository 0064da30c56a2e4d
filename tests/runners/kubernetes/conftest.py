"""Fixtures of the Kubernetes runner's tests: a cluster on 127.0.0.1 (kmock's API
emulator with a Job controller and a kubelet that runs pods as local processes, see
``cluster.py``) and a home whose queue ``k8s`` submits to it through a kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_queues
from tests.extension.conftest import ip, shell  # noqa: F401 - the magics' real shell


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("kmock", reason="kmock (the API emulator) needs Python 3.11+")
    from tests.runners.kubernetes.cluster import Cluster

    with Cluster(tmp_path, gpus=2, grace_s=10) as running:
        yield running
        assert running.errors == []


def configure(home: Path, cluster: Any, **options: Any) -> None:
    """Queue ``k8s`` on ``cluster``; ``options`` are more TOML keys (values as TOML)."""
    lines = [
        "[queues.k8s]",
        'runner = "kubernetes"',
        'image = "nblaunch-test:local"',  # the kubelet runs pods with this interpreter
        f'kubeconfig = "{cluster.kubeconfig}"',
        "gpus_per_node = 8",
        'checkpoint_volume = "checkpoints"',
        "termination_grace_s = 20",
        "cancel_grace_s = 5",
        *(f"{key} = {value}" for key, value in options.items()),
    ]
    write_queues(home, "\n".join(lines) + "\n")


@pytest.fixture
def k8s_home(nbl_home: Path, cluster: Any) -> Path:
    configure(nbl_home, cluster)
    return nbl_home
