"""The local runner hands out the devices CUDA_VISIBLE_DEVICES names, by index or UUID,
one job per device."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import nblaunch
from nblaunch.errors import CapacityError
from nblaunch.runners.local.options import machine_devices
from tests.conftest import make_notebook, wait_until

UUIDS = "GPU-8f3e2b1c-1111-2222-3333-444455556666,GPU-0a1b2c3d-7777-8888-9999-000011112222"
HOLD = (
    "import os, time\n"
    "open(seen, 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])\n"
    "while not os.path.exists(release):\n"
    "    time.sleep(0.05)"
)


@pytest.fixture(params=[UUIDS, "1,3"], ids=["uuids", "indexes"])
def visible(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process and the agent it starts see two GPUs, named as given."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", request.param)
    machine_devices.cache_clear()
    yield request.param
    machine_devices.cache_clear()


def test_one_gpu_jobs_get_distinct_visible_devices(
    visible: str, nbl_home: Path, tmp_path: Path
) -> None:
    devices = visible.split(",")
    nb = make_notebook(tmp_path / "hold.ipynb", HOLD, params="seen = ''\nrelease = ''")
    release = tmp_path / "release"
    seen = [tmp_path / f"seen-{i}" for i in range(3)]
    jobs = [
        nblaunch.submit(nb, params={"seen": str(s), "release": str(release)}, gpus=1) for s in seen
    ]
    # Written, not only created: the notebook opens the file before it writes.
    wait_until(
        lambda: all(s.exists() and s.read_text() for s in seen[:2]),
        60,
        "two jobs to see their devices",
    )
    # Both devices are held: the third 1-GPU job waits for one of them.
    assert jobs[2].state.value == "queued"
    first, second = seen[0].read_text(), seen[1].read_text()
    assert {first, second} == set(devices)
    release.touch()
    for job in jobs:
        assert job.wait(timeout=120).value == "succeeded", job.logs()
    assert seen[2].read_text() in devices
    with pytest.raises(CapacityError, match="has 2 GPU"):
        nblaunch.submit(nb, gpus=3)
