"""The agent's scheduling with real agent processes on a real store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

import nblaunch
from nblaunch.api import store
from tests.conftest import make_notebook, write_queues

BLOCKER = "import os, time\nwhile not os.path.exists(release):\n    time.sleep(0.05)"


def _claim_order(job_ids: list[str]) -> list[str]:
    db = store()
    claimed = {}
    for job_id in job_ids:
        times = [e.time for e in db.events(job_id) if e.to_state == "starting"]
        assert len(times) == 1, (job_id, times)
        claimed[job_id] = times[0]
    return sorted(job_ids, key=claimed.__getitem__)


def test_priority_then_submission_order(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\nmax_concurrent = 1\n")
    release = tmp_path / "release"
    blocker = nblaunch.submit(
        make_notebook(tmp_path / "block.ipynb", BLOCKER, params="release = ''"),
        params={"release": str(release)},
        name="blocker",
    )
    while blocker.state.value != "running":
        time.sleep(0.05)
    quick = make_notebook(tmp_path / "quick.ipynb", "pass")
    low = nblaunch.submit(quick, priority="low", name="low")
    high = nblaunch.submit(quick, priority="high", name="high")
    normal_a = nblaunch.submit(quick, priority="normal", name="normal-a")
    normal_b = nblaunch.submit(quick, priority=0, name="normal-b")
    assert nblaunch.Job(high.id).to_dict()["queue_position"] == 1
    assert nblaunch.Job(low.id).to_dict()["queue_position"] == 4
    release.touch()
    for job in (blocker, low, high, normal_a, normal_b):
        assert job.wait(timeout=120).value == "succeeded"
    order = _claim_order([low.id, high.id, normal_a.id, normal_b.id])
    assert order == [high.id, normal_a.id, normal_b.id, low.id]


def test_gpu_slots_are_exclusive_and_visible(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ngpus = 3\n")
    release = tmp_path / "release"
    nb = make_notebook(
        tmp_path / "gpu.ipynb",
        "import os\nprint('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'])",
        BLOCKER,
        params="release = ''",
    )
    two = nblaunch.submit(nb, params={"release": str(release)}, gpus=2)
    while two.state.value != "running":
        time.sleep(0.05)
    also_two = nblaunch.submit(nb, params={"release": str(release)}, gpus=2)
    one = nblaunch.submit(nb, params={"release": str(release)}, gpus=1)
    # The 2-GPU job waits (one slot free) and, first in line, holds back the 1-GPU job.
    time.sleep(1.5)
    assert also_two.state.value == "queued" and one.state.value == "queued"
    release.touch()
    for job in (two, also_two, one):
        assert job.wait(timeout=120).value == "succeeded"
    seen = {job.id: job.logs().split("CVD=")[1].split()[0] for job in (two, also_two, one)}
    assert seen[two.id] == "0,1"
    assert len(seen[one.id].split(",")) == 1


SUBMITTER = textwrap.dedent(
    """
    import sys, time
    import nblaunch
    nb, tag, start, marks = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    time.sleep(max(0.0, start - time.time()))
    for i in range(int(sys.argv[5])):
        job = nblaunch.submit(nb, params={"tag": f"{tag}-{i}", "marks": marks}, name=f"{tag}-{i}")
        print(job.id)
    """
)


#: jobs each of the four processes submits (the chaos test runs 200 more, so running
#: many here only adds minutes)
EACH = 12


def test_four_processes_submit_at_once(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\nmax_concurrent = 4\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    nb = make_notebook(
        tmp_path / "side.ipynb",
        "import os\nwith open(os.path.join(marks, tag), 'x') as fh:\n    fh.write(os.environ['NBLAUNCH_JOB_ID'])",
        params="tag = ''\nmarks = ''",
    )
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, str(nb), f"p{p}", str(start), str(marks), str(EACH)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    ids: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.extend(out.split())
    assert len(ids) == 4 * EACH and len(set(ids)) == 4 * EACH
    db = store()
    agents = {row.pid for row in [db.latest_agent()] if row}
    for job_id in ids:
        assert nblaunch.Job(job_id).wait(timeout=600).value == "succeeded"
    for job_id in ids:
        starts = [e for e in db.events(job_id) if e.to_state == "starting"]
        assert len(starts) == 1, job_id
        assert nblaunch.Job(job_id).row.attempt == 1
    written = sorted(p.name for p in marks.iterdir())
    assert written == sorted(f"p{p}-{i}" for p in range(4) for i in range(EACH))
    assert sorted(p.read_text() for p in marks.iterdir()) == sorted(ids)
    # One agent served them all: simultaneous submits did not start a second one.
    with db.transaction() as conn:
        assert conn.execute("SELECT COUNT(*) FROM agents").fetchone()[0] == 1
    assert agents


def test_cancel_ends_every_process_within_grace(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\ncancel_grace_s = 3\n")
    pids = tmp_path / "pids"
    nb = make_notebook(
        tmp_path / "stubborn.ipynb",
        # The kernel ignores SIGTERM and has a child of its own: only SIGKILL after
        # the grace period ends them, and the kernel sits in a session of its own.
        "import os, signal, subprocess\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "open(pids, 'w').write(f'{os.getpid()} {child.pid}')\n"
        "print('first cell done')",
        "import time\ntime.sleep(600)",
        params="pids = ''",
    )
    job = nblaunch.submit(nb, params={"pids": str(pids)})
    deadline = time.monotonic() + 60
    while not pids.exists() or not pids.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kernel_pid, child_pid = map(int, pids.read_text().split())
    runtime_pid = job._store.attempts(job.id)[-1].handle["pid"]
    procs = [psutil.Process(p) for p in (runtime_pid, kernel_pid, child_pid)]
    assert psutil.Process(kernel_pid).ppid() == runtime_pid
    # Let papermill autosave the finished first cell before cancelling.
    time.sleep(1.0)
    asked = time.monotonic()
    job.cancel()
    gone, alive = psutil.wait_procs(procs, timeout=10)
    took = time.monotonic() - asked
    assert not alive, alive
    assert took < 3 + 2.5, took
    assert job.wait(timeout=30).value == "cancelled"
    output = job.output_notebook
    assert output is not None and "first cell done" in output.read_text()
    reasons = [e.reason for e in job._store.events(job.id)]
    assert reasons[-1] == "cancelled by request"


def test_cancel_queued_job_is_immediate(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\nmax_concurrent = 1\n")
    release = tmp_path / "release"
    blocker = nblaunch.submit(
        make_notebook(tmp_path / "block.ipynb", BLOCKER, params="release = ''"),
        params={"release": str(release)},
    )
    waiting = nblaunch.submit(make_notebook(tmp_path / "q.ipynb", "pass"))
    assert waiting.cancel().value == "cancelled"
    release.touch()
    assert blocker.wait(timeout=60).value == "succeeded"
    assert waiting.row.attempt == 0
