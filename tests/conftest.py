"""Shared fixtures: an isolated NBLAUNCH_HOME with a real store and real agents."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pytest

from nblaunch.agent.lockfile import holder_pid

if TYPE_CHECKING:
    from nblaunch.api import Job


@pytest.fixture
def nbl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``$NBLAUNCH_HOME``; any agent started in it is stopped afterwards."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("NBLAUNCH_HOME", str(root))
    monkeypatch.setenv("NBLAUNCH_AGENT_IDLE_S", "30")
    from nblaunch import api

    api._store.cache_clear()
    yield root
    kill_attempts(root)
    stop_agent(root)
    api._store.cache_clear()


def kill_attempts(root: Path) -> None:
    """End every process of a job still running: attempts outlive their agent by
    design, so stopping the agent alone would leave them behind."""
    import psutil

    from nblaunch.api import store

    db = store(root)
    for job in db.jobs():
        if job.final:
            continue
        for attempt in db.attempts(job.id):
            pid = (attempt.handle or {}).get("pid")
            if not pid:
                continue
            try:
                proc = psutil.Process(pid)
                if proc.create_time() != attempt.handle["create_time"]:
                    continue
                procs = [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs(procs, timeout=10)


def stop_agent(root: Path, timeout: float = 10) -> None:
    pid = holder_pid(root)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while holder_pid(root) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``condition()``'s first truthy value, looked for every 50 ms until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


#: a training loop that checkpoints every 20 steps and when told to stop
CHECKPOINTING = """\
import json, os, time, nblaunch
ckpt = os.path.join(os.environ["NBLAUNCH_CHECKPOINT_DIR"], "step.json")
start = json.load(open(ckpt))["step"] if os.path.exists(ckpt) else 0
print("resumed from", start, flush=True)

def save(step):
    json.dump({"step": step}, open(ckpt + ".tmp", "w"))
    os.replace(ckpt + ".tmp", ckpt)

step = start
while step < steps and not nblaunch.preempted():
    time.sleep(0.05)
    step += 1
    nblaunch.log({"step_done": step}, step=step)
    if step % 20 == 0:
        save(step)
save(step)
print("stopped at", step, "preempted:", nblaunch.preempted(), flush=True)
"""


def resumed_from(job: Job, attempt: int) -> int:
    """The step the ``CHECKPOINTING`` notebook's attempt started from."""
    found = re.search(r"resumed from (\d+)", job.logs(attempt))
    assert found, job.logs(attempt)
    return int(found.group(1))


def write_queues(root: Path, text: str) -> None:
    (root / "queues.toml").write_text(text)


def make_notebook(
    path: Path, *cells: str, params: str | None = None, kernel: str = "python3"
) -> Path:
    """A notebook whose first cell (tagged ``parameters``) is ``params``, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(nbformat.v4.new_code_cell(src) for src in cells)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real ``nblaunch`` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "nblaunch", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


def cell_outputs(nb_path: Path) -> list[Any]:
    nb = nbformat.read(nb_path, as_version=4)
    return [c.get("outputs", []) for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="session")
def torch_extensions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One torch_extensions cache for the whole run: DeepSpeed's CPU accelerator
    JIT-compiles a communication op on first start (~40 s), once per run, not per
    job. A ``TORCH_EXTENSIONS_DIR`` already set (a developer's cache) is kept."""
    given = os.environ.get("TORCH_EXTENSIONS_DIR")
    folder = Path(given) if given else tmp_path_factory.getbasetemp() / "torch_extensions"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_EXTENSIONS_DIR", str(folder))
        yield folder
