"""Execute a bundle's notebook once with papermill, in-process, and say how it ended.

papermill's kernel runs in a session of its own and is killed without running
any handler when papermill dies, so SIGTERM / SIGINT received here are
forwarded to the kernel, where the notebook (or nblaunch's hooks) can react.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from nblaunch.runtime.contract import (
    BUNDLE_NOTEBOOK,
    DEFAULT_KERNEL_START_TIMEOUT_S,
    Env,
    Outcome,
    Result,
    open_private,
)
from nblaunch.runtime.oom import is_oom_error, oom_kills

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


def ipc_kernel_manager() -> type[Any]:
    """A kernel manager whose channels are Unix sockets in a private folder.

    Over TCP, jupyter_client picks free ports, releases them and the kernel
    binds them later; under load another process takes one meanwhile and the
    kernel dies with ``Address already in use``. Sockets in a fresh folder
    cannot clash.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):  # type: ignore[misc]
        #: exit statuses of this run's kernels seen dead (negative: the signal)
        deaths: list[int] = []

        async def _async_is_alive(self) -> bool:
            alive = bool(await super()._async_is_alive())
            process = getattr(self.provisioner, "process", None)
            if not alive and process is not None and process.returncode is not None:
                type(self).deaths.append(process.returncode)
            return alive

        is_alive = _async_is_alive

        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            # Short: a socket path must fit in 107 bytes.
            return os.path.join(tempfile.mkdtemp(prefix="nblk-"), "k")

        def cleanup_ipc_files(self) -> None:
            super().cleanup_ipc_files()
            shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    return IPCKernelManager


def run_notebook(
    bundle: Path,
    output: Path,
    cwd: Path,
    spec: dict[str, Any],
    forwarder: SignalForwarder,
    ready: Path,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> Result:
    """Run the notebook once with papermill in ``cwd``; the kernel touches ``ready``
    once it is up, which tells a kernel that never started from a failing job."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    if forwarder.preempted:  # told to stop before the notebook started: run nothing
        return ended(forwarder, Outcome.PREEMPTED, None)
    os.environ[Env.KERNEL_READY] = str(ready)
    os.close(open_private(output))  # papermill rewrites it in place: it keeps this mode
    start_timeout = float(
        os.environ.get(Env.KERNEL_START_TIMEOUT_S, DEFAULT_KERNEL_START_TIMEOUT_S)
    )
    kills_before = oom_kills()
    manager = ipc_kernel_manager()
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
            start_timeout=start_timeout,
            kernel_manager_class=manager,
        )
    except papermill.PapermillExecutionError as exc:
        error = {
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
            "traceback": exc.traceback,
        }
        oom = is_oom_error(exc.ename, exc.evalue)
        return ended(forwarder, Outcome.OOM if oom else Outcome.CELL_ERROR, error)
    except Exception as exc:  # the notebook could not run at all: report, never hide
        if not ready.exists():
            error = {
                "ename": "KernelStartFailed",
                "evalue": f"the kernel did not start: {type(exc).__name__}: {exc}",
                "cell_index": None,
            }
            return ended(forwarder, Outcome.KERNEL_START_FAILED, error)
        if isinstance(exc, DeadKernelError):
            kills = oom_kills()
            # The counter is the whole cgroup's: only a kernel that died of SIGKILL
            # while it rose is taken for this job's.
            sigkilled = -signal.SIGKILL in manager.deaths
            if (
                sigkilled
                and kills is not None
                and kills_before is not None
                and kills > kills_before
            ):
                error = {
                    "ename": "OutOfMemory",
                    "evalue": "the kernel was killed by the out-of-memory killer "
                    f"(cgroup oom_kill {kills_before} -> {kills})",
                    "cell_index": None,
                }
                return ended(forwarder, Outcome.OOM, error)
            error = {"ename": "DeadKernelError", "evalue": str(exc), "cell_index": None}
            return ended(forwarder, Outcome.KERNEL_DIED, error)
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
