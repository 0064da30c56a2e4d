"""Make sure an agent serves ``$NBLAUNCH_HOME``: wake the live one or start one.

Submitters call this after inserting their job. The check and the start happen
under ``spawn.lock``, which an idle agent also takes before it exits, so two
simultaneous submits start one agent and a job never waits without one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nblaunch.agent import lockfile
from nblaunch.errors import NBLaunchError

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
    idle = os.environ.get("NBLAUNCH_AGENT_IDLE_S", str(DEFAULT_IDLE_S))
    env = {**os.environ, "NBLAUNCH_HOME": str(root)}
    with open(agent_log_path(root), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nblaunch.agent", "--idle-timeout", idle],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = lockfile.holder_pid(root)
        if pid == proc.pid:
            return pid
        if proc.poll() is not None:
            raise NBLaunchError(
                f"the background agent exited at start (code {proc.returncode}); "
                f"see {agent_log_path(root)}"
            )
        time.sleep(0.005)
    proc.kill()
    raise NBLaunchError(f"the background agent did not start within {START_TIMEOUT_S:g}s; see {agent_log_path(root)}")
