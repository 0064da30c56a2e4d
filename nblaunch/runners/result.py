"""Reading ``result.json``, the runtime's account of how an attempt ended."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from nblaunch.queue.states import State
from nblaunch.runners.base import Outcome


def outcome_from_result(run_dir: Path, exit_code: int | None) -> Outcome:
    """How an attempt ended, from its ``result.json``; without one, from how the
    runtime process ended (``exit_code`` None: it was not the agent's child)."""
    path = run_dir / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return _without_result(run_dir, exit_code)
    return Outcome(
        state=State(result["state"]),
        exit_code=exit_code,
        outcome=result["outcome"],
        error=result.get("error"),
    )


def _without_result(run_dir: Path, exit_code: int | None) -> Outcome:
    if exit_code == -signal.SIGTERM:
        # SIGTERM before the runtime's handler was installed: still a preemption.
        return Outcome(State.PREEMPTED, exit_code, "preempted", None)
    if exit_code is None:
        # An attempt re-adopted after an agent restart vanished without a word:
        # the machine or the process was lost, not the notebook.
        error = {
            "ename": "AttemptLost",
            "evalue": f"the job runtime disappeared without a result; see {run_dir / 'logs'}",
            "cell_index": None,
        }
        return Outcome(State.LOST, None, "lost", error)
    how = (
        f"was killed by {signal.Signals(-exit_code).name}"
        if exit_code < 0
        else f"exited with code {exit_code}"
    )
    error = {
        "ename": "RuntimeCrashed",
        "evalue": f"the job runtime {how} before writing result.json; see {run_dir / 'logs'}",
        "cell_index": None,
    }
    return Outcome(State.FAILED, exit_code, "runtime_crashed", error)
