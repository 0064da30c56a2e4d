"""Nothing hangs and nothing is left without an agent: real agents, real kernels, real
signals. A killed or hung agent comes back by itself; a kernel that never starts, a
job over its time limit, a deterministic error and an OOM each end as their class
says; a higher-priority job preempts a lower one, which resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import nblaunch
from nblaunch import api
from nblaunch.agent.lockfile import holder_pid
from tests.conftest import make_notebook, run_cli, wait_until, write_queues

WAIT_FOR_RELEASE = "import os, time\nwhile not os.path.exists(release):\n    time.sleep(0.05)"


def running(job: nblaunch.Job) -> bool:
    assert not job.row.final, job.status_line()
    return job.row.state.value == "running"


def kill_agent(root: Path) -> int:
    """SIGKILL the agent serving ``root``, wait for its lock to come free; its pid."""
    agent = holder_pid(root)
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    wait_until(lambda: holder_pid(root) != agent, 10, "the killed agent's lock to free")
    return agent


def running_job_without_agent(root: Path, tmp_path: Path, **submit: Any) -> nblaunch.Job:
    """A job blocked in its notebook, running, whose agent was just SIGKILLed."""
    nb = make_notebook(tmp_path / "block.ipynb", WAIT_FOR_RELEASE, params="release = ''")
    job = nblaunch.submit(nb, params={"release": str(tmp_path / "never")}, **submit)
    wait_until(lambda: running(job), 120, "the job to run")
    kill_agent(root)
    return job


def test_wait_returns_after_the_agent_was_killed_mid_job(nbl_home: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    nb = make_notebook(tmp_path / "block.ipynb", WAIT_FOR_RELEASE, params="release = ''")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "nblaunch", "submit", str(nb), "-p", "release", str(release),
         "--wait", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    job = wait_until(lambda: (api.jobs() or [None])[0], 60, "the job row")
    job = nblaunch.Job(job.id)
    wait_until(lambda: job.row.state.value == "running", 120, "the job to run")
    agent = kill_agent(nbl_home)
    release.touch()
    # The runtime goes on without its agent and finishes; only --wait's own polling
    # can bring an agent back to see that.
    result = wait_until(
        lambda: (
            json.loads((nblaunch.Job(job.id).run_dir / "result.json").read_text())
            if (nblaunch.Job(job.id).run_dir / "result.json").exists()
            else None
        ),
        60,
        "the notebook to finish",
    )
    ended = result["finished_at"]
    out, err = waiter.communicate(timeout=30)
    returned = time.time()
    assert waiter.returncode == 0, err
    assert json.loads(out)["state"] == "succeeded"
    assert returned - ended < 15, returned - ended
    assert holder_pid(nbl_home) not in (None, agent)


def test_a_hung_agent_is_replaced_after_its_lease(
    nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBLAUNCH_AGENT_LEASE_S", "3")
    release = tmp_path / "release"
    nb = make_notebook(tmp_path / "block.ipynb", WAIT_FOR_RELEASE, params="release = ''")
    job = nblaunch.submit(nb, params={"release": str(release)})
    wait_until(lambda: running(job), 120, "the job to run")
    hung = holder_pid(nbl_home)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # alive, holding its lock, silent
    try:
        release.touch()
        assert job.wait(timeout=60).value == "succeeded", job.logs()
    finally:
        if psutil.pid_exists(hung):
            os.kill(hung, signal.SIGKILL)
    assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == "zombie"
    assert holder_pid(nbl_home) not in (None, hung)
    status = run_cli("agent", "--status", "--json")
    assert json.loads(status.stdout)["alive"] is True


def test_cancel_with_no_agent_left_stops_the_job(nbl_home: Path, tmp_path: Path) -> None:
    job = running_job_without_agent(nbl_home, tmp_path)
    done = run_cli("cancel", job.id)
    assert done.returncode == 0, done.stderr
    assert job.wait(timeout=60).value == "cancelled"


def test_reading_works_when_no_agent_can_start(nbl_home: Path, tmp_path: Path) -> None:
    job = running_job_without_agent(nbl_home, tmp_path)
    write_queues(nbl_home, "[queues.local]\ngpus = 'many'\n")
    listed = run_cli("jobs")
    assert listed.returncode == 0, listed.stderr
    assert job.id in listed.stdout
    assert listed.stderr.startswith("nblaunch: no agent could start, so jobs wait: ")
    assert len(listed.stderr.splitlines()) == 1, listed.stderr
    write_queues(nbl_home, "")
    assert run_cli("cancel", job.id).returncode == 0
    assert job.wait(timeout=60).value == "cancelled"


def test_a_kernel_that_never_starts_is_retried_then_the_job_ends_lost(
    nbl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernelspec whose "kernel" never answers: it sleeps instead of binding its sockets.
    spec_dir = tmp_path / "jupyter" / "kernels" / "mute"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}"],
                "display_name": "mute",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    write_queues(
        nbl_home,
        "[queues.local]\nkernel_start_timeout_s = 3\n"
        "[queues.local.retry]\nmax_lost = 1\ninitial_s = 0.2\n",
    )
    nb = make_notebook(tmp_path / "mute.ipynb", "print('never')", kernel="mute")
    job = nblaunch.submit(nb)
    assert job.wait(timeout=120).value == "lost", job.status_line()
    attempts = job._store.attempts(job.id)
    assert [(a.outcome, a.failure_class) for a in attempts] == [
        ("kernel_start_failed", "lost"),
        ("kernel_start_failed", "lost"),
    ]
    assert "did not start" in (attempts[0].error or {})["evalue"]
    # the mute kernels are gone with their attempts
    wait_until(
        lambda: (
            not [
                p
                for p in psutil.process_iter(["cmdline"])
                if "time.sleep(600)" in str(p.info["cmdline"])
            ]
        ),
        30,
        "the mute kernels to be gone",
    )


def test_a_job_over_its_timeout_fails_with_reason_timeout(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(120)")
    started = time.monotonic()
    done = run_cli("submit", str(nb), "--timeout", "2s", "--wait", "--json", timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "failed"
    assert job["error"]["ename"] == "Timeout"
    assert [a["class"] for a in job["attempts"]] == ["timeout"]
    assert took < 60, took
    shown = run_cli("show", job["id"])
    assert "failed (timeout)" in shown.stdout and "time limit 2s" in shown.stdout


def test_a_cell_error_fails_at_once_unless_listed_then_retries_with_jittered_backoff(
    nbl_home: Path, tmp_path: Path
) -> None:
    nb = make_notebook(tmp_path / "boom.ipynb", "raise ValueError('deterministic')")
    once = nblaunch.submit(nb, name="once")
    assert once.wait(timeout=120).value == "failed"
    assert len(once._store.attempts(once.id)) == 1
    assert "failed is not retried" in once.events()[-1].reason

    # From the CLI, with every backoff key: waits 1 s then min(2 s, 1.5 s), each cut
    # by up to half.
    flags = ["--retry-on", "failed", "--max-retries", "2", "--backoff", "1"]
    flags += ["--backoff-multiplier", "2", "--backoff-max", "1.5", "--jitter", "0.5"]
    done = run_cli("submit", str(nb), "--name", "retried", *flags, "--wait", "--json")
    assert done.returncode == 1, done.stderr
    retried = nblaunch.Job(json.loads(done.stdout)["id"])
    assert retried.state.value == "failed"
    policy = retried.snapshot(metrics=False).retry_policy
    assert (policy.multiplier, policy.max_s, policy.jitter) == (2.0, 1.5, 0.5)
    attempts = retried._store.attempts(retried.id)
    assert [a.failure_class for a in attempts] == ["failed"] * 3
    delays = [
        float(m.group(1))
        for e in retried.events()
        if (m := re.search(r"failed retry \d/2 in ([\d.]+)s", e.reason))
    ]
    assert len(delays) == 2
    assert 0.5 <= delays[0] <= 1.0 and 0.75 <= delays[1] <= 1.5, delays
    assert len(set(delays)) == 2, delays
    for before, after, delay in zip(attempts[:-1], attempts[1:], delays, strict=True):
        assert before.finished_at is not None
        # Not before its not_before (the event's rounding is 3 significant digits).
        assert after.started_at >= before.finished_at + delay * 0.99, (before, after, delay)


def test_out_of_memory_ends_with_class_oom(nbl_home: Path, tmp_path: Path) -> None:
    nb = make_notebook(
        tmp_path / "oom.ipynb",
        "import resource, psutil\n"
        "limit = psutil.Process().memory_info().vms + 256 * 2**20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))",
        "blob = bytearray(2 * 2**30)",
    )
    job = nblaunch.submit(nb)
    assert job.wait(timeout=120).value == "failed"
    snap = job.snapshot(metrics=False)
    assert snap.error is not None and snap.error.ename == "MemoryError"
    assert [a.failure_class for a in snap.attempts] == ["oom"]
    assert snap.to_dict()["attempts"][0]["class"] == "oom"


CHECKPOINTING = """\
import json, os, time, nblaunch
ckpt = os.path.join(os.environ["NBLAUNCH_CHECKPOINT_DIR"], "step.json")
start = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0
print("resumed from", start)
step = start
while step < steps and not nblaunch.preempted():
    time.sleep(0.05)
    step += 1
