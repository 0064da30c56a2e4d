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
    if exit_code is None:
        # An attempt re-adopted after an agent restart vanished without a word:
        # the machine or the process was lost, not the notebook.
        error = {
            "ename": "AttemptLost",
            "evalue": f"the job runtime disappeared without a result; see {run.logs}",
            "cell_index": None,
        }
        return AttemptEnd(Outcome.LOST, error, None)
    how = (
        f"was killed by {signal.Signals(-exit_code).name}"
        if exit_code < 0
        else f"exited with code {exit_code}"
    )
    error = {
        "ename": "RuntimeCrashed",
        "evalue": f"the job runtime {how} before writing result.json; see {run.logs}",
        "cell_index": None,
    }
    return AttemptEnd(Outcome.RUNTIME_CRASHED, error, exit_code)
