"""The attempt's metrics stream: ``$NBLAUNCH_RUN_DIR/metrics.jsonl`` (``contract.METRICS_FILE``).

Each line is ``{"step": int | null, "time": float, "metrics": {name: number}}``,
written with one ``write`` on an ``O_APPEND`` file so lines from the kernel and
the runtime's GPU sampler never interleave. The agent ingests new lines into the
store while the job runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from nblaunch.runtime.contract import METRICS_FILE, Env, append_line


def log(data: Mapping[str, Any], step: int | None = None, *, all_ranks: bool = False) -> None:
    """Record numeric metrics for the running job (rank 0 only unless ``all_ranks``).

    Outside a job (no ``NBLAUNCH_RUN_DIR``) this does nothing, so a notebook
    behaves the same run interactively and as a job.
    """
    run_dir = os.environ.get(Env.RUN_DIR)
    if not run_dir or (not all_ranks and os.environ.get("RANK", "0") != "0"):
        return
    append_metrics(os.path.join(run_dir, METRICS_FILE), data, step, time.time())


def append_metrics(
    path: str | os.PathLike[str], data: Mapping[str, Any], step: int | None, when: float
) -> None:
    """Append one line of ``data``'s numbers (the rest is left out) to the metrics file
    ``path``; nothing when it holds no number."""
    numbers = {str(k): float(v) for k, v in data.items() if _is_number(v)}
    if numbers:
        line = {"step": None if step is None else int(step), "time": when, "metrics": numbers}
        append_line(path, json.dumps(line))


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    item = getattr(value, "item", None)  # 0-d tensors and numpy scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        try:
            return _is_number(item())
        except (TypeError, ValueError):
            return False
    return False


def new_lines(path: str | os.PathLike[str], offset: int) -> tuple[list[bytes], int]:
    """The complete lines after byte ``offset``, and the offset to read from next."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
    return chunk[:end].splitlines(), offset + end


def read_new(
    path: str | os.PathLike[str], offset: int
) -> tuple[list[tuple[int | None, str, float, float]], int]:
    """Complete lines after byte ``offset``.

    Returns ``(step, name, value, time)`` rows and the offset to read from next."""
    lines, offset = new_lines(path, offset)
    rows = []
    for raw in lines:
        rows.extend(_parse_line(raw))
    return rows, offset


def _parse_line(raw: bytes) -> list[tuple[int | None, str, float, float]]:
    """A line's rows; a malformed line (a notebook may write anything here) is skipped
    rather than stopping the agent on it forever."""
    try:
        entry = json.loads(raw)
        step = entry.get("step")
        when = float(entry["time"])
        metrics = entry["metrics"]
        step = None if step is None else int(step)
        return [(step, str(k), float(v), when) for k, v in metrics.items()]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