json.dump({"step": step}, open(ckpt, "w"))
"""


def test_a_critical_job_preempts_a_lower_one_which_resumes(nbl_home: Path, tmp_path: Path) -> None:
    write_queues(nbl_home, "[queues.local]\nmax_concurrent = 2\nmin_runtime_s = 1\n")
    trainer = make_notebook(tmp_path / "train.ipynb", CHECKPOINTING, params="steps = 200")
    low = [nblaunch.submit(trainer, name=f"low{i}", priority="low") for i in range(2)]
    for job in low:
        wait_until(lambda job=job: running(job), 120, "the low jobs to run")
    # In their training loops, not only started: a preemption before the loop would
    # checkpoint step 0.
    wait_until(lambda: all("resumed from" in j.logs() for j in low), 60, "the low jobs' loops")
    time.sleep(1.0)  # past min_runtime_s
    quick = make_notebook(tmp_path / "quick.ipynb", "print('urgent')")
    submitted = time.time()
    urgent = nblaunch.submit(quick, name="urgent", priority="critical")
    assert urgent.wait(timeout=60).value == "succeeded", urgent.logs()
    first_attempt = urgent._store.attempts(urgent.id)[0]
    assert first_attempt.running_at - submitted < 10, first_attempt.running_at - submitted
    for job in low:
        assert job.wait(timeout=180).value == "succeeded", job.logs()
    preempted = [j for j in low if j.row.preemptions]
    assert len(preempted) == 1, [j.row for j in low]
    victim = preempted[0]
    attempts = victim._store.attempts(victim.id)
    assert [a.failure_class for a in attempts] == ["preempted", None]
    assert any("preempted for higher-priority job" in e.reason for e in victim.events())
    resumed = re.search(r"resumed from (\d+)", victim.logs(2))
    assert resumed and int(resumed.group(1)) > 0, victim.logs(2)


def test_a_preempted_job_that_ignores_sigterm_is_killed_after_the_grace_and_resumes(
    nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, "[queues.local]\ncancel_grace_s = 2\n")
    nb = make_notebook(
        tmp_path / "deaf.ipynb",
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('deaf', flush=True)\n"
        "while os.environ['NBLAUNCH_ATTEMPT'] == '1':\n"
        "    time.sleep(0.05)",
    )
    job = nblaunch.submit(nb)
    wait_until(lambda: "deaf" in job.logs(), 120, "the kernel to ignore SIGTERM")
    kill_agent(nbl_home)  # the grace outlives the agent that sent the SIGTERM
    job.preempt()
    assert job.wait(timeout=120).value == "succeeded", job.logs()
    first, second = job._store.attempts(job.id)
    assert (first.failure_class, first.stop_reason) == ("preempted", "requested"), first
    assert first.finished_at is not None and first.stop_requested_at is not None
    assert first.finished_at - first.stop_requested_at < 30, first
    assert job.row.preemptions == 1


def test_a_stop_whose_agent_died_before_the_kill_is_seen_through(
    nbl_home: Path, tmp_path: Path
) -> None:
    write_queues(nbl_home, "[queues.local]\ncancel_grace_s = 2\n")
    job = running_job_without_agent(nbl_home, tmp_path, timeout_s=3600)
    # What the dead agent did last (its clock says the hour is up): it recorded the
    # time-limit stop, and died before its kill reached the attempt.
    n = job.row.attempt
    assert job._store.mark_stop(job.id, n, "timeout", "past its time limit; stopping")
    assert job.wait(timeout=60).value == "failed"
    (attempt,) = job._store.attempts(job.id)
    assert attempt.failure_class == "timeout", attempt
    assert attempt.stop_requested_at is not None and attempt.finished_at is not None
    assert attempt.finished_at - attempt.stop_requested_at < 30, attempt


def test_cancel_kills_a_double_forked_daemon(nbl_home: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    nb = make_notebook(
        tmp_path / "daemon.ipynb",
        "import subprocess\n"
        f"subprocess.run(['sh', '-c', 'setsid sh -c \"echo $$ > {pid_file}; exec sleep 600\" &'])",
        "import time\ntime.sleep(600)",
    )
    write_queues(nbl_home, "[queues.local]\ncancel_grace_s = 2\n")
    job = nblaunch.submit(nb)
    daemon = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 120, "pid"))
    runtime = psutil.Process(job._store.attempts(job.id)[-1].handle["pid"])
    # It left the runtime's process tree: only its inherited environment ties it to the job.
    assert daemon not in {p.pid for p in runtime.children(recursive=True)}
    job.cancel()
    assert job.wait(timeout=60).value == "cancelled"
    wait_until(
        lambda: not psutil.pid_exists(daemon) or psutil.Process(daemon).status() == "zombie",
        15,
        "the daemon to be killed",
    )
