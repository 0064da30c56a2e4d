"""Chaos: 200 short jobs while agents are SIGKILLed and jobs preempted at random
moments, with no manual agent restart (every API call that touches the home brings
an agent back). Every job must end in exactly one final state, no two attempts of
a job may overlap, no attempt runs twice nor runs once it was given up as never
started, attempts stay within the retry policy, and every succeeded job leaves
exactly the side effect it should."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

import nblaunch
from nblaunch import api
from nblaunch.agent.lockfile import holder_pid
from nblaunch.errors import TransitionError
from nblaunch.queue.states import FINAL
from nblaunch.runtime.contract import Result
from tests.conftest import make_notebook, write_queues

JOBS = 200
#: seconds between agent kills, and between preemptions: drawn at random
KILL_GAP_S = (2.0, 10.0)
PREEMPT_GAP_S = (2.0, 8.0)
#: jobs that must end between two kills, and between two preemptions, drawn at
#: random: chaos keeps pace with the jobs, so a slow machine (where an agent takes
#: seconds to come back) is not kept down by kills more often than it serves
#: (at most 8 of the 200 jobs apart: at least 25 of each, above the 20 asked for;
#: more only lengthens the run)
KILL_EVERY_JOBS = (3, 8)
PREEMPT_EVERY_JOBS = (3, 8)
#: the run fails when no job reaches a final state for this long (a hung job), so
#: its length follows the machine's speed instead of a fixed deadline
STALL_S = 240
#: each look lists all 200 jobs (~0.15 s on a busy 2-core machine): looking more
#: often would take the CPU the jobs need
POLL_S = 0.5

#: the first cell: one line per execution of the notebook, naming its attempt
RECORD_RUN = """\
import os
with open(os.path.join(out, name + ".runs"), "a") as fh:
    fh.write(os.environ["NBLAUNCH_ATTEMPT"] + "\\n")
"""

WRITE_RESULT = """\
import os
tmp = os.path.join(out, f".{name}.tmp")
with open(tmp, "w") as fh:
    fh.write(str(result))
os.replace(tmp, os.path.join(out, name))
"""
TRAIN = """\
import json, os, time, nblaunch
ckpt = os.path.join(os.environ["NBLAUNCH_CHECKPOINT_DIR"], "step.json")
step = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0
while step < steps and not nblaunch.preempted():
    time.sleep(0.05)
    step += 1
