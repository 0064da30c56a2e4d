"""Whether an agent serves a ``$NBLAUNCH_HOME``, and how recently it was heard from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nblaunch.agent.lockfile import holder_pid
from nblaunch.home import store_path
from nblaunch.queue.store import Store


def agent_status(root: Path) -> dict[str, Any]:
    """The live agent's pid, queues and heartbeat (``alive`` False and Nones without one)."""
    pid = holder_pid(root)
    store = Store(store_path(root))
    try:
        latest = store.latest_agent()
    finally:
        store.close()
    live = latest if latest and pid == latest.pid else None
    return {
        "alive": pid is not None,
        "pid": pid,
        "home": str(root),
        "last_heartbeat": live.heartbeat_at if live else None,
        "heartbeat_age_s": round(time.time() - live.heartbeat_at, 3) if live else None,
        "queues": list(live.queues) if live else [],
        "started_at": live.started_at if live else None,
    }
