"""The queue-depth signal for autoscalers: ``nblaunch queues --json`` / ``--prometheus``
and the agent's ``/metrics`` endpoint, on a real home with real jobs and a real agent."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import nblaunch
from nblaunch.queue.states import State
from nblaunch.snapshots import desired_workers
from tests.conftest import make_notebook, run_cli, wait_until, write_queues

BLOCKER = "import os, time\nwhile not os.path.exists(release):\n    time.sleep(0.05)"

#: per-queue gauges and the ``queues --json`` field each must equal
GAUGE_FIELDS = {
    "nblaunch_queue_gpus_requested": "gpus_queued",
    "nblaunch_queue_gpus_in_use": "gpus_in_use",
    "nblaunch_queue_desired_workers": "desired_workers",
}
AGE = "nblaunch_queue_oldest_queued_age_seconds"


@pytest.mark.parametrize(
    ("queued", "in_use", "jobs", "per_worker", "least", "most", "expected"),
    [
        (0, 0, 0, 1, 0, None, 0),  # nothing to do: scale to zero
        (0, 0, 0, 4, 2, None, 2),  # ...unless min_workers keeps some
        (0, 0, 3, 4, 0, None, 1),  # CPU-only jobs still need a worker
        (5, 0, 3, 2, 0, None, 3),  # ceil(5 / 2)
        (4, 4, 2, 4, 0, None, 2),  # running jobs' workers are kept
        (9, 0, 3, 4, 1, 2, 2),  # clamped to max_workers
        (1, 0, 1, 8, 3, 5, 3),  # raised to min_workers
        (7, 0, 1, 1, 0, 0, 0),  # max_workers 0 parks the queue
    ],
)
def test_desired_workers_rule(
    queued: int,
    in_use: int,
    jobs: int,
    per_worker: int,
    least: int,
    most: int | None,
    expected: int,
) -> None:
    assert desired_workers(queued, in_use, jobs, per_worker, least, most) == expected


def _prometheus(text: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Metric name -> label values (queue[, state]) -> value, via prometheus_client's parser."""
    found: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            key = (
                sample.labels["queue"],
                *([sample.labels["state"]] if "state" in sample.labels else []),
            )
            found.setdefault(sample.name, {})[key] = sample.value
    return found


def _check_same(
    metrics: dict[str, dict[tuple[str, ...], float]], rows: list[dict[str, Any]], age_slack: float
) -> None:
    """Every figure of ``queues --json`` appears, equal, in the Prometheus text (ages
    read at two moments differ by at most ``age_slack`` seconds)."""
    assert set(metrics) == {"nblaunch_queue_jobs", AGE, *GAUGE_FIELDS}
    for row in rows:
        name = row["name"]
        assert {s.value: metrics["nblaunch_queue_jobs"][(name, s.value)] for s in State} == row[
            "jobs"
        ]
        for metric, field in GAUGE_FIELDS.items():
            assert metrics[metric][(name,)] == row[field], (name, metric)
        assert metrics[AGE][(name,)] == pytest.approx(row["oldest_queued_age_s"], abs=age_slack)
    assert {q for q, *_ in metrics["nblaunch_queue_jobs"]} == {row["name"] for row in rows}


