"""Shared pieces of the benchmark harness: isolated homes, timing, and the report line.

Every figure is printed as a ratio against a baseline measured in the same run,
never as an absolute from a timed test; the absolute value is shown beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@contextlib.contextmanager
def isolated_home(queues: str = "") -> Iterator[Path]:
    """A temporary ``NBLAUNCH_HOME`` for this process and its children.

    The agent started in it is stopped on the way out."""
    old = os.environ.get("NBLAUNCH_HOME")
    with tempfile.TemporaryDirectory(prefix="nbl-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if queues:
            (home / "queues.toml").write_text(queues)
        os.environ["NBLAUNCH_HOME"] = str(home)
        from nblaunch import api

        api._store.cache_clear()
        try:
            yield home
        finally:
            from nblaunch.agent.lockfile import holder_pid

            pid = holder_pid(home)
            if pid:
                os.kill(pid, signal.SIGTERM)
                while holder_pid(home):
                    time.sleep(0.05)
            api._store.cache_clear()
            if old is None:
                os.environ.pop("NBLAUNCH_HOME", None)
            else:
                os.environ["NBLAUNCH_HOME"] = old


def notebook(path: Path, params: str, body: str) -> Path:
    """Write a two-cell notebook at ``path``: a ``parameters`` cell, then ``body``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(
    key: str,
    what: str,
    value: float,
    unit: str,
    baseline: float,
    baseline_what: str,
    target: str,
    ok: bool,
    higher_is_better: bool = False,
) -> dict[str, Any]:
    """Print one figure as ``value ÷ baseline`` and keep it for results/latest.json."""
    ratio = value / baseline if baseline else float("inf")
    verdict = "meets" if ok else "MISSES"
    print(
        f"{key:4} {what}: {value:.4g} {unit}; baseline ({baseline_what}) {baseline:.4g} {unit}; "
        f"ratio {ratio:.3f}; target {target}: {verdict}"
    )
    row = {
        "key": key, "what": what, "value": value, "unit": unit, "baseline": baseline,
        "baseline_what": baseline_what, "ratio": ratio, "target": target, "ok": ok,
        "higher_is_better": higher_is_better,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[key] = row
    path.write_text(json.dumps(rows, indent=2))
    return row


def python() -> str:
    return sys.executable
