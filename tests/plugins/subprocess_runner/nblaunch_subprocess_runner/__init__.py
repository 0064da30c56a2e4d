"""A runner that starts each attempt as a plain child process with a chosen interpreter.

It uses only nblaunch's public runner interface: its options, ``submit``,
``poll`` and ``cancel``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any, Literal

import psutil

from nblaunch.runners import AttemptEnd, Launch, QueueOptions, Runner
from nblaunch.runtime.contract import Outcome, Result, RunDir


class SubprocessOptions(QueueOptions):
    runner: Literal["subprocess"] = "subprocess"
    python: str = sys.executable


class SubprocessRunner(Runner):
    name = "subprocess"
    Options = SubprocessOptions
    runs_here = True
    options: SubprocessOptions

    def submit(self, launch: Launch) -> dict[str, Any]:
        run = launch.run
        run.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **launch.env, **self.attempt_env(launch)}
        with open(run.stdout, "ab") as out, open(run.stderr, "ab") as err:
            proc = subprocess.Popen(
                [self.options.python, "-m", "nblaunch.runtime", str(launch.bundle), str(run.path)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}

    def poll(self, handle: dict[str, Any], run: RunDir) -> AttemptEnd | None:
        try:
            proc = psutil.Process(handle["pid"])
            if proc.create_time() == handle["create_time"]:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    return None
                proc.wait()
        except psutil.NoSuchProcess:
            pass
        result = Result.read(run.result)
        if result is None:
            return AttemptEnd(Outcome.LOST, {"ename": "NoResult", "evalue": str(run.path)})
        return AttemptEnd(result.outcome, result.error)

    def cancel(self, handle: dict[str, Any], grace_s: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(handle["pid"], signal.SIGTERM)
