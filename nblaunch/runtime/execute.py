"""Execute a bundle's notebook with papermill, in-process, and record the outcome.

papermill's kernel runs in a session of its own and is killed without running
any handler when papermill dies, so SIGTERM / SIGINT received here are
forwarded to the kernel, where the notebook (or nblaunch's hooks) can react.
Multi-process strategies start torchrun, and each rank runs this same
execution with a kernel of its own (``nblaunch.runtime.rank``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from nblaunch.runtime.environment import job_environment

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_PREEMPTED = 143
EXIT_KERNEL_DIED = 138  # papermill's CLI exit code for a dead kernel

KERNEL_HOOKS = (
    "--IPKernelApp.exec_lines=["
    "'import nblaunch.runtime.kernel as _nblaunch_kernel', "
    "'_nblaunch_kernel.install()', "
    "'del _nblaunch_kernel']"
)


class SignalForwarder:
    """Remembers which signals arrived and passes each on to the child processes
    (the kernel, or torchrun and through it every rank)."""

    def __init__(self, marker: Path) -> None:
        self.received: list[int] = []
        # A SIGTERM that lands before the kernel exists has no one to forward
        # to; the kernel's hooks look for this file when they start.
        self.marker = marker
        os.environ["NBLAUNCH_PREEMPT_MARKER"] = str(marker)

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


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m nblaunch.runtime BUNDLE RUN_DIR", file=sys.stderr)
        return 2
    bundle, run_dir = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    forwarder = SignalForwarder(run_dir / ".nblaunch-preempted")
    forwarder.install()
    started = time.time()
    spec = json.loads((bundle / "job.json").read_text())
    prepare_environment(spec, run_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nblaunch.runtime %(message)s")
    stop_sampling = threading.Event()
    from nblaunch.runtime.gpu import start_sampler

    start_sampler(stop_sampling)
    try:
        if distributed(spec):
            from nblaunch.runtime.launch import run_distributed

            result = run_distributed(bundle, run_dir, spec, forwarder)
        else:
            result = run_notebook(bundle, run_dir / "output.ipynb", run_dir, spec, forwarder)
    finally:
        stop_sampling.set()
    result.update(started_at=started, finished_at=time.time())
    write_json(run_dir / "result.json", result)
    return exit_code(result)


def serve_warm() -> int:
    """Import papermill and its kernel machinery now, then run the one attempt the
    local runner sends as a JSON line on stdin (nothing, at end-of-file)."""
    import nbclient  # noqa: F401
    import papermill  # noqa: F401

    line = sys.stdin.readline()
    if not line:
        return 0
    order = json.loads(line)
    os.chdir(order["run_dir"])
    os.environ.clear()
    os.environ.update(order["env"])
    for fd, path in ((1, order["stdout"]), (2, order["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return main([order["bundle"], order["run_dir"]])


def prepare_environment(spec: dict[str, Any], run_dir: Path) -> None:
    job_id = os.environ.get("NBLAUNCH_JOB_ID") or run_dir.parent.parent.name
    checkpoints = Path(
        os.environ.get("NBLAUNCH_CHECKPOINT_DIR") or run_dir.parent.parent / "checkpoints"
    )
    checkpoints.mkdir(parents=True, exist_ok=True)
    os.environ.update(job_environment(run_dir, job_id, checkpoints))
    os.environ.setdefault("NBLAUNCH_JOB_ID", job_id)
    os.environ.setdefault("NBLAUNCH_SUBMIT_DIR", spec["submit_dir"])
    options = spec.get("options") or {}
    os.environ["NBLAUNCH_STRATEGY"] = spec["strategy"]
    os.environ["NBLAUNCH_GPUS"] = str(spec["gpus"])
    os.environ["NBLAUNCH_NODES"] = str(spec["nodes"])
    os.environ["NBLAUNCH_ATTEMPT_STARTED"] = repr(time.time())
    if "zero" in options:
        os.environ["NBLAUNCH_ZERO_STAGE"] = str(options["zero"])
    if options.get("offload"):
        os.environ["NBLAUNCH_OFFLOAD"] = "1"


def distributed(spec: dict[str, Any]) -> bool:
    """Whether the job runs under torchrun. Any strategy does, even with one rank:
    DeepSpeed and FSDP set themselves up from the launcher's variables."""
    return spec["strategy"] != "none" or int(spec["nodes"]) > 1


def ranks_per_node(spec: dict[str, Any]) -> int:
    if spec["strategy"] == "none":
        return 1
    return max(1, int(spec["gpus"]))


def run_notebook(
    bundle: Path,
    output: Path,
    cwd: Path,
    spec: dict[str, Any],
    forwarder: SignalForwarder,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> dict[str, Any]:
    """Run the notebook once with papermill; the outcome as ``result.json`` holds it."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    if forwarder.preempted:  # told to stop before the notebook started: run nothing
        return ended(forwarder, "preempted", None)
    try:
        papermill.execute_notebook(
            str(bundle / "notebook.ipynb"),
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
        return ended(forwarder, "cell_error", error)
    except DeadKernelError as exc:
        error = {"ename": "DeadKernelError", "evalue": str(exc), "cell_index": None}
        return ended(forwarder, "kernel_died", error)
    except Exception as exc:  # the notebook could not run at all: report, never hide
        logging.getLogger(__name__).exception("papermill could not run the notebook")
        error = {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None}
        return ended(forwarder, "runtime_error", error)
    return ended(forwarder, "succeeded", None)


def ended(forwarder: SignalForwarder, outcome: str, error: dict[str, Any] | None) -> dict[str, Any]:
    """SIGTERM means preemption whatever the notebook did after it: the next
    attempt resumes from the checkpoint the stop saved."""
    if forwarder.preempted:
        return {"state": "preempted", "outcome": "preempted", "error": error}
    if outcome == "succeeded":
        return {"state": "succeeded", "outcome": outcome, "error": None}
    return {"state": "failed", "outcome": outcome, "error": error}


def exit_code(result: dict[str, Any]) -> int:
    return {
        "succeeded": EXIT_SUCCEEDED,
        "preempted": EXIT_PREEMPTED,
        "kernel_died": EXIT_KERNEL_DIED,
    }.get(result["outcome"], EXIT_FAILED)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
