"""Execute a bundle's notebook once with papermill, in-process, and say how it ended.

papermill's kernel runs in a session of its own and is killed without running
any handler when papermill dies, so SIGTERM / SIGINT received here are
forwarded to the kernel, where the notebook (or nblaunch's hooks) can react.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from nblaunch.runtime.contract import BUNDLE_NOTEBOOK, Env, Outcome, Result

# The kernel installs nblaunch's hooks before any user code runs, so the job's
# notebook stays exactly the user's (cell indexes match bare papermill's).
KERNEL_HOOKS = (
    "--IPKernelApp.exec_lines=["
    "'import nblaunch.runtime.kernel as _nblaunch_kernel', "
    "'_nblaunch_kernel.install()', "
    "'import nblaunch.trainers.hooks as _nblaunch_trainers', "
    "'_nblaunch_trainers.install()', "
    "'del _nblaunch_kernel, _nblaunch_trainers']"
)


class SignalForwarder:
    """Remembers which signals arrived and passes each on to the child processes
    (the kernel, or torchrun and through it every rank)."""

    def __init__(self, marker: Path) -> None:
        self.received: list[int] = []
        # A SIGTERM that lands before the kernel exists has no one to forward
        # to; the kernel's hooks look for this file when they start.
        self.marker = marker
        os.environ[Env.PREEMPT_MARKER] = str(marker)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if signum == signal.SIGTERM:
            self.marker.touch()
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signum)

    @property
    def preempted(self) -> bool:
        return signal.SIGTERM in self.received


def run_notebook(
    bundle: Path,
    output: Path,
    cwd: Path,
    spec: dict[str, Any],
    forwarder: SignalForwarder,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> Result:
    """Run the notebook once with papermill in ``cwd``."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    if forwarder.preempted:  # told to stop before the notebook started: run nothing
        return ended(forwarder, Outcome.PREEMPTED, None)
    try:
        papermill.execute_notebook(
            str(bundle / BUNDLE_NOTEBOOK),
            str(output),
            parameters=spec["params"],
            cwd=str(cwd),
            progress_bar=False,
            stdout_file=stdout or sys.stdout,
            stderr_file=stderr or sys.stderr,
            request_save_on_cell_execute=True,
            autosave_cell_every=10,
            extra_arguments=[KERNEL_HOOKS],
        )
    except papermill.PapermillExecutionError as exc:
        error = {
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
            "traceback": exc.traceback,
        }
        return ended(forwarder, Outcome.CELL_ERROR, error)
    except DeadKernelError as exc:
        error = {"ename": "DeadKernelError", "evalue": str(exc), "cell_index": None}
        return ended(forwarder, Outcome.KERNEL_DIED, error)
    except Exception as exc:  # the notebook could not run at all: report, never hide
        logging.getLogger(__name__).exception("papermill could not run the notebook")
        error = {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None}
        return ended(forwarder, Outcome.RUNTIME_ERROR, error)
    return ended(forwarder, Outcome.SUCCEEDED, None)


def ended(forwarder: SignalForwarder, outcome: Outcome, error: dict[str, Any] | None) -> Result:
    """SIGTERM means preemption whatever the notebook did after it: the next
    attempt resumes from the checkpoint the stop saved."""
    if forwarder.preempted:
        return Result(Outcome.PREEMPTED, error)
    return Result(outcome, None if outcome is Outcome.SUCCEEDED else error)