json.dump({"step": step}, open(ckpt, "w"))
result = step
"""


def _kind(i: int) -> str:
    return ("ok", "ok", "ok", "fail", "train")[i % 5]


@pytest.mark.timeout(2400)
def test_chaos(nbl_home: Path, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("NBLAUNCH_CHAOS_SEED", "10")))
    write_queues(
        nbl_home,
        "[queues.local]\nmax_concurrent = 4\ncancel_grace_s = 5\n"
        "[queues.local.retry]\ninitial_s = 0.2\nmax_s = 2\nmax_lost = 10\nmax_preemptions = 50\n",
    )
    # The jobs write beside, not inside, the notebooks' folder (which each job carries):
    # a file they write and rename while a submit reads the folder would be in its listing.
    out = tmp_path / "out"
    out.mkdir()
    folder = tmp_path / "notebooks"
    folder.mkdir()
    params = "name = ''\nout = ''\nsteps = 40"
    notebooks = {
        "ok": make_notebook(
            folder / "ok.ipynb", RECORD_RUN, "result = 'ok'", WRITE_RESULT, params=params
        ),
        "fail": make_notebook(
            folder / "fail.ipynb", RECORD_RUN, "raise ValueError('deterministic')",
            WRITE_RESULT, params=params,
        ),
        "train": make_notebook(
            folder / "train.ipynb", RECORD_RUN, TRAIN, WRITE_RESULT, params=params
        ),
    }  # fmt: skip
    started = time.monotonic()
    jobs: dict[str, str] = {}
    for i in range(JOBS):
        kind = _kind(i)
        name = f"{kind}{i:03d}"
        job = nblaunch.submit(notebooks[kind], params={"name": name, "out": str(out)}, name=name)
        jobs[job.id] = name

    kills = preemptions = 0
    next_kill = time.monotonic() + rng.uniform(*KILL_GAP_S)
    next_preempt = time.monotonic() + rng.uniform(*PREEMPT_GAP_S)
    kill_after, preempt_after = 0, 0  # jobs ended before the next kill, preemption
    ended, progressed = 0, time.monotonic()
    while True:
        snaps = api.jobs()  # touches the home: a killed agent comes back here
        now = time.monotonic()
        done = sum(s.state in FINAL for s in snaps)
        if done > ended:
            ended, progressed = done, now
        assert now - progressed < STALL_S, Counter(s.state.value for s in snaps)
        if done == len(snaps):
            break
        if now >= next_kill and done >= kill_after:
            agent = holder_pid(nbl_home)
            if agent is not None:
                os.kill(agent, signal.SIGKILL)
                kills += 1
                next_kill = now + rng.uniform(*KILL_GAP_S)
                kill_after = done + rng.randint(*KILL_EVERY_JOBS)
        if now >= next_preempt and done >= preempt_after:
            running = [s for s in snaps if s.state.value == "running"]
            if running:
                try:
                    nblaunch.Job(rng.choice(running).id).preempt()
                    preemptions += 1
                    next_preempt = now + rng.uniform(*PREEMPT_GAP_S)
                    preempt_after = done + rng.randint(*PREEMPT_EVERY_JOBS)
                except TransitionError:
                    pass  # it ended meanwhile; the next one
        time.sleep(POLL_S)
    took = time.monotonic() - started

    db = api.store()
    states: Counter[str] = Counter()
    attempts_total = lost = requeued = 0
    for job_id, name in jobs.items():
        row = db.job(job_id)
        kind = name.rstrip("0123456789")
        states[row.state.value] += 1
        finals = [e for e in db.events(job_id) if e.to_state in {s.value for s in FINAL}]
        assert len(finals) == 1, (name, finals)
        attempts = db.attempts(job_id)
        attempts_total += len(attempts)
        classes = Counter(a.failure_class for a in attempts if a.failure_class)
        lost += classes["lost"]
        requeued += len(attempts) - 1
        # within policy: the job's own failures are not retried; infrastructure
        # failures stay under their caps
        assert classes["failed"] <= 1, (name, classes)
        assert row.lost_retries <= 10 and row.preemptions <= 50, row
        # no two attempts overlap, by the store's clock and by the runtimes' own
        for before, after in zip(attempts, attempts[1:], strict=False):
            assert before.finished_at is not None and before.finished_at <= after.started_at
            first, second = (
                Result.read(before.run_dir / "result.json"),
                Result.read(after.run_dir / "result.json"),
            )
            if first and second and first.finished_at and second.started_at:
                assert first.finished_at <= second.started_at, (name, first, second)
        runs = Counter((out / f"{name}.runs").read_text().split())
        assert all(n == 1 for n in runs.values()), (name, runs)  # no attempt ran twice
        never_started = {str(a.n) for a in attempts if a.outcome == "agent_died"}
        assert not never_started & set(runs), (name, runs, never_started)
        effect = out / name
        if kind == "fail":
            assert row.state.value == "failed", (name, row.state, row.error)
            assert not effect.exists()
        else:
            assert row.state.value == "succeeded", (name, row.state, row.error)
            assert effect.read_text() == ("ok" if kind == "ok" else "40"), name
    assert kills >= 20 and preemptions >= 20, (kills, preemptions)
    print(
        f"\nchaos: {JOBS} jobs ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}); "
        f"{kills} agent SIGKILLs, {preemptions} preemptions; {attempts_total} attempts, "
        f"{requeued} requeued, {lost} lost; {took:.0f}s"
    )
