"""Execute a bundle's notebook with papermill, in-process, and record the outcome.

papermill's kernel runs in a session of its own and is killed without running
any handler when papermill dies, so SIGTERM / SIGINT received here are
forwarded to the kernel, where the notebook (or nblaunch's hooks) can react.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_PREEMPTED = 143
EXIT_KERNEL_DIED = 138  # papermill's CLI exit code for a dead kernel


class SignalForwarder:
    """Remembers which signals arrived and passes each on to the kernel."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        import psutil

        for child in psutil.Process().children():
            try:
                child.send_signal(signum)
            except psutil.NoSuchProcess:
                pass

    @property
    def preempted(self) -> bool:
        return signal.SIGTERM in self.received


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m nblaunch.runtime BUNDLE RUN_DIR", file=sys.stderr)
        return 2
    bundle, run_dir = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    forwarder = SignalForwarder()
    forwarder.install()
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = json.loads((bundle / "job.json").read_text())
    os.environ["NBLAUNCH_RUN_DIR"] = str(run_dir)
    os.environ.setdefault("NBLAUNCH_SUBMIT_DIR", spec["submit_dir"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nblaunch.runtime %(message)s")
    result = _execute(bundle, run_dir, spec, forwarder)
    result.update(started_at=started, finished_at=time.time())
    _write_json(run_dir / "result.json", result)
    return {
        "succeeded": EXIT_SUCCEEDED,
        "preempted": EXIT_PREEMPTED,
        "kernel_died": EXIT_KERNEL_DIED,
    }.get(result["outcome"], EXIT_FAILED)


def _execute(bundle: Path, run_dir: Path, spec: dict[str, Any], forwarder: SignalForwarder) -> dict[str, Any]:
    import papermill
    from nbclient.exceptions import DeadKernelError

    output = run_dir / "output.ipynb"
    try:
        papermill.execute_notebook(
            str(bundle / "notebook.ipynb"),
            str(output),
            parameters=spec["params"],
            cwd=str(run_dir),
            progress_bar=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            request_save_on_cell_execute=True,
            autosave_cell_every=10,
        )
    except papermill.PapermillExecutionError as exc:
        error = {
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
            "traceback": exc.traceback,
        }
        return _ended(forwarder, "cell_error", error)
    except DeadKernelError as exc:
        error = {"ename": "DeadKernelError", "evalue": str(exc), "cell_index": None}
        return _ended(forwarder, "kernel_died", error)
    except Exception as exc:  # the notebook could not run at all: report, never hide
        logging.getLogger(__name__).exception("papermill could not run the notebook")
        error = {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None}
        return _ended(forwarder, "runtime_error", error)
    return {"state": "succeeded", "outcome": "succeeded", "error": None}


def _ended(forwarder: SignalForwarder, outcome: str, error: dict[str, Any]) -> dict[str, Any]:
    if forwarder.preempted:
        return {"state": "preempted", "outcome": "preempted", "error": error}
    return {"state": "failed", "outcome": outcome, "error": error}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
