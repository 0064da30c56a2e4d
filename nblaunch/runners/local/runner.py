"""The local runner: each attempt is a process group on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import psutil

from nblaunch.errors import CapacityError
from nblaunch.runners.base import AttemptEnd, Launch, Runner, Slots
from nblaunch.runners.local.options import LocalOptions
from nblaunch.runners.result import end_from_result
from nblaunch.runtime.contract import Env, RunDir, make_private_dir, open_private

#: local queues share this machine's devices
DEVICE_POOL = "local"


class LocalRunner(Runner):
    """Runs ``python -m nblaunch.runtime BUNDLE RUN_DIR`` in a session of its own.

    One runtime waits warm (papermill and its dependencies already imported,
    about as long as papermill's own start) for the next attempt, which it gets
    as one JSON line on stdin; a cold start is the fallback. The handle is the
    runtime's pid plus its start time, so an agent that restarts can re-adopt
    attempts that outlived the previous agent.
    """

    name = "local"
    Options = LocalOptions
    runs_here = True
    options: LocalOptions

    def __init__(self, options: LocalOptions) -> None:
        super().__init__(options)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._warm: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._spawn_warm()

    def gpu_slots(self) -> int:
        return len(self.options.device_ids())

    def check_capacity(self, gpus: int, nodes: int) -> None:
        if nodes > 1:
            raise CapacityError(
                f"queue {self.options.name!r} runs on one machine; the job asks for {nodes} "
                "nodes (use --nodes 1 or a Slurm / Kubernetes queue)"
            )
        super().check_capacity(gpus, nodes)

    def slots(self) -> Slots:
        return Slots(self.options.device_ids(), self.options.cpu_slots(), DEVICE_POOL)

    def submit(self, launch: Launch) -> dict[str, Any]:
        run = launch.run
        make_private_dir(run.logs)
        # An empty CUDA_VISIBLE_DEVICES hides every GPU from a job that asked for none.
        env = {**os.environ, **launch.env, **self.attempt_env(launch)}
        order = {
            "bundle": str(launch.bundle),
            "run_dir": str(run.path),
            "env": env,
            "stdout": str(run.stdout),
            "stderr": str(run.stderr),
        }
        proc = self._hand_to_warm(order, run) or self._start_cold(order, run)
        self._children[proc.pid] = proc
        self._spawn_warm()
        return {**_identity(proc), "job_id": launch.job_id, "attempt": launch.attempt}

    def _spawn_warm(self) -> None:
        self._warm = subprocess.Popen(
            [sys.executable, "-m", "nblaunch.runtime", "--warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _hand_to_warm(self, order: dict[str, Any], run: RunDir) -> subprocess.Popen[bytes] | None:
        proc, self._warm = self._warm, None
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return None
        # Before the order: a warm runtime may take seconds to read it.
        run.record_runtime(**_identity(proc))
        try:
            proc.stdin.write(json.dumps(order).encode() + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            proc.wait()
            return None
        return proc

    def _start_cold(self, order: dict[str, Any], run: RunDir) -> subprocess.Popen[bytes]:
        with (
            os.fdopen(open_private(order["stdout"]), "ab") as out,
            os.fdopen(open_private(order["stderr"]), "ab") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", "nblaunch.runtime", order["bundle"], order["run_dir"]],
                cwd=order["run_dir"],
                env=order["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        run.record_runtime(**_identity(proc))
        return proc

    def recover(self, run: RunDir, job_id: str, attempt: int) -> dict[str, Any] | None:
        try:
            started = json.loads(run.runtime_process.read_text())
        except (OSError, ValueError):
            return None
        return {**started, "job_id": job_id, "attempt": attempt}

    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | None:
        pid = handle["pid"]
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is None:
                return None
            del self._children[pid]
        else:
            if _alive(handle):
                return None
            code = None  # not our child: its exit status went to whoever adopted it
        return end_from_result(run, code)

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        threading.Thread(target=_terminate_attempt, args=(handle, grace_s), daemon=True).start()

    def preempt(self, handle: dict[str, Any]) -> None:
        # As a container runtime does: SIGTERM to the job's main process, which
        # forwards it to the kernel. Signalling every process would also kill
        # helpers the training still needs to save (wandb's service, loaders).
        if _alive(handle):
            os.kill(handle["pid"], signal.SIGTERM)


def _identity(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """A process as handles name it: its pid and start time (pids are reused)."""
    return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}


def _alive(handle: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(handle["pid"])
        return proc.create_time() == handle["create_time"] and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _attempt_processes(handle: dict[str, Any]) -> list[psutil.Process]:
    """Every process of the attempt: the runtime's tree, and whatever left it
    (a double-forked daemon a cell started) but still carries the attempt's
    job id and number in its environment, which every child inherits."""
    procs = []
    if _alive(handle):
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(handle["pid"])
            procs = [root, *root.children(recursive=True)]
    job_id, attempt = handle.get("job_id"), str(handle.get("attempt"))
    if job_id is None:
        return procs
    seen = {p.pid for p in procs} | {os.getpid()}
    for proc in psutil.process_iter():
        if proc.pid in seen:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue  # another user's, or gone
        if env.get(Env.JOB_ID) == job_id and env.get(Env.ATTEMPT) == attempt:
            procs.append(proc)
    return procs


def _terminate_attempt(handle: dict[str, Any], grace_s: float) -> None:
    """SIGTERM the runtime and everything of the attempt (the kernel sits in its
    own session, so a process-group signal would miss it), then SIGKILL what is
    left after ``grace_s``, including processes started during the grace."""
    procs = _attempt_processes(handle)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    seen = {p.pid for p in procs}
    alive.extend(p for p in _attempt_processes(handle) if p.pid not in seen)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