def _queues_json() -> list[dict[str, Any]]:
    done = run_cli("queues", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _submit(nb: Path, *args: str) -> str:
    done = run_cli("submit", str(nb), "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]  # type: ignore[no-any-return]


@pytest.fixture
def metrics_agent(nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real agent serving only queue ``work``, with its metrics endpoint on a free
    port of 127.0.0.1; yields the endpoint's URL. Four GPU ids are visible to every
    process, whatever this machine has."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    write_queues(
        nbl_home,
        f"""
[queues.work]          # served: a 3-GPU job runs, a 2-GPU job waits for room
gpus = 4
gpus_per_worker = 2
max_workers = 1

[queues.train]         # never served: its jobs wait
runner = "slurm"
run_root = "{tmp_path / "slurm"}"
gpus_per_node = 4
nodes = 2
min_workers = 1
max_workers = 2

[queues.cpu]           # never served
gpus = 0

[queues.spare]         # never served, kept warm
gpus = 0
min_workers = 2
""",
    )
    log = tmp_path / "agent.err"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nblaunch", "agent", "--queue", "work"]
            + ["--metrics-host", "127.0.0.1", "--metrics-port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        port = wait_until(
            lambda: (
                re.search(r"queue metrics at http://127\.0\.0\.1:(\d+)/metrics", log.read_text())
                or proc.poll() is not None
            ),
            30,
            "the agent's metrics endpoint",
        )
        assert proc.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port.group(1)}/metrics"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_prometheus_text_matches_json_and_the_agent_endpoint(
    metrics_agent: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    block = make_notebook(tmp_path / "block.ipynb", BLOCKER, params="release = ''")
    quick = make_notebook(tmp_path / "quick.ipynb", "pass")
    blocker = _submit(block, "-q", "work", "--gpus", "3", "-p", "release", str(release))
    wait_until(lambda: nblaunch.Job(blocker).state is State.RUNNING, 120, "the 3-GPU job to run")
    first = time.time()
    _submit(quick, "-q", "work", "--gpus", "2")  # 1 GPU free: it waits
    _submit(quick, "-q", "train", "--gpus", "4", "--nodes", "2")  # 8 GPUs
    _submit(quick, "-q", "train", "--gpus", "1")
    _submit(quick, "-q", "train")  # CPU-only: 0 GPUs
    _submit(quick, "-q", "cpu")
    try:
        rows = _queues_json()
        text = run_cli("queues", "--prometheus")
        assert text.returncode == 0, text.stderr
        served = urllib.request.urlopen(metrics_agent, timeout=10).read().decode()
        age = time.time() - first
    finally:
        release.touch()

    by_name = {row["name"]: row for row in rows}
    figures = {
        name: (
            r["queued"],
            r["running"],
            r["gpus_queued"],
            r["gpus_in_use"],
            r["gpus_per_worker"],
            r["desired_workers"],
        )
        for name, r in by_name.items()
    }
    assert figures == {
        # ceil((2 + 3) / 2) = 3, clamped to max_workers 1
        "work": (1, 1, 2, 3, 2, 1),
        # 8 + 1 + 0 GPUs over 4-GPU nodes (gpus_per_node): ceil(9 / 4) = 3, clamped to 2
        "train": (3, 0, 9, 0, 4, 2),
        # a CPU-only job still needs one worker (no GPUs: one worker has 1 "GPU")
        "cpu": (1, 0, 0, 0, 1, 1),
        # nothing to run, min_workers keeps two
        "spare": (0, 0, 0, 0, 1, 2),
        # the four GPUs CUDA_VISIBLE_DEVICES shows make one worker; nothing to run
        "local": (0, 0, 0, 0, 4, 0),
    }
    assert by_name["train"]["min_workers"] == 1 and by_name["train"]["max_workers"] == 2
    assert by_name["work"]["jobs"]["running"] == 1
    assert 0 < by_name["work"]["oldest_queued_age_s"] <= age
    assert by_name["spare"]["oldest_queued_age_s"] == 0
    assert 0 < by_name["train"]["oldest_queued_age_s"] < by_name["work"]["oldest_queued_age_s"]

    _check_same(_prometheus(text.stdout), rows, age_slack=age)
    _check_same(_prometheus(served), rows, age_slack=age)


def test_min_workers_above_max_workers_is_one_line(nbl_home: Path) -> None:
    write_queues(nbl_home, "[queues.gpu]\nmin_workers = 3\nmax_workers = 1\n")
    done = run_cli("queues", "--json")
    assert done.returncode == 2 and done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line, done.stderr
    assert "[queues.gpu]" in line and "min_workers (3)" in line and "max_workers (1)" in line


def test_metrics_port_in_use_is_one_line_and_exit_2(nbl_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(
            "agent", "--metrics-host", "127.0.0.1", "--metrics-port", str(port), timeout=60
        )
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line, done.stderr
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--metrics-port" in line
