"""A real Slurm cluster for the Slurm runner's tests: slurmctld and two slurmd on this
host with fake GPUs (``ci/slurm/up.sh``), and a home whose queue ``slurm`` uses it.

The tests start the cluster themselves when they may (root, apt); elsewhere they
skip with the reason. They only run against the cluster ``up.sh`` makes (named
``nblaunch``): each test cancels every job left on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_queues
from tests.extension.conftest import ip, shell  # noqa: F401 - the magics' real shell

UP = Path(__file__).resolve().parents[3] / "ci" / "slurm" / "up.sh"
CLUSTER = "nblaunch"


def slurm(*argv: str, check: bool = True) -> str:
    """Run a Slurm command (under a timeout: clients hang while slurmctld is down)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def _cluster_name() -> str | None:
    if shutil.which("scontrol") is None:
        return None
    try:
        out = slurm("scontrol", "show", "config", check=False)
    except subprocess.TimeoutExpired:
        return None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The one-host cluster of ``ci/slurm/up.sh``, started if it is not up."""
    name = _cluster_name()
    if name is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(
                "no Slurm cluster answers here, and starting one (ci/slurm/up.sh) needs "
                "root and apt: run `sudo bash ci/slurm/up.sh` first"
            )
        subprocess.run(["bash", str(UP)], check=True, timeout=900)
        name = _cluster_name()
    if name != CLUSTER:
        pytest.skip(f"the Slurm cluster here is {name!r}, not the test cluster {CLUSTER!r}")


def cancel_everything() -> None:
    slurm("scancel", "--user", str(os.getuid()), check=False)
    for node in ("node1", "node2"):
        slurm("scontrol", "update", f"nodename={node}", "state=resume", check=False)


@pytest.fixture
def slurm_home(nbl_home: Path, tmp_path: Path, slurm_cluster: None) -> Iterator[Path]:
    """A home whose queue ``slurm`` submits to the test cluster (``run_root`` in tmp)."""
    cancel_everything()
    configure(nbl_home, tmp_path)
    yield nbl_home
    cancel_everything()


def configure(home: Path, tmp_path: Path, **options: Any) -> None:
    """Write queue ``slurm`` with ``options`` on top of the tests' defaults."""
    settings: dict[str, Any] = {
        "runner": "slurm",
        "run_root": str(tmp_path / "run_root"),
        "gpus_per_node": 2,
        "cancel_grace_s": 10,
        "signal_grace_s": 45,
    }
    settings.update(options)
    import tomli_w

    write_queues(home, tomli_w.dumps({"queues": {"slurm": settings}}))


def slurm_job(job_id: str) -> dict[str, str]:
    """``scontrol show job -o`` as a dict (values without spaces are enough here)."""
    line = slurm("scontrol", "show", "job", "-o", job_id).strip()
    return dict(part.split("=", 1) for part in line.split() if "=" in part)
