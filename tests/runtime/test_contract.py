"""The runtime contract: device lists as CUDA reads them, the cost rule, result.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from nblaunch.runtime.contract import (
    Cost,
    JobDir,
    Outcome,
    Result,
    job_cost,
    visible_devices,
)

UUID_A = "GPU-8f3e2b1c-1111-2222-3333-444455556666"
UUID_B = "GPU-0a1b2c3d-7777-8888-9999-000011112222"


@pytest.mark.parametrize(
    ("value", "devices"),
    [
        (None, None),
        ("", []),
        ("0", ["0"]),
        ("1,3", ["1", "3"]),
        (" 1 , 3 ", ["1", "3"]),
        (f"{UUID_A},{UUID_B}", [UUID_A, UUID_B]),
        ("MIG-4f2e1d0c-aaaa-bbbb-cccc-ddddeeeeffff", ["MIG-4f2e1d0c-aaaa-bbbb-cccc-ddddeeeeffff"]),
        ("-1", []),
        ("0,-1,1", ["0"]),  # CUDA stops at the first entry it cannot read
        ("2,nonsense,3", ["2"]),
    ],
)
def test_visible_devices_reads_indexes_and_uuids(value: str | None, devices: list[str]) -> None:
    assert visible_devices(value) == devices


def test_job_cost_prices_gpu_hours_over_every_span() -> None:
    cost = job_cost([(0.0, 3600.0), (4000.0, 5800.0)], gpus=2, price_per_gpu_hour=2.5)
    assert cost.gpu_hours == pytest.approx(3.0) and cost.usd == pytest.approx(7.5)
    assert cost.wall_hours == pytest.approx(1.5)
    assert job_cost([(0.0, 3600.0)], 0, 2.5).usd == 0.0
    assert job_cost([(0.0, 3600.0)], 1, None).usd is None
    prior = job_cost([(0.0, 1800.0)], 1, 1.0, prior_gpu_hours=2.0)
    assert prior == Cost(gpu_hours=2.5, wall_hours=0.5, price_per_gpu_hour=1.0)


def test_result_round_trips_and_says_the_state(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    written = Result(Outcome.CELL_ERROR, {"ename": "E", "evalue": "v"}, 1.0, 2.0)
    written.write(path)
    assert Result.read(path) == written and written.state == "failed"
    assert Result(Outcome.PREEMPTED).state == "preempted"
    assert Outcome.KERNEL_DIED.exit_code == 138 and Outcome.SUCCEEDED.exit_code == 0
    assert Result.read(tmp_path / "missing.json") is None
    (tmp_path / "torn.json").write_text('{"outcome": "succ')
    assert Result.read(tmp_path / "torn.json") is None


def test_layout() -> None:
    job = JobDir(Path("/h/jobs/abc"))
    run = job.attempt(2)
    assert run.path == Path("/h/jobs/abc/attempts/2") and JobDir.of_run(run.path) == job
    assert run.workspace == run.path / "workspace" and run.stdout == run.path / "logs/stdout.log"
    assert run.rank(1).result == run.path / "ranks/1/result.json"
