"""Whether an agent serves a ``$NBLAUNCH_HOME``, and how recently it was heard from."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nblaunch.agent.lockfile import holder_pid
from nblaunch.agent.spawn import is_hung
from nblaunch.home import store_path
from nblaunch.queue.store import Store


def agent_status(root: Path) -> dict[str, Any]:
    """The agent holding the lock: its pid, queues and heartbeat; ``alive`` only while
    its heartbeat is within its lease. ``active_jobs``: whether jobs wait or run."""
    pid = holder_pid(root)
    store = Store(store_path(root))
    try:
        latest = store.latest_agent()
        active = store.has_active_jobs()
        hung = pid is not None and is_hung(store, pid)
    finally:
        store.close()
    live = latest if latest and pid == latest.pid else None
    return {
        "alive": pid is not None and not hung,
        "hung": hung,
        "active_jobs": active,
        "pid": pid,
        "home": str(root),
        "last_heartbeat": live.heartbeat_at if live else None,
        "heartbeat_age_s": round(time.time() - live.heartbeat_at, 3) if live else None,
        "queues": list(live.queues) if live else [],
        "started_at": live.started_at if live else None,
    }
