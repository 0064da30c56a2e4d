"""Which device a run gets, and its peak: a catalog GPU, this machine's GPU, or its CPU.

A CPU has no datasheet figure that training can reach, so a CPU-only queue
measures its own: the best of a short burst of fp32 matmuls (torch when
installed, else numpy), cached per host in ``$NBLAUNCH_HOME/cpu_peak.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nblaunch.errors import MissingDependencyError, SpecError
from nblaunch.jobs.gpus import CPU_FAMILY, lookup_gpu, match_device_name
from nblaunch.queue.config import runner_for
from nblaunch.runners.base import QueueOptions

__all__ = ["Device", "cpu_peak_tflops", "resolve_device"]

PROBE_FILE = "cpu_peak.json"
_PROBE_N = 1024
_PROBE_SECONDS = 0.25


@dataclass(frozen=True)
class Device:
    """What one data-parallel worker runs on."""

    name: str
    family: str
    peak_tflops: float
    memory_gb: float
    note: str | None = None

    @property
    def cpu(self) -> bool:
        return self.family == CPU_FAMILY


def resolve_device(gpu: str | None, gpus: int, queue: QueueOptions | None, root: Path) -> Device:
    """The device ``gpu`` names, else the queue's ``gpu_type``, else this machine's.

    ``gpus=0``, ``gpu="CPU"`` and a local queue on a machine without GPUs all
    mean the CPU, whose peak is measured (see :func:`cpu_peak_tflops`).

    Raises
    ------
    SpecError
        Unknown GPU name, or nothing says which GPU the run gets.
    """
    if gpus == 0 or (gpu is not None and gpu.strip().lower() == "cpu"):
        return cpu_device(root)
    if gpu:
        found, note = lookup_gpu(gpu)
        return Device(found.name, found.family, found.peak_tflops, found.memory_gb, note)
    if queue is not None and queue.gpu_type:
        found, note = lookup_gpu(queue.gpu_type)
        return Device(found.name, found.family, found.peak_tflops, found.memory_gb, note)
    if queue is not None and (runner := runner_for(queue)).runs_here:
        if runner.gpu_slots() == 0:
            return cpu_device(root)
        name = _local_gpu_name()
        match = match_device_name(name) if name else None
        if match is not None:
            return Device(match.name, match.family, match.peak_tflops, match.memory_gb)
        raise SpecError(
            f"cannot tell which GPU this machine has ({name or 'NVML unavailable'}); "
            f"pass --gpu TYPE or set gpu_type in [queues.{queue.name}] of queues.toml"
        )
    if queue is not None:
        raise SpecError(
            f"queue {queue.name!r} does not say its GPU; pass --gpu TYPE or set gpu_type "
            f"in [queues.{queue.name}] of queues.toml"
        )
    raise SpecError(
        "name the GPU (--gpu A100-80GB) or a queue whose gpu_type is set (--queue NAME)"
    )


def cpu_device(root: Path) -> Device:
    import psutil

    peak = cpu_peak_tflops(root)
    return Device("CPU", CPU_FAMILY, peak, psutil.virtual_memory().total / 1e9)


def _local_gpu_name() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _probe_key() -> tuple[str, str]:
    for backend in ("torch", "numpy"):
        if importlib.util.find_spec(backend) is not None:
            return f"{socket.gethostname()}/{os.cpu_count()}cpu/{backend}", backend
    raise MissingDependencyError(
        "measuring this CPU's peak needs torch or numpy: pip install numpy (or 'nblaunch[train]')"
    )


def cpu_peak_tflops(root: Path, *, refresh: bool = False) -> float:
    """This machine's fp32 matmul peak in TFLOP/s, measured once and cached under ``root``.

    Parameters
    ----------
    root
        ``$NBLAUNCH_HOME``; the figure lives in ``cpu_peak.json`` there,
        keyed by host, CPU count and backend (torch or numpy).
    refresh
        Measure again even when a cached figure exists.
    """
    path = root / PROBE_FILE
    key, backend = _probe_key()
    cache: dict[str, Any] = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}  # a torn or hand-edited cache is re-measured, not an error
    entry = cache.get(key)
    if entry and not refresh and entry.get("tflops", 0) > 0:
        return float(entry["tflops"])
    tflops = _probe_torch() if backend == "torch" else _probe_numpy()
    cache[key] = {"tflops": tflops, "backend": backend, "n": _PROBE_N, "measured_at": time.time()}
    root.mkdir(parents=True, exist_ok=True)
    # Written whole and renamed, so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".cpu_peak.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(cache, fh, indent=2)
    os.replace(tmp, path)
    return tflops


def _best_rate(matmul: Any) -> float:
    matmul()  # warm-up: thread pool start, page faults
    flops = 2.0 * _PROBE_N**3
    best = 0.0
    deadline = time.perf_counter() + _PROBE_SECONDS
    while True:
        start = time.perf_counter()
        matmul()
        elapsed = time.perf_counter() - start
        best = max(best, flops / max(elapsed, 1e-9))
        if time.perf_counter() >= deadline:
            return best / 1e12


def _probe_torch() -> float:
    import torch

    a = torch.randn(_PROBE_N, _PROBE_N)
    b = torch.randn(_PROBE_N, _PROBE_N)
    with torch.no_grad():
        return _best_rate(lambda: torch.mm(a, b))


def _probe_numpy() -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((_PROBE_N, _PROBE_N), dtype=np.float32)
    b = rng.standard_normal((_PROBE_N, _PROBE_N), dtype=np.float32)
    return _best_rate(lambda: a @ b)
