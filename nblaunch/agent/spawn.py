"""Make sure an agent serves ``$NBLAUNCH_HOME``: wake the live one or start one.

Submitters call this after inserting their job. The check and the start happen
under ``spawn.lock``, which an idle agent also takes before it exits, so two
simultaneous submits start one agent and a job never waits without one.
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
from nblaunch.errors import NBLaunchError
from nblaunch.runtime.contract import Env

DEFAULT_IDLE_S = 300.0
START_TIMEOUT_S = 30.0


def spawn_lock_path(root: Path) -> Path:
    return root / "spawn.lock"


def agent_log_path(root: Path) -> Path:
    return root / "agent.log"


def ensure_agent(root: Path) -> int:
    """Pid of the agent now serving ``root`` (started in the background if needed)."""
    with lockfile.held(spawn_lock_path(root)):
        pid = lockfile.holder_pid(root)
        if pid is not None:
            lockfile.wake(root)
            return pid
        return _start_background_agent(root)


def _start_background_agent(root: Path) -> int:
    """Start the agent detached: a shell backgrounds it and exits at once, so the
    agent is re-parented to init and never lingers as a zombie child of a
    long-lived kernel that happened to start it."""
    idle = os.environ.get("NBLAUNCH_AGENT_IDLE_S", str(DEFAULT_IDLE_S))
    env = {**os.environ, Env.HOME: str(root)}
    argv = [sys.executable, "-m", "nblaunch.agent", "--idle-timeout", idle]
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
            raise NBLaunchError(f"the background agent exited at start; see {agent_log_path(root)}")
        time.sleep(0.005)
    raise NBLaunchError(
        f"the background agent did not start within {START_TIMEOUT_S:g}s; "
        f"see {agent_log_path(root)}"
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
