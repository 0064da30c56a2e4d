"""GPU utilization, memory, temperature and power, sampled through NVML."""

from __future__ import annotations

import os
import threading

from nblaunch.runtime.contract import (
    GPU_MEMORY_GB,
    GPU_POWER_W,
    GPU_TEMPERATURE_C,
    GPU_UTILIZATION,
    visible_devices,
)
from nblaunch.runtime.metrics import log

INTERVAL_S = 5.0


def start_sampler(stop: threading.Event, interval_s: float = INTERVAL_S) -> threading.Thread | None:
    """Sample the job's visible GPUs every ``interval_s`` into its metrics; None without GPUs."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no nvidia-ml-py, no driver, or no GPU: nothing to sample
        return None
    devices = visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if not devices:
        pynvml.nvmlShutdown()
        return None
    # NVML ignores CUDA_VISIBLE_DEVICES: indexes (in PCI bus order, which the runner
    # gives CUDA too) and UUIDs name physical devices.
    try:
        handles = [
            pynvml.nvmlDeviceGetHandleByIndex(int(d))
            if d.isdigit()
            else pynvml.nvmlDeviceGetHandleByUUID(d)
            for d in devices
        ]
    except pynvml.NVMLError:  # a device NVML does not know: the job runs unsampled
        pynvml.nvmlShutdown()
        return None
    thread = threading.Thread(target=_sample, args=(pynvml, handles, stop, interval_s), daemon=True)
    thread.start()
    return thread


def _sample(
    pynvml: object, handles: list[object], stop: threading.Event, interval_s: float
) -> None:
    nv = pynvml
    try:
        while not stop.wait(interval_s):
            util = [nv.nvmlDeviceGetUtilizationRates(h).gpu for h in handles]  # type: ignore[attr-defined]
            mem = [nv.nvmlDeviceGetMemoryInfo(h).used for h in handles]  # type: ignore[attr-defined]
            temp = [nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU) for h in handles]  # type: ignore[attr-defined]
            power = [nv.nvmlDeviceGetPowerUsage(h) for h in handles]  # type: ignore[attr-defined]
            log(
                {
                    GPU_UTILIZATION: sum(util) / len(util),
                    GPU_MEMORY_GB: sum(mem) / 1e9,
                    GPU_TEMPERATURE_C: max(temp),
                    GPU_POWER_W: sum(power) / 1000,
                }
            )
    finally:
        nv.nvmlShutdown()  # type: ignore[attr-defined]
