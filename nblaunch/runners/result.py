"""Reading ``result.json``, the runtime's account of how an attempt ended."""

from __future__ import annotations

import signal

from nblaunch.runners.base import AttemptEnd
from nblaunch.runtime.contract import Outcome, Result, RunDir


def end_from_result(run: RunDir, exit_code: int | None) -> AttemptEnd:
    """How an attempt ended, from its ``result.json``; without one, from how the
    runtime process ended (``exit_code`` None: it was not the agent's child)."""
    result = Result.read(run.result)
    if result is not None:
        return AttemptEnd(result.outcome, result.error, exit_code)
    if exit_code == -signal.SIGTERM:
        # SIGTERM before the runtime's handler was installed: still a preemption.
        return AttemptEnd(Outcome.PREEMPTED, None, exit_code)
    if exit_code is None or exit_code < 0:
        # Killed from outside, or vanished while no agent watched (its exit status
        # went elsewhere): the machine or the process was lost, not the notebook.
        # Both read the same, whether or not the agent restarted meanwhile.
        how = "disappeared" if exit_code is None else f"was killed by {_signal_name(exit_code)}"
        error = {
            "ename": "AttemptLost",
            "evalue": f"the job runtime {how} without a result; see {run.logs}",
            "cell_index": None,
        }
        return AttemptEnd(Outcome.LOST, error, exit_code)
    how = f"exited with code {exit_code}"
    error = {
        "ename": "RuntimeCrashed",
        "evalue": f"the job runtime {how} before writing result.json; see {run.logs}",
        "cell_index": None,
    }
    return AttemptEnd(Outcome.RUNTIME_CRASHED, error, exit_code)


def _signal_name(exit_code: int) -> str:
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"
