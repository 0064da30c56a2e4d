"""Reading ``result.json``, the runtime's account of how an attempt ended."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from nblaunch.queue.states import State
from nblaunch.runners.base import Outcome


def outcome_from_result(run_dir: Path, exit_code: int | None) -> Outcome:
    path = run_dir / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        if exit_code is not None and exit_code < 0:
            how = f"was killed by {signal.Signals(-exit_code).name}"
        elif exit_code is not None:
            how = f"exited with code {exit_code}"
        else:
            how = "ended"
        return Outcome(
            state=State.FAILED,
            exit_code=exit_code,
            outcome="runtime_crashed",
            error={
                "ename": "RuntimeCrashed",
                "evalue": (
                    f"the job runtime {how} before writing result.json; see {run_dir / 'logs'}"
                ),
                "cell_index": None,
            },
        )
    return Outcome(
        state=State(result["state"]),
        exit_code=exit_code,
        outcome=result["outcome"],
        error=result.get("error"),
    )
