"""Against a real cluster, when one is given: ``NBLAUNCH_TEST_KUBECONFIG`` (a kubeconfig
whose current context may create Jobs, ConfigMaps and Services in
``NBLAUNCH_TEST_K8S_NAMESPACE``, default ``default``) and ``NBLAUNCH_TEST_K8S_IMAGE`` (an
image with Python and this nblaunch installed; the pod runs as uid 1000). Set
``NBLAUNCH_TEST_K8S_CHECKPOINT_PVC`` (a ReadWriteMany claim) to also run the eviction
test. CI has no cluster, so these skip there with that reason."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import nblaunch
from nblaunch.queue.states import State
from tests.conftest import CHECKPOINTING, make_notebook, resumed_from, wait_until, write_queues

KUBECONFIG = os.environ.get("NBLAUNCH_TEST_KUBECONFIG")
IMAGE = os.environ.get("NBLAUNCH_TEST_K8S_IMAGE")
NAMESPACE = os.environ.get("NBLAUNCH_TEST_K8S_NAMESPACE", "default")
PVC = os.environ.get("NBLAUNCH_TEST_K8S_CHECKPOINT_PVC")

pytestmark = pytest.mark.skipif(
    not (KUBECONFIG and IMAGE),
    reason="no real Kubernetes cluster: set NBLAUNCH_TEST_KUBECONFIG and "
    "NBLAUNCH_TEST_K8S_IMAGE to run these (the emulated cluster's tests run everywhere)",
)


@pytest.fixture
def real_home(nbl_home: Path) -> Path:
    lines = [
        "[queues.real]",
        'runner = "kubernetes"',
        f'kubeconfig = "{KUBECONFIG}"',
        f'image = "{IMAGE}"',
        f'namespace = "{NAMESPACE}"',
        "ttl_after_finished_s = 600",
        *([f'checkpoint_volume = "{PVC}"'] if PVC else []),
    ]
    write_queues(nbl_home, "\n".join(lines) + "\n")
    return nbl_home


def test_a_notebook_job_runs_on_the_cluster(real_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path / "hello.ipynb",
        "import nblaunch\nfor step in range(5):\n    nblaunch.log({'loss': 1 / (step + 1)}, step=step)",
        "print('hello from', __import__('socket').gethostname())",
    )
    job = nblaunch.submit(nb, queue="real")
    assert job.wait(timeout=900) is State.SUCCEEDED, job.logs()
    assert re.search(r"hello from nbl-[0-9a-f]{8}-1-0-", job.logs())
    assert [m["step"] for m in job.metrics("loss")] == [0, 1, 2, 3, 4]
    assert job.output_notebook is not None


@pytest.mark.skipif(not PVC, reason="set NBLAUNCH_TEST_K8S_CHECKPOINT_PVC to resume after eviction")
def test_an_evicted_pod_resumes_from_its_checkpoint(real_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "train.ipynb", CHECKPOINTING, params="steps = 10")
    job = nblaunch.submit(nb, queue="real", params={"steps": 1200})
    wait_until(lambda: len(job.metrics("step_done")) >= 60, 900, "training to pass step 40")
    job.preempt()
    assert job.wait(timeout=1200) is State.SUCCEEDED, job.logs()
    assert [a.failure_class for a in job.snapshot(metrics=False).attempts] == ["preempted", None]
    assert resumed_from(job, 2) >= 40
