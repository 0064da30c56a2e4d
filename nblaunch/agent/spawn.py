"""Make sure an agent serves ``$NBLAUNCH_HOME``: wake the live one or start one.

Submitters call :func:`ensure_agent` after inserting their job; every other
command and API call that touches a home calls :func:`supervise`, which does
the same when jobs are queued or running and no live agent serves them (like
task-spooler's server). The check and the start happen under ``spawn.lock``,
which an idle agent also takes before it exits, so two simultaneous callers
start one agent and a job never waits without one.

An agent is live while it holds ``agent.lock`` (the kernel frees the lock
when it dies) and its heartbeat is younger than its lease; a hung agent
(stopped, or stuck in a step) is killed and replaced, and the new one
re-adopts the attempts that still run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil

from nblaunch.agent import lockfile
from nblaunch.errors import AgentStartError
from nblaunch.home import PRIVATE_FILE
from nblaunch.queue.store import Store
from nblaunch.runtime.contract import Env

DEFAULT_IDLE_S = 300.0
START_TIMEOUT_S = 30.0
DEFAULT_LEASE_S = 30.0


def spawn_lock_path(root: Path) -> Path:
    return root / "spawn.lock"


def agent_log_path(root: Path) -> Path:
    return root / "agent.log"


def lease_s() -> float:
    """How old an agent's heartbeat may grow before the agent counts as dead."""
    return float(os.environ.get("NBLAUNCH_AGENT_LEASE_S", DEFAULT_LEASE_S))


def live_agent(root: Path, store: Store) -> int | None:
    """Pid of the agent serving ``root``, or None when none holds the lock or its
    heartbeat is older than its lease."""
    pid = lockfile.holder_pid(root)
    if pid is None or is_hung(store, pid):
        return None
    return pid


def supervise(root: Path, store: Store) -> int | None:
    """Start an agent when jobs are queued or running and no live agent serves
    ``root``; the live agent's pid, or None when there is nothing to serve.
    ``NBLAUNCH_AGENT_AUTOSTART=0`` leaves starting agents to the user (an agent
    kept by a service manager, say); submitting still starts one."""
    pid = live_agent(root, store)
    if pid is not None or os.environ.get("NBLAUNCH_AGENT_AUTOSTART", "1") == "0":
        return pid
    if not store.has_active_jobs():
        return None
    return ensure_agent(root, store)


def ensure_agent(root: Path, store: Store) -> int:
    """Pid of the agent now serving ``root`` (started in the background if needed)."""
    with lockfile.held(spawn_lock_path(root)):
        pid = lockfile.holder_pid(root)
        if pid is not None and not is_hung(store, pid):
            lockfile.wake(root)
            return pid
        if pid is not None:
            _kill_hung(root, pid)
        return _start_background_agent(root)


def is_hung(store: Store, pid: int) -> bool:
    """Whether the agent ``pid``'s heartbeat is older than its lease."""
    beat = store.agent_heartbeat(pid)
    # No row yet: the agent took the lock and is registering.
    return beat is not None and time.time() - beat > lease_s()


def _kill_hung(root: Path, pid: int) -> None:
    """SIGKILL an agent past its lease and wait for its lock to come free. Its
    attempts run in sessions of their own and are re-adopted by the next agent."""
    try:
        proc = psutil.Process(pid)
        if "agent" not in " ".join(proc.cmdline()):
            return  # the pid was reused: the lock holder is gone
        proc.kill()
    except psutil.Error:
        return
    deadline = time.monotonic() + START_TIMEOUT_S
    while lockfile.holder_pid(root) == pid and time.monotonic() < deadline:
        time.sleep(0.01)


def _start_background_agent(root: Path) -> int:
    """Start the agent detached: a shell backgrounds it and exits at once, so the
    agent is re-parented to init and never lingers as a zombie child of a
    long-lived kernel that happened to start it."""
    idle = os.environ.get("NBLAUNCH_AGENT_IDLE_S", str(DEFAULT_IDLE_S))
    # An agent started from inside a job must not look like one of its processes.
    inherited = {k: v for k, v in os.environ.items() if k not in (Env.JOB_ID, Env.ATTEMPT)}
    env = {**inherited, Env.HOME: str(root)}
    argv = [sys.executable, "-m", "nblaunch.agent", "--idle-timeout", idle]
    # The shell's ``>>`` appends to the log; made here first so it is the user's alone.
    os.close(os.open(agent_log_path(root), os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE))
    log = shlex.quote(str(agent_log_path(root)))
    done = subprocess.run(
        ["/bin/sh", "-c", f"{shlex.join(argv)} >>{log} 2>&1 </dev/null & echo $!"],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        check=True,
    )
    pid = int(done.stdout.strip())
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if lockfile.holder_pid(root) == pid:
            return pid
        if not _running(pid):
            raise AgentStartError(
                f"the background agent exited at start; see {agent_log_path(root)}"
            )
        time.sleep(0.005)
    raise AgentStartError(
        f"the background agent did not start within {START_TIMEOUT_S:g}s; "
        f"see {agent_log_path(root)}"
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
